/**
 * The repository and its local store against what other processes do to the
 * store meanwhile: a prune replacing the index, files vanishing during a
 * listing, files that are not the store's, and locks taken away.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadBuilt, openLocalStore } from '../helpers/built.js';

const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
const { StoreLock } = (await loadBuilt('kloset/locks.js')) as typeof import('../../src/kloset/locks.js');

let work: string;
let store: string;
const savedCache = process.env.XDG_CACHE_HOME;
const open = async () => Repository.open(await openLocalStore(store), async () => 'unused');

/** Stores one chunk through a writer of its own, as a backup would; returns the chunk's id and the delta naming it. */
async function storeChunk(text: string): Promise<{ id: Buffer; delta: string }> {
  const repository = await open();
  const before = new Set(await fs.readdir(path.join(store, 'index')).catch(() => [] as string[]));
  const writer = repository.newWriter();
  const id = await writer.put(BlobType.chunk, Buffer.from(text));
  await writer.commit();
  const delta = (await fs.readdir(path.join(store, 'index'))).find((name) => !before.has(name))!;
  return { id, delta };
}

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'kloset-repository-'));
});
beforeEach(async () => {
  store = path.join(work, `store-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  process.env.XDG_CACHE_HOME = path.join(store + '-cache');
  await Repository.create(await openLocalStore(store), { passphrase: null });
});
afterAll(async () => {
  process.env.XDG_CACHE_HOME = savedCache;
  await fs.rm(work, { recursive: true, force: true });
});

describe('the index', () => {
  it('forgets, when reloaded, the blobs whose delta a prune replaced', async () => {
    const gone = await storeChunk('removed by the prune');
    const viewer = await open(); // a long-lived reader, such as the viewer
    expect(viewer.has(gone.id)).toBe(true);
    // What a prune leaves: the blob's delta gone, other deltas in its place.
    const kept = await storeChunk('kept by the prune');
    await fs.unlink(path.join(store, 'index', gone.delta));

    await viewer.loadIndex();
    expect(viewer.has(gone.id)).toBe(false);
    expect(viewer.has(kept.id)).toBe(true);
    // Nor does the local cache it rewrote: a later command would take the blob for stored.
    expect((await open()).has(gone.id)).toBe(false);
  });

  it('finds a blob that a delta stored after it was loaded names, as a snapshot listed since then needs', async () => {
    const reader = await open(); // loaded before the backup below committed
    const { id } = await storeChunk('committed after the reader loaded its index');
    expect(reader.has(id)).toBe(false);
    expect((await reader.getBlob(id, BlobType.chunk)).toString()).toBe('committed after the reader loaded its index');
    // A blob that no delta names stays missing, and asking again within a second lists nothing new.
    const unknown = Buffer.alloc(32, 7);
    await expect(reader.getBlob(unknown, BlobType.chunk)).rejects.toThrow(/is missing from the store/);
    expect(await reader.find(unknown)).toBeUndefined();
  });

  it('gives a blob only as the type it was stored as', async () => {
    const { id } = await storeChunk('a chunk, never a directory');
    const repository = await open();
    expect((await repository.getBlob(id, BlobType.chunk)).toString()).toBe('a chunk, never a directory');
    await expect(repository.getBlob(id, BlobType.tree)).rejects.toThrow(/^blob [0-9a-f]{16} is a chunk, not a directory$/);
    await expect(repository.getBlobs([id], BlobType.treePage)).rejects.toThrow(/is a chunk, not a directory page$/);
  });

  it('is cached locally as a writer leaves it, so the next process on this machine reads none of its deltas', async () => {
    const first = await storeChunk('stored by the first backup');
    const second = await storeChunk('stored by the second backup');
    // Damaged in the store: only a process that reads the deltas there fails.
    for (const { delta } of [first, second]) await fs.writeFile(path.join(store, 'index', delta), 'damaged');
    const next = await open();
    expect(next.has(first.id) && next.has(second.id)).toBe(true);
    // The cache stays a cache: a delta it does not name is still read from the store.
    await fs.rm(process.env.XDG_CACHE_HOME!, { recursive: true });
    await expect(open()).rejects.toThrow(/repair index/);
  });

  it('ignores files under index/ that are not deltas', async () => {
    const { id } = await storeChunk('indexed');
    await fs.writeFile(path.join(store, 'index', '.DS_Store'), 'not a delta');
    await fs.writeFile(path.join(store, 'index', 'notes.txt'), '');
    await fs.rm(process.env.XDG_CACHE_HOME!, { recursive: true, force: true });
    expect((await open()).has(id)).toBe(true);
  });
});

describe('a CONFIG', () => {
  it('whose key derivation Argon2 would refuse (less than 8 KiB per lane) is refused as malformed, before the passphrase is asked', async () => {
    const encrypted = path.join(work, `encrypted-${Math.random().toString(16).slice(2)}`);
    await Repository.create(await openLocalStore(encrypted), { passphrase: 'right', kdf: { memoryKiB: 64, iterations: 1, parallelism: 2 } });
    const config = JSON.parse(await fs.readFile(path.join(encrypted, 'CONFIG'), 'utf8'));
    config.encryption.kdf.memoryKiB = 8;
    config.encryption.kdf.parallelism = 16;
    await fs.writeFile(path.join(encrypted, 'CONFIG'), JSON.stringify(config));
    const asked = vi.fn(async () => 'right');
    await expect(Repository.open(await openLocalStore(encrypted), asked)).rejects.toThrow(/not a kloset store \(its CONFIG is malformed: encryption.kdf\)$/);
    expect(asked).not.toHaveBeenCalled();
  });
});

describe('the local store', () => {
  it('lists what is left of a directory whose files are deleted while it is listed', async () => {
    const blobs = await openLocalStore(store);
    for (const name of ['a', 'b', 'c']) await blobs.put(`snapshots/${name}`, Buffer.from(name));
    const seen: string[] = [];
    for await (const { key } of blobs.list('snapshots/')) {
      if (seen.length === 0) {
        // Read after the directory was: the other two go before they are reached.
        for (const name of ['a', 'b', 'c']) if (`snapshots/${name}` !== key) await blobs.delete(`snapshots/${name}`);
      }
      seen.push(key);
    }
    expect(seen).toHaveLength(1);
  });
});

describe('a lock', () => {
  const lockFiles = () => fs.readdir(path.join(store, 'locks')).catch(() => [] as string[]);
  /** The end of the refresh the lock's timer has just started: it writes and syncs a file, which a busy disk can hold up for long. */
  const refreshed = (lock: object) => (lock as { refreshing?: Promise<void> }).refreshing;

  it('of gigabytes (a sparse file, nothing on disk) is taken for damaged without being read, as a CONFIG of that size is', async () => {
    const huge = 'cd'.repeat(32);
    await fs.mkdir(path.join(store, 'locks'), { recursive: true });
    await fs.writeFile(path.join(store, 'locks', huge), '');
    await fs.truncate(path.join(store, 'locks', huge), 1024 ** 3);
    const repository = await open();
    const read = vi.spyOn(fs, 'readFile');
    try {
      await expect(StoreLock.acquire(repository, 'exclusive', 'a prune')).rejects.toThrow(/^store is in use by an unreadable lock (cd){8} \(too large \(1073741824 bytes/);
      expect(read.mock.calls.filter(([file]) => String(file).includes(huge))).toEqual([]);
    } finally {
      read.mockRestore();
    }
    await fs.truncate(path.join(store, 'CONFIG'), 1024 ** 3);
    await expect(open()).rejects.toThrow(/not a kloset store \(its CONFIG is unreadable: too large\)$/);
  });

  it('is not left behind when another lock cannot be read, which keeps an exclusive lock out', async () => {
    const damaged = 'ab'.repeat(32);
    await fs.mkdir(path.join(store, 'locks'), { recursive: true });
    await fs.writeFile(path.join(store, 'locks', damaged), 'not a sealed lock');
    await expect(StoreLock.acquire(await open(), 'exclusive', 'a prune')).rejects.toThrow(
      /^store is in use by an unreadable lock (ab){8} \(blob too short\): 'kloset at .* unlock' removes it/,
    );
    expect(await lockFiles()).toEqual([damaged]);
  });

  it('says it is lost once it has been removed from the store', async () => {
    const lock = await StoreLock.acquire(await open(), 'shared', 'a backup');
    await expect(lock.check()).resolves.toBeUndefined();
    for (const name of await lockFiles()) await fs.unlink(path.join(store, 'locks', name));
    await expect(lock.check()).rejects.toThrow("the store's lock was lost (it was removed from the store): stopping before anything is committed");
    await lock.release();
  });

  it('is not written back by its refresh once it has been removed, so it stays lost', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    try {
      const lock = await StoreLock.acquire(await open(), 'shared', 'a backup');
      for (const name of await lockFiles()) await fs.unlink(path.join(store, 'locks', name));
      vi.advanceTimersByTime(5 * 60 * 1000); // the refresh is due
      await refreshed(lock);
      expect(await lockFiles()).toEqual([]);
      await expect(lock.check()).rejects.toThrow(/lock was lost \(it was removed from the store\)/);
      await lock.release();
    } finally {
      vi.useRealTimers();
    }
  });

  it('is removed by a prune that takes it for stale, so that its holder, with a clock behind, finds it lost', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
    try {
      const start = Date.now();
      const lock = await StoreLock.acquire(await open(), 'shared', 'a backup');
      // A prune on a machine whose clock is 40 minutes ahead: the backup's lock looks stale to it.
      vi.setSystemTime(start + 40 * 60 * 1000);
      const prune = await StoreLock.acquire(await open(), 'exclusive', 'prune');
      await prune.release();
      // The backup, by its own clock a second later, refreshed its lock just now.
      vi.setSystemTime(start + 1000);
      await expect(lock.check()).rejects.toThrow(/the store's lock was lost \(it was removed from the store\)/);
      await lock.release();
    } finally {
      vi.useRealTimers();
    }
  });

  it('stays lost when its refresh comes after it went stale, as after a suspend, and a prune may have run meanwhile', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
    try {
      const lock = await StoreLock.acquire(await open(), 'shared', 'a backup');
      // Stopped (Ctrl-Z, a suspended laptop) for 40 minutes: no refresh runs, the lock ages.
      vi.setSystemTime(Date.now() + 40 * 60 * 1000);
      // Meanwhile a prune takes it for stale, runs, and ends.
      const prune = await StoreLock.acquire(await open(), 'exclusive', 'prune');
      await prune.release();
      // Back: the overdue refresh runs before the backup reaches its commit check.
      vi.advanceTimersByTime(5 * 60 * 1000);
      await refreshed(lock);
      await expect(lock.check()).rejects.toThrow(/the store's lock was lost \(not refreshed for \d+ minutes\)/);
      await lock.release();
    } finally {
      vi.useRealTimers();
    }
  });
  it('keeps holding the store for a long reader once it is back from a suspend, though a writer must not commit', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
    try {
      // A mount (or ui, or restore): a reader that never commits, so never calls check().
      const lock = await StoreLock.acquire(await open(), 'shared', 'a mount');
      // The laptop sleeps 26 minutes: no prune runs meanwhile, the lock is still in the store.
      vi.setSystemTime(Date.now() + 26 * 60 * 1000);
      vi.advanceTimersByTime(5 * 60 * 1000); // the overdue refresh
      await refreshed(lock);
      // The mount runs on for an hour, refreshing as it should.
      for (let i = 0; i < 12; i++) {
        vi.advanceTimersByTime(5 * 60 * 1000);
        await refreshed(lock);
      }
      // A prune must still find the store in use.
      await expect(StoreLock.acquire(await open(), 'exclusive', 'prune')).rejects.toThrow(/store is in use by/);
      // A writer back from such a suspend still stops before it commits.
      await expect(lock.check()).rejects.toThrow(/the store's lock was lost/);
      await lock.release();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('a standalone object', () => {
  it('is refused by its writer when it would expand past what a reader takes', async () => {
    const repository = await open();
    const id = Buffer.alloc(32, 0xab);
    // 64 MiB of zeros compress to a few KiB: a reader would take it for a zstd bomb.
    await expect(repository.sealStandalone(BlobType.snapshot, id, Buffer.alloc(64 * 1024 * 1024))).rejects.toThrow(
      /^cannot store 67108864 bytes that compress to \d+: a reader takes at most 4194304$/,
    );
    const sealed = await repository.sealStandalone(BlobType.snapshot, id, Buffer.alloc(4 * 1024 * 1024));
    await repository.store.put(`snapshots/${id.toString('hex')}`, sealed);
    expect((await repository.readSealed(`snapshots/${id.toString('hex')}`, BlobType.snapshot, id)).length).toBe(4 * 1024 * 1024);
  });
});
