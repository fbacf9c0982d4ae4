/**
 * repairIndex through the library, for the cases the CLI cannot set up:
 * two packs holding one blob (two backups that ran at once), and a store
 * that fails to answer rather than answering damage.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { loadBuilt, openLocalStore } from '../helpers/built.js';

const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
const { packKey } = (await loadBuilt('kloset/packfile.js')) as typeof import('../../src/kloset/packfile.js');
const { repairIndex } = (await loadBuilt('kloset/repair.js')) as typeof import('../../src/kloset/repair.js');

const savedCache = process.env.XDG_CACHE_HOME;
let work: string;
let store: string;

const open = async (options?: { loadIndex?: boolean }) => Repository.open(await openLocalStore(store), async () => 'unused', options);
/** A fresh reader of the store, with no local copy of the index to trust. */
async function reopen() {
  await fs.rm(process.env.XDG_CACHE_HOME!, { recursive: true, force: true });
  return open();
}

beforeEach(async () => {
  work ??= await fs.mkdtemp(path.join(os.tmpdir(), 'kloset-repair-lib-'));
  store = path.join(work, `store-${Math.random().toString(16).slice(2)}`);
  process.env.XDG_CACHE_HOME = `${store}-cache`;
  await Repository.create(await openLocalStore(store), { passphrase: null });
});

afterAll(async () => {
  process.env.XDG_CACHE_HOME = savedCache;
  await fs.rm(work, { recursive: true, force: true });
});

describe('repairIndex', () => {
  it('keeps the copy of a blob in a pack the store holds when the other copy is gone', async () => {
    // Two backups at once, each storing A beside a blob of its own: two packs hold A.
    const first = (await open()).newWriter();
    const second = (await open()).newWriter();
    const a = await first.put(BlobType.chunk, Buffer.from('stored by both backups'));
    await first.put(BlobType.chunk, Buffer.from('stored by the first only'));
    await second.put(BlobType.chunk, Buffer.from('stored by both backups'));
    await second.put(BlobType.chunk, Buffer.from('stored by the second only'));
    await first.commit();
    await second.commit();
    // The pack a merged index places A in is the one lost; the other still holds A.
    const index = (await open()).index;
    const gone = index.get(a)!.packId;
    const packs = new Set([...index].map(([, location]) => location.packId.toString('hex')));
    expect(packs.size).toBe(2);
    const [kept] = [...packs].filter((hex) => hex !== gone.toString('hex'));
    await fs.rm(path.join(store, packKey(gone)));

    const result = await repairIndex(await open({ loadIndex: false }));
    expect(result.missingPacks).toEqual([{ packId: gone, blobs: 2 }]);
    const repaired = await reopen();
    expect(repaired.index.get(a)?.packId.toString('hex')).toBe(kept);
    expect((await repaired.getBlob(a, BlobType.chunk)).toString()).toBe('stored by both backups');
    expect((await repairIndex(await open({ loadIndex: false }))).changed).toBe(false);
  });

  it('stops, changing nothing, when the store fails to answer rather than answering damage', async () => {
    const writer = (await open()).newWriter();
    await writer.put(BlobType.chunk, Buffer.from('indexed'));
    await writer.commit();
    const deltas = await fs.readdir(path.join(store, 'index'));
    const flaky = await openLocalStore(store);
    flaky.get = async () => {
      throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    };
    const repository = await Repository.open(await openLocalStore(store), async () => 'unused', { loadIndex: false });
    Object.defineProperty(repository, 'store', { value: flaky });
    await expect(repairIndex(repository)).rejects.toThrow(/ECONNRESET/);
    expect(await fs.readdir(path.join(store, 'index'))).toEqual(deltas);

    const trailers = await openLocalStore(store);
    trailers.getRange = async () => {
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    };
    for (const delta of deltas) await fs.rm(path.join(store, 'index', delta));
    const unindexed = await Repository.open(await openLocalStore(store), async () => 'unused', { loadIndex: false });
    Object.defineProperty(unindexed, 'store', { value: trailers });
    await expect(repairIndex(unindexed)).rejects.toThrow(/socket hang up/);
    expect(await fs.readdir(path.join(store, 'index'))).toEqual([]);
  });
});
