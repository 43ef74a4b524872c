// gateway/openapi.yaml is the contract: each Express route is registered from its operation, and
// requests are validated against it with ajv. A route the spec doesn't describe cannot be
// registered (see http/router.ts), so the spec and the code cannot drift.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ValidateFunction, type ErrorObject } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse as parseYaml } from 'yaml';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url));
const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;
export type HttpMethod = (typeof METHODS)[number];

export interface Operation {
  method: HttpMethod;
  /** OpenAPI path, e.g. /api/v1/orgs/{orgId} */
  path: string;
  /** Express path, e.g. /api/v1/orgs/:orgId */
  expressPath: string;
  operationId: string;
  /** 'public': no auth; 'session': signed-in users only; 'any': users, or API keys when `scope` is set. */
  auth: 'public' | 'session' | 'any';
  /** For API keys: the scope this operation needs; 'any' means any key of the project. */
  scope: string | undefined;
  /** Declares the Idempotency-Key header: a replay with the same key returns the first response. */
  idempotent: boolean;
  validateBody: ValidateFunction | undefined;
  bodyRequired: boolean;
  validateQuery: ValidateFunction;
  validateParams: ValidateFunction;
}

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: Record<string, unknown>;
  $ref?: string;
}

export function loadSpec(path: string = OPENAPI_PATH): Record<string, any> {
  return parseYaml(readFileSync(path, 'utf8'));
}

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

export function loadOperations(spec: Record<string, any> = loadSpec()): Map<string, Operation> {
  // The whole document is one schema resource so `#/components/...` refs resolve in place.
  const ajv = new Ajv2020({ strict: false, allErrors: true, useDefaults: true });
  const coercing = new Ajv2020({ strict: false, allErrors: true, coerceTypes: true, useDefaults: true });
  addFormats(ajv);
  addFormats(coercing);
  ajv.addSchema(spec, 'openapi.json');
  coercing.addSchema(spec, 'openapi.json');

  const resolveParam = (param: Parameter): Parameter => {
    if (!param.$ref) return param;
    const name = param.$ref.replace('#/components/parameters/', '');
    return spec.components.parameters[name];
  };

  const operations = new Map<string, Operation>();
  for (const [path, item] of Object.entries<any>(spec.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const params: Parameter[] = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(resolveParam);
      const schemaFor = (where: 'path' | 'query') => {
        const own = params.filter((p) => p.in === where);
        return {
          type: 'object',
          additionalProperties: where === 'path',
          properties: Object.fromEntries(own.map((p) => [p.name, p.schema ? rewriteRefs(p.schema) : {}])),
          required: own.filter((p) => p.required || where === 'path').map((p) => p.name),
        };
      };
      const bodySchemaPath = op.requestBody?.content?.['application/json']?.schema
        ? pointer('paths', path, method, 'requestBody', 'content', 'application/json', 'schema')
        : undefined;
      const security: unknown[] | undefined = op.security ?? spec.security;
      const auth: Operation['auth'] =
        Array.isArray(security) && security.length === 0
          ? 'public'
          : security?.every((s) => Object.keys(s as object).includes('session'))
            ? 'session'
            : 'any';
      const operation: Operation = {
        method,
        path,
        expressPath: path.replace(/\{(\w+)\}/g, ':$1'),
        operationId: op.operationId,
        auth,
        scope: op['x-scope'],
        idempotent: params.some((p) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key'),
        validateBody: bodySchemaPath ? ajv.compile({ $ref: `openapi.json#/${bodySchemaPath}` }) : undefined,
        bodyRequired: Boolean(op.requestBody?.required),
        validateQuery: coercing.compile(schemaFor('query')),
        validateParams: coercing.compile(schemaFor('path')),
      };
      operations.set(`${method.toUpperCase()} ${operation.expressPath}`, operation);
    }
  }
  return operations;
}

/** Parameter schemas are compiled standalone, so point their refs into the registered document. */
function rewriteRefs(schema: unknown): any {
  if (Array.isArray(schema)) return schema.map(rewriteRefs);
  if (schema && typeof schema === 'object') {
    return Object.fromEntries(
      Object.entries(schema).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `openapi.json${v}` : rewriteRefs(v)]),
    );
  }
  return schema;
}

export function describeErrors(errors: ErrorObject[] | null | undefined, where: string) {
  return (errors ?? []).map((e) => ({
    location: where,
    path: e.instancePath || (e.params && 'missingProperty' in e.params ? `/${String(e.params.missingProperty)}` : '/'),
    message:
      e.keyword === 'additionalProperties'
        ? `unknown field "${String((e.params as { additionalProperty: string }).additionalProperty)}"`
        : (e.message ?? 'is invalid'),
  }));
}
