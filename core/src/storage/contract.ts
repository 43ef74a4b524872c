// What every storage driver promises, plus the key rules both drivers enforce identically so an
// object that can be stored with one can be stored with the other. Kept apart from index.ts so the
// drivers can import it without an import cycle.
import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { AppError } from '../errors.ts';

export interface PutResult {
  sizeBytes: number;
  /** Hex SHA-256 of the stored bytes. */
  sha256: string;
}

export interface ObjectInfo {
  key: string;
  sizeBytes: number;
  contentType: string | null;
}

export interface PutOptions {
  contentType: string;
  /** Bodies longer than this fail with ObjectTooLargeError and leave nothing stored. */
  maxBytes?: number;
}

export interface ObjectStorage {
  readonly driver: 'local' | 's3';
  /**
   * Streams the body to storage (never buffers a whole upload in memory), hashing it on the way.
   * Replaces an existing object only when it succeeds; on failure a source stream is destroyed.
   */
  put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<PutResult>;
  /** ObjectNotFoundError when missing. */
  get(key: string): Promise<Readable>;
  /** ObjectNotFoundError when missing. */
  getBytes(key: string): Promise<Uint8Array>;
  head(key: string): Promise<ObjectInfo | null>;
  /** Idempotent: a missing object is fine. */
  delete(key: string): Promise<void>;
  /** Plain string-prefix match, as in S3: end the prefix with '/' to mean "this folder". Returns how many were deleted. */
  deletePrefix(prefix: string): Promise<number>;
  /** Every object whose key starts with prefix, in key (byte) order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  close?(): Promise<void>;
}

export type StorageConfig =
  | { driver: 'local'; dir: string }
  | {
      driver: 's3';
      endpoint?: string;
      region: string;
      bucket: string;
      accessKeyId?: string;
      secretAccessKey?: string;
      forcePathStyle: boolean;
      /** Prepended (with '/') to every key, so one bucket can hold several deployments. */
      prefix?: string;
    };

// The errors are AppErrors so the gateway's one error mapper turns them into 413/404/400 as is.
export class ObjectTooLargeError extends AppError {
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    super('payload_too_large', `the object is larger than the ${maxBytes}-byte limit`, { details: { max_bytes: maxBytes } });
    this.name = 'ObjectTooLargeError';
    this.maxBytes = maxBytes;
  }
}

export class ObjectNotFoundError extends AppError {
  constructor(key: string) {
    super('not_found', `object not found: ${key}`);
    this.name = 'ObjectNotFoundError';
  }
}

export class InvalidObjectKeyError extends AppError {
  constructor(key: string, reason: string) {
    super('bad_request', `invalid object key ${JSON.stringify(key)}: ${reason}`);
    this.name = 'InvalidObjectKeyError';
  }
}

/** The local driver keeps each object's content type in `<file>.meta.json`, so no key may end so. */
export const LOCAL_META_SUFFIX = '.meta.json';
// S3's own limit; enforced for both drivers so they accept the same keys.
const MAX_KEY_BYTES = 1024;
const FORBIDDEN_CHARACTERS = /[\u0000-\u001f\u007f\\]/;

function invalidSegmentReason(segment: string): string | null {
  if (segment === '') return 'empty path segment';
  if (segment === '.' || segment === '..') return `"${segment}" segment`;
  if (segment.endsWith(LOCAL_META_SUFFIX)) return `segments ending in "${LOCAL_META_SUFFIX}" are reserved`;
  return null;
}

function keyProblem(key: string, isPrefix: boolean): string | null {
  if (typeof key !== 'string') return 'not a string';
  if (key === '') return isPrefix ? null : 'empty';
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `longer than ${MAX_KEY_BYTES} bytes`;
  if (FORBIDDEN_CHARACTERS.test(key)) return 'contains a backslash, NUL or control character';
  if (key.startsWith('/')) return 'absolute path';
  // A prefix may end with '/' (a folder); a key may not (it would name a folder, not an object).
  const segments = (isPrefix && key.endsWith('/') ? key.slice(0, -1) : key).split('/');
  for (const segment of segments) {
    const reason = invalidSegmentReason(segment);
    if (reason) return reason;
  }
  return null;
}

export function assertValidKey(key: string): void {
  const problem = keyProblem(key, false);
  if (problem) throw new InvalidObjectKeyError(key, problem);
}

/** Like a key, but '' (everything) and a trailing '/' are allowed. */
export function assertValidPrefix(prefix: string): void {
  const problem = keyProblem(prefix, true);
  if (problem) throw new InvalidObjectKeyError(prefix, problem);
}

/** deletePrefix('') would empty the whole store; no caller means that. */
export function assertDeletablePrefix(prefix: string): void {
  assertValidPrefix(prefix);
  if (prefix === '') throw new InvalidObjectKeyError(prefix, 'deletePrefix needs a non-empty prefix');
}

function assertProjectId(projectId: string): void {
  const problem = typeof projectId !== 'string' ? 'not a string' : projectId.includes('/') ? 'contains "/"' : keyProblem(projectId, false);
  if (problem) throw new InvalidObjectKeyError(String(projectId), `project id ${problem}`);
}

/**
 * Keys are always built by this, so tenants never share a path: `projects/<projectId>/<rest>`.
 * A segment may itself hold '/' (`'documents/abc/file.pdf'`); each part is checked. Rejects '..',
 * absolute paths, backslashes, NUL, empty segments.
 */
export function projectObjectKey(projectId: string, ...segments: string[]): string {
  assertProjectId(projectId);
  if (segments.length === 0) throw new InvalidObjectKeyError(`projects/${projectId}/`, 'no path after the project');
  for (const segment of segments) {
    if (typeof segment !== 'string') throw new InvalidObjectKeyError(String(segment), 'segment is not a string');
    if (segment.startsWith('/')) throw new InvalidObjectKeyError(segment, 'absolute path');
  }
  const key = `projects/${projectId}/${segments.join('/')}`;
  assertValidKey(key);
  return key;
}

/** `projects/<projectId>/`: the prefix to list or delete everything a project stored. */
export function projectObjectPrefix(projectId: string): string {
  assertProjectId(projectId);
  return `projects/${projectId}/`;
}

/** S3 orders keys by their UTF-8 bytes; the local driver sorts the same way. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Passes bytes through unchanged while counting and hashing them; fails once they exceed maxBytes. */
export class ByteMeter extends Transform {
  #hash = createHash('sha256');
  #maxBytes: number | undefined;
  #sizeBytes = 0;

  constructor(maxBytes?: number) {
    super();
    this.#maxBytes = maxBytes;
  }

  override _transform(chunk: Buffer | Uint8Array | string, _encoding: BufferEncoding, callback: TransformCallback): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.#sizeBytes += bytes.byteLength;
    // Checked before pushing, so the over-limit bytes never reach the destination.
    if (this.#maxBytes !== undefined && this.#sizeBytes > this.#maxBytes) {
      callback(new ObjectTooLargeError(this.#maxBytes));
      return;
    }
    this.#hash.update(bytes);
    callback(null, bytes);
  }

  result(): PutResult {
    return { sizeBytes: this.#sizeBytes, sha256: this.#hash.copy().digest('hex') };
  }
}

export function checkMaxBytes(options: PutOptions): void {
  const { maxBytes } = options;
  if (maxBytes !== undefined && (!Number.isSafeInteger(maxBytes) || maxBytes < 0)) {
    throw new RangeError(`maxBytes must be a non-negative integer, got ${maxBytes}`);
  }
}
