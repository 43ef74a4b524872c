// Opaque secrets (session tokens, API keys, invitation tokens) are random and stored only as
// HMAC-SHA256 hashes keyed by a server secret, so a database leak yields nothing usable.
import { createHmac, randomBytes } from 'node:crypto';

export function hmacHex(secret: string, value: string): string {
  return createHmac('sha256', secret).update(value).digest('hex');
}

export function newSessionToken(): string {
  return `dss_${randomBytes(32).toString('base64url')}`;
}

export function newInvitationToken(): string {
  return `dsi_${randomBytes(24).toString('base64url')}`;
}

const KEY_ID_ALPHABET = 'abcdefghijkmnopqrstuvwxyz23456789';

/** `ds_<12-char id>_<43-char secret>`; the `ds_<id>` part is the visible prefix. */
export function newApiKey(): { key: string; prefix: string } {
  const idBytes = randomBytes(12);
  const id = Array.from(idBytes, (b) => KEY_ID_ALPHABET[b % KEY_ID_ALPHABET.length]).join('');
  const prefix = `ds_${id}`;
  return { key: `${prefix}_${randomBytes(32).toString('base64url')}`, prefix };
}

export const API_KEY_PATTERN = /^ds_[a-z2-9]{12}_[A-Za-z0-9_-]{43}$/;
