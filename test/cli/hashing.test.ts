/**
 * How a store names its blobs and packs is fixed in its CONFIG: new stores
 * use BLAKE3, and a store made before (no `hashing` field) keeps HMAC-SHA256
 * for blob ids and SHA-256 for pack names, so every id it holds stays valid
 * and a backup into it still deduplicates against what is there.
 */
import { Blake3Hasher, blake3 } from '@napi-rs/blake-hash';
import { createHash, createHmac } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { loadBuilt } from '../helpers/built.js';
import { addedToStore, describeTree, expectOneLineError, klosetWith, packFiles } from '../helpers/fixtures.js';

const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { LocalBlobStore } = (await loadBuilt('storage/local.js')) as typeof import('../../src/storage/local.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');

let work: string;
let source: string;
let kloset: ReturnType<typeof klosetWith>;
const savedCache = process.env.XDG_CACHE_HOME;

beforeAll(async () => {
  work = await tempDir('kloset-hashing-');
  process.env.XDG_CACHE_HOME = path.join(work, 'cache');
  kloset = klosetWith({ XDG_CACHE_HOME: process.env.XDG_CACHE_HOME });
  source = path.join(work, 'source');
  await fs.mkdir(path.join(source, 'docs'), { recursive: true });
  for (let i = 0; i < 30; i++) await fs.writeFile(path.join(source, 'docs', `note-${i}.txt`), `note ${i}\n`.repeat(200 + i));
});

afterAll(async () => {
  process.env.XDG_CACHE_HOME = savedCache;
  await fs.rm(work, { recursive: true, force: true });
});

/** Stores one chunk; returns its id and the name and bytes of the one pack it went into. */
async function storeOneChunk(dir: string, hashing?: 'blake3' | 'hmac-sha256') {
  const created = await Repository.create(new LocalBlobStore(dir), { passphrase: null, ...(hashing ? { hashing } : {}) });
  const writer = created.newWriter();
  const plaintext = Buffer.from('the same content in every store');
  const id = await writer.put(BlobType.chunk, plaintext);
  await writer.commit();
  const [pack] = await packFiles(dir);
  return { repository: created, plaintext, id, pack: { name: pack.id, bytes: await fs.readFile(pack.file) } };
}

describe('a new store', () => {
  it('names blobs with BLAKE3 keyed by the store, and packs with the BLAKE3 of their bytes', async () => {
    const { repository, plaintext, id, pack } = await storeOneChunk(path.join(work, 'new-store'));
    expect(repository.config.hashing).toBe('blake3');
    expect(id.equals(Blake3Hasher.newKeyed(repository.keys.idKey).update(plaintext).digestBuffer())).toBe(true);
    expect(pack.name).toBe(blake3(pack.bytes).toString('hex'));
  });
});

describe('a store made before BLAKE3', () => {
  let store: string;

  it('has no hashing in its CONFIG, and names blobs with HMAC-SHA256 and packs with SHA-256', async () => {
    store = path.join(work, 'older-store');
    const { repository, plaintext, id, pack } = await storeOneChunk(store, 'hmac-sha256');
    const config = JSON.parse(await fs.readFile(path.join(store, 'CONFIG'), 'utf8')) as Record<string, unknown>;
    expect('hashing' in config).toBe(false);
    expect(id.equals(createHmac('sha256', repository.keys.idKey).update(plaintext).digest())).toBe(true);
    expect(pack.name).toBe(createHash('sha256').update(pack.bytes).digest('hex'));
  });

  it('backs up, deduplicates, checks and restores as before', async () => {
    const first = await kloset(['at', store, 'backup', source]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const again = await kloset(['at', store, 'backup', source]);
    expect(again.code).toBe(0);
    expect(addedToStore(again.stdout)).toBeLessThan(64 * 1024);
    const check = await kloset(['at', store, 'check']);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    const target = path.join(work, 'older-restored');
    expect((await kloset(['at', store, 'restore', '-to', target])).code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
    for (const pack of await packFiles(store)) {
      expect(pack.id).toBe(createHash('sha256').update(await fs.readFile(pack.file)).digest('hex'));
    }
  });
});

describe('a store that names its blobs in a way this version does not know', () => {
  it('is refused in one line naming it, before anything is read or written', async () => {
    const store = path.join(work, 'later-store');
    expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
    const file = path.join(store, 'CONFIG');
    const config = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
    await fs.writeFile(file, JSON.stringify({ ...config, hashing: 'blake5' }, null, 2) + '\n');
    const before = await fs.readdir(store, { recursive: true });
    const result = await kloset(['at', store, 'backup', source]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /names its blobs with "blake5", which this version of kloset does not know/);
    expect(await fs.readdir(store, { recursive: true })).toEqual(before);
  });
});
