/**
 * Paths typed with bytes that are not UTF-8 (`kloset backup $'/srv/caf\xe9'`)
 * name what they name, byte for byte, as tar, rsync and restic take them:
 * a backup's source, a restore's target, an archive, paths in a snapshot,
 * files of options. A store or a mount point so named is refused in one line.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nameToBytes, shownName } from '../../src/snapshot/names.js';
import { klosetTyped, tempDir, type CliResult } from '../helpers/cli.js';
import { expectOneLineError } from '../helpers/fixtures.js';

/** A path as the file system calls take it: the bytes a string with surrogate escapes stands for ('caf\udce9'). */
const bytes = (name: string) => nameToBytes(name);

/** Every entry under `root` by the hex of its relative path's bytes, with a file's content hash; nothing is decoded. */
async function treeBytes(root: string): Promise<Record<string, string>> {
  const items: Record<string, string> = {};
  const visit = async (rel: Buffer) => {
    const full = rel.length === 0 ? bytes(root) : Buffer.concat([bytes(root), Buffer.from('/'), rel]);
    const stat = await fs.lstat(full);
    items[rel.toString('hex')] = stat.isDirectory() ? 'directory' : createHash('sha256').update(await fs.readFile(full)).digest('hex');
    if (!stat.isDirectory()) return;
    for (const name of await fs.readdir(full, { encoding: 'buffer' })) await visit(rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]));
  };
  await visit(Buffer.alloc(0));
  return items;
}

/**
 * An extended attribute's calls on `full` by a text path, as the attribute binding takes it: through a
 * descriptor of its directory when its own name is text, else of itself (a directory).
 */
function throughDescriptor<T>(full: string, use: (textPath: string) => T): T {
  const name = path.basename(full);
  const [directory, last] = name.isWellFormed() ? [path.dirname(full), name] : [full, '.'];
  const fd = openSync(bytes(directory), constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    return use(`/proc/self/fd/${fd}/${last}`);
  } finally {
    closeSync(fd);
  }
}

const note = (full: string) => throughDescriptor(full, (at) => getAttributeSync(at, 'user.note')?.toString());

/** Whether `name` is in `dir`, by its bytes. */
async function holds(dir: string, name: string): Promise<boolean> {
  return (await fs.readdir(bytes(dir), { encoding: 'buffer' })).some((entry) => entry.equals(bytes(name)));
}

let work: string;
let source: string;
let store: string;
let backup: CliResult;
const env = () => ({ XDG_CACHE_HOME: path.join(work, 'cache') });
const kloset = (args: string[]) => klosetTyped(args, { env: env() });

