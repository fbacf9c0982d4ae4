import { promises as fs } from 'node:fs';
import path from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kloset, tempDir } from '../helpers/cli.js';

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
