/**
 * A restore into a target that holds other things under the snapshot's
 * names, as GNU tar extracts: a file or a symlink where the snapshot has a
 * directory is replaced by it (the symlink never followed), an empty
 * directory where it has a file, a symlink or a FIFO is replaced by that,
 * and only a directory with entries in the way is named in a warning.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { expectNoStackTrace, klosetWith } from '../helpers/fixtures.js';

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-restoreconflicts-');
  const source = path.join(work, 'source');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(path.join(source, 'was-file'), { recursive: true });
  await fs.writeFile(path.join(source, 'was-file', 'inner.txt'), 'inner\n');
  await fs.mkdir(path.join(source, 'was-link'));
  await fs.writeFile(path.join(source, 'was-link', 'inner.txt'), 'inner\n');
  await fs.writeFile(path.join(source, 'was-empty-dir'), 'file\n');
  await fs.symlink('was-file', path.join(source, 'link-was-empty-dir'));
  execFileSync('mkfifo', [path.join(source, 'fifo-was-empty-dir')]);
  await fs.writeFile(path.join(source, 'was-full-dir'), 'file\n');
  expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
  const backup = await kloset(['at', store, 'backup', source]);
  expect(backup.stderr).toBe('');
  expect(backup.code).toBe(0);
}, 60_000);

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a restore over entries of another type', () => {
  it('replaces them as tar does, and names the directory with entries it keeps', async () => {
    const target = path.join(work, 'target');
    const outside = path.join(work, 'outside');
    await fs.mkdir(outside);
    await fs.mkdir(path.join(target, 'was-full-dir'), { recursive: true });
    await fs.writeFile(path.join(target, 'was-full-dir', 'keep.txt'), 'kept\n');
    await fs.writeFile(path.join(target, 'was-file'), 'a file in the way\n');
    await fs.symlink(outside, path.join(target, 'was-link'));
    for (const name of ['was-empty-dir', 'link-was-empty-dir', 'fifo-was-empty-dir']) await fs.mkdir(path.join(target, name));

    const result = await kloset(['at', store, 'restore', '-to', target, 'latest']);
    expectNoStackTrace(result);
    expect(result.stderr.split('\n').filter(Boolean)).toEqual([
      `warning: /was-full-dir: ${path.join(target, 'was-full-dir')}: a directory that is not empty is in the way`,
    ]);
    expect(result.code).toBe(3);

    for (const dir of ['was-file', 'was-link']) {
      expect((await fs.lstat(path.join(target, dir))).isDirectory(), dir).toBe(true);
      expect(await fs.readFile(path.join(target, dir, 'inner.txt'), 'utf8')).toBe('inner\n');
    }
    expect(await fs.readdir(outside)).toEqual([]);
    expect(await fs.readFile(path.join(target, 'was-empty-dir'), 'utf8')).toBe('file\n');
    expect(await fs.readlink(path.join(target, 'link-was-empty-dir'))).toBe('was-file');
    expect((await fs.lstat(path.join(target, 'fifo-was-empty-dir'))).isFIFO()).toBe(true);
    expect(await fs.readFile(path.join(target, 'was-full-dir', 'keep.txt'), 'utf8')).toBe('kept\n');
  }, 60_000);

  it('names what it keeps by its path in the snapshot, however the path restored was typed', async () => {
    const target = path.join(work, 'typed');
    await fs.mkdir(path.join(target, 'inner.txt'), { recursive: true });
    await fs.writeFile(path.join(target, 'inner.txt', 'keep.txt'), 'kept\n');
    for (const typed of ['latest:/was-link/../was-file', 'latest:was-file//', 'latest://was-file/./inner.txt']) {
      const result = await kloset(['at', store, 'restore', '-to', target, typed]);
      expect(result.stderr, typed).toBe(`warning: /was-file/inner.txt: ${path.join(target, 'inner.txt')}: a directory that is not empty is in the way\n`);
      expect(result.code).toBe(3);
    }
  });
});
