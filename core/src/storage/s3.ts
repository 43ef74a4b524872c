// Object storage on S3 or an S3-compatible server (MinIO, R2, …). Uploads stream through a
// counting/hashing Transform into a multipart `Upload`, so memory stays at a few parts per upload
// whatever the object's size. The AWS SDK takes about a second to import, so it is loaded on first
// use: processes configured for the local driver never pay for it.
import { createHash } from 'node:crypto';
import { Readable, pipeline } from 'node:stream';
import type { BucketLocationConstraint, S3Client } from '@aws-sdk/client-s3';
import {
  ByteMeter,
  ObjectNotFoundError,
  ObjectTooLargeError,
  assertDeletablePrefix,
  assertValidKey,
  assertValidPrefix,
  checkMaxBytes,
  type ObjectInfo,
  type ObjectStorage,
  type PutOptions,
  type PutResult,
  type StorageConfig,
} from './contract.ts';

export type S3StorageConfig = Extract<StorageConfig, { driver: 's3' }>;

interface Connected {
  sdk: typeof import('@aws-sdk/client-s3');
  Upload: typeof import('@aws-sdk/lib-storage').Upload;
  client: S3Client;
}

// lib-storage's minimum; two in flight bounds an upload's memory at roughly 3 parts (~15 MB).
const PART_SIZE = 5 * 1024 * 1024;
const PARTS_IN_FLIGHT = 2;
// ListObjectsV2 and DeleteObjects both cap a page at 1000 keys.
const PAGE_SIZE = 1000;
// ListObjectsV2 does not return content types; list() asks HeadObject for each, this many at once.
const HEADS_IN_FLIGHT = 8;

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } } | null;
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export class S3ObjectStorage implements ObjectStorage {
  readonly driver = 's3' as const;
  readonly #config: S3StorageConfig;
  /** `<config.prefix>/`, or '' without one. */
  readonly #keyPrefix: string;
  #connected: Promise<Connected> | undefined;

  constructor(config: S3StorageConfig) {
    this.#config = config;
    const prefix = (config.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix) assertValidKey(prefix);
    this.#keyPrefix = prefix ? `${prefix}/` : '';
  }

  #connect(): Promise<Connected> {
    // A failed start (bucket unreachable, wrong keys) is not cached: the next call tries again.
    this.#connected ??= this.#open().catch((error: unknown) => {
      this.#connected = undefined;
      throw error;
    });
    return this.#connected;
  }

  async #open(): Promise<Connected> {
    const [sdk, { Upload }] = await Promise.all([import('@aws-sdk/client-s3'), import('@aws-sdk/lib-storage')]);
    const { endpoint, region, accessKeyId, secretAccessKey, forcePathStyle } = this.#config;
    const client = new sdk.S3Client({
      region,
      forcePathStyle,
      ...(endpoint ? { endpoint } : {}),
      // Without explicit keys the SDK's default chain applies (env, instance role, …).
      ...(accessKeyId && secretAccessKey ? { credentials: { accessKeyId, secretAccessKey } } : {}),
      // The SDK's default extra CRC checksums are not understood by every S3-compatible server.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    try {
      await this.#ensureBucket(sdk, client);
    } catch (error) {
      client.destroy();
      throw error;
    }
    return { sdk, Upload, client };
  }

  async #ensureBucket(sdk: Connected['sdk'], client: S3Client): Promise<void> {
    const { bucket: Bucket, region } = this.#config;
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket }));
      return;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    try {
      await client.send(new sdk.CreateBucketCommand({
        Bucket,
        // us-east-1 is the one region that must not be named here.
        ...(region && region !== 'us-east-1'
          ? { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } }
          : {}),
      }));
    } catch (error) {
      // Another process created it between our HeadBucket and CreateBucket.
      if ((error as { name?: string }).name !== 'BucketAlreadyOwnedByYou') throw error;
    }
  }

  #fullKey(key: string): string {
    assertValidKey(key);
    return this.#keyPrefix + key;
  }

  async put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<PutResult> {
    const Key = this.#fullKey(key);
    checkMaxBytes(options);
    let meter: ByteMeter | undefined;
    let Body: Readable | Uint8Array;
    let result: PutResult | undefined;
    if (body instanceof Uint8Array) {
      if (options.maxBytes !== undefined && body.byteLength > options.maxBytes) throw new ObjectTooLargeError(options.maxBytes);
      Body = body;
      result = { sizeBytes: body.byteLength, sha256: createHash('sha256').update(body).digest('hex') };
    } else {
      meter = new ByteMeter(options.maxBytes);
      // Errors from either side reach Upload through the meter; pipeline destroys the source.
      Body = pipeline(body, meter, () => {});
    }
    const { client, Upload } = await this.#connect();
    const upload = new Upload({
      client,
      params: { Bucket: this.#config.bucket, Key, Body, ContentType: options.contentType },
      partSize: PART_SIZE,
      queueSize: PARTS_IN_FLIGHT,
      // On failure Upload aborts the multipart upload, so its parts are discarded and the key keeps
      // whatever it held before (nothing, for a new key). Deleting the key here would be wrong: it
      // would destroy the previous version of an overwritten object.
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      if (meter?.errored instanceof ObjectTooLargeError) throw meter.errored;
      throw error;
    }
    return result ?? (meter as ByteMeter).result();
  }

  async get(key: string): Promise<Readable> {
    const Key = this.#fullKey(key);
    const { sdk, client } = await this.#connect();
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.#config.bucket, Key }));
      if (!(out.Body instanceof Readable)) throw new Error('S3 GetObject returned no Node.js stream');
      return out.Body;
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(key);
      throw error;
    }
  }

  async getBytes(key: string): Promise<Uint8Array> {
    const Key = this.#fullKey(key);
    const { sdk, client } = await this.#connect();
    try {
      const out = await client.send(new sdk.GetObjectCommand({ Bucket: this.#config.bucket, Key }));
      if (!out.Body) throw new Error('S3 GetObject returned no body');
      return await out.Body.transformToByteArray();
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(key);
      throw error;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const Key = this.#fullKey(key);
    const { sdk, client } = await this.#connect();
    try {
      const out = await client.send(new sdk.HeadObjectCommand({ Bucket: this.#config.bucket, Key }));
      return { key, sizeBytes: out.ContentLength ?? 0, contentType: out.ContentType ?? null };
    } catch (error) {
      if (isNotFound(error)) return null;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const Key = this.#fullKey(key);
    const { sdk, client } = await this.#connect();
    // S3 answers 204 for a missing key too.
    await client.send(new sdk.DeleteObjectCommand({ Bucket: this.#config.bucket, Key }));
  }

  /** One page at a time: the keys, without our config prefix. */
  async *#pages(prefix: string): AsyncGenerator<string[]> {
    const { sdk, client } = await this.#connect();
    let ContinuationToken: string | undefined;
    do {
      const page = await client.send(new sdk.ListObjectsV2Command({
        Bucket: this.#config.bucket,
        Prefix: this.#keyPrefix + prefix,
        MaxKeys: PAGE_SIZE,
        ...(ContinuationToken ? { ContinuationToken } : {}),
      }));
      yield (page.Contents ?? []).flatMap((object) => (object.Key === undefined ? [] : [object.Key.slice(this.#keyPrefix.length)]));
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertDeletablePrefix(prefix);
    const { sdk, client } = await this.#connect();
    let deleted = 0;
    for await (const page of this.#pages(prefix)) {
      if (page.length === 0) continue;
      const out = await client.send(new sdk.DeleteObjectsCommand({
        Bucket: this.#config.bucket,
        Delete: { Objects: page.map((key) => ({ Key: this.#keyPrefix + key })), Quiet: true },
      }));
      const errors = out.Errors ?? [];
      if (errors.length > 0) {
        const first = errors[0];
        throw new Error(`S3 DeleteObjects failed for ${errors.length} of ${page.length} keys (first: ${first?.Key}: ${first?.Code} ${first?.Message})`);
      }
      deleted += page.length;
    }
    return deleted;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    assertValidPrefix(prefix);
    const keys: string[] = [];
    for await (const page of this.#pages(prefix)) keys.push(...page);
    const infos = await mapLimit(keys, HEADS_IN_FLIGHT, (key) => this.head(key));
    // An object deleted between the listing and its HeadObject is left out, as the local driver does.
    return infos.filter((info): info is ObjectInfo => info !== null);
  }

  async close(): Promise<void> {
    const connected = this.#connected;
    this.#connected = undefined;
    if (connected) (await connected.catch(() => undefined))?.client.destroy();
  }
}
