import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kloset, tempDir } from '../helpers/cli.js';
import { expectOneLineError, storeListing } from '../helpers/fixtures.js';

describe('backup sources', () => {
  let work: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    work = await tempDir('kloset-sources-');
    env = { XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') };
    await fs.mkdir(path.join(work, 'src'));
    await fs.writeFile(path.join(work, 'src', 'report.txt'), 'quarterly figures\n');
    await fs.writeFile(path.join(work, 'src', 'other.txt'), 'not backed up\n');
    expect((await kloset(['at', path.join(work, 'store'), 'create'], { env })).code).toBe(0);
  });

  afterAll(() => fs.rm(work, { recursive: true, force: true }));

  it('backs up a single file as a snapshot holding just that file', async () => {
    const store = path.join(work, 'store');
    const backup = await kloset(['at', store, 'backup', path.join(work, 'src', 'report.txt')], { env });
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const id = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
    const listing = await kloset(['at', store, 'ls', `${id}:/`], { env });
    expect(listing.stdout.trim().split('\n')).toHaveLength(1);
    expect(listing.stdout).toContain('report.txt');
    const cat = await kloset(['at', store, 'cat', `${id}:/report.txt`], { env });
    expect(cat.stdout).toBe('quarterly figures\n');
    const target = path.join(work, 'restored');
    expect((await kloset(['at', store, 'restore', '-to', target, id], { env })).code).toBe(0);
    expect(await fs.readdir(target)).toEqual(['report.txt']);
  });

  it('shows owners by name where the source system has the name', async () => {
    const store = path.join(work, 'store');
    const backup = await kloset(['at', store, 'backup', path.join(work, 'src')], { env });
    const id = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
    const listing = await kloset(['at', store, 'ls', '--json', `${id}:/`], { env });
    const entries = JSON.parse(listing.stdout) as { name: string; uid: number; user?: string }[];
    const report = entries.find((e) => e.name === 'report.txt')!;
    expect(report.uid).toBe(process.getuid!());
    expect(report.user).toBe('root');
    const long = await kloset(['at', store, 'ls', `${id}:/`], { env });
    expect(long.stdout).toMatch(/^-rw-r--r-- root\s+root\s/m);
  });

  it('keeps extended attributes and restores them', async () => {
    const store = path.join(work, 'store');
    const file = path.join(work, 'src', 'tagged.txt');
    await fs.writeFile(file, 'with attributes\n');
    setAttributeSync(file, 'user.origin', 'scanner 7');
    const backup = await kloset(['at', store, 'backup', path.join(work, 'src')], { env });
    const id = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
    const target = path.join(work, 'restored-xattrs');
    expect((await kloset(['at', store, 'restore', '-to', target, id], { env })).code).toBe(0);
    expect(String(getAttributeSync(path.join(target, 'tagged.txt'), 'user.origin'))).toBe('scanner 7');
    expect(getAttributeSync(path.join(target, 'report.txt'), 'user.origin')).toBeNull();
  });

  it('keeps the attributes of an unchanged file in the next backup, and sees a changed attribute', async () => {
    const store = path.join(work, 'store');
    const file = path.join(work, 'src', 'tagged.txt');
    const restoredOrigin = async (name: string) => {
      const backup = await kloset(['at', store, 'backup', path.join(work, 'src')], { env });
      expect(backup.code).toBe(0);
      const id = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
      const target = path.join(work, name);
      expect((await kloset(['at', store, 'restore', '-to', target, id], { env })).code).toBe(0);
      return String(getAttributeSync(path.join(target, 'tagged.txt'), 'user.origin'));
    };
    // Nothing changed: the file is not read again, and its attributes come from the previous snapshot.
    expect(await restoredOrigin('restored-unchanged')).toBe('scanner 7');
    // Only the attribute changed (same bytes, same mtime): the ctime says the file changed.
    const { mtime } = await fs.stat(file);
    setAttributeSync(file, 'user.origin', 'scanner 8');
    await fs.utimes(file, mtime, mtime);
    expect(await restoredOrigin('restored-changed')).toBe('scanner 8');
  });

  it('backs up the directory a symbolic link names when given as link/, as tar and rsync do', async () => {
    const store = path.join(work, 'store');
    await fs.symlink(path.join(work, 'src'), path.join(work, 'current'));
    const plain = await kloset(['at', store, 'backup', path.join(work, 'current')], { env });
    expect(plain.stderr.trim()).toBe(`kloset: ${path.join(work, 'current')}: not a directory or a regular file`);
    const backup = await kloset(['at', store, 'backup', `${path.join(work, 'current')}/`], { env });
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const id = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
    const listing = await kloset(['at', store, 'ls', `${id}:/`], { env });
    expect(listing.stdout).toMatch(/report\.txt/);
    expect((await kloset(['at', store, 'cat', `${id}:/other.txt`], { env })).stdout).toBe('not backed up\n');
  });

  it('backs up through link/ a directory whose path is not UTF-8', async () => {
    const store = path.join(work, 'store-latin1');
    // A directory a Latin-1 system named, reached through a link with a plain name.
    const dir = Buffer.concat([Buffer.from(`${work}/r`), Buffer.from([0xe9]), Buffer.from('sultats')]);
    await fs.mkdir(dir);
    await fs.writeFile(Buffer.concat([dir, Buffer.from('/data.txt')]), 'inside\n');
    await fs.symlink(dir, path.join(work, 'results'));
    expect((await kloset(['at', store, 'create', '-plaintext'], { env })).code).toBe(0);
    const backup = await kloset(['at', store, 'backup', `${path.join(work, 'results')}/`], { env });
    expect(backup.stderr).not.toMatch(/no such file/);
    expect(backup.code).toBe(0);
    const id = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
    expect((await kloset(['at', store, 'cat', `${id}:/data.txt`], { env })).stdout).toBe('inside\n');
  });

  it('refuses a source that is neither a directory nor a regular file', async () => {
    const result = await kloset(['at', path.join(work, 'store'), 'backup', '/dev/null'], { env });
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe('kloset: /dev/null: not a directory or a regular file');
  });
});

