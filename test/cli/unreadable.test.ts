/**
 * A file the user cannot read does not stop a backup: it is named in a
 * warning, counted in the summary, and the exit code (3) says the snapshot is
 * partial. Tests run as root, who can read anything, so kloset runs here as
 * nobody (uid 65534).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, tempDir } from '../helpers/cli.js';
import { describeTree, expectNoStackTrace, klosetWith } from '../helpers/fixtures.js';

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

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
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
