/**
 * A backed-up tree, mounted through FUSE, reads as the tree itself: names,
 * types, sizes, modes, owners, mtimes, symlinks, extended attributes and
 * bytes, whether one snapshot, one subtree or every snapshot is mounted; and
 * nothing can be written to it.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { getAttribute, listAttributes, setAttribute } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { MiB, klosetWith, writeRandomFile } from '../helpers/fixtures.js';
import { builtLibrary, isMountPoint, mountCli, mountTable, mountType, unmountAll, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);
const PASSPHRASE = 'test passphrase';
/** Not a multiple of anything: the last chunk ends mid-page. */
const BIG_SIZE = 20 * MiB + 12_345;
const COMMENT = Buffer.from('backed up with its comment');
const BINARY_XATTR = Buffer.from([0, 1, 2, 0xff, 0xfe, 0]);

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
const env: NodeJS.ProcessEnv = {};
/** Snapshot ids: the full tree (tag nightly), then a small second source (tag weekly). */
let treeId: string;
let otherId: string;

/** A past, whole-millisecond time for each path, so a mount showing "now" or the wrong file's time shows. */
function pastTime(i: number): Date {
  return new Date(Date.UTC(2022, 0, 1) + i * 86_400_123 + 456);
}

/**
 * source/
 *   big.bin          20 MiB + 12345 B random
 *   notes.txt        text
 *   empty
 *   secret.txt       0600
 *   run.sh           0755
 *   tagged.txt       user.comment and user.binary extended attributes
 *   link -> notes.txt, dangling -> does/not/exist
 *   sub/             0750: readme.md, deeper/leaf.txt, up -> ../notes.txt
 *   many/d0..d4/     40 small files each (0..12 KiB); many/d0/a/b/c/deep.txt
 */
async function makeTree(root: string): Promise<void> {
  await fs.mkdir(path.join(root, 'sub/deeper'), { recursive: true });
  await fs.mkdir(path.join(root, 'many/d0/a/b/c'), { recursive: true });
  await writeRandomFile(path.join(root, 'big.bin'), BIG_SIZE);
  await fs.writeFile(path.join(root, 'notes.txt'), 'first line\nsecond line: ünïcödé\n'.repeat(100));
  await fs.writeFile(path.join(root, 'empty'), '');
  await fs.writeFile(path.join(root, 'secret.txt'), 'secret\n');
  await fs.writeFile(path.join(root, 'run.sh'), '#!/bin/sh\necho hello\n');
  await fs.writeFile(path.join(root, 'tagged.txt'), 'has extended attributes\n');
  await setAttribute(path.join(root, 'tagged.txt'), 'user.comment', COMMENT);
  await setAttribute(path.join(root, 'tagged.txt'), 'user.binary', BINARY_XATTR);
  await fs.symlink('notes.txt', path.join(root, 'link'));
  await fs.symlink('does/not/exist', path.join(root, 'dangling'));
  await fs.writeFile(path.join(root, 'sub/readme.md'), '# sub\n');
  await fs.writeFile(path.join(root, 'sub/deeper/leaf.txt'), 'leaf\n');
  await fs.symlink('../notes.txt', path.join(root, 'sub/up'));
  await fs.writeFile(path.join(root, 'many/d0/a/b/c/deep.txt'), 'deep\n');
  for (let d = 0; d < 5; d++) {
    await fs.mkdir(path.join(root, `many/d${d}`), { recursive: true });
    for (let f = 0; f < 40; f++) {
      await fs.writeFile(path.join(root, `many/d${d}/file-${String(f).padStart(2, '0')}.dat`), randomBytes(randomInt(0, 12 * 1024)));
    }
  }
  await fs.chmod(path.join(root, 'secret.txt'), 0o600);
  await fs.chmod(path.join(root, 'run.sh'), 0o755);
  await fs.chmod(path.join(root, 'sub'), 0o750);
  // Times last, deepest first: creating an entry changes its directory's mtime.
  const all = await walk(root);
  all.sort((a, b) => b.split('/').length - a.split('/').length || a.localeCompare(b));
  for (const [i, rel] of all.entries()) await fs.lutimes(path.join(root, rel), pastTime(i), pastTime(i));
}

/** Every path under root, relative ('.' for the root), in no particular order. */
async function walk(root: string, rel = '.'): Promise<string[]> {
  const out = [rel];
  const full = path.join(root, rel);
  if ((await fs.lstat(full)).isDirectory()) {
    for (const name of await fs.readdir(full)) out.push(...(await walk(root, rel === '.' ? name : path.join(rel, name))));
  }
  return out;
}

