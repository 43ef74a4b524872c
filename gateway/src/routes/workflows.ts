// Workflows: definitions with immutable versions (content hash), validation, cost estimates, and
// durable runs of the DSL interpreter (temporal-workers dslWorkflow) with per-step records,
// cancel, approvals (a Temporal signal), SSE progress, resume and fork (completed outputs reused,
// never charged twice).
import { createHash, randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import {
  AppError,
  DSL_APPROVAL_SIGNAL,
  DSL_WORKFLOW_TYPE,
  dslWorkflowId,
  estimateHoldMicros,
  priceInForce,
  type DslApprovalSignal,
  type DslRunInput,
  type Models,
  type Prisma,
} from '@deepspace/core';
import {
  compileJsonSchema,
  compileWorkflow,
  evaluate,
  parseWorkflow,
  renderTemplate,
  validateWorkflow,
  type CompiledBlock,
  type CompiledWorkflow,
  type SchemaIssue,
  type StepOfKind,
  type WorkflowDocument,
} from '@deepspace/workflows-dsl';
import type { ApiRouter, RequestContext } from '../http/router.ts';
import { projectAccess } from '../services/access.ts';
import { openSse, relayRunEvents } from '../services/sse.ts';

const DEFAULT_MODEL = 'gpt-4o-mini';
const DEFAULT_MAX_TOKENS = 1024;

function stableUuid(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** JSON with sorted keys: the content hash of a document ignores formatting and key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const contentHash = (document: unknown) => `sha256:${createHash('sha256').update(canonical(document)).digest('hex')}`;

function slugify(text: string): string {
  const slug = text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 44)
    .replace(/-+$/g, '');
  return slug || 'workflow';
}

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

function definitionJson(d: Models.WorkflowDefinition, latest?: Models.WorkflowVersion | null) {
  return {
    id: d.id,
    project_id: d.projectId,
    name: d.name,
    slug: d.slug,
    description: d.description,
    latest_version: d.latestVersion,
    created_by: d.createdBy,
    created_at: iso(d.createdAt),
    updated_at: iso(d.updatedAt),
    archived_at: iso(d.archivedAt),
    ...(latest !== undefined ? { latest: latest ? versionJson(latest) : null } : {}),
  };
}

function versionJson(v: Models.WorkflowVersion) {
  return {
    id: v.id,
    workflow_id: v.definitionId,
    version: v.version,
    checksum: v.checksum,
    source_format: v.sourceFormat,
    source: v.source,
    document: v.spec,
    created_by: v.createdBy,
    created_at: iso(v.createdAt),
  };
}

function stepJson(s: Models.WorkflowRunStep) {
  return {
    step_key: s.stepKey,
    step_id: s.stepId,
    kind: s.kind,
    status: s.status,
    attempt: s.attempt,
    input: s.input,
    output: s.output,
    detail: s.detail,
    error: s.error,
    model: s.model,
    prompt_tokens: s.promptTokens,
    completion_tokens: s.completionTokens,
    cost_micros: s.costMicros.toString(),
    reused_from_run_id: s.reusedFromRunId,
    started_at: iso(s.startedAt),
    finished_at: iso(s.finishedAt),
  };
}

function runJson(r: Models.WorkflowRun, steps?: Models.WorkflowRunStep[]) {
  const input = (r.input ?? {}) as { inputs?: unknown; version?: number; budget_micros?: string | null };
  return {
    id: r.id,
    kind: r.kind,
    workflow_id: r.definitionId,
    version_id: r.versionId,
    version: input.version ?? null,
    status: r.status,
    trace_id: r.traceId,
    temporal_workflow_id: r.temporalWorkflowId,
    cost_micros: r.costMicros.toString(),
    budget_micros: input.budget_micros ?? null,
    inputs: input.inputs ?? {},
    output: r.output,
    error: r.error,
    source_run_id: r.sourceRunId,
    created_at: iso(r.createdAt),
    started_at: iso(r.startedAt),
    finished_at: iso(r.finishedAt),
    ...(steps
      ? {
          steps: steps.map(stepJson),
          pending_approvals: steps.filter((s) => s.status === 'waiting').map((s) => ({ step: s.stepKey, prompt: (s.input as { prompt?: string } | null)?.prompt ?? null })),
        }
      : {}),
  };
}

function actorRef(ctx: RequestContext): { type: 'user' | 'api_key'; id: string } {
  const actor = ctx.actorOrThrow();
  return actor.type === 'user' ? { type: 'user', id: actor.userId } : { type: 'api_key', id: actor.keyId };
}

function parseSource(source: string, format: 'auto' | 'yaml' | 'json' = 'auto') {
  const result = parseWorkflow(source, format);
  if (!result.ok) {
    throw new AppError('validation_failed', `The workflow document has ${result.errors.length} error(s): ${result.errors[0]!.message}`, {
      details: { errors: result.errors, warnings: result.warnings },
    });
  }
  return { document: result.document, warnings: result.warnings, format: format === 'auto' ? (/^\s*[[{]/.test(source) ? 'json' : 'yaml') : format };
}

async function definitionOf(ctx: RequestContext, minimumRole: 'viewer' | 'member' = 'viewer') {
  const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, minimumRole, { what: 'manage workflows' });
  const definition = await ctx.deps.prisma.workflowDefinition.findFirst({ where: { id: ctx.params.workflowId!, projectId: project.id, archivedAt: null } });
  if (!definition) throw new AppError('not_found', 'Workflow not found');
  return { project, definition };
}

async function runOf(ctx: RequestContext, minimumRole: 'viewer' | 'member' = 'viewer') {
  const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, minimumRole, { what: 'run workflows' });
  const run = await ctx.deps.prisma.workflowRun.findFirst({ where: { id: ctx.params.workflowRunId!, projectId: project.id, kind: 'workflow' } });
  if (!run) throw new AppError('not_found', 'Run not found');
  return { project, run };
}

/** A stored version, validated, with its inputs schema compiled (null: the workflow takes no inputs). */
interface CheckedVersion {
  document: WorkflowDocument;
  inputs: ReturnType<typeof compileJsonSchema> | null;
}

// Versions are immutable (a new spec is a new row), so their check is cached by id: the ajv
// compiles of validation and of the inputs schema cost more than the rest of a run start.
const checkedVersions = new Map<string, CheckedVersion>();
const CHECKED_VERSIONS_MAX = 500;

function checkVersion(row: Models.WorkflowVersion): CheckedVersion {
  const cached = checkedVersions.get(row.id);
  if (cached) return cached;
  const checked = validateWorkflow(row.spec);
  if (!checked.ok) throw new AppError('conflict', 'The stored version no longer validates', { details: { errors: checked.errors } });
  const inputs = checked.document.inputs === undefined || checked.document.inputs === null ? null : compileJsonSchema(checked.document.inputs, { useDefaults: true });
  const entry = { document: checked.document, inputs };
  if (checkedVersions.size >= CHECKED_VERSIONS_MAX) checkedVersions.delete(checkedVersions.keys().next().value!);
  checkedVersions.set(row.id, entry);
  return entry;
}

async function versionFor(ctx: RequestContext, definition: Models.WorkflowDefinition, version?: number) {
  const row = await ctx.deps.prisma.workflowVersion.findFirst({
    where: { definitionId: definition.id, ...(version ? { version } : {}) },
    orderBy: { version: 'desc' },
  });
  if (!row) throw new AppError('not_found', version ? `Version ${version} not found` : 'The workflow has no version');
  return { row, checked: checkVersion(row) };
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value) && [Object.prototype, null].includes(Object.getPrototypeOf(value));

/** validateInputs of the DSL with the version's compiled schema: defaults are filled in a copy. */
function checkInputs(version: CheckedVersion, inputs: unknown): Record<string, unknown> {
  const value: unknown = inputs === undefined || inputs === null ? {} : structuredClone(inputs);
  let errors: SchemaIssue[] = [];
  if (!version.inputs) {
    if (!(isPlainObject(value) && Object.keys(value).length === 0)) errors = [{ pointer: '', message: 'this workflow takes no inputs' }];
  } else if (!version.inputs.ok) {
    errors = version.inputs.errors;
  } else {
    const result = version.inputs.schema.validate(value);
    if (!result.ok) errors = result.errors;
    else if (!isPlainObject(value)) errors = [{ pointer: '', message: '/ must be an object' }];
  }
  if (errors.length > 0) {
    throw new AppError('validation_failed', `Invalid inputs: ${errors.map((e) => `${e.pointer || '/'} ${e.message}`).join('; ')}`, { details: { errors } });
  }
  return value as Record<string, unknown>;
}

interface StartOptions {
  project: { id: string; orgId: string };
  definition: Models.WorkflowDefinition;
  version: Models.WorkflowVersion;
  document: WorkflowDocument;
  inputs: Record<string, unknown>;
  budgetMicros: string | null;
  reuse: DslRunInput['reuse'];
  sourceRunId: string | null;
  /** Same key → same run id, so a retried request attaches to the same run. */
  idempotencyScope: string;
  action: string;
}

async function startRun(ctx: RequestContext, options: StartOptions) {
  const { deps } = ctx;
  const { project, definition, version } = options;
  if (ctx.policy?.monthlyBudgetMicros != null) {
    const spent = await ctx.services.policy.monthToDateSpend(project.id);
    if (spent >= ctx.policy.monthlyBudgetMicros) throw new AppError('policy_violation', 'The monthly budget of this project is spent');
  }
  const actor = actorRef(ctx);
  const key = ctx.req.header('idempotency-key');
  const runId = key ? stableUuid(`workflow-run:${options.idempotencyScope}:${actor.id}:${key}`) : randomUUID();
  const workflowId = dslWorkflowId(runId);
  // Only a retried request (same key) can find its run already there; a fresh random id cannot.
  let run = key ? await deps.prisma.workflowRun.findUnique({ where: { id: runId } }) : null;
  if (!run) {
    run = await deps.prisma.$transaction(async (tx) => {
      const row = await tx.workflowRun.create({
        data: {
          id: runId,
          orgId: project.orgId,
          projectId: project.id,
          kind: 'workflow',
          definitionId: definition.id,
          versionId: version.id,
          temporalWorkflowId: workflowId,
          traceId: ctx.traceId,
          actorType: actor.type,
          actorId: actor.id,
          sourceRunId: options.sourceRunId,
          input: { inputs: options.inputs, version: version.version, budget_micros: options.budgetMicros } as Prisma.InputJsonValue,
        },
      });
      await ctx.audit(
        { action: options.action, resourceType: 'workflow_run', resourceId: runId, orgId: project.orgId, projectId: project.id, details: { workflow_id: definition.id, version: version.version, source_run_id: options.sourceRunId } },
        tx,
      );
      return row;
    });
  }
  const input: DslRunInput = {
    runId,
    traceId: run.traceId,
    orgId: project.orgId,
    projectId: project.id,
    definitionId: definition.id,
    versionId: version.id,
    document: options.document,
    inputs: options.inputs,
    budgetMicros: options.budgetMicros,
    reuse: options.reuse,
    sourceRunId: options.sourceRunId,
    depth: 0,
    actor,
  };
  try {
    const handle = await deps.temporal.client.workflow.start(DSL_WORKFLOW_TYPE, {
      taskQueue: deps.config.temporal.taskQueue,
      workflowId,
      args: [input],
      searchAttributes: { DsOrgId: [project.orgId], DsProjectId: [project.id], DsTraceId: [run.traceId], DsRunKind: ['workflow'] },
    });
    run = await deps.prisma.workflowRun.update({ where: { id: runId }, data: { temporalRunId: handle.firstExecutionRunId } });
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) {
      await deps.prisma.workflowRun.updateMany({ where: { id: runId, status: 'queued' }, data: { status: 'failed', error: { code: 'service_unavailable', message: 'could not start the run' } } });
      throw new AppError('service_unavailable', 'The workflow engine is unavailable; try again', { cause: error });
    }
  }
  return { status: 202, body: runJson(run) };
}