beforeAll(async () => {
  work = await tempDir('kloset-byteargs-');
  // The source itself is named in Latin-1, and so are names inside it. Its path is long enough that
  // the snapshot's header could not keep it as text by chance (MessagePack encodes a long string whole).
  source = path.join(work, 'caf\udce9 and the other documents of the old file server');
  await fs.mkdir(bytes(path.join(source, 'r\udce9sum\udce9')), { recursive: true });
  await fs.writeFile(bytes(path.join(source, 'plain.txt')), 'plain\n');
  await fs.writeFile(bytes(path.join(source, 'r\udce9sum\udce9', 'na\udcefve.txt')), 'in a Latin-1 directory\n');
  // Two names that show alike, with U+FFFD in place of one byte each.
  await fs.writeFile(bytes(path.join(source, 'twin\udce8')), 'first twin\n');
  await fs.writeFile(bytes(path.join(source, 'twin\udce9')), 'second twin\n');
  // Attributes on entries whose paths are not text: the source itself, a file named in text within it,
  // a directory named in Latin-1, and a file so named (which the binding cannot reach).
  for (const [rel, value] of [['', 'the source'], ['plain.txt', 'a text name'], ['r\udce9sum\udce9', 'a Latin-1 directory']]) {
    throughDescriptor(path.join(source, rel), (at) => setAttributeSync(at, 'user.note', value));
  }
  store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
  backup = await kloset(['at', store, 'backup', source]);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('paths typed with bytes that are not UTF-8', () => {
  it('back up the directory they name, shown with U+FFFD', () => {
    // The three files whose own names are not text are the only entries whose attributes the binding cannot reach.
    expect(backup.stderr).toBe(
      'warning: 3 entries whose names are not UTF-8 text were backed up without extended attributes, which kloset reads by text path only\n',
    );
    expect(backup.code).toBe(0);
    expect(backup.stdout).toContain(`created snapshot`);
    expect(backup.stdout).toContain(` of ${shownName(source)}: 4 files, 2 directories`);
  });

  it("are kept as the snapshot's source byte for byte, so the next backup finds its parent", async () => {
    const again = await kloset(['at', store, 'backup', source]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/\(0 B added to the store\)/);
    const snapshots = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { id: string; source: string; parent?: string }[];
    expect(snapshots.map((s) => s.source)).toEqual([source, source]);
    expect(snapshots[1].parent).toBe(snapshots[0].id);
    const listed = await kloset(['at', store, 'ls']);
    expect(listed.stdout).toContain(shownName(source));
  });

  it('find paths in a snapshot byte for byte, even two that show alike', async () => {
    expect((await kloset(['at', store, 'cat', 'latest:/twin\udce8'])).stdout).toBe('first twin\n');
    expect((await kloset(['at', store, 'cat', 'latest:/twin\udce9'])).stdout).toBe('second twin\n');
    expect((await kloset(['at', store, 'cat', 'latest:/r\udce9sum\udce9/na\udcefve.txt'])).stdout).toBe('in a Latin-1 directory\n');
    const listed = await kloset(['at', store, 'ls', 'latest:/r\udce9sum\udce9']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/ na\uFFFDve\.txt\n$/);
    // As before, the shown form finds the one name that shows so, and neither of two.
    expect((await kloset(['at', store, 'cat', 'latest:/r\uFFFDsum\uFFFD/na\uFFFDve.txt'])).stdout).toBe('in a Latin-1 directory\n');
    expect((await kloset(['at', store, 'cat', 'latest:/twin\uFFFD'])).code).not.toBe(0);
  });

  it('restore into the target they name, names and contents byte for byte', async () => {
    const target = path.join(work, 'restored\udcff');
    const restored = await kloset(['at', store, 'restore', '-to', target, 'latest']);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(restored.stdout).toContain(`to ${path.join(work, 'restored\uFFFD')} in`);
    expect(await holds(work, 'restored\udcff')).toBe(true);
    expect(await holds(work, 'restored\uFFFD')).toBe(false);
    const expected = await treeBytes(source);
    expect(Object.keys(expected)).toContain(Buffer.from('twin\xe8', 'latin1').toString('hex'));
    expect(await treeBytes(target)).toEqual(expected);
  });

  it('keep the extended attributes of what lies below them, backed up and restored', async () => {
    const target = path.join(work, 'attributes\udce9');
    const restored = await kloset(['at', store, 'restore', '-to', target, 'latest']);
    expect(restored.stderr).toBe('');
    expect(note(target)).toBe('the source');
    expect(note(path.join(target, 'plain.txt'))).toBe('a text name');
    expect(note(path.join(target, 'r\udce9sum\udce9'))).toBe('a Latin-1 directory');
  });

  it('restore the path they name in a snapshot, and leave out what an exact pattern names', async () => {
    const target = path.join(work, 'part\udce9');
    const restored = await kloset(['at', store, 'restore', '-to', target, '-exclude', 'twin\udce8', 'latest:/']);
    expect(restored.stderr).toBe('');
    expect(await holds(target, 'twin\udce9')).toBe(true);
    expect(await holds(target, 'twin\udce8')).toBe(false);
    const one = path.join(work, 'one\udce9');
    expect((await kloset(['at', store, 'restore', '-to', one, 'latest:/r\udce9sum\udce9'])).code).toBe(0);
    expect(await fs.readFile(bytes(path.join(one, 'na\udcefve.txt')), 'utf8')).toBe('in a Latin-1 directory\n');
  });

  it('write the archive they name', async () => {
    const archive = path.join(work, 'caf\udce9.tar');
    const written = await kloset(['at', store, 'archive', '-output', archive, 'latest:/r\udce9sum\udce9']);
    expect(written.stderr).toBe('');
    expect(written.code).toBe(0);
    expect(await holds(work, 'caf\udce9.tar')).toBe(true);
    expect(await holds(work, 'caf\uFFFD.tar')).toBe(false);
    expect((await fs.readdir(work)).filter((name) => name.endsWith('.partial'))).toEqual([]);
    const members = execFileSync('tar', ['--quoting-style=literal', '-tf', '-'], { input: await fs.readFile(bytes(archive)), encoding: 'latin1' });
    expect(members.split('\n').filter(Boolean).sort()).toEqual(['r\xe9sum\xe9/', 'r\xe9sum\xe9/na\xefve.txt']);
  });

  it('read the pattern and passphrase files they name', async () => {
    const patterns = path.join(work, 'patterns\udce9');
    await fs.writeFile(bytes(patterns), 'twin*\n');
    const target = path.join(work, 'selected');
    const restored = await kloset(['at', store, 'restore', '-to', target, '-exclude-file', patterns, 'latest']);
    expect(restored.code).toBe(0);
    expect((await fs.readdir(target)).sort()).toEqual(['plain.txt', 'r\uFFFDsum\uFFFD']);
    const passphraseFile = path.join(work, 'passphrase\udce9');
    await fs.writeFile(bytes(passphraseFile), 'from a Latin-1 file\n');
    const encrypted = path.join(work, 'encrypted');
    expect((await kloset(['--passphrase-file', passphraseFile, 'at', encrypted, 'create'])).code).toBe(0);
    const listed = await klosetTyped(['--passphrase-file', passphraseFile, 'at', encrypted, 'ls'], { env: { ...env(), KLOSET_PASSPHRASE: 'not this one' } });
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
  });

  it('find a store within the source through a symbolic link, and leave it out', async () => {
    const other = path.join(work, 'other\udce9');
    await fs.mkdir(bytes(other));
    await fs.writeFile(bytes(path.join(other, 'kept.txt')), 'kept\n');
    await fs.symlink(bytes(other), path.join(work, 'link'));
    const inside = path.join(work, 'link', 'store');
    expect((await kloset(['at', inside, 'create', '-plaintext'])).code).toBe(0);
    const backedUp = await kloset(['at', inside, 'backup', other]);
    expect(backedUp.code).toBe(0);
    expect(backedUp.stderr).toBe('warning: /store: the store itself, left out\n');
    const listed = await kloset(['at', inside, 'ls', 'latest:/']);
    expect(listed.stdout.trim().split('\n').map((line) => line.split(' ').pop())).toEqual(['kept.txt']);
  });

  it('are refused for a store, in one line, and nothing is created', async () => {
    const refused = await kloset(['at', path.join(work, 'store\udce9'), 'create', '-plaintext']);
    expect(refused.code).toBe(2);
    expectOneLineError(refused, `kloset: ${path.join(work, 'store\uFFFD')}: a store directory's path must be UTF-8 text`);
    expect(await holds(work, 'store\udce9')).toBe(false);
    expect(await holds(work, 'store\uFFFD')).toBe(false);
  });

  it('are refused for a store named by KLOSET_REPOSITORY, rather than another directory used', async () => {
    const refused = await klosetTyped(['create', '-plaintext'], { env: env(), variables: { KLOSET_REPOSITORY: path.join(work, 'default\udce9') } });
    expect(refused.code).toBe(2);
    expectOneLineError(refused, `kloset: ${path.join(work, 'default\uFFFD')}: a store directory's path must be UTF-8 text`);
    expect(await holds(work, 'default\uFFFD')).toBe(false);
  });

  it('are refused for a mount point, in one line', async () => {
    const mountPoint = path.join(work, 'mnt\udce9');
    await fs.mkdir(bytes(mountPoint));
    const refused = await kloset(['at', store, 'mount', mountPoint]);
    expect(refused.code).toBe(2);
    expectOneLineError(refused, `kloset: ${path.join(work, 'mnt\uFFFD')}: a mount point's path must be UTF-8 text`);
  });

  it('are refused as a tag, which is text', async () => {
    const refused = await kloset(['at', store, 'backup', '-tag', 'caf\udce9', source]);
    expect(refused.code).toBe(2);
    expectOneLineError(refused, 'kloset: caf\uFFFD: not UTF-8 text: a host name or a tag is text');
  });
});
