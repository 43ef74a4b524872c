// Workflow DSL runs end to end: gateway → Temporal (dslWorkflow) → simulator, with every llm step
// held, captured once (or released), per-step records, SSE progress, approvals, cancel, resume and
// fork without a second charge, the budget cap, the SSRF guard, and a replay of recorded histories.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { ROOT } from '../../scripts/lib/paths.ts';
import { WORKFLOWS_PATH } from '../../temporal-workers/src/worker.ts';
import { missingAuditTraceIds, signUp, type Tenant } from '../support/api.ts';
import { collectSse } from '../support/sse.ts';
import { until } from '../support/processes.ts';
import { startTestGateway, startTestWorker, type TestGateway, type TestWorker } from '../support/stack.ts';

let gateway: TestGateway;
let worker: TestWorker;
let hook: http.Server;
let hookUrl: string;
const hookCalls: Array<{ path: string; body: unknown }> = [];
/** Path → statuses to answer, in order (then 200). */
const hookPlan = new Map<string, number[]>();

const example = (name: string) => readFileSync(path.join(ROOT, 'examples', name), 'utf8');

beforeAll(async () => {
  gateway = await startTestGateway();
  worker = await startTestWorker({ WORKFLOW_HTTP_ALLOW_LOOPBACK: 'true' });
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      hookCalls.push({ path: req.url ?? '', body: body ? JSON.parse(body) : null });
      const plan = hookPlan.get(req.url ?? '') ?? [];
      const status = plan.shift() ?? 200;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: status < 400 }));
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}`;
});

afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await worker.stop();
  await gateway.close();
  await new Promise((r) => hook.close(r));
});

// Organizations made by this suite: other suites share the database (and some make run rows
// with no Temporal history behind them, e.g. the tenancy walk's victim).
const ownOrgIds: string[] = [];

async function fundedTenant(label: string, micros = 5_000_000n): Promise<Tenant> {
  const tenant = await signUp(gateway.url, label);
  ownOrgIds.push(tenant.org.id);
  await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: micros, idempotencyKey: `wf-test:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
  return tenant;
}

async function createWorkflow(tenant: Tenant, source: string) {
  const res = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflows`, { source });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body;
}

async function startRun(tenant: Tenant, workflowId: string, body: Record<string, unknown>) {
  const res = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflows/${workflowId}/runs`, body);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body;
}


async function finished(tenant: Tenant, runId: string, timeoutMs = 30_000) {
  return until(async () => {
    const res = await tenant.client.get(`/api/v1/projects/${tenant.project.id}/workflow-runs/${runId}`);
    return ['succeeded', 'failed', 'cancelled'].includes(res.body.status) ? res.body : null;
  }, timeoutMs);
}

async function waitingApproval(tenant: Tenant, runId: string) {
  return until(async () => {
    const res = await tenant.client.get(`/api/v1/projects/${tenant.project.id}/workflow-runs/${runId}`);
    return res.body.pending_approvals?.length ? res.body : null;
  });
}

