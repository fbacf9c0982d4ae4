/**
 * `restore -to DIR id:/path` of one entry that is not a directory: the
 * target is made as it is for a regular file, whatever the entry is. A
 * snapshot of a single file, restored whole, comes back the same way.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-restoreone-');
  const source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(source);
  await fs.writeFile(path.join(source, 'plain.txt'), 'a file\n');
  await fs.symlink('/etc/hostname', path.join(source, 'link'));
  execFileSync('mkfifo', [path.join(source, 'queue')]);
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
}, 60_000);

afterAll(() => fs.rm(work, { recursive: true, force: true }));

describe('a restore of one entry into a directory that does not exist yet', () => {
  it('makes the directory for a file, a symlink and a FIFO alike', async () => {
    for (const [name, check] of [
      ['plain.txt', (s: import('node:fs').Stats) => s.isFile()],
      ['link', (s: import('node:fs').Stats) => s.isSymbolicLink()],
      ['queue', (s: import('node:fs').Stats) => s.isFIFO()],
    ] as const) {
      const target = path.join(work, `restored-${name}`, 'below');
      const result = await kloset(['at', store, 'restore', '-to', target, `latest:/${name}`]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(check(await fs.lstat(path.join(target, name)))).toBe(true);
    }
    expect(await fs.readlink(path.join(work, 'restored-link', 'below', 'link'))).toBe('/etc/hostname');
  }, 60_000);
});

describe('a restore of one entry that cannot be written', () => {
  it('names the entry by its path in the snapshot', async () => {
    for (const name of ['plain.txt', 'link']) {
      const target = path.join(work, `blocked-${name}`);
      // A directory with entries in the way, which a restore keeps.
      await fs.mkdir(path.join(target, name), { recursive: true });
      await fs.writeFile(path.join(target, name, 'kept'), 'kept\n');
      const result = await kloset(['at', store, 'restore', '-to', target, `latest:/${name}`]);
      expect(result.stderr).toBe(`warning: /${name}: ${path.join(target, name)}: a directory that is not empty is in the way\n`);
      expect(result.code).toBe(3);
    }
  }, 60_000);
});

describe('a restore of a snapshot of a single file', () => {
  let singleStore: string;

  beforeAll(async () => {
    // The file's directory has a mode and times of its own, which the snapshot records as its root's.
    const directory = path.join(work, 'single', 'dir');
    await fs.mkdir(directory, { recursive: true });
    await fs.writeFile(path.join(directory, 'file.txt'), 'the one file\n');
    await fs.chmod(path.join(directory, 'file.txt'), 0o640);
    await fs.chmod(directory, 0o1777);
    await fs.utimes(directory, 1_000_000_000, 1_000_000_000);
    singleStore = path.join(work, 'single-store');
    expect((await kloset(['at', singleStore, 'create'])).code).toBe(0);
    expect((await kloset(['at', singleStore, 'backup', path.join(directory, 'file.txt')])).code).toBe(0);
  }, 60_000);

  it("leaves the mode of a target that existed as it was, and gives it nothing of the file's directory", async () => {
    const target = path.join(work, 'single-existing');
    await fs.mkdir(target);
    await fs.chmod(target, 0o755);
    const result = await kloset(['at', singleStore, 'restore', '-to', target, 'latest']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const after = await fs.stat(target);
    expect(after.mode & 0o7777).toBe(0o755);
    // Changed by the file written into it, as any directory's is.
    expect(after.mtimeMs).not.toBe(1_000_000_000_000);
    expect(await fs.readdir(target)).toEqual(['file.txt']);
    expect((await fs.stat(path.join(target, 'file.txt'))).mode & 0o7777).toBe(0o640);
  }, 60_000);

  it("makes a missing target as for a restore of one file, not with the mode of the file's directory", async () => {
    const target = path.join(work, 'single-made');
    const result = await kloset(['at', singleStore, 'restore', '-to', target, 'latest']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const made = await fs.stat(target);
    expect(made.mode & 0o7777).toBe(0o700);
    expect(made.mtimeMs).not.toBe(1_000_000_000_000);
    expect(await fs.readFile(path.join(target, 'file.txt'), 'utf8')).toBe('the one file\n');
    // The same as a restore of the file by its path.
    const byPath = path.join(work, 'single-by-path');
    expect((await kloset(['at', singleStore, 'restore', '-to', byPath, 'latest:/file.txt'])).code).toBe(0);
    expect((await fs.stat(byPath)).mode & 0o7777).toBe(made.mode & 0o7777);
  }, 60_000);
});
