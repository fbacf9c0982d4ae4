/** backup -one-file-system (-x) keeps a mount point below the source as an empty directory, as restic -x and tar do. */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

let work: string;
let source: string;
let mountPoint: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-onefs-');
  source = path.join(work, 'source');
  mountPoint = path.join(source, 'mnt');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(path.join(source, 'here'), { recursive: true });
  await fs.mkdir(mountPoint);
  await fs.writeFile(path.join(source, 'here', 'local.txt'), 'on the source file system\n');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0750', 'tmpfs', mountPoint]);
  await fs.mkdir(path.join(mountPoint, 'sub'));
  await fs.writeFile(path.join(mountPoint, 'sub', 'elsewhere.txt'), 'on another file system\n');
});

afterAll(async () => {
  execFileSync('umount', [mountPoint]);
  await fs.rm(work, { recursive: true, force: true });
});

async function listing(store: string): Promise<string[]> {
  const result = await kloset(['at', store, 'ls', '-R', '--json', ':/']);
  expect(result.code).toBe(0);
  return (JSON.parse(result.stdout) as { name: string }[]).map((e) => e.name).sort();
}

describe('backup -one-file-system', () => {
  it('goes into mount points by default', async () => {
    const store = path.join(work, 'store-all');
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    expect(await listing(store)).toEqual(['here', 'here/local.txt', 'mnt', 'mnt/sub', 'mnt/sub/elsewhere.txt']);
  });

  it('with -x, records the mount point with its mode and nothing below it, and restores it so', async () => {
    const store = path.join(work, 'store-x');
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    const backup = await kloset(['at', store, 'backup', '-x', source]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(await listing(store)).toEqual(['here', 'here/local.txt', 'mnt']);
    const target = path.join(work, 'restored');
    expect((await kloset(['at', store, 'restore', '-to', target])).code).toBe(0);
    expect(await fs.readdir(path.join(target, 'mnt'))).toEqual([]);
    expect((await fs.stat(path.join(target, 'mnt'))).mode & 0o777).toBe(0o750);
    expect(await fs.readFile(path.join(target, 'here', 'local.txt'), 'utf8')).toBe('on the source file system\n');
  });
});
