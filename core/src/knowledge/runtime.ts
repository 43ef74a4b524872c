// The knowledge pipeline's two stores, built from config once per process: object storage for the
// uploaded files and the LanceDB index. The index is opened on first use, so a process that never
// touches knowledge bases never loads LanceDB's native module.
import type { AppConfig } from '../config.ts';
import { createObjectStorage, type ObjectStorage, type StorageConfig } from '../storage/index.ts';
import type { KnowledgeIndex } from './index-store.ts';

export interface KnowledgeRuntime {
  storage: ObjectStorage;
  index(): Promise<KnowledgeIndex>;
  close(): Promise<void>;
}

export function storageConfigOf(config: AppConfig): StorageConfig {
  const s = config.storage;
  if (s.driver === 's3') {
    return {
      driver: 's3',
      endpoint: s.s3.endpoint,
      region: s.s3.region,
      bucket: s.s3.bucket!,
      accessKeyId: s.s3.accessKeyId,
      secretAccessKey: s.s3.secretAccessKey,
      forcePathStyle: s.s3.forcePathStyle,
    };
  }
  return { driver: 'local', dir: s.localDir };
}

/** LanceDB on S3 (`s3://bucket/prefix`) reuses the object-storage credentials. */
function indexStorageOptions(config: AppConfig): Record<string, string> | undefined {
  if (!config.storage.lancedbUri.startsWith('s3://')) return undefined;
  const s3 = config.storage.s3;
  const options: Record<string, string> = { aws_region: s3.region };
  if (s3.endpoint) {
    options.aws_endpoint = s3.endpoint;
    if (s3.endpoint.startsWith('http://')) options.allow_http = 'true';
    if (s3.forcePathStyle) options.aws_virtual_hosted_style_request = 'false';
  }
  if (s3.accessKeyId) options.aws_access_key_id = s3.accessKeyId;
  if (s3.secretAccessKey) options.aws_secret_access_key = s3.secretAccessKey;
  return options;
}

export function createKnowledgeRuntime(config: AppConfig, storage: ObjectStorage = createObjectStorage(storageConfigOf(config))): KnowledgeRuntime {
  let opening: Promise<KnowledgeIndex> | null = null;
  return {
    storage,
    index() {
      opening ??= import('./index-store.ts').then(({ KnowledgeIndex }) =>
        KnowledgeIndex.open({ uri: config.storage.lancedbUri, storageOptions: indexStorageOptions(config) }),
      );
      return opening;
    },
    async close() {
      if (opening) await (await opening.catch(() => null))?.close();
      await storage.close?.();
    },
  };
}
