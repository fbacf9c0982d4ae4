import { requireCjs } from '../cjs.js';
import type { BlobType } from './sealing.js';

const { decode, encode } = requireCjs('@msgpack/msgpack') as typeof import('@msgpack/msgpack');

/** Where a blob lives: one ranged read of `length` bytes at `offset` in pack `packId`. */
export interface BlobLocation {
  type: BlobType;
  packId: Buffer;
  offset: number;
  length: number;
  rawLength: number;
}

type Row = [type: number, id: Uint8Array, pack: number, offset: number, length: number, rawLength: number];

/**
 * The in-memory map from blob id to location, merged from the store's index
 * deltas. Pack ids are interned so a million entries share a few thousand
 * pack buffers.
 */
export class BlobIndex {
  private readonly entries = new Map<string, BlobLocation>();
  private readonly packIds = new Map<string, Buffer>();

  get size(): number {
    return this.entries.size;
  }

  get(id: Buffer): BlobLocation | undefined {
    return this.entries.get(id.toString('latin1'));
  }

  has(id: Buffer): boolean {
    return this.entries.has(id.toString('latin1'));
  }

  add(id: Buffer, location: BlobLocation): void {
    const packKey = location.packId.toString('latin1');
    let packId = this.packIds.get(packKey);
    if (!packId) {
      packId = location.packId;
      this.packIds.set(packKey, packId);
    }
    this.entries.set(id.toString('latin1'), { ...location, packId });
  }

  *[Symbol.iterator](): IterableIterator<[Buffer, BlobLocation]> {
    for (const [key, location] of this.entries) yield [Buffer.from(key, 'latin1'), location];
  }

  packs(): Buffer[] {
    return [...this.packIds.values()];
  }

  /** All ids, sorted, concatenated in shared memory: the backup workers binary-search it. */
  sortedIds(): SharedArrayBuffer {
    const keys = [...this.entries.keys()].sort();
    const shared = new SharedArrayBuffer(keys.length * 32);
    const view = Buffer.from(shared);
    keys.forEach((key, i) => view.write(key, i * 32, 'latin1'));
    return shared;
  }
}

/** The plaintext of an index delta: the packs it names and one row per blob. */
export function encodeIndexDelta(entries: Iterable<[Buffer, BlobLocation]>): Buffer {
  const packs: Buffer[] = [];
  const packNumbers = new Map<string, number>();
  const rows: Row[] = [];
  for (const [id, location] of entries) {
    const key = location.packId.toString('latin1');
    let number = packNumbers.get(key);
    if (number === undefined) {
      number = packs.length;
      packs.push(location.packId);
      packNumbers.set(key, number);
    }
    rows.push([location.type, id, number, location.offset, location.length, location.rawLength]);
  }
  const bytes = encode({ v: 1, packs, blobs: rows });
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function decodeIndexDelta(plaintext: Buffer, into: BlobIndex): void {
  const { packs, blobs } = decode(plaintext) as { packs: Uint8Array[]; blobs: Row[] };
  const packIds = packs.map((p) => Buffer.from(p));
  for (const [type, id, pack, offset, length, rawLength] of blobs) {
    into.add(Buffer.from(id), { type: type as BlobType, packId: packIds[pack], offset, length, rawLength });
  }
}