function events(tenant: Tenant, runId: string, lastEventId?: string) {
  return fetch(`${gateway.url}/api/v1/projects/${tenant.project.id}/workflow-runs/${runId}/events`, {
    headers: { cookie: tenant.client.cookie!, ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
  }).then((res) => collectSse(res));
}

/** Every hold of a run: its ledger transactions, in order. */
async function holdsOf(runId: string) {
  const holds = await gateway.deps.prisma.hold.findMany({ where: { runId }, orderBy: { createdAt: 'asc' } });
  const result = [];
  for (const hold of holds) {
    const txs = await gateway.deps.prisma.walletTransaction.findMany({ where: { holdId: hold.id }, orderBy: { id: 'asc' } });
    result.push({ step: hold.stepId, status: hold.status, kinds: txs.map((t) => t.kind) });
  }
  return result;
}

const PAPER = `Attention Is All You Need. Ashish Vaswani (Google Brain), Noam Shazeer (Google Brain). 2017. ${'The dominant sequence transduction models are based on complex recurrent or convolutional neural networks. '.repeat(4)}`;

const TWO_LLM = (extra = '') => `
name: two-steps
inputs:
  type: object
  properties: { topic: { type: string }, hook: { type: string } }
  required: [topic, hook]
steps:
  - id: draft
    kind: llm
    prompt: "Write about \${{ inputs.topic }} ${extra}"
    max_tokens: 30
  - id: notify
    kind: http
    method: POST
    url: \${{ inputs.hook }}
    body:
      text: \${{ steps.draft.output }}
    retry: { max_attempts: 1 }
  - id: summary
    kind: llm
    prompt: "Summarise: \${{ steps.draft.output }}"
    max_tokens: 20
outputs:
  summary: \${{ steps.summary.output }}
`;

describe('workflow definitions', () => {
  it('validate returns every error with positions; versions are immutable and content-hashed', async () => {
    const tenant = await fundedTenant('wf-defs');
    const base = `/api/v1/projects/${tenant.project.id}/workflows`;
    const bad = await tenant.client.post(`${base}/validate`, { source: 'name: x\nsteps:\n  - id: a\n    kind: llm\n  - id: a\n    kind: nope\n' });
    expect(bad.status).toBe(200);
    expect(bad.body.valid).toBe(false);
    expect(bad.body.errors.length).toBeGreaterThanOrEqual(2);
    expect(bad.body.errors[0]).toMatchObject({ code: expect.any(String), pointer: expect.any(String), line: expect.any(Number) });
    const refused = await tenant.client.post(base, { source: 'name: x\nsteps: []\n' });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('validation_failed');

    for (const file of ['data-extraction.yaml', 'approval.yaml', 'literature-review.yaml']) {
      const ok = await tenant.client.post(`${base}/validate`, { source: example(file) });
      expect(ok.body, file).toMatchObject({ valid: true, errors: [], warnings: [] });
    }
    const created = await createWorkflow(tenant, example('data-extraction.yaml'));
    expect(created).toMatchObject({ name: 'paper-metadata-extraction', slug: 'paper-metadata-extraction', latest_version: 1, latest: { version: 1, checksum: expect.stringMatching(/^sha256:/) } });
    // The same document (reformatted) is the same content: no new version.
    const json = JSON.stringify(created.latest.document);
    const same = await tenant.client.post(`${base}/${created.id}/versions`, { source: json });
    expect(same.status).toBe(200);
    expect(same.body).toMatchObject({ version: 1, unchanged: true });
    const changed = await tenant.client.post(`${base}/${created.id}/versions`, { source: example('data-extraction.yaml').replace('version: 2', 'version: 3') });
    expect(changed.status).toBe(201);
    expect(changed.body).toMatchObject({ version: 2, unchanged: false });
    const v1 = await tenant.client.get(`${base}/${created.id}/versions/1`);
    expect(v1.body.checksum).toBe(created.latest.checksum);
    const list = await tenant.client.get(`${base}/${created.id}/versions`);
    expect(list.body.data.map((v: { version: number }) => v.version)).toEqual([2, 1]);
    const second = await createWorkflow(tenant, example('data-extraction.yaml'));
    expect(second.slug).toBe('paper-metadata-extraction-2');
  });

  it('estimate gives the most a run can cost before it starts', async () => {
    const tenant = await fundedTenant('wf-estimate');
    const wf = await createWorkflow(tenant, example('literature-review.yaml'));
    const res = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflows/${wf.id}/estimate`, { inputs: { question: 'What limits battery lifetimes?', knowledge_base: 'kb' }, budget_micros: '1' });
    expect(res.status).toBe(200);
    expect(BigInt(res.body.estimated_max_micros)).toBeGreaterThan(0n);
    // plan (×3 iterations, 1 + 2 repairs), answer (map size unknown before the plan), verify, report
    expect(res.body).toMatchObject({ approximate: true, within_budget: false });
    expect(res.body.steps.map((s: { step_id: string }) => s.step_id)).toEqual(['plan', 'answer', 'verify', 'report']);
  });
});

describe('workflow runs', () => {
  it('data-extraction runs end to end: schema-valid JSON, a switch, per-step records, SSE, each llm step billed once', async () => {
    const tenant = await fundedTenant('wf-extract');
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    const wf = await createWorkflow(tenant, example('data-extraction.yaml'));
    const started = await startRun(tenant, wf.id, { inputs: { text: PAPER } });
    const sse = await events(tenant, started.id);
    const types = sse.map((e) => e.event);
    expect(types[0]).toBe('run.started');
    expect(sse.at(-1)!.event, JSON.stringify(sse.at(-1)!.data)).toBe('run.completed');
    expect(types).toContain('step.succeeded');
    expect(types).toContain('step.skipped');

    const run = await finished(tenant, started.id);
    expect(run.status).toBe('succeeded');
    const byId = Object.fromEntries(run.steps.map((s: { step_key: string }) => [s.step_key, s]));
    expect(byId.extract).toMatchObject({ status: 'succeeded', kind: 'llm', model: 'gpt-4o-mini' });
    expect(typeof byId.extract.output.title).toBe('string');
    // The switch routes on the extracted confidence; the branch not chosen is skipped.
    const low = byId.extract.output.confidence < 0.6;
    expect(byId.check.output).toEqual(low ? { case: 0, step: 'second_opinion' } : { case: null, step: 'accept' });
    expect(byId.second_opinion.status).toBe(low ? 'succeeded' : 'skipped');
    expect(byId.accept.status).toBe(low ? 'skipped' : 'succeeded');
    if (low) expect(byId.second_opinion.model).toBe('gpt-4o');
    expect(run.output).toMatchObject({ reviewed_by_stronger_model: low });

    const holds = await holdsOf(run.id);
    expect(holds.map((h) => [h.step, h.status, h.kinds])).toEqual([
      ['extract', 'captured', ['hold', 'capture']],
      ...(low ? [['second_opinion', 'captured', ['hold', 'capture']]] : []),
    ]);
    const stepCost = BigInt(byId.extract.cost_micros) + BigInt(low ? byId.second_opinion.cost_micros : '0');
    expect(BigInt(run.cost_micros)).toBe(stepCost);
    const after = await gateway.deps.ledger.getWallet(tenant.org.id);
    expect(after.balanceMicros).toBe(before.balanceMicros - stepCost);
    expect(after.frozenMicros).toBe(0n);
    const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { runId: run.id } });
    expect(usage).toHaveLength(low ? 2 : 1);
    expect(new Set(usage.map((u) => u.traceId))).toEqual(new Set([run.trace_id]));

    // Operators find the run in Temporal by trace id.
    const found = await until(async () => {
      for await (const w of worker.client.workflow.list({ query: `DsTraceId = "${run.trace_id}" AND DsRunKind = "workflow"` })) return w;
      return null;
    });
    expect(found.workflowId).toBe(run.temporal_workflow_id);
  });

  it('approval example: approved → published through the http step', async () => {
    const tenant = await fundedTenant('wf-approve');
    const wf = await createWorkflow(tenant, example('approval.yaml'));
    const run = await startRun(tenant, wf.id, { inputs: { topic: 'the new lab opening', webhook_url: `${hookUrl}/approved` } });
    const waiting = await waitingApproval(tenant, run.id);
    expect(waiting.pending_approvals[0]).toMatchObject({ step: 'review', prompt: expect.stringContaining('Publish this announcement') });
    const wrong = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${run.id}/approve`, { step: 'draft' });
    expect(wrong.status).toBe(404);
    const ok = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${run.id}/approve`, { step: 'review', comment: 'ship it' });
    expect(ok.status).toBe(202);
    const done = await finished(tenant, run.id);
    expect(done.status).toBe('succeeded');
    expect(done.output).toMatchObject({ published: true, decision: 'approve', timed_out: false });
    const call = hookCalls.find((c) => c.path === '/approved');
    expect(call?.body).toMatchObject({ text: done.output.text, approved_by: `user:${tenant.user.id}` });
    const again = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${run.id}/approve`, { step: 'review' });
    expect(again.status).toBe(409);
  });

  it('approval example: rejected → not published, the run still succeeds and reports it', async () => {
    const tenant = await fundedTenant('wf-reject');
    const wf = await createWorkflow(tenant, example('approval.yaml'));
    const run = await startRun(tenant, wf.id, { inputs: { topic: 'budget cuts', webhook_url: `${hookUrl}/rejected` } });
    await waitingApproval(tenant, run.id);
    expect((await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${run.id}/reject`, { step: 'review' })).status).toBe(202);
    const done = await finished(tenant, run.id);
    expect(done.status).toBe('succeeded');
    expect(done.output).toMatchObject({ published: false, decision: 'reject', timed_out: false });
    expect(done.steps.find((s: { step_key: string }) => s.step_key === 'review')).toMatchObject({ status: 'failed', error: { code: 'rejected' } });
    expect(done.steps.find((s: { step_key: string }) => s.step_key === 'publish').status).toBe('skipped');
    expect(hookCalls.some((c) => c.path === '/rejected')).toBe(false);
  });

  it('an approval nobody answers takes its default when the timeout fires', async () => {
    const tenant = await fundedTenant('wf-timeout');
    const source = example('approval.yaml').replace('timeout: 24h', 'timeout: 1s');
    const wf = await createWorkflow(tenant, source);
    const run = await startRun(tenant, wf.id, { inputs: { topic: 'quiet news', webhook_url: `${hookUrl}/timeout` } });
    const done = await finished(tenant, run.id);
    expect(done.output).toMatchObject({ published: false, decision: 'reject', timed_out: true });
  });

  it('literature-review runs end to end over a knowledge base: retrieve steps cite indexed papers; every llm and retrieve step is billed once', async () => {
    const tenant = await fundedTenant('wf-litreview');
    const kb = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/knowledge-bases`, { name: 'papers' });
    expect(kb.status).toBe(201);
    const papers = [
      ['dendrites.md', '# Lithium dendrites\n\nSolid-state batteries fail when lithium dendrites grow through grain boundaries of the ceramic electrolyte and short the cell.'],
      ['interfaces.md', '# Interface degradation\n\nChemical reactions at the cathode–electrolyte interface raise impedance, so solid-state cells lose capacity over cycling.'],
      ['pressure.md', '# Stack pressure\n\nLoss of contact at low stack pressure leaves voids at the lithium anode, concentrating current and accelerating failure.'],
    ];
    const uploaded: string[] = [];
    for (const [name, text] of papers) {
      const res = await tenant.client.upload(`/api/v1/projects/${tenant.project.id}/knowledge-bases/${kb.body.id}/documents`, { name: name!, bytes: new TextEncoder().encode(text), type: 'text/markdown' });
      expect(res.status).toBe(202);
      uploaded.push(res.body.id);
    }
    for (const id of uploaded) {
      await until(async () => (await tenant.client.get(`/api/v1/projects/${tenant.project.id}/knowledge-bases/${kb.body.id}/documents/${id}`)).body.status === 'indexed', 60_000, 'papers indexed');
    }
    const wf = await createWorkflow(tenant, example('literature-review.yaml'));
    const run = await startRun(tenant, wf.id, { inputs: { question: 'How do solid-state batteries fail?', knowledge_base: 'papers', max_sub_questions: 3 } });
    const done = await finished(tenant, run.id);
    expect(done.status, JSON.stringify(done.error)).toBe('succeeded');
    expect(typeof done.output.report).toBe('string');
    const searches = done.steps.filter((s: { kind: string }) => s.kind === 'retrieve');
    expect(searches.length).toBeGreaterThan(0);
    for (const search of searches) {
      expect(search.status).toBe('succeeded');
      expect(search.output.length).toBeGreaterThan(0);
      expect(uploaded).toContain(search.output[0].document_id);
    }
    const holds = await holdsOf(run.id);
    expect(holds.every((h) => h.status === 'captured' && h.kinds.join() === 'hold,capture')).toBe(true);
    expect(holds.filter((h) => h.step?.endsWith('/search'))).toHaveLength(searches.length);
    expect((await gateway.deps.ledger.getWallet(tenant.org.id)).frozenMicros).toBe(0n);
    const usage = await gateway.deps.prisma.usageRecord.aggregate({ where: { runId: run.id }, _sum: { costMicros: true } });
    expect(done.cost_micros).toBe((usage._sum.costMicros ?? 0n).toString());
  }, 120_000);

  it('cancel stops a run mid llm call: the hold is released and nothing is charged', async () => {
    const tenant = await fundedTenant('wf-cancel');
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    const wf = await createWorkflow(tenant, `name: slow\nsteps:\n  - id: think\n    kind: llm\n    prompt: "ponder [[sim:first_token_ms=20000]]"\n    max_tokens: 20\n`);
    const run = await startRun(tenant, wf.id, {});
    await until(async () => (await gateway.deps.prisma.hold.findFirst({ where: { runId: run.id, status: 'active' } })) ?? null);
    const cancel = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${run.id}/cancel`);
    expect(cancel.status).toBe(202);
    const done = await finished(tenant, run.id);
    expect(done.status).toBe('cancelled');
    expect(await holdsOf(run.id)).toEqual([{ step: 'think', status: 'released', kinds: ['hold', 'release'] }]);
    const after = await gateway.deps.ledger.getWallet(tenant.org.id);
    expect(after).toMatchObject({ balanceMicros: before.balanceMicros, frozenMicros: 0n });
  });

  it('the budget cap stops a run before an llm step it cannot afford; the hold is released', async () => {
    const tenant = await fundedTenant('wf-budget');
    const wf = await createWorkflow(tenant, TWO_LLM());
    const run = await startRun(tenant, wf.id, { inputs: { topic: 'x', hook: `${hookUrl}/budget` }, budget_micros: '1' });
    const done = await finished(tenant, run.id);
    expect(done).toMatchObject({ status: 'failed', error: { code: 'budget_exceeded', step: 'draft' }, cost_micros: '0' });
    expect(await holdsOf(run.id)).toEqual([{ step: 'draft', status: 'released', kinds: ['hold', 'release'] }]);
  });

  it('the SSRF guard refuses private and link-local targets', async () => {
    const tenant = await fundedTenant('wf-ssrf');
    for (const url of ['http://10.1.2.3/x', 'http://169.254.169.254/latest/meta-data', 'http://[fd00::1]/']) {
      const wf = await createWorkflow(tenant, `name: ssrf\ninputs:\n  type: object\n  properties: { u: { type: string } }\nsteps:\n  - id: get\n    kind: http\n    url: \${{ inputs.u }}\n`);
      const run = await startRun(tenant, wf.id, { inputs: { u: url } });
      const done = await finished(tenant, run.id);
      expect(done.error, url).toMatchObject({ code: 'ssrf_blocked', step: 'get' });
    }
  });

  it('an organization may allow private http targets (its policy, not a project’s); the guard then lets the request out', async () => {
    const tenant = await fundedTenant('wf-private');
    const source = `name: private\nsteps:\n  - id: get\n    kind: http\n    url: http://10.255.255.1/health\n    timeout: 1s\n    retry: { max_attempts: 1 }\n`;
    const wf = await createWorkflow(tenant, source);
    const refused = await finished(tenant, (await startRun(tenant, wf.id, {})).id);
    expect(refused.error).toMatchObject({ code: 'ssrf_blocked', step: 'get' });
    // A project admin cannot open private networks for its own project.
    const projectLevel = await tenant.client.put(`/api/v1/projects/${tenant.project.id}/policy`, { allow_private_http: true });
    expect(projectLevel.status).toBe(400);
    const orgLevel = await tenant.client.put(`/api/v1/orgs/${tenant.org.id}/policy`, { allow_private_http: true });
    expect(orgLevel.status).toBe(200);
    expect(orgLevel.body.rules ?? orgLevel.body).toMatchObject({ allow_private_http: true });
    const allowed = await finished(tenant, (await startRun(tenant, wf.id, {})).id);
    // Nothing answers at 10.255.255.1: the request went out and timed out instead of being refused.
    expect(allowed.status).toBe('failed');
    expect(allowed.error.code).not.toBe('ssrf_blocked');
  });

  it('resume continues a failed run from its failed step: the completed llm step is reused, not charged again', async () => {
    const tenant = await fundedTenant('wf-resume');
    const wf = await createWorkflow(tenant, TWO_LLM());
    hookPlan.set('/flaky', [500]);
    const first = await finished(tenant, (await startRun(tenant, wf.id, { inputs: { topic: 'enzymes', hook: `${hookUrl}/flaky` } })).id);
    expect(first).toMatchObject({ status: 'failed', error: { code: 'http_status', step: 'notify' } });
    expect((await holdsOf(first.id)).map((h) => h.step)).toEqual(['draft']);

    const resumed = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${first.id}/resume`, {});
    expect(resumed.status).toBe(202);
    const second = await finished(tenant, resumed.body.id);
    expect(second).toMatchObject({ status: 'succeeded', source_run_id: first.id });
    const draft = second.steps.find((s: { step_key: string }) => s.step_key === 'draft');
    expect(draft).toMatchObject({ status: 'succeeded', reused_from_run_id: first.id, output: first.steps.find((s: { step_key: string }) => s.step_key === 'draft').output });
    // Only the step that had not run is billed in the new run; the draft keeps its single charge.
    expect((await holdsOf(second.id)).map((h) => [h.step, h.kinds])).toEqual([['summary', ['hold', 'capture']]]);
    expect(await gateway.deps.prisma.usageRecord.count({ where: { runId: { in: [first.id, second.id] }, stepId: 'draft' } })).toBe(1);

    const refused = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${second.id}/resume`, {});
    expect(refused.status).toBe(409);
  });

  it('fork re-runs a finished run from a step with the upstream outputs reused', async () => {
    const tenant = await fundedTenant('wf-fork');
    const wf = await createWorkflow(tenant, TWO_LLM());
    const first = await finished(tenant, (await startRun(tenant, wf.id, { inputs: { topic: 'ribosomes', hook: `${hookUrl}/fork` } })).id);
    expect(first.status).toBe('succeeded');
    const forked = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${first.id}/fork`, { from_step: 'summary' });
    expect(forked.status).toBe(202);
    const second = await finished(tenant, forked.body.id);
    expect(second.status).toBe('succeeded');
    const reused = second.steps.filter((s: { reused_from_run_id: string | null }) => s.reused_from_run_id === first.id).map((s: { step_key: string }) => s.step_key);
    expect(reused.sort()).toEqual(['draft', 'notify']);
    expect((await holdsOf(second.id)).map((h) => h.step)).toEqual(['summary']);
    expect(second.output).toEqual(first.output); // deterministic simulator, same inputs
    const unknown = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflow-runs/${first.id}/fork`, { from_step: 'nope' });
    expect(unknown.status).toBe(400);
  });

  it('map (with a concurrency limit), parallel, loop, set and a child workflow', async () => {
    const tenant = await fundedTenant('wf-kinds');
    const child = await createWorkflow(tenant, `name: child-doubler\ninputs:\n  type: object\n  properties: { n: { type: integer } }\n  required: [n]\nsteps:\n  - id: out\n    kind: output\n    value: \${{ inputs.n * 2 }}\n`);
    const wf = await createWorkflow(
      tenant,
      `name: kinds
steps:
  - id: nums
    kind: transform
    value: [1, 2, 3]
  - id: each
    kind: map
    over: \${{ steps.nums.output }}
    as: n
    concurrency: 2
    steps:
      - id: say
        kind: llm
        prompt: "number \${{ n }}"
        max_tokens: 5
      - id: square
        kind: output
        value: \${{ n * n }}
  - id: both
    kind: parallel
    branches:
      left: { steps: [{ id: l, kind: template, template: "L\${{ length(steps.each.output) }}" }] }
      right: { steps: [{ id: r, kind: set, values: { flag: true } }] }
  - id: count
    kind: loop
    max_iterations: 5
    until: \${{ loop.index >= 2 }}
    steps:
      - id: tick
        kind: output
        value: \${{ loop.index }}
  - id: call
    kind: workflow
    workflow: ${child.slug}
    inputs: { n: 21 }
outputs:
  squares: \${{ steps.each.output }}
  left: \${{ steps.both.output.left.l }}
  iterations: \${{ steps.count.iterations }}
  child: \${{ steps.call.output }}
`,
    );
    const run = await finished(tenant, (await startRun(tenant, wf.id, {})).id);
    expect(run.status, JSON.stringify(run.error)).toBe('succeeded');
    expect(run.output).toEqual({ squares: [1, 4, 9], left: 'L3', iterations: [0, 1, 2], child: 42 });
    expect((await holdsOf(run.id)).map((h) => h.step).sort()).toEqual(['each[0]/say', 'each[1]/say', 'each[2]/say']);
    const childRun = await gateway.deps.prisma.workflowRun.findFirstOrThrow({ where: { definitionId: child.id } });
    expect(childRun).toMatchObject({ status: 'succeeded', traceId: run.trace_id });
  });

  it('recorded histories replay deterministically with the SDK replayer', async () => {
    const runs = await gateway.deps.prisma.workflowRun.findMany({
      where: { kind: 'workflow', orgId: { in: ownOrgIds }, status: { in: ['succeeded', 'failed', 'cancelled'] } },
      take: 8,
      orderBy: { createdAt: 'asc' },
    });
    expect(runs.length).toBeGreaterThan(3);
    const histories = await Promise.all(
      runs.map(async (r) => ({ workflowId: r.temporalWorkflowId, history: await worker.client.workflow.getHandle(r.temporalWorkflowId).fetchHistory() })),
    );
    let replayed = 0;
    for await (const result of Worker.runReplayHistories({ workflowsPath: WORKFLOWS_PATH }, histories)) {
      expect(result.error, result.workflowId).toBeUndefined();
      replayed++;
    }
    expect(replayed).toBe(runs.length);
  });
});
