// Tenancy checks. Every read and write goes through these: a resource of another tenant answers
// 404 (never its data, never a hint that it exists); a member without the role gets 403.
import { AppError, type PrismaClient } from '@deepspace/core';
import { ROLE_RANK, type Actor, type Role } from '../auth/actor.ts';

export interface OrgAccess {
  org: { id: string; name: string; slug: string; createdAt: Date };
  role: Role;
}

export interface ProjectAccess {
  project: { id: string; orgId: string; name: string; slug: string; description: string; createdAt: Date; archivedAt: Date | null };
  /** The user's role in the project's organization; API keys have none. */
  role: Role | null;
}

export function requireRole(role: Role, minimum: Role, what: string): void {
  if (ROLE_RANK[role] < ROLE_RANK[minimum]) {
    throw new AppError('forbidden', `Your role (${role}) cannot ${what}; it needs ${minimum} or above`);
  }
}

export async function orgAccess(prisma: PrismaClient, actor: Actor, orgId: string, minimum: Role, what = 'do this'): Promise<OrgAccess> {
  if (actor.type !== 'user') throw new AppError('insufficient_scope', 'API keys cannot manage organizations');
  const membership = await prisma.membership.findUnique({
    where: { orgId_userId: { orgId, userId: actor.userId } },
    include: { organization: true },
  });
  if (!membership || membership.organization.deletedAt) throw new AppError('not_found', 'Organization not found');
  requireRole(membership.role, minimum, what);
  const { organization } = membership;
  return { org: { id: organization.id, name: organization.name, slug: organization.slug, createdAt: organization.createdAt }, role: membership.role };
}

export async function projectAccess(
  prisma: PrismaClient,
  actor: Actor,
  projectId: string,
  minimum: Role,
  options: { what?: string; allowArchived?: boolean } = {},
): Promise<ProjectAccess> {
  const project = await prisma.project.findUnique({ where: { id: projectId } });
  const notFound = new AppError('not_found', 'Project not found');
  if (!project) throw notFound;
  if (actor.type === 'api_key') {
    if (actor.projectId !== project.id) throw notFound;
    if (project.archivedAt) throw notFound;
    return { project, role: null };
  }
  const membership = await prisma.membership.findUnique({ where: { orgId_userId: { orgId: project.orgId, userId: actor.userId } } });
  if (!membership) throw notFound;
  if (project.archivedAt && !options.allowArchived) throw notFound;
  requireRole(membership.role, minimum, options.what ?? 'do this');
  return { project, role: membership.role };
}
