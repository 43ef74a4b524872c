// The Express application: trace → CORS → health → JSON body → the API router, whose every route
// runs auth → rate limit → policy → validation → handler (http/router.ts), then the error mapper.
import express, { type Express } from 'express';
import type { GatewayDeps } from './deps.ts';
import { errorHandler, notFoundHandler } from './middleware/errors.ts';
import { traceMiddleware } from './middleware/trace.ts';
import { loadOperations } from './http/openapi.ts';
import { ApiRouter } from './http/router.ts';
import { createServices } from './http/services.ts';
import { healthRoutes } from './routes/health.ts';
import { authRoutes } from './routes/auth.ts';
import { orgRoutes } from './routes/orgs.ts';
import { projectRoutes } from './routes/projects.ts';
import { openAiRoutes } from './routes/openai-compatible.ts';
import { billingRoutes } from './routes/billing.ts';
import { chatRoutes } from './routes/chat.ts';
import { workflowRoutes } from './routes/workflows.ts';
import { knowledgeRoutes } from './routes/knowledge.ts';
import { createKnowledgeRuntime } from '@deepspace/core/knowledge/runtime';

export const JSON_BODY_LIMIT = '1mb';

export function createApp(deps: GatewayDeps): Express {
  // Uploaded files and the knowledge index, from config unless the caller built them.
  deps.knowledge ??= createKnowledgeRuntime(deps.config);
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.config.gateway.trustProxy);
  app.set('etag', false);

  app.use(traceMiddleware(deps.logger));
  app.use(corsMiddleware(deps.config.gateway.corsOrigins));
  healthRoutes(app, deps);
  app.use(express.json({ limit: JSON_BODY_LIMIT, strict: true }));

  const api = new ApiRouter(deps, createServices(deps), loadOperations());
  api.servedElsewhere('healthz', 'readyz');
  // First: the router tries routes in order, and /v1 is the hot path (its paths overlap no other).
  openAiRoutes(api);
  authRoutes(api);
  orgRoutes(api);
  projectRoutes(api);
  billingRoutes(api);
  chatRoutes(api);
  workflowRoutes(api);
  knowledgeRoutes(api);
  api.assertComplete();
  app.use(api.router);

  app.use(notFoundHandler);
  app.use(errorHandler(deps.prisma));
  return app;
}

/** Browsers only reach the gateway from the configured web/admin origins, with cookies. */
function corsMiddleware(origins: string[]): express.RequestHandler {
  const allowed = new Set(origins);
  return (req, res, next) => {
    const origin = req.header('origin');
    if (origin && allowed.has(origin)) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
      res.setHeader('vary', 'Origin');
      res.setHeader('access-control-expose-headers', 'x-trace-id, retry-after, idempotent-replayed');
      if (req.method === 'OPTIONS') {
        res.setHeader('access-control-allow-methods', 'GET, POST, PUT, PATCH, DELETE, OPTIONS');
        res.setHeader('access-control-allow-headers', 'authorization, content-type, idempotency-key, traceparent, last-event-id');
        res.setHeader('access-control-max-age', '600');
        res.status(204).end();
        return;
      }
    }
    next();
  };
}
