/**
 * A file whose mtime is before 1970 (an old archive's member, a clock reset
 * to zero and back) keeps that time: the listing and a tar archive show it,
 * tar extracts it, to the nanosecond the file had, and a restore sets it (to
 * the microsecond, as every restored time), on a symlink and a directory too.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

const run = promisify(execFile);
/** Half a second into 1960: seconds before 1970 and a fraction, which a timespec keeps positive. */
const OLD = '1960-01-01 00:00:00.5 UTC';
const OLD_NS = -315619199500000000n;

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-before1970-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache'), TZ: 'UTC' });
  await fs.mkdir(source);
  await fs.writeFile(path.join(source, 'old.txt'), 'from 1960\n');
  await fs.symlink('old.txt', path.join(source, 'old-link'));
  await fs.mkdir(path.join(source, 'old-dir'));
  await run('touch', ['-h', '-d', OLD, path.join(source, 'old.txt'), path.join(source, 'old-link'), path.join(source, 'old-dir')]);
  expect((await fs.stat(path.join(source, 'old.txt'), { bigint: true })).mtimeNs).toBe(OLD_NS);
  expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
  const backup = await kloset(['at', store, 'backup', source]);
  expect(backup.stderr).toBe('');
  expect(backup.code).toBe(0);
}, 60_000);

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a file from before 1970', () => {
  it('is listed at its time', async () => {
    const listed = await kloset(['at', store, 'ls', 'latest:']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/ 1960-01-01 00:00:00 old\.txt\n/);
  });

  it('is extracted from a tar archive at its time', async () => {
    const file = path.join(work, 'old.tar');
    const archived = await kloset(['at', store, 'archive', '-output', file, 'latest']);
    expect(archived.code).toBe(0);
    const out = path.join(work, 'extracted');
    await fs.mkdir(out);
    // GNU tar warns of an "implausibly old time stamp", and sets it.
    await run('tar', ['-xf', file, '-C', out]);
    expect((await fs.stat(path.join(out, 'old.txt'), { bigint: true })).mtimeNs).toBe(OLD_NS);
  }, 60_000);

  it('is restored at its time, as are a symlink and a directory', async () => {
    const target = path.join(work, 'restored');
    const restored = await kloset(['at', store, 'restore', '-to', target, 'latest']);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    for (const name of ['old.txt', 'old-link', 'old-dir']) {
      expect((await fs.lstat(path.join(target, name), { bigint: true })).mtimeNs, name).toBe(OLD_NS);
    }
  }, 60_000);
});
