import { createHash } from 'node:crypto';
import { requireCjs } from '../cjs.js';
import { IntegrityError } from '../errors.js';
import type { BlobStore } from '../storage/blobstore.js';
import { BlobType, ID_BYTES, SEAL_OVERHEAD, type Sealer } from './sealing.js';

const { decode, encode } = requireCjs('@msgpack/msgpack') as typeof import('@msgpack/msgpack');

/**
 * A packfile is many sealed blobs back to back, then a sealed trailer that
 * lists them, then the trailer's length:
 *
 *   "KLPK" u8 version u8[3] zero | blob… | sealed trailer | u32le trailer length
 *
 * Any blob is read with one ranged read of its bytes; the trailer lets `check`
 * and index rebuilds read a pack without the index.
 */
export const PACK_MAGIC = Buffer.from('KLPK\x01\x00\x00\x00', 'latin1');
export const PACK_HEADER_BYTES = PACK_MAGIC.length;
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
const TRAILER_ID = Buffer.alloc(ID_BYTES);

export interface PackedBlob {
  type: BlobType;
  id: Buffer;
  offset: number;
  length: number;
  rawLength: number;
}

export function packKey(packId: Buffer): string {
  const hex = packId.toString('hex');
  return `packs/${hex.slice(0, 2)}/${hex}`;
}

export function packIdFromKey(key: string): Buffer | undefined {
  const match = /^packs\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(key);
  return match ? Buffer.from(match[1], 'hex') : undefined;
}

/**
 * Assembles one pack in a single buffer: sealed blobs are copied in as they
 * come, so finishing a pack costs no second copy, and the buffer can be
 * reused for the next pack once this one is stored.
 */
export class PackBuilder {
  private buffer: Buffer;
  readonly blobs: PackedBlob[] = [];
  private size = PACK_HEADER_BYTES;

  constructor(buffer: Buffer) {
    this.buffer = buffer.length >= PACK_HEADER_BYTES ? buffer : Buffer.allocUnsafeSlow(PACK_HEADER_BYTES);
    PACK_MAGIC.copy(this.buffer, 0);
  }

  get byteLength(): number {
    return this.size;
  }

  get empty(): boolean {
    return this.blobs.length === 0;
  }

  /** The buffer the pack lives in (possibly grown): hand it back for reuse once the pack is stored. */
  get storage(): Buffer {
    return this.buffer;
  }

  private append(bytes: Buffer): number {
    const offset = this.size;
    if (offset + bytes.length > this.buffer.length) {
      // Only a blob larger than the headroom (a very long chunk list) gets here.
      const grown = Buffer.allocUnsafeSlow(Math.max(offset + bytes.length, this.buffer.length * 2));
      this.buffer.copy(grown, 0, 0, offset);
      this.buffer = grown;
    }
    bytes.copy(this.buffer, offset);
    this.size += bytes.length;
    return offset;
  }

  add(type: BlobType, id: Buffer, sealed: Buffer, rawLength: number): void {
    const offset = this.append(sealed);
    this.blobs.push({ type, id, offset, length: sealed.length, rawLength });
  }

  /** The pack's bytes and its id, the SHA-256 of those bytes (so `check` can verify a pack without keys). */
  finish(sealer: Sealer): { id: Buffer; data: Buffer } {
    const listing = encode(this.blobs.map((b) => [b.type, b.id, b.offset, b.length, b.rawLength]));
    const trailer = sealer.seal(BlobType.packTrailer, TRAILER_ID, Buffer.from(listing.buffer, listing.byteOffset, listing.byteLength));
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32LE(trailer.length);
    this.append(trailer);
    this.append(length);
    const data = this.buffer.subarray(0, this.size);
    return { id: createHash('sha256').update(data).digest(), data };
  }
}

/** Bytes of a pack's end fetched by the first read: the whole trailer of most packs, even one of small files. */
const TAIL_READ = 64 * 1024;
const STORED_TYPES: ReadonlySet<number> = new Set([BlobType.chunk, BlobType.content, BlobType.tree, BlobType.treePage, BlobType.snapshot]);

/**
 * The blob list of a stored pack, from its trailer alone, as an index
 * rebuild needs it: one ranged read of the pack's end (two when the trailer
 * is larger than that read), authenticated, and each row checked to lie
 * within the pack, so a listing that opens never points outside it.
 */
export async function readPackListing(store: BlobStore, packId: Buffer, size: number, sealer: Sealer): Promise<PackedBlob[]> {
  if (size < PACK_HEADER_BYTES + SEAL_OVERHEAD + 4) throw new IntegrityError('too short to be a pack');
  const key = packKey(packId);
  const tailStart = Math.max(0, size - TAIL_READ);
  const tail = await store.getRange(key, tailStart, size - tailStart);
  if (tailStart === 0 && !tail.subarray(0, 4).equals(PACK_MAGIC.subarray(0, 4))) throw new IntegrityError('not a pack');
  const trailerLength = tail.readUInt32LE(tail.length - 4);
  const start = size - 4 - trailerLength;
  if (trailerLength < SEAL_OVERHEAD || start < PACK_HEADER_BYTES) throw new IntegrityError('no trailer (truncated, or not a pack)');
  const sealed = start >= tailStart ? tail.subarray(start - tailStart, tail.length - 4) : await store.getRange(key, start, trailerLength);
  const listing = sealer.open(BlobType.packTrailer, TRAILER_ID, sealed, 'trailer');
  let rows: unknown;
  try {
    rows = decode(listing);
  } catch {
    throw new IntegrityError('malformed trailer');
  }
  if (!Array.isArray(rows)) throw new IntegrityError('malformed trailer');
  return rows.map((row: unknown) => {
    const [type, id, offset, length, rawLength] = Array.isArray(row) ? row : [];
    const whole = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
    if (
      !STORED_TYPES.has(type) ||
      !(id instanceof Uint8Array) ||
      id.length !== ID_BYTES ||
      !whole(offset) ||
      !whole(length) ||
      !whole(rawLength) ||
      offset < PACK_HEADER_BYTES ||
      length < SEAL_OVERHEAD ||
      offset + length > start
    ) {
      throw new IntegrityError('malformed trailer entry');
    }
    return { type: type as BlobType, id: Buffer.from(id), offset, length, rawLength };
  });
}
