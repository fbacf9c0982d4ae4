/**
 * A backup reads files without moving their access times, as restic does
 * (O_NOATIME): mail readers and cleaners of old files go by them. Only a
 * file's owner or root may read so; anyone else reads as usual.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

const NOBODY = { uid: 65534, gid: 65534 };
/** Older than the file's mtime: with relatime, as with strictatime, a read would move it. */
const LONG_AGO = new Date('2001-02-03T04:05:06Z');

let work: string;
let source: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-atime-');
  await fs.chmod(work, 0o755);
  source = path.join(work, 'source');
  await fs.mkdir(source, { mode: 0o755 });
  await fs.chmod(source, 0o755);
  await fs.writeFile(path.join(source, 'mail.mbox'), 'From someone\n'.repeat(1000), { mode: 0o644 });
  const home = path.join(work, 'home');
  await fs.mkdir(home);
  await fs.chown(home, NOBODY.uid, NOBODY.gid);
  kloset = klosetWith({ HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), XDG_CONFIG_HOME: path.join(home, '.config') });
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function backUpAs(user: { uid: number; gid: number } | object, store: string): Promise<void> {
  expect((await kloset(['at', store, 'create', '-plaintext'], user)).code).toBe(0);
  const file = path.join(source, 'mail.mbox');
  await fs.utimes(file, LONG_AGO, new Date());
  const backup = await kloset(['at', store, 'backup', source], user);
  expect(backup.stderr).toBe('');
  expect(backup.code).toBe(0);
}

describe('a backup', () => {
  it('leaves the access time of the files it reads as it was', async () => {
    await backUpAs({}, path.join(work, 'store'));
    expect((await fs.stat(path.join(source, 'mail.mbox'))).atime).toEqual(LONG_AGO);
  }, 60_000);

  it('still reads a file of another owner, which it may not read so', async () => {
    const store = path.join(work, 'home', 'store');
    await backUpAs(NOBODY, store);
    const cat = await kloset(['at', store, 'cat', 'latest:/mail.mbox'], NOBODY);
    expect(cat.stdout).toBe('From someone\n'.repeat(1000));
  }, 60_000);
});
