import { requireCjs } from '../cjs.js';
import { IntegrityError } from '../errors.js';
import { ID_BYTES, type BlobType } from './sealing.js';

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
 * One blob in the table: id, pack number, offset, length, raw length (u32le
 * each) and type (u8). A million blobs take 49 MB in one buffer, and loading
 * them costs a copy, not a million objects for the collector.
 */
const RECORD = ID_BYTES + 4 * 4 + 1;
const AT_PACK = ID_BYTES;
const AT_OFFSET = ID_BYTES + 4;
const AT_LENGTH = ID_BYTES + 8;
const AT_RAW_LENGTH = ID_BYTES + 12;
const AT_TYPE = ID_BYTES + 16;

/** The merged index as the local cache keeps it: the table, and the pack ids its pack numbers stand for. */
export interface IndexTable {
  packs: Buffer[];
  records: Buffer;
}

/**
 * The map from blob id to location, merged from the store's index deltas.
 * Most of it is a table of fixed-size records sorted by id, searched by
 * bisection; the blobs added since it was built (by a backup under way) sit
 * in a map beside it and are merged in when the table is next needed whole.
 * Pack ids are interned: every blob of a pack shares one buffer.
 */
export class BlobIndex {
  private records: Buffer = Buffer.alloc(0);
  private packIds: Buffer[] = [];
  private readonly packNumbers = new Map<string, number>();
  /** Rows decoded and not yet sorted into the table. */
  private unsorted: Buffer[] = [];
  /** Blobs added one by one, by latin1 id: they take precedence over the table. */
  private readonly recent = new Map<string, BlobLocation>();
  /** How many of `recent` the table also holds. */
  private shadowed = 0;

  get size(): number {
    this.sort();
    return this.records.length / RECORD + this.recent.size - this.shadowed;
  }

  get(id: Buffer): BlobLocation | undefined {
    const added = this.recent.size > 0 ? this.recent.get(id.toString('latin1')) : undefined;
    if (added) return added;
    const at = this.find(id);
    return at < 0 ? undefined : this.location(at);
  }

  has(id: Buffer): boolean {
    return (this.recent.size > 0 && this.recent.has(id.toString('latin1'))) || this.find(id) >= 0;
  }

  add(id: Buffer, location: BlobLocation): void {
    const key = id.toString('latin1');
    if (!this.recent.has(key) && this.find(id) >= 0) this.shadowed++;
    this.recent.set(key, { ...location, packId: this.packIds[this.packNumber(location.packId)] });
  }

  /** Adds the rows of an index delta, over what was added before; they are sorted into the table on the next lookup. */
  addDelta(packs: Buffer[], rows: Row[]): void {
    this.queueRecent();
    this.queueRows(
      packs.map((packId) => this.packNumber(packId)),
      rows,
    );
  }

  private queueRows(numbers: number[], rows: Row[]): void {
    if (rows.length === 0) return;
    const records = Buffer.allocUnsafe(rows.length * RECORD);
    rows.forEach(([type, id, pack, offset, length, rawLength], i) => {
      if (id.length !== ID_BYTES || numbers[pack] === undefined) throw new Error('malformed index row');
      const at = i * RECORD;
      records.set(id, at);
      records.writeUInt32LE(numbers[pack], at + AT_PACK);
      records.writeUInt32LE(offset, at + AT_OFFSET);
      records.writeUInt32LE(length, at + AT_LENGTH);
      records.writeUInt32LE(rawLength, at + AT_RAW_LENGTH);
      records.writeUInt8(type, at + AT_TYPE);
    });
    this.unsorted.push(records);
  }

  *[Symbol.iterator](): IterableIterator<[Buffer, BlobLocation]> {
    this.sort();
    const records = this.records;
    for (let at = 0; at < records.length; at += RECORD) {
      const id = Buffer.from(records.subarray(at, at + ID_BYTES));
      if (this.shadowed > 0 && this.recent.has(id.toString('latin1'))) continue;
      yield [id, this.location(at)];
    }
    for (const [key, location] of this.recent) yield [Buffer.from(key, 'latin1'), location];
  }

  packs(): Buffer[] {
    return [...this.packIds];
  }

  /** All ids, sorted, concatenated in shared memory: the backup workers binary-search it. */
  sortedIds(): SharedArrayBuffer {
    const table = this.table();
    const count = table.records.length / RECORD;
    const shared = new SharedArrayBuffer(count * ID_BYTES);
    const view = Buffer.from(shared);
    for (let i = 0; i < count; i++) table.records.copy(view, i * ID_BYTES, i * RECORD, i * RECORD + ID_BYTES);
    return shared;
  }

  /** The whole index as one sorted table, the blobs added one by one merged in. */
  table(): IndexTable {
    this.queueRecent();
    this.sort();
    return { packs: this.packIds, records: this.records };
  }

  /** Moves the blobs added one by one to the rows to sort, after the table's, so they keep precedence. */
  private queueRecent(): void {
    if (this.recent.size === 0) return;
    const rows: Row[] = [];
    for (const [key, l] of this.recent) rows.push([l.type, Buffer.from(key, 'latin1'), this.packNumber(l.packId), l.offset, l.length, l.rawLength]);
    this.recent.clear();
    this.shadowed = 0;
    this.queueRows(
      this.packIds.map((_, n) => n),
      rows,
    );
  }

  /** Replaces the contents with a table that checkIndexTable() accepted. */
  loadTable({ packs, records }: IndexTable): void {
    this.packIds = [];
    this.packNumbers.clear();
    for (const packId of packs) this.packNumber(packId);
    this.records = records;
    this.unsorted = [];
    this.recent.clear();
    this.shadowed = 0;
  }

