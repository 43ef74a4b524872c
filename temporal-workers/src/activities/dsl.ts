// Activities of the workflow-DSL interpreter (workflows/dsl.ts): the run's lifecycle rows, one
// row per step (reproducibility, the run view, resume/fork), the model call of an `llm` step with
// JSON-schema output and repair retries, the `http` step behind an SSRF guard, and child runs.
// Every one is idempotent on the run id and step key, so Temporal may retry them.
import { createHash } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { appendRunEvent, countChatPromptTokens, countTokens, dslWorkflowId, type ChatMessageLike, type DslRunInput, type Prisma, type RunEventType } from '@deepspace/core';
import { classifyUpstreamError } from '@deepspace/core/ai/upstream';
import { compileJsonSchema, validateInputs, validateWorkflow } from '@deepspace/workflows-dsl';
import { Ledger, isAppError } from '@deepspace/core';
import { retrieveChunks, type Citation } from '@deepspace/core/knowledge/retrieve';
import type { ActivityDeps } from './index.ts';

export type { DslRunInput };

export interface StepRecord {
  runId: string;
  stepKey: string;
  stepId: string;
  kind: string;
  status: 'running' | 'waiting' | 'succeeded' | 'failed' | 'skipped';
  attempt?: number;
  input?: unknown;
  output?: unknown;
  detail?: unknown;
  error?: { code: string; message: string } | null;
  model?: string | null;
  holdId?: string | null;
  promptTokens?: number;
  completionTokens?: number;
  costMicros?: string;
  reusedFromRunId?: string | null;
  /** Extra data for the progress event only (e.g. cost so far). */
  event?: Record<string, unknown>;
}

export interface DslModelCallInput {
  runId: string;
  stepKey: string;
  upstreamModel: string;
  messages: ChatMessageLike[];
  maxTokens: number;
  temperature: number | null;
  outputSchema: unknown;
  repairRetries: number;
}

export interface DslModelCallResult {
  ok: boolean;
  /** The reply text, or the parsed JSON when an output schema is set. */
  output: unknown;
  error: { code: string; message: string } | null;
  promptTokens: number;
  completionTokens: number;
  calls: number;
  latencyMs: number;
}

export interface DslHttpInput {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
  timeoutMs: number;
  /** The run's organization: its policy may allow private/loopback targets. */
  orgId?: string;
}

export interface DslRetrieveInput {
  runId: string;
  stepKey: string;
  orgId: string;
  projectId: string;
  traceId: string;
  /** Knowledge base id, or its name within the run's project. */
  knowledgeBase: string;
  query: string;
  topK: number;
  minScore: number | null;
  documentIds: string[] | null;
  mode: 'hybrid' | 'vector' | 'fts';
  actor: { type: 'user' | 'api_key'; id: string };
}

export interface DslRetrieveResult {
  hits: Array<Pick<Citation, 'chunk_id' | 'document_id' | 'knowledge_base_id' | 'filename' | 'page' | 'heading' | 'text' | 'score'>>;
  knowledgeBaseId: string;
  promptTokens: number;
  costMicros: string;
}

export interface DslHttpResult {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

const jsonOrNull = (value: unknown) => (value === undefined ? undefined : value === null ? ('DbNull' as never) : (value as Prisma.InputJsonValue));
const MAX_HTTP_BODY = 1024 * 1024;

/** A UUID derived from text (same shape as the gateway's), so retried activities reuse rows. */
export function stableUuid(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Addresses an `http` step must not reach: loopback, private, link-local, unspecified, multicast, CGNAT, ULA. */
export function addressClass(address: string): 'public' | 'loopback' | 'private' {
  let ip = address;
  if (ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7))) ip = ip.slice(7);
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    if (a === 127) return 'loopback';
    if (a === 10 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254) || (a === 100 && b >= 64 && b <= 127) || a >= 224) return 'private';
    return 'public';
  }
  const lower = ip.toLowerCase();
  if (lower === '::1') return 'loopback';
  if (lower === '::' || lower.startsWith('fe8') || lower.startsWith('fe9') || lower.startsWith('fea') || lower.startsWith('feb') || lower.startsWith('fc') || lower.startsWith('fd') || lower.startsWith('ff')) return 'private';
  return 'public';
}

function ssrfError(host: string, address: string, kind: string): Error {
  return ApplicationFailure.create({ type: 'ssrf_blocked', message: `http step refused: ${host} resolves to a ${kind} address (${address})`, nonRetryable: true });
}

