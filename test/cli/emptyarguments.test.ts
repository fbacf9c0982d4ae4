/**
 * An empty argument, as an unset shell variable gives (`at "$STORE"`): it is
 * refused in one line, never taken for the current directory.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latestSnapshotId, tempDir } from '../helpers/cli.js';
import { expectOneLineError, klosetWith, storeListing } from '../helpers/fixtures.js';

let work: string;
let store: string;
let source: string;
let id: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-emptyarguments-');
  store = path.join(work, 'store');
  source = path.join(work, 'source');
  await fs.mkdir(source);
  await fs.writeFile(path.join(source, 'a.txt'), 'a\n');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  id = await latestSnapshotId(store, { XDG_CACHE_HOME: path.join(work, 'cache') });
});

afterAll(() => fs.rm(work, { recursive: true, force: true }));

describe('an empty location', () => {
  it('is refused as a store, exit 2, and no store is made in the current directory', async () => {
    const cwd = path.join(work, 'empty-cwd');
    await fs.mkdir(cwd);
    for (const [args, env] of [
      [['at', '', 'create'], {}],
      [['create'], { KLOSET_REPOSITORY: '' }],
    ] as const) {
      const result = await kloset([...args], { cwd, env });
      expect(result.code).toBe(2);
      expectOneLineError(result, 'kloset: empty store location');
    }
    expect(await fs.readdir(cwd)).toEqual([]);
  });

  it('is refused as the other store of a sync, which is left as it was', async () => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'sync', 'to', ''], { cwd: store });
    expect(result.code).toBe(2);
    expectOneLineError(result, 'kloset: empty store location');
    expect(await storeListing(store)).toEqual(before);
  });

  it('is refused as a source, and nothing is backed up', async () => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'backup', ''], { cwd: source });
    expect(result.code).toBe(2);
    expectOneLineError(result, 'kloset: empty source location');
    expect(await storeListing(store)).toEqual(before);
  });

  it('is refused as a destination, and nothing is restored in the current directory', async () => {
    const cwd = path.join(work, 'restore-cwd');
    await fs.mkdir(cwd);
    const result = await kloset(['at', store, 'restore', '-to', '', id], { cwd });
    expect(result.code).toBe(2);
    expectOneLineError(result, 'kloset: empty destination location');
    expect(await fs.readdir(cwd)).toEqual([]);
  });
});

describe('a pattern with nothing to match', () => {
  it.each([
    [['locate', ''], '""'],
    [['backup', '-exclude', '', '<source>'], '""'],
    [['backup', '-exclude', '/', '<source>'], '"/"'],
    [['restore', '-to', '<work>/never', '-include', '', '<id>'], '""'],
    [['restore', '-to', '<work>/never', '-exclude', '/', '<id>'], '"/"'],
  ])('is a usage error in one line, not an internal error, and nothing is written: %j', async (args, shown) => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, ...args.map((a) => a.replace('<source>', source).replace('<work>', work).replace('<id>', id))]);
    expect(result.code).toBe(2);
    expectOneLineError(result, `kloset: pattern ${shown} names nothing to match`);
    expect(await storeListing(store)).toEqual(before);
    await expect(fs.stat(path.join(work, 'never'))).rejects.toThrow(/ENOENT/);
  });
});

describe('an empty passphrase file name', () => {
  it('is refused rather than passed over for KLOSET_PASSPHRASE', async () => {
    const result = await kloset(['at', store, '--passphrase-file', '', 'ls']);
    expect(result.code).toBe(2);
    expectOneLineError(result, 'kloset: --passphrase-file: empty file name');
    expect(result.stdout).toBe('');
  });

  it('is refused by passwd, which leaves the passphrase as it was instead of taking KLOSET_NEW_PASSPHRASE', async () => {
    const result = await kloset(['at', store, 'passwd', '--new-passphrase-file', ''], { env: { KLOSET_NEW_PASSPHRASE: 'not chosen' } });
    expect(result.code).toBe(2);
    expectOneLineError(result, 'kloset: --new-passphrase-file: empty file name');
    expect((await kloset(['at', store, 'ls'])).code).toBe(0);
  });
});

describe('an empty selection', () => {
  it('is refused, exit 2, rather than read as no selection at all', async () => {
    for (const [args, message] of [
      [['ls', '-tag', ''], 'kloset: -tag "" names no tag'],
      [['info', '-tag', ' , '], 'kloset: -tag " , " names no tag'],
      [['restore', '-to', path.join(work, 'never'), '-tag', ''], 'kloset: -tag "" names no tag'],
      [['ls', '-host', ''], 'kloset: -host "" names no host'],
      [['locate', '-snapshot', '', 'a.txt'], 'kloset: -snapshot "" names no snapshot'],
      [['mount', '-cache-size', '', path.join(work, 'never')], 'kloset: invalid size "" (examples: 512M, 2G, 1048576)'],
    ] as const) {
      const result = await kloset(['at', store, ...args]);
      expect(result.code, args.join(' ')).toBe(2);
      expectOneLineError(result, message);
      expect(result.stdout).toBe('');
    }
    await expect(fs.access(path.join(work, 'never'))).rejects.toThrow();
  });
});
