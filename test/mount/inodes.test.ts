/**
 * Inode numbers and link counts as the tools that copy, archive and count
 * trees rely on them: the names of a hard-linked file share one inode (so
 * `cp -a`, `tar`, `rsync -H` and `du` keep one file), every other entry has
 * an inode of its own, in one snapshot and across snapshots, a number does
 * not change while mounted, and a directory counts its subdirectories.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeWithTwoSnapshots, type TwoSnapshots } from '../helpers/fixtures.js';
import { mountCli, unmountAll, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);

let setup: TwoSnapshots;
let one: MountedCli;
let all: MountedCli;

/** Every path under `root` (without it), relative, with lstat's inode number. */
async function inodes(root: string, rel = ''): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const name of await fs.readdir(path.join(root, rel))) {
    const child = rel ? `${rel}/${name}` : name;
    const stat = await fs.lstat(path.join(root, child));
    out.set(child, stat.ino);
    if (stat.isDirectory()) for (const [p, ino] of await inodes(root, child)) out.set(p, ino);
  }
  return out;
}

/** The paths that share an inode with another, grouped, as `find -samefile` would. */
function sharing(numbers: Map<string, number>): string[][] {
  const byIno = new Map<number, string[]>();
  for (const [p, ino] of numbers) byIno.set(ino, [...(byIno.get(ino) ?? []), p]);
  return [...byIno.values()].filter((names) => names.length > 1).map((names) => names.sort());
}

describe('inode numbers and link counts', () => {
  beforeAll(async () => {
    setup = await storeWithTwoSnapshots(
      'kloset-mount-inodes-',
      async (source) => {
        await fs.mkdir(path.join(source, 'sub/deeper/deepest'), { recursive: true });
        await fs.mkdir(path.join(source, 'sub/other'));
        await fs.writeFile(path.join(source, 'data'), 'linked content\n');
        await fs.link(path.join(source, 'data'), path.join(source, 'again'));
        await fs.link(path.join(source, 'data'), path.join(source, 'sub/deeper/third'));
        await fs.writeFile(path.join(source, 'solo'), 'linked content\n');
        await fs.writeFile(path.join(source, 'changes'), 'before\n');
        await fs.symlink('solo', path.join(source, 'link'));
        for (let i = 0; i < 30; i++) await fs.writeFile(path.join(source, 'sub/other', `f${i}`), `${i}\n`);
      },
      async (source) => {
        await fs.writeFile(path.join(source, 'changes'), 'after!\n');
      },
    );
    const mnt = path.join(setup.work, 'mnt');
    const mntAll = path.join(setup.work, 'mnt-all');
    await fs.mkdir(mnt);
    await fs.mkdir(mntAll);
    const env = { XDG_CACHE_HOME: path.join(setup.work, 'cache') };
    one = await mountCli(setup.store, mnt, [setup.first], { env });
    all = await mountCli(setup.store, mntAll, [], { env });
  }, 60_000);

  afterAll(async () => {
    await one?.stop();
    await all?.stop();
    await unmountAll();
    if (setup) await fs.rm(setup.work, { recursive: true, force: true });
  });

  it('gives the names of a hard-linked file one inode, and every other entry its own', async () => {
    const numbers = await inodes(one.dir);
    expect(sharing(numbers)).toEqual([['again', 'data', 'sub/deeper/third']]);
    const { stdout } = await run('find', ['.', '-samefile', 'data'], { cwd: one.dir });
    expect(stdout.split('\n').filter(Boolean).sort()).toEqual(['./again', './data', './sub/deeper/third']);
  });

  it('lists the inode numbers that stat gives (ls -i, os.scandir)', async () => {
    for (const dir of ['', 'sub', 'sub/other']) {
      const listed = await fs.readdir(path.join(one.dir, dir), { withFileTypes: true });
      const { stdout } = await run('ls', ['-ai', path.join(one.dir, dir)]);
      const byLs = new Map(stdout.trim().split('\n').map((line) => line.trim().split(/\s+/).reverse() as [string, string]));
      expect(byLs.get('.')).toBe(String((await fs.lstat(path.join(one.dir, dir))).ino));
      for (const entry of listed) {
        expect(byLs.get(entry.name), `${dir}/${entry.name}`).toBe(String((await fs.lstat(path.join(one.dir, dir, entry.name))).ino));
      }
    }
  });

  it('keeps hard links through cp -a, tar and du', async () => {
    const copy = path.join(setup.work, 'copy');
    await run('cp', ['-a', one.dir, copy]);
    expect(sharing(await inodes(copy))).toEqual(sharing(await inodes(setup.source)).map((names) => names.sort()));
    const archive = path.join(setup.work, 'tree.tar');
    await run('tar', ['-cf', archive, '.'], { cwd: one.dir });
    const { stdout: members } = await run('tar', ['-tvf', archive]);
    expect(members.split('\n').filter((line) => / link to /.test(line))).toHaveLength(2);
    const du = async (dir: string) => Number((await run('du', ['-s', '-b', dir])).stdout.split('\t')[0]);
    const fileBytes = async (dir: string) => Number((await run('du', ['-s', '-b', '-l', dir])).stdout.split('\t')[0]);
    // du counts a file once however many names it has: the two extra names add nothing.
    expect((await fileBytes(one.dir)) - (await du(one.dir))).toBe(2 * 'linked content\n'.length);
  });

  it('keeps each number while mounted, after the kernel has forgotten the entry', async () => {
    const before = await inodes(one.dir);
    // Drop the kernel's dentries and inodes (root only): the next lookups reach the mount again.
    await fs.writeFile('/proc/sys/vm/drop_caches', '2').catch(() => undefined);
    const after = await inodes(one.dir);
    expect(after).toEqual(before);
  });

  it('gives the same path in two snapshots, and the snapshots of the every-snapshot view, inodes of their own', async () => {
    const numbers = await inodes(all.dir);
    const inSnapshots = new Map([...numbers].filter(([p]) => p.startsWith(setup.first) || p.startsWith(setup.second)));
    expect(sharing(inSnapshots)).toEqual([
      [`${setup.first}/again`, `${setup.first}/data`, `${setup.first}/sub/deeper/third`],
      [`${setup.second}/again`, `${setup.second}/data`, `${setup.second}/sub/deeper/third`],
    ].sort((a, b) => a[0].localeCompare(b[0])));
    const top = [...numbers].filter(([p]) => !p.includes('/') || p.startsWith('by-'));
    expect(new Set(top.map(([, ino]) => ino)).size).toBe(top.length);
    // diff takes two names of one inode for one file, unread: the changed file must show as changed.
    const diff = await run('diff', ['-r', path.join(all.dir, setup.first), path.join(all.dir, setup.second)]).then(
      () => '',
      (err: { stdout: string }) => err.stdout,
    );
    expect(diff).toMatch(/^< before\n---\n> after!$/m);
  });

  it('counts a directory\'s subdirectories in its link count, as the source does (find -links, stat)', async () => {
    for (const dir of ['.', 'sub', 'sub/deeper', 'sub/deeper/deepest', 'sub/other']) {
      expect((await fs.stat(path.join(one.dir, dir))).nlink, dir).toBe((await fs.stat(path.join(setup.source, dir))).nlink);
    }
    // The every-snapshot view's own directories: the top holds by-date, by-tag and two snapshots.
    expect((await fs.stat(all.dir)).nlink).toBe(6);
    expect((await fs.stat(path.join(all.dir, 'by-date'))).nlink).toBe(2);
  });
});
