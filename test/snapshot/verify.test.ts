/**
 * A check names a file damaged only for what its blobs hold: a pack that
 * cannot be read for another reason (the store unreachable, permission
 * denied) fails the check with that reason instead.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt } from '../helpers/built.js';

const { KlosetError, NotFoundError } = (await loadBuilt('errors.js')) as typeof import('../../src/errors.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
const { BlobJudge } = (await loadBuilt('snapshot/verify.js')) as typeof import('../../src/snapshot/verify.js');
const { LocalBlobStore } = (await loadBuilt('storage/local.js')) as typeof import('../../src/storage/local.js');

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
  const store = new LocalBlobStore(path.join(dir, name));
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
