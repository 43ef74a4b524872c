// Sign-up, login (scrypt, constant-time compare, lockout after repeated failures), logout and
// logout-all. Sessions are opaque tokens in an httpOnly SameSite cookie, stored hashed.
import { randomBytes } from 'node:crypto';
import type { Response } from 'express';
import { AppError, hashPassword, Prisma, verifyPassword } from '@deepspace/core';
import type { GatewayDeps } from '../deps.ts';
import type { ApiRouter, RequestContext } from '../http/router.ts';
import { SESSION_COOKIE } from '../http/cookies.ts';
import { hmacHex, newSessionToken } from '../auth/tokens.ts';
import { forgetSessions } from '../auth/authenticate.ts';
import { orgJson, projectJson, slugify, userJson } from './serialize.ts';

let dummyHash: Promise<string> | undefined;

async function createSession(ctx: RequestContext, userId: string): Promise<void> {
  const { deps, res, req } = ctx;
  const token = newSessionToken();
  const ttlMs = deps.config.auth.sessionTtlHours * 3_600_000;
  await deps.prisma.session.create({
    data: {
      userId,
      tokenHash: hmacHex(deps.config.secrets.session, token),
      ip: req.ip ?? null,
      userAgent: req.header('user-agent')?.slice(0, 500) ?? null,
      expiresAt: new Date(Date.now() + ttlMs),
    },
  });
  setSessionCookie(res, deps, token, ttlMs);
}

function setSessionCookie(res: Response, deps: GatewayDeps, token: string, ttlMs: number): void {
  res.cookie(SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: 'lax',
    secure: deps.config.nodeEnv === 'production',
    path: '/',
    maxAge: ttlMs,
  });
}

/** A free organization slug derived from `name` (suffix added on collision). */
export async function freeOrgSlug(tx: Prisma.TransactionClient, name: string, wanted?: string): Promise<string> {
  if (wanted) {
    if (await tx.organization.findUnique({ where: { slug: wanted } })) throw new AppError('conflict', `The slug "${wanted}" is taken`);
    return wanted;
  }
  const base = slugify(name);
  for (let attempt = 0; attempt < 5; attempt++) {
    const slug = attempt === 0 ? base : `${base}-${randomBytes(3).toString('hex')}`;
    if (!(await tx.organization.findUnique({ where: { slug } }))) return slug;
  }
  throw new AppError('conflict', 'Could not find a free slug; pass one');
}

