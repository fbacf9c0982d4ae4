import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { requireCjs } from '../cjs.js';
import { KlosetError } from '../errors.js';

const { hashRaw } = requireCjs('@node-rs/argon2') as typeof import('@node-rs/argon2');

/** Argon2id cost, recorded in the store's config so any later version can derive the same key. */
export interface KdfParams {
  algorithm: 'argon2id';
  memoryKiB: number;
  iterations: number;
  parallelism: number;
  salt: string; // base64
}

export const DEFAULT_KDF: Omit<KdfParams, 'salt'> = {
  algorithm: 'argon2id',
  memoryKiB: 64 * 1024,
  iterations: 3,
  parallelism: 2,
};

/**
 * What `create` derives with when KLOSET_TESTONLY_WEAKEN_KDF=1, as borg's
 * BORG_TESTONLY_WEAKEN_KDF: test suites run the CLI hundreds of times, and the
 * default cost is a tenth of a second of each. A store created so is no
 * better protected than its passphrase alone.
 */
export const TESTONLY_WEAK_KDF: Omit<KdfParams, 'salt' | 'algorithm'> = {
  memoryKiB: 1024,
  iterations: 1,
  parallelism: 1,
};

/**
 * The keys every other layer uses, all derived from one random master key so
 * that changing the passphrase only rewraps 64 bytes.
 */
export interface StoreKeys {
  /** HMAC-SHA256 key naming blobs by content: equal plaintext, equal id; no key, no meaning. */
  idKey: Buffer;
  /** AES-256-GCM key; absent for a plaintext store. */
  encryptionKey?: Buffer;
  /** HMAC key authenticating blobs of a plaintext store, and the store config in both kinds. */
  macKey: Buffer;
  /** Seeds the chunker's gear table, so chunk boundaries do not reveal content either. */
  chunkerSeed: Buffer;
}

export const MASTER_KEY_BYTES = 64;

export function deriveStoreKeys(masterKey: Buffer, encrypted: boolean): StoreKeys {
  const sub = (info: string, length = 32) =>
    Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), `kloset ${info}`, length));
  return {
    idKey: sub('blob id'),
    encryptionKey: encrypted ? sub('blob encryption') : undefined,
    macKey: sub('blob mac'),
    chunkerSeed: sub('chunker seed'),
  };
}

export async function deriveKeyEncryptionKey(passphrase: string, params: KdfParams): Promise<Buffer> {
  return hashRaw(passphrase, {
    algorithm: 2, // Argon2id
    memoryCost: params.memoryKiB,
    timeCost: params.iterations,
    parallelism: params.parallelism,
    outputLen: 32,
    salt: Buffer.from(params.salt, 'base64'),
  });
}

const WRAP_AAD = Buffer.from('kloset master key v1');

export function wrapMasterKey(masterKey: Buffer, kek: Buffer): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  cipher.setAAD(WRAP_AAD);
  const body = Buffer.concat([cipher.update(masterKey), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64');
}

/** Throws "wrong passphrase" when the tag does not verify: nothing else is read before this. */
export function unwrapMasterKey(wrapped: string, kek: Buffer): Buffer {
  const raw = Buffer.from(wrapped, 'base64');
  const nonce = raw.subarray(0, 12);
  const tag = raw.subarray(raw.length - 16);
  const decipher = createDecipheriv('aes-256-gcm', kek, nonce);
  decipher.setAAD(WRAP_AAD);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
  } catch {
    throw new KlosetError('wrong passphrase');
  }
}

export function macConfig(macKey: Buffer, canonical: string): string {
  return createHmac('sha256', macKey).update(canonical).digest('base64');
}

export function verifyConfigMac(macKey: Buffer, canonical: string, mac: string): boolean {
  const expected = createHmac('sha256', macKey).update(canonical).digest();
  const given = Buffer.from(mac, 'base64');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