describe('a store inside the directory backed up', () => {
  let work: string;
  let env: NodeJS.ProcessEnv;
  let server: string;
  let store: string;

  beforeAll(async () => {
    // `kloset at /srv/backups backup -x /srv`: the store lies in what is backed up.
    work = await tempDir('kloset-store-in-source-');
    env = { XDG_CACHE_HOME: path.join(work, 'cache') };
    server = path.join(work, 'srv');
    store = path.join(server, 'backups');
    await fs.mkdir(path.join(server, 'www'), { recursive: true });
    await fs.writeFile(path.join(server, 'www', 'site.bin'), randomBytes(2 << 20));
    expect((await kloset(['at', store, 'create'], { env })).code).toBe(0);
  });

  afterAll(() => fs.rm(work, { recursive: true, force: true }));

  it('is left out with a warning, so a backup does not store again the packs the one before wrote', async () => {
    const first = await kloset(['at', store, 'backup', server], { env });
    expect(first.code).toBe(0);
    await fs.writeFile(path.join(server, 'www', 'new.txt'), 'one more page\n');
    const second = await kloset(['at', store, 'backup', server], { env });
    expect(second.code).toBe(0);
    // The 2 MiB the first backup packed are not read back in: only the new page is added.
    const added = /\(([\d.]+) (B|KiB|MiB) added to the store\)/.exec(second.stdout)!;
    expect(added[2], second.stdout).not.toBe('MiB');
    const listing = await kloset(['at', store, 'ls', 'latest'], { env });
    expect(listing.stdout).toMatch(/ www\/\n$/);
    expect(listing.stdout).not.toMatch(/backups/);
    expect(first.stderr).toBe('warning: /backups: the store itself, left out\n');
  });

  it('is not warned about once an -exclude leaves it out', async () => {
    const result = await kloset(['at', store, 'backup', '-exclude', '/backups', server], { env });
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
  });

  it('refuses to back up the store, or a directory in it, into itself, and leaves it as it was', async () => {
    const before = await storeListing(store);
    for (const source of [store, path.join(store, 'packs')]) {
      const result = await kloset(['at', store, 'backup', source], { env });
      expect(result.code).toBe(2);
      expectOneLineError(result, `kloset: ${source}: inside the store ${store}: back up something else`);
    }
    expect(await storeListing(store)).toEqual(before);
  });
});
