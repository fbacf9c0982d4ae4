/**
 * restore -include takes what matches and the directories leading to it;
 * -exclude takes all but what matches. What is restored is as the source
 * was: bytes, modes and times, directories included.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { describeTree, expectOneLineError, klosetWith, type TreeItem } from '../helpers/fixtures.js';

const PAST = new Date('2022-02-02T02:02:02Z');

let work: string;
let store: string;
let source: string;
let sourceTree: Record<string, TreeItem>;
let kloset: ReturnType<typeof klosetWith>;

/** The source's entries at these paths, with the root. */
function sourceItems(paths: string[]): Record<string, TreeItem> {
  return Object.fromEntries(['.', ...paths].map((p) => [p, sourceTree[p]]));
}

async function restored(args: string[]): Promise<Record<string, TreeItem>> {
  const target = await fs.mkdtemp(path.join(work, 'restored-'));
  const result = await kloset(['at', store, 'restore', '-to', target, ...args]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const tree = await describeTree(target);
  tree['.'] = sourceTree['.']; // the target is the caller's directory, not the snapshot's root
  return tree;
}

beforeAll(async () => {
  work = await tempDir('kloset-restoreselect-');
  store = path.join(work, 'store');
  source = path.join(work, 'source');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  const files: Record<string, string> = {
    'docs/a.txt': 'a\n',
    'docs/b.md': '# b\n',
    'docs/deep/c.txt': 'c\n',
    'docs/deep/d.bin': 'dddd',
    'photos/x.jpg': 'jpeg x',
    'photos/y.jpg': 'jpeg y',
    'notes.txt': 'notes\n',
  };
  for (const [rel, body] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(source, rel)), { recursive: true });
    await fs.writeFile(path.join(source, rel), body);
  }
  await fs.mkdir(path.join(source, 'empty'));
  await fs.symlink('notes.txt', path.join(source, 'link'));
  await fs.chmod(path.join(source, 'docs/deep'), 0o700);
  for (const rel of [...Object.keys(files), 'docs/deep', 'docs', 'photos', 'empty']) await fs.utimes(path.join(source, rel), PAST, PAST);
  sourceTree = await describeTree(source);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('restore -include', () => {
  it('takes the files whose names match, and only the directories that lead to them, with their modes and times', async () => {
    expect(await restored(['-include', '*.txt'])).toEqual(sourceItems(['docs', 'docs/a.txt', 'docs/deep', 'docs/deep/c.txt', 'notes.txt']));
  });

  it('takes a matching directory whole, and matches paths as well as names', async () => {
    expect(await restored(['-include', 'photos', '-include', 'docs/deep/*.bin'])).toEqual(
      sourceItems(['docs', 'docs/deep', 'docs/deep/d.bin', 'photos', 'photos/x.jpg', 'photos/y.jpg']),
    );
  });

  it('anchors a pattern with a leading slash at the top of what is restored', async () => {
    expect(await restored(['-include', '/docs/*.txt'])).toEqual(sourceItems(['docs', 'docs/a.txt']));
    // A bare name with a slash is that entry at the top only: not docs/deep's c.txt for /c.txt, but notes.txt for /notes.txt.
    expect(await restored(['-include', '/c.txt', '-include', '/notes.txt'])).toEqual(sourceItems(['notes.txt']));
    expect(await restored(['-include', 'c.txt'])).toEqual(sourceItems(['docs', 'docs/deep', 'docs/deep/c.txt']));
  });

  it('says so when nothing matches, rather than leaving an empty directory without a word', async () => {
    const target = path.join(work, 'nothing');
    const result = await kloset(['at', store, 'restore', '-to', target, '-include', '*.docx']);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/^warning: -include: nothing in [0-9a-f]{8}:\/ matches \*\.docx\n$/);
    expect(await fs.readdir(target)).toEqual([]);
  });

  it('matches paths relative to the subtree restored', async () => {
    const target = await fs.mkdtemp(path.join(work, 'restored-'));
    const id = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout)[0].id as string;
    expect((await kloset(['at', store, 'restore', '-to', target, '-include', 'deep/c.txt', `${id}:/docs`])).code).toBe(0);
    expect(Object.keys(await describeTree(target)).sort()).toEqual(['.', 'deep', 'deep/c.txt']);
  });

  it('judges one file restored by its name, as the entries of a directory', async () => {
    const id = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout)[0].id as string;
    const missed = path.join(work, 'one-missed');
    const result = await kloset(['at', store, 'restore', '-to', missed, '-include', '*.md', `${id}:/notes.txt`]);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/^warning: -include: nothing in [0-9a-f]{8}:\/notes\.txt matches \*\.md\n$/);
    await expect(fs.readdir(missed).catch(() => [])).resolves.toEqual([]);
    const taken = await fs.mkdtemp(path.join(work, 'one-taken-'));
    expect((await kloset(['at', store, 'restore', '-to', taken, '-include', '*.txt', `${id}:/notes.txt`])).code).toBe(0);
    expect(await fs.readdir(taken)).toEqual(['notes.txt']);
  });
});

describe('restore -exclude', () => {
  it('leaves out what matches, a directory with all it holds, and restores the rest as it was', async () => {
    const all = Object.keys(sourceTree).filter((p) => p !== '.');
    const kept = all.filter((p) => !p.endsWith('.jpg') && !p.startsWith('docs/deep'));
    expect(await restored(['-exclude', '*.jpg', '-exclude', 'deep'])).toEqual(sourceItems(kept));
  });

  it('leaves out one file restored whose name matches', async () => {
    const id = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout)[0].id as string;
    const target = path.join(work, 'one-excluded');
    const result = await kloset(['at', store, 'restore', '-to', target, '-exclude', 'notes.txt', `${id}:/notes.txt`]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    await expect(fs.readdir(target).catch(() => [])).resolves.toEqual([]);
  });

  it('is refused beside -include, in one line', async () => {
    const result = await kloset(['at', store, 'restore', '-to', path.join(work, 'never'), '-include', 'a', '-exclude', 'b']);
    expectOneLineError(result, /restore takes -include or -exclude, not both/);
    expect(result.code).toBe(2);
  });
});
