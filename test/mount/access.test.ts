/**
 * access(2) through the mount answers as on the source: `test -x` and
 * `find -executable` call executable only the files with an execute bit,
 * directories can be entered, and nothing is writable.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { endMountOf, mountSnapshotOf, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);

let work: string;
let source: string;
let mnt: string;
let mount: MountedCli;

/** The names `test <flag>` holds for, under `dir`. */
async function passing(dir: string, flag: string, names: string[]): Promise<string[]> {
  const held: string[] = [];
  for (const name of names) {
    const ok = await run('sh', ['-c', `test ${flag} "$1"`, 'sh', path.join(dir, name)]).then(
      () => true,
      () => false,
    );
    if (ok) held.push(name);
  }
  return held;
}

/** `find -executable` under `dir`, as relative paths in order. */
async function findExecutable(dir: string): Promise<string[]> {
  const { stdout } = await run('find', [dir, '-mindepth', '1', '-executable']);
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((p) => path.relative(dir, p))
    .sort();
}

const NAMES = ['plain.txt', 'script.sh', 'group-only', 'dir'];

describe('access() on a mounted snapshot', () => {
  beforeAll(async () => {
    work = await tempDir('kloset-mount-access-');
    source = path.join(work, 'source');
    await fs.mkdir(path.join(source, 'dir'), { recursive: true });
    await fs.writeFile(path.join(source, 'plain.txt'), 'not a program\n');
    await fs.writeFile(path.join(source, 'script.sh'), '#!/bin/sh\n');
    await fs.writeFile(path.join(source, 'group-only'), '#!/bin/sh\n');
    await fs.chmod(path.join(source, 'plain.txt'), 0o644);
    await fs.chmod(path.join(source, 'script.sh'), 0o755);
    await fs.chmod(path.join(source, 'group-only'), 0o650);
    ({ mnt, mount } = await mountSnapshotOf(work, source));
  }, 60_000);

  afterAll(() => endMountOf(mount, work));

  it('calls executable with `test -x` only what the source does', async () => {
    expect(await passing(mnt, '-x', NAMES)).toEqual(await passing(source, '-x', NAMES));
    expect(await passing(mnt, '-x', NAMES)).not.toContain('plain.txt');
  });

  it('lists with `find -executable` only what the source does', async () => {
    expect(await findExecutable(mnt)).toEqual(await findExecutable(source));
  });

  it('lets directories be entered and files be read', async () => {
    expect(await passing(mnt, '-r', NAMES)).toEqual(NAMES);
    const { stdout } = await run('sh', ['-c', 'cd "$1" && pwd', 'sh', path.join(mnt, 'dir')]);
    expect(stdout.trim()).toBe(path.join(mnt, 'dir'));
  });

  it('calls nothing writable, and a missing name missing', async () => {
    expect(await passing(mnt, '-w', NAMES)).toEqual([]);
    await expect(fs.access(path.join(mnt, 'absent'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
