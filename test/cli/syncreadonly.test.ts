/**
 * `sync` from a store it cannot write (a disk mounted read-only) copies, as
 * restore reads such a store: without a lock, saying so. The store written
 * to still needs its lock.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latestSnapshotId, tempDir } from '../helpers/cli.js';
import { expectOneLineError, klosetWith } from '../helpers/fixtures.js';

let work: string;
let kloset: ReturnType<typeof klosetWith>;
/** A store with one snapshot, seen through a read-only bind mount. */
let readOnly: string;
let id: string;

beforeAll(async () => {
  work = await tempDir('kloset-syncreadonly-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  const source = path.join(work, 'source');
  await fs.mkdir(source);
  await fs.writeFile(path.join(source, 'a.txt'), 'a\n');
  const store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  id = await latestSnapshotId(store, { XDG_CACHE_HOME: path.join(work, 'cache') });
  readOnly = path.join(work, 'read-only');
  await fs.mkdir(readOnly);
  expect(spawnSync('mount', ['--bind', store, readOnly]).status).toBe(0);
  expect(spawnSync('mount', ['-o', 'remount,bind,ro', readOnly]).status).toBe(0);
});

afterAll(async () => {
  spawnSync('umount', [readOnly]);
  await fs.rm(work, { recursive: true, force: true });
});

const WARNING = /^warning: cannot lock the store \(.*read-only file system\): reading without a lock$/;

describe('a sync from a read-only store', () => {
  it.each([
    ['to', (other: string) => ['at', readOnly, 'sync', 'to', other]],
    ['from', (other: string) => ['at', other, 'sync', 'from', readOnly]],
  ])('copies its snapshots with a warning: sync %s', async (direction, args) => {
    const other = path.join(work, `copy-${direction}`);
    expect((await kloset(['at', other, 'create'])).code).toBe(0);
    const result = await kloset(args(other));
    expect(result.stderr.trimEnd()).toMatch(WARNING);
    expect(result.code).toBe(0);
    expect(await latestSnapshotId(other, { XDG_CACHE_HOME: path.join(work, 'cache') })).toBe(id);
  });

  it('still fails in one line when the read-only store is the one written to', async () => {
    const other = path.join(work, 'copy-back');
    expect((await kloset(['at', other, 'create'])).code).toBe(0);
    const back = await kloset(['at', readOnly, 'sync', 'from', other]);
    expect(back.code).toBe(1);
    expectOneLineError(back, /read-only file system/);
  });
});
