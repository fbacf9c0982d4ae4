/**
 * Directory listings as `ls -a` shows them on any Unix file system: every
 * directory, empty or not, in a snapshot or in the every-snapshot view,
 * lists `.` and `..` before its entries.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { mountCli, storeWithSnapshot, unmountAll, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);

let work: string;
let source: string;
let mnt: string;
let mount: MountedCli;
let id: string;

/** `ls -a`, one name a line, in the order the directory gives them (-f: unsorted). */
async function lsAll(dir: string): Promise<string[]> {
  const { stdout } = await run('ls', ['-a', '-f', '-1', dir]);
  return stdout.split('\n').filter(Boolean);
}

describe('directories listed with ls -a', () => {
  beforeAll(async () => {
    work = await tempDir('kloset-mount-listing-');
    source = path.join(work, 'source');
    await fs.mkdir(path.join(source, 'empty-dir'), { recursive: true });
    await fs.writeFile(path.join(source, 'file.txt'), 'text\n');
    const store = path.join(work, 'store');
    id = await storeWithSnapshot(store, source);
    mnt = path.join(work, 'mnt');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt);
  }, 60_000);

  afterAll(async () => {
    await mount?.stop();
    await unmountAll();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('shows . and .. in an empty directory, as the source does', async () => {
    expect(await lsAll(path.join(mnt, id, 'empty-dir'))).toEqual(await lsAll(path.join(source, 'empty-dir')));
    expect(await lsAll(path.join(mnt, id, 'empty-dir'))).toEqual(['.', '..']);
  });

  it('shows . and .. before the entries of a snapshot directory', async () => {
    expect((await lsAll(path.join(mnt, id))).sort()).toEqual(['.', '..', 'empty-dir', 'file.txt']);
  });

  it('shows . and .. in the every-snapshot view and its by-date and by-tag directories', async () => {
    expect((await lsAll(mnt)).sort()).toEqual(['.', '..', id, 'by-date', 'by-tag', 'latest'].sort());
    expect((await lsAll(path.join(mnt, 'by-date'))).slice(0, 2)).toEqual(['.', '..']);
    expect(await lsAll(path.join(mnt, 'by-tag'))).toEqual(['.', '..']);
  });

  it('still lets `find` walk the tree without listing . or .. as entries', async () => {
    const { stdout } = await run('find', [path.join(mnt, id)]);
    expect(stdout.split('\n').filter(Boolean).map((p) => path.relative(path.join(mnt, id), p)).sort()).toEqual(['', 'empty-dir', 'file.txt']);
  });
});
