/**
 * Entries beyond plain files and directories, as `ls -l` and `stat` show them
 * in the source: block and character devices, and files with several hard
 * links. Needs root (mknod).
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { endMountOf, mountSnapshotOf, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

let work: string;
let source: string;
let mnt: string;
let mount: MountedCli;

/** `stat` as a user runs it: file type in words, octal mode, link count, device numbers. */
async function statOf(file: string): Promise<string> {
  const { stdout } = await run('stat', ['-c', '%F %a %h %t:%T %s', file]);
  return stdout.trim();
}

describe.skipIf(!isRoot)('special entries mounted', () => {
  beforeAll(async () => {
    work = await tempDir('kloset-mount-special-');
    source = path.join(work, 'source');
    await fs.mkdir(source);
    await run('mknod', [path.join(source, 'blk'), 'b', '7', '99']);
    await run('mknod', [path.join(source, 'chr'), 'c', '1', '3']);
    await fs.writeFile(path.join(source, 'one'), 'linked\n');
    await fs.link(path.join(source, 'one'), path.join(source, 'two'));
    await fs.link(path.join(source, 'one'), path.join(source, 'three'));
    await fs.writeFile(path.join(source, 'single'), 'single\n');
    ({ mnt, mount } = await mountSnapshotOf(work, source));
  }, 60_000);

  afterAll(() => endMountOf(mount, work));

  it('shows a block device as a block device, a character device as a character device', async () => {
    expect(await statOf(path.join(mnt, 'blk'))).toBe(await statOf(path.join(source, 'blk')));
    expect(await statOf(path.join(mnt, 'chr'))).toBe(await statOf(path.join(source, 'chr')));
    expect(await statOf(path.join(mnt, 'blk'))).toMatch(/^block special file /);
  });

  it('shows the link count of hard-linked files as the source has it', async () => {
    for (const name of ['one', 'two', 'three', 'single']) {
      expect(await statOf(path.join(mnt, name)), name).toBe(await statOf(path.join(source, name)));
    }
    expect((await fs.stat(path.join(mnt, 'two'))).nlink).toBe(3);
  });
});
