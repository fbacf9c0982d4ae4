import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsExporter } from '../../src/connectors/fs/exporter.js';
import type { Entry } from '../../src/snapshot/tree.js';
import { loadBuilt } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { escapeRegExp } from '../helpers/fixtures.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('kloset-fsexporter-');
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

const now = { sec: 1_700_000_000, nsec: 0 };
const directory: Entry = { name: '', kind: 'directory', mode: 0o040755, uid: process.getuid!(), gid: process.getgid!(), size: 0, mtime: now };
const file = (name: string, size: number): Entry => ({ name, kind: 'file', mode: 0o100644, uid: process.getuid!(), gid: process.getgid!(), size, mtime: now });

async function* once(data: Buffer): AsyncIterable<Buffer> {
  yield data;
}

describe('a restore into a directory that is stopped', () => {
  it('loses the file being written, and starts no other', async () => {
    const target = path.join(work, 'stopped');
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const cut = exporter.writeFile(
      'cut.bin',
      file('cut.bin', 8),
      (async function* () {
        yield Buffer.from('half');
        await gate;
        yield Buffer.from('rest');
      })(),
    );
    while (!(await fs.stat(path.join(target, 'cut.bin')).then((s) => s.size === 4, () => false))) await new Promise((r) => setTimeout(r, 5));

    exporter.abandon();
    // What the restore's other tasks still do until the process exits.
    await expect(exporter.writeFile('late.bin', file('late.bin', 4), once(Buffer.from('late')))).rejects.toThrow(`${path.join(target, 'late.bin')}: not written, the restore is stopping`);
    release();
    await cut;
    expect(await fs.readdir(target)).toEqual([]);
  });
});