export function authRoutes(api: ApiRouter): void {
  api.handle('signup', async (ctx) => {
    const { prisma } = ctx.deps;
    const email = String(ctx.body.email).trim().toLowerCase();
    const passwordHash = await hashPassword(ctx.body.password);
    try {
      const result = await prisma.$transaction(async (tx) => {
        const user = await tx.user.create({ data: { email, name: ctx.body.name.trim(), passwordHash } });
        const orgName = (ctx.body.organization_name ?? `${user.name}'s lab`).trim();
        const org = await tx.organization.create({ data: { name: orgName, slug: await freeOrgSlug(tx, orgName) } });
        await tx.membership.create({ data: { orgId: org.id, userId: user.id, role: 'owner' } });
        await tx.wallet.create({ data: { orgId: org.id } });
        const project = await tx.project.create({ data: { orgId: org.id, name: 'Default project', slug: 'default' } });
        ctx.auditInfo.actor = { type: 'user', userId: user.id, email, name: user.name, isPlatformAdmin: false, sessionId: '' };
        await ctx.audit({ action: 'user.signup', resourceType: 'user', resourceId: user.id, orgId: org.id, projectId: project.id }, tx);
        return { user, org, project };
      });
      await createSession(ctx, result.user.id);
      return {
        status: 201,
        body: { user: userJson(result.user), organization: orgJson(result.org, 'owner'), project: projectJson(result.project) },
      };
    } catch (error) {
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002') {
        throw new AppError('conflict', 'An account with this email already exists');
      }
      throw error;
    }
  });

  api.handle('login', async (ctx) => {
    const { prisma, config } = ctx.deps;
    const email = String(ctx.body.email).trim().toLowerCase();
    const user = await prisma.user.findUnique({ where: { email } });
    const invalid = new AppError('invalid_credentials', 'Email or password is wrong');
    if (!user || user.disabledAt) {
      // Same work as a real check, so response time does not reveal which emails exist.
      dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
      await verifyPassword(ctx.body.password, await dummyHash);
      throw invalid;
    }
    ctx.auditInfo.actor = undefined;
    const now = new Date();
    if (user.lockedUntil && user.lockedUntil > now) {
      const seconds = Math.ceil((user.lockedUntil.getTime() - now.getTime()) / 1000);
      await ctx.audit({ action: 'auth.login', resourceType: 'user', resourceId: user.id, result: 'denied', details: { reason: 'locked' } });
      throw new AppError('account_locked', `Too many failed sign-ins; try again in ${Math.ceil(seconds / 60)} min`, {
        headers: { 'retry-after': String(seconds) },
      });
    }
    if (!(await verifyPassword(ctx.body.password, user.passwordHash))) {
      // Counted atomically in SQL so parallel guesses cannot dodge the lockout.
      const rows = await prisma.$queryRaw<Array<{ failed_login_count: number }>>`
        UPDATE users SET failed_login_count = failed_login_count + 1, updated_at = now()
        WHERE id = ${user.id}::uuid RETURNING failed_login_count`;
      const failures = rows[0]?.failed_login_count ?? 0;
      if (failures >= config.auth.loginMaxFailures) {
        await prisma.user.update({
          where: { id: user.id },
          data: { failedLoginCount: 0, lockedUntil: new Date(now.getTime() + config.auth.loginLockMinutes * 60_000) },
        });
      }
      await ctx.audit({ action: 'auth.login', resourceType: 'user', resourceId: user.id, result: 'failure', details: { failures } });
      throw invalid;
    }
    await prisma.user.update({ where: { id: user.id }, data: { failedLoginCount: 0, lockedUntil: null } });
    await createSession(ctx, user.id);
    ctx.auditInfo.actor = { type: 'user', userId: user.id, email, name: user.name, isPlatformAdmin: user.isPlatformAdmin, sessionId: '' };
    await ctx.audit({ action: 'auth.login', resourceType: 'user', resourceId: user.id });
    return { status: 200, body: { user: userJson(user) } };
  });

  api.handle('logout', async (ctx) => {
    const user = ctx.user();
    await ctx.deps.prisma.$transaction(async (tx) => {
      await tx.session.update({ where: { id: user.sessionId }, data: { revokedAt: new Date() } });
      await ctx.audit({ action: 'auth.logout', resourceType: 'session', resourceId: user.sessionId }, tx);
    });
    forgetSessions({ sessionId: user.sessionId });
    ctx.res.clearCookie(SESSION_COOKIE, { path: '/' });
    return { status: 204 };
  });

  api.handle('logoutAll', async (ctx) => {
    const user = ctx.user();
    const revoked = await ctx.deps.prisma.$transaction(async (tx) => {
      const result = await tx.session.updateMany({ where: { userId: user.userId, revokedAt: null }, data: { revokedAt: new Date() } });
      await ctx.audit({ action: 'auth.logout_all', resourceType: 'user', resourceId: user.userId, details: { sessions: result.count } }, tx);
      return result.count;
    });
    forgetSessions({ userId: user.userId });
    ctx.res.clearCookie(SESSION_COOKIE, { path: '/' });
    return { status: 200, body: { revoked_sessions: revoked } };
  });

  api.handle('getMe', async (ctx) => {
    const actor = ctx.actorOrThrow();
    const { prisma } = ctx.deps;
    if (actor.type === 'api_key') {
      // Answered from the auth step alone: this is also the gateway's cheapest authenticated route.
      return {
        body: { type: 'api_key', api_key: { id: actor.keyId, prefix: actor.prefix, scopes: actor.scopes }, project_id: actor.projectId, org_id: actor.orgId },
      };
    }
    const user = await prisma.user.findUniqueOrThrow({ where: { id: actor.userId } });
    const memberships = await prisma.membership.findMany({
      where: { userId: actor.userId, organization: { deletedAt: null } },
      include: { organization: true },
      orderBy: { createdAt: 'asc' },
    });
    return {
      body: { type: 'user', user: userJson(user), organizations: memberships.map((m) => orgJson(m.organization, m.role)) },
    };
  });
}
