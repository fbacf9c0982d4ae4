/**
 * Extended attributes too large for the caller's first buffer: the system
 * call answers ERANGE, and a caller that then asks with a larger buffer (as
 * Python's os.getxattr and os.listxattr do, starting at 128 and 256 bytes)
 * gets them whole, never EIO.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { getAttribute, listAttributes, setAttribute } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { openBuiltStore, openLocalStore } from '../helpers/built.js';
import { storeWithTwoSnapshots } from '../helpers/fixtures.js';
import { builtLibrary, endMountOf, mountCli, mountSnapshotOf, storeWithSnapshot, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);

const LONG_VALUE = Buffer.alloc(300, 'v');
/** 40 names of 40 bytes: a list of 1640 bytes. */
const MANY_NAMES = Array.from({ length: 40 }, (_, i) => `user.an-attribute-with-a-long-name-${String(i).padStart(5, '0')}`);

let work: string;
let source: string;
let mnt: string;
let mount: MountedCli;

/** Runs a Python snippet with the mount point as sys.argv[1]; its standard output, or the error it printed. */
async function python(code: string): Promise<string> {
  const { stdout } = await run('python3', ['-c', code, mnt]);
  return stdout.trim();
}

const hasPython = await run('python3', ['-c', 'pass']).then(
  () => true,
  () => false,
);

describe.skipIf(!hasPython)('extended attributes larger than a first guess of their size', () => {
  beforeAll(async () => {
    work = await tempDir('kloset-mount-xattr-');
    source = path.join(work, 'source');
    await fs.mkdir(path.join(source, 'many-names'), { recursive: true });
    await fs.writeFile(path.join(source, 'long-value'), 'has a long attribute\n');
    await setAttribute(path.join(source, 'long-value'), 'user.long', LONG_VALUE);
    for (const name of MANY_NAMES) await setAttribute(path.join(source, 'many-names'), name, Buffer.from('1'));
    ({ mnt, mount } = await mountSnapshotOf(work, source));
  }, 60_000);

  afterAll(() => endMountOf(mount, work));

  it('answers ERANGE to a buffer too small for a value, and the value whole to one large enough', async () => {
    const out = await python(`
import errno, os, sys
try:
    os.getxattr(os.path.join(sys.argv[1], 'long-value'), 'user.long')
except OSError as e:
    print(errno.errorcode[e.errno])
else:
    print(os.getxattr(os.path.join(sys.argv[1], 'long-value'), 'user.long').hex())
`);
    expect(out).toBe(LONG_VALUE.toString('hex'));
  });

  it('answers ERANGE to a buffer too small for the list of names, and the whole list to one large enough', async () => {
    const out = await python(`
import errno, json, os, sys
try:
    print(json.dumps(sorted(os.listxattr(os.path.join(sys.argv[1], 'many-names'))), separators=(',', ':')))
except OSError as e:
    print(errno.errorcode[e.errno])
`);
    expect(out).toBe(JSON.stringify([...MANY_NAMES].sort()));
  });

  it('still answers ENODATA for an attribute the file does not have', async () => {
    const out = await python(`
import errno, os, sys
try:
    os.getxattr(os.path.join(sys.argv[1], 'long-value'), 'user.absent')
except OSError as e:
    print(errno.errorcode[e.errno])
`);
    expect(out).toBe('ENODATA');
  });

  it('logs no read errors for attribute calls', async () => {
    const result = await mount.stop();
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
  });
});

describe.skipIf(!hasPython)('a snapshot without extended attributes', () => {
  let plainWork: string;
  let plainMnt: string;
  let plainMount: MountedCli;

  beforeAll(async () => {
    plainWork = await tempDir('kloset-mount-noxattr-');
    const plainSource = path.join(plainWork, 'source');
    await fs.mkdir(path.join(plainSource, 'sub'), { recursive: true });
    await fs.writeFile(path.join(plainSource, 'sub', 'plain.txt'), 'no attributes\n');
    ({ mnt: plainMnt, mount: plainMount } = await mountSnapshotOf(plainWork, plainSource));
  }, 60_000);

  afterAll(() => endMountOf(plainMount, plainWork));

  it('lists no attributes, and leaves reading one to the kernel, which answers without asking the mount', async () => {
    const { stdout } = await run('python3', [
      '-c',
      `
import errno, os, sys
for name in ('sub', 'sub/plain.txt'):
    print(os.listxattr(os.path.join(sys.argv[1], name)))
    try:
        os.getxattr(os.path.join(sys.argv[1], name), 'user.x')
    except OSError as e:
        print(errno.errorcode[e.errno])
`,
      plainMnt,
    ]);
    expect(stdout.trim().split('\n')).toEqual(['[]', 'ENOTSUP', '[]', 'ENOTSUP']);
    expect(await fs.readFile(path.join(plainMnt, 'sub', 'plain.txt'), 'utf8')).toBe('no attributes\n');
  });

  it('is a tree without attributes to tar --xattrs and getfattr -d: no warning, exit 0', async (ctx) => {
    const found = await run('getfattr', ['--version']).then(
      () => true,
      () => false,
    );
    const tar = await run('tar', ['--xattrs', '--acls', '-cf', path.join(plainWork, 'copy.tar'), '-C', plainMnt, '.']);
    expect(tar.stderr).toBe('');
    if (!found) return ctx.skip('getfattr is not installed');
    const getfattr = await run('getfattr', ['-R', '-d', plainMnt]);
    expect(getfattr.stdout + getfattr.stderr).toBe('');
  });
});

