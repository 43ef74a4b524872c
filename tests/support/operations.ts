// Every operation of gateway/openapi.yaml with a valid example request, so the tenancy, scope and
// malformed-input suites walk ALL routes. A new operation without an example fails those suites.
import { loadOperations, type Operation } from '../../gateway/src/http/openapi.ts';

export const OPERATIONS: Operation[] = [...loadOperations().values()].filter((op) => op.path.startsWith('/api/'));

export interface RouteIds {
  orgId: string;
  projectId: string;
  userId: string;
  invitationId: string;
  keyId: string;
  sessionId: string;
  runId: string;
  workflowId: string;
  /** A version number of workflowId. */
  version: string;
  workflowRunId: string;
  knowledgeBaseId: string;
  documentId: string;
}

export function pathFor(op: Operation, ids: RouteIds): string {
  return op.path.replace(/\{(\w+)\}/g, (_m, name: keyof RouteIds) => {
    const value = ids[name];
    if (!value) throw new Error(`no id for {${name}} in ${op.path}`);
    return value;
  });
}

/** A body that passes validation for each operation that takes one. */
export const VALID_BODIES: Record<string, unknown> = {
  signup: { email: 'someone@example.test', password: 'long-enough-password', name: 'Someone' },
  login: { email: 'someone@example.test', password: 'whatever-password' },
  createOrg: { name: 'Another org' },
  updateOrg: { name: 'Renamed org' },
  updateMember: { role: 'viewer' },
  createInvitation: { email: 'invitee@example.test', role: 'member' },
  acceptInvitation: { token: 'dsi_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' },
  createProject: { name: 'Another project' },
  updateProject: { name: 'Renamed project' },
  createApiKey: { name: 'k', scopes: ['usage:read'] },
  putOrgPolicy: { max_tokens_per_request: 1000 },
  putProjectPolicy: { max_tokens_per_request: 1000 },
  checkProjectPolicy: { model: 'gpt-4o-mini', max_tokens: 10 },
  createChatCompletion: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }], max_tokens: 5 },
  createEmbeddings: { model: 'text-embedding-3-small', input: 'hello' },
  adminTopup: { amount_micros: '1000000', reason: 'test credit' },
  adminAdjust: { delta_micros: '-1', reason: 'test debit' },
  createChatSession: { title: 'A session' },
  updateChatSession: { title: 'Renamed session' },
  sendChatMessage: { content: 'hello' },
  cancelChatRun: {},
  logout: {},
  logoutAll: {},
  revokeInvitation: {},
  archiveProject: {},
  revokeApiKey: {},
  validateWorkflowSource: { source: 'name: tiny\nsteps:\n  - id: a\n    kind: transform\n    value: 1\n' },
  createWorkflow: { source: 'name: tiny\nsteps:\n  - id: a\n    kind: transform\n    value: 1\n' },
  updateWorkflow: { description: 'Renamed workflow' },
  createWorkflowVersion: { source: 'name: tiny\nsteps:\n  - id: a\n    kind: transform\n    value: 2\n' },
  estimateWorkflowRun: { inputs: {} },
  startWorkflowRun: { inputs: {} },
  cancelWorkflowRun: {},
  approveWorkflowStep: { step: 'review' },
  rejectWorkflowStep: { step: 'review' },
  resumeWorkflowRun: {},
  forkWorkflowRun: { from_step: 'a' },
  createKnowledgeBase: { name: 'A knowledge base' },
  updateKnowledgeBase: { description: 'Described' },
  // Uploads are multipart (tests/integration/knowledge.test.ts); a JSON body is refused with 415.
  uploadDocument: {},
  reindexDocument: {},
  cancelDocumentIngestion: {},
  retrieveKnowledge: { query: 'hello', mode: 'fts' },
};

export function exampleBody(op: Operation): unknown {
  if (op.method === 'get' || op.method === 'delete') return undefined;
  if (!(op.operationId in VALID_BODIES)) throw new Error(`tests/support/operations.ts has no example body for ${op.operationId}`);
  return VALID_BODIES[op.operationId];
}
