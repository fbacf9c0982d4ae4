/**
 * A check names a file damaged only for what its blobs hold: a pack that
 * cannot be read for another reason (the store unreachable, permission
 * denied) fails the check with that reason instead.
 */
import { mkdtempSync, promises as fs, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openBuiltStore, openLocalStore } from '../helpers/built.js';
import { klosetWith, MiB, writeRandomFile } from '../helpers/fixtures.js';

const { KlosetError, NotFoundError } = (await loadBuilt('errors.js')) as typeof import('../../src/errors.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
const { BlobJudge, verifySnapshot } = (await loadBuilt('snapshot/verify.js')) as typeof import('../../src/snapshot/verify.js');
const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');

let dir: string;
const savedCache = process.env.XDG_CACHE_HOME;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kloset-verify-'));
  process.env.XDG_CACHE_HOME = path.join(dir, 'cache');
});
afterAll(() => {
  process.env.XDG_CACHE_HOME = savedCache;
  rmSync(dir, { recursive: true, force: true });
});

async function storeWithOneChunk(name: string) {
  const store = await openLocalStore(path.join(dir, name));
  const repository = await Repository.create(store, { passphrase: null });
  const writer = repository.newWriter();
  const id = await writer.put(BlobType.chunk, Buffer.from('some file content'));
  await writer.commit();
  return { store, repository, id };
}

describe('a blob judged by a ranged read', () => {
  it('is sound when its bytes match its id', async () => {
    const { repository, id } = await storeWithOneChunk('sound');
    expect(await new BlobJudge(repository).sound(id)).toBe(true);
  });

  it('is damaged when its bytes were altered, or its pack is gone', async () => {
    const { store, repository, id } = await storeWithOneChunk('damaged');
    const getRange = store.getRange.bind(store);
    store.getRange = async (key, offset, length) => {
      const bytes = Buffer.from(await getRange(key, offset, length));
      bytes[bytes.length - 1]! ^= 1;
      return bytes;
    };
    expect(await new BlobJudge(repository).sound(id)).toBe(false);
    store.getRange = async (key) => {
      throw new NotFoundError(`${key}: not found`);
    };
    expect(await new BlobJudge(repository).sound(id)).toBe(false);
  });

  it('fails with the store\'s error when the store cannot be read, rather than calling the blob damaged', async () => {
    const { store, repository, id } = await storeWithOneChunk('unreachable');
    store.getRange = async () => {
      throw new KlosetError('s3://bucket: cannot reach the server (connection refused)');
    };
    await expect(new BlobJudge(repository).sound(id)).rejects.toThrow('connection refused');
  });
});

describe('a check of a long series of snapshots', () => {
  it('walks a subtree or a directory page they share once, and names its damage in each of them', async () => {
    const kloset = klosetWith({ XDG_CACHE_HOME: path.join(dir, 'cache') });
    const source = path.join(dir, 'series-source');
    const store = path.join(dir, 'series-store');
    // kept/ never changes; paged/ holds three pages of names, of which only the first page changes.
    await fs.mkdir(path.join(source, 'kept'), { recursive: true });
    await fs.mkdir(path.join(source, 'paged'));
    for (let i = 0; i < 50; i++) await fs.writeFile(path.join(source, 'kept', `k${i}`), `kept ${i}\n`);
    for (let i = 0; i < 2500; i++) await fs.writeFile(path.join(source, 'paged', `p${String(i).padStart(4, '0')}`), `paged ${i}\n`);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    for (let n = 0; n < 3; n++) {
      await fs.writeFile(path.join(source, 'paged', 'p0000'), `version ${n}\n`);
      expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    }
    const repository = await openBuiltStore(store);
    const snapshots = await listSnapshots(repository);
    expect(snapshots).toHaveLength(3);
    const newest = new SnapshotReader(repository, snapshots[2]);
    const chunkOf = async (file: string) => ((await newest.lookup(file)).content as { chunks: { id: Buffer }[] }).chunks[0].id;
    const damaged = new Set([(await chunkOf('/kept/k7')).toString('latin1'), (await chunkOf('/paged/p2400')).toString('latin1')]);
    const reads: string[] = [];
    const getBlob = repository.getBlob.bind(repository);
    repository.getBlob = (id, type) => {
      if (type === BlobType.tree || type === BlobType.treePage) reads.push(id.toString('hex'));
      return getBlob(id, type);
    };
    const judge = new BlobJudge(repository, damaged);
    const found: string[] = [];
    for (const snapshot of snapshots) {
      await verifySnapshot(repository, snapshot, judge, (d) => found.push(`${d.snapshot.id.toString('hex').slice(0, 8)} ${d.path}: ${d.reason}`));
    }
    expect(reads).toHaveLength(new Set(reads).size);
    expect(found).toEqual(
      snapshots.flatMap((s) => [`${s.id.toString('hex').slice(0, 8)} /kept/k7: 1 of 1 chunks damaged or missing`, `${s.id.toString('hex').slice(0, 8)} /paged/p2400: 1 of 1 chunks damaged or missing`]),
    );
  }, 60_000);
});

describe('a check of one snapshot, blob by blob', () => {
  it('keeps a bounded number of ranged reads in flight, however many blobs a page of files or a large file asks for', async () => {
    const kloset = klosetWith({ XDG_CACHE_HOME: path.join(dir, 'cache') });
    const source = path.join(dir, 'many-source');
    const store = path.join(dir, 'many-store');
    await fs.mkdir(source);
    for (let i = 0; i < 300; i++) await fs.writeFile(path.join(source, `f${i}`), `file ${i}\n`.repeat(i + 1));
    await writeRandomFile(path.join(source, 'large.bin'), 24 * MiB);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const repository = await openBuiltStore(store);
    const [snapshot] = await listSnapshots(repository);
    let inFlight = 0;
    let most = 0;
    let reads = 0;
    const getRange = repository.store.getRange.bind(repository.store);
    repository.store.getRange = async (...args) => {
      reads++;
      most = Math.max(most, ++inFlight);
      try {
        return await getRange(...args);
      } finally {
        inFlight--;
      }
    };
    const found: string[] = [];
    await verifySnapshot(repository, snapshot, new BlobJudge(repository), (d) => found.push(d.path));
    expect(found).toEqual([]);
    expect(reads).toBeGreaterThan(300);
    expect(most).toBeLessThanOrEqual(16);
  }, 60_000);
});
