// One contract, two drivers: every case runs against the local disk and against a real MinIO, so
// code written against ObjectStorage behaves the same in development and in production.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  InvalidObjectKeyError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  createObjectStorage,
  projectObjectKey,
  projectObjectPrefix,
  type ObjectStorage,
} from '@deepspace/core/storage/index';
import { loadConfig } from '@deepspace/core';
import { createKnowledgeRuntime } from '@deepspace/core/knowledge/runtime';
import { freePort, log, startMinio, type MinioServer } from '../../scripts/lib/services.ts';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** A stream of `total` random bytes in 64 KiB chunks, remembering what it produced. */
function randomStream(total: number): { stream: Readable; produced: () => Buffer } {
  const parts: Buffer[] = [];
  let left = total;
  const stream = new Readable({
    read() {
      if (left === 0) return void this.push(null);
      const chunk = randomBytes(Math.min(64 * 1024, left));
      left -= chunk.length;
      parts.push(chunk);
      this.push(chunk);
    },
  });
  return { stream, produced: () => Buffer.concat(parts) };
}

function contract(name: string, open: () => ObjectStorage) {
  describe(`object storage contract: ${name}`, () => {
    let storage: ObjectStorage;
    // Fresh project ids per run, so reruns against a kept MinIO data dir cannot see old objects.
    const projectA = `pa-${randomUUID()}`;
    const projectB = `pb-${randomUUID()}`;

    beforeAll(() => {
      storage = open();
    });
    afterAll(async () => {
      await storage.close?.();
    });

    it('reports which driver it is', () => {
      expect(storage.driver).toBe(name);
    });

    it('stores bytes and gives them back, with size, hash and content type', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd1', 'notes.md');
      const body = new TextEncoder().encode('# Notes\n\nHello, world.\n');
      const put = await storage.put(key, body, { contentType: 'text/markdown' });
      expect(put).toEqual({ sizeBytes: body.byteLength, sha256: sha256(body) });
      expect(Buffer.from(await storage.getBytes(key)).equals(Buffer.from(body))).toBe(true);
      expect((await readAll(await storage.get(key))).equals(Buffer.from(body))).toBe(true);
      expect(await storage.head(key)).toEqual({ key, sizeBytes: body.byteLength, contentType: 'text/markdown' });
    });

    it('stores a stream and gives it back', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd2', 'report.pdf');
      const { stream, produced } = randomStream(300 * 1024 + 7);
      const put = await storage.put(key, stream, { contentType: 'application/pdf' });
      const bytes = produced();
      expect(put.sizeBytes).toBe(300 * 1024 + 7);
      expect(put.sha256).toBe(sha256(bytes));
      expect((await readAll(await storage.get(key))).equals(bytes)).toBe(true);
      expect((await storage.head(key))?.contentType).toBe('application/pdf');
    });

    it('streams a 5 MB body through intact', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd3', 'big.bin');
      const total = 5 * 1024 * 1024 + 12_345; // past one multipart part
      const { stream, produced } = randomStream(total);
      const put = await storage.put(key, stream, { contentType: 'application/octet-stream', maxBytes: total });
      const bytes = produced();
      expect(put).toEqual({ sizeBytes: total, sha256: sha256(bytes) });
      const back = await storage.getBytes(key);
      expect(back.byteLength).toBe(total);
      expect(sha256(back)).toBe(put.sha256);
      expect((await storage.head(key))?.sizeBytes).toBe(total);
    });

    it('keeps every byte value intact (binary, not text)', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd4', 'all-bytes.bin');
      const body = new Uint8Array(256 * 4);
      for (let i = 0; i < body.length; i++) body[i] = i % 256;
      await storage.put(key, body, { contentType: 'application/octet-stream' });
      expect(Buffer.from(await storage.getBytes(key)).equals(Buffer.from(body))).toBe(true);
    });

    it('an empty body is a valid object', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd5', 'empty.txt');
      const put = await storage.put(key, new Uint8Array(0), { contentType: 'text/plain' });
      expect(put).toEqual({ sizeBytes: 0, sha256: sha256(new Uint8Array(0)) });
      expect((await storage.getBytes(key)).byteLength).toBe(0);
      expect((await storage.head(key))?.sizeBytes).toBe(0);
    });

    it('a streamed body over maxBytes is refused and leaves nothing stored', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd6', 'too-big.bin');
      const { stream } = randomStream(6 * 1024 * 1024);
      const error = await storage.put(key, stream, { contentType: 'application/octet-stream', maxBytes: 1024 * 1024 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ObjectTooLargeError);
      expect((error as ObjectTooLargeError).maxBytes).toBe(1024 * 1024);
      expect(await storage.head(key)).toBeNull();
      await expect(storage.getBytes(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
    });

    it('a byte body over maxBytes is refused; exactly maxBytes is accepted', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd7', 'limit.bin');
      await expect(storage.put(key, new Uint8Array(11), { contentType: 'text/plain', maxBytes: 10 })).rejects.toBeInstanceOf(ObjectTooLargeError);
      expect(await storage.head(key)).toBeNull();
      const put = await storage.put(key, Readable.from([Buffer.alloc(10, 1)]), { contentType: 'text/plain', maxBytes: 10 });
      expect(put.sizeBytes).toBe(10);
    });

    it('a refused overwrite keeps the previous version', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd8', 'kept.txt');
      await storage.put(key, Buffer.from('version one'), { contentType: 'text/plain' });
      const { stream } = randomStream(64 * 1024);
      await expect(storage.put(key, stream, { contentType: 'application/octet-stream', maxBytes: 1000 })).rejects.toBeInstanceOf(ObjectTooLargeError);
      expect(Buffer.from(await storage.getBytes(key)).toString()).toBe('version one');
      expect((await storage.head(key))?.contentType).toBe('text/plain');
    });

    it('an overwrite replaces bytes and content type', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd9', 'replaced');
      await storage.put(key, Buffer.from('old'), { contentType: 'text/plain' });
      await storage.put(key, Buffer.from('{"new":true}'), { contentType: 'application/json' });
      expect(Buffer.from(await storage.getBytes(key)).toString()).toBe('{"new":true}');
      expect(await storage.head(key)).toEqual({ key, sizeBytes: 12, contentType: 'application/json' });
    });

    it('a failing source stream fails the put and stores nothing', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd10', 'broken.bin');
      let sent = 0;
      const stream = new Readable({
        read() {
          if (sent++ < 3) this.push(randomBytes(1024));
          else this.destroy(new Error('client went away'));
        },
      });
      await expect(storage.put(key, stream, { contentType: 'application/octet-stream' })).rejects.toThrow('client went away');
      expect(await storage.head(key)).toBeNull();
    });

    it('a missing key is ObjectNotFoundError for get and getBytes, null for head', async () => {
      const key = projectObjectKey(projectA, 'nothing', 'here.txt');
      await expect(storage.get(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
      await expect(storage.getBytes(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
      expect(await storage.head(key)).toBeNull();
      // A "folder" that only holds other objects is not an object either.
      await expect(storage.getBytes(projectObjectKey(projectA, 'documents', 'd1'))).rejects.toBeInstanceOf(ObjectNotFoundError);
      expect(await storage.head(projectObjectKey(projectA, 'documents', 'd1'))).toBeNull();
    });

    it('delete removes an object and is idempotent', async () => {
      const key = projectObjectKey(projectA, 'documents', 'd11', 'gone.txt');
      await storage.put(key, Buffer.from('bye'), { contentType: 'text/plain' });
      await storage.delete(key);
      expect(await storage.head(key)).toBeNull();
      await expect(storage.getBytes(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
      await storage.delete(key);
      await storage.delete(projectObjectKey(projectA, 'never', 'existed.txt'));
    });

    it('list and deletePrefix stay inside their prefix; another project is untouched', async () => {
      const a = (...rest: string[]) => projectObjectKey(projectA, 'kb', ...rest);
      const b = (...rest: string[]) => projectObjectKey(projectB, 'kb', ...rest);
      const aKeys = [a('x', '1.txt'), a('x', '2.txt'), a('y', 'deep', '3.txt')];
      const bKeys = [b('x', '1.txt'), b('y', '2.txt')];
      for (const key of [...aKeys, ...bKeys]) await storage.put(key, Buffer.from(key), { contentType: 'text/plain' });
      // A sibling whose name merely starts like the folder must not match a '/'-terminated prefix.
      const sibling = projectObjectKey(projectA, 'kb-other', 'z.txt');
      await storage.put(sibling, Buffer.from('z'), { contentType: 'text/csv' });

      const listedA = await storage.list(`projects/${projectA}/kb/`);
      expect(listedA.map((o) => o.key)).toEqual([...aKeys].sort());
      expect(listedA[0]).toEqual({ key: aKeys[0], sizeBytes: Buffer.byteLength(aKeys[0] as string), contentType: 'text/plain' });
      expect((await storage.list(`projects/${projectA}/kb/x/`)).map((o) => o.key)).toEqual([a('x', '1.txt'), a('x', '2.txt')]);
      // A prefix is a plain string prefix, as in S3.
      expect((await storage.list(`projects/${projectA}/kb`)).map((o) => o.key)).toEqual([...aKeys, sibling].sort());
      expect(await storage.list(`projects/${projectA}/nope/`)).toEqual([]);

      expect(await storage.deletePrefix(`projects/${projectA}/kb/`)).toBe(3);
      expect(await storage.list(`projects/${projectA}/kb/`)).toEqual([]);
      for (const key of aKeys) expect(await storage.head(key)).toBeNull();
      expect(await storage.head(sibling)).not.toBeNull();
      const listedB = await storage.list(projectObjectPrefix(projectB));
      expect(listedB.map((o) => o.key)).toEqual([...bKeys].sort());
      for (const key of bKeys) expect(Buffer.from(await storage.getBytes(key)).toString()).toBe(key);
      expect(await storage.deletePrefix(`projects/${projectA}/kb/`)).toBe(0);

      expect(await storage.deletePrefix(projectObjectPrefix(projectB))).toBe(bKeys.length);
      expect(await storage.list(projectObjectPrefix(projectB))).toEqual([]);
    });

    it('deletePrefix handles more than one page of keys', async () => {
      const project = `pc-${randomUUID()}`;
      const count = 1005; // past S3's 1000-key page
      const keys = Array.from({ length: count }, (_, i) => projectObjectKey(project, 'chunks', `${String(i).padStart(4, '0')}.txt`));
      for (let i = 0; i < keys.length; i += 50) {
        await Promise.all(keys.slice(i, i + 50).map((key) => storage.put(key, Buffer.from('x'), { contentType: 'text/plain' })));
      }
      expect(await storage.deletePrefix(projectObjectPrefix(project))).toBe(count);
      expect(await storage.head(keys[0] as string)).toBeNull();
      expect(await storage.head(keys[count - 1] as string)).toBeNull();
    });

    it('refuses keys that could escape their place', async () => {
      const bad = ['../x', 'projects/p/../../etc/passwd', '/etc/passwd', 'a//b', 'a\\b', 'a\0b', 'a/./b', 'trailing/', '', 'x.meta.json'];
      for (const key of bad) {
        await expect(storage.put(key, Buffer.from('x'), { contentType: 'text/plain' }), key).rejects.toBeInstanceOf(InvalidObjectKeyError);
        await expect(storage.getBytes(key), key).rejects.toBeInstanceOf(InvalidObjectKeyError);
        await expect(storage.delete(key), key).rejects.toBeInstanceOf(InvalidObjectKeyError);
      }
      await expect(storage.list('../')).rejects.toBeInstanceOf(InvalidObjectKeyError);
      await expect(storage.deletePrefix('')).rejects.toBeInstanceOf(InvalidObjectKeyError);
      await expect(storage.deletePrefix('projects/../')).rejects.toBeInstanceOf(InvalidObjectKeyError);
    });
  });
}

describe('projectObjectKey', () => {
  it('builds projects/<projectId>/<rest>', () => {
    expect(projectObjectKey('p1', 'documents', 'd1', 'file.pdf')).toBe('projects/p1/documents/d1/file.pdf');
    expect(projectObjectKey('p1', 'documents/d1/file.pdf')).toBe('projects/p1/documents/d1/file.pdf');
    expect(projectObjectPrefix('p1')).toBe('projects/p1/');
  });

  it('rejects traversal, absolute paths, backslashes, NUL and empty segments', () => {
    const bad: Array<[string, ...string[]]> = [
      ['p1', '..', 'p2', 'secret'],
      ['p1', 'documents/../../p2/secret'],
      ['..', 'x'],
      ['p1/../p2', 'x'],
      ['p1/x', 'y'], // a project id must be one segment, or p1 could reach into "p1/x"'s files
      ['p1', '/etc/passwd'],
      ['p1', 'a\\b'],
      ['p1', 'a\0b'],
      ['p1', ''],
      ['p1', 'a', '', 'b'],
      ['p1', 'a//b'],
      ['p1', '.'],
      ['', 'x'],
      ['p1'],
    ];
    for (const [projectId, ...rest] of bad) {
      expect(() => projectObjectKey(projectId, ...rest), JSON.stringify([projectId, ...rest])).toThrow(InvalidObjectKeyError);
    }
  });
});

describe('storage drivers', () => {
  let localDir: string;
  let minioDir: string;
  let minio: MinioServer | undefined;

  beforeAll(async () => {
    localDir = await mkdtemp(path.join(os.tmpdir(), 'ds-storage-local-'));
    minioDir = await mkdtemp(path.join(os.tmpdir(), 'ds-storage-minio-'));
    const [port, consolePort] = [await freePort(), await freePort()];
    const started = Date.now();
    minio = await startMinio({ port, consolePort, dataDir: minioDir });
    log(`MinIO ready in ${Date.now() - started} ms on ${minio.endpoint}`);
  }, 600_000); // the first run may build MinIO

  afterAll(async () => {
    await minio?.stop();
    await rm(localDir, { recursive: true, force: true });
    await rm(minioDir, { recursive: true, force: true });
  });

  contract('local', () => createObjectStorage({ driver: 'local', dir: localDir }));

  it('local: failed and refused uploads leave no temp files behind', async () => {
    expect(await readdir(path.join(localDir, 'tmp')).catch(() => [])).toEqual([]);
  });

  // Missing at the start: the driver must create it on first use.
  const bucket = `ds-test-${randomUUID().slice(0, 8)}`;
  const s3Config = (prefix?: string) => {
    if (!minio) throw new Error('MinIO did not start');
    return {
      driver: 's3' as const,
      endpoint: minio.endpoint,
      region: 'us-east-1',
      bucket,
      accessKeyId: minio.accessKeyId,
      secretAccessKey: minio.secretAccessKey,
      forcePathStyle: true,
      ...(prefix ? { prefix } : {}),
    };
  };

  contract('s3', () => createObjectStorage(s3Config('deployment-1')));

  it('s3: the configured prefix is prepended to every key and hidden from callers', async () => {
    const prefixed = createObjectStorage(s3Config('deployment-2/'));
    const raw = createObjectStorage(s3Config());
    try {
      const key = projectObjectKey('p-prefix', 'a.txt');
      await prefixed.put(key, Buffer.from('hi'), { contentType: 'text/plain' });
      expect((await prefixed.list('projects/p-prefix/')).map((o) => o.key)).toEqual([key]);
      expect(await raw.head(key)).toBeNull();
      expect((await raw.list('deployment-2/')).map((o) => o.key)).toEqual([`deployment-2/${key}`]);
    } finally {
      await prefixed.close?.();
      await raw.close?.();
    }
  });

  it('s3: an upload refused after its first part was sent leaves no multipart upload behind', async () => {
    const config = s3Config();
    const storage = createObjectStorage(config);
    const client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: true,
      credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    });
    try {
      const key = projectObjectKey('p-multipart', 'huge.bin');
      // Past one 5 MiB part, so a multipart upload was started before the limit tripped.
      const { stream } = randomStream(12 * 1024 * 1024);
      await expect(storage.put(key, stream, { contentType: 'application/octet-stream', maxBytes: 7 * 1024 * 1024 }))
        .rejects.toBeInstanceOf(ObjectTooLargeError);
      expect(await storage.head(key)).toBeNull();
      const pending = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
      expect(pending.Uploads ?? []).toEqual([]);
    } finally {
      client.destroy();
      await storage.close?.();
    }
  });

  it('s3: the whole knowledge runtime runs on MinIO from config — files and the LanceDB index (s3:// URI)', async () => {
    const config = s3Config();
    const appConfig = loadConfig({
      ...process.env,
      STORAGE_DRIVER: 's3',
      S3_ENDPOINT: config.endpoint,
      S3_BUCKET: bucket,
      S3_ACCESS_KEY_ID: config.accessKeyId,
      S3_SECRET_ACCESS_KEY: config.secretAccessKey,
      S3_FORCE_PATH_STYLE: 'true',
      LANCEDB_URI: `s3://${bucket}/lancedb-${randomUUID().slice(0, 8)}`,
    });
    const runtime = createKnowledgeRuntime(appConfig);
    try {
      expect(runtime.storage.driver).toBe('s3');
      await runtime.storage.put(projectObjectKey('p-lance', 'doc.txt'), Buffer.from('hello'), { contentType: 'text/plain' });
      const index = await runtime.index();
      const kb = randomUUID();
      const project = randomUUID();
      const vector = (seed: number) => Array.from({ length: 8 }, (_, i) => Math.sin(seed + i));
      const rows = ['the okapi grazes in the Ituri forest', 'a narwhal tusk is a long tooth', 'glaciers calve into the fjord'].map((text, i) => ({
        chunk_id: randomUUID(),
        document_id: i === 0 ? randomUUID() : randomUUID(),
        project_id: project,
        ordinal: i,
        text,
        page: null,
        heading: null,
        vector: vector(i),
      }));
      await index.upsertChunks(kb, rows);
      expect(await index.countChunks(kb)).toBe(3);
      const fts = await index.search(kb, project, { queryText: 'narwhal tusk', topK: 2, mode: 'fts' });
      expect(fts[0]!.chunk_id).toBe(rows[1]!.chunk_id);
      const hybrid = await index.search(kb, project, { queryText: 'okapi Ituri', queryVector: vector(0), topK: 2, mode: 'hybrid' });
      expect(hybrid[0]!.chunk_id).toBe(rows[0]!.chunk_id);
      expect(await index.deleteDocument(kb, rows[2]!.document_id)).toBe(1);
      expect(await index.countChunks(kb)).toBe(2);
      // The index lives in the bucket, next to the files.
      const raw = createObjectStorage(config);
      expect((await raw.list('lancedb-')).length).toBeGreaterThan(0);
      await raw.close?.();
    } finally {
      await runtime.close();
    }
  });
});
