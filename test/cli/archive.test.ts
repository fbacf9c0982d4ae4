/**
 * `archive`: a snapshot, or a path in it, as one tar, tar.gz or zip file (as
 * Plakar's archive and restic's dump), read back with the system's own tar
 * and unzip.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKloset, tempDir } from '../helpers/cli.js';
import { MiB, describeTree, expectOneLineError, flipByte, klosetWith, packFiles, posixAcl, sha256File, writeRandomFile } from '../helpers/fixtures.js';

const run = promisify(execFile);
const ACCESS_ACL = 'system.posix_acl_access';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
let id: string;

/** A fresh directory below the test's own. */
let made = 0;
async function fresh(name: string): Promise<string> {
  const dir = path.join(work, `${name}-${++made}`);
  await fs.mkdir(dir);
  return dir;
}

async function archive(args: string[], cwd = work) {
  return kloset(['at', store, 'archive', ...args], { cwd });
}

async function tarMembers(file: string, flags = '-tf'): Promise<string[]> {
  const { stdout } = await run('tar', [flags, file], { maxBuffer: 16 * MiB });
  return stdout.split('\n').filter(Boolean).sort();
}

beforeAll(async () => {
  work = await tempDir('kloset-archive-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(path.join(source, 'etc/app'), { recursive: true });
  await fs.mkdir(path.join(source, 'var/www'), { recursive: true });
  await fs.writeFile(path.join(source, 'etc/app/app.conf'), 'listen 8080\n');
  await fs.writeFile(path.join(source, 'etc/secret'), 'token\n', { mode: 0o600 });
  await fs.writeFile(path.join(source, 'var/www/index.html'), '<h1>hello</h1>\n');
  await writeRandomFile(path.join(source, 'var/www/video.bin'), 20 * MiB);
  await fs.symlink('app/app.conf', path.join(source, 'etc/current'));
  await fs.chmod(path.join(source, 'etc/app'), 0o750);
  setAttributeSync(path.join(source, 'etc/app/app.conf'), 'user.origin', Buffer.from('packaged'));
  setAttributeSync(path.join(source, 'etc/app/app.conf'), ACCESS_ACL, posixAcl(1000, 4));
  expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
  const backup = await kloset(['at', store, 'backup', source]);
  expect(backup.code).toBe(0);
  id = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
}, 120_000);

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('archive', () => {
  it('writes the snapshot as a tar that tar extracts into the tree that was backed up', async () => {
    const file = path.join(work, 'all.tar');
    const result = await archive(['-output', file, id]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^archived 4 files, [\\d.]+ MiB from snapshot ${id}:/ to ${file} \\(tar\\)`, 'm'));
    // Named from the top of the snapshot, as `tar -C / -cf - .` would name them without the './'.
    expect(await tarMembers(file)).toEqual(
      ['etc/', 'etc/app/', 'etc/app/app.conf', 'etc/current', 'etc/secret', 'var/', 'var/www/', 'var/www/index.html', 'var/www/video.bin'].sort(),
    );
    const out = await fresh('extracted');
    await run('tar', ['-xpf', file, '-C', out]);
    const [got, want] = await Promise.all([describeTree(out), describeTree(source)]);
    delete got['.'];
    delete want['.'];
    expect(got).toEqual(want);
    // The archive holds whatever the snapshot holds: only its owner reads it.
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
  });

  it('carries extended attributes and ACLs as GNU tar --xattrs --acls writes them', async () => {
    const file = path.join(work, 'attributes.tar');
    expect((await archive(['-output', file, `${id}:/etc/app`])).code).toBe(0);
    const conf = (dir: string) => path.join(dir, 'etc/app/app.conf');
    const all = await fresh('xattrs');
    await run('tar', ['--xattrs', '--xattrs-include=*', '-xpf', file, '-C', all]);
    expect(Buffer.from(getAttributeSync(conf(all), 'user.origin')!).toString()).toBe('packaged');
    expect(Buffer.from(getAttributeSync(conf(all), ACCESS_ACL)!)).toEqual(posixAcl(1000, 4));
    // The ACL also as text (SCHILY.acl.access), which tar --acls reads without --xattrs.
    const acls = await fresh('acls');
    await run('tar', ['--acls', '-xpf', file, '-C', acls]);
    expect(Buffer.from(getAttributeSync(conf(acls), ACCESS_ACL)!)).toEqual(posixAcl(1000, 4));
  });

  it("carries attribute names with '=' or '%' percent-encoded, as GNU tar does, so tar sets the names backed up", async () => {
    const dir = await fresh('xattr-names');
    const tree = path.join(dir, 'tree');
    await fs.mkdir(tree);
    const file = path.join(tree, 'file');
    await fs.writeFile(file, 'x\n');
    // A name with '=' would otherwise end the pax keyword early: tar set user.a to 'b=1' instead.
    setAttributeSync(file, 'user.a=b', Buffer.from('1'));
    setAttributeSync(file, 'user.rate%3D', Buffer.from('2'));
    setAttributeSync(file, 'user.bin', Buffer.from('a\nb=c\0d\n'));
    const own = path.join(dir, 'store');
    expect((await kloset(['at', own, 'create', '-plaintext'])).code).toBe(0);
    expect((await kloset(['at', own, 'backup', tree])).code).toBe(0);
    const tar = path.join(dir, 'names.tar');
    expect((await kloset(['at', own, 'archive', '-output', tar, '-rebase', 'latest:/'])).code).toBe(0);
    const out = await fresh('xattr-names-out');
    await run('tar', ['--xattrs', '--xattrs-include=*', '-xpf', tar, '-C', out]);
    const { stdout } = await run('getfattr', ['--absolute-names', '-d', '-m', '^user\\.', '-e', 'hex', path.join(out, 'file')]);
    const { stdout: expected } = await run('getfattr', ['--absolute-names', '-d', '-m', '^user\\.', '-e', 'hex', file]);
    expect(stdout.split('\n').slice(1).sort()).toEqual(expected.split('\n').slice(1).sort());
    expect(stdout).toContain('user.a\\075b=0x31');
  });

  it('takes the format from the output name: .tar.gz and .zip', async () => {
    const tgz = path.join(work, 'www.tar.gz');
    expect((await archive(['-output', tgz, `${id}:/var/www`])).code).toBe(0);
    expect((await fs.readFile(tgz)).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(await tarMembers(tgz, '-tzf')).toEqual(['var/www/', 'var/www/index.html', 'var/www/video.bin']);

    const zip = path.join(work, 'www.zip');
    const zipped = await archive(['-output', zip, '-rebase', `${id}:/var/www`]);
    expect(zipped.code).toBe(0);
    expect(zipped.stdout).toMatch(/\(zip\)/);
    const out = await fresh('unzipped');
    await run('unzip', ['-q', zip, '-d', out], { maxBuffer: 16 * MiB });
    const got = await describeTree(out);
    const want = await describeTree(path.join(source, 'var/www'));
    for (const name of ['index.html', 'video.bin']) expect(got[name].sha256).toBe(want[name].sha256);
  });

  it('-format overrides the name, and an unknown format is one line and status 2', async () => {
    const file = path.join(work, 'named.zip');
    expect((await archive(['-format', 'tar', '-output', file, `${id}:/etc`])).code).toBe(0);
    expect(await tarMembers(file)).toContain('etc/app/app.conf');
    const bad = await archive(['-format', 'rar', '-output', path.join(work, 'x.rar'), id]);
    expectOneLineError(bad, /-format rar: the formats are tar, tarball \(tar\.gz\) and zip/);
    expect(bad.code).toBe(2);
  });

  it('-rebase names members from the path archived down', async () => {
    const dir = path.join(work, 'rebased.tar');
    expect((await archive(['-rebase', '-output', dir, `${id}:/etc`])).code).toBe(0);
    expect(await tarMembers(dir)).toEqual(['app/', 'app/app.conf', 'current', 'secret']);
    const one = path.join(work, 'one.tar');
    expect((await archive(['-rebase', '-output', one, `${id}:/etc/app/app.conf`])).code).toBe(0);
    expect(await tarMembers(one)).toEqual(['app.conf']);
  });

  it('writes a zip whose top holds a name that zip tools read as a drive (a:b), made plain as a root name is', async () => {
    const dir = await fresh('drive-names');
    const tree = path.join(dir, 'tree');
    await fs.mkdir(path.join(tree, 'd'), { recursive: true });
    await fs.writeFile(path.join(tree, 'a:b'), 'top\n');
    await fs.writeFile(path.join(tree, 'd/c:d'), 'below\n');
    const own = path.join(dir, 'store');
    expect((await kloset(['at', own, 'create', '-plaintext'])).code).toBe(0);
    expect((await kloset(['at', own, 'backup', tree])).code).toBe(0);
    const zip = path.join(dir, 'all.zip');
    const result = await kloset(['at', own, 'archive', '-output', zip, 'latest']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = await fresh('drive-names-out');
    await run('unzip', ['-q', zip, '-d', out]);
    expect(await fs.readFile(path.join(out, 'a_b'), 'utf8')).toBe('top\n');
    expect(await fs.readFile(path.join(out, 'd/c:d'), 'utf8')).toBe('below\n');
  });

  it('-output - writes the archive to standard output, the summary to standard error', async () => {
    const result = await archive(['-output', '-', `${id}:/var/www/index.html`]);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/^archived 1 file, 15 B from snapshot .* to standard output \(tar\)/);
    const file = path.join(work, 'piped.tar');
    await fs.writeFile(file, result.stdoutBytes);
    const out = await fresh('piped');
    await run('tar', ['-xf', file, '-C', out]);
    expect(await fs.readFile(path.join(out, 'var/www/index.html'), 'utf8')).toBe('<h1>hello</h1>\n');
  });

  it('-output - stopped by Ctrl-C says so, exits 130 and releases its lock', async () => {
    const { child, done } = startKloset(['at', store, 'archive', '-output', '-', id], {
      cwd: work,
      env: { XDG_CACHE_HOME: path.join(work, 'cache') },
    });
    // The reader stops reading once the archive has started: the writer then waits on a full pipe.
    await new Promise((resolve) => child.stdout!.once('data', resolve));
    child.stdout!.pause();
    await new Promise((resolve) => setTimeout(resolve, 500));
    child.kill('SIGINT');
    child.stdout!.resume();
    const result = await done;
    expectOneLineError(result, 'kloset: archive interrupted: the output is cut short');
    expect(result.code).toBe(130);
    expect(await fs.readdir(path.join(store, 'locks'))).toEqual([]);
  });

  it('-output - whose reader goes away ends as SIGPIPE would, silently, and releases its lock', async () => {
    const { child, done } = startKloset(['at', store, 'archive', '-output', '-', id], {
      cwd: work,
      env: { XDG_CACHE_HOME: path.join(work, 'cache') },
    });
    // As `| head -c 100`: the reader takes the first bytes and closes the pipe.
    await new Promise((resolve) => child.stdout!.once('data', resolve));
    child.stdout!.destroy();
    const result = await done;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(141);
    expect(await fs.readdir(path.join(store, 'locks'))).toEqual([]);
  });

  it('without -output, names the file after the snapshot, and does not replace one already there', async () => {
    const here = await fresh('cwd');
    const first = await archive(['--format', 'tarball', id], here);
    expect(first.code).toBe(0);
    const name = `kloset-${id}.tar.gz`;
    expect(await fs.readdir(here)).toEqual([name]);
    const before = await sha256File(path.join(here, name));
    const again = await archive(['--format', 'tarball', id], here);
    expectOneLineError(again, `kloset: ${name} exists: give -output to replace it or to write elsewhere`);
    expect(again.code).toBe(2);
    expect(await sha256File(path.join(here, name))).toBe(before);
  });

  it('replaces a file named by -output whole, keeping its mode and owner, as tar -cf over it does', async () => {
    const file = path.join(work, 'shared.tar');
    await fs.writeFile(file, 'an older archive\n', { mode: 0o640 });
    await fs.chmod(file, 0o640);
    await fs.chown(file, 1000, 1000);
    expect((await archive(['-output', file, `${id}:/etc`])).code).toBe(0);
    const stat = await fs.stat(file);
    expect([stat.mode & 0o7777, stat.uid, stat.gid]).toEqual([0o640, 1000, 1000]);
    expect(await tarMembers(file)).toContain('etc/app/app.conf');
  });

  it('writes a device in place rather than replacing it, and a full one is one line', async () => {
    const result = await archive(['-output', '/dev/full', id]);
    expectOneLineError(result, 'kloset: cannot write /dev/full: no space left on device');
    expect(result.code).toBe(1);
    expect((await fs.stat('/dev/full')).isCharacterDevice()).toBe(true);
    expect((await archive(['-output', '/dev/null', id])).code).toBe(0);
    expect((await fs.stat('/dev/null')).isCharacterDevice()).toBe(true);
  });

  it('refuses a directory, a missing directory and the store itself as the output', async () => {
    expectOneLineError(await archive(['-output', work, id]), `kloset: ${work}: is a directory`);
    expectOneLineError(await archive(['-output', path.join(work, 'nowhere/x.tar'), id]), /cannot write .*nowhere\/x\.tar: no such file or directory/);
    expectOneLineError(await archive(['-output', path.join(store, 'x.tar'), id]), /inside the store/);
    expect(await fs.readdir(store)).not.toContain('x.tar');
  });

  it("refuses an output that ends as a directory's name ('out/', 'x.tar/'), as tar and cp do, rather than write a file there", async () => {
    const dir = await fresh('slash');
    const missing = await archive(['-output', 'out/', id], dir);
    expect(missing.code).toBe(2);
    expectOneLineError(missing, 'kloset: out/: names a directory, not the archive to write');
    await fs.writeFile(path.join(dir, 'x.tar'), 'kept\n');
    expectOneLineError(await archive(['-output', 'x.tar/', id], dir), /x\.tar\/: names a directory/);
    expectOneLineError(await archive(['-output', 'new/.', id], dir), /new\/\.: names a directory/);
    expect((await fs.readdir(dir)).sort()).toEqual(['x.tar']);
    expect(await fs.readFile(path.join(dir, 'x.tar'), 'utf8')).toBe('kept\n');
  });
});

describe('archive of names that are not UTF-8', () => {
  it('writes them byte for byte, as GNU tar does, so tar extracts the names backed up', async () => {
    const dir = await fresh('latin1');
    const tree = path.join(dir, 'tree');
    const bytes = (text: string, ...raw: number[]) => Buffer.concat([Buffer.from(text), Buffer.from(raw)]);
    // Buffer paths: the names as a Latin-1 system would have written them.
    const sub = Buffer.concat([Buffer.from(`${tree}/`), bytes('caf', 0xe9)]);
    await fs.mkdir(sub, { recursive: true });
    await fs.writeFile(Buffer.concat([sub, Buffer.from('/'), bytes('r', 0xe9, 'sum'.charCodeAt(0))]), 'cv\n');
    await fs.symlink(bytes('cible', 0xff), Buffer.concat([Buffer.from(`${tree}/`), Buffer.from('link')]));
    const own = path.join(dir, 'store');
    expect((await kloset(['at', own, 'create', '-plaintext'])).code).toBe(0);
    expect((await kloset(['at', own, 'backup', tree])).code).toBe(0);
    const file = path.join(dir, 'latin1.tar');
    expect((await kloset(['at', own, 'archive', '-output', file])).code).toBe(0);
    const out = path.join(dir, 'out');
    await fs.mkdir(out);
    await run('tar', ['-xf', file, '-C', out]);
    const names = async (at: string) => (await fs.readdir(at, { encoding: 'buffer' })).map((n) => n.toString('hex')).sort();
    expect(await names(out)).toEqual(await names(tree));
    const outSub = Buffer.concat([Buffer.from(`${out}/`), bytes('caf', 0xe9)]);
    expect(await names(outSub as unknown as string)).toEqual(await names(sub as unknown as string));
    expect(await fs.readlink(path.join(out, 'link'), { encoding: 'buffer' })).toEqual(bytes('cible', 0xff));

    // A subtree named as it is typed: the shell passes the bytes, which the program receives with U+FFFD
    // for each stray one (passed so here). Its members keep the name backed up, as in the whole snapshot's archive.
    const subtree = path.join(dir, 'subtree.tar');
    const typed = await kloset(['at', own, 'archive', '-output', subtree, 'latest:/caf\uFFFD']);
    expect(typed.code).toBe(0);
    const subOut = path.join(dir, 'subtree-out');
    await fs.mkdir(subOut);
    await run('tar', ['-xf', subtree, '-C', subOut]);
    expect(await names(subOut)).toEqual([bytes('caf', 0xe9).toString('hex')]);
    const { stdout: members } = await run('tar', ['--quoting-style=literal', '-tf', subtree], { encoding: 'buffer' });
    expect(members.toString('latin1').split('\n').filter(Boolean).sort()).toEqual(['caf\u00e9/', 'caf\u00e9/r\u00e9s']);
  });
});

describe('archive of a damaged snapshot', () => {
  it('fails with one line and leaves the archive already at that name as it was', async () => {
    const file = path.join(work, 'damaged.tar');
    await fs.writeFile(file, 'the previous archive\n');
    const largest = (await packFiles(store)).sort((a, b) => b.size - a.size)[0];
    await flipByte(largest.file);
    const result = await archive(['-output', file, id]);
    expectOneLineError(result, /^kloset: var\/www\/video\.bin: .*authentication failed/);
    expect(result.code).not.toBe(0);
    expect(await fs.readFile(file, 'utf8')).toBe('the previous archive\n');
    // No half-written archive is left beside it either.
    expect((await fs.readdir(work)).filter((name) => name.includes('partial'))).toEqual([]);
  });

  it('to standard output, names the damaged file rather than blaming the output, and releases its lock', async () => {
    const result = await archive(['-output', '-', id]);
    expectOneLineError(result, /^kloset: var\/www\/video\.bin: .*authentication failed/);
    expect(result.code).toBe(1);
    expect(await fs.readdir(path.join(store, 'locks'))).toEqual([]);
  });
});
