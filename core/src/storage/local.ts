// Object storage on the local disk, for development and single-machine installs. Layout under
// `dir`: `objects/<key>` holds the bytes, `objects/<key>.meta.json` the content type, and `tmp/`
// the uploads in flight (same filesystem, so the final rename is atomic; kept outside `objects/`
// so no key can collide with a temp file). Unlike S3, a key cannot also be a folder of other keys
// (`a` and `a/b` cannot both exist); project keys never need that.
import { randomUUID } from 'node:crypto';
import { createWriteStream, type Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ByteMeter,
  LOCAL_META_SUFFIX,
  ObjectNotFoundError,
  ObjectTooLargeError,
  assertDeletablePrefix,
  assertValidKey,
  assertValidPrefix,
  checkMaxBytes,
  compareKeys,
  type ObjectInfo,
  type ObjectStorage,
  type PutOptions,
  type PutResult,
} from './contract.ts';

interface Sidecar {
  contentType: string;
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

// ENOTDIR/EISDIR: a path component is a file, or the key names a folder: either way no such object.
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'EISDIR']);
const isMissing = (error: unknown) => MISSING.has(errorCode(error) ?? '');

export class LocalObjectStorage implements ObjectStorage {
  readonly driver = 'local' as const;
  readonly #objectsDir: string;
  readonly #tmpDir: string;

  constructor(dir: string) {
    const root = path.resolve(dir);
    this.#objectsDir = path.join(root, 'objects');
    this.#tmpDir = path.join(root, 'tmp');
  }

  #pathFor(key: string): string {
    assertValidKey(key);
    const file = path.join(this.#objectsDir, ...key.split('/'));
    // Key validation already rules traversal out; this guards against a rule being loosened later.
    if (!file.startsWith(this.#objectsDir + path.sep)) throw new Error(`object key escapes the storage directory: ${key}`);
    return file;
  }

  async put(key: string, body: Readable | Uint8Array, options: PutOptions): Promise<PutResult> {
    const file = this.#pathFor(key);
    checkMaxBytes(options);
    if (body instanceof Uint8Array && options.maxBytes !== undefined && body.byteLength > options.maxBytes) {
      throw new ObjectTooLargeError(options.maxBytes);
    }
    await fs.mkdir(this.#tmpDir, { recursive: true });
    const tmp = path.join(this.#tmpDir, `${randomUUID()}.part`);
    const meter = new ByteMeter(options.maxBytes);
    const source = body instanceof Uint8Array ? Readable.from([body]) : body;
    try {
      // `flush` fsyncs before close so a crash after the rename cannot leave a truncated object.
      await pipeline(source, meter, createWriteStream(tmp, { flags: 'wx', flush: true }));
      const sidecar: Sidecar = { contentType: options.contentType };
      const metaTmp = `${tmp}.meta`;
      await fs.writeFile(metaTmp, JSON.stringify(sidecar), { flag: 'wx' });
      // Bytes first: if the key cannot be placed (a folder is in the way) nothing has changed yet.
      await this.#moveIntoPlace(tmp, file);
      await this.#moveIntoPlace(metaTmp, file + LOCAL_META_SUFFIX);
    } catch (error) {
      await Promise.all([fs.rm(tmp, { force: true }), fs.rm(`${tmp}.meta`, { force: true })]);
      throw error;
    }
    return meter.result();
  }

  async #moveIntoPlace(from: string, to: string): Promise<void> {
    // A concurrent delete may prune the freshly made folder between mkdir and rename; retry once.
    for (let attempt = 0; ; attempt++) {
      await fs.mkdir(path.dirname(to), { recursive: true });
      try {
        await fs.rename(from, to);
        return;
      } catch (error) {
        if (attempt > 0 || errorCode(error) !== 'ENOENT') throw error;
      }
    }
  }

  async get(key: string): Promise<Readable> {
    const file = this.#pathFor(key);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (error) {
      if (isMissing(error)) throw new ObjectNotFoundError(key);
      throw error;
    }
    // Opened first and streamed from the handle, so a concurrent delete cannot fail the stream.
    // open() succeeds on a folder on Linux; reading it would fail later with EISDIR.
    const isFile = await handle.stat().then((stat) => stat.isFile(), () => false);
    if (!isFile) {
      await handle.close();
      throw new ObjectNotFoundError(key);
    }
    return handle.createReadStream();
  }

  async getBytes(key: string): Promise<Uint8Array> {
    const file = this.#pathFor(key);
    try {
      return new Uint8Array(await fs.readFile(file));
    } catch (error) {
      if (isMissing(error)) throw new ObjectNotFoundError(key);
      throw error;
    }
  }

  async head(key: string): Promise<ObjectInfo | null> {
    return this.#info(key, this.#pathFor(key));
  }

  async #info(key: string, file: string): Promise<ObjectInfo | null> {
    let sizeBytes: number;
    try {
      const stat = await fs.stat(file);
      if (!stat.isFile()) return null;
      sizeBytes = stat.size;
    } catch (error) {
      if (isMissing(error)) return null;
      throw error;
    }
    let contentType: string | null = null;
    try {
      contentType = (JSON.parse(await fs.readFile(file + LOCAL_META_SUFFIX, 'utf8')) as Sidecar).contentType ?? null;
    } catch (error) {
      // A missing or torn sidecar (crash mid-put) loses only the content type, never the object.
      if (!isMissing(error) && !(error instanceof SyntaxError)) throw error;
    }
    return { key, sizeBytes, contentType };
  }

  async delete(key: string): Promise<void> {
    const file = this.#pathFor(key);
    await this.#remove(file);
    await this.#pruneEmptyFolders(path.dirname(file));
  }

  async #remove(file: string): Promise<boolean> {
    let removed = true;
    try {
      await fs.unlink(file);
    } catch (error) {
      if (!isMissing(error)) throw error;
      removed = false;
    }
    await fs.rm(file + LOCAL_META_SUFFIX, { force: true });
    return removed;
  }

