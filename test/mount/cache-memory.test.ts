/**
 * The chunk cache's memory is its size, whatever mix of chunks it has held:
 * large chunks first, then the small chunks of small files, must not leave
 * the memory of both behind, and every byte served must be the file's.
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
type ChunkCacheType = import('../../src/mount/chunkcache.js').ChunkCache;

const CACHE = 4 * MiB;
const SMALL_FILES = 300;

let work: string;
let source: string;
let repository: Repository;
const files = new Map<string, ChunkRef[]>();

beforeAll(async () => {
  work = await tempDir('kloset-mount-cache-memory-');
  source = path.join(work, 'source');
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'big.bin'), 12 * MiB);
  // 300 files of 20 to 44 KiB, none a multiple of a memory page: 9.4 MiB of small chunks in all.
  for (let i = 0; i < SMALL_FILES; i++) await writeRandomFile(path.join(source, `s${i}.bin`), 20 * 1024 + ((i * 997) % (24 * 1024)) + 1);
  const store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  repository = await openBuiltStore(store);
  const [header] = await listSnapshots(repository);
  const reader = new SnapshotReader(repository, header);
  for (const name of await fs.readdir(source)) files.set(name, (await reader.openFile(await reader.lookup(`/${name}`))).chunks);
}, 180_000);

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** A file's bytes as the cache serves them, each chunk acquired, copied out and released. */
async function readThrough(cache: ChunkCacheType, chunks: ChunkRef[]): Promise<Buffer> {
  const parts = await Promise.all(cache.acquire(chunks.map((chunk) => chunk.id)));
  const size = chunks.reduce((sum, chunk) => sum + chunk.size, 0);
  const out = Buffer.alloc(size);
  let at = 0;
  for (const part of parts) {
    // In two pieces, so that a copy starting inside a chunk is exercised too.
    const middle = Math.floor(part.length / 3);
    part.copy(out, at, 0, middle);
    part.copy(out, at + middle, middle, part.length);
    at += part.length;
    cache.release(part);
  }
  return out;
}

describe('the chunk cache', () => {
  it('holds no more memory than its size after large chunks and then small ones', async () => {
    const cache = new ChunkCache(repository, CACHE);
    const big = await readThrough(cache, files.get('big.bin')!);
    expect(big.equals(await fs.readFile(path.join(source, 'big.bin')))).toBe(true);
    expect(cache.peakBytes).toBe(CACHE);
    for (let i = 0; i < SMALL_FILES; i++) {
      const name = `s${i}.bin`;
      const data = await readThrough(cache, files.get(name)!);
      expect(data.equals(await fs.readFile(path.join(source, name))), name).toBe(true);
    }
    expect(cache.peakBytes).toBeLessThanOrEqual(CACHE);
    // What the cache kept of the small files is still served right, from memory the large chunks used.
    const hitsBefore = cache.hits;
    for (let i = SMALL_FILES - 20; i < SMALL_FILES; i++) {
      const name = `s${i}.bin`;
      expect((await readThrough(cache, files.get(name)!)).equals(await fs.readFile(path.join(source, name))), name).toBe(true);
    }
    expect(cache.hits - hitsBefore).toBe(20);
  }, 120_000);

  it('serves a chunk larger than the whole cache without keeping it', async () => {
    const size = 64 * 1024;
    const cache = new ChunkCache(repository, size);
    const data = await fs.readFile(path.join(source, 'big.bin'));
    // Every chunk but the file's last is at least the chunker's minimum; the last may fit, as the cuts fall.
    let at = 0;
    let served = 0;
    for (const chunk of files.get('big.bin')!) {
      if (chunk.size > size) {
        expect((await readThrough(cache, [chunk])).equals(data.subarray(at, at + chunk.size))).toBe(true);
        served++;
      }
      at += chunk.size;
    }
    expect(served).toBeGreaterThanOrEqual(files.get('big.bin')!.length - 1);
    expect(cache.peakBytes).toBe(0);
  }, 120_000);
});
