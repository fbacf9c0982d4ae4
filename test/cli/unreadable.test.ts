/**
 * A file the user cannot read does not stop a backup: it is named in a
 * warning, counted in the summary, and the exit code (3) says the snapshot is
 * partial. Tests run as root, who can read anything, so kloset runs here as
 * nobody (uid 65534).
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, tempDir } from '../helpers/cli.js';
import { describeTree, expectNoStackTrace, expectOneLineError, klosetWith, storeListing } from '../helpers/fixtures.js';

const NOBODY = { uid: 65534, gid: 65534 };

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
let backup: CliResult;

beforeAll(async () => {
  work = await tempDir('kloset-unreadable-');
  await fs.chmod(work, 0o777);
  const home = path.join(work, 'home');
  await fs.mkdir(home);
  await fs.chown(home, NOBODY.uid, NOBODY.gid);
  kloset = klosetWith({ HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), XDG_CONFIG_HOME: path.join(home, '.config') });

  // Owned by root, readable by all but one file.
  source = path.join(work, 'source');
  await fs.mkdir(path.join(source, 'docs'), { recursive: true });
  await fs.writeFile(path.join(source, 'readme.txt'), 'readable\n');
  await fs.writeFile(path.join(source, 'docs/guide.txt'), 'also readable\n');
  await fs.writeFile(path.join(source, 'docs/secret.txt'), 'root only\n');
  await fs.chmod(path.join(source, 'docs/secret.txt'), 0o000);
  for (const dir of [source, path.join(source, 'docs')]) await fs.chmod(dir, 0o755);
  for (const file of ['readme.txt', 'docs/guide.txt']) await fs.chmod(path.join(source, file), 0o644);

  store = path.join(work, 'store');
  const created = await kloset(['at', store, 'create'], NOBODY);
  expect(created.stderr).toBe('');
  expect(created.code).toBe(0);
  backup = await kloset(['at', store, 'backup', source], NOBODY);
});

afterAll(() => {
  // rm walks down with openat: the tree holds a path too long for fs.rm.
  execFileSync('rm', ['-rf', work]);
});

describe('a backup with an unreadable file', () => {
  it('exits with 3, partial', () => {
    expect(backup.code).toBe(3);
  });

  it('prints a warning line naming the unreadable file', () => {
    const warnings = backup.stderr.split('\n').filter((line) => line !== '');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^warning: \/docs\/secret\.txt: permission denied$/);
    expectNoStackTrace(backup);
  });

  it('counts 1 error in its summary', () => {
    expect(backup.stdout).toMatch(/created snapshot [0-9a-f]{8} /);
    expect(backup.stdout).toMatch(/, 1 errors?\b/);
  });

  it('keeps every other file in the snapshot', async () => {
    const result = await kloset(['at', store, 'ls', '-R', ':/'], NOBODY);
    expect(result.code).toBe(0);
    const names = result.stdout.trim().split('\n').map((line) => line.split(' ').pop());
    expect(names).toEqual(['docs/', 'docs/guide.txt', 'readme.txt']);
  });

  it('restores the other files exactly', async () => {
    const target = path.join(work, 'restored');
    const result = await kloset(['at', store, 'restore', '-to', target], NOBODY);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const expected = await describeTree(source);
    delete expected['docs/secret.txt'];
    const restored = await describeTree(target);
    // The directory's mtime is the source's; its restored content differs by the missing file only.
    expect(restored).toEqual(expected);
  });
});

describe('a backup of a directory the user cannot read', () => {
  it('fails in one line that says why, and creates no snapshot', async () => {
    const closed = path.join(work, 'closed');
    await fs.mkdir(closed, { mode: 0o700 });
    const before = await storeListing(path.join(store, 'snapshots'));
    const result = await kloset(['at', store, 'backup', closed], NOBODY);
    expect(result.code).toBe(1);
    expectOneLineError(result, `kloset: ${closed}: cannot read the directory: permission denied`);
    expect(await storeListing(path.join(store, 'snapshots'))).toEqual(before);
  });
});

describe('a backup of an entry whose path is longer than the system takes', () => {
  let result: CliResult;
  let odd: string;
  let oddStore: string;
  /** The directory holding a child whose full path is longer than the system allows. */
  let deep: string;

  beforeAll(async () => {
    odd = path.join(work, 'odd-source');
    await fs.mkdir(odd);
    await fs.writeFile(path.join(odd, 'fine.txt'), 'kept\n');
    await fs.writeFile(path.join(odd, 'zz-after.txt'), 'kept too\n');
    // 3,860 to 3,960 bytes of directories, then a name that takes the path past PATH_MAX (4096).
    const level = 'd'.repeat(98);
    deep = odd;
    for (let i = 0; deep.length < 3_860; i++) deep = path.join(deep, `${i % 10}${level}`);
    await fs.mkdir(deep, { recursive: true });
    await fs.writeFile(path.join(deep, 'short.txt'), 'beside a name too long\n');
    // Created relative to its directory: its full path is too long for the system to take.
    execFileSync('sh', ['-c', `cd "$1" && echo too long > "$2"`, 'sh', deep, 'n'.repeat(250)]);
    oddStore = path.join(work, 'odd-store');
    expect((await kloset(['at', oddStore, 'create'])).code).toBe(0);
    result = await kloset(['at', oddStore, 'backup', odd]);
  });

  it('names it in a warning, counts it, says partial, and keeps every sibling', async () => {
    const warnings = result.stderr.split('\n').filter((line) => line !== '');
    expect(warnings).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^warning: \/.*\/n{250}: ENAMETOOLONG/),
      ]),
    );
    expect(warnings).toHaveLength(1);
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/, 1 error\b/);
    const listed = await kloset(['at', oddStore, 'ls', '-R', ':/']);
    const names = listed.stdout.trim().split('\n').map((line) => line.split(' ').pop()!);
    expect(names).toContain('fine.txt');
    expect(names).toContain('zz-after.txt');
    expect(names.some((name) => name.endsWith('/short.txt'))).toBe(true);
  });
});

describe('a store whose files the user cannot read', () => {
  it('names the store and the file in one line', async () => {
    const config = path.join(store, 'CONFIG');
    await fs.chmod(config, 0o000);
    try {
      const result = await kloset(['at', store, 'ls'], NOBODY);
      expect(result.code).toBe(1);
      expectOneLineError(result, `kloset: ${store}: cannot read CONFIG: permission denied`);
    } finally {
      await fs.chmod(config, 0o600);
    }
  });
});