  /** Removes folders left empty, up to (not including) `objects/`, so listing stays cheap. */
  async #pruneEmptyFolders(folder: string): Promise<void> {
    while (folder.startsWith(this.#objectsDir + path.sep)) {
      try {
        await fs.rmdir(folder);
      } catch {
        return; // not empty (or already gone): stop climbing
      }
      folder = path.dirname(folder);
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertDeletablePrefix(prefix);
    const found = await this.#objectsUnder(prefix);
    let deleted = 0;
    for (const { file } of found) {
      if (await this.#remove(file)) deleted++;
    }
    // Deepest first, so a parent is tried after its children are gone.
    const folders = [...new Set(found.map(({ file }) => path.dirname(file)))].sort((a, b) => b.length - a.length);
    for (const folder of folders) await this.#pruneEmptyFolders(folder);
    return deleted;
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    assertValidPrefix(prefix);
    const infos: ObjectInfo[] = [];
    for (const { key, file } of await this.#objectsUnder(prefix)) {
      const info = await this.#info(key, file);
      if (info) infos.push(info); // else deleted meanwhile
    }
    return infos;
  }

  /** Objects whose key starts with prefix (a plain string prefix, as in S3), sorted like S3 sorts them. */
  async #objectsUnder(prefix: string): Promise<Array<{ key: string; file: string }>> {
    // Walk only the deepest folder the prefix fully names: 'projects/p1/doc' walks 'projects/p1'.
    const folderPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const start = folderPart ? path.join(this.#objectsDir, ...folderPart.split('/')) : this.#objectsDir;
    let entries: Dirent[];
    try {
      entries = await fs.readdir(start, { recursive: true, withFileTypes: true });
    } catch (error) {
      if (isMissing(error)) return [];
      throw error;
    }
    const found: Array<{ key: string; file: string }> = [];
    for (const entry of entries) {
      if (!entry.isFile() || entry.name.endsWith(LOCAL_META_SUFFIX)) continue;
      const file = path.join(entry.parentPath, entry.name);
      const key = path.relative(this.#objectsDir, file).split(path.sep).join('/');
      if (key.startsWith(prefix)) found.push({ key, file });
    }
    return found.sort((a, b) => compareKeys(a.key, b.key));
  }
}
