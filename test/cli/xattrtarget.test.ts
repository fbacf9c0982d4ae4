/**
 * Extended attributes the target cannot take do not cost the file: as
 * restored by a user who may not set trusted.* attributes, or into a file
 * system without attributes (ramfs), the file comes back whole, with its
 * mode and times, and with the attributes that could be set.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

const NOBODY = { uid: 65534, gid: 65534 };
const PAST = new Date('2020-01-02T03:04:05Z');

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
let ramfs: string | undefined;

beforeAll(async () => {
  work = await tempDir('kloset-xattrtarget-');
  await fs.chmod(work, 0o755);
  const source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(source);
  const file = path.join(source, 'labelled.txt');
  await fs.writeFile(file, 'labelled\n', { mode: 0o640 });
  setAttributeSync(file, 'user.origin', Buffer.from('scanner'));
  setAttributeSync(file, 'trusted.mark', Buffer.from('root only'));
  await fs.utimes(file, PAST, PAST);
  const home = path.join(work, 'home');
  await fs.mkdir(home);
  kloset = klosetWith({ HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), XDG_CONFIG_HOME: path.join(home, '.config') });
  expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
  const backup = await kloset(['at', store, 'backup', source]);
  expect(backup.stderr).toBe('');
  expect(backup.code).toBe(0);
  // Handed over to nobody, who restores it with a cache of its own.
  execFileSync('chown', ['-R', `${NOBODY.uid}:${NOBODY.gid}`, store, home]);
}, 60_000);

afterAll(async () => {
  if (ramfs) execFileSync('umount', [ramfs]);
  await fs.rm(work, { recursive: true, force: true });
});

async function expectRestored(target: string, user: object): Promise<void> {
  const result = await kloset(['at', store, 'restore', '-to', target, 'latest'], user);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const restored = path.join(target, 'labelled.txt');
  expect(await fs.readFile(restored, 'utf8')).toBe('labelled\n');
  const stat = await fs.stat(restored);
  expect(stat.mode & 0o7777).toBe(0o640);
  expect(stat.mtime).toEqual(PAST);
}

describe('a restore of a file with attributes the target cannot take', () => {
  it('restores the file and the attributes it may set, as a user who may not set trusted.*', async () => {
    const target = path.join(work, 'home', 'restored');
    await expectRestored(target, NOBODY);
    expect(String(getAttributeSync(path.join(target, 'labelled.txt'), 'user.origin'))).toBe('scanner');
  }, 60_000);

  it('restores the file into a file system without extended attributes', async () => {
    ramfs = path.join(work, 'ramfs');
    await fs.mkdir(ramfs);
    execFileSync('mount', ['-t', 'ramfs', 'none', ramfs]);
    await expectRestored(path.join(ramfs, 'restored'), {});
  }, 60_000);
});
