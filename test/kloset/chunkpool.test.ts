import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openLocalStore, recordStore } from '../helpers/built.js';

const { ChunkPool } = (await loadBuilt('kloset/chunkpool.js')) as typeof import('../../src/kloset/chunkpool.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { LocalBlobStore } = (await loadBuilt('storage/local.js')) as typeof import('../../src/storage/local.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
type Repository = import('../../src/kloset/repository.js').Repository;

const SMALL = { algorithm: 'fastcdc' as const, minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024 };

describe('the chunk pool', () => {
  let dir: string;
  let repository: Repository;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kloset-pool-'));
    repository = await Repository.create(await openLocalStore(path.join(dir, 'store')), { passphrase: null, chunking: SMALL });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function contentOf(chunks: { id: Buffer }[]): Promise<Buffer> {
    return Buffer.concat(await Promise.all(chunks.map((c) => repository.getBlob(c.id, BlobType.chunk))));
  }

  it('reads each file whole, whatever size the walk saw, with many files in flight', async () => {
    const writer = repository.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const files = [0, 1, 5000, 70_000, 3 * 1024 * 1024].map((size, i) => {
        const file = path.join(dir, `f${i}`);
        const data = randomBytes(size);
        writeFileSync(file, data);
        return { file, data };
      });
      // Sizes as a walk might have seen them before the files changed: smaller, larger, zero.
      const seen = [10, 0, 4999, 100_000, 1024];
      const results = await Promise.all(files.map(({ file }, i) => pool.chunkFile(file, seen[i])));
      await writer.commit();
      for (const [i, result] of results.entries()) {
        expect(result.size).toBe(files[i].data.length);
        expect((await contentOf(result.chunks)).equals(files[i].data)).toBe(true);
      }
      expect(results[4].chunks.length).toBeGreaterThan(3 * 1024 * 1024 / SMALL.maxSize - 1);
    } finally {
      await pool.close();
    }
  });

  it('reads neither a symlink nor a FIFO put where the walk saw a regular file, and says why', async () => {
    const secret = path.join(dir, 'secret');
    writeFileSync(secret, 'not for the owner of the tree');
    const swapped = path.join(dir, 'swapped');
    symlinkSync(secret, swapped);
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = repository.newWriter();
    const pool = new ChunkPool(writer);
    try {
      await expect(pool.chunkFile(swapped, 29)).rejects.toThrow('replaced by a symlink since it was listed: not followed');
      // Opened without waiting for a writer: a FIFO would otherwise hold the worker forever.
      await expect(pool.chunkFile(fifo, 0)).rejects.toThrow('no longer a regular file since it was listed: not read');
      const plain = path.join(dir, 'plain');
      writeFileSync(plain, 'still read');
      expect((await pool.chunkFile(plain, 10)).size).toBe(10);
    } finally {
      await pool.close();
    }
  });

  it('seals the chunks of one large file on every worker, listed and stored in the order the file has them', async () => {
    const data = randomBytes(12 * 1024 * 1024);
    const file = path.join(dir, 'large');
    writeFileSync(file, data);
    const chunkWith = async (workers: number) => {
      const writer = repository.newWriter();
      const pool = new ChunkPool(writer, workers);
      try {
        const result = await pool.chunkFile(file, data.length);
        await writer.commit();
        return { result, handedOff: pool.chunksHandedOff };
      } finally {
        await pool.close();
      }
    };
    // Two workers first, so the second worker seals new chunks; one worker then finds every chunk stored.
    const shared = await chunkWith(2);
    const alone = await chunkWith(1);
    expect(shared.handedOff).toBeGreaterThan(10);
    expect(alone.handedOff).toBe(0);
    expect(alone.result.newChunks).toBe(0);
    expect(shared.result.chunks.map((c) => c.id.toString('hex'))).toEqual(alone.result.chunks.map((c) => c.id.toString('hex')));
    expect(shared.result.chunks.map((c) => c.size)).toEqual(alone.result.chunks.map((c) => c.size));
    expect((await contentOf(shared.result.chunks)).equals(data)).toBe(true);
    // In its packs, each chunk right after the one before it, though the chunks handed off were sealed later:
    // a reader then fetches a run of them in one request.
    const locations = shared.result.chunks.map((c) => repository.index.get(c.id)!);
    const misplaced = locations.filter((at, i) => {
      const before = locations[i - 1];
      return i > 0 && at.packId.equals(before.packId) && at.offset !== before.offset + before.length;
    });
    expect(misplaced).toEqual([]);
    expect(new Set(locations.map((at) => at.packId.toString('hex'))).size).toBeLessThanOrEqual(2);
  });

  it('stores the chunks two files share once and names them in both', async () => {
    const writer = repository.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const data = randomBytes(40_000);
      writeFileSync(path.join(dir, 'same-a'), data);
      writeFileSync(path.join(dir, 'same-b'), data);
      const [a, b] = await Promise.all([pool.chunkFile(path.join(dir, 'same-a'), 40_000), pool.chunkFile(path.join(dir, 'same-b'), 40_000)]);
      await writer.commit();
      expect(a.chunks.map((c) => c.id.toString('hex'))).toEqual(b.chunks.map((c) => c.id.toString('hex')));
      // 40 KB may be cut once or twice: each chunk is new for exactly one of the two files.
      expect(a.newChunks + b.newChunks).toBe(a.chunks.length);
      expect((await contentOf(b.chunks)).equals(data)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('leaves one index delta for a backup of many packs, naming every chunk', async () => {
    const store = await openLocalStore(path.join(dir, 'small-packs'));
    const packed = await Repository.create(store, { passphrase: null, chunking: SMALL, packSize: 256 * 1024 });
    const writer = packed.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const data = randomBytes(3 * 1024 * 1024);
      writeFileSync(path.join(dir, 'many-packs'), data);
      const result = await pool.chunkFile(path.join(dir, 'many-packs'), data.length);
      await writer.commit();
      expect(writer.packsStored).toBeGreaterThan(8);
      const deltas: string[] = [];
      for await (const { key } of store.list('index/')) deltas.push(key);
      expect(deltas).toHaveLength(1);
      const reopened = await Repository.open(await openLocalStore(path.join(dir, 'small-packs')), async () => '');
      for (const chunk of result.chunks) expect(reopened.has(chunk.id)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('writes index deltas along a backup ever further apart: after 4 packs, then 8, 16, 32 more', async () => {
    const indexPuts: string[] = [];
    class RecordingStore extends LocalBlobStore {
      override async put(key: string, data: Buffer): Promise<void> {
        if (key.startsWith('index/')) indexPuts.push(key);
        return super.put(key, data);
      }
    }
    const packed = await Repository.create(recordStore(new RecordingStore(path.join(dir, 'delta-spacing'))), {
      passphrase: null,
      chunking: SMALL,
      packSize: 256 * 1024,
    });
    const writer = packed.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const data = randomBytes(10 * 1024 * 1024);
      writeFileSync(path.join(dir, 'spacing'), data);
      await pool.chunkFile(path.join(dir, 'spacing'), data.length);
      await writer.commit();
      const packs = writer.packsStored;
      expect(packs).toBeGreaterThan(28);
      expect(packs).toBeLessThan(60);
      // Deltas along the way after packs 4, 12 and 28, then the one that replaces them.
      expect(indexPuts).toHaveLength(4);
      const left: string[] = [];
      for await (const { key } of packed.store.list('index/')) left.push(key);
      expect(left).toEqual([indexPuts[indexPuts.length - 1]]);
    } finally {
      await pool.close();
    }
  });

  it('fails a missing file alone, with its error code, and goes on with the others', async () => {
    const writer = repository.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const data = randomBytes(10_000);
      writeFileSync(path.join(dir, 'present'), data);
      const missing = pool.chunkFile(path.join(dir, 'absent'), 10);
      const present = pool.chunkFile(path.join(dir, 'present'), data.length);
      await expect(missing).rejects.toMatchObject({ code: 'ENOENT' });
      const result = await present;
      await writer.commit();
      expect((await contentOf(result.chunks)).equals(data)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('takes over the buffers a stream gives whole, copies those that are views of a larger one, and stores the bytes in order', async () => {
    const writer = repository.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const data = randomBytes(3 * 1024 * 1024 + 12345);
      // Network reads come as buffers of their own; a source may also give views of a buffer it keeps.
      const whole: Buffer[] = [];
      const kept = Buffer.from(data.subarray(0, 100_000));
      const pieces: Buffer[] = [kept.subarray(0, 40_000), kept.subarray(40_000)];
      for (let offset = 100_000; offset < data.length; offset += 65_536) {
        const piece = Buffer.allocUnsafeSlow(Math.min(65_536, data.length - offset));
        data.copy(piece, 0, offset);
        whole.push(piece);
        pieces.push(piece);
      }
      const result = await pool.chunk(
        (async function* () {
          yield* pieces;
        })(),
        data.length,
      );
      await writer.commit();
      expect((await contentOf(result.chunks)).equals(data)).toBe(true);
      expect(kept.equals(data.subarray(0, 100_000))).toBe(true);
      // Handed to a worker without a copy: the stream's own buffers are gone from this thread.
      expect(whole.every((piece) => piece.buffer.byteLength === 0)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('takes a buffer given twice in a row as its bytes twice', async () => {
    const writer = repository.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const piece = randomBytes(100_000);
      const expected = Buffer.concat([piece, piece]);
      const result = await pool.chunk(
        (async function* () {
          yield piece;
          yield piece;
        })(),
        expected.length,
      );
      await writer.commit();
      expect((await contentOf(result.chunks)).equals(expected)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('chunks a stream that fails midway without losing the chunks another stream shares', async () => {
    const writer = repository.newWriter();
    const pool = new ChunkPool(writer);
    try {
      const block = randomBytes(300_000);
      const failing = pool.chunk(
        (async function* () {
          yield Buffer.from(block);
          throw new Error('connection reset');
        })(),
      );
      await expect(failing).rejects.toThrow(/connection reset/);
      const whole = await pool.chunk(
        (async function* () {
          yield Buffer.from(block);
        })(),
        block.length,
      );
      await writer.commit();
      expect((await contentOf(whole.chunks)).equals(block)).toBe(true);
    } finally {
      await pool.close();
    }
  });
});