/** The final event of a run whose stream is gone (expired), from the database. */
function finalEventFor(ctx: RequestContext, runId: string) {
  return async () => {
    const run = await ctx.deps.prisma.workflowRun.findUnique({ where: { id: runId } });
    if (!run || run.status === 'queued' || run.status === 'running') return null;
    if (run.status === 'succeeded') return { type: 'run.completed', data: { run_id: run.id, output: run.output, cost_micros: run.costMicros.toString() } };
    return { type: run.status === 'cancelled' ? 'run.cancelled' : 'run.failed', data: (run.error as Record<string, unknown>) ?? {} };
  };
}

/** The top-level step a step key belongs to (`research[1]/plan` → `research`). */
const topStepOf = (stepKey: string) => /^[A-Za-z_][A-Za-z0-9_]*/.exec(stepKey)?.[0] ?? stepKey;

function upstreamOf(plan: CompiledWorkflow, stepId: string): Set<string> {
  let top = plan.steps[stepId];
  if (!top) throw new AppError('validation_failed', `The workflow has no step "${stepId}"`);
  while (top.parent) top = plan.steps[top.parent]!;
  const deps = plan.root.dependencies;
  const seen = new Set<string>();
  const visit = (id: string) => {
    for (const d of deps[id] ?? []) {
      if (!seen.has(d)) {
        seen.add(d);
        visit(d);
      }
    }
  };
  visit(top.id);
  return seen;
}

