/**
 * Read buffers reused from one ranged read to the next: the pool itself, and
 * a repository reading many blobs at once, whose results must never share
 * memory with a buffer handed to a later read.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openLocalStore, recordStore } from '../helpers/built.js';

const { ReadBuffers } = (await loadBuilt('kloset/readbuffers.js')) as typeof import('../../src/kloset/readbuffers.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { LocalBlobStore } = (await loadBuilt('storage/local.js')) as typeof import('../../src/storage/local.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');

const KiB = 1024;
const MiB = 1024 * KiB;

describe('ReadBuffers', () => {
  it('lends small reads nothing, and larger ones a buffer of exactly their length', () => {
    const buffers = new ReadBuffers(8 * MiB);
    expect(buffers.take(4 * KiB)).toBeUndefined();
    const taken = buffers.take(300 * KiB)!;
    expect(taken.length).toBe(300 * KiB);
  });

  it('hands a returned buffer to the next read of a nearby length, and not to one much smaller', () => {
    const buffers = new ReadBuffers(8 * MiB);
    const first = buffers.take(1000 * KiB)!;
    buffers.give(first);
    const small = buffers.take(100 * KiB)!;
    expect(small.buffer).not.toBe(first.buffer);
    const second = buffers.take(900 * KiB)!;
    expect(second.buffer).toBe(first.buffer);
    expect(second.length).toBe(900 * KiB);
    // Lent out now: the next read gets another.
    expect(buffers.take(900 * KiB)!.buffer).not.toBe(first.buffer);
  });

  it('keeps no more free bytes than it was told', () => {
    const buffers = new ReadBuffers(1 * MiB);
    const a = buffers.take(1 * MiB)!;
    const b = buffers.take(1 * MiB)!;
    buffers.give(a);
    buffers.give(b);
    expect(buffers.take(1 * MiB)!.buffer).toBe(a.buffer);
    expect(buffers.take(1 * MiB)!.buffer).not.toBe(b.buffer);
  });
});

describe('a repository reading with reused buffers', () => {
  let work: string;
  const savedCache = process.env.XDG_CACHE_HOME;

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'kloset-readbuffers-'));
    process.env.XDG_CACHE_HOME = path.join(work, 'cache');
  });
  afterAll(async () => {
    process.env.XDG_CACHE_HOME = savedCache;
    await fs.rm(work, { recursive: true, force: true });
  });

  /** A local store that records the buffers the repository lends it. */
  class RecordingStore extends LocalBlobStore {
    readonly lent: ArrayBufferLike[] = [];
    override getRange(key: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
      if (into) this.lent.push(into.buffer);
      return super.getRange(key, offset, length, into);
    }
  }

  const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

  /** Chunks of 100 to 700 KiB, half random, half text: each codec, blobs of many sizes. */
  function chunks(count: number): Buffer[] {
    return Array.from({ length: count }, (_, i) => {
      const length = (100 + ((i * 37) % 600)) * KiB;
      return i % 2 === 0 ? randomBytes(length) : Buffer.from(`chunk ${i} `.repeat(length).slice(0, length));
    });
  }

  for (const passphrase of ['secret', null]) {
    const kind = passphrase ? 'encrypted' : 'plaintext';
    it(`returns every blob whole when many are read at once, one by one and in batches (${kind} store)`, async () => {
      const dir = path.join(work, kind);
      const kdf = { memoryKiB: 8, iterations: 1, parallelism: 1 };
      await Repository.create(await openLocalStore(dir), { passphrase, kdf });
      const data = chunks(40);
      const writer = (await Repository.open(await openLocalStore(dir), async () => passphrase ?? '')).newWriter();
      const ids: Buffer[] = [];
      for (const chunk of data) ids.push(await writer.put(BlobType.chunk, chunk));
      await writer.commit();

      const store = recordStore(new RecordingStore(dir));
      const repository = await Repository.open(store, async () => passphrase ?? '');
      for (let round = 0; round < 3; round++) {
        const single = Promise.all(ids.map((id) => repository.getBlob(id, BlobType.chunk)));
        const batched = Promise.all([0, 10, 20, 30].map((from) => repository.getBlobs(ids.slice(from, from + 10), BlobType.chunk)));
        const [one, many] = await Promise.all([single, batched]);
        // Read again before checking: a result sharing memory with a lent buffer would be overwritten by now.
        await Promise.all(ids.map((id) => repository.getBlob(id, BlobType.chunk)));
        expect(one.map(sha)).toEqual(data.map(sha));
        expect(many.flat().map(sha)).toEqual(data.map(sha));
      }
      if (passphrase) {
        // Reused: far fewer distinct buffers than reads (how many are out at once depends on timing, so not a quarter).
        expect(store.lent.length).toBeGreaterThan(100);
        expect(new Set(store.lent).size).toBeLessThan(store.lent.length / 2);
      } else {
        // A plaintext store's blobs are views of what was read: nothing may be lent.
        expect(store.lent).toEqual([]);
      }
    });
  }
});