describe.skipIf(!hasPython)('a snapshot whose header predates the count of entries with attributes', () => {
  let oldWork: string;
  let oldMount: MountedCli | undefined;

  afterAll(() => endMountOf(oldMount, oldWork));

  it('is taken to have some, and its attributes are shown', async () => {
    oldWork = await tempDir('kloset-mount-uncounted-');
    const oldSource = path.join(oldWork, 'source');
    await fs.mkdir(oldSource);
    await fs.writeFile(path.join(oldSource, 'tagged.txt'), 'has an attribute\n');
    await setAttribute(path.join(oldSource, 'tagged.txt'), 'user.kept', Buffer.from('yes'));
    const store = path.join(oldWork, 'store');
    const id = await storeWithSnapshot(store, oldSource);
    // The header as a version before the count wrote it: no withAttributes in its stats.
    const lib = await builtLibrary();
    const repository = await lib.Repository.open(await openLocalStore(store), async () => '', { loadIndex: false });
    const [header] = await lib.listSnapshots(repository);
    expect(header.stats.withAttributes).toBe(1);
    const { withAttributes: _counted, ...stats } = header.stats;
    await lib.putSnapshotHeader(repository, { ...header, stats });
    const oldMnt = path.join(oldWork, 'mnt');
    await fs.mkdir(oldMnt);
    oldMount = await mountCli(store, oldMnt, [id]);
    const { stdout } = await run('python3', ['-c', "import os, sys; print(os.getxattr(os.path.join(sys.argv[1], 'tagged.txt'), 'user.kept').decode())", oldMnt]);
    expect(stdout.trim()).toBe('yes');
  });
});

describe('a snapshot whose only extended attribute is on the directory backed up', () => {
  let rootWork: string;
  let rootMount: MountedCli | undefined;

  afterAll(() => endMountOf(rootMount, rootWork));

  it('shows it on the snapshot mounted, and none on its files', async () => {
    rootWork = await tempDir('kloset-mount-rootxattr-');
    const rootSource = path.join(rootWork, 'source');
    await fs.mkdir(path.join(rootSource, 'sub'), { recursive: true });
    await fs.writeFile(path.join(rootSource, 'sub', 'plain.txt'), 'no attributes\n');
    await setAttribute(rootSource, 'user.x', Buffer.from('on the root'));
    // The snapshot's count of entries with attributes is all the mount goes by: it must count the root.
    const mounted = await mountSnapshotOf(rootWork, rootSource);
    rootMount = mounted.mount;
    const rootMnt = mounted.mnt;
    expect(await listAttributes(rootMnt)).toEqual(await listAttributes(rootSource));
    expect(String(await getAttribute(rootMnt, 'user.x'))).toBe('on the root');
    for (const name of ['sub', 'sub/plain.txt']) {
      expect(await listAttributes(path.join(rootMnt, name)), name).toEqual([]);
      expect(await getAttribute(path.join(rootMnt, name), 'user.x'), name).toBeNull();
    }
  });
});

describe('a mount of every snapshot, of which only the newest has extended attributes', () => {
  let storeWork: string;
  let storeMount: MountedCli | undefined;

  afterAll(() => endMountOf(storeMount, storeWork));

  it("shows that snapshot's attributes", async () => {
    const { work: made, store, first, second } = await storeWithTwoSnapshots(
      'kloset-mount-somexattr-',
      (source) => fs.writeFile(path.join(source, 'plain.txt'), 'no attributes\n'),
      async (source) => {
        await fs.writeFile(path.join(source, 'tagged.txt'), 'has an attribute\n');
        await setAttribute(path.join(source, 'tagged.txt'), 'user.x', Buffer.from('in the second snapshot'));
      },
    );
    storeWork = made;
    // The oldest snapshot, listed first, has none at all.
    const repository = await openBuiltStore(store, { loadIndex: false });
    const { listSnapshots } = await builtLibrary();
    expect((await listSnapshots(repository)).map((h) => h.stats.withAttributes)).toEqual([0, 1]);
    const storeMnt = path.join(made, 'mnt');
    await fs.mkdir(storeMnt);
    storeMount = await mountCli(store, storeMnt, [], { env: { XDG_CACHE_HOME: path.join(made, 'cache') } });
    expect(await fs.readdir(storeMnt)).toEqual(expect.arrayContaining([first, second]));
    const tagged = path.join(storeMnt, second, 'tagged.txt');
    expect(await listAttributes(tagged)).toEqual(['user.x']);
    expect(String(await getAttribute(tagged, 'user.x'))).toBe('in the second snapshot');
    expect(await listAttributes(path.join(storeMnt, first, 'plain.txt'))).toEqual([]);
  });
});