/** The most a run can cost: every llm call at its max tokens (and repairs), map/loop multiplied. */
async function estimate(ctx: RequestContext, plan: CompiledWorkflow, inputs: Record<string, unknown>) {
  let approximate = false;
  let total = 0n;
  let calls = 0;
  const steps: { step_id: string; model: string; calls: number; max_micros: string }[] = [];
  const scope = { inputs, steps: {}, vars: {} };
  const text = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value ?? ''));
  const render = (value: unknown) => {
    try {
      return renderTemplate(value, scope);
    } catch {
      approximate = true;
      return value;
    }
  };
  const walk = async (block: CompiledBlock, multiplier: number) => {
    for (const id of block.order) {
      const step = plan.steps[id]!;
      if (step.kind === 'llm') {
        const def = step.definition as StepOfKind<'llm'>;
        const modelName = text(render(def.model ?? DEFAULT_MODEL));
        const model = await ctx.deps.catalog.get(modelName);
        if (!model || model.kind !== 'chat') throw new AppError('validation_failed', `Step "${id}" uses the model "${modelName}", which is not an active chat model`);
        const price = await priceInForce(ctx.deps.pool, model.id);
        if (!price) throw new AppError('conflict', `The model "${model.name}" has no price in force`);
        const messages = def.messages
          ? def.messages.map((m) => ({ role: m.role, content: text(render(m.content)) }))
          : [...(def.system ? [{ role: 'system', content: text(render(def.system)) }] : []), { role: 'user', content: text(render(def.prompt ?? '')) }];
        const maxTokensRaw = def.max_tokens === undefined ? DEFAULT_MAX_TOKENS : Number(render(def.max_tokens));
        const maxTokens = Math.min(Number.isFinite(maxTokensRaw) ? maxTokensRaw : DEFAULT_MAX_TOKENS, model.maxOutputTokens);
        const repairs = def.output_schema !== undefined ? (def.repair_retries ?? 1) : 0;
        const one = estimateHoldMicros({ price, messages, maxTokens: maxTokens * (1 + repairs) }).amountMicros;
        const micros = one * BigInt(multiplier);
        total += micros;
        calls += multiplier * (1 + repairs);
        steps.push({ step_id: id, model: model.name, calls: multiplier * (1 + repairs), max_micros: micros.toString() });
      } else if (step.kind === 'map') {
        let count = 1;
        try {
          const items = evaluate((step.definition as StepOfKind<'map'>).over, scope);
          if (Array.isArray(items)) count = items.length;
          else approximate = true;
        } catch {
          approximate = true;
        }
        await walk(step.body!, multiplier * count);
      } else if (step.kind === 'loop') {
        await walk(step.body!, multiplier * (step.definition as StepOfKind<'loop'>).max_iterations);
      } else if (step.kind === 'parallel') {
        for (const branch of Object.values(step.branches!)) await walk(branch, multiplier);
      } else if (step.kind === 'workflow') {
        approximate = true;
      }
    }
  };
  await walk(plan.root, 1);
  return { estimated_max_micros: total.toString(), llm_calls: calls, steps, approximate };
}

