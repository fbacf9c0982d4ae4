/**
 * Readers of one repository share the directories they decode: a mount or a
 * viewer walking many snapshots of one tree holds that tree once.
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadBuilt, recordStore } from '../helpers/built.js';

const { backup } = (await loadBuilt('snapshot/builder.js')) as typeof import('../../src/snapshot/builder.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { LocalBlobStore } = (await loadBuilt('storage/local.js')) as typeof import('../../src/storage/local.js');
const { FsImporter } = (await loadBuilt('connectors/fs/importer.js')) as typeof import('../../src/connectors/fs/importer.js');

/** The local store, counting the ranged reads that reach it. */
class CountingStore extends LocalBlobStore {
  rangedReads = 0;
  override getRange(key: string, offset: number, length: number): Promise<Buffer> {
    this.rangedReads++;
    return super.getRange(key, offset, length);
  }
}

let dir: string;
const savedCache = process.env.XDG_CACHE_HOME;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kloset-reader-'));
  process.env.XDG_CACHE_HOME = path.join(dir, 'cache');
});
afterAll(() => {
  process.env.XDG_CACHE_HOME = savedCache;
  rmSync(dir, { recursive: true, force: true });
});

it('decodes a directory once for every snapshot that holds it', async () => {
  const source = path.join(dir, 'source');
  for (const sub of ['a', 'b', 'c']) {
    mkdirSync(path.join(source, sub), { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(path.join(source, sub, `f${i}.txt`), `${sub} ${i}\n`);
  }
  const store = recordStore(new CountingStore(path.join(dir, 'store')));
  const repository = await Repository.create(store, { passphrase: null });
  // Two snapshots of an unchanged tree: the same directory blobs.
  const first = await backup(repository, new FsImporter(source));
  const second = await backup(repository, new FsImporter(source), { parent: first });
  const walk = async (reader: InstanceType<typeof SnapshotReader>) => {
    const names: string[] = [];
    for await (const sub of reader.children(reader.root)) for await (const file of reader.children(sub)) names.push(`${sub.name}/${file.name}`);
    return names;
  };
  // Opened again, as a mount or the viewer opens it: nothing decoded yet.
  const opened = await Repository.open(store, async () => 'unused');
  const before = store.rangedReads;
  const names = await walk(new SnapshotReader(opened, first));
  const afterFirst = store.rangedReads;
  expect(afterFirst).toBeGreaterThan(before);
  expect(await walk(new SnapshotReader(opened, second))).toEqual(names);
  expect(store.rangedReads).toBe(afterFirst);
  expect(names).toHaveLength(60);
});

it('restores several large files with no more chunks fetched at once than the restore allows, byte for byte', async () => {
  const { restore } = (await loadBuilt('snapshot/restore.js')) as typeof import('../../src/snapshot/restore.js');
  const { FsExporter } = (await loadBuilt('connectors/fs/exporter.js')) as typeof import('../../src/connectors/fs/exporter.js');
  const { randomBytes, createHash } = await import('node:crypto');
  const { readFileSync } = await import('node:fs');
  const source = path.join(dir, 'large-files');
  mkdirSync(source);
  for (let i = 0; i < 6; i++) writeFileSync(path.join(source, `large-${i}.bin`), randomBytes(12 * 1024 * 1024));

  /** The local store, keeping the most reads of chunks (256 KiB at least) it served at once. */
  class ConcurrencyStore extends LocalBlobStore {
    active = 0;
    most = 0;
    override async getRange(key: string, offset: number, length: number): Promise<Buffer> {
      if (length < 256 * 1024) return super.getRange(key, offset, length); // a file's chunk list, a directory
      this.most = Math.max(this.most, ++this.active);
      try {
        // As a remote store answers: long enough that every reader's fetches pile up.
        await new Promise((r) => setTimeout(r, 5));
        return await super.getRange(key, offset, length);
      } finally {
        this.active--;
      }
    }
  }
  const store = recordStore(new ConcurrencyStore(path.join(dir, 'large-store')));
  const repository = await Repository.create(store, { passphrase: null });
  const header = await backup(repository, new FsImporter(source));
  const reader = new SnapshotReader(repository, header);
  store.most = 0;
  const target = path.join(dir, 'large-restored');
  const exporter = new FsExporter(target);
  const result = await restore(reader, header.root, '/', exporter);
  await exporter.close();
  expect(result).toMatchObject({ files: 6, errors: 0 });
  // Six files, each reading four chunks ahead, would fetch 24 at once.
  expect(store.most).toBeGreaterThan(1);
  expect(store.most).toBeLessThanOrEqual(8);
  const digest = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
  for (let i = 0; i < 6; i++) expect(digest(path.join(target, `large-${i}.bin`))).toBe(digest(path.join(source, `large-${i}.bin`)));
});

it('reads a large file in a ranged read per few chunks, and any range of it byte for byte', async () => {
  const { randomBytes } = await import('node:crypto');
  const source = path.join(dir, 'one-large');
  mkdirSync(source);
  const bytes = randomBytes(24 * 1024 * 1024);
  writeFileSync(path.join(source, 'large.bin'), bytes);
  const store = recordStore(new CountingStore(path.join(dir, 'one-large-store')));
  const repository = await Repository.create(store, { passphrase: null });
  const header = await backup(repository, new FsImporter(source));
  const reader = new SnapshotReader(await Repository.open(store, async () => 'unused'), header);
  const content = await reader.openFile((await reader.child(reader.root, 'large.bin'))!);
  expect(content.chunks.length).toBeGreaterThan(8);

  const before = store.rangedReads;
  const parts: Buffer[] = [];
  for await (const part of content.stream()) parts.push(part);
  expect(Buffer.concat(parts).equals(bytes)).toBe(true);
  // Chunks side by side in a pack come together, up to 4 MiB a read: about two reads for every three
  // chunks (of 1 MiB on average), where fetching each chunk on its own would take three.
  expect(store.rangedReads - before).toBeLessThanOrEqual(Math.ceil(content.chunks.length * 0.75));

  for (const [start, end] of [
    [0, 1],
    [5, content.offsets[1] + 7],
    [content.offsets[3], content.offsets[6]],
    [content.offsets[2] - 1, bytes.length],
    [bytes.length - 10, bytes.length + 100],
    [1000, 1000],
  ]) {
    const range: Buffer[] = [];
    for await (const part of content.stream({ start, end })) range.push(part);
    expect(Buffer.concat(range).equals(bytes.subarray(start, end)), `[${start}, ${end})`).toBe(true);
  }
});

it('restores the small files of many small directories in a few batches, byte for byte, reading their directories ahead', async () => {
  const { restore } = (await loadBuilt('snapshot/restore.js')) as typeof import('../../src/snapshot/restore.js');
  const { FsExporter } = (await loadBuilt('connectors/fs/exporter.js')) as typeof import('../../src/connectors/fs/exporter.js');
  const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
  const { randomBytes } = await import('node:crypto');
  const { readFileSync } = await import('node:fs');
  // As a bucket's prefixes: 40 directories of three files and a subdirectory of two, 64 to 96 KiB each (one chunk).
  const source = path.join(dir, 'prefixes');
  const files = new Map<string, Buffer>();
  for (let d = 0; d < 40; d++) {
    mkdirSync(path.join(source, `p${d}`, 'q'), { recursive: true });
    for (let f = 0; f < 5; f++) {
      const rel = path.join(`p${d}`, f % 2 ? 'q' : '', `f${f}`);
      const data = randomBytes(64 * 1024 + (((d * 5 + f) * 163) % (32 * 1024)));
      writeFileSync(path.join(source, rel), data);
      files.set(rel, data);
    }
  }
  const store = recordStore(new LocalBlobStore(path.join(dir, 'prefixes-store')));
  const header = await backup(await Repository.create(store, { passphrase: null }), new FsImporter(source));
  const repository = await Repository.open(store, async () => 'unused');
  // What the restore asks of the repository: blobs one by one, and batches of them.
  const asked = { chunkBatches: 0, directories: 0, directoryBatches: 0 };
  const { getBlob, getBlobs } = repository;
  repository.getBlob = (id, type) => {
    if (type === BlobType.tree) asked.directories++;
    return getBlob.call(repository, id, type);
  };
  repository.getBlobs = (ids, type) => {
    if (type === BlobType.chunk) asked.chunkBatches++;
    if (type === BlobType.tree) asked.directoryBatches++;
    return getBlobs.call(repository, ids, type);
  };
  const target = path.join(dir, 'prefixes-restored');
  const exporter = new FsExporter(target);
  const result = await restore(new SnapshotReader(repository, header), header.root, '/', exporter);
  await exporter.close();
  expect(result).toMatchObject({ files: 200, errors: 0 });
  // 16 MiB of files in batches of 64 files or 8 MiB, whatever directory they are in: not one batch per directory.
  expect(asked.chunkBatches).toBeLessThanOrEqual(5);
  // Every directory but the root is read ahead, as its parent is listed: the 40 below the root in one batch,
  // then the subdirectory of each.
  expect(asked.directoryBatches).toBe(41);
  expect(asked.directories).toBe(1);
  for (const [rel, data] of files) expect(readFileSync(path.join(target, rel)).equals(data), rel).toBe(true);
});
