/**
 * Read-ahead across readers: what the mount fetches ahead of its readers,
 * all of them together, stays within a share of the cache, so many
 * sequential readers at once do not hold many windows of chunks in flight.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { kloset, tempDir } from '../helpers/cli.js';
import { MiB, writeRandomFile } from '../helpers/fixtures.js';

const { ChunkCache } = (await loadBuilt('mount/chunkcache.js')) as typeof import('../../src/mount/chunkcache.js');
const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
type Repository = import('../../src/kloset/repository.js').Repository;
type ChunkRef = import('../../src/kloset/chunkpool.js').ChunkRef;

let work: string;
let repository: Repository;
let chunks: ChunkRef[];

beforeAll(async () => {
  work = await tempDir('kloset-mount-readahead-');
  const source = path.join(work, 'source');
  const store = path.join(work, 'store');
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'big.bin'), 24 * MiB);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  repository = await openBuiltStore(store);
  const [header] = await listSnapshots(repository);
  const reader = new SnapshotReader(repository, header);
  chunks = (await reader.openFile(await reader.lookup('/big.bin'))).chunks;
}, 120_000);

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('read-ahead', () => {
  it('starts no more than a quarter of the cache in flight, then more as fetches land', async () => {
    const cache = new ChunkCache(repository, 16 * MiB);
    const budget = 4 * MiB;
    const taken = cache.prefetch(chunks);
    expect(taken).toBeGreaterThan(0);
    expect(taken).toBeLessThan(chunks.length);
    const bytes = chunks.slice(0, taken).reduce((sum, chunk) => sum + chunk.size, 0);
    expect(bytes).toBeLessThanOrEqual(Math.max(budget, chunks[0].size));
    // Another reader, at once: no room left.
    expect(cache.prefetch(chunks.slice(taken))).toBe(0);
    // Once they land, the budget is free again.
    const landed = cache.acquire(chunks.slice(0, taken).map((chunk) => chunk.id));
    for (const chunk of await Promise.all(landed)) cache.release(chunk);
    await new Promise((resolve) => setImmediate(resolve));
    expect(cache.prefetch(chunks.slice(taken))).toBeGreaterThan(0);
  });

  it('always lets one chunk go ahead when nothing else is under way, even one larger than the budget', async () => {
    const cache = new ChunkCache(repository, 1024 * 1024);
    expect(cache.prefetch(chunks)).toBe(1);
  });
});
