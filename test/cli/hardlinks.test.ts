/**
 * A file with several names (hard links) comes back as one file with those
 * names, as tar and restic give it back, within what the restore writes.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-hardlinks-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  source = path.join(work, 'source');
  for (const dir of ['a', 'b', 'c']) await fs.mkdir(path.join(source, dir), { recursive: true });
  await fs.writeFile(path.join(source, 'a/data.bin'), Buffer.alloc(300_000, 7));
  await fs.link(path.join(source, 'a/data.bin'), path.join(source, 'a/alias.bin'));
  await fs.link(path.join(source, 'a/data.bin'), path.join(source, 'b/other-name.bin'));
  await fs.writeFile(path.join(source, 'c/small.txt'), 'small\n');
  await fs.link(path.join(source, 'c/small.txt'), path.join(source, 'c/small-too.txt'));
  await fs.writeFile(path.join(source, 'c/solo.txt'), 'solo\n');
  store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  const backup = await kloset(['at', store, 'backup', source]);
  expect(backup.stderr).toBe('');
  expect(backup.code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('hard links', () => {
  it('are restored as links: one inode per file, whatever its number of names', async () => {
    const target = path.join(work, 'restored');
    const result = await kloset(['at', store, 'restore', '-to', target]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const stat = (rel: string) => fs.stat(path.join(target, rel));
    const [data, alias, other] = await Promise.all(['a/data.bin', 'a/alias.bin', 'b/other-name.bin'].map(stat));
    expect(data.nlink).toBe(3);
    expect(new Set([data.ino, alias.ino, other.ino]).size).toBe(1);
    expect((await fs.readFile(path.join(target, 'b/other-name.bin'))).equals(Buffer.alloc(300_000, 7))).toBe(true);
    expect((await stat('c/small.txt')).ino).toBe((await stat('c/small-too.txt')).ino);
    expect((await stat('c/solo.txt')).nlink).toBe(1);
    expect(await fs.readFile(path.join(target, 'c/small-too.txt'), 'utf8')).toBe('small\n');
  });

  it('leave a name restored without its other names as a file of its own', async () => {
    const target = path.join(work, 'restored-b');
    const result = await kloset(['at', store, 'restore', '-to', target, ':/b']);
    expect(result.code).toBe(0);
    const other = await fs.stat(path.join(target, 'other-name.bin'));
    expect(other.nlink).toBe(1);
    expect(other.size).toBe(300_000);
  });
});
