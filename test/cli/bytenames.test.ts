/**
 * Names that are not UTF-8 (Latin-1 from an old archive, a stray byte) are
 * backed up and restored byte for byte, as tar and restic keep them; they
 * show, and are typed back, with U+FFFD, through the CLI and the mount.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, tempDir, type CliResult } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';
import { mountCli, unmountAll } from '../helpers/mount.js';
import { startUi } from '../ui/fixture.js';

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const under = (dir: string, ...names: Buffer[]) => Buffer.concat([Buffer.from(dir), ...names.flatMap((n) => [Buffer.from('/'), n])]);

interface ByteItem {
  kind: string;
  mode: number;
  size: number;
  sha256?: string;
  target?: string;
  ino: number;
}

/** Every entry under `root` by the hex of its relative path's bytes; paths are never decoded. */
async function describeBytes(root: string): Promise<Record<string, ByteItem>> {
  const items: Record<string, ByteItem> = {};
  const visit = async (rel: Buffer) => {
    const full = rel.length === 0 ? Buffer.from(root) : under(root, rel);
    const stat = await fs.lstat(full);
    const item: ByteItem = { kind: 'other', mode: stat.mode, size: stat.isDirectory() ? 0 : stat.size, ino: stat.ino };
    if (stat.isSymbolicLink()) Object.assign(item, { kind: 'symlink', target: (await fs.readlink(full, { encoding: 'buffer' })).toString('hex') });
    else if (stat.isFile()) Object.assign(item, { kind: 'file', sha256: createHash('sha256').update(await fs.readFile(full)).digest('hex') });
    else if (stat.isDirectory()) item.kind = 'directory';
    items[rel.toString('hex')] = item;
    if (stat.isDirectory()) {
      for (const name of await fs.readdir(full, { encoding: 'buffer' })) await visit(rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]));
    }
  };
  await visit(Buffer.alloc(0));
  return items;
}

/** The same tree with inode numbers replaced by which entries share one, which is what a restore must keep. */
function linkGroups(items: Record<string, ByteItem>): Record<string, Omit<ByteItem, 'ino'> & { sharedWith: string[] }> {
  const byIno = new Map<number, string[]>();
  for (const [rel, item] of Object.entries(items)) if (item.kind === 'file') byIno.set(item.ino, [...(byIno.get(item.ino) ?? []), rel]);
  return Object.fromEntries(
    Object.entries(items).map(([rel, { ino, ...rest }]) => [rel, { ...rest, sharedWith: (byIno.get(ino) ?? []).filter((other) => other !== rel).sort() }]),
  );
}

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
let backup: CliResult;