  private packNumber(packId: Buffer): number {
    const key = packId.toString('latin1');
    let number = this.packNumbers.get(key);
    if (number === undefined) {
      number = this.packIds.length;
      this.packIds.push(packId);
      this.packNumbers.set(key, number);
    }
    return number;
  }

  private location(at: number): BlobLocation {
    const records = this.records;
    return {
      type: records[at + AT_TYPE] as BlobType,
      packId: this.packIds[records.readUInt32LE(at + AT_PACK)],
      offset: records.readUInt32LE(at + AT_OFFSET),
      length: records.readUInt32LE(at + AT_LENGTH),
      rawLength: records.readUInt32LE(at + AT_RAW_LENGTH),
    };
  }

  /** The record offset of `id` in the table, or -1. */
  private find(id: Buffer): number {
    this.sort();
    const records = this.records;
    let low = 0;
    let high = records.length / RECORD - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const at = middle * RECORD;
      const order = compareIds(records, at, id, 0);
      if (order === 0) return at;
      if (order < 0) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  /**
   * Sorts the rows decoded since the last lookup and merges them into the
   * table. A blob listed twice (two writers racing) keeps the location given
   * last: either can be read.
   */
  private sort(): void {
    if (this.unsorted.length === 0) return;
    const fresh = sortedUnique(Buffer.concat(this.unsorted));
    this.unsorted = [];
    this.records = this.records.length === 0 ? fresh : mergeTables(this.records, fresh);
  }
}

/**
 * Compares the ids at `a` in `x` and at `b` in `y`, four bytes at a time:
 * ids are MACs, and the first word almost always decides, where a call
 * into Buffer.compare would cost more than the whole comparison.
 */
function compareIds(x: Buffer, a: number, y: Buffer, b: number): number {
  for (let k = 0; k < ID_BYTES; k += 4) {
    const p = x.readUInt32BE(a + k);
    const q = y.readUInt32BE(b + k);
    if (p !== q) return p < q ? -1 : 1;
  }
  return 0;
}

/**
 * Records sorted by id, the last of equal ids kept. Ids are MACs, evenly
 * spread: a counting sort on their first two bytes leaves buckets of a few
 * records, which the comparison sort then orders.
 */
function sortedUnique(records: Buffer): Buffer {
  const count = records.length / RECORD;
  const starts = new Uint32Array(65537);
  for (let i = 0; i < count; i++) starts[records.readUInt16BE(i * RECORD) + 1]++;
  for (let b = 1; b <= 65536; b++) starts[b] += starts[b - 1];
  const order = new Uint32Array(count);
  const fill = starts.slice(0, 65536);
  for (let i = 0; i < count; i++) order[fill[records.readUInt16BE(i * RECORD)]++] = i;
  const byId = (a: number, b: number) => compareIds(records, a * RECORD, records, b * RECORD) || a - b;
  for (let b = 0; b < 65536; b++) if (starts[b + 1] - starts[b] > 1) order.subarray(starts[b], starts[b + 1]).sort(byId);
  const sorted = Buffer.allocUnsafe(records.length);
  let kept = 0;
  for (let i = 0; i < count; i++) {
    const at = order[i] * RECORD;
    if (i + 1 < count && compareIds(records, at, records, order[i + 1] * RECORD) === 0) continue;
    records.copy(sorted, kept * RECORD, at, at + RECORD);
    kept++;
  }
  return sorted.subarray(0, kept * RECORD);
}

/** Merges two sorted tables; `newer` wins where both hold an id. */
function mergeTables(older: Buffer, newer: Buffer): Buffer {
  const merged = Buffer.allocUnsafe(older.length + newer.length);
  let o = 0;
  let n = 0;
  let out = 0;
  while (o < older.length && n < newer.length) {
    const order = compareIds(older, o, newer, n);
    if (order < 0) {
      out += older.copy(merged, out, o, o + RECORD);
      o += RECORD;
    } else {
      out += newer.copy(merged, out, n, n + RECORD);
      n += RECORD;
      if (order === 0) o += RECORD;
    }
  }
  out += older.copy(merged, out, o);
  out += newer.copy(merged, out, n);
  return merged.subarray(0, out);
}

/** Throws unless `table` is what table() gives: whole records, sorted by id without repeats, naming known packs once each. */
export function checkIndexTable({ packs, records }: IndexTable): void {
  if (records.length % RECORD !== 0) throw new Error('malformed index table: partial record');
  if (new Set(packs.map((p) => p.toString('latin1'))).size !== packs.length) throw new Error('malformed index table: a pack is named twice');
  for (let at = 0; at < records.length; at += RECORD) {
    if (records.readUInt32LE(at + AT_PACK) >= packs.length) throw new Error('malformed index table: unknown pack');
    if (at > 0 && compareIds(records, at - RECORD, records, at) >= 0) {
      throw new Error('malformed index table: out of order');
    }
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

/** `key`: the delta's, for the message when it does not decode. */
export function decodeIndexDelta(plaintext: Buffer, into: BlobIndex, key: string): void {
  // Sealed with the key yet malformed: a damaged delta, as one whose seal fails, not a fault of the program.
  try {
    const { packs, blobs } = (decode(plaintext) ?? {}) as { packs: Uint8Array[]; blobs: Row[] };
    if (!Array.isArray(packs) || !Array.isArray(blobs)) throw new Error('no packs and blobs');
    into.addDelta(
      packs.map((p) => Buffer.from(p)),
      blobs,
    );
  } catch (err) {
    throw new IntegrityError(`${key}: not an index delta (${(err as Error).message})`, { cause: err });
  }
}
