// Resolves the caller from `Authorization: Bearer ds_…` (project API key) or the `ds_session`
// cookie (signed-in user). A presented but invalid credential is a 401, never silently anonymous.
import type { Request } from 'express';
import { AppError } from '@deepspace/core';
import type { GatewayDeps } from '../deps.ts';
import { readCookie, SESSION_COOKIE } from '../http/cookies.ts';
import type { Actor } from './actor.ts';
import { API_KEY_PATTERN, hmacHex } from './tokens.ts';
import { SingleFlight } from '../services/single-flight.ts';

const LAST_USED_WRITE_INTERVAL_MS = 60_000;
// API keys are looked up on every call; a short in-process cache keeps that off the hot path.
// Revocation and archiving clear it on this gateway at once (forgetApiKeys); other replicas see a
// revoked key at most KEY_CACHE_TTL_MS later.
const KEY_CACHE_TTL_MS = 5_000;
const KEY_CACHE_MAX = 50_000;
interface CachedKey {
  actor: Extract<Actor, { type: 'api_key' }>;
  expiresAt: Date | null;
  cachedAt: number;
}
const keyCache = new Map<string, CachedKey>();

/** Drops cached API keys (all, or those of one project) after a revocation or an archive. */
export function forgetApiKeys(projectId?: string): void {
  // A lookup already running may have read the key before the change: it neither serves later
  // callers nor fills the cache.
  keyGeneration++;
  keyLoads.clear();
  if (!projectId) return keyCache.clear();
  for (const [hash, entry] of keyCache) if (entry.actor.projectId === projectId) keyCache.delete(hash);
}
const SESSION_TOUCH_INTERVAL_MS = 5 * 60_000;
// Signed-in users' sessions, cached like API keys and for the same reason (a Prisma read with the
// user joined costs ~1.5 ms of every chat message's time to first token). Sign-out clears this
// gateway's entries at once (forgetSessions); other replicas honour it at most
// SESSION_CACHE_TTL_MS later. The session's own expiry is checked on every use.
const SESSION_CACHE_TTL_MS = 5_000;
const SESSION_CACHE_MAX = 50_000;
interface CachedSession {
  actor: Extract<Actor, { type: 'user' }>;
  expiresAt: Date;
  cachedAt: number;
}
const sessionCache = new Map<string, CachedSession>();
/** Requests that find an entry expired share its reload (one query per key, not one per request). */
const keyLoads = new SingleFlight<Actor>();
const sessionLoads = new SingleFlight<Actor>();
/** Bumped by every forget: a lookup that began before it does not fill the cache. */
let keyGeneration = 0;
let sessionGeneration = 0;

/** Drops cached sessions: one session, or every session of a user. */
export function forgetSessions(which: { sessionId?: string; userId?: string }): void {
  sessionGeneration++;
  sessionLoads.clear();
  for (const [hash, entry] of sessionCache) {
    if (entry.actor.sessionId === which.sessionId || entry.actor.userId === which.userId) sessionCache.delete(hash);
  }
}

export async function authenticate(deps: GatewayDeps, req: Request): Promise<Actor | undefined> {
  const authorization = req.header('authorization');
  if (authorization !== undefined) {
    const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
    if (!match) throw new AppError('unauthenticated', 'Authorization header must be "Bearer <api key>"');
    return authenticateApiKey(deps, match[1]!);
  }
  const token = readCookie(req.header('cookie'), SESSION_COOKIE);
  if (token) return authenticateSession(deps, token);
  return undefined;
}

async function authenticateApiKey(deps: GatewayDeps, key: string): Promise<Actor> {
  // Built only when thrown: an Error captures a stack trace, which a hot path should not pay for.
  const invalid = () => new AppError('unauthenticated', 'Invalid, expired or revoked API key');
  if (!API_KEY_PATTERN.test(key)) throw invalid();
  const keyHash = hmacHex(deps.config.secrets.apiKeyPepper, key);
  const now = new Date();
  const cached = keyCache.get(keyHash);
  if (cached && now.getTime() - cached.cachedAt < KEY_CACHE_TTL_MS) {
    if (cached.expiresAt && cached.expiresAt <= now) throw invalid();
    return cached.actor;
  }
  return keyLoads.run(keyHash, () => loadApiKey(deps, keyHash, now, invalid));
}

async function loadApiKey(deps: GatewayDeps, keyHash: string, now: Date, invalid: () => AppError): Promise<Actor> {
  const generation = keyGeneration;
  const row = await deps.prisma.apiKey.findUnique({
    where: { keyHash },
    include: { project: { select: { archivedAt: true } } },
  });
  if (!row || row.revokedAt || (row.expiresAt && row.expiresAt <= now) || row.project.archivedAt) throw invalid();
  if (!row.lastUsedAt || now.getTime() - row.lastUsedAt.getTime() > LAST_USED_WRITE_INTERVAL_MS) {
    // Throttled, and off the request's critical path.
    void deps.prisma.apiKey.update({ where: { id: row.id }, data: { lastUsedAt: now } }).catch(() => {});
  }
  const actor = { type: 'api_key' as const, keyId: row.id, orgId: row.orgId, projectId: row.projectId, scopes: row.scopes, prefix: row.prefix };
  if (generation !== keyGeneration) return actor;
  if (keyCache.size >= KEY_CACHE_MAX) keyCache.clear();
  keyCache.set(keyHash, { actor, expiresAt: row.expiresAt, cachedAt: now.getTime() });
  return actor;
}

async function authenticateSession(deps: GatewayDeps, token: string): Promise<Actor> {
  const invalid = () => new AppError('unauthenticated', 'Your session has ended; sign in again');
  if (!token.startsWith('dss_') || token.length > 100) throw invalid();
  const tokenHash = hmacHex(deps.config.secrets.session, token);
  const now = new Date();
  const cached = sessionCache.get(tokenHash);
  if (cached && now.getTime() - cached.cachedAt < SESSION_CACHE_TTL_MS) {
    if (cached.expiresAt <= now) throw invalid();
    return cached.actor;
  }
  return sessionLoads.run(tokenHash, () => loadSession(deps, tokenHash, now, invalid));
}

async function loadSession(deps: GatewayDeps, tokenHash: string, now: Date, invalid: () => AppError): Promise<Actor> {
  const generation = sessionGeneration;
  const session = await deps.prisma.session.findUnique({ where: { tokenHash }, include: { user: true } });
  if (!session || session.revokedAt || session.expiresAt <= now || session.user.disabledAt) throw invalid();
  if (now.getTime() - session.lastSeenAt.getTime() > SESSION_TOUCH_INTERVAL_MS) {
    void deps.prisma.session.update({ where: { id: session.id }, data: { lastSeenAt: now } }).catch(() => {});
  }
  const { user } = session;
  const actor = { type: 'user' as const, userId: user.id, email: user.email, name: user.name, isPlatformAdmin: user.isPlatformAdmin, sessionId: session.id };
  if (generation !== sessionGeneration) return actor;
  if (sessionCache.size >= SESSION_CACHE_MAX) sessionCache.clear();
  sessionCache.set(tokenHash, { actor, expiresAt: session.expiresAt, cachedAt: now.getTime() });
  return actor;
}
