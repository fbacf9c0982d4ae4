/**
 * A directory whose entries all come out of a backup as the previous
 * snapshot has them keeps that snapshot's tree, rather than being encoded
 * and hashed again; any change below it, however small, gives it a new one,
 * and what is restored is the source as it is now.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { describeTree, klosetWith } from '../helpers/fixtures.js';

const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
let restores = 0;

/** Backs the source up; returns the new snapshot's directory ids by path. */
async function backupTrees(args: string[] = []): Promise<Map<string, string>> {
  const result = await kloset(['at', store, 'backup', ...args, source]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const repository = await openBuiltStore(store);
  const latest = (await listSnapshots(repository)).at(-1)!;
  const reader = new SnapshotReader(repository, latest);
  const trees = new Map<string, string>();
  const visit = async (rel: string, entry: import('../../src/snapshot/tree.js').Entry) => {
    trees.set(rel, entry.tree!.toString('hex'));
    for await (const child of reader.children(entry)) if (child.kind === 'directory') await visit(path.posix.join(rel, child.name), child);
  };
  await visit('/', latest.root);
  return trees;
}

/** As backupTrees, and checks that the snapshot restores as the source now is. */
async function backupAndRestore(): Promise<Map<string, string>> {
  const trees = await backupTrees();
  const target = path.join(work, `restored-${++restores}`);
  expect((await kloset(['at', store, 'restore', '-to', target])).code).toBe(0);
  expect(await describeTree(target)).toEqual(await describeTree(source));
  return trees;
}

/** The directories whose tree changed from one backup to the next. */
function changed(before: Map<string, string>, after: Map<string, string>): string[] {
  return [...after].filter(([rel, tree]) => before.get(rel) !== tree).map(([rel]) => rel);
}

beforeAll(async () => {
  work = await tempDir('kloset-unchanged-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  source = path.join(work, 'source');
  for (const dir of ['a/b/c', 'a/d', 'e', 'empty']) await fs.mkdir(path.join(source, dir), { recursive: true });
  for (const file of ['top.txt', 'a/one.txt', 'a/b/two.txt', 'a/b/c/three.txt', 'a/b/c/zz-last.txt', 'a/d/0-first.txt', 'a/d/four.txt', 'e/five.txt']) {
    await fs.writeFile(path.join(source, file), `${file}\n`.repeat(100));
  }
  await fs.symlink('../top.txt', path.join(source, 'e/link'));
  store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a re-backup', () => {
  let trees: Map<string, string>;

  it('of an unchanged source keeps every directory tree', async () => {
    trees = await backupAndRestore();
    const again = await backupAndRestore();
    expect(changed(trees, again)).toEqual([]);
    trees = again;
  });

  const cases: [string, () => Promise<void>, string[]][] = [
    ['a file whose mode changed', () => fs.chmod(path.join(source, 'a/b/c/three.txt'), 0o600), ['/', '/a', '/a/b', '/a/b/c']],
    ['a directory whose mode changed (an entry of its parent)', () => fs.chmod(path.join(source, 'a/d'), 0o750), ['/', '/a']],
    ['the last file of a directory removed', () => fs.rm(path.join(source, 'a/b/c/zz-last.txt')), ['/', '/a', '/a/b', '/a/b/c']],
    ['the first file of a directory removed', () => fs.rm(path.join(source, 'a/d/0-first.txt')), ['/', '/a', '/a/d']],
    ['a file added', () => fs.writeFile(path.join(source, 'a/d/new.txt'), 'new\n'), ['/', '/a', '/a/d']],
    ['a symlink pointed elsewhere', async () => {
      await fs.rm(path.join(source, 'e/link'));
      await fs.symlink('../a/one.txt', path.join(source, 'e/link'));
    }, ['/', '/e']],
    ['a file rewritten with the same size', () => fs.writeFile(path.join(source, 'e/five.txt'), 'E/FIVE.TXT\n'.repeat(100)), ['/', '/e']],
    ['a file added to an empty directory', () => fs.writeFile(path.join(source, 'empty/now.txt'), 'now\n'), ['/', '/empty']],
  ];
  for (const [what, change, expected] of cases) {
    it(`after ${what} gives new trees from there up, and only there`, async () => {
      await change();
      const after = await backupAndRestore();
      expect(changed(trees, after).sort()).toEqual(expected);
      trees = after;
    });
  }

  it('that leaves out, by -exclude, a file the previous snapshot has gives its directory a new tree without it', async () => {
    const after = await backupTrees(['-exclude', 'a/one.txt']);
    expect(changed(trees, after).sort()).toEqual(['/', '/a']);
    const target = path.join(work, `restored-${++restores}`);
    expect((await kloset(['at', store, 'restore', '-to', target])).code).toBe(0);
    expect((await fs.readdir(path.join(target, 'a'))).sort()).toEqual(['b', 'd']);
  });
});
