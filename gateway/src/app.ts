// The Express application: the pipeline `trace → (auth → rate limit → policy) → handler`, then
// the single error mapper. Routes are mounted per resource; every later feature plugs in here.
import express, { type Express } from 'express';
import type { GatewayDeps } from './deps.ts';
import { errorHandler, notFoundHandler } from './middleware/errors.ts';
import { traceMiddleware } from './middleware/trace.ts';
import { healthRoutes } from './routes/health.ts';

export function createApp(deps: GatewayDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', deps.config.gateway.trustProxy);
  app.set('etag', false);

  app.use(traceMiddleware(deps.logger));
  app.use(corsMiddleware(deps.config.gateway.corsOrigins));
  app.use(healthRoutes(deps));
  app.use(express.json({ limit: '1mb', strict: true }));

  app.use(notFoundHandler);
  app.use(errorHandler);
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
      res.setHeader('access-control-expose-headers', 'x-trace-id, retry-after');
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