describe('a restore into a directory that already holds things', () => {
  it('replaces a hard link to a file outside the target instead of writing through it', async () => {
    const target = path.join(work, 'hardlinked');
    const outside = path.join(work, 'outside.txt');
    await fs.mkdir(target);
    await fs.writeFile(outside, 'outside, untouched\n', { mode: 0o600 });
    await fs.link(outside, path.join(target, 'config'));
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    await exporter.writeFile('config', { ...file('config', 9), mode: 0o104755 }, once(Buffer.from('restored\n')));
    expect(await fs.readFile(outside, 'utf8')).toBe('outside, untouched\n');
    expect((await fs.stat(outside)).mode & 0o7777).toBe(0o600);
    expect(await fs.readFile(path.join(target, 'config'), 'utf8')).toBe('restored\n');
    expect((await fs.stat(path.join(target, 'config'))).nlink).toBe(1);
  });

  it('replaces a FIFO or a symlink of the same name instead of blocking on it or refusing', async () => {
    const target = path.join(work, 'specials');
    await fs.mkdir(target);
    execFileSync('mkfifo', [path.join(target, 'fifo')]);
    await fs.symlink('/etc/hostname', path.join(target, 'link'));
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    await exporter.writeFile('fifo', file('fifo', 5), once(Buffer.from('file\n')));
    await exporter.writeFile('link', file('link', 5), once(Buffer.from('file\n')));
    for (const name of ['fifo', 'link']) {
      expect((await fs.lstat(path.join(target, name))).isFile(), name).toBe(true);
      expect(await fs.readFile(path.join(target, name), 'utf8')).toBe('file\n');
    }
  });

  it('gives a directory its mode and times through the directory itself, never through a symlink put in its place', async () => {
    const target = path.join(work, 'swapped');
    const outside = path.join(work, 'outside-dir');
    await fs.mkdir(outside, { mode: 0o700 });
    const before = await fs.stat(outside);
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    const sub: Entry = { ...directory, name: 'sub', mode: 0o040777, mtime: { sec: 1_000_000_000, nsec: 0 } };
    await exporter.createDirectory('sub', sub);
    // Whoever can write the target's directories swaps one for a link between its content and its metadata.
    await fs.rename(path.join(target, 'sub'), path.join(target, 'moved'));
    await fs.symlink(outside, path.join(target, 'sub'));
    await exporter.finishDirectory('sub', sub);
    await exporter.close();
    const after = await fs.stat(outside);
    expect(after.mode & 0o7777).toBe(0o700);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    const restored = await fs.stat(path.join(target, 'moved'));
    expect(restored.mode & 0o7777).toBe(0o777);
    expect(restored.mtimeMs).toBe(1_000_000_000_000);
  });

  it('writes every entry into the directory it made, though a directory above is swapped for a symbolic link meanwhile', async () => {
    const target = path.join(work, 'swapped-above');
    const outside = path.join(work, 'outside-above');
    await fs.mkdir(path.join(outside, 'b'), { recursive: true });
    // Built: the small files past the first few go through the writing thread, which exists only in dist/.
    const { FsExporter: BuiltExporter } = (await loadBuilt('connectors/fs/exporter.js')) as typeof import('../../src/connectors/fs/exporter.js');
    const exporter = new BuiltExporter(target);
    const small = Array.from({ length: 20 }, (_, i) => ({ path: `a/b/small-${i}`, entry: file(`small-${i}`, 2), data: Buffer.from(`${i}\n`.padStart(3, '0')) }));
    try {
      await exporter.createDirectory('', directory);
      await exporter.createDirectory('a', { ...directory, name: 'a' });
      await exporter.createDirectory('a/b', { ...directory, name: 'b' });
      await exporter.writeFile('a/first.txt', file('first.txt', 6), once(Buffer.from('first\n')));
      // Between two entries, whoever can write the target moves `a` away and links its name elsewhere.
      await fs.rename(path.join(target, 'a'), path.join(target, 'a-moved'));
      await fs.symlink(outside, path.join(target, 'a'));

      await exporter.writeFile('a/b/large.bin', file('large.bin', 5), once(Buffer.from('large')));
      expect(await exporter.writeFiles(small.slice(0, 2))).toEqual([undefined, undefined]);
      expect(await exporter.writeFiles(small.slice(2))).toEqual(small.slice(2).map(() => undefined));
      await exporter.createDirectory('a/b/c', { ...directory, name: 'c' });
      await exporter.createSpecial('a/b/link', { ...file('link', 0), kind: 'symlink', mode: 0o120777, target: 'large.bin' });
      await exporter.createSpecial('a/b/fifo', { ...file('fifo', 0), kind: 'fifo', mode: 0o010600 });
      await exporter.linkFile('a/first.txt', 'a/b/hard.txt', file('hard.txt', 6));
      // A failure names the entry as the restore knows it, not the descriptor it went through.
      await fs.mkdir(path.join(target, 'a-moved', 'in-the-way', 'full', 'kept'), { recursive: true });
      await exporter.createDirectory('a/in-the-way', { ...directory, name: 'in-the-way' });
      const [failure] = await exporter.writeFiles([{ path: 'a/in-the-way/full', entry: file('full', 1), data: Buffer.from('x') }]);
      expect(failure?.message).toContain(path.join(target, 'a', 'in-the-way', 'full'));
      expect(failure?.message).not.toContain('/proc/');
      await exporter.finishDirectory('a/b/c', { ...directory, name: 'c', mode: 0o040750 });
      await exporter.finishDirectory('a/b', { ...directory, name: 'b', mode: 0o040751 });
      await exporter.finishDirectory('a', { ...directory, name: 'a', mode: 0o040755 });

      // Finished, `a` is no longer held open: what names it again is looked up name by name, and the link refused.
      await expect(exporter.createDirectory('a/late', { ...directory, name: 'late' })).rejects.toThrow(`${path.join(target, 'a')}'`);
    } finally {
      await exporter.close();
    }

    expect(await fs.readdir(path.join(outside, 'b'))).toEqual([]);
    const made = path.join(target, 'a-moved', 'b');
    expect((await fs.readdir(made)).sort()).toEqual(['c', 'fifo', 'hard.txt', 'large.bin', 'link', ...small.map((f) => f.path.slice(4))].sort());
    expect(await fs.readFile(path.join(made, 'large.bin'), 'utf8')).toBe('large');
    expect(await fs.readFile(path.join(made, 'small-7'), 'utf8')).toBe('07\n');
    expect((await fs.stat(path.join(made, 'hard.txt'))).ino).toBe((await fs.stat(path.join(target, 'a-moved', 'first.txt'))).ino);
    expect(await fs.readlink(path.join(made, 'link'))).toBe('large.bin');
    expect((await fs.lstat(path.join(made, 'fifo'))).isFIFO()).toBe(true);
    expect((await fs.stat(made)).mode & 0o7777).toBe(0o751);
    expect((await fs.stat(path.join(made, 'c'))).mode & 0o7777).toBe(0o750);
  });

  it('gives a target named through a symbolic link to an empty directory the mode and times of the snapshot', async () => {
    const real = path.join(work, 'real-target');
    const link = path.join(work, 'link-target');
    await fs.mkdir(real);
    await fs.symlink(real, link);
    const exporter = new FsExporter(link);
    await exporter.createDirectory('', directory);
    await exporter.finishDirectory('', { ...directory, mode: 0o040700, mtime: { sec: 1_000_000_000, nsec: 0 } });
    expect((await fs.stat(real)).mode & 0o7777).toBe(0o700);
    expect((await fs.stat(real)).mtimeMs).toBe(1_000_000_000_000);
    expect((await fs.lstat(link)).isSymbolicLink()).toBe(true);
  });

  it('leaves the owner, mode and times of a target already in use as they were', async () => {
    const target = path.join(work, 'shared-target');
    await fs.mkdir(target);
    await fs.writeFile(path.join(target, 'someone-elses.txt'), 'in use\n');
    await fs.chmod(target, 0o1777);
    const before = await fs.stat(target);
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    await exporter.finishDirectory('', { ...directory, mode: 0o040700, mtime: { sec: 1_000_000_000, nsec: 0 } });
    const after = await fs.stat(target);
    expect(after.mode & 0o7777).toBe(0o1777);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    // A target the restore makes, or finds empty, gets the snapshot's.
    const empty = path.join(work, 'empty-target');
    await fs.mkdir(empty);
    for (const made of [path.join(work, 'made-target'), empty]) {
      const fresh = new FsExporter(made);
      await fresh.createDirectory('', directory);
      await fresh.finishDirectory('', { ...directory, mode: 0o040700, mtime: { sec: 1_000_000_000, nsec: 0 } });
      expect((await fs.stat(made)).mode & 0o7777).toBe(0o700);
      expect((await fs.stat(made)).mtimeMs).toBe(1_000_000_000_000);
    }
  });

  it('gives a file back its capabilities, which a change of owner would clear', async (ctx) => {
    if (process.getuid?.() !== 0) return ctx.skip();
    // cap_net_raw=ep, as setcap writes it (VFS_CAP_REVISION_2, effective).
    const capability = Buffer.from([0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const target = path.join(work, 'capabilities');
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    const entry: Entry = { ...file('ping', 4), uid: 1234, gid: 1234, mode: 0o100755, xattrs: { 'security.capability': capability } };
    await exporter.writeFile('ping', entry, once(Buffer.from('ping')));
    const { getAttributeSync } = await import('@napi-rs/xattr');
    expect(Buffer.from(getAttributeSync(path.join(target, 'ping'), 'security.capability')!).equals(capability)).toBe(true);
    expect((await fs.stat(path.join(target, 'ping'))).uid).toBe(1234);
  });
});

describe('a restore into a directory given a path that climbs out of it', () => {
  it("refuses '..' segments and absolute paths for every kind of entry, and writes nothing outside the target", async () => {
    const base = path.join(work, 'climbing');
    const target = path.join(base, 'target');
    const victim = path.join(base, 'victim.txt');
    await fs.mkdir(base);
    await fs.writeFile(victim, 'outside, untouched\n', { mode: 0o600 });
    const victimBefore = await fs.stat(victim);
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    await exporter.createDirectory('sub', { ...directory, name: 'sub' });
    await exporter.writeFile('inside.txt', file('inside.txt', 7), once(Buffer.from('inside\n')));

    const refused = new RegExp(`: refusing to write outside ${escapeRegExp(target)}$`);
    const data = Buffer.from('climbed\n');
    const symlink: Entry = { ...file('link', 0), kind: 'symlink', mode: 0o120777, target: '/etc/hostname' };
    const fifo: Entry = { ...file('fifo', 0), kind: 'fifo', mode: 0o010644 };
    // An absolute path too: put below the target, it would still not be where the snapshot says.
    for (const rel of ['..', '../victim.txt', '../escaped', 'sub/../../victim.txt', 'sub/../../escaped', 'sub/../..', victim, path.join(base, 'absolute.txt'), '/']) {
      await expect(exporter.writeFile(rel, file('escaped', data.length), once(data)), rel).rejects.toThrow(refused);
      const [failure] = await exporter.writeFiles([{ path: rel, entry: file('escaped', data.length), data }]);
      expect(failure?.message, rel).toMatch(refused);
      await expect(exporter.createDirectory(rel, { ...directory, name: 'escaped' }), rel).rejects.toThrow(refused);
      await expect(exporter.createSpecial(rel, symlink), rel).rejects.toThrow(refused);
      await expect(exporter.createSpecial(rel, fifo), rel).rejects.toThrow(refused);
      await expect(exporter.linkFile('inside.txt', rel, file('escaped', 7)), rel).rejects.toThrow(refused);
      // Nor is a file outside linked in: the target would then hold a name for it.
      await expect(exporter.linkFile(rel, 'linked.txt', file('linked.txt', 7)), rel).rejects.toThrow(refused);
      await expect(exporter.finishDirectory(rel, { ...directory, mode: 0o040777, mtime: { sec: 1_000_000_000, nsec: 0 } }), rel).rejects.toThrow(refused);
    }
    await exporter.close();

    expect((await fs.readdir(base)).sort()).toEqual(['target', 'victim.txt']);
    expect(await fs.readFile(victim, 'utf8')).toBe('outside, untouched\n');
    const victimAfter = await fs.stat(victim);
    expect([victimAfter.ino, victimAfter.nlink, victimAfter.mode, victimAfter.mtimeMs]).toEqual([victimBefore.ino, 1, victimBefore.mode, victimBefore.mtimeMs]);
    const baseAfter = await fs.stat(base);
    expect(baseAfter.mode & 0o7777).not.toBe(0o777);
    expect(baseAfter.mtimeMs).not.toBe(1_000_000_000_000);
    expect((await fs.readdir(target)).sort()).toEqual(['inside.txt', 'sub']);
    expect(await fs.readdir(path.join(target, 'sub'))).toEqual([]);
  });
});

describe('a restore into the root directory', () => {
  it('writes below it, as a restore of a whole system does', async () => {
    const place = path.join(work, 'under-root');
    const exporter = new FsExporter('/');
    await exporter.createDirectory('', directory);
    const rel = path.relative('/', place);
    await exporter.createDirectory(rel, { ...directory, name: 'under-root' });
    await exporter.writeFile(path.join(rel, 'a.txt'), file('a.txt', 3), once(Buffer.from('a\n\n')));
    await exporter.createSpecial(path.join(rel, 'b'), { ...file('b', 0), kind: 'symlink', mode: 0o120777, target: 'a.txt' });
    await exporter.close();
    expect(await fs.readFile(path.join(place, 'a.txt'), 'utf8')).toBe('a\n\n');
    expect(await fs.readlink(path.join(place, 'b'))).toBe('a.txt');
  });
});

describe('a restore given a path that names the target itself', () => {
  it('refuses to put anything but the target directory there', async () => {
    const target = path.join(work, 'itself');
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    await exporter.createDirectory('sub', { ...directory, name: 'sub' });
    const refused = new RegExp(`: refusing to write outside ${escapeRegExp(target)}$`);
    const data = Buffer.from('replaced\n');
    for (const rel of ['sub/..', '.', 'sub/../.']) {
      await expect(exporter.writeFile(rel, file('itself', data.length), once(data)), rel).rejects.toThrow(refused);
      const [failure] = await exporter.writeFiles([{ path: rel, entry: file('itself', data.length), data }]);
      expect(failure?.message, rel).toMatch(refused);
      await expect(exporter.createSpecial(rel, { ...file('link', 0), kind: 'symlink', mode: 0o120777, target: 'elsewhere' }), rel).rejects.toThrow(refused);
    }
    await exporter.close();
    expect((await fs.lstat(target)).isDirectory()).toBe(true);
    expect(await fs.readdir(target)).toEqual(['sub']);
  });
});

describe('the small files of a restore', () => {
  it('are written whole, each failure named, both the first few (before the writing thread starts) and the rest (through it)', async () => {
    const target = path.join(work, 'small');
    // Built: the thread runs smallfileworker.js beside the exporter, which exists only in dist/.
    const { FsExporter: BuiltExporter } = (await loadBuilt('connectors/fs/exporter.js')) as typeof import('../../src/connectors/fs/exporter.js');
    const exporter = new BuiltExporter(target);
    try {
      await exporter.createDirectory('', directory);
      await fs.writeFile(path.join(target, 'plain'), 'a file, not a directory');
      const batch = (prefix: string, count: number) =>
        Array.from({ length: count }, (_, i) => {
          const name = i === 1 ? `plain/${prefix}-${i}` : `${prefix}-${i}`;
          return { path: name, entry: { ...file(name, 0), mode: 0o100600 }, data: Buffer.from(`${prefix} ${i}\n`.repeat(i + 1)) };
        });
      const writer = (exporter as unknown as { smallFiles: { running: boolean } }).smallFiles;
      for (const [prefix, count, threaded] of [['first', 3, false], ['rest', 40, true]] as const) {
        const failures = await exporter.writeFiles(batch(prefix, count));
        expect(writer.running).toBe(threaded);
        expect(failures.map((failure) => failure !== undefined)).toEqual(Array.from({ length: count }, (_, i) => i === 1));
        expect((failures[1] as NodeJS.ErrnoException).code).toBe('ENOTDIR');
        for (let i = 0; i < count; i++) {
          if (i === 1) continue;
          const written = path.join(target, `${prefix}-${i}`);
          expect(await fs.readFile(written, 'utf8')).toBe(`${prefix} ${i}\n`.repeat(i + 1));
          expect((await fs.stat(written)).mode & 0o7777).toBe(0o600);
        }
      }
    } finally {
      await exporter.close();
    }
  });
});
