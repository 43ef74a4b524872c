// Shape of the Docker deployment files (docker-compose.yml, Dockerfile, .dockerignore,
// .env.example). No Docker engine is needed: the files are parsed and checked against the
// configuration schema of core/src/config.ts, so renaming a variable, dropping a service or a
// health check, or forgetting a new config key in .env.example fails here.
import { DEV_SERVER_DYNAMIC_CONFIG, DEV_SERVER_SQLITE_PRAGMAS, SEARCH_ATTRIBUTES } from '@deepspace/core/run-events';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from '@deepspace/core';
import { GATEWAY_NODE_FLAGS } from '../../gateway/src/node-flags.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

// ───────────────────────────── helpers ─────────────────────────────

type Env = Record<string, string | null>;
interface Healthcheck {
  test?: string | string[];
  disable?: boolean;
}
interface Service {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string | string[];
  entrypoint?: string | string[];
  environment?: Env | string[];
  ports?: (string | number | { target: number; published?: number | string })[];
  volumes?: (string | { type?: string; source?: string; target: string })[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: Healthcheck;
  restart?: string;
  user?: string;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const composeText = read('docker-compose.yml');
// `merge: true`: docker compose resolves YAML merge keys (<<: *anchor), so the test must too.
const compose = parse(composeText, { merge: true }) as Compose;
const services = compose.services ?? {};

function service(name: string): Service {
  const s = services[name];
  if (!s) throw new Error(`docker-compose.yml has no service "${name}"`);
  return s;
}

function envOf(name: string): Env {
  const e = service(name).environment;
  if (!e) return {};
  if (Array.isArray(e)) {
    return Object.fromEntries(
      e.map((entry) => {
        const i = entry.indexOf('=');
        return i < 0 ? [entry, null] : [entry.slice(0, i), entry.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v === null ? null : String(v)]));
}

/**
 * Compose's variable substitution: `${X:-default}`, `${X-default}`, `${X:?message}`, `${X}`, `$$`.
 * `vars` plays the role of .env / the shell; an empty `vars` is a user who set nothing.
 */
function interpolate(value: string, vars: Record<string, string> = {}): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g, (match, name, op, arg) => {
    if (match === '$$') return '$';
    const v = vars[name as string];
    const isSet = v !== undefined && (v !== '' || !(op as string | undefined)?.startsWith(':'));
    if (!op) return v ?? '';
    if ((op as string).endsWith('-')) return isSet ? v! : (arg as string);
    if (!isSet) throw new Error(`required variable ${name}: ${arg}`);
    return v!;
  });
}

/** The environment a container gets (unset pass-through variables are dropped). */
function resolvedEnv(name: string, vars: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(envOf(name))) {
    if (v === null) {
      if (vars[k] !== undefined) out[k] = vars[k];
    } else {
      out[k] = interpolate(v, vars);
    }
  }
  return out;
}

function dependsOn(name: string): Record<string, string> {
  const d = service(name).depends_on;
  if (!d) return {};
  if (Array.isArray(d)) return Object.fromEntries(d.map((n) => [n, 'service_started']));
  return Object.fromEntries(Object.entries(d).map(([n, v]) => [n, v?.condition ?? 'service_started']));
}

/** Ports as "host:container" (host IP and protocol dropped; numbers only, after substitution). */
function portsOf(name: string): string[] {
  return (service(name).ports ?? []).map((p) => {
    if (typeof p === 'object') return `${p.published ?? ''}:${p.target}`;
    const parts = interpolate(String(p)).replace(/\/(tcp|udp)$/, '').split(':');
    const container = parts.at(-1)!;
    const host = parts.length >= 2 ? parts.at(-2)! : '';
    return `${host}:${container}`;
  });
}

function commandText(name: string): string {
  const c = service(name).command;
  return Array.isArray(c) ? c.join(' ') : (c ?? '');
}

function healthTest(name: string): string {
  const t = service(name).healthcheck?.test;
  return Array.isArray(t) ? t.join(' ') : (t ?? '');
}

/** The env keys of the config schema, read from the `envSchema` object literal's source. */
function configKeysFromSource(): string[] {
  const src = read('core/src/config.ts');
  const start = src.indexOf('const envSchema');
  if (start < 0) throw new Error('core/src/config.ts: `const envSchema` not found');
  const open = src.indexOf('.object({', start);
  if (open < 0) throw new Error('core/src/config.ts: `envSchema = z.object({` not found');
  // Walk to the brace that closes the object literal.
  let depth = 0;
  let end = -1;
  for (let i = open + '.object('.length; i < src.length; i++) {
    const ch = src[i];
    if (ch === '{') depth++;
    else if (ch === '}' && --depth === 0) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new Error('core/src/config.ts: end of the envSchema object not found');
  const body = src.slice(open, end);
  return [...body.matchAll(/^\s*([A-Z][A-Z0-9_]*)\s*:/gm)].map((m) => m[1]!);
}

/** The env keys loadConfig actually reads: a Proxy records every property the schema looks up. */
function configKeysReadByLoadConfig(): string[] {
  const seen = new Set<string>();
  const env = new Proxy({} as NodeJS.ProcessEnv, {
    get(_target, key) {
      if (typeof key === 'string') seen.add(key);
      return undefined;
    },
  });
  loadConfig(env);
  return [...seen];
}

const CONFIG_KEYS = configKeysFromSource();

function parseDotenv(text: string): { entries: [string, string][]; lines: string[] } {
  const lines = text.split('\n');
  const entries: [string, string][] = [];
  for (const line of lines) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (m) entries.push([m[1]!, m[2]!]);
  }
  return { entries, lines };
}

const SECRETS = { SESSION_SECRET: 's'.repeat(48), API_KEY_PEPPER: 'p'.repeat(48) };

const APP_SERVICES = ['migrate', 'upstream-simulator', 'gateway', 'worker', 'web', 'admin'];
const BACKEND_SERVICES = ['gateway', 'worker', 'migrate']; // those that load core/src/config.ts

// ───────────────────────────── the config schema ─────────────────────────────

describe('core/src/config.ts key list', () => {
  it('is read consistently from the source and from loadConfig', () => {
    expect(CONFIG_KEYS.length).toBeGreaterThan(20);
    expect(CONFIG_KEYS).toEqual(expect.arrayContaining(['DATABASE_URL', 'GATEWAY_HOST', 'SESSION_SECRET', 'NEWAPI_BASE_URL']));
    expect(new Set(CONFIG_KEYS).size).toBe(CONFIG_KEYS.length);
    expect([...CONFIG_KEYS].sort()).toEqual(configKeysReadByLoadConfig().sort());
  });
});

// ───────────────────────────── docker-compose.yml ─────────────────────────────

describe('docker-compose.yml', () => {
  it('defines every service of the stack', () => {
    const expected = [
      'postgres', 'redis', 'minio', 'minio-setup', 'temporal', 'temporal-ui',
      'migrate', 'upstream-simulator', 'gateway', 'worker', 'web', 'admin',
    ];
    expect(Object.keys(services)).toEqual(expect.arrayContaining(expected));
  });

  it('uses the documented images for the infrastructure', () => {
    expect(service('postgres').image).toMatch(/^postgres:15(\b|$)/);
    expect(service('redis').image).toMatch(/^redis:7(\b|$)/);
    expect(service('minio').image).toMatch(/^minio\/minio(:|$)/);
    expect(commandText('minio')).toMatch(/^server \/data\b.*--console-address :9001/);
    expect(service('temporal').image).toMatch(/^temporalio\/temporal(:|$)/);
    expect(service('temporal-ui').image).toMatch(/^temporalio\/ui(:|$)/);
  });

  it('publishes the documented ports', () => {
    const expected: Record<string, string[]> = {
      postgres: ['5432:5432'],
      redis: ['6379:6379'],
      minio: ['9000:9000', '9001:9001'],
      temporal: ['7233:7233', '8233:8233'],
      'temporal-ui': ['8088:8080'],
      'upstream-simulator': ['4010:4010'],
      gateway: ['8080:8080'],
      web: ['3000:3000'],
      admin: ['3001:3001'],
    };
    for (const [name, ports] of Object.entries(expected)) {
      expect(portsOf(name).sort(), name).toEqual([...ports].sort());
    }
  });

  it('runs the Temporal dev server with its state on a volume at /data', () => {
    const command = service('temporal').command;
    expect(Array.isArray(command)).toBe(true);
    const args = (command as string[]).map(String);
    const flag = (name: string) => args[args.indexOf(name) + 1];
    expect(args.slice(0, 2)).toEqual(['server', 'start-dev']);
    expect(flag('--ip')).toBe('0.0.0.0');
    expect(flag('--db-filename')).toBe('/data/temporal.db');
    expect(flag('--ui-port')).toBe('8233');
    expect(args.filter((_, i) => args[i - 1] === '--sqlite-pragma')).toEqual([...DEV_SERVER_SQLITE_PRAGMAS]);
    const dynamic = args.filter((_, i) => args[i - 1] === '--dynamic-config-value');
    expect(dynamic).toEqual(expect.arrayContaining([...DEV_SERVER_DYNAMIC_CONFIG]));
    // The platform's search attributes must exist, or starting a chat run fails.
    const attributes = args.filter((_, i) => args[i - 1] === '--search-attribute');
    expect(attributes).toEqual(expect.arrayContaining(Object.entries(SEARCH_ATTRIBUTES).map(([n, t]) => `${n}=${t}`)));
    const volumes = (service('temporal').volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    expect(volumes.some((v) => /^[A-Za-z0-9][\w.-]*:\/data(:|$)/.test(v))).toBe(true);
    expect(healthTest('temporal')).toMatch(/temporal operator cluster health --address 127\.0\.0\.1:7233/);
    expect(envOf('temporal-ui').TEMPORAL_ADDRESS).toBe('temporal:7233');
  });

  it('gives every health check a test, and one to each service others wait on', () => {
    const mustHave: Record<string, RegExp> = {
      postgres: /pg_isready/,
      redis: /redis-cli ping/,
      minio: /mc ready local|\/minio\/health\/live/,
      temporal: /operator cluster health/,
      'upstream-simulator': /4010/,
      gateway: /\/readyz/,
      web: /3000/,
      admin: /3001/,
    };
    for (const [name, pattern] of Object.entries(mustHave)) {
      expect(service(name).healthcheck, `${name} has no healthcheck`).toBeDefined();
      expect(healthTest(name), name).toMatch(pattern);
    }
    for (const [name, s] of Object.entries(services)) {
      if (!s.healthcheck || s.healthcheck.disable) continue;
      const t = s.healthcheck.test;
      expect(Array.isArray(t) ? t.length > 1 : typeof t === 'string' && t.trim().length > 0, `${name}: healthcheck without test`).toBe(true);
    }
    // A condition can only be met by what the target defines.
    for (const name of Object.keys(services)) {
      for (const [target, condition] of Object.entries(dependsOn(name))) {
        expect(services[target], `${name} depends on unknown service ${target}`).toBeDefined();
        if (condition === 'service_healthy') {
          expect(services[target]!.healthcheck?.test, `${name} waits for ${target} to be healthy, which has no healthcheck`).toBeDefined();
        }
        if (condition === 'service_completed_successfully') {
          expect(['no', undefined], `${name} waits for ${target} to complete, so it must be a one-shot`).toContain(services[target]!.restart);
        }
      }
    }
  });

  it('orders start-up with the right depends_on conditions', () => {
    const healthy = 'service_healthy';
    const completed = 'service_completed_successfully';
    const required: Record<string, Record<string, string>> = {
      'minio-setup': { minio: healthy },
      'temporal-ui': { temporal: healthy },
      migrate: { postgres: healthy },
      gateway: { postgres: healthy, redis: healthy, temporal: healthy, migrate: completed },
      worker: { postgres: healthy, temporal: healthy, migrate: completed },
      web: { gateway: healthy },
      admin: { gateway: healthy },
    };
    for (const [name, deps] of Object.entries(required)) {
      expect(dependsOn(name), name).toMatchObject(deps);
    }
    // Gateway and worker use the S3 bucket, so they wait for its creation when it is automated.
    if (services['minio-setup']) {
      expect(dependsOn('gateway')['minio-setup']).toBe(completed);
      expect(dependsOn('worker')['minio-setup']).toBe(completed);
    }
  });

  it('builds every application service from the root Dockerfile, as one image', () => {
    const images = new Set<string | undefined>();
    for (const [name, s] of Object.entries(services)) {
      if (!s.build) continue;
      const build = typeof s.build === 'string' ? { context: s.build } : s.build;
      expect(path.resolve(ROOT, build.context ?? '.'), `${name}: build context`).toBe(ROOT);
      expect(build.dockerfile ?? 'Dockerfile', `${name}: dockerfile`).toBe('Dockerfile');
    }
    for (const name of APP_SERVICES) {
      expect(service(name).build, `${name} has no build`).toBeDefined();
      images.add(service(name).image);
    }
    expect(images.size, 'app services share one image name (built once)').toBe(1);
    expect([...images][0]).toBeTruthy();
    expect(existsSync(path.join(ROOT, 'Dockerfile'))).toBe(true);
  });

  it('runs the right process in each application service', () => {
    const scripts: Record<string, string[]> = {
      migrate: ['scripts/migrate.ts', 'scripts/seed.ts'],
      'upstream-simulator': ['tests/simulator/src/main.ts'],
      gateway: ['gateway/src/main.ts'],
      worker: ['temporal-workers/src/main.ts'],
    };
    for (const [name, files] of Object.entries(scripts)) {
      const command = commandText(name);
      for (const file of files) {
        // node, any node flags, the file
        expect(command, name).toMatch(new RegExp(`\\bnode (?:--\\S+ )*${file.replace(/[.]/g, '\\.')}\\b`));
        expect(existsSync(path.join(ROOT, file)), `${file} exists`).toBe(true);
      }
    }
    // The gateway runs with its Node flags wherever it is started.
    const gatewayRun = `node ${GATEWAY_NODE_FLAGS.join(' ')} gateway/src/main.ts`;
    expect(commandText('gateway')).toContain(gatewayRun);
    expect(read('Dockerfile')).toContain(`CMD ${JSON.stringify(['node', ...GATEWAY_NODE_FLAGS, 'gateway/src/main.ts']).replace(/,/g, ', ')}`);
    expect((JSON.parse(read('gateway/package.json')) as { scripts: Record<string, string> }).scripts.start).toBe(`node ${GATEWAY_NODE_FLAGS.join(' ')} src/main.ts`);
    // migrate, then seed, and the seed only when the migration succeeded
    expect(commandText('migrate')).toMatch(/node scripts\/migrate\.ts && node scripts\/seed\.ts/);
    expect(['no', undefined]).toContain(service('migrate').restart);
    expect(commandText('web')).toMatch(/\bnode web\/\.output\/server\/index\.mjs\b/);
    expect(commandText('admin')).toMatch(/\bnode admin\/\.output\/server\/index\.mjs\b/);
  });

  it('gives the gateway, worker and migrate job only keys of the config schema', () => {
    for (const name of BACKEND_SERVICES) {
      const unknown = Object.keys(envOf(name)).filter((k) => !CONFIG_KEYS.includes(k));
      expect(unknown, `${name}: env vars unknown to core/src/config.ts`).toEqual([]);
    }
  });

  it('wires the gateway and worker to the compose services', () => {
    for (const name of ['gateway', 'worker']) {
      const env = envOf(name);
      const resolved = resolvedEnv(name, SECRETS);
      expect(new URL(resolved.DATABASE_URL!).hostname, name).toBe('postgres');
      expect(new URL(resolved.REDIS_URL!).hostname, name).toBe('redis');
      expect(resolved.TEMPORAL_ADDRESS, name).toBe('temporal:7233');
      expect(resolved.GATEWAY_HOST, name).toBe('0.0.0.0');
      expect(resolved.GATEWAY_PORT, name).toBe('8080');
      expect(env.NEWAPI_BASE_URL, name).toBe('${NEWAPI_BASE_URL:-http://upstream-simulator:4010/v1}');
      expect(env.NEWAPI_API_KEY, name).toBe('${NEWAPI_API_KEY:-simulated}');
      expect(resolved.STORAGE_DRIVER, name).toBe('s3');
      expect(new URL(resolved.S3_ENDPOINT!).hostname, name).toBe('minio');
      // Secrets are required from .env (no silent default).
      expect(env.SESSION_SECRET, name).toMatch(/^\$\{SESSION_SECRET:\?.+\}$/);
      expect(env.API_KEY_PEPPER, name).toMatch(/^\$\{API_KEY_PEPPER:\?.+\}$/);
      expect(() => resolvedEnv(name, {}), name).toThrow(/SESSION_SECRET|API_KEY_PEPPER/);
      // A real upstream replaces the simulator.
      const real = resolvedEnv(name, { ...SECRETS, NEWAPI_BASE_URL: 'https://newapi.example/v1', NEWAPI_API_KEY: 'k' });
      expect(real.NEWAPI_BASE_URL).toBe('https://newapi.example/v1');
      expect(real.NEWAPI_API_KEY).toBe('k');
    }
    // The simulator listens on all interfaces of its container, on the port the URL above names.
    const sim = resolvedEnv('upstream-simulator');
    expect(sim.SIMULATOR_HOST).toBe('0.0.0.0');
    expect(sim.SIMULATOR_PORT).toBe('4010');
    // Its key (when it checks one) is the key gateway and worker send by default.
    if (sim.SIMULATOR_API_KEY !== undefined) expect(sim.SIMULATOR_API_KEY).toBe(resolvedEnv('gateway', SECRETS).NEWAPI_API_KEY);
    // The bucket the apps use is the one minio-setup creates.
    expect(commandText('minio-setup')).toMatch(/mc mb/);
  });

  it('resolves to configurations that core/src/config.ts accepts', () => {
    for (const name of BACKEND_SERVICES) {
      const config = loadConfig(resolvedEnv(name, SECRETS));
      expect(config.nodeEnv, name).toBe('production');
      expect(config.gateway.host, name).toBe('0.0.0.0');
      expect(config.gateway.port, name).toBe(8080);
      expect(config.storage.driver, name).toBe('s3');
      expect(config.temporal.address, name).toBe('temporal:7233');
      expect(config.secrets.session, name).toBe(SECRETS.SESSION_SECRET);
    }
    expect(loadConfig(resolvedEnv('gateway', SECRETS)).upstream.baseUrl).toBe('http://upstream-simulator:4010/v1');
    // The seed labels models "simulated" only when it sees no upstream URL, as under `npm start`.
    expect(loadConfig(resolvedEnv('migrate', SECRETS)).upstream.baseUrl).toBeUndefined();
    expect(loadConfig(resolvedEnv('migrate', { ...SECRETS, NEWAPI_BASE_URL: 'https://n.example/v1', NEWAPI_API_KEY: 'k' })).upstream.baseUrl)
      .toBe('https://n.example/v1');
  });

  it('falls back to the config defaults for the tuning knobs it passes through', () => {
    // Deliberate compose-specific fallbacks (the rest must equal core/src/config.ts defaults).
    const composeSpecific = new Set(['NEWAPI_BASE_URL', 'NEWAPI_API_KEY', 'PUBLIC_WEB_URL', 'CORS_ORIGINS', 'S3_BUCKET']);
    const defaults = loadConfig({});
    let checked = 0;
    for (const name of BACKEND_SERVICES) {
      for (const [key, value] of Object.entries(envOf(name))) {
        const m = value === null ? null : /^\$\{([A-Z0-9_]+):-([^}]*)\}$/.exec(value);
        if (!m || m[1] !== key || composeSpecific.has(key)) continue;
        expect(loadConfig({ [key]: m[2] }), `${name}: fallback of ${key}`).toEqual(defaults);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('points web and admin at the gateway as the browser sees it, and lets them through CORS', () => {
    const gateway = loadConfig(resolvedEnv('gateway', SECRETS));
    for (const [name, port] of [['web', '3000'], ['admin', '3001']] as const) {
      const env = resolvedEnv(name);
      expect(env.NUXT_PUBLIC_GATEWAY_URL, name).toBe('http://localhost:8080');
      expect(env.PORT, name).toBe(port);
      expect(env.HOST, name).toBe('0.0.0.0');
      expect(gateway.gateway.corsOrigins, name).toContain(`http://localhost:${port}`);
    }
  });

  it('declares every named volume it mounts', () => {
    const declared = Object.keys(compose.volumes ?? {});
    for (const [name, s] of Object.entries(services)) {
      for (const v of s.volumes ?? []) {
        const source = typeof v === 'string' ? v.split(':')[0]! : (v.source ?? '');
        if (!source || /^[./~]/.test(source)) continue; // bind mounts
        expect(declared, `${name} mounts undeclared volume ${source}`).toContain(source);
      }
    }
    const mounts = (name: string) => (service(name).volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
    expect(mounts('postgres').some((v) => v.endsWith(':/var/lib/postgresql/data'))).toBe(true);
    expect(mounts('minio').some((v) => v.endsWith(':/data'))).toBe(true);
  });

  it('documents in .env.example every variable it substitutes', () => {
    const documented = new Set(parseDotenv(read('.env.example')).entries.map(([k]) => k));
    // Every string of the parsed file (comments are not substituted, so they do not count).
    const strings: string[] = [];
    const walk = (node: unknown): void => {
      if (typeof node === 'string') strings.push(node);
      else if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === 'object') Object.values(node).forEach(walk);
    };
    walk(compose);
    const substituted = new Set(
      strings.flatMap((str) => [...str.replace(/\$\$/g, '').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1]!)),
    );
    expect(substituted.size).toBeGreaterThan(5);
    expect([...substituted].filter((k) => !documented.has(k))).toEqual([]);
  });
});

// ───────────────────────────── .env.example ─────────────────────────────

describe('.env.example', () => {
  const { entries, lines } = parseDotenv(read('.env.example'));
  const keys = entries.map(([k]) => k);

  it('lists every key of the config schema, plus those of scripts/start.ts', () => {
    expect(CONFIG_KEYS.filter((k) => !keys.includes(k))).toEqual([]);
    expect(keys).toEqual(expect.arrayContaining(['SIMULATOR_PORT', 'DEEPSPACE_APPS', 'DEEPSPACE_DATA_DIR']));
    expect(new Set(keys).size, 'no key twice').toBe(keys.length);
  });

  it('comments every variable on the line above it', () => {
    lines.forEach((line, i) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(line)) return;
      expect(lines[i - 1], `comment above ${line}`).toMatch(/^#\s*\S/);
    });
  });

  it('shows the real defaults of core/src/config.ts', () => {
    // Empty lines stand for "unset" (optional values and the compose-required secrets).
    const given = Object.fromEntries(entries.filter(([k, v]) => CONFIG_KEYS.includes(k) && v !== ''));
    expect(Object.keys(given).length).toBeGreaterThan(20);
    expect(loadConfig(given)).toEqual(loadConfig({}));
    const start = read('scripts/start.ts');
    expect(start).toMatch(/SIMULATOR_PORT \?\? 4010/);
    expect(Object.fromEntries(entries).SIMULATOR_PORT).toBe('4010');
  });
});

// ───────────────────────────── Dockerfile and .dockerignore ─────────────────────────────

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  body: Instruction[];
}

function dockerfileStages(): Stage[] {
  const text = read('Dockerfile').replace(/\\\r?\n/g, ' ');
  const stages: Stage[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    const args = m[2]!.replace(/\s+/g, ' ');
    if (op === 'FROM') {
      const f = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/i.exec(args)!;
      stages.push({ from: f[1]!, name: f[2]?.toLowerCase(), body: [] });
    } else if (stages.length) {
      stages.at(-1)!.body.push({ op, args });
    }
  }
  return stages;
}

describe('Dockerfile', () => {
  const stages = dockerfileStages();
  const runtime = stages.at(-1)!;
  const stage = (name: string) => stages.find((s) => s.name === name);

  it('has deps, build and runtime stages, the runtime on Node 24 as a non-root user', () => {
    expect(stages.map((s) => s.name)).toEqual(expect.arrayContaining(['deps', 'build', 'runtime']));
    expect(runtime.name).toBe('runtime');
    expect(runtime.from).toMatch(/^node:24[.\d]*-bookworm-slim$/);
    const users = runtime.body.filter((i) => i.op === 'USER').map((i) => i.args.split(':')[0]);
    expect(users.length).toBeGreaterThan(0);
    expect(['root', '0']).not.toContain(users.at(-1));
    expect(runtime.body.some((i) => i.op === 'COPY' && /--from=build\b/.test(i.args))).toBe(true);
  });

  it('installs with npm ci after copying every workspace manifest and the Prisma inputs', () => {
    const deps = stage('deps')!;
    expect(deps).toBeDefined();
    const ci = deps.body.findIndex((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
    expect(ci).toBeGreaterThan(-1);
    const copiedBefore = deps.body.slice(0, ci).filter((i) => i.op === 'COPY').map((i) => i.args).join(' ');
    const pkg = JSON.parse(read('package.json')) as { workspaces: string[] };
    for (const file of ['package.json', 'package-lock.json', ...pkg.workspaces.map((w) => `${w}/package.json`)]) {
      expect(copiedBefore, `COPY ${file} before npm ci`).toMatch(new RegExp(`(^|\\s)${file.replace(/[.]/g, '\\.')}(\\s|$)`));
    }
    // postinstall runs scripts/prisma-generate.mjs, which needs prisma/ (schema + config)
    expect(copiedBefore).toMatch(/(^|\s)scripts\/prisma-generate\.mjs(\s|$)/);
    expect(copiedBefore).toMatch(/(^|\s)prisma\/?(\s|$)/);
  });

  it('builds the web and admin apps with nuxt build', () => {
    const runs = stages.flatMap((s) => s.body).filter((i) => i.op === 'RUN').map((i) => i.args).join('\n');
    expect(runs).toMatch(/cd web && npx nuxt build/);
    expect(runs).toMatch(/cd \.\.\/admin && npx nuxt build|cd admin && npx nuxt build/);
  });
});

/** Minimal .dockerignore matcher (`*`, `?`, `**`, `!` exceptions; a match excludes the subtree). */
function dockerignored(file: string, patterns: string[]): boolean {
  const toRegex = (p: string) =>
    new RegExp(
      `^${p
        .replace(/^\/+/, '')
        .replace(/\/+$/, '')
        .split(/(\*\*\/|\*\*|\*|\?)/)
        .map((part) => {
          if (part === '**/') return '(?:.*/)?';
          if (part === '**') return '.*';
          if (part === '*') return '[^/]*';
          if (part === '?') return '[^/]';
          return part.replace(/[.+^${}()|[\]\\]/g, '\\$&');
        })
        .join('')}$`,
    );
  const segments = file.split('/');
  const prefixes = segments.map((_, i) => segments.slice(0, i + 1).join('/'));
  let excluded = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRegex(negate ? raw.slice(1) : raw);
    if (prefixes.some((p) => re.test(p))) excluded = !negate;
  }
  return excluded;
}

describe('.dockerignore', () => {
  const patterns = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('keeps dependencies, build output, local state and secrets out of the build context', () => {
    for (const file of [
      'node_modules/x/index.js', 'web/node_modules/x/index.js', 'core/src/generated/prisma/client.ts',
      'web/.nuxt/nuxt.d.ts', 'admin/.output/server/index.mjs', '.data/temporal.db', '.env', '.env.local', '.git/HEAD',
    ]) {
      expect(dockerignored(file, patterns), `${file} is excluded`).toBe(true);
    }
  });

  it('keeps everything the image needs', () => {
    const pkg = JSON.parse(read('package.json')) as { workspaces: string[] };
    for (const file of [
      'package.json', 'package-lock.json', 'prisma/schema.prisma', 'prisma/prisma.config.ts', 'prisma/migrations/x/migration.sql',
      'scripts/prisma-generate.mjs', 'scripts/migrate.ts', 'scripts/seed.ts', 'scripts/lib/services.ts',
      'tests/simulator/src/main.ts', 'gateway/src/main.ts', 'temporal-workers/src/main.ts', 'core/src/config.ts',
      'web/nuxt.config.ts', 'web/app/app.vue', 'admin/public/favicon.svg', 'tsconfig.base.json', '.env.example',
      ...pkg.workspaces.map((w) => `${w}/package.json`),
    ]) {
      expect(dockerignored(file, patterns), `${file} is kept`).toBe(false);
    }
  });
});
