/**
 * Per-request simulator controls, chosen by HTTP headers or by directives embedded in the last user
 * message (so tests can drive faults through layers that do not forward headers).
 *
 * Headers                      Directive in message text
 *   x-sim-fault: <kind>          [[sim:fault=<kind>]]
 *   x-sim-fault-times: N         [[sim:fault_times=N]]
 *   x-sim-first-token-ms: N      [[sim:first_token_ms=N]]
 *   x-sim-token-ms: N            [[sim:token_ms=N]]
 *   x-sim-output-tokens: N       [[sim:output_tokens=N]]
 *
 * Headers take precedence over directives.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { invalidRequest } from './errors.ts';

export const FAULT_KINDS = ['http_500', 'http_429', 'timeout', 'disconnect', 'slow'] as const;

/** `http_<status>` (any 4xx/5xx), `timeout`, `disconnect`, `slow`, or `none` (explicitly no fault). */
export type FaultKind = string;

export interface RequestControls {
  fault?: FaultKind;
  /** Inject the fault only for the first N identical requests (then serve normally). */
  faultTimes?: number;
  firstTokenMs?: number;
  tokenMs?: number;
  outputTokens?: number;
}

export const MAX_OUTPUT_TOKENS = 32_768;
const MAX_LATENCY_MS = 600_000;

const DIRECTIVE_RE = /\[\[sim:([A-Za-z_]+)=([^\]\s]*)\]\]/g;

const HEADER_TO_KEY: Record<string, keyof RequestControls> = {
  'x-sim-fault': 'fault',
  'x-sim-fault-times': 'faultTimes',
  'x-sim-first-token-ms': 'firstTokenMs',
  'x-sim-token-ms': 'tokenMs',
  'x-sim-output-tokens': 'outputTokens',
};

const DIRECTIVE_TO_KEY: Record<string, keyof RequestControls> = {
  fault: 'fault',
  fault_times: 'faultTimes',
  first_token_ms: 'firstTokenMs',
  token_ms: 'tokenMs',
  output_tokens: 'outputTokens',
};

export function isValidFault(kind: string): boolean {
  if (kind === 'timeout' || kind === 'disconnect' || kind === 'slow' || kind === 'none') return true;
  const m = /^http_(\d{3})$/.exec(kind);
  if (!m) return false;
  const status = Number(m[1]);
  return status >= 400 && status <= 599;
}

function setControl(target: RequestControls, key: keyof RequestControls, raw: string, source: string): void {
  const value = raw.trim();
  if (key === 'fault') {
    const kind = value.toLowerCase();
    if (!isValidFault(kind)) {
      throw invalidRequest(
        `Unknown simulator fault '${value}' (from ${source}); expected one of http_<4xx|5xx>, timeout, disconnect, slow, none.`,
        source,
        'invalid_sim_fault',
      );
    }
    target.fault = kind;
    return;
  }
  if (!/^\d+$/.test(value)) {
    throw invalidRequest(`Simulator control ${source} must be a non-negative integer, got '${value}'.`, source, 'invalid_sim_control');
  }
  const n = Number(value);
  if (key === 'outputTokens') {
    if (n < 1 || n > MAX_OUTPUT_TOKENS) {
      throw invalidRequest(`Simulator control ${source} must be between 1 and ${MAX_OUTPUT_TOKENS}.`, source, 'invalid_sim_control');
    }
  } else if (key === 'faultTimes') {
    if (n < 1) throw invalidRequest(`Simulator control ${source} must be at least 1.`, source, 'invalid_sim_control');
  } else if (n > MAX_LATENCY_MS) {
    throw invalidRequest(`Simulator control ${source} must be at most ${MAX_LATENCY_MS} ms.`, source, 'invalid_sim_control');
  }
  target[key] = n as never;
}

/** Parse `[[sim:key=value]]` directives out of a text. Throws a 400 for unknown keys or bad values. */
export function parseDirectives(text: string): RequestControls {
  const out: RequestControls = {};
  for (const m of text.matchAll(DIRECTIVE_RE)) {
    const name = (m[1] ?? '').toLowerCase();
    const key = DIRECTIVE_TO_KEY[name];
    if (!key) {
      throw invalidRequest(`Unknown simulator directive '[[sim:${m[1]}=...]]'.`, 'messages', 'invalid_sim_control');
    }
    setControl(out, key, m[2] ?? '', `[[sim:${name}]]`);
  }
  return out;
}

/** Remove all directives from a text (used when echoing the user's words back). */
export function stripDirectives(text: string): string {
  return text.replace(DIRECTIVE_RE, ' ');
}

export function parseHeaderControls(headers: IncomingHttpHeaders): RequestControls {
  const out: RequestControls = {};
  for (const [header, key] of Object.entries(HEADER_TO_KEY)) {
    const raw = headers[header];
    if (raw === undefined) continue;
    const value = Array.isArray(raw) ? raw[raw.length - 1] ?? '' : raw;
    if (value.trim() === '') continue;
    setControl(out, key, value, header);
  }
  return out;
}

/** Header controls win over directive controls. */
export function mergeControls(fromDirectives: RequestControls, fromHeaders: RequestControls): RequestControls {
  const merged: RequestControls = { ...fromDirectives };
  for (const [k, v] of Object.entries(fromHeaders)) {
    if (v !== undefined) (merged as Record<string, unknown>)[k] = v;
  }
  return merged;
}
