/**
 * A lazy unmount (`fusermount -uz`, `umount -l`) detaches the mount point at
 * once, and, as on any file system, files already open in it stay readable
 * until closed: the mount keeps serving them, and exits once the last one is.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { MiB, writeRandomFile } from '../helpers/fixtures.js';
import { endMountOf, isMountPoint, mountSnapshotOf, processGone, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);
const FILE_SIZE = 24 * MiB;
/** Read before the unmount: far less than the file, so the rest is not in the kernel's page cache yet. */
const FIRST = 64 * 1024;

let work: string;
let source: string;
let mnt: string;
let mount: MountedCli;

describe('a mount lazily unmounted while a file in it is open', () => {
  beforeAll(async () => {
    work = await tempDir('kloset-mount-lazy-');
    source = path.join(work, 'source');
    await fs.mkdir(source);
    await writeRandomFile(path.join(source, 'big.bin'), FILE_SIZE);
    ({ mnt, mount } = await mountSnapshotOf(work, source));
  }, 60_000);

  afterAll(() => endMountOf(mount, work));

  it('keeps serving the open file to its end, then exits 0 once it is closed', async () => {
    const expected = await fs.readFile(path.join(source, 'big.bin'));
    const file = await fs.open(path.join(mnt, 'big.bin'));
    try {
      const first = Buffer.alloc(FIRST);
      expect((await file.read(first, 0, FIRST, 0)).bytesRead).toBe(FIRST);
      await run('fusermount', ['-uz', mnt]);
      expect(await isMountPoint(mnt)).toBe(false);
      // Longer than the mount takes to notice that its mount point is gone.
      await new Promise((r) => setTimeout(r, 2500));
      expect(processGone(mount.pid)).toBe(false);
      const rest = Buffer.alloc(FILE_SIZE - FIRST);
      let at = 0;
      while (at < rest.length) {
        const { bytesRead } = await file.read(rest, at, rest.length - at, FIRST + at);
        if (bytesRead === 0) break;
        at += bytesRead;
      }
      expect(at).toBe(rest.length);
      expect(Buffer.concat([first, rest]).equals(expected)).toBe(true);
    } finally {
      await file.close();
    }
    const exited = await Promise.race([mount.done, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 10_000))]);
    expect(exited).not.toBe('still running');
    expect(exited === 'still running' ? undefined : exited.code).toBe(0);
  }, 60_000);
});