interface Listed {
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Permission bits; not for symlinks, which Linux shows as 0777. */
  mode?: number;
  uid: number;
  gid: number;
  /** Files and symlinks; a directory's size is the file system's business. */
  size?: number;
  mtime: number;
  target?: string;
}

/** What `ls -lR` shows of a tree, by relative path: lstat, readdir and readlink, no file contents. */
async function listing(root: string): Promise<Record<string, Listed>> {
  const out: Record<string, Listed> = {};
  for (const rel of await walk(root)) {
    const full = path.join(root, rel);
    const st = await fs.lstat(full);
    const base = { uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
    if (st.isSymbolicLink()) out[rel] = { type: 'symlink', ...base, size: st.size, target: await fs.readlink(full) };
    else if (st.isDirectory()) out[rel] = { type: 'directory', mode: st.mode & 0o7777, ...base };
    else if (st.isFile()) out[rel] = { type: 'file', mode: st.mode & 0o7777, ...base, size: st.size };
    else out[rel] = { type: 'other', ...base };
  }
  return out;
}

/** `find` itself: path, type, mode, owner, size (not of directories), whole-second mtime, link target. */
async function findListing(root: string): Promise<string[]> {
  const { stdout } = await run('find', [root, '-printf', '%P\\t%y\\t%m\\t%U:%G\\t%s\\t%T@\\t%l\\n'], { maxBuffer: 16 * MiB });
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [rel, type, mode, owner, size, mtime, target] = line.split('\t');
      return [rel, type, mode, owner, type === 'd' ? '-' : size, Math.floor(Number(mtime)), target].join('\t');
    })
    .sort();
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const block of (await fs.open(file)).createReadStream()) hash.update(block);
  return hash.digest('hex');
}

/** Copies with the real `cp`, as a user would. */
async function cp(from: string, to: string): Promise<void> {
  await run('cp', [from, to]);
}

/** Error code of a rejected operation ('EROFS'), or 'ok'. */
async function codeOf(work: () => Promise<unknown>): Promise<string> {
  try {
    await work();
    return 'ok';
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    // @napi-rs/xattr says "Read-only file system (os error 30)" with code GenericFailure.
    const errno = /\(os error (\d+)\)/.exec(message ?? '');
    if (errno) return osConstants.errno.EROFS === Number(errno[1]) ? 'EROFS' : `errno ${errno[1]}`;
    return code ?? String(err);
  }
}