function stepEvent(status: StepRecord['status']): RunEventType {
  return status === 'running' ? 'step.started' : (`step.${status}` as RunEventType);
}

export function createDslActivities(deps: ActivityDeps) {
  const ledger = new Ledger(deps.pool);
  const allowLoopback = deps.config.workflows?.httpAllowLoopback ?? false;

  /** DNS lookup that refuses forbidden addresses, so the socket connects only to a checked IP (no rebinding window). */
  const guardedLookup =
    (allowPrivate: boolean): net.LookupFunction =>
    (hostname, options, callback) => {
      dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
        if (error) return (callback as (e: Error | null, a: string, f?: number) => void)(error, '', 4);
        const list = addresses as unknown as dns.LookupAddress[];
        for (const entry of list) {
          const kind = addressClass(entry.address);
          if (!allowPrivate && (kind === 'private' || (kind === 'loopback' && !allowLoopback))) {
            return (callback as (e: Error | null, a: string, f?: number) => void)(ssrfError(hostname, entry.address, kind), '', 4);
          }
        }
        if ((options as dns.LookupOptions).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
        (callback as (e: Error | null, a: string, f?: number) => void)(null, list[0]!.address, list[0]!.family);
      });
    };

  /** Private/loopback/link-local targets are the organization's call (its policy row), never a project's. */
  async function orgAllowsPrivateHttp(orgId: string | undefined): Promise<boolean> {
    if (!orgId) return false;
    const row = await deps.prisma.policy.findFirst({ where: { orgId, projectId: null }, select: { allowPrivateHttp: true } });
    return row?.allowPrivateHttp === true;
  }

  return {
    /** The run starts: status running, `run.started` event. */
    async dslStartRun(input: { runId: string; traceId: string; name: string }): Promise<void> {
      await deps.prisma.workflowRun.updateMany({ where: { id: input.runId, status: 'queued' }, data: { status: 'running', startedAt: new Date() } });
      if (Context.current().info.attempt === 1) {
        await appendRunEvent(deps.redis, input.runId, 'run.started', { run_id: input.runId, workflow: input.name, trace_id: input.traceId });
      }
    },

    /** Upserts a step's row and appends its progress event. */
    async dslRecordStep(record: StepRecord): Promise<void> {
      const finished = record.status === 'succeeded' || record.status === 'failed' || record.status === 'skipped';
      // Only what this record says: a later record (e.g. succeeded) keeps the model and input of the first.
      const data = Object.fromEntries(
        Object.entries({
          kind: record.kind,
          status: record.status,
          attempt: record.attempt,
          input: jsonOrNull(record.input),
          output: jsonOrNull(record.output),
          detail: jsonOrNull(record.detail),
          error: jsonOrNull(record.error),
          model: record.model,
          holdId: record.holdId,
          promptTokens: record.promptTokens,
          completionTokens: record.completionTokens,
          costMicros: record.costMicros === undefined ? undefined : BigInt(record.costMicros),
          reusedFromRunId: record.reusedFromRunId,
          finishedAt: finished ? new Date() : undefined,
        }).filter(([, v]) => v !== undefined),
      ) as Omit<Prisma.WorkflowRunStepUncheckedCreateInput, 'runId' | 'stepKey' | 'stepId'>;
      await deps.prisma.workflowRunStep.upsert({
        where: { runId_stepKey: { runId: record.runId, stepKey: record.stepKey } },
        create: { runId: record.runId, stepKey: record.stepKey, stepId: record.stepId, ...data },
        update: { ...data, ...(record.status === 'running' ? { startedAt: new Date() } : {}) },
      });
      await appendRunEvent(deps.redis, record.runId, stepEvent(record.status), {
        step_key: record.stepKey,
        step_id: record.stepId,
        kind: record.kind,
        ...(record.status === 'succeeded' || record.status === 'failed' ? { output: record.output ?? null } : {}),
        ...(record.error ? { error: record.error } : {}),
        ...(record.costMicros ? { cost_micros: record.costMicros } : {}),
        ...(record.reusedFromRunId ? { reused: true } : {}),
        ...record.event,
      });
    },

    /** A retrieve step: billed query embedding + hybrid search of one knowledge base of the run's project. */
    async dslRetrieve(input: DslRetrieveInput): Promise<DslRetrieveResult> {
      const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(input.knowledgeBase);
      const kb = await deps.prisma.knowledgeBase.findFirst({
        where: { projectId: input.projectId, archivedAt: null, ...(uuid ? { id: input.knowledgeBase } : { name: input.knowledgeBase }) },
      });
      if (!kb) throw ApplicationFailure.create({ type: 'not_found', message: `knowledge base "${input.knowledgeBase}" not found in this project`, nonRetryable: true });
      try {
        const result = await retrieveChunks(
          { prisma: deps.prisma, index: await deps.knowledge.index(), ledger, upstream: deps.upstream },
          {
            orgId: input.orgId,
            projectId: input.projectId,
            knowledgeBaseIds: [kb.id],
            query: input.query,
            topK: input.topK,
            mode: input.mode,
            minScore: input.minScore ?? undefined,
            documentIds: input.documentIds ?? undefined,
            traceId: input.traceId,
            runId: input.runId,
            stepId: input.stepKey,
            idempotencyKey: `${input.runId}:${input.stepKey}:retrieve`,
            actor: input.actor,
            ...(input.actor.type === 'api_key' ? { apiKeyId: input.actor.id } : { userId: input.actor.id }),
          },
        );
        return {
          hits: result.hits.map((h) => ({ chunk_id: h.chunk_id, document_id: h.document_id, knowledge_base_id: h.knowledge_base_id, filename: h.filename, page: h.page, heading: h.heading, text: h.text, score: h.score })),
          knowledgeBaseId: kb.id,
          promptTokens: result.embedding?.promptTokens ?? 0,
          costMicros: result.embedding?.costMicros ?? '0',
        };
      } catch (error) {
        if (isAppError(error) && error.status < 500) throw ApplicationFailure.create({ type: error.code, message: error.message, nonRetryable: true });
        if (isAppError(error)) throw ApplicationFailure.create({ type: error.code, message: error.message });
        throw error;
      }
    },

    /** The model of an llm step: catalog check. */
    async dslResolveModel(input: { model: string }): Promise<{ name: string; upstreamModel: string; maxOutputTokens: number }> {
      const model = await deps.prisma.model.findFirst({ where: { OR: [{ name: input.model }, { upstreamModel: input.model }] } });
      if (!model || !model.isActive || model.kind !== 'chat') {
        throw ApplicationFailure.create({ type: 'not_found', message: `model "${input.model}" is not an active chat model`, nonRetryable: true });
      }
      return { name: model.name, upstreamModel: model.upstreamModel, maxOutputTokens: model.maxOutputTokens };
    },

    /**
     * One llm step's calls: the first answer, then up to `repairRetries` repairs showing the model
     * its invalid reply and the validation errors. Usage is summed over every call; a reply that
     * stays invalid is a result with ok=false (its tokens are still billed by the workflow).
     */
    async dslModelCall(input: DslModelCallInput): Promise<DslModelCallResult> {
      const context = Context.current();
      const started = performance.now();
      const validator = input.outputSchema !== null && input.outputSchema !== undefined ? compileJsonSchema(input.outputSchema) : null;
      if (validator && !validator.ok) throw ApplicationFailure.create({ type: 'invalid_output_schema', message: 'output_schema does not compile', nonRetryable: true });
      const messages = [...input.messages] as Array<{ role: string; content: string }>;
      let promptTokens = 0;
      let completionTokens = 0;
      let calls = 0;
      const beat = setInterval(() => context.heartbeat(), 2_000);
      try {
        for (let attempt = 0; attempt <= (validator ? input.repairRetries : 0); attempt++) {
          calls++;
          let completion;
          try {
            completion = await deps.upstream.chat.completions.create(
              {
                model: input.upstreamModel,
                messages: messages as never,
                max_tokens: input.maxTokens,
                ...(input.temperature != null ? { temperature: input.temperature } : {}),
                ...(validator ? { response_format: { type: 'json_schema', json_schema: { name: 'output', schema: input.outputSchema as Record<string, unknown>, strict: false } } } : {}),
              },
              { signal: context.cancellationSignal },
            );
          } catch (error) {
            if (context.cancellationSignal.aborted) throw error;
            const failure = classifyUpstreamError(error);
            throw ApplicationFailure.create({ type: failure.code, message: failure.message, nonRetryable: !failure.retryable });
          }
          const text = completion.choices[0]?.message?.content ?? '';
          promptTokens += completion.usage?.prompt_tokens ?? countChatPromptTokens(messages as ChatMessageLike[]);
          completionTokens += completion.usage?.completion_tokens ?? countTokens(text);
          const result = { promptTokens, completionTokens, calls, latencyMs: Math.round(performance.now() - started) };
          if (!validator) return { ok: true, output: text, error: null, ...result };
          let parsed: unknown;
          let problem: string;
          try {
            parsed = JSON.parse(text);
            const check = validator.schema.validate(parsed);
            if (check.ok) return { ok: true, output: parsed, error: null, ...result };
            problem = check.errors.map((e) => `${e.pointer || '/'} ${e.message}`).join('; ');
          } catch {
            problem = 'the reply is not valid JSON';
          }
          if (attempt === input.repairRetries) {
            return { ok: false, output: null, error: { code: 'invalid_output', message: `the reply does not match output_schema: ${problem}` }, ...result };
          }
          messages.push({ role: 'assistant', content: text }, { role: 'user', content: `Your reply does not match the required JSON schema: ${problem}. Reply again with JSON only, valid against the schema.` });
        }
        throw new Error('unreachable');
      } finally {
        clearInterval(beat);
      }
    },

    /** An http step: no redirects followed, DNS answers checked before connecting, 1 MiB body cap. */
    async dslHttpRequest(input: DslHttpInput): Promise<DslHttpResult> {
      let url: URL;
      try {
        url = new URL(input.url);
      } catch {
        throw ApplicationFailure.create({ type: 'bad_request', message: `invalid url "${input.url}"`, nonRetryable: true });
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw ApplicationFailure.create({ type: 'bad_request', message: 'only http and https URLs are allowed', nonRetryable: true });
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const allowPrivate = await orgAllowsPrivateHttp(input.orgId);
      if (net.isIP(host) && !allowPrivate) {
        const kind = addressClass(host);
        if (kind === 'private' || (kind === 'loopback' && !allowLoopback)) throw ssrfError(host, host, kind);
      }
      const headers: Record<string, string> = { ...input.headers };
      let payload: string | undefined;
      if (input.body !== undefined && input.body !== null && input.method !== 'GET' && input.method !== 'HEAD') {
        payload = typeof input.body === 'string' ? input.body : JSON.stringify(input.body);
        if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
      }
      const signal = Context.current().cancellationSignal;
      const result = await new Promise<DslHttpResult>((resolve, reject) => {
        const request = (url.protocol === 'https:' ? https : http).request(
          url,
          { method: input.method, headers, lookup: guardedLookup(allowPrivate), timeout: input.timeoutMs, signal },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (chunk: Buffer) => {
              size += chunk.length;
              if (size > MAX_HTTP_BODY) {
                res.destroy(ApplicationFailure.create({ type: 'payload_too_large', message: 'response body over 1 MiB', nonRetryable: true }));
                return;
              }
              chunks.push(chunk);
            });
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let body: unknown = text;
              if ((res.headers['content-type'] ?? '').includes('json')) {
                try {
                  body = JSON.parse(text);
                } catch {
                  body = text;
                }
              }
              const outHeaders: Record<string, string> = {};
              for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') outHeaders[k] = v;
              resolve({ status: res.statusCode ?? 0, headers: outHeaders, body });
            });
          },
        );
        request.on('timeout', () => request.destroy(ApplicationFailure.create({ type: 'upstream_timeout', message: 'http step timed out' })));
        request.on('error', reject);
        if (payload !== undefined) request.write(payload);
        request.end();
      }).catch((error: unknown) => {
        if (error instanceof ApplicationFailure) throw error;
        throw ApplicationFailure.create({ type: 'http_error', message: `http step failed: ${(error as Error).message}` });
      });
      if (result.status >= 400) {
        const retryable = result.status >= 500 || result.status === 429;
        throw ApplicationFailure.create({ type: 'http_status', message: `http step got status ${result.status}`, nonRetryable: !retryable, details: [{ status: result.status }] });
      }
      return result;
    },

    /** A `workflow` step: finds the child definition, validates its inputs and creates its run row. */
    async dslPrepareChildRun(input: { parent: DslRunInput; stepKey: string; workflow: string; version: number | null; inputs: unknown }): Promise<DslRunInput> {
      const { parent } = input;
      const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(input.workflow);
      const definition = await deps.prisma.workflowDefinition.findFirst({
        where: { projectId: parent.projectId, archivedAt: null, ...(uuid ? { id: input.workflow } : { slug: input.workflow }) },
      });
      if (!definition) throw ApplicationFailure.create({ type: 'not_found', message: `workflow "${input.workflow}" not found in this project`, nonRetryable: true });
      const version = await deps.prisma.workflowVersion.findFirst({
        where: { definitionId: definition.id, ...(input.version ? { version: input.version } : {}) },
        orderBy: { version: 'desc' },
      });
      if (!version) throw ApplicationFailure.create({ type: 'not_found', message: `workflow "${input.workflow}" has no version ${input.version ?? ''}`, nonRetryable: true });
      const checked = validateWorkflow(version.spec);
      if (!checked.ok) throw ApplicationFailure.create({ type: 'validation_failed', message: 'the child workflow does not validate', nonRetryable: true });
      const inputs = validateInputs(checked.document.inputs, input.inputs ?? {});
      if (!inputs.ok) {
        throw ApplicationFailure.create({ type: 'validation_failed', message: `child inputs: ${inputs.errors.map((e) => `${e.pointer} ${e.message}`).join('; ')}`, nonRetryable: true });
      }
      const runId = stableUuid(`child-run:${parent.runId}:${input.stepKey}`);
      await deps.prisma.workflowRun.upsert({
        where: { id: runId },
        update: {},
        create: {
          id: runId,
          orgId: parent.orgId,
          projectId: parent.projectId,
          kind: 'workflow',
          definitionId: definition.id,
          versionId: version.id,
          temporalWorkflowId: dslWorkflowId(runId),
          traceId: parent.traceId,
          actorType: parent.actor.type,
          actorId: parent.actor.id,
          input: { inputs: inputs.inputs, parent_run_id: parent.runId, parent_step: input.stepKey } as Prisma.InputJsonValue,
        },
      });
      return {
        runId,
        traceId: parent.traceId,
        orgId: parent.orgId,
        projectId: parent.projectId,
        definitionId: definition.id,
        versionId: version.id,
        document: checked.document,
        inputs: inputs.inputs,
        budgetMicros: null,
        reuse: null,
        depth: (parent.depth ?? 0) + 1,
        actor: parent.actor,
      };
    },

    /** The run succeeded: outputs, total cost, audit, `run.completed`. */
    async dslFinishRun(input: { run: DslRunInput; output: unknown; costMicros: string }): Promise<void> {
      const { run } = input;
      await deps.prisma.$transaction(async (tx) => {
        const updated = await tx.workflowRun.updateMany({
          where: { id: run.runId, status: { in: ['queued', 'running'] } },
          data: { status: 'succeeded', finishedAt: new Date(), costMicros: BigInt(input.costMicros), output: (input.output ?? null) as Prisma.InputJsonValue },
        });
        if (updated.count > 0) {
          await tx.auditLog.create({
            data: {
              traceId: run.traceId,
              actorType: run.actor.type,
              actorId: run.actor.id,
              action: 'workflow.run.succeeded',
              resourceType: 'workflow_run',
              resourceId: run.runId,
              orgId: run.orgId,
              projectId: run.projectId,
              result: 'success',
              details: { cost_micros: input.costMicros, definition_id: run.definitionId, version_id: run.versionId } as Prisma.InputJsonValue,
            },
          });
        }
      });
      await appendRunEvent(deps.redis, run.runId, 'run.completed', { run_id: run.runId, output: input.output ?? null, cost_micros: input.costMicros });
    },

    /** The run failed or was cancelled (holds were released before): status, audit, final event. */
    async dslFailRun(input: { run: DslRunInput; code: string; message: string; step: string | null; cancelled: boolean; costMicros: string }): Promise<void> {
      const { run } = input;
      const status = input.cancelled ? 'cancelled' : 'failed';
      await deps.prisma.$transaction(async (tx) => {
        const updated = await tx.workflowRun.updateMany({
          where: { id: run.runId, status: { in: ['queued', 'running'] } },
          data: { status, finishedAt: new Date(), costMicros: BigInt(input.costMicros), error: { code: input.code, message: input.message, step: input.step } as Prisma.InputJsonValue },
        });
        if (updated.count > 0) {
          await tx.auditLog.create({
            data: {
              traceId: run.traceId,
              actorType: run.actor.type,
              actorId: run.actor.id,
              action: `workflow.run.${status}`,
              resourceType: 'workflow_run',
              resourceId: run.runId,
              orgId: run.orgId,
              projectId: run.projectId,
              result: 'failure',
              details: { code: input.code, step: input.step, cost_micros: input.costMicros } as Prisma.InputJsonValue,
            },
          });
        }
      });
      await appendRunEvent(deps.redis, run.runId, input.cancelled ? 'run.cancelled' : 'run.failed', { code: input.code, message: input.message, step: input.step, cost_micros: input.costMicros });
    },
  };
}

export type DslActivities = ReturnType<typeof createDslActivities>;
