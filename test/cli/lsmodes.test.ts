/**
 * `ls id:/dir` shows modes as ls -l does: the set-user-ID, set-group-ID and
 * sticky bits (s, S, t, T), and b for a block device, c for a character one.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-lsmodes-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(source);
  const file = async (name: string, mode: number) => {
    await fs.writeFile(path.join(source, name), name);
    await fs.chmod(path.join(source, name), mode);
  };
  await file('setuid', 0o4755);
  await file('setgid-no-exec', 0o2644);
  await fs.mkdir(path.join(source, 'sticky'));
  await fs.chmod(path.join(source, 'sticky'), 0o1777);
  execFileSync('mknod', ['-m', '660', path.join(source, 'block'), 'b', '7', '0']);
  execFileSync('mknod', ['-m', '666', path.join(source, 'char'), 'c', '1', '3']);
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
}, 60_000);

afterAll(() => fs.rm(work, { recursive: true, force: true }));

describe('ls of a directory in a snapshot', () => {
  it('shows the special mode bits and the kind of device as ls -l does', async () => {
    const result = await kloset(['at', store, 'ls', 'latest:/']);
    expect(result.code).toBe(0);
    const modes = Object.fromEntries(result.stdout.trim().split('\n').map((line) => [line.split(' ').pop()!.replace(/\/$/, ''), line.split(' ')[0]]));
    expect(modes).toEqual({
      block: 'brw-rw----',
      char: 'crw-rw-rw-',
      setuid: '-rwsr-xr-x',
      'setgid-no-exec': '-rw-r-Sr--',
      sticky: 'drwxrwxrwt',
    });
  }, 60_000);
});