beforeAll(async () => {
  work = await tempDir('kloset-mount-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  env.XDG_CACHE_HOME = path.join(work, 'cache');
  env.KLOSET_PASSPHRASE = PASSPHRASE;
  kloset = klosetWith(env);
  await fs.mkdir(source);
  await makeTree(source);
  const other = path.join(work, 'other');
  await fs.mkdir(other);
  await fs.writeFile(path.join(other, 'marker.txt'), 'the second snapshot\n');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  const first = await kloset(['at', store, 'backup', source, '--tag', 'nightly']);
  expect(first.code, first.stderr).toBe(0);
  treeId = /created snapshot ([0-9a-f]{8})/.exec(first.stdout)![1];
  // by-date names are to the second: keep the two snapshots in different seconds.
  await new Promise((r) => setTimeout(r, 1100));
  const second = await kloset(['at', store, 'backup', other, '--tag', 'weekly']);
  expect(second.code, second.stderr).toBe(0);
  otherId = /created snapshot ([0-9a-f]{8})/.exec(second.stdout)![1];
}, 120_000);

afterAll(async () => {
  await unmountAll();
  await fs.rm(work, { recursive: true, force: true });
});

describe('one snapshot mounted', () => {
  let mnt: string;
  let mount: MountedCli;
  let usableAt: number;

  beforeAll(async () => {
    mnt = path.join(work, 'mnt-one');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt, [treeId], { env });
    await fs.readdir(mnt);
    usableAt = performance.now();
  });

  afterAll(async () => {
    await mount?.stop();
  });

  it('is usable within 5 s of starting the command, and at once when it says "mounted"', () => {
    const spawnToUsable = usableAt - mount.spawnedAt;
    const printedToUsable = usableAt - mount.printedAt;
    console.log(
      `mount timing: spawn → "mounted" ${(mount.printedAt - mount.spawnedAt).toFixed(0)} ms, ` +
        `"mounted" → first readdir answered ${printedToUsable.toFixed(0)} ms, spawn → usable ${spawnToUsable.toFixed(0)} ms`,
    );
    expect(mount.stdout()).toMatch(new RegExp(`^mounted snapshot ${treeId} at ${mnt}; Ctrl-C or SIGTERM unmounts$`, 'm'));
    expect(spawnToUsable).toBeLessThan(5_000);
    expect(printedToUsable).toBeLessThan(1_000);
  });

  it('is a kloset FUSE mount, read-only for the kernel and for `test -w`', async () => {
    expect(await mountType(mnt)).toBe('fuse.kloset');
    const entry = (await mountTable()).reverse().find((m) => m.mountpoint === path.resolve(mnt));
    expect(entry?.options.split(',')).toContain('ro');
    await expect(fs.access(path.join(mnt, 'notes.txt'), constants.W_OK)).rejects.toThrow(/EROFS/);
  });

  it('lists like the source tree: names, types, sizes, modes, owners, mtimes, symlink targets', async () => {
    expect(await listing(mnt)).toEqual(await listing(source));
  });

  it('shows the same tree to `find`', async () => {
    const expected = await findListing(source);
    expect(expected.length).toBeGreaterThan(200);
    expect(await findListing(mnt)).toEqual(expected);
  });

  it('stats files through symlinks like the source (sizes, modes, mtimes)', async () => {
    for (const rel of ['big.bin', 'notes.txt', 'empty', 'secret.txt', 'run.sh', 'link', 'sub/up', 'many/d0/a/b/c/deep.txt']) {
      const [a, b] = [await fs.stat(path.join(mnt, rel)), await fs.stat(path.join(source, rel))];
      expect({ rel, size: a.size, mode: a.mode, mtime: Math.floor(a.mtimeMs / 1000) }).toEqual({
        rel,
        size: b.size,
        mode: b.mode,
        mtime: Math.floor(b.mtimeMs / 1000),
      });
    }
    await expect(fs.stat(path.join(mnt, 'dangling'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(fs.lstat(path.join(mnt, 'no-such-file'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('answers reads at 200 random offsets, across chunk boundaries and at the end, with the source bytes', async () => {
    // Where big.bin's chunks start, from the snapshot itself.
    const lib = await builtLibrary();
    const previousCache = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = env.XDG_CACHE_HOME;
    let boundaries: number[];
    try {
      const repository = await lib.Repository.open(await openLocalStore(store), async () => PASSPHRASE);
      const header = await lib.resolveSnapshot(repository, treeId, (damaged) => {
        throw damaged;
      });
      const reader = new lib.SnapshotReader(repository, header);
      const content = await reader.openFile(await reader.lookup('/big.bin'));
      boundaries = [...content.offsets].slice(1, -1);
    } finally {
      process.env.XDG_CACHE_HOME = previousCache;
    }
    expect(boundaries.length).toBeGreaterThan(4);

    const reads: [number, number][] = [
      [0, 1],
      [BIG_SIZE - 1, 1],
      [BIG_SIZE - 17, 64], // short read at the end
      [BIG_SIZE - 300_000, 300_000],
      [BIG_SIZE, 10], // at the end: nothing
    ];
    for (const b of boundaries) reads.push([b - 1, 2], [b - randomInt(1, 70_000), randomInt(70_000, 200_000)]);
    while (reads.length < 200) reads.push([randomInt(0, BIG_SIZE), randomInt(1, 1.5 * MiB)]);
    // Not in file order: the reader must not rely on a sequential pattern.
    reads.sort(() => Math.random() - 0.5);

    const mounted = await fs.open(path.join(mnt, 'big.bin'), 'r');
    const original = await fs.open(path.join(source, 'big.bin'), 'r');
    try {
      for (const [position, length] of reads) {
        const [got, want] = [Buffer.alloc(length), Buffer.alloc(length)];
        const a = await mounted.read(got, 0, length, position);
        const b = await original.read(want, 0, length, position);
        expect({ position, length, bytesRead: a.bytesRead }).toEqual({ position, length, bytesRead: b.bytesRead });
        if (!got.subarray(0, a.bytesRead).equals(want.subarray(0, b.bytesRead))) {
          expect.fail(`bytes differ for a read of ${length} at ${position}`);
        }
      }
    } finally {
      await mounted.close();
      await original.close();
    }
  });

  it('gives `cp` of the large file identical bytes', async () => {
    const copy = path.join(work, 'big-copy.bin');
    await cp(path.join(mnt, 'big.bin'), copy);
    expect((await fs.stat(copy)).size).toBe(BIG_SIZE);
    expect(await sha256(copy)).toBe(await sha256(path.join(source, 'big.bin')));
  });

  it('gives `cp -r` of a directory of small files identical bytes', async () => {
    const copy = path.join(work, 'many-copy');
    await run('cp', ['-r', path.join(mnt, 'many'), copy]);
    for (const rel of await walk(path.join(source, 'many'))) {
      const original = path.join(source, 'many', rel);
      if (!(await fs.lstat(original)).isFile()) continue;
      expect((await fs.readFile(path.join(copy, rel))).equals(await fs.readFile(original)), rel).toBe(true);
    }
  });

  it('reads the text file, the empty file and a file through a symlink', async () => {
    expect(await fs.readFile(path.join(mnt, 'notes.txt'), 'utf8')).toBe(await fs.readFile(path.join(source, 'notes.txt'), 'utf8'));
    expect((await fs.readFile(path.join(mnt, 'empty'))).length).toBe(0);
    expect(await fs.readFile(path.join(mnt, 'sub/up'), 'utf8')).toBe(await fs.readFile(path.join(source, 'notes.txt'), 'utf8'));
  });

  it("shows a file's extended attributes as the source had them", async () => {
    const file = path.join(mnt, 'tagged.txt');
    expect((await listAttributes(file)).sort()).toEqual(['user.binary', 'user.comment']);
    expect(Buffer.from((await getAttribute(file, 'user.comment'))!)).toEqual(COMMENT);
    expect(Buffer.from((await getAttribute(file, 'user.binary'))!)).toEqual(BINARY_XATTR);
    expect(await listAttributes(path.join(mnt, 'notes.txt'))).toEqual([]);
  });

  it('refuses every kind of write with EROFS', async () => {
    const at = (rel: string) => path.join(mnt, rel);
    const results = {
      create: await codeOf(() => fs.writeFile(at('new-file'), 'x')),
      openForWriting: await codeOf(async () => (await fs.open(at('notes.txt'), constants.O_WRONLY)).close()),
      openForAppending: await codeOf(async () => (await fs.open(at('notes.txt'), 'a')).close()),
      truncate: await codeOf(() => fs.truncate(at('notes.txt'), 0)),
      mkdir: await codeOf(() => fs.mkdir(at('new-dir'))),
      rmdir: await codeOf(() => fs.rmdir(at('sub/deeper'))),
      unlink: await codeOf(() => fs.unlink(at('notes.txt'))),
      rename: await codeOf(() => fs.rename(at('notes.txt'), at('renamed.txt'))),
      symlink: await codeOf(() => fs.symlink('notes.txt', at('new-link'))),
      link: await codeOf(() => fs.link(at('notes.txt'), at('hard-link'))),
      chmod: await codeOf(() => fs.chmod(at('notes.txt'), 0o777)),
      chown: await codeOf(() => fs.chown(at('notes.txt'), 1, 1)),
      utimes: await codeOf(() => fs.utimes(at('notes.txt'), new Date(), new Date())),
      setxattr: await codeOf(() => setAttribute(at('notes.txt'), 'user.new', 'x')),
    };
    const expected = Object.fromEntries(Object.keys(results).map((k) => [k, 'EROFS']));
    expect(results).toEqual(expected);
    // and nothing changed
    expect(await fs.readFile(at('notes.txt'), 'utf8')).toBe(await fs.readFile(path.join(source, 'notes.txt'), 'utf8'));
    await expect(fs.lstat(at('new-file'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('unmounts on SIGTERM, exits 0 with a summary, and leaves no mount behind', async () => {
    const result = await mount.stop('SIGTERM');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^unmounted ${mnt}: \\d+ reads, .* served`, 'm'));
    expect(await isMountPoint(mnt)).toBe(false);
    expect(await fs.readdir(mnt)).toEqual([]);
  });
});

describe('a subtree mounted', () => {
  let mnt: string;
  let mount: MountedCli;

  beforeAll(async () => {
    mnt = path.join(work, 'mnt-sub');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt, [`${treeId}:/sub`], { env });
  });

  afterAll(async () => {
    await mount?.stop();
  });

  it('shows that directory at the mount point, as it is in the source', async () => {
    expect(await listing(mnt)).toEqual(await listing(path.join(source, 'sub')));
    expect(await fs.readFile(path.join(mnt, 'deeper/leaf.txt'), 'utf8')).toBe('leaf\n');
  });

  it('unmounts on SIGINT (Ctrl-C) too', async () => {
    const result = await mount.stop('SIGINT');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^unmounted /m);
    expect(await isMountPoint(mnt)).toBe(false);
  });
});

describe('every snapshot mounted', () => {
  let mnt: string;
  let mount: MountedCli;

  beforeAll(async () => {
    mnt = path.join(work, 'mnt-all');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt, [], { env });
  });

  afterAll(async () => {
    await mount?.stop();
  });

  it('shows each snapshot by its short id, and the by-date, by-tag and latest views', async () => {
    expect((await fs.readdir(mnt)).sort()).toEqual([otherId, treeId, 'by-date', 'by-tag', 'latest'].sort());
    expect((await fs.readdir(path.join(mnt, 'by-tag'))).sort()).toEqual(['nightly', 'weekly']);
    expect(await fs.readdir(path.join(mnt, 'by-tag/nightly'))).toEqual([treeId]);
    expect(await fs.readdir(path.join(mnt, 'by-tag/weekly'))).toEqual([otherId]);
  });

  it('reads a cold large file at full speed with the right bytes (timed against `cat` of the source)', async () => {
    const copy = path.join(work, 'big-copy-all.bin');
    const t0 = performance.now();
    await cp(path.join(mnt, treeId, 'big.bin'), copy);
    const mountMs = performance.now() - t0;
    const t1 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const cat = spawn('cat', [path.join(source, 'big.bin')], { stdio: ['ignore', 'ignore', 'inherit'] });
      cat.on('error', reject);
      cat.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
    });
    const catMs = performance.now() - t1;
    const rate = (ms: number) => (BIG_SIZE / MiB / (ms / 1000)).toFixed(0);
    console.log(
      `cold read of ${(BIG_SIZE / MiB).toFixed(1)} MiB: cp from the mount ${mountMs.toFixed(0)} ms (${rate(mountMs)} MiB/s); ` +
        `cat of the source (page cache) ${catMs.toFixed(0)} ms (${rate(catMs)} MiB/s)`,
    );
    expect(await sha256(copy)).toBe(await sha256(path.join(source, 'big.bin')));
  });

  it('shows the whole tree under the snapshot id', async () => {
    expect(await listing(path.join(mnt, treeId))).toEqual(await listing(source));
  });

  it('links each by-date name to its snapshot', async () => {
    const names = (await fs.readdir(path.join(mnt, 'by-date'))).sort();
    expect(names).toHaveLength(2);
    expect(names[0]).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\d_\\d\\d-\\d\\d-\\d\\d_${treeId}$`));
    expect(names[1]).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\d_\\d\\d-\\d\\d-\\d\\d_${otherId}$`));
    expect(await fs.readlink(path.join(mnt, 'by-date', names[0]))).toBe(`../${treeId}`);
    expect(await fs.realpath(path.join(mnt, 'by-date', names[0]))).toBe(path.join(mnt, treeId));
    expect(await fs.readFile(path.join(mnt, 'by-date', names[1], 'marker.txt'), 'utf8')).toBe('the second snapshot\n');
  });

  it('links each by-tag entry to its snapshot', async () => {
    expect(await fs.realpath(path.join(mnt, 'by-tag/nightly', treeId))).toBe(path.join(mnt, treeId));
    expect(await fs.readFile(path.join(mnt, 'by-tag/nightly', treeId, 'sub/deeper/leaf.txt'), 'utf8')).toBe('leaf\n');
    expect(await fs.readFile(path.join(mnt, 'by-tag/weekly', otherId, 'marker.txt'), 'utf8')).toBe('the second snapshot\n');
  });

  it('links latest to the newest snapshot', async () => {
    expect(await fs.readlink(path.join(mnt, 'latest'))).toBe(otherId);
    expect(await fs.readdir(path.join(mnt, 'latest'))).toEqual(['marker.txt']);
  });

  it('refuses writes at the top level too', async () => {
    expect(await codeOf(() => fs.mkdir(path.join(mnt, 'new-dir')))).toBe('EROFS');
    expect(await codeOf(() => fs.writeFile(path.join(mnt, 'by-tag/new'), 'x'))).toBe('EROFS');
    expect(await codeOf(() => fs.unlink(path.join(mnt, 'latest')))).toBe('EROFS');
  });

  it('unmounts on SIGTERM and leaves no mount behind', async () => {
    const result = await mount.stop();
    expect(result.code).toBe(0);
    expect(await isMountPoint(mnt)).toBe(false);
  });
});
