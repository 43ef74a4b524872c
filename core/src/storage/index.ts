// Object storage for uploaded files (knowledge-base documents): one contract, a `local` driver for
// development and single-machine installs and an `s3` driver for S3-compatible services. Callers
// build every key with projectObjectKey so one project can never read or delete another's files.
import { LocalObjectStorage } from './local.ts';
import { S3ObjectStorage } from './s3.ts';
import type { ObjectStorage, StorageConfig } from './contract.ts';

export {
  InvalidObjectKeyError,
  ObjectNotFoundError,
  ObjectTooLargeError,
  projectObjectKey,
  projectObjectPrefix,
} from './contract.ts';
export type { ObjectInfo, ObjectStorage, PutOptions, PutResult, StorageConfig } from './contract.ts';
export { LocalObjectStorage } from './local.ts';
export { S3ObjectStorage } from './s3.ts';

/** Nothing is contacted here: the s3 driver connects (and creates its bucket if missing) on first use. */
export function createObjectStorage(config: StorageConfig): ObjectStorage {
  switch (config.driver) {
    case 'local':
      return new LocalObjectStorage(config.dir);
    case 's3':
      return new S3ObjectStorage(config);
    default:
      throw new Error(`unknown storage driver: ${(config as { driver: unknown }).driver}`);
  }
}