beforeAll(async () => {
  work = await tempDir('kloset-bytenames-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  source = path.join(work, 'source');
  await fs.mkdir(under(source, latin1('caf\xe9')), { recursive: true });
  await fs.writeFile(under(source, latin1('caf\xe9'), latin1('na\xefve.txt')), 'in a Latin-1 directory\n');
  await fs.writeFile(under(source, Buffer.from([0x63, 0x75, 0x74, 0xe2, 0x82])), 'a cut sequence\n');
  await fs.writeFile(path.join(source, 'plain.txt'), 'plain\n');
  await fs.link(path.join(source, 'plain.txt'), under(source, latin1('li\xe9n')));
  await fs.symlink(latin1('caf\xe9/na\xefve.txt'), under(source, latin1('link\xff')));
  // Two names that show alike, with U+FFFD in place of one byte each.
  await fs.writeFile(under(source, latin1('twin\xe8')), 'first twin\n');
  await fs.writeFile(under(source, latin1('twin\xe9')), 'second twin\n');
  // Node makes no FIFO, and a command's arguments are text: the shell's printf gives the byte.
  execFileSync('sh', ['-c', 'mkfifo "$(printf "fifo\\351")" "$(printf "caf\\351/pipe\\351")"'], { cwd: source });
  store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  backup = await kloset(['at', store, 'backup', source]);
});

afterAll(async () => {
  await unmountAll();
  await fs.rm(work, { recursive: true, force: true });
});

describe('names that are not UTF-8', () => {
  it('are backed up, with a single note that their extended attributes were not read', () => {
    expect(backup.code).toBe(0);
    expect(backup.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^warning: \d+ entries whose names are not UTF-8 text were backed up without extended attributes\b/),
    ]);
    expect(backup.stdout).not.toMatch(/errors/);
  });

  it('show with U+FFFD and are found by that name', async () => {
    const listed = await kloset(['at', store, 'ls', '-R', 'latest:/']);
    expect(listed.code).toBe(0);
    const names = listed.stdout.trim().split('\n').map((line) => line.split(' ').pop());
    expect(names).toEqual(expect.arrayContaining(['caf\uFFFD/', 'caf\uFFFD/na\uFFFDve.txt', 'cut\uFFFD', 'li\uFFFDn', 'plain.txt']));
    const cat = await kloset(['at', store, 'cat', 'latest:/caf\uFFFD/na\uFFFDve.txt']);
    expect(cat.stdout).toBe('in a Latin-1 directory\n');
    expect((await kloset(['at', store, 'cat', 'latest:/cut\uFFFD'])).stdout).toBe('a cut sequence\n');
  });

  it('are given exactly by ls --json, each stray byte as a \\udcXX escape', async () => {
    const listed = await kloset(['at', store, 'ls', '--json', 'latest:/']);
    const names = (JSON.parse(listed.stdout) as { name: string }[]).map((e) => e.name);
    expect(names).toEqual(expect.arrayContaining(['caf\udce9', 'cut\udce2\udc82', 'link\udcff', 'plain.txt']));
  });

  it('that show alike are found by neither shown name, rather than one taken for the other', async () => {
    const cat = await kloset(['at', store, 'cat', 'latest:/twin\uFFFD']);
    expect(cat.code).not.toBe(0);
    expect(cat.stderr).toMatch(/^kloset: \/twin\uFFFD: no such file or directory in snapshot [0-9a-f]{8}\n$/);
  });

  it('are restored byte for byte: names, link targets, hard links, FIFOs and contents', async () => {
    const target = path.join(work, 'restored');
    const restored = await kloset(['at', store, 'restore', '-to', target, 'latest']);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    const expected = linkGroups(await describeBytes(source));
    expect(Object.keys(expected)).toContain(Buffer.from('fifo\xe9', 'latin1').toString('hex'));
    expect(linkGroups(await describeBytes(target))).toEqual(expected);
  });

  it('are matched by patterns in their shown form, as they are typed', async () => {
    const target = path.join(work, 'selected');
    const selected = await kloset(['at', store, 'restore', '-to', target, '-include', 'caf\uFFFD', 'latest']);
    expect(selected.stderr).toBe('');
    expect((await fs.readdir(target, { encoding: 'buffer' })).map((n) => n.toString('latin1'))).toEqual(['caf\xe9']);
    const located = await kloset(['at', store, 'locate', 'na\uFFFDve.txt']);
    expect(located.code).toBe(0);
    expect(located.stdout).toMatch(/:\/caf\uFFFD\/na\uFFFDve\.txt$/m);
  });

  it('are matched on an unchanged re-backup, so no file is opened again', async () => {
    const trace = path.join(work, 'rebackup.trace');
    const rebackup = spawnSync('strace', ['-f', '-qq', '-e', 'trace=openat', '-o', trace, BIN, 'at', store, 'backup', source], {
      env: { ...process.env, XDG_CACHE_HOME: path.join(work, 'cache'), KLOSET_PASSPHRASE: 'test passphrase' },
      encoding: 'utf8',
    });
    expect(rebackup.status).toBe(0);
    expect(rebackup.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^warning: \d+ entries whose names are not UTF-8 text were backed up/)]);
    const opened = (await fs.readFile(trace, 'latin1')).split('\n').filter((line) => line.includes(source) && !/O_DIRECTORY/.test(line));
    // strace writes the bytes that are not text as octal escapes: caf\351/na\357ve.txt.
    expect(opened.filter((line) => /\\3[0-7]{2}|\.txt|\.bin/.test(line))).toEqual([]);
  });

  it('show with U+FFFD through a mount, where they are read and followed', async () => {
    const mountPoint = path.join(work, 'mnt');
    await fs.mkdir(mountPoint);
    const mounted = await mountCli(store, mountPoint);
    try {
      const root = path.join(mountPoint, 'latest');
      expect((await fs.readdir(root)).sort()).toEqual(
        ['caf\uFFFD', 'cut\uFFFD', 'fifo\uFFFD', 'li\uFFFDn', 'link\uFFFD', 'plain.txt', 'twin\uFFFD', 'twin\uFFFD'].sort(),
      );
      expect(await fs.readFile(path.join(root, 'caf\uFFFD/na\uFFFDve.txt'), 'utf8')).toBe('in a Latin-1 directory\n');
      expect(await fs.readlink(path.join(root, 'link\uFFFD'))).toBe('caf\uFFFD/na\uFFFDve.txt');
      expect(await fs.readFile(path.join(root, 'link\uFFFD'), 'utf8')).toBe('in a Latin-1 directory\n');
      expect((await fs.lstat(path.join(root, 'fifo\uFFFD'))).size).toBe(0);
      // Two names that show alike: neither is reached, rather than one served for the other.
      await expect(fs.readFile(path.join(root, 'twin\uFFFD'))).rejects.toThrow(/ENOENT/);
    } finally {
      await mounted.stop();
    }
  });

  it('show with U+FFFD in the viewer, which serves them by that name', async () => {
    const ui = await startUi(store, { XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') });
    try {
      const get = (target: string) => fetch(new URL(target, ui.base), { headers: { Authorization: `Bearer ${ui.token}` } });
      const snapshots = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { id: string }[];
      const snapshot = `/api/snapshots/${snapshots[snapshots.length - 1].id}`;
      const tree = await get(`${snapshot}/tree?path=${encodeURIComponent('/caf\uFFFD')}`);
      expect(tree.status).toBe(200);
      const listed = (await tree.json()) as { entries: { name: string; path: string }[] };
      expect(listed.entries.map((e) => [e.name, e.path])).toEqual([
        ['na\uFFFDve.txt', '/caf\uFFFD/na\uFFFDve.txt'],
        ['pipe\uFFFD', '/caf\uFFFD/pipe\uFFFD'],
      ]);
      const content = await get(`${snapshot}/content?path=${encodeURIComponent(listed.entries[0].path)}&download=1`);
      expect(content.status).toBe(200);
      expect(await content.text()).toBe('in a Latin-1 directory\n');
      expect(decodeURIComponent(content.headers.get('content-disposition')!.split("UTF-8''")[1])).toBe('na\uFFFDve.txt');
      const archive = Buffer.from(await (await get(`${snapshot}/archive?path=${encodeURIComponent('/caf\uFFFD')}`)).arrayBuffer());
      const tarFile = path.join(work, 'cafe.tar');
      await fs.writeFile(tarFile, archive);
      // Its tar carries the names' bytes, as GNU tar writes them (the pax path record).
      const listing = execFileSync('tar', ['--quoting-style=literal', '-tf', tarFile], { encoding: 'latin1' });
      expect(listing.split('\n').filter(Boolean).sort()).toEqual(['caf\xe9/', 'caf\xe9/na\xefve.txt', 'caf\xe9/pipe\xe9']);
      // The escaped form ls --json gives is not a path: a clear 400, not a server error.
      const restore = await fetch(new URL('/api/restore', ui.base), {
        method: 'POST',
        headers: { Authorization: `Bearer ${ui.token}`, 'Content-Type': 'application/json', Origin: ui.base },
        body: JSON.stringify({ snapshot: snapshots[snapshots.length - 1].id, path: '/caf\udce9', destination: path.join(work, 'api-restore') }),
      });
      expect(restore.status).toBe(400);
    } finally {
      const stopped = await ui.stop();
      expect(stopped.stderr).toBe('');
    }
  });
});
