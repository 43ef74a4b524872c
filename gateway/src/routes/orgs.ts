// Organizations, members and invitations. Only signed-in users reach these (no API keys).
import { AppError, Prisma } from '@deepspace/core';
import { ROLE_RANK, type Role } from '../auth/actor.ts';
import { hmacHex, newInvitationToken } from '../auth/tokens.ts';
import type { ApiRouter } from '../http/router.ts';
import { orgAccess } from '../services/access.ts';
import { freeOrgSlug } from './auth.ts';
import { invitationJson, orgJson, userJson } from './serialize.ts';

const INVITATION_TTL_DAYS = 7;

export function orgRoutes(api: ApiRouter): void {
  api.handle('listOrgs', async (ctx) => {
    const user = ctx.user();
    const memberships = await ctx.deps.prisma.membership.findMany({
      where: { userId: user.userId, organization: { deletedAt: null } },
      include: { organization: true },
      orderBy: { createdAt: 'asc' },
    });
    return { body: { data: memberships.map((m) => orgJson(m.organization, m.role)), has_more: false } };
  });

  api.handle('createOrg', async (ctx) => {
    const user = ctx.user();
    const org = await ctx.deps.prisma.$transaction(async (tx) => {
      const created = await tx.organization.create({
        data: { name: ctx.body.name.trim(), slug: await freeOrgSlug(tx, ctx.body.name, ctx.body.slug) },
      });
      await tx.membership.create({ data: { orgId: created.id, userId: user.userId, role: 'owner' } });
      await tx.wallet.create({ data: { orgId: created.id } });
      await ctx.audit({ action: 'org.create', resourceType: 'organization', resourceId: created.id, orgId: created.id }, tx);
      return created;
    });
    return { status: 201, body: orgJson(org, 'owner') };
  });

  api.handle('getOrg', async (ctx) => {
    const { org, role } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'viewer');
    return { body: orgJson(org, role) };
  });

  api.handle('updateOrg', async (ctx) => {
    const { org, role } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'admin', 'rename the organization');
    const updated = await ctx.deps.prisma.$transaction(async (tx) => {
      const row = await tx.organization.update({ where: { id: org.id }, data: { name: ctx.body.name.trim() } });
      await ctx.audit({ action: 'org.update', resourceType: 'organization', resourceId: org.id, orgId: org.id, details: { name: row.name } }, tx);
      return row;
    });
    return { body: orgJson(updated, role) };
  });

  api.handle('listMembers', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'viewer');
    const members = await ctx.deps.prisma.membership.findMany({ where: { orgId: org.id }, include: { user: true }, orderBy: { createdAt: 'asc' } });
    return {
      body: {
        data: members.map((m) => ({ user: userJson(m.user), role: m.role, joined_at: m.createdAt.toISOString() })),
        has_more: false,
      },
    };
  });

  api.handle('updateMember', async (ctx) => {
    const actor = ctx.user();
    const { org, role: myRole } = await orgAccess(ctx.deps.prisma, actor, ctx.params.orgId!, 'admin', 'change roles');
    const newRole = ctx.body.role as Role;
    const updated = await ctx.deps.prisma.$transaction(
      async (tx) => {
        const target = await tx.membership.findUnique({ where: { orgId_userId: { orgId: org.id, userId: ctx.params.userId! } }, include: { user: true } });
        if (!target) throw new AppError('not_found', 'Member not found');
        if ((newRole === 'owner' || target.role === 'owner') && myRole !== 'owner') {
          throw new AppError('forbidden', 'Only owners can grant or take away the owner role');
        }
        if (ROLE_RANK[newRole] > ROLE_RANK[myRole]) throw new AppError('forbidden', 'You cannot grant a role above your own');
        if (target.role === 'owner' && newRole !== 'owner') await assertAnotherOwner(tx, org.id, target.userId);
        const row = await tx.membership.update({ where: { id: target.id }, data: { role: newRole }, include: { user: true } });
        await ctx.audit(
          { action: 'member.update_role', resourceType: 'membership', resourceId: target.userId, orgId: org.id, details: { from: target.role, to: newRole } },
          tx,
        );
        return row;
      },
      { isolationLevel: 'Serializable' },
    );
    return { body: { user: userJson(updated.user), role: updated.role, joined_at: updated.createdAt.toISOString() } };
  });

  api.handle('removeMember', async (ctx) => {
    const actor = ctx.user();
    const selfRemoval = ctx.params.userId === actor.userId;
    const { org, role: myRole } = await orgAccess(ctx.deps.prisma, actor, ctx.params.orgId!, selfRemoval ? 'viewer' : 'admin', 'remove members');
    await ctx.deps.prisma.$transaction(
      async (tx) => {
        const target = await tx.membership.findUnique({ where: { orgId_userId: { orgId: org.id, userId: ctx.params.userId! } } });
        if (!target) throw new AppError('not_found', 'Member not found');
        if (target.role === 'owner' && myRole !== 'owner') throw new AppError('forbidden', 'Only owners can remove an owner');
        if (target.role === 'owner') await assertAnotherOwner(tx, org.id, target.userId);
        await tx.membership.delete({ where: { id: target.id } });
        await ctx.audit({ action: 'member.remove', resourceType: 'membership', resourceId: target.userId, orgId: org.id, details: { role: target.role } }, tx);
      },
      { isolationLevel: 'Serializable' },
    );
    return { status: 204 };
  });

  api.handle('listInvitations', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'admin', 'see invitations');
    const invitations = await ctx.deps.prisma.invitation.findMany({
      where: { orgId: org.id, acceptedAt: null, revokedAt: null, expiresAt: { gt: new Date() } },
      orderBy: { createdAt: 'desc' },
    });
    return { body: { data: invitations.map(invitationJson), has_more: false } };
  });

  api.handle('createInvitation', async (ctx) => {
    const actor = ctx.user();
    const { org, role: myRole } = await orgAccess(ctx.deps.prisma, actor, ctx.params.orgId!, 'admin', 'invite members');
    const role = ctx.body.role as Role;
    if (ROLE_RANK[role] > ROLE_RANK[myRole]) throw new AppError('forbidden', 'You cannot invite with a role above your own');
    const email = String(ctx.body.email).trim().toLowerCase();
    const token = newInvitationToken();
    const invitation = await ctx.deps.prisma.$transaction(async (tx) => {
      const existingMember = await tx.membership.findFirst({ where: { orgId: org.id, user: { email } } });
      if (existingMember) throw new AppError('conflict', 'This person is already a member');
      const row = await tx.invitation.create({
        data: {
          orgId: org.id,
          email,
          role,
          tokenHash: hmacHex(ctx.deps.config.secrets.session, token),
          invitedBy: actor.userId,
          expiresAt: new Date(Date.now() + INVITATION_TTL_DAYS * 86_400_000),
        },
      });
      await ctx.audit({ action: 'invitation.create', resourceType: 'invitation', resourceId: row.id, orgId: org.id, details: { email, role } }, tx);
      return row;
    });
    const inviteUrl = `${ctx.deps.config.publicWebUrl}/invite?token=${encodeURIComponent(token)}`;
    return { status: 201, body: { ...invitationJson(invitation), token, invite_url: inviteUrl } };
  });

  api.handle('revokeInvitation', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'admin', 'revoke invitations');
    const invitation = await ctx.deps.prisma.$transaction(async (tx) => {
      const row = await tx.invitation.findFirst({ where: { id: ctx.params.invitationId!, orgId: org.id } });
      if (!row) throw new AppError('not_found', 'Invitation not found');
      if (row.acceptedAt) throw new AppError('conflict', 'This invitation was already accepted');
      const updated = row.revokedAt ? row : await tx.invitation.update({ where: { id: row.id }, data: { revokedAt: new Date() } });
      await ctx.audit({ action: 'invitation.revoke', resourceType: 'invitation', resourceId: row.id, orgId: org.id }, tx);
      return updated;
    });
    return { body: invitationJson(invitation) };
  });

  api.handle('acceptInvitation', async (ctx) => {
    const actor = ctx.user();
    const tokenHash = hmacHex(ctx.deps.config.secrets.session, ctx.body.token);
    const result = await ctx.deps.prisma.$transaction(
      async (tx) => {
        const invitation = await tx.invitation.findUnique({ where: { tokenHash }, include: { organization: true } });
        if (!invitation || invitation.revokedAt || invitation.acceptedAt || invitation.expiresAt <= new Date()) {
          throw new AppError('not_found', 'This invitation is invalid, used, revoked or expired');
        }
        if (invitation.email !== actor.email) {
          throw new AppError('forbidden', 'This invitation was sent to another email address');
        }
        await tx.invitation.update({ where: { id: invitation.id }, data: { acceptedAt: new Date(), acceptedBy: actor.userId } });
        const membership = await tx.membership.upsert({
          where: { orgId_userId: { orgId: invitation.orgId, userId: actor.userId } },
          update: {},
          create: { orgId: invitation.orgId, userId: actor.userId, role: invitation.role },
        });
        await ctx.audit(
          { action: 'invitation.accept', resourceType: 'invitation', resourceId: invitation.id, orgId: invitation.orgId, details: { role: membership.role } },
          tx,
        );
        return { org: invitation.organization, role: membership.role };
      },
      { isolationLevel: 'Serializable' },
    );
    return { body: { organization: orgJson(result.org, result.role) } };
  });
}

async function assertAnotherOwner(tx: Prisma.TransactionClient, orgId: string, leavingUserId: string): Promise<void> {
  const owners = await tx.membership.count({ where: { orgId, role: 'owner', userId: { not: leavingUserId } } });
  if (owners === 0) throw new AppError('conflict', 'An organization needs at least one owner');
}
