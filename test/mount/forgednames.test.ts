/**
 * A forged snapshot can hold names no directory can: '.', '..', a name with
 * a '/' or a NUL in it. The mount leaves them out of its listings, naming
 * each directory once in its log, as restore leaves them out with a
 * warning: the kernel gets no name it would refuse (a '/' fails the whole
 * listing), show twice ('.', '..') or cut short (a NUL), and no such name
 * is found by a path, so `ls -la`, `find` and `cp -r` of the mount work and
 * read nothing from above or beside the directory they walk.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { describeTree } from '../helpers/fixtures.js';
import { ForgedImporter, type Tree } from '../helpers/forged.js';
import { mountCli, storeWithSnapshot, unmountAll, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);

const TREE: Tree = {
  '.': 'a file named dot\n',
  '..': { 'escaped.txt': 'above the directory\n' },
  'nul\0name': 'cut at its NUL, it would be nul\n',
  'plain.txt': 'plain\n',
  sub: { '..': { 'planted.txt': 'planted through sub/..\n' }, 'kept.txt': 'kept\n' },
  // One name, in the root: not the entry forged.txt of sub.
  'sub/forged.txt': 'not in sub\n',
};

let work: string;
let mnt: string;
let mount: MountedCli;

/** `ls -a`, one name a line, in the order the directory gives them (-f: unsorted). */
async function lsAll(dir: string): Promise<string[]> {
  const { stdout } = await run('ls', ['-a', '-f', '-1', dir]);
  return stdout.split('\n').filter(Boolean);
}

/** Every file under `dir` that came from behind a forged name, wherever it landed. */
async function landed(dir: string): Promise<string[]> {
  const found = await fs.readdir(dir, { recursive: true });
  return found.filter((rel) => ['escaped.txt', 'planted.txt', 'forged.txt', 'nul'].includes(path.basename(rel))).sort();
}

describe('a mounted snapshot with names no directory can hold', () => {
  beforeAll(async () => {
    work = await tempDir('kloset-mount-forged-');
    const store = path.join(work, 'store');
    const id = await storeWithSnapshot(store, new ForgedImporter(TREE));
    mnt = path.join(work, 'mnt');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt, [id]);
  }, 60_000);

  afterAll(async () => {
    await mount?.stop();
    await unmountAll();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('lists each directory without them: ls -la shows . and .. once, and no name is refused or cut short', async () => {
    expect((await lsAll(mnt)).sort()).toEqual(['.', '..', 'plain.txt', 'sub']);
    expect((await lsAll(path.join(mnt, 'sub'))).sort()).toEqual(['.', '..', 'kept.txt']);
    const { stdout } = await run('ls', ['-la', mnt]);
    expect(stdout.split('\n').filter((line) => / \.\.?$/.test(line))).toHaveLength(2);
  });

  it('finds no forged entry by a path, even once its directory is listed', async () => {
    await fs.readdir(mnt).catch(() => undefined);
    await expect(fs.readFile(path.join(mnt, 'sub/forged.txt'), 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fs.stat(path.join(mnt, 'nul'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fs.readFile(path.join(mnt, 'sub/kept.txt'), 'utf8')).toBe('kept\n');
    expect(await fs.readFile(path.join(mnt, 'plain.txt'), 'utf8')).toBe('plain\n');
  });

  it('lets find and cp -r walk the mount, reaching nothing outside it', async () => {
    const { stdout } = await run('find', [mnt]);
    expect(stdout.split('\n').filter(Boolean).map((p) => path.relative(mnt, p)).sort()).toEqual(['', 'plain.txt', 'sub', 'sub/kept.txt']);
    const around = path.join(work, 'around');
    await fs.mkdir(around);
    await run('cp', ['-r', mnt, path.join(around, 'copy')]);
    expect(await fs.readdir(around)).toEqual(['copy']);
    expect(Object.keys(await describeTree(path.join(around, 'copy'))).sort()).toEqual(['.', 'plain.txt', 'sub', 'sub/kept.txt']);
    expect(await landed(work)).toEqual([]);
  });

  it('names each directory once in its log, with the names it leaves out', async () => {
    await lsAll(mnt);
    await lsAll(path.join(mnt, 'sub'));
    expect(mount.stderr().split('\n').filter(Boolean)).toEqual([
      'kloset: mount: /: invalid names ".", "..", "nul\\u0000name", "sub/forged.txt", left out',
      'kloset: mount: /sub: invalid name "..", left out',
    ]);
  });
});
