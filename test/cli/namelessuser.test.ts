/**
 * A user without an entry in /etc/passwd (a container run with --user 1500)
 * backs up as anyone else: the snapshot names its maker by uid, as `ls -l`
 * names an owner without a name.
 */
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

const NAMELESS = { uid: 48213, gid: 48213 };

let work: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  const passwd = readFileSync('/etc/passwd', 'utf8');
  expect(passwd.split('\n').some((line) => line.split(':')[2] === String(NAMELESS.uid))).toBe(false);
  work = await tempDir('kloset-nameless-');
  await fs.chmod(work, 0o755);
  const home = path.join(work, 'home');
  await fs.mkdir(path.join(home, 'source'), { recursive: true });
  await fs.writeFile(path.join(home, 'source', 'notes.txt'), 'kept\n');
  for (const dir of [home, path.join(home, 'source'), path.join(home, 'source', 'notes.txt')]) await fs.chown(dir, NAMELESS.uid, NAMELESS.gid);
  kloset = klosetWith({ HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), XDG_CONFIG_HOME: path.join(home, '.config') });
  const created = await kloset(['at', path.join(home, 'store'), 'create'], NAMELESS);
  expect(created.stderr).toBe('');
  expect(created.code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a backup by a user without a name', () => {
  it('makes its snapshot, naming the user by uid', async () => {
    const store = path.join(work, 'home', 'store');
    const backup = await kloset(['at', store, 'backup', path.join(work, 'home', 'source')], NAMELESS);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const listed = await kloset(['at', store, 'ls', '--json'], NAMELESS);
    expect(listed.code).toBe(0);
    const snapshots = JSON.parse(listed.stdout) as { user: string }[];
    expect(snapshots).toHaveLength(1);
    expect(snapshots[0].user).toBe(String(NAMELESS.uid));
  }, 60_000);
});
