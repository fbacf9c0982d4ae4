/**
 * A directory goes into a store and comes back out unchanged: contents,
 * modes, mtimes and symlinks, through ls, cat and restore.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latestSnapshotId, tempDir } from '../helpers/cli.js';
import {
  MiB,
  addedToStore,
  describeTree,
  escapeRegExp,
  expectOneLineError,
  klosetWith,
  packFiles,
  storeSize,
  writeRandomFile,
} from '../helpers/fixtures.js';

const UNICODE_NAME = 'rapport final — été 2024 ✓ 日本.txt';
/** Embedded in the middle of the random file, which is stored uncompressed: visible in a store that does not encrypt. */
const MARKER = Buffer.from('KLOSET-TEST-MARKER-3f9c1e7a-do-not-leak');
const PAST = new Date('2021-03-04T05:06:07Z');

let work: string;
let cache: string;
let kloset: ReturnType<typeof klosetWith>;

/**
 * /
 *   empty
 *   notes.txt           0644, text
 *   big.bin             3 MiB random, with MARKER in the middle
 *   <unicode name>      0600
 *   run.sh              0755
 *   link -> sub/deeper/leaf.txt
 *   sub/                0750
 *     a.txt
 *     deeper/leaf.txt
 *     private.key       0600
 */
async function makeTree(root: string): Promise<void> {
  await fs.mkdir(path.join(root, 'sub/deeper'), { recursive: true });
  await fs.writeFile(path.join(root, 'empty'), '');
  await fs.writeFile(path.join(root, 'notes.txt'), 'first line\nsecond line: ünïcödé\n'.repeat(50));
  await writeRandomFile(path.join(root, 'big.bin'), 3 * MiB, { at: 1.5 * MiB, bytes: MARKER });
  await fs.writeFile(path.join(root, UNICODE_NAME), 'a name with spaces and unicode\n', { mode: 0o600 });
  await fs.writeFile(path.join(root, 'run.sh'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
  await fs.writeFile(path.join(root, 'sub/a.txt'), 'in sub\n');
  await fs.writeFile(path.join(root, 'sub/deeper/leaf.txt'), 'leaf\n');
  await fs.writeFile(path.join(root, 'sub/private.key'), 'secret\n', { mode: 0o600 });
  await fs.symlink('sub/deeper/leaf.txt', path.join(root, 'link'));
  // Explicit modes (the umask may differ) and past mtimes, so a restore that ignores metadata shows.
  await fs.chmod(path.join(root, UNICODE_NAME), 0o600);
  await fs.chmod(path.join(root, 'run.sh'), 0o755);
  await fs.chmod(path.join(root, 'sub/private.key'), 0o600);
  await fs.chmod(path.join(root, 'sub'), 0o750);
  await fs.chmod(path.join(root, 'sub/deeper'), 0o755);
  await fs.lutimes(path.join(root, 'link'), PAST, PAST);
  for (const rel of ['empty', 'notes.txt', 'big.bin', UNICODE_NAME, 'run.sh', 'sub/a.txt', 'sub/deeper/leaf.txt', 'sub/private.key']) {
    await fs.utimes(path.join(root, rel), PAST, PAST);
  }
  for (const rel of ['sub/deeper', 'sub', '.']) await fs.utimes(path.join(root, rel), PAST, PAST);
}

beforeAll(async () => {
  work = await tempDir('kloset-roundtrip-');
  cache = path.join(work, 'cache');
  kloset = klosetWith({ XDG_CACHE_HOME: cache });
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a backed-up directory', () => {
  let source: string;
  let store: string;
  let id: string;

  beforeAll(async () => {
    source = path.join(work, 'source');
    store = path.join(work, 'store');
    await fs.mkdir(source);
    await makeTree(source);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    const backup = await kloset(['at', store, 'backup', source]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    id = await latestSnapshotId(store, { XDG_CACHE_HOME: cache });
  });

  it('is listed by ls with its 8-hex short id and its source', async () => {
    const result = await kloset(['at', store, 'ls']);
    expect(result.code).toBe(0);
    const line = result.stdout.split('\n').find((l) => l.includes(id.slice(0, 8)));
    expect(line).toBeDefined();
    expect(line).toMatch(new RegExp(`(^|\\s)${id.slice(0, 8)}\\s`));
    expect(line).toContain(source);
  });

  it('lists a directory of the snapshot with ls id:/sub', async () => {
    const result = await kloset(['at', store, 'ls', `${id}:/sub`]);
    expect(result.code).toBe(0);
    const names = result.stdout.trim().split('\n').map((l) => l.split(' ').pop());
    expect(names).toEqual(['a.txt', 'deeper/', 'private.key']);
  });

  it('lists entries with their modes in ls id:/sub', async () => {
    const result = await kloset(['at', store, 'ls', `${id}:/sub`]);
    expect(result.stdout).toMatch(/^-rw------- .* private\.key$/m);
    expect(result.stdout).toMatch(/^drwxr-xr-x .* deeper\/$/m);
  });

  it('shows a symlink with its target in ls', async () => {
    const result = await kloset(['at', store, 'ls', id]);
    expect(result.stdout).toMatch(/^l.* link -> sub\/deeper\/leaf\.txt$/m);
  });

  it('accepts a 4-character prefix of the id', async () => {
    const result = await kloset(['at', store, 'cat', `${id.slice(0, 4)}:/sub/a.txt`]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('in sub\n');
  });

  it('gives back the exact bytes of a large binary file with cat', async () => {
    const result = await kloset(['at', store, 'cat', `${id}:/big.bin`]);
    expect(result.code).toBe(0);
    const original = await fs.readFile(path.join(source, 'big.bin'));
    expect(result.stdoutBytes.length).toBe(original.length);
    expect(result.stdoutBytes.equals(original)).toBe(true);
  });

  it('gives back a text file and a file with spaces and unicode in its name with cat', async () => {
    const text = await kloset(['at', store, 'cat', `${id}:/notes.txt`]);
    expect(text.stdoutBytes.equals(await fs.readFile(path.join(source, 'notes.txt')))).toBe(true);
    const unicode = await kloset(['at', store, 'cat', `${id}:/${UNICODE_NAME}`]);
    expect(unicode.code).toBe(0);
    expect(unicode.stdout).toBe('a name with spaces and unicode\n');
  });

  it('gives back an empty file as no bytes with cat', async () => {
    const result = await kloset(['at', store, 'cat', `${id}:/empty`]);
    expect(result.code).toBe(0);
    expect(result.stdoutBytes.length).toBe(0);
  });

  it('restores the whole tree: contents, modes, mtimes and symlink targets', async () => {
    const target = path.join(work, 'restored-all');
    const result = await kloset(['at', store, 'restore', '-to', target, id]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });

  it('restores the contents of a subdirectory with id:/sub', async () => {
    const target = path.join(work, 'restored-sub');
    const result = await kloset(['at', store, 'restore', '-to', target, `${id}:/sub`]);
    expect(result.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(path.join(source, 'sub')));
  });

  it('takes the destination as --to as well as -to', async () => {
    const target = path.join(work, 'restored-double-dash');
    const result = await kloset(['at', store, 'restore', '--to', target, `${id}:/sub/deeper`]);
    expect(result.code).toBe(0);
    expect(await fs.readFile(path.join(target, 'leaf.txt'), 'utf8')).toBe('leaf\n');
  });

  it('restores into a destination whose parent directories do not exist yet', async () => {
    const target = path.join(work, 'not', 'yet', 'there');
    const result = await kloset(['at', store, 'restore', '-to', target, `${id}:/sub/deeper`]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await fs.readFile(path.join(target, 'leaf.txt'), 'utf8')).toBe('leaf\n');
  });

  it('never writes file bytes in clear into the packs of an encrypted store', async () => {
    const packs = await packFiles(store);
    expect(packs.length).toBeGreaterThan(0);
    for (const pack of packs) expect((await fs.readFile(pack.file)).includes(MARKER)).toBe(false);
  });

  it('describes the snapshot with info --json id: id, source and counts', async () => {
    const result = await kloset(['at', store, 'info', '--json', id.slice(0, 8)]);
    expect(result.code).toBe(0);
    const info = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(info).toMatchObject({ id, short_id: id.slice(0, 8), source, files: 8, directories: 3, errors: 0 });
  });

  it('describes the store with info: one snapshot, encrypted', async () => {
    const result = await kloset(['at', store, 'info', '--json']);
    expect(result.code).toBe(0);
    const info = JSON.parse(result.stdout) as { snapshots: number; encryption: string };
    expect(info.snapshots).toBe(1);
    expect(info.encryption).toMatch(/aes-256-gcm/);
  });

  // Last: it adds a snapshot to the shared store.
  it('adds almost nothing to the store when backing up an unchanged directory again', async () => {
    const before = await storeSize(store);
    const result = await kloset(['at', store, 'backup', source]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/added to the store/);
    expect(addedToStore(result.stdout)).toBeLessThan(64 * 1024);
    expect((await storeSize(store)) - before).toBeLessThan(64 * 1024);
  });
});

describe('create', () => {
  const kdfOf = async (store: string) =>
    (JSON.parse(await fs.readFile(path.join(store, 'CONFIG'), 'utf8')) as { encryption: { kdf: Record<string, unknown> } }).encryption.kdf;

  it('derives the key with argon2id over 64 MiB in three passes, and cheaply only when told it runs under tests', async () => {
    const store = path.join(work, 'kdf-default-store');
    expect((await kloset(['at', store, 'create'], { env: { KLOSET_TESTONLY_WEAKEN_KDF: undefined } })).code).toBe(0);
    expect(await kdfOf(store)).toMatchObject({ algorithm: 'argon2id', memoryKiB: 65536, iterations: 3, parallelism: 2 });
    const weak = path.join(work, 'kdf-weak-store');
    expect((await kloset(['at', weak, 'create'])).code).toBe(0);
    expect(await kdfOf(weak)).toMatchObject({ algorithm: 'argon2id', memoryKiB: 1024, iterations: 1, parallelism: 1 });
    expect((await kloset(['at', store, 'ls'])).code).toBe(0);
    expect((await kloset(['at', weak, 'ls'], { env: { KLOSET_PASSPHRASE: 'another' } })).stderr).toMatch(/passphrase/);
  });
});

describe('a plaintext store', () => {
  let source: string;
  let store: string;

  beforeAll(async () => {
    source = path.join(work, 'plain-source');
    store = path.join(work, 'plain-store');
    await fs.mkdir(source);
    await makeTree(source);
  });

  it('is created with create -plaintext and round-trips a tree', async () => {
    // No passphrase anywhere: a plaintext store needs none.
    const noPassphrase = { KLOSET_PASSPHRASE: undefined, PLAKAR_PASSPHRASE: undefined };
    const created = await kloset(['at', store, 'create', '-plaintext'], { env: noPassphrase });
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect((await kloset(['at', store, 'backup', source], { env: noPassphrase })).code).toBe(0);
    const target = path.join(work, 'plain-restored');
    const restored = await kloset(['at', store, 'restore', '-to', target], { env: noPassphrase });
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });

  it('keeps incompressible file bytes readable in its packs (what encryption hides)', async () => {
    // The control for the encrypted-store test above: the marker search does find clear bytes.
    const contents = await Promise.all((await packFiles(store)).map((p) => fs.readFile(p.file)));
    expect(contents.some((data) => data.includes(MARKER))).toBe(true);
  });
});

describe('a wide tree', () => {
  it('comes back with every directory\'s mode and mtime, set after its files, nested or not', async () => {
    // Many directories of more files than one fetch takes, a multi-chunk file deep down and
    // read-only directories: a directory finished before its last file lands shows here.
    const source = path.join(work, 'wide-source');
    const store = path.join(work, 'wide-store');
    for (let d = 0; d < 12; d++) {
      const dir = path.join(source, `d${d}`, d % 3 === 0 ? `inner${d}` : '');
      await fs.mkdir(dir, { recursive: true });
      for (let f = 0; f < 150; f++) await fs.writeFile(path.join(dir, `f${f}.txt`), `directory ${d} file ${f}\n`.repeat(f + 1));
      if (d === 9) await writeRandomFile(path.join(dir, 'large.bin'), 6 * MiB);
    }
    const directories = (await describeTreeKinds(source, 'directory')).reverse();
    for (const [k, rel] of directories.entries()) {
      const full = path.join(source, rel);
      if (rel !== '.' && k % 2 === 0) await fs.chmod(full, 0o555);
      await fs.utimes(full, PAST, new Date(PAST.getTime() + k * 60_000));
    }
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const target = path.join(work, 'wide-restored');
    const result = await kloset(['at', store, 'restore', '-to', target]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });
});

/** Relative paths of the entries of one kind below root, parents first. */
async function describeTreeKinds(root: string, kind: string): Promise<string[]> {
  return Object.entries(await describeTree(root))
    .filter(([, item]) => item.kind === kind)
    .map(([rel]) => rel);
}

describe('snapshot selection', () => {
  let store: string;
  let source: string;
  const ids: Record<string, string> = {};

  /** Three snapshots of one directory, its note.txt saying which: old [b], tagged [a,b], latest untagged. */
  beforeAll(async () => {
    store = path.join(work, 'tags-store');
    source = path.join(work, 'tags-source');
    await fs.mkdir(source);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    for (const [name, tags] of [
      ['old', ['-tag', 'b']],
      ['tagged', ['-tag', 'a,b']],
      ['latest', []],
    ] as const) {
      await fs.writeFile(path.join(source, 'note.txt'), `${name}\n`);
      const result = await kloset(['at', store, 'backup', ...tags, source]);
      expect(result.code).toBe(0);
      ids[name] = await latestSnapshotId(store, { XDG_CACHE_HOME: cache });
    }
  });

  it('ls -tag a lists only the snapshots with tag a', async () => {
    const result = await kloset(['at', store, 'ls', '-tag', 'a']);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`\\s${ids.tagged.slice(0, 8)}\\s`));
    expect(lines[0]).toContain('[a,b]');
  });

  it('restore -tag b restores the latest snapshot with tag b', async () => {
    const target = path.join(work, 'tags-restored');
    const result = await kloset(['at', store, 'restore', '-tag', 'b', '-to', target]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(escapeRegExp(ids.tagged.slice(0, 8))));
    expect(await fs.readFile(path.join(target, 'note.txt'), 'utf8')).toBe('tagged\n');
  });

  it('info -tag b describes the latest snapshot with tag b, and refuses -tag beside an id', async () => {
    const info = await kloset(['at', store, 'info', '-tag', 'b', '--json']);
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout).id).toBe(ids.tagged);
    expect(JSON.parse((await kloset(['at', store, 'info', '-tag', 'b', 'latest', '--json'])).stdout).id).toBe(ids.tagged);
    const both = await kloset(['at', store, 'info', '-tag', 'b', ids.old.slice(0, 8)]);
    expect(both.code).toBe(2);
    expectOneLineError(both, /a snapshot id or selection flags/);
    const none = await kloset(['at', store, 'info', '-tag', 'nope']);
    expect(none.code).toBe(1);
    expectOneLineError(none, 'kloset: no snapshot with tags nope');
  });

  it('takes latest for the newest snapshot, as restic does: cat, ls, info and restore, with -tag too', async () => {
    const cat = await kloset(['at', store, 'cat', 'latest:/note.txt']);
    expect(cat.code).toBe(0);
    expect(cat.stdout).toBe('latest\n');
    const ls = await kloset(['at', store, 'ls', 'latest:/']);
    expect(ls.code).toBe(0);
    expect(ls.stdout).toMatch(/ note\.txt$/m);
    const info = await kloset(['at', store, 'info', '--json', 'latest']);
    expect(info.code).toBe(0);
    expect(JSON.parse(info.stdout).id).toBe(ids.latest);
    const target = path.join(work, 'latest-tagged-restored');
    const restored = await kloset(['at', store, 'restore', '-tag', 'b', '-to', target, 'latest']);
    expect(restored.code).toBe(0);
    expect(await fs.readFile(path.join(target, 'note.txt'), 'utf8')).toBe('tagged\n');
  });

  it('says so in one line when latest is asked of an empty store', async () => {
    const empty = path.join(work, 'no-snapshot-store');
    expect((await kloset(['at', empty, 'create'])).code).toBe(0);
    const result = await kloset(['at', empty, 'cat', 'latest:/note.txt']);
    expect(result.code).not.toBe(0);
    expect(result.stderr.trim()).toBe('kloset: the store has no snapshot yet');
  });

  it('restore without a snapshot id restores the latest snapshot', async () => {
    const target = path.join(work, 'latest-restored');
    const result = await kloset(['at', store, 'restore', '-to', target]);
    expect(result.code).toBe(0);
    expect(await fs.readFile(path.join(target, 'note.txt'), 'utf8')).toBe('latest\n');
  });
});
