/**
 * A full disk, under the store or under a restore, is an error the user
 * can read, and costs nothing already stored: no snapshot half made, no
 * part of a blob left behind, no file half restored. The disks are small
 * tmpfs mounts (the suite runs as root, as on CI).
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { MiB, describeTree, expectOneLineError, klosetWith, sha256File, writeRandomFile } from '../helpers/fixtures.js';

let work: string;
let kloset: ReturnType<typeof klosetWith>;
const mounted: string[] = [];

async function smallDisk(name: string, size: string): Promise<string> {
  const dir = path.join(work, name);
  await fs.mkdir(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  mounted.push(dir);
  return dir;
}

async function filesUnder(dir: string): Promise<string[]> {
  return (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

beforeAll(async () => {
  work = await tempDir('kloset-diskfull-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
});

afterAll(async () => {
  for (const dir of mounted.reverse()) execFileSync('umount', [dir]);
  await fs.rm(work, { recursive: true, force: true });
});

describe('a store whose disk fills up', () => {
  let disk: string;
  let store: string;
  let big: string;

  beforeAll(async () => {
    disk = await smallDisk('store-disk', '24m');
    store = path.join(disk, 'store');
    const small = path.join(work, 'small');
    big = path.join(work, 'big');
    await fs.mkdir(small);
    await fs.mkdir(big);
    await fs.writeFile(path.join(small, 'note.txt'), 'kept\n');
    await writeRandomFile(path.join(big, 'a.bin'), 20 * MiB);
    await writeRandomFile(path.join(big, 'b.bin'), 20 * MiB);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', small])).code).toBe(0);
  });

  it('stops the backup with one line naming the store and the reason, and creates no snapshot', async () => {
    const result = await kloset(['at', store, 'backup', big]);
    expectOneLineError(result, /^kloset: .*\/store: cannot write packs\/\S+: no space left on device; the backup stopped and created no snapshot$/);
    expect(result.code).toBe(1);
    const listed = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { source: string }[];
    expect(listed.map((s) => path.basename(s.source))).toEqual(['small']);
  });

  it('leaves no part of a blob on the disk, and a store that passes check', async () => {
    expect((await filesUnder(store)).filter((f) => f.includes('.tmp-'))).toEqual([]);
    const checked = await kloset(['at', store, 'check']);
    expect(checked.stdout).toMatch(/no problems found/);
    expect(checked.code).toBe(0);
  });

  it('takes the same backup once there is room, and restores it byte for byte', async () => {
    execFileSync('mount', ['-o', 'remount,size=128m', disk]);
    expect((await kloset(['at', store, 'backup', big])).code).toBe(0);
    const target = path.join(work, 'restored-big');
    expect((await kloset(['at', store, 'restore', '-to', target])).code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(big));
  });
});

describe('a store on a disk already full', () => {
  it('makes rm and prune, which need a lock before they give space back, say where the way out is', async () => {
    const disk = await smallDisk('full-disk', '2m');
    const store = path.join(disk, 'store');
    const source = path.join(work, 'full-source');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'note.txt'), 'one\n');
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    // Filled to the last block, as a disk is that another program filled.
    await fs.writeFile(path.join(disk, 'filler'), Buffer.alloc(0));
    await expect(fs.appendFile(path.join(disk, 'filler'), Buffer.alloc(4 * MiB))).rejects.toThrow(/ENOSPC/);
    for (const args of [['rm', '--keep-last', '1'], ['prune']]) {
      const result = await kloset(['at', store, ...args]);
      expect(result.code, args[0]).toBe(1);
      expectOneLineError(result, new RegExp(`^kloset: .*/store: no space left for ${args[0]}'s lock, .*: free some space on that disk first$`));
    }
    await fs.rm(path.join(disk, 'filler'));
    expect((await kloset(['at', store, 'rm', '--keep-last', '1'])).code).toBe(0);
  });
});

describe('a restore whose disk fills up', () => {
  it('names each file that did not fit, ends partial, and leaves only whole files', async () => {
    const source = path.join(work, 'five');
    const store = path.join(work, 'five-store');
    await fs.mkdir(source);
    for (let i = 1; i <= 5; i++) await writeRandomFile(path.join(source, `part-${i}.bin`), 3 * MiB);
    await fs.writeFile(path.join(source, 'small.txt'), 'small\n');
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);

    const disk = await smallDisk('restore-disk', '7m');
    const result = await kloset(['at', store, 'restore', '-to', disk]);
    expect(result.code).toBe(3);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    // Parts are written side by side: small.txt too may come while they hold the last of the disk.
    const failed = [...result.stderr.matchAll(/^warning: \/(part-\d\.bin|small\.txt): .*no space left on device/gm)].map((m) => m[1]);
    expect(failed.length).toBeGreaterThan(0);
    expect(result.stdout).toMatch(new RegExp(`, ${failed.length} errors\\n$`));
    const restored = (await fs.readdir(disk)).sort();
    expect(restored.filter((name) => failed.includes(name))).toEqual([]);
    expect(restored.length + failed.length).toBe(6);
    for (const name of restored) expect(await sha256File(path.join(disk, name))).toBe(await sha256File(path.join(source, name)));
  });
});
