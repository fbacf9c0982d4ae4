/**
 * The local index cache only saves reading the store's index deltas: a
 * cache whose table is out of order, or of another layout, is rebuilt from
 * the store, never trusted. Trusted, it would make a backup store again what
 * is there (or worse, skip what is not) and a restore miss blobs.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { decode, encode } from '@msgpack/msgpack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { MiB, addedToStore, describeTree, klosetWith, writeRandomFile } from '../helpers/fixtures.js';

let work: string;
let cache: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-indexcache-');
  cache = path.join(work, 'cache');
  kloset = klosetWith({ XDG_CACHE_HOME: cache });
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

const ID_BYTES = 32;
const RECORD = 49;

/** A store holding one backup of a tree of 200 small files and one of 3 MiB, and the local cache of its index. */
async function storeWithCache(name: string): Promise<{ store: string; source: string; cacheFile: string }> {
  const source = path.join(work, `${name}-source`);
  const store = path.join(work, `${name}-store`);
  await fs.mkdir(path.join(source, 'notes'), { recursive: true });
  for (let i = 0; i < 200; i++) await fs.writeFile(path.join(source, 'notes', `${i}.txt`), `note ${i} `.repeat(50 + i));
  await writeRandomFile(path.join(source, 'large.bin'), 3 * MiB);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  expect((await kloset(['at', store, 'ls'])).code).toBe(0); // writes the cache
  const repository = await openBuiltStore(store, { loadIndex: false });
  const cacheFile = path.join(cache, 'kloset', repository.config.storeId, 'index');
  await fs.access(cacheFile);
  return { store, source, cacheFile };
}

/** Opens the cache, lets `change` rewrite its content, and seals it again with the store's keys. */
async function rewriteCache(store: string, cacheFile: string, change: (content: Record<string, unknown>) => Record<string, unknown>) {
  const repository = await openBuiltStore(store, { loadIndex: false });
  const { decodeBlob, encodeBlob } = (await loadBuilt('kloset/compression.js')) as typeof import('../../src/kloset/compression.js');
  const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
  const zero = Buffer.alloc(ID_BYTES);
  const sealed = await fs.readFile(cacheFile);
  const content = decode(await decodeBlob(repository.sealer.open(BlobType.index, zero, sealed, 'cache'), 'cache', 1 << 30)) as Record<string, unknown>;
  const plaintext = Buffer.from(encode(change(content)));
  await fs.writeFile(cacheFile, repository.sealer.seal(BlobType.index, zero, encodeBlob(plaintext, repository.config.compression)));
}

/** What a rebuilt index gives: an unchanged source adds nothing, and the store restores it exactly. */
async function expectIndexFromStore(store: string, source: string) {
  const again = await kloset(['at', store, 'backup', source]);
  expect(again.code).toBe(0);
  expect(addedToStore(again.stdout)).toBeLessThan(64 * 1024);
  const target = path.join(work, `${path.basename(store)}-restored`);
  const restored = await kloset(['at', store, 'restore', '-to', target]);
  expect(restored.stderr).toBe('');
  expect(restored.code).toBe(0);
  expect(await describeTree(target)).toEqual(await describeTree(source));
}

describe('the local index cache', () => {
  it('is used as written: an unchanged source adds nothing', async () => {
    const { store, source } = await storeWithCache('plain');
    await expectIndexFromStore(store, source);
  });

  it('is rebuilt from the store when its table is out of order', async () => {
    const { store, source, cacheFile } = await storeWithCache('unordered');
    await rewriteCache(store, cacheFile, (content) => {
      const records = Buffer.from(content.records as Uint8Array);
      expect(records.length % RECORD).toBe(0);
      expect(records.length / RECORD).toBeGreaterThan(200);
      const reversed = Buffer.alloc(records.length);
      for (let at = 0; at < records.length; at += RECORD) records.copy(reversed, records.length - at - RECORD, at, at + RECORD);
      return { ...content, records: reversed };
    });
    await expectIndexFromStore(store, source);
  });

  it('is rebuilt from the store when it has another layout', async () => {
    const { store, source, cacheFile } = await storeWithCache('layout');
    // Names every delta of the store, so only its layout can tell it apart.
    await rewriteCache(store, cacheFile, (content) => ({ ...content, v: 3, packs: [], records: Buffer.alloc(0) }));
    await expectIndexFromStore(store, source);
  });
});
