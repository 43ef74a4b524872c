// Routes are registered by OpenAPI operationId. Each runs the pipeline
//   auth → rate limit → policy → validation → (idempotency) → handler → audit
// and registration fails for an operation the spec does not describe; `assertComplete()` fails
// for a described operation without a handler. So the spec and the code cannot drift.
import { createHash } from 'node:crypto';
import { Router, type Request, type Response, type NextFunction } from 'express';
import { AppError, isAppError, type Logger, type Prisma } from '@deepspace/core';
import type { GatewayDeps } from '../deps.ts';
import type { Actor } from '../auth/actor.ts';
import { authenticate } from '../auth/authenticate.ts';
import { writeAudit, type AuditEntry, type AuditRequestInfo } from '../services/audit.ts';
import type { Bucket } from '../services/rate-limit.ts';
import type { PolicyRules } from '../services/policy.ts';
import { describeErrors, type Operation } from './openapi.ts';
import type { GatewayServices } from './services.ts';
import { trackAfterResponse } from '../services/settlements.ts';

export interface Reply {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  /**
   * Work that runs once the response is sent (the request's own audit row must then already be
   * accounted for). It handles its own errors; shutdown waits for it (services/settlements.ts).
   */
  afterSend?: () => Promise<void>;
}

export interface RequestContext {
  deps: GatewayDeps;
  services: GatewayServices;
  req: Request;
  res: Response;
  operation: Operation;
  traceId: string;
  log: Logger;
  actor: Actor | undefined;
  params: Record<string, string>;
  query: Record<string, any>;
  body: any;
  /** Effective policy of the project the request is about (undefined outside a project). */
  policy: PolicyRules | undefined;
  auditInfo: AuditRequestInfo;
  user(): Extract<Actor, { type: 'user' }>;
  actorOrThrow(): Actor;
  /** Writes the audit row (inside `tx` when given); the router then writes none of its own. */
  audit(entry: AuditEntry, tx?: Prisma.TransactionClient): Promise<void>;
  /** The domain operation wrote its own audit row in its transaction (e.g. ledger top-ups). */
  auditedByDomain(): void;
}

export type Handler = (ctx: RequestContext) => Promise<Reply | void>;

const MUTATING = new Set(['post', 'put', 'patch', 'delete']);

export class ApiRouter {
  readonly router = Router();
  private readonly handled = new Set<string>();
  private readonly byId: Map<string, Operation>;
  private readonly deps: GatewayDeps;
  private readonly services: GatewayServices;

  constructor(deps: GatewayDeps, services: GatewayServices, operations: Map<string, Operation>) {
    this.deps = deps;
    this.services = services;
    this.byId = new Map([...operations.values()].map((op) => [op.operationId, op]));
  }

  /** Marks operations served outside this router (health checks). */
  servedElsewhere(...operationIds: string[]): void {
    for (const id of operationIds) {
      if (!this.byId.has(id)) throw new Error(`openapi.yaml has no operation "${id}"`);
      this.handled.add(id);
    }
  }

  handle(operationId: string, handler: Handler): void {
    const operation = this.byId.get(operationId);
    if (!operation) throw new Error(`openapi.yaml has no operation "${operationId}"; describe it before adding the route`);
    if (this.handled.has(operationId)) throw new Error(`operation "${operationId}" registered twice`);
    this.handled.add(operationId);
    this.router[operation.method](operation.expressPath, (req: Request, res: Response, next: NextFunction) => {
      void this.run(operation, handler, req, res).catch(next);
    });
  }

  assertComplete(): void {
    const missing = [...this.byId.keys()].filter((id) => !this.handled.has(id));
    if (missing.length) throw new Error(`openapi.yaml operations without a handler: ${missing.join(', ')}`);
  }

