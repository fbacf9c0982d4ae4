/** `diff` between two snapshots of a changing directory, as a user reads it and as a script does. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectOneLineError, storeWithTwoSnapshots, type TwoSnapshots } from '../helpers/fixtures.js';

let work: string;
let store: string;
let kloset: TwoSnapshots['kloset'];
let first: string;
let second: string;

beforeAll(async () => {
  ({ work, store, kloset, first, second } = await storeWithTwoSnapshots(
    'kloset-diff-',
    async (source) => {
      await fs.mkdir(path.join(source, 'docs/old'), { recursive: true });
      await fs.mkdir(path.join(source, 'same/deep'), { recursive: true });
      await fs.writeFile(path.join(source, 'edited.txt'), 'first version\n');
      await fs.writeFile(path.join(source, 'touched.txt'), 'same bytes\n');
      await fs.writeFile(path.join(source, 'becomes-link'), 'a file first\n');
      await fs.writeFile(path.join(source, 'docs/old/a.txt'), 'aaaa\n');
      await fs.writeFile(path.join(source, 'docs/old/b.txt'), 'bbbbbbbb\n');
      await fs.writeFile(path.join(source, 'docs/kept.txt'), 'kept\n');
      await fs.writeFile(path.join(source, 'same/deep/file.txt'), 'unchanged\n');
      await fs.mkdir(path.join(source, 'private'), { mode: 0o755 });
      await fs.writeFile(path.join(source, 'private/key.txt'), 'key\n');
    },
    async (source) => {
      await fs.writeFile(path.join(source, 'edited.txt'), 'second, longer version\n');
      await fs.chmod(path.join(source, 'touched.txt'), 0o600);
      await fs.rm(path.join(source, 'becomes-link'));
      await fs.symlink('edited.txt', path.join(source, 'becomes-link'));
      await fs.rm(path.join(source, 'docs/old'), { recursive: true });
      await fs.mkdir(path.join(source, 'docs/new'));
      await fs.writeFile(path.join(source, 'docs/new/c.txt'), 'c\n');
      await fs.writeFile(path.join(source, 'added.txt'), 'new\n');
      await fs.chmod(path.join(source, 'private'), 0o700);
    },
  ));
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('diff', () => {
  it('lists what was added, removed and changed, in path order, with what changed', async () => {
    const result = await kloset(['at', store, 'diff', first, second]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')).toEqual([
      '+  /added.txt',
      'T  /becomes-link  (type)',
      '+  /docs/new/  (1 file, 2 B)',
      '-  /docs/old/  (2 files, 14 B)',
      'M  /edited.txt  (size, content, mtime)',
      `diff ${first}..${second}: 2 added, 1 removed, 2 changed`,
      '',
    ]);
  });

  it('lists metadata-only changes too with --metadata, as restic does', async () => {
    const result = await kloset(['at', store, 'diff', '--metadata', first, second]);
    expect(result.stdout.split('\n')).toEqual([
      'U  /  (mtime)',
      '+  /added.txt',
      'T  /becomes-link  (type)',
      'U  /docs/  (mtime)',
      '+  /docs/new/  (1 file, 2 B)',
      '-  /docs/old/  (2 files, 14 B)',
      'M  /edited.txt  (size, content, mtime)',
      // A directory's own mode, with the same entries (the same tree) on both sides.
      'U  /private/  (mode)',
      'U  /touched.txt  (mode)',
      `diff ${first}..${second}: 2 added, 1 removed, 6 changed`,
      '',
    ]);
  });

  it('compares one directory, or one file, of each snapshot', async () => {
    const docs = await kloset(['at', store, 'diff', `${first}:/docs`, second]);
    expect(docs.stdout).toBe(`+  /docs/new/  (1 file, 2 B)\n-  /docs/old/  (2 files, 14 B)\ndiff ${first}..${second}: 1 added, 1 removed, 0 changed\n`);
    const same = await kloset(['at', store, 'diff', `${first}:/same`, `${second}:/same`]);
    expect(same.stdout).toBe(`diff ${first}..${second}: 0 added, 0 removed, 0 changed\n`);
    const file = await kloset(['at', store, 'diff', `${first}:/edited.txt`, second]);
    expect(file.stdout).toBe(`M  /edited.txt  (size, content, mtime)\ndiff ${first}..${second}: 0 added, 0 removed, 1 changed\n`);
  });

  it('names items from the path as resolved, however it was typed', async () => {
    const want = `+  /docs/new/  (1 file, 2 B)\n-  /docs/old/  (2 files, 14 B)\ndiff ${first}..${second}: 1 added, 1 removed, 0 changed\n`;
    // docs/old is gone from the second snapshot: compared there at /docs, the path resolved.
    for (const typed of ['/docs/', 'docs', '//docs', '/docs/./', '/docs/old/..']) {
      const result = await kloset(['at', store, 'diff', `${first}:${typed}`, second]);
      expect(result.stdout, typed).toBe(want);
    }
    const json = await kloset(['at', store, 'diff', '--json', `${first}:/docs/old/..`, second]);
    expect(JSON.parse(json.stdout).path).toBe('/docs');
  });

  it('gives scripts both snapshots, the counts and every item with --json, metadata-only changes included', async () => {
    const result = await kloset(['at', store, 'diff', first, second, '-json']);
    const parsed = JSON.parse(result.stdout) as {
      a: { short_id: string };
      b: { short_id: string };
      counts: Record<string, number>;
      items: { path: string; status: string; reasons?: string[]; before?: { type: string }; after?: { type: string; files?: number } }[];
    };
    expect([parsed.a.short_id, parsed.b.short_id]).toEqual([first, second]);
    expect(parsed.counts).toEqual({ added: 2, removed: 1, changed: 6 });
    expect(parsed.items).toHaveLength(9);
    expect(parsed.items.find((i) => i.path === '/private')).toMatchObject({ status: 'changed', reasons: ['mode'], before: { type: 'directory' } });
    expect(parsed.items.find((i) => i.path === '/touched.txt')).toMatchObject({ status: 'changed', reasons: ['mode'] });
    expect(parsed.items.find((i) => i.path === '/becomes-link')).toMatchObject({ status: 'changed', reasons: ['type'], before: { type: 'file' }, after: { type: 'symlink' } });
    expect(parsed.items.find((i) => i.path === '/docs/new')).toMatchObject({ status: 'added', after: { type: 'directory', files: 1 } });
  });

  it('says in one line what it cannot compare', async () => {
    expectOneLineError(await kloset(['at', store, 'diff', first, 'ffffffff']), /no snapshot with id ffffffff/);
    expectOneLineError(await kloset(['at', store, 'diff', `${first}:/nowhere`, second]), /\/nowhere: no such file or directory in snapshot/);
    expectOneLineError(await kloset(['at', store, 'diff', first, ':/docs']), /diff needs two snapshot ids/);
  });
});
