/**
 * The every-snapshot view follows the store, as `restic mount` does: a
 * snapshot made while mounted appears at the top level, in by-date/ and
 * by-tag/, and becomes latest, without remounting.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { listAttributes, setAttribute } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';
import { mountCli, unmountAll, type MountedCli } from '../helpers/mount.js';

async function waitUntil(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return check();
}

/** A store with one snapshot of a one-file source (tagged `tag`), mounted with `mountArgs`. */
interface MountedStore {
  work: string;
  store: string;
  source: string;
  mnt: string;
  mount: MountedCli;
  firstId: string;
  kloset: ReturnType<typeof klosetWith>;
}

async function mountedStore(prefix: string, tag: string, mountArgs: string[]): Promise<MountedStore> {
  const work = await tempDir(prefix);
  const env: NodeJS.ProcessEnv = { XDG_CACHE_HOME: path.join(work, 'cache'), KLOSET_PASSPHRASE: 'test passphrase' };
  const kloset = klosetWith(env);
  const source = path.join(work, 'source');
  const store = path.join(work, 'store');
  await fs.mkdir(source);
  await fs.writeFile(path.join(source, 'a.txt'), 'first\n');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  const first = await kloset(['at', store, 'backup', source, '--tag', tag]);
  expect(first.code, first.stderr).toBe(0);
  const firstId = /created snapshot ([0-9a-f]{8})/.exec(first.stdout)![1];
  const mnt = path.join(work, 'mnt');
  await fs.mkdir(mnt);
  return { work, store, source, mnt, mount: await mountCli(store, mnt, mountArgs, { env }), firstId, kloset };
}

async function unmountStore(mounted: MountedStore | undefined): Promise<void> {
  await mounted?.mount.stop();
  await unmountAll();
  if (mounted) await fs.rm(mounted.work, { recursive: true, force: true });
}

describe('every snapshot mounted while a backup is made', () => {
  let store: string;
  let source: string;
  let mnt: string;
  let mount: MountedCli;
  let firstId: string;
  let kloset: ReturnType<typeof klosetWith>;
  let mounted: MountedStore;

  beforeAll(async () => {
    mounted = await mountedStore('kloset-mount-refresh-', 'old', []);
    ({ store, source, mnt, mount, firstId, kloset } = mounted);
  }, 60_000);

  afterAll(() => unmountStore(mounted));

  it('shows the new snapshot by id, by date, by tag and as latest, with its files', async () => {
    expect(await fs.readlink(path.join(mnt, 'latest'))).toBe(firstId);
    await new Promise((r) => setTimeout(r, 1100)); // by-date names are to the second
    await fs.writeFile(path.join(source, 'b.txt'), 'second\n');
    const second = await kloset(['at', store, 'backup', source, '--tag', 'new']);
    expect(second.code, second.stderr).toBe(0);
    const secondId = /created snapshot ([0-9a-f]{8})/.exec(second.stdout)![1];
    const appeared = await waitUntil(async () => (await fs.readdir(mnt)).includes(secondId), 20_000);
    expect(appeared, `${secondId} not listed at the top of the mount 20 s after the backup`).toBe(true);
    expect(await fs.readFile(path.join(mnt, secondId, 'b.txt'), 'utf8')).toBe('second\n');
    expect(await fs.readlink(path.join(mnt, 'latest'))).toBe(secondId);
    expect(await fs.readFile(path.join(mnt, 'latest', 'b.txt'), 'utf8')).toBe('second\n');
    expect(await fs.readdir(path.join(mnt, 'by-tag'))).toEqual(expect.arrayContaining(['old', 'new']));
    expect(await fs.readlink(path.join(mnt, 'by-tag', 'new', secondId))).toBe(`../../${secondId}`);
    expect((await fs.readdir(path.join(mnt, 'by-date'))).filter((n) => n.endsWith(secondId))).toHaveLength(1);
    // The first snapshot is still there and readable.
    expect(await fs.readFile(path.join(mnt, firstId, 'a.txt'), 'utf8')).toBe('first\n');
  }, 60_000);

  it('answers no attribute reads when it started with no snapshot that had any, and says so of a later one that has', async () => {
    // Neither snapshot so far has an extended attribute (xattr.test.ts shows what reading one answers).
    expect(await listAttributes(path.join(mnt, firstId, 'a.txt'))).toEqual([]);
    await fs.writeFile(path.join(source, 'c.txt'), 'third\n');
    await setAttribute(path.join(source, 'c.txt'), 'user.origin', 'test');
    const third = await kloset(['at', store, 'backup', source]);
    expect(third.code, third.stderr).toBe(0);
    const thirdId = /created snapshot ([0-9a-f]{8})/.exec(third.stdout)![1];
    const appeared = await waitUntil(async () => (await fs.readdir(mnt)).includes(thirdId), 20_000);
    expect(appeared).toBe(true);
    expect(await fs.readFile(path.join(mnt, thirdId, 'c.txt'), 'utf8')).toBe('third\n');
    expect(await listAttributes(path.join(mnt, thirdId, 'c.txt'))).toEqual([]); // none listed that cannot be read
    expect(mount.stderr()).toContain(
      `snapshot ${thirdId}: its extended attributes are not shown, as this mount started without any; mount it again to see them\n`,
    );
  }, 60_000);
});

describe('a mount of some snapshots while backups are made', () => {
  let tagged: MountedStore;

  beforeAll(async () => {
    tagged = await mountedStore('kloset-mount-refresh-tag-', 'shown', ['--tag', 'shown']);
  }, 60_000);

  afterAll(() => unmountStore(tagged));

  it('says its attributes are not shown only of a snapshot it shows', async () => {
    await setAttribute(path.join(tagged.source, 'a.txt'), 'user.origin', 'test');
    const hidden = await tagged.kloset(['at', tagged.store, 'backup', tagged.source, '--tag', 'other']);
    expect(hidden.code, hidden.stderr).toBe(0);
    const hiddenId = /created snapshot ([0-9a-f]{8})/.exec(hidden.stdout)![1];
    const shown = await tagged.kloset(['at', tagged.store, 'backup', tagged.source, '--tag', 'shown']);
    expect(shown.code, shown.stderr).toBe(0);
    const shownId = /created snapshot ([0-9a-f]{8})/.exec(shown.stdout)![1];
    expect(await waitUntil(async () => (await fs.readdir(tagged.mnt)).includes(shownId), 20_000)).toBe(true);
    expect(await fs.readdir(tagged.mnt)).not.toContain(hiddenId);
    expect(tagged.mount.stderr()).toContain(`snapshot ${shownId}: its extended attributes are not shown`);
    expect(tagged.mount.stderr()).not.toContain(hiddenId);
  }, 60_000);
});
