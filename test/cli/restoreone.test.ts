/**
 * `restore -to DIR id:/path` of one entry that is not a directory: the
 * target is made as it is for a regular file, whatever the entry is.
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
