// A small client for the gateway's HTTP API that remembers the trace id of every mutating call,
// so suites can prove each one left an audit row.
import { randomBytes } from 'node:crypto';
import { readJson, type Json } from './http.ts';

export interface ApiResponse {
  status: number;
  body: Json;
  headers: Headers;
  traceId: string;
}

export const mutationTraceIds: string[] = [];
const mutationLabels = new Map<string, string>();

export class ApiClient {
  readonly baseUrl: string;
  cookie: string | undefined;
  apiKey: string | undefined;

  constructor(baseUrl: string, credentials: { cookie?: string; apiKey?: string } = {}) {
    this.baseUrl = baseUrl;
    this.cookie = credentials.cookie;
    this.apiKey = credentials.apiKey;
  }

  withApiKey(apiKey: string): ApiClient {
    return new ApiClient(this.baseUrl, { apiKey });
  }

  anonymous(): ApiClient {
    return new ApiClient(this.baseUrl);
  }

  async request(
    method: string,
    path: string,
    options: { body?: unknown; rawBody?: string | Uint8Array | FormData; headers?: Record<string, string> } = {},
  ): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.cookie) headers.cookie = this.cookie;
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    let body: string | Uint8Array | FormData | undefined;
    if (options.rawBody !== undefined) body = options.rawBody;
    else if (options.body !== undefined) {
      body = JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.baseUrl}${path}`, { method, headers, body });
    const text = await res.text();
    const traceId = res.headers.get('x-trace-id') ?? '';
    if (method !== 'GET') {
      mutationTraceIds.push(traceId);
      mutationLabels.set(traceId, `${method} ${path} → ${res.status}`);
    }
    let parsed: Json = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    const setCookie = res.headers.get('set-cookie');
    const session = setCookie && /ds_session=([^;]*)/.exec(setCookie);
    if (session) this.cookie = session[1] ? `ds_session=${session[1]}` : undefined;
    return { status: res.status, body: parsed, headers: res.headers, traceId };
  }

  get(path: string) {
    return this.request('GET', path);
  }
  post(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request('POST', path, { body: body ?? {}, headers });
  }
  put(path: string, body: unknown) {
    return this.request('PUT', path, { body });
  }
  patch(path: string, body: unknown) {
    return this.request('PATCH', path, { body });
  }
  delete(path: string) {
    return this.request('DELETE', path);
  }
  /** multipart/form-data with one file in the field `file` (fetch sets the boundary). */
  upload(path: string, file: { name: string; bytes: Uint8Array; type?: string }, field = 'file') {
    const form = new FormData();
    form.append(field, new Blob([file.bytes as Uint8Array<ArrayBuffer>], { type: file.type ?? 'application/octet-stream' }), file.name);
    return this.request('POST', path, { rawBody: form });
  }
}

export function uniqueEmail(label = 'user'): string {
  return `${label}-${randomBytes(5).toString('hex')}@example.test`;
}

export interface Tenant {
  client: ApiClient;
  user: Json;
  org: Json;
  project: Json;
  email: string;
  password: string;
}

/** Signs up a fresh user: their own organization, default project and a session. */
export async function signUp(baseUrl: string, label = 'user'): Promise<Tenant> {
  const client = new ApiClient(baseUrl);
  const email = uniqueEmail(label);
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const res = await client.post('/api/v1/auth/signup', { email, password, name: `${label} ${email.slice(-16, -13)}`, organization_name: `${label} org ${randomBytes(3).toString('hex')}` });
  if (res.status !== 201) throw new Error(`signup failed: ${res.status} ${JSON.stringify(res.body)}`);
  return { client, user: res.body.user, org: res.body.organization, project: res.body.project, email, password };
}

export async function createKey(tenant: Tenant, scopes: string[], projectId: string = tenant.project.id): Promise<string> {
  const res = await tenant.client.post(`/api/v1/projects/${projectId}/api-keys`, { name: `key ${scopes.join(',')}`, scopes });
  if (res.status !== 201) throw new Error(`api key creation failed: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.secret as string;
}

export async function readBody(res: Response): Promise<Json> {
  return readJson(res);
}

/** Every mutating call made through ApiClient in this test file has an audit row with its trace id. */
export async function missingAuditTraceIds(prisma: { auditLog: { findMany(args: object): Promise<Array<{ traceId: string }>> } }): Promise<string[]> {
  const wanted = [...new Set(mutationTraceIds)];
  const rows = await prisma.auditLog.findMany({ where: { traceId: { in: wanted } }, select: { traceId: true } });
  const found = new Set(rows.map((r) => r.traceId));
  return wanted.filter((t) => !found.has(t)).map((t) => `${t} (${mutationLabels.get(t)})`);
}
