/**
 * A directory as the builder writes it: entries sorted, each name once. One
 * that says otherwise is damaged, or forged by whoever holds the key, and is
 * refused before a restore or an archive takes a second `a` through the first.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openLocalStore } from '../helpers/built.js';

const tree = (await loadBuilt('snapshot/tree.js')) as typeof import('../../src/snapshot/tree.js');
const { IntegrityError } = (await loadBuilt('errors.js')) as typeof import('../../src/errors.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
const { BlobJudge, verifySnapshot } = (await loadBuilt('snapshot/verify.js')) as typeof import('../../src/snapshot/verify.js');
type Entry = import('../../src/snapshot/tree.js').Entry;
type SnapshotHeader = import('../../src/snapshot/header.js').SnapshotHeader;

const mtime = { sec: 1_700_000_000, nsec: 0 };
const entry = (name: string, kind: Entry['kind'] = 'file'): Entry => ({
  name,
  kind,
  mode: kind === 'directory' ? 0o040755 : kind === 'symlink' ? 0o120777 : 0o100644,
  uid: 0,
  gid: 0,
  size: 0,
  mtime,
  ...(kind === 'symlink' ? { target: '/outside' } : {}),
});

let dir: string;
const savedCache = process.env.XDG_CACHE_HOME;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kloset-tree-'));
  process.env.XDG_CACHE_HOME = path.join(dir, 'cache');
});
afterAll(() => {
  process.env.XDG_CACHE_HOME = savedCache;
  rmSync(dir, { recursive: true, force: true });
});

describe('a directory blob', () => {
  it('decodes entries in name order, and refuses a name twice or out of order, inline or in a page', () => {
    const sorted = [entry('a'), entry('b'), entry('c')];
    expect(tree.decodePage(tree.encodePage(sorted)).map((e) => e.name)).toEqual(['a', 'b', 'c']);
    const inline = tree.decodeDirectory(tree.encodeDirectory({ count: 3, entries: sorted }));
    expect('entries' in inline && inline.entries.map((e) => e.name)).toEqual(['a', 'b', 'c']);
    const twice = [entry('a', 'symlink'), entry('a', 'directory')];
    expect(() => tree.decodePage(tree.encodePage(twice))).toThrow(IntegrityError);
    expect(() => tree.decodeDirectory(tree.encodeDirectory({ count: 2, entries: twice }))).toThrow(IntegrityError);
    expect(() => tree.decodePage(tree.encodePage([entry('b'), entry('a')]))).toThrow(/out of order or named twice/);
    const id = Buffer.alloc(32);
    const pages = (firsts: string[]) => ({ count: firsts.length, pages: firsts.map((first) => ({ first, count: 1, id })) });
    expect(() => tree.decodeDirectory(tree.encodeDirectory(pages(['a', 'a'])))).toThrow(IntegrityError);
    expect(() => tree.decodeDirectory(tree.encodeDirectory(pages(['a', 'b'])))).not.toThrow();
    // Two names that were not UTF-8, stored with U+FFFD by builds from before names were kept as bytes.
    const lossy = [entry('caf\uFFFD'), entry('caf\uFFFD')];
    expect(tree.decodePage(tree.encodePage(lossy)).map((e) => e.name)).toEqual(['caf\uFFFD', 'caf\uFFFD']);
  });

  it('is read page after page only while each page begins after the one before ends', async () => {
    const repository = await Repository.create(await openLocalStore(path.join(dir, 'store')), { passphrase: null });
    const directoryOf = async (pageEntries: Entry[][]) => {
      const writer = repository.newWriter();
      const pages = [];
      for (const entries of pageEntries) {
        pages.push({ first: entries[0]!.name, count: entries.length, id: await writer.put(BlobType.treePage, tree.encodePage(entries)) });
      }
      const id = await writer.put(BlobType.tree, tree.encodeDirectory({ count: pages.reduce((n, p) => n + p.count, 0), pages }));
      await writer.commit();
      return { ...entry('', 'directory'), tree: id };
    };
    const names = async (root: Entry) => {
      const reader = new SnapshotReader(repository, { root } as SnapshotHeader);
      const seen: string[] = [];
      for await (const child of reader.children(root)) seen.push(child.name);
      return seen;
    };
    expect(await names(await directoryOf([[entry('a'), entry('b')], [entry('c'), entry('d')]]))).toEqual(['a', 'b', 'c', 'd']);
    // Each page in order and the page index too, but the second page begins before the first ends.
    const overlapping = await directoryOf([[entry('a'), entry('c', 'symlink')], [entry('b'), entry('c', 'directory')]]);
    await expect(names(overlapping)).rejects.toThrow(IntegrityError);
    // check names what a restore would refuse.
    const damaged: string[] = [];
    const header = { id: Buffer.alloc(32), root: overlapping } as SnapshotHeader;
    await verifySnapshot(repository, header, new BlobJudge(repository), (d) => damaged.push(`${d.path}: ${d.reason}`));
    expect(damaged[0]).toBe('/: directory entries out of order or named twice');
  });
});
