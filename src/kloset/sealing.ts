import { createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';
import { IntegrityError } from '../errors.js';
import type { StoreKeys } from './keys.js';

/** What a blob holds; bound into its authentication so a blob cannot pass for another kind. */
export const BlobType = {
  chunk: 1,
  content: 2,
  tree: 3,
  treePage: 4,
  snapshot: 5,
  packTrailer: 6,
  index: 7,
  lock: 8,
} as const;
export type BlobType = (typeof BlobType)[keyof typeof BlobType];

export const ID_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/**
 * Random nonces, drawn from the system RNG in batches: one getrandom call per
 * thousand blobs instead of one per blob. Every nonce is still 96 fresh random bits.
 */
const NONCE_BATCH = 1024;
const nonces = Buffer.alloc(NONCE_BYTES * NONCE_BATCH);
let noncesLeft = 0;

function takeNonce(into: Buffer): void {
  if (noncesLeft === 0) {
    randomFillSync(nonces);
    noncesLeft = NONCE_BATCH;
  }
  noncesLeft--;
  const at = noncesLeft * NONCE_BYTES;
  nonces.copy(into, 0, at, at + NONCE_BYTES);
  // Never hand the same bytes out twice, even if this code is later changed to reuse the batch.
  nonces.fill(0, at, at + NONCE_BYTES);
}

function associatedData(type: BlobType, id: Buffer): Buffer {
  const aad = Buffer.allocUnsafe(1 + id.length);
  aad[0] = type;
  id.copy(aad, 1);
  return aad;
}

/**
 * Authenticated sealing of every byte the store holds. Encrypted stores use
 * AES-256-GCM with a random nonce; plaintext stores append a truncated
 * HMAC-SHA256. Either way the type and id are authenticated, so a swapped,
 * flipped or truncated blob is refused.
 */
export class Sealer {
  constructor(private readonly keys: StoreKeys) {}

  get encrypted(): boolean {
    return this.keys.encryptionKey !== undefined;
  }

  blobId(plaintext: Buffer): Buffer {
    return createHmac('sha256', this.keys.idKey).update(plaintext).digest();
  }

  /** `payload` may come in parts (codec byte, body): they are sealed as their concatenation. */
  seal(type: BlobType, id: Buffer, payload: Buffer | readonly Buffer[]): Buffer {
    const parts = Buffer.isBuffer(payload) ? [payload] : payload;
    const length = parts.reduce((sum, part) => sum + part.length, 0);
    const out = Buffer.allocUnsafe(length + SEAL_OVERHEAD);
    this.sealInto(type, id, parts, out, 0);
    return out;
  }

  /** Seals into `target` at `offset` (which must have room for the parts plus SEAL_OVERHEAD); returns the sealed length. */
  sealInto(type: BlobType, id: Buffer, parts: readonly Buffer[], target: Buffer, offset: number): number {
    const aad = associatedData(type, id);
    const start = offset;
    if (this.keys.encryptionKey) {
      const nonce = target.subarray(offset, offset + NONCE_BYTES);
      takeNonce(nonce);
      const cipher = createCipheriv('aes-256-gcm', this.keys.encryptionKey, nonce);
      cipher.setAAD(aad);
      offset += NONCE_BYTES;
      for (const part of parts) offset += cipher.update(part).copy(target, offset);
      offset += cipher.final().copy(target, offset);
      offset += cipher.getAuthTag().copy(target, offset);
      return offset - start;
    }
    const mac = createHmac('sha256', this.keys.macKey).update(aad);
    for (const part of parts) {
      mac.update(part);
      offset += part.copy(target, offset);
    }
    offset += mac.digest().copy(target, offset, 0, SEAL_OVERHEAD);
    return offset - start;
  }

  open(type: BlobType, id: Buffer, sealed: Buffer, what: string): Buffer {
    if (sealed.length < SEAL_OVERHEAD) throw new IntegrityError(`${what}: blob too short`);
    const aad = associatedData(type, id);
    if (this.keys.encryptionKey) {
      const nonce = sealed.subarray(0, NONCE_BYTES);
      const tag = sealed.subarray(sealed.length - TAG_BYTES);
      try {
        const decipher = createDecipheriv('aes-256-gcm', this.keys.encryptionKey, nonce);
        decipher.setAAD(aad);
        decipher.setAuthTag(tag);
        const body = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
        decipher.final();
        return body;
      } catch (err) {
        throw new IntegrityError(`${what}: authentication failed (damaged or tampered)`, { cause: err });
      }
    }
    const payload = sealed.subarray(0, sealed.length - SEAL_OVERHEAD);
    const mac = createHmac('sha256', this.keys.macKey).update(aad).update(payload).digest().subarray(0, SEAL_OVERHEAD);
    if (!timingSafeEqual(mac, sealed.subarray(sealed.length - SEAL_OVERHEAD))) {
      throw new IntegrityError(`${what}: authentication failed (damaged or tampered)`);
    }
    return payload;
  }
}
