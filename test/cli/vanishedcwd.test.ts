/**
 * Run from a current directory deleted before the command starts (`cd d;
 * rmdir ../d; kloset …`): what names a path relative to it (a store, a
 * source, a passphrase, pattern or log file) is refused in one line, and a
 * command whose paths are all absolute works.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type CliResult } from '../helpers/cli.js';
import { expectOneLineError, klosetWith, storeListing } from '../helpers/fixtures.js';

let work: string;
let store: string;
let source: string;
let kloset: ReturnType<typeof klosetWith>;
let vanished = 0;

beforeAll(async () => {
  work = await tempDir('kloset-vanishedcwd-');
  store = path.join(work, 'store');
  source = path.join(work, 'source');
  await fs.mkdir(path.join(source, 'sub'), { recursive: true });
  await fs.writeFile(path.join(source, 'a.txt'), 'a\n');
  await fs.writeFile(path.join(source, 'sub', 'b.txt'), 'b\n');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
});

afterAll(() => fs.rm(work, { recursive: true, force: true }));

/** The CLI started in a directory that a shell entered and then removed. */
async function fromVanishedDirectory(args: string[]): Promise<CliResult> {
  const gone = path.join(work, `gone-${++vanished}`);
  await fs.mkdir(gone);
  const result = await kloset(args, { through: ['sh', '-c', 'cd "$1" && rmdir "$1" && shift && exec "$@"', 'sh', gone] });
  await expect(fs.access(gone)).rejects.toThrow(/ENOENT/);
  return result;
}

describe('a command run from a deleted current directory', () => {
  it('backs up and restores when every path is absolute', async () => {
    await fs.writeFile(path.join(source, 'sub', 'c.txt'), 'new since the last backup\n');
    const backup = await fromVanishedDirectory(['at', store, 'backup', source]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const target = path.join(work, 'restored');
    const restore = await fromVanishedDirectory(['at', store, 'restore', '-to', target, 'latest']);
    expect(restore.stderr).toBe('');
    expect(restore.code).toBe(0);
    expect(await fs.readFile(path.join(target, 'a.txt'), 'utf8')).toBe('a\n');
    expect(await fs.readFile(path.join(target, 'sub', 'b.txt'), 'utf8')).toBe('b\n');
    expect(await fs.readFile(path.join(target, 'sub', 'c.txt'), 'utf8')).toBe('new since the last backup\n');
  });

  it('lists and prints when every path is absolute', async () => {
    const ls = await fromVanishedDirectory(['at', store, 'ls', 'latest:/sub']);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/ b\.txt$/m);
    const cat = await fromVanishedDirectory(['at', store, 'cat', 'latest:/a.txt']);
    expect(cat.code).toBe(0);
    expect(cat.stdout).toBe('a\n');
  });

  it.each([
    [['at', 'store', 'ls']],
    [['at', '<store>', 'backup', 'source']],
    [['at', '<store>', 'restore', '-to', 'restored', 'latest']],
    [['at', '<store>', 'archive', 'latest']],
    [['--passphrase-file', 'passphrase.txt', 'at', '<store>', 'ls']],
    [['at', '<store>', 'backup', '-exclude-file', 'patterns.txt', '<source>']],
    [['at', '<store>', 'restore', '-to', '<work>/restored-selected', '-include-file', 'patterns.txt', 'latest']],
    [['at', '<store>', 'restore', '-to', '<work>/restored-selected', '-exclude-file', 'patterns.txt', 'latest']],
    [['at', '<store>', 'mount', '-log-file', 'mount.log', '<work>/mountpoint']],
    [['at', '<store>', 'sync', '-peer-passphrase-file', 'passphrase.txt', 'to', '<store>']],
    [['at', '<store>', 'passwd', '-new-passphrase-file', 'passphrase.txt']],
  ])('says in one line that the directory no longer exists for a relative path: %j', async (args) => {
    const before = await storeListing(store);
    const result = await fromVanishedDirectory(args.map((arg) => arg.replace('<store>', store).replace('<source>', source).replace('<work>', work)));
    expect(result.code).toBe(1);
    expectOneLineError(result, /^kloset: the current directory no longer exists$/);
    expect(await storeListing(store)).toEqual(before);
  });

  it('refuses to run a command for -stdin-from-command there', async () => {
    const before = await storeListing(store);
    const result = await fromVanishedDirectory(['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', 'pwd']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /^kloset: -stdin-from-command: the current directory no longer exists$/);
    expect(await storeListing(store)).toEqual(before);
  });
});
