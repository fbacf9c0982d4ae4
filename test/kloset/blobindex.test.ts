import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  BlobIndex,
  checkIndexTable,
  decodeIndexDelta,
  encodeIndexDelta,
  type BlobLocation,
} from '../../src/kloset/blobindex.js';

const packs = Array.from({ length: 5 }, () => randomBytes(32));

function randomLocation(): BlobLocation {
  return {
    type: Math.floor(Math.random() * 4) as BlobLocation['type'],
    packId: packs[Math.floor(Math.random() * packs.length)],
    offset: Math.floor(Math.random() * 2 ** 32),
    length: Math.floor(Math.random() * 2 ** 24),
    rawLength: Math.floor(Math.random() * 2 ** 32),
  };
}

/** What the index must answer: the last location given for each id, as a plain map would. */
class Reference {
  readonly map = new Map<string, BlobLocation>();
  set(id: Buffer, location: BlobLocation) {
    this.map.set(id.toString('hex'), location);
  }
}

function expectSame(index: BlobIndex, reference: Reference, absent: Buffer[]) {
  expect(index.size).toBe(reference.map.size);
  for (const [hex, location] of reference.map) {
    const id = Buffer.from(hex, 'hex');
    expect(index.has(id)).toBe(true);
    expect(index.get(id)).toEqual(location);
  }
  for (const id of absent) {
    expect(index.has(id)).toBe(false);
    expect(index.get(id)).toBeUndefined();
  }
  const listed = new Map<string, BlobLocation>();
  for (const [id, location] of index) {
    expect(listed.has(id.toString('hex'))).toBe(false);
    listed.set(id.toString('hex'), location);
  }
  expect(listed).toEqual(reference.map);
}

describe('BlobIndex', () => {
  it('answers like a map of the last location given, across deltas, repeats and single additions', () => {
    const index = new BlobIndex();
    const reference = new Reference();
    const ids = Array.from({ length: 3000 }, () => randomBytes(32));
    // Three deltas that overlap (a blob stored twice by racing writers), decoded as loadIndex does.
    for (let d = 0; d < 3; d++) {
      const entries: [Buffer, BlobLocation][] = ids.slice(d * 800, d * 800 + 1200).map((id) => [id, randomLocation()]);
      decodeIndexDelta(encodeIndexDelta(entries), index, 'index/test');
      for (const [id, location] of entries) reference.set(id, location);
    }
    const absent = Array.from({ length: 200 }, () => randomBytes(32));
    expectSame(index, reference, absent);

    // A backup adds blobs one by one: new ids, and ids the table already has.
    for (const id of [...ids.slice(2500), ...ids.slice(0, 100)]) {
      const location = randomLocation();
      index.add(id, location);
      reference.set(id, location);
    }
    expectSame(index, reference, absent);

    // And the next delta is decoded on top of the additions.
    const late: [Buffer, BlobLocation][] = ids.slice(50, 150).map((id) => [id, randomLocation()]);
    decodeIndexDelta(encodeIndexDelta(late), index, 'index/test');
    for (const [id, location] of late) reference.set(id, location);
    expectSame(index, reference, absent);
  });

  it('gives its whole contents as a sorted table that loads back the same', () => {
    const index = new BlobIndex();
    const reference = new Reference();
    const entries: [Buffer, BlobLocation][] = Array.from({ length: 2000 }, () => [randomBytes(32), randomLocation()]);
    decodeIndexDelta(encodeIndexDelta(entries.slice(0, 1500)), index, 'index/test');
    for (const [id, location] of entries.slice(1500)) index.add(id, location);
    for (const [id, location] of entries) reference.set(id, location);

    const table = index.table();
    expect(() => checkIndexTable(table)).not.toThrow();
    const loaded = new BlobIndex();
    loaded.loadTable({ packs: table.packs.map((p) => Buffer.from(p)), records: Buffer.from(table.records) });
    expectSame(loaded, reference, [randomBytes(32)]);
    expectSame(index, reference, [randomBytes(32)]);

    const ids = Buffer.from(loaded.sortedIds());
    const sorted = [...reference.map.keys()].sort();
    expect(ids.length).toBe(sorted.length * 32);
    sorted.forEach((hex, i) => expect(ids.subarray(i * 32, i * 32 + 32).toString('hex')).toBe(hex));
  });

  it('refuses a table that is cut, out of order, or names a pack it does not list', () => {
    const index = new BlobIndex();
    decodeIndexDelta(
      encodeIndexDelta(Array.from({ length: 50 }, () => [randomBytes(32), randomLocation()] as [Buffer, BlobLocation])),
      index,
      'index/test',
    );
    const { packs: tablePacks, records } = index.table();
    const record = records.length / 50;
    expect(() => checkIndexTable({ packs: tablePacks, records: records.subarray(0, records.length - 1) })).toThrow(/partial record/);

    const swapped = Buffer.from(records);
    records.copy(swapped, 0, record, 2 * record);
    records.copy(swapped, record, 0, record);
    expect(() => checkIndexTable({ packs: tablePacks, records: swapped })).toThrow(/out of order/);

    const repeated = Buffer.from(records);
    records.copy(repeated, record, 0, record);
    expect(() => checkIndexTable({ packs: tablePacks, records: repeated })).toThrow(/out of order/);

    expect(() => checkIndexTable({ packs: tablePacks.slice(0, 1), records })).toThrow(/unknown pack/);
    expect(() => checkIndexTable({ packs: [...tablePacks, tablePacks[0]], records })).toThrow(/named twice/);
  });
});