  private async run(operation: Operation, handler: Handler, req: Request, res: Response): Promise<void> {
    const { deps, services } = this;
    const auditInfo: AuditRequestInfo = {
      traceId: res.locals.traceId,
      actor: undefined,
      ip: req.ip,
      userAgent: req.header('user-agent'),
    };
    // A row written inside the handler's transaction only counts once that transaction commits,
    // i.e. when the handler returns; if it throws, the failure gets its own row.
    let audited = false;
    let auditedInTransaction = false;
    const ctx: RequestContext = {
      deps,
      services,
      req,
      res,
      operation,
      traceId: res.locals.traceId,
      log: res.locals.log,
      actor: undefined,
      params: req.params as Record<string, string>,
      query: { ...(req.query as Record<string, unknown>) },
      body: req.body,
      policy: undefined,
      auditInfo,
      user() {
        if (ctx.actor?.type !== 'user') throw new AppError('insufficient_scope', 'This route is for signed-in users, not API keys');
        return ctx.actor;
      },
      actorOrThrow() {
        if (!ctx.actor) throw new AppError('unauthenticated', 'Sign in or send an API key');
        return ctx.actor;
      },
      auditedByDomain() {
        auditedInTransaction = true;
      },
      async audit(entry, tx) {
        await writeAudit(tx ?? deps.prisma, auditInfo, entry);
        if (tx) auditedInTransaction = true;
        else {
          audited = true;
          res.locals.audited = true;
        }
      },
    };

    let idempotency: { scope: string; key: string } | undefined;
    try {
      // auth
      ctx.actor = await authenticate(deps, req);
      auditInfo.actor = ctx.actor;
      if (ctx.actor) {
        // Built on first use: most requests never log past the access line.
        const actor = ctx.actor;
        let log: Logger | undefined;
        Object.defineProperty(ctx, 'log', {
          configurable: true,
          enumerable: true,
          get: () => (log ??= res.locals.log.child({ actor_type: actor.type, actor_id: actor.type === 'user' ? actor.userId : actor.keyId })),
          set: (value: Logger) => {
            log = value;
          },
        });
      }
      if (operation.auth !== 'public') {
        if (!ctx.actor) throw new AppError('unauthenticated', 'Sign in or send an API key');
        if (ctx.actor.type === 'api_key') {
          if (operation.auth === 'session' || !operation.scope) {
            throw new AppError('insufficient_scope', 'This route is for signed-in users, not API keys');
          }
          if (operation.scope !== 'any' && !ctx.actor.scopes.includes(operation.scope)) {
            throw new AppError('insufficient_scope', `This API key lacks the "${operation.scope}" scope`, {
              details: { required_scope: operation.scope },
            });
          }
        }
      }

      // rate limit (limits come from the project's policy when the request is about a project)
      const projectId = typeof req.params.projectId === 'string' ? req.params.projectId : ctx.actor?.type === 'api_key' ? ctx.actor.projectId : undefined;
      const projectOrg = projectId ? await services.projectOrg(projectId) : undefined;
      if (projectId && projectOrg) ctx.policy = await services.policy.effective(projectOrg, projectId);
      const limits = deps.config.rateLimits;
      const rpm = ctx.policy?.requestsPerMinute ?? undefined;
      const buckets: Bucket[] = [];
      if (ctx.actor?.type === 'api_key') buckets.push({ key: `rl:key:${ctx.actor.keyId}`, perMinute: rpm ?? limits.apiKeyPerMinute });
      else if (ctx.actor?.type === 'user') buckets.push({ key: `rl:user:${ctx.actor.userId}`, perMinute: limits.userPerMinute });
      else buckets.push({ key: `rl:ip:${req.ip}`, perMinute: limits.anonymousPerMinute });
      if (projectId && projectOrg) buckets.push({ key: `rl:project:${projectId}`, perMinute: rpm ?? limits.projectPerMinute });
      const decision = await services.rateLimiter.take(buckets);
      res.setHeader('x-ratelimit-limit', String(decision.limit));
      res.setHeader('x-ratelimit-remaining', String(Math.max(0, decision.remaining)));
      if (!decision.allowed) {
        const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
        throw new AppError('rate_limited', `Too many requests; retry in ${seconds} s`, {
          headers: { 'retry-after': String(seconds) },
          details: { retry_after_ms: decision.retryAfterMs },
        });
      }

      // validation against openapi.yaml
      const problems = [];
      if (!operation.validateParams(ctx.params)) problems.push(...describeErrors(operation.validateParams.errors, 'path'));
      if (!operation.validateQuery(ctx.query)) problems.push(...describeErrors(operation.validateQuery.errors, 'query'));
      if (operation.validateBody) {
        const hasBody = req.body !== undefined;
        if (!hasBody && (req.header('content-length') ?? '0') !== '0' && !req.is('application/json')) {
          throw new AppError('unsupported_media_type', 'Send the request body as application/json');
        }
        if (!hasBody && operation.bodyRequired) problems.push({ location: 'body', path: '/', message: 'a JSON body is required' });
        else if (hasBody && !operation.validateBody(req.body)) problems.push(...describeErrors(operation.validateBody.errors, 'body'));
      }
      if (problems.length) {
        throw new AppError('validation_failed', `Invalid request: ${problems.map((p) => `${p.location}${p.path} ${p.message}`).join('; ')}`, {
          details: { errors: problems },
        });
      }

      // idempotency (Stripe-style) for creating operations that declare the header
      const idempotencyKey = req.header('idempotency-key');
      if (idempotencyKey && operation.idempotent) {
        const actorKey = ctx.actor ? (ctx.actor.type === 'user' ? `u:${ctx.actor.userId}` : `k:${ctx.actor.keyId}`) : `ip:${req.ip}`;
        const scope = `${actorKey}:${operation.operationId}`;
        const requestHash = createHash('sha256').update(JSON.stringify({ p: ctx.params, b: ctx.body ?? null })).digest('hex');
        const replay = await services.idempotency.begin(scope, idempotencyKey, requestHash);
        if (replay) {
          await ctx.audit({
            action: operation.operationId,
            resourceType: operation.path.split('/')[3] ?? 'api',
            ...tenantOf(ctx),
            details: { idempotent_replay: true, idempotency_key: idempotencyKey, status: replay.status },
          });
          res.setHeader('idempotent-replayed', 'true');
          send(res, { status: replay.status, body: replay.body });
          return;
        }
        idempotency = { scope, key: idempotencyKey };
      }

      const reply = (await handler(ctx)) ?? {};
      if (auditedInTransaction) {
        audited = true;
        res.locals.audited = true;
      }
      if (MUTATING.has(operation.method) && !audited) {
        await ctx.audit({ action: operation.operationId, resourceType: operation.path.split('/')[3] ?? 'api', ...tenantOf(ctx) });
      }
      if (idempotency) await services.idempotency.finish(idempotency.scope, idempotency.key, reply.status ?? 200, reply.body ?? null);
      if (!res.headersSent) send(res, reply);
      if (reply.afterSend) {
        const work = reply.afterSend().catch((error: unknown) => ctx.log.error({ err: error }, 'work after the response failed'));
        trackAfterResponse(work);
        await work;
      }
    } catch (error) {
      if (MUTATING.has(operation.method) && !audited) {
        const status = isAppError(error) ? error.status : 500;
        await ctx.audit({
          action: operation.operationId,
          resourceType: operation.path.split('/')[3] ?? 'api',
          ...tenantOf(ctx),
          result: status === 401 || status === 403 || status === 429 ? 'denied' : 'failure',
          details: { status, code: isAppError(error) ? error.code : 'internal_error' },
        }).catch((auditError) => ctx.log.error({ err: auditError }, 'audit write failed'));
      }
      if (idempotency) {
        if (isAppError(error) && error.status < 500) {
          await services.idempotency.finish(idempotency.scope, idempotency.key, error.status, {
            error: { code: error.code, message: error.message, trace_id: ctx.traceId },
          });
        } else {
          await services.idempotency.abandon(idempotency.scope, idempotency.key);
        }
      }
      throw error;
    }
  }
}

function tenantOf(ctx: RequestContext): { orgId: string | null; projectId: string | null } {
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const orgId = ctx.params.orgId && uuid.test(ctx.params.orgId) ? ctx.params.orgId : null;
  const projectId = ctx.params.projectId && uuid.test(ctx.params.projectId) ? ctx.params.projectId : null;
  return { orgId, projectId };
}

export function toJson(value: unknown): string {
  // A replacer makes JSON.stringify call back for every value; most bodies hold no bigint, and
  // for those that do the plain call throws a TypeError before anything is sent.
  try {
    return JSON.stringify(value);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    return JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? v.toString() : v));
  }
}

function send(res: Response, reply: Reply): void {
  for (const [name, value] of Object.entries(reply.headers ?? {})) res.setHeader(name, value);
  res.status(reply.status ?? 200);
  if (reply.body === undefined || reply.status === 204) {
    res.end();
    return;
  }
  res.type('application/json').send(toJson(reply.body));
}