export function workflowRoutes(api: ApiRouter): void {
  api.handle('validateWorkflowSource', async (ctx) => {
    await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer');
    const result = parseWorkflow(ctx.body.source, ctx.body.format ?? 'auto');
    return { body: { valid: result.ok, errors: result.ok ? [] : result.errors, warnings: result.warnings, ...(result.ok ? { document: result.document } : {}) } };
  });

  api.handle('createWorkflow', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'member', { what: 'manage workflows' });
    const { document, warnings, format } = parseSource(ctx.body.source, ctx.body.format);
    const actor = actorRef(ctx);
    const name: string = ctx.body.name ?? document.name;
    let slug: string = ctx.body.slug ?? slugify(name);
    if (!ctx.body.slug) {
      const taken = new Set((await ctx.deps.prisma.workflowDefinition.findMany({ where: { projectId: project.id, slug: { startsWith: slug } }, select: { slug: true } })).map((r) => r.slug));
      for (let i = 2; taken.has(slug); i++) slug = `${slugify(name)}-${i}`;
    } else if (await ctx.deps.prisma.workflowDefinition.findFirst({ where: { projectId: project.id, slug } })) {
      throw new AppError('conflict', `A workflow with the slug "${slug}" already exists in this project`);
    }
    const { definition, version } = await ctx.deps.prisma.$transaction(async (tx) => {
      const definition = await tx.workflowDefinition.create({
        data: { orgId: project.orgId, projectId: project.id, name, slug, description: ctx.body.description ?? document.description ?? '', latestVersion: 1, createdBy: `${actor.type}:${actor.id}` },
      });
      const version = await tx.workflowVersion.create({
        data: { definitionId: definition.id, version: 1, sourceFormat: format, source: ctx.body.source, spec: document as unknown as Prisma.InputJsonValue, checksum: contentHash(document), createdBy: `${actor.type}:${actor.id}` },
      });
      await ctx.audit({ action: 'workflow.create', resourceType: 'workflow', resourceId: definition.id, orgId: project.orgId, projectId: project.id, details: { version: 1, checksum: version.checksum } }, tx);
      return { definition, version };
    });
    return { status: 201, body: { ...definitionJson(definition, version), warnings } };
  });

  api.handle('listWorkflows', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer');
    const limit: number = ctx.query.limit ?? 20;
    let cursor: Prisma.WorkflowDefinitionWhereInput = {};
    if (ctx.query.starting_after) {
      const anchor = await ctx.deps.prisma.workflowDefinition.findFirst({ where: { id: ctx.query.starting_after, projectId: project.id } });
      if (!anchor) throw new AppError('validation_failed', 'starting_after does not name a workflow of this project');
      cursor = { OR: [{ updatedAt: { lt: anchor.updatedAt } }, { updatedAt: anchor.updatedAt, id: { lt: anchor.id } }] };
    }
    const rows = await ctx.deps.prisma.workflowDefinition.findMany({
      where: { AND: [{ projectId: project.id, archivedAt: null }, cursor] },
      orderBy: [{ updatedAt: 'desc' }, { id: 'desc' }],
      take: limit + 1,
    });
    return { body: { data: rows.slice(0, limit).map((d) => definitionJson(d)), has_more: rows.length > limit } };
  });

  api.handle('getWorkflow', async (ctx) => {
    const { definition } = await definitionOf(ctx);
    const latest = await ctx.deps.prisma.workflowVersion.findFirst({ where: { definitionId: definition.id }, orderBy: { version: 'desc' } });
    return { body: definitionJson(definition, latest) };
  });

  api.handle('updateWorkflow', async (ctx) => {
    const { project, definition } = await definitionOf(ctx, 'member');
    const updated = await ctx.deps.prisma.$transaction(async (tx) => {
      const row = await tx.workflowDefinition.update({
        where: { id: definition.id },
        data: { ...(ctx.body.name ? { name: ctx.body.name } : {}), ...(ctx.body.description !== undefined ? { description: ctx.body.description } : {}) },
      });
      await ctx.audit({ action: 'workflow.update', resourceType: 'workflow', resourceId: definition.id, orgId: project.orgId, projectId: project.id }, tx);
      return row;
    });
    return { body: definitionJson(updated) };
  });

  api.handle('archiveWorkflow', async (ctx) => {
    const { project, definition } = await definitionOf(ctx, 'member');
    await ctx.deps.prisma.$transaction(async (tx) => {
      await tx.workflowDefinition.update({ where: { id: definition.id }, data: { archivedAt: new Date() } });
      await ctx.audit({ action: 'workflow.archive', resourceType: 'workflow', resourceId: definition.id, orgId: project.orgId, projectId: project.id }, tx);
    });
    return { status: 204 };
  });

  api.handle('listWorkflowVersions', async (ctx) => {
    const { definition } = await definitionOf(ctx);
    const limit: number = ctx.query.limit ?? 20;
    const rows = await ctx.deps.prisma.workflowVersion.findMany({ where: { definitionId: definition.id }, orderBy: { version: 'desc' }, take: limit + 1 });
    return { body: { data: rows.slice(0, limit).map(versionJson), has_more: rows.length > limit } };
  });

  api.handle('createWorkflowVersion', async (ctx) => {
    const { project, definition } = await definitionOf(ctx, 'member');
    const { document, warnings, format } = parseSource(ctx.body.source, ctx.body.format);
    const checksum = contentHash(document);
    const actor = actorRef(ctx);
    const latest = await ctx.deps.prisma.workflowVersion.findFirst({ where: { definitionId: definition.id }, orderBy: { version: 'desc' } });
    if (latest?.checksum === checksum) {
      await ctx.audit({ action: 'workflow.version.create', resourceType: 'workflow', resourceId: definition.id, orgId: project.orgId, projectId: project.id, details: { version: latest.version, unchanged: true } });
      return { status: 200, body: { ...versionJson(latest), unchanged: true, warnings } };
    }
    const version = await ctx.deps.prisma.$transaction(async (tx) => {
      // Row lock on the definition: concurrent publishes get consecutive numbers.
      const locked = await tx.workflowDefinition.update({ where: { id: definition.id }, data: { latestVersion: { increment: 1 } } });
      const row = await tx.workflowVersion.create({
        data: { definitionId: definition.id, version: locked.latestVersion, sourceFormat: format, source: ctx.body.source, spec: document as unknown as Prisma.InputJsonValue, checksum, createdBy: `${actor.type}:${actor.id}` },
      });
      await ctx.audit({ action: 'workflow.version.create', resourceType: 'workflow', resourceId: definition.id, orgId: project.orgId, projectId: project.id, details: { version: row.version, checksum } }, tx);
      return row;
    });
    return { status: 201, body: { ...versionJson(version), unchanged: false, warnings } };
  });

  api.handle('getWorkflowVersion', async (ctx) => {
    const { definition } = await definitionOf(ctx);
    const row = await ctx.deps.prisma.workflowVersion.findFirst({ where: { definitionId: definition.id, version: Number(ctx.params.version) } });
    if (!row) throw new AppError('not_found', 'Version not found');
    return { body: versionJson(row) };
  });

  api.handle('estimateWorkflowRun', async (ctx) => {
    const { definition } = await definitionOf(ctx);
    const { row, checked } = await versionFor(ctx, definition, ctx.body.version);
    const inputs = checkInputs(checked, ctx.body.inputs);
    const result = await estimate(ctx, compileWorkflow(checked.document), inputs);
    const budget: string | undefined = ctx.body.budget_micros;
    return { body: { workflow_id: definition.id, version: row.version, ...result, ...(budget ? { within_budget: BigInt(result.estimated_max_micros) <= BigInt(budget) } : {}) } };
  });

  api.handle('startWorkflowRun', async (ctx) => {
    const { project, definition } = await definitionOf(ctx, 'member');
    const { row, checked } = await versionFor(ctx, definition, ctx.body.version);
    const inputs = checkInputs(checked, ctx.body.inputs);
    return startRun(ctx, {
      project,
      definition,
      version: row,
      document: checked.document,
      inputs,
      budgetMicros: ctx.body.budget_micros ?? null,
      reuse: null,
      sourceRunId: null,
      idempotencyScope: `start:${definition.id}`,
      action: 'workflow.run.start',
    });
  });

  api.handle('listWorkflowRuns', async (ctx) => {
    const { project, definition } = await definitionOf(ctx);
    const limit: number = ctx.query.limit ?? 20;
    let cursor: Prisma.WorkflowRunWhereInput = {};
    if (ctx.query.starting_after) {
      const anchor = await ctx.deps.prisma.workflowRun.findFirst({ where: { id: ctx.query.starting_after, projectId: project.id, definitionId: definition.id } });
      if (!anchor) throw new AppError('validation_failed', 'starting_after does not name a run of this workflow');
      cursor = { OR: [{ createdAt: { lt: anchor.createdAt } }, { createdAt: anchor.createdAt, id: { lt: anchor.id } }] };
    }
    const rows = await ctx.deps.prisma.workflowRun.findMany({
      where: { AND: [{ projectId: project.id, definitionId: definition.id, kind: 'workflow' }, cursor] },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: limit + 1,
    });
    return { body: { data: rows.slice(0, limit).map((r) => runJson(r)), has_more: rows.length > limit } };
  });

  api.handle('getWorkflowRun', async (ctx) => {
    const { run } = await runOf(ctx);
    const steps = await ctx.deps.prisma.workflowRunStep.findMany({ where: { runId: run.id }, orderBy: [{ startedAt: 'asc' }, { stepKey: 'asc' }] });
    return { body: runJson(run, steps) };
  });

  api.handle('streamWorkflowRunEvents', async (ctx) => {
    const { run } = await runOf(ctx);
    const lastEventId = ctx.req.header('last-event-id');
    if (lastEventId !== undefined && !/^\d+-\d+$/.test(lastEventId)) throw new AppError('validation_failed', 'Last-Event-ID must be an event id from this stream');
    openSse(ctx.res);
    await relayRunEvents(ctx.deps.redis, ctx.res, run.id, lastEventId ?? '0', finalEventFor(ctx, run.id));
  });

  api.handle('cancelWorkflowRun', async (ctx) => {
    const { project, run } = await runOf(ctx, 'member');
    if (run.status !== 'queued' && run.status !== 'running') throw new AppError('conflict', `The run already ${run.status}`);
    await ctx.deps.temporal.client.workflow.getHandle(run.temporalWorkflowId).cancel();
    await ctx.audit({ action: 'workflow.run.cancel', resourceType: 'workflow_run', resourceId: run.id, orgId: project.orgId, projectId: project.id });
    return { status: 202, body: { ...runJson(run), cancel_requested: true } };
  });

  for (const [operationId, decision] of [
    ['approveWorkflowStep', 'approve'],
    ['rejectWorkflowStep', 'reject'],
  ] as const) {
    api.handle(operationId, async (ctx) => {
      const { project, run } = await runOf(ctx, 'member');
      if (run.status !== 'running' && run.status !== 'queued') throw new AppError('conflict', `The run already ${run.status}`);
      const step = await ctx.deps.prisma.workflowRunStep.findUnique({ where: { runId_stepKey: { runId: run.id, stepKey: ctx.body.step } } });
      if (!step || step.kind !== 'approval') throw new AppError('not_found', `The run has no approval step "${ctx.body.step}"`);
      if (step.status !== 'waiting') throw new AppError('conflict', `The approval step "${ctx.body.step}" is ${step.status}, not waiting`);
      const actor = actorRef(ctx);
      const signal: DslApprovalSignal = { step_key: step.stepKey, decision, by: `${actor.type}:${actor.id}`, comment: ctx.body.comment ?? null };
      await ctx.deps.temporal.client.workflow.getHandle(run.temporalWorkflowId).signal(DSL_APPROVAL_SIGNAL, signal);
      await ctx.audit({ action: `workflow.run.${decision}`, resourceType: 'workflow_run', resourceId: run.id, orgId: project.orgId, projectId: project.id, details: { step: step.stepKey } });
      return { status: 202, body: { run_id: run.id, step: step.stepKey, decision } };
    });
  }

  const rerun = (mode: 'resume' | 'fork') => async (ctx: RequestContext) => {
    const { project, run } = await runOf(ctx, 'member');
    const allowed = mode === 'resume' ? ['failed', 'cancelled'] : ['succeeded', 'failed', 'cancelled'];
    if (!allowed.includes(run.status)) throw new AppError('conflict', `Only a ${allowed.join(' or ')} run can be ${mode === 'resume' ? 'resumed' : 'forked'}; this one is ${run.status}`);
    const definition = await ctx.deps.prisma.workflowDefinition.findFirst({ where: { id: run.definitionId ?? undefined, projectId: project.id } });
    const version = run.versionId ? await ctx.deps.prisma.workflowVersion.findUnique({ where: { id: run.versionId } }) : null;
    if (!definition || !version) throw new AppError('conflict', 'The run has no workflow version to re-run');
    const checked = validateWorkflow(version.spec);
    if (!checked.ok) throw new AppError('conflict', 'The stored version no longer validates');
    const steps = await ctx.deps.prisma.workflowRunStep.findMany({ where: { runId: run.id, status: 'succeeded' } });
    let keep = (_key: string) => true;
    if (mode === 'fork') {
      const upstream = upstreamOf(compileWorkflow(checked.document), ctx.body.from_step);
      keep = (key) => upstream.has(topStepOf(key));
    }
    const reuse: NonNullable<DslRunInput['reuse']> = {};
    for (const s of steps) if (keep(s.stepKey)) reuse[s.stepKey] = { output: s.output, detail: s.detail };
    const input = (run.input ?? {}) as { inputs?: Record<string, unknown>; budget_micros?: string | null };
    return startRun(ctx, {
      project,
      definition,
      version,
      document: checked.document,
      inputs: input.inputs ?? {},
      budgetMicros: ctx.body?.budget_micros ?? input.budget_micros ?? null,
      reuse,
      sourceRunId: run.id,
      idempotencyScope: `${mode}:${run.id}`,
      action: `workflow.run.${mode}`,
    });
  };
  api.handle('resumeWorkflowRun', rerun('resume'));
  api.handle('forkWorkflowRun', rerun('fork'));
}
