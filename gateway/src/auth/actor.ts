// Who is calling. A user acts through memberships; an API key acts only inside its project.
export const SCOPES = ['chat:write', 'workflows:run', 'workflows:write', 'kb:read', 'kb:write', 'usage:read'] as const;
export type Scope = (typeof SCOPES)[number];

export type Actor =
  | { type: 'user'; userId: string; email: string; name: string; isPlatformAdmin: boolean; sessionId: string }
  | { type: 'api_key'; keyId: string; orgId: string; projectId: string; scopes: string[]; prefix: string };

export const ROLE_RANK = { viewer: 0, member: 1, admin: 2, owner: 3 } as const;
export type Role = keyof typeof ROLE_RANK;

export function actorId(actor: Actor | undefined): string | null {
  if (!actor) return null;
  return actor.type === 'user' ? actor.userId : actor.keyId;
}
