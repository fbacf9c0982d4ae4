/**
 * A damaged pack costs the mount the files whose chunks it holds, and only
 * those: reading one fails with EIO and a log line naming it, every other
 * file reads correctly, and the mount stays up.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { flipByte, klosetWith, MiB, packFiles, sha256File, writeRandomFile } from '../helpers/fixtures.js';
import { isMountPoint, mountCli, trackMount, unmountAll, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);

let work: string;
let source: string;
let store: string;
let id: string;
let kloset: ReturnType<typeof klosetWith>;
const env: NodeJS.ProcessEnv = {};

/** EIO or whatever else a read failed with, or 'ok'. */
async function readCode(file: string): Promise<string> {
  return fs.readFile(file).then(
    () => 'ok',
    (err: NodeJS.ErrnoException) => err.code ?? String(err),
  );
}

/**
 * A.bin is backed up alone first, so the packs of that backup hold only its
 * chunks (and the first snapshot's small tree); B.bin then joins it in a
 * second snapshot, its chunks in new packs. A byte in the middle of A's
 * largest pack is flipped: it lands in one of A's chunks.
 */
beforeAll(async () => {
  work = await tempDir('kloset-mount-damage-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  env.XDG_CACHE_HOME = path.join(work, 'cache');
  env.KLOSET_PASSPHRASE = 'test passphrase';
  kloset = klosetWith(env);
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'A.bin'), 6 * MiB);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  const packsOfA = await packFiles(store);
  await writeRandomFile(path.join(source, 'B.bin'), 5 * MiB);
  await fs.writeFile(path.join(source, 'small.txt'), 'small and intact\n');
  const second = await kloset(['at', store, 'backup', source]);
  expect(second.code, second.stderr).toBe(0);
  id = /created snapshot ([0-9a-f]{8})/.exec(second.stdout)![1];
  const largest = packsOfA.sort((a, b) => b.size - a.size)[0];
  expect(largest.size).toBeGreaterThan(5 * MiB);
  await flipByte(largest.file);
});

afterAll(async () => {
  await unmountAll();
  await fs.rm(work, { recursive: true, force: true });
});

describe('a mounted snapshot with a byte flipped in one pack', () => {
  let mnt: string;
  let mount: MountedCli;

  beforeAll(async () => {
    mnt = path.join(work, 'mnt');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt, [id], { env });
  });

  afterAll(async () => {
    await mount?.stop();
  });

  it('fails reading the damaged file with EIO', async () => {
    expect(await readCode(path.join(mnt, 'A.bin'))).toBe('EIO');
  });

  it('still lists and stats the damaged file: only its content is lost', async () => {
    expect((await fs.readdir(mnt)).sort()).toEqual(['A.bin', 'B.bin', 'small.txt']);
    expect((await fs.stat(path.join(mnt, 'A.bin'))).size).toBe(6 * MiB);
  });

  it('reads the other files with their exact bytes', async () => {
    expect(await sha256File(path.join(mnt, 'B.bin'))).toBe(await sha256File(path.join(source, 'B.bin')));
    expect(await fs.readFile(path.join(mnt, 'small.txt'), 'utf8')).toBe('small and intact\n');
  });

  it('fails the damaged file again on a second try, without hanging', async () => {
    const started = Date.now();
    expect(await readCode(path.join(mnt, 'A.bin'))).toBe('EIO');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('stays up, then unmounts cleanly with the read errors logged by file name', async () => {
    expect(await isMountPoint(mnt)).toBe(true);
    expect(await fs.readFile(path.join(mnt, 'small.txt'), 'utf8')).toBe('small and intact\n');
    const result = await mount.stop();
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/^kloset: mount: \/A\.bin: .+/m);
    expect(result.stderr).not.toMatch(/B\.bin|small\.txt/);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stdout).toMatch(/^unmounted .*, \d+ read errors$/m);
    expect(await isMountPoint(mnt)).toBe(false);
  });
});

describe('a background mount with --log-file', () => {
  it('appends the read errors to the file, by file name and with the time', async () => {
    const mnt = path.join(work, 'mnt-background');
    await fs.mkdir(mnt);
    const logFile = path.join(work, 'mount.log');
    const started = await kloset(['at', store, 'mount', '--log-file', logFile, '--background', mnt, id]);
    const pid = /\(pid (\d+)\)/.exec(started.stdout)?.[1];
    if (pid) trackMount(mnt, Number(pid));
    expect(started.code, started.stderr).toBe(0);
    expect(await readCode(path.join(mnt, 'A.bin'))).toBe('EIO');
    expect(await readCode(path.join(mnt, 'B.bin'))).toBe('ok');
    await run('fusermount', ['-u', mnt]);
    const log = await fs.readFile(logFile, 'utf8');
    expect(log).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \/A\.bin: .+$/m);
    expect(log).not.toMatch(/B\.bin/);
    expect((await fs.stat(logFile)).mode & 0o777).toBe(0o600);
  });

  it('refuses a log file it cannot write, in one line, and mounts nothing', async () => {
    const mnt = path.join(work, 'mnt-no-log');
    await fs.mkdir(mnt);
    const result = await kloset(['at', store, 'mount', '--log-file', path.join(work, 'missing-dir', 'mount.log'), '--background', mnt, id]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^kloset: .*missing-dir\/mount\.log: cannot write the log: .+\n$/);
    expect(await isMountPoint(mnt)).toBe(false);
  });
});
