/**
 * `sync` copies snapshots between two stores that share no key: the copies
 * keep their ids and restore byte for byte, a second run copies nothing,
 * and a snapshot that cannot be read whole is not copied at all.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openLocalStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import {
  addedToStore,
  describeTree,
  expectNoStackTrace,
  expectOneLineError,
  flipByte,
  klosetWith,
  MiB,
  packFiles,
  startKloset,
  storeListing,
  writeRandomFile,
} from '../helpers/fixtures.js';

let work: string;
let source: string;
let kloset: ReturnType<typeof klosetWith>;
const A = { KLOSET_PASSPHRASE: 'alpha passphrase' };
const AtoB = { ...A, KLOSET_PEER_PASSPHRASE: 'beta passphrase' };
let storeA: string;
let storeB: string;
let firstTree: Awaited<ReturnType<typeof describeTree>>;

/** What a copy keeps of its snapshot, as `ls --json` shows it. */
const KEPT = ['id', 'time', 'host', 'user', 'importer', 'origin', 'source', 'tags'] as const;
type Listed = Record<(typeof KEPT)[number], string> & { tags: string[] };

async function listed(store: string, env: NodeJS.ProcessEnv): Promise<Listed[]> {
  const result = await kloset(['at', store, 'ls', '--json'], { env });
  expect(result.code, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as Listed[]).map((s) => Object.fromEntries(KEPT.map((key) => [key, s[key]])) as Listed);
}

async function newStore(name: string, passphrase: string): Promise<string> {
  const store = path.join(work, name);
  expect((await kloset(['at', store, 'create'], { env: { KLOSET_PASSPHRASE: passphrase } })).code).toBe(0);
  return store;
}

beforeAll(async () => {
  work = await tempDir('kloset-sync-');
  source = path.join(work, 'source');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(path.join(source, 'docs/deep'), { recursive: true });
  await fs.mkdir(path.join(source, 'empty-dir'));
  await writeRandomFile(path.join(source, 'large.bin'), 6 * MiB);
  await fs.writeFile(path.join(source, 'docs/notes.txt'), 'notes\n'.repeat(5000));
  await fs.writeFile(path.join(source, 'docs/deep/empty'), '');
  await fs.writeFile(path.join(source, 'script.sh'), '#!/bin/sh\necho hi\n', { mode: 0o750 });
  await fs.symlink('docs/notes.txt', path.join(source, 'notes-link'));
  storeA = await newStore('A', A.KLOSET_PASSPHRASE);
  storeB = await newStore('B', AtoB.KLOSET_PEER_PASSPHRASE);
  expect((await kloset(['at', storeA, 'backup', '-tag', 'first', source], { env: A })).code).toBe(0);
  firstTree = await describeTree(source);
  await fs.writeFile(path.join(source, 'docs/added.txt'), 'added after the first snapshot\n');
  await fs.appendFile(path.join(source, 'docs/notes.txt'), 'one more line\n');
  expect((await kloset(['at', storeA, 'backup', source], { env: A })).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('sync to another store', () => {
  it('copies every snapshot with its id, time, host, source and tags, the second reading only what changed', async () => {
    const result = await kloset(['at', storeA, 'sync', 'to', storeB], { env: AtoB });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe(`sync ${storeA} to ${storeB}: copied 2 snapshots`);
    // The second copy finds the first as its parent: only the changed file's chunks are new.
    expect(addedToStore(lines[0])).toBeGreaterThan(5.9 * MiB);
    expect(addedToStore(lines[1])).toBeLessThan(64 * 1024);
    expect(await listed(storeB, { KLOSET_PASSPHRASE: AtoB.KLOSET_PEER_PASSPHRASE })).toEqual(await listed(storeA, A));
  });

  it('leaves copies that check clean and restore byte for byte, each as its snapshot was', async () => {
    const B = { KLOSET_PASSPHRASE: AtoB.KLOSET_PEER_PASSPHRASE };
    const check = await kloset(['at', storeB, 'check'], { env: B });
    expect(check.code, check.stderr + check.stdout).toBe(0);
    const [first, second] = (await listed(storeB, B)).map((s) => s.id.slice(0, 8));
    const target = path.join(work, 'restored');
    expect((await kloset(['at', storeB, 'restore', '-to', path.join(target, 'first'), first], { env: B })).code).toBe(0);
    expect((await kloset(['at', storeB, 'restore', '-to', path.join(target, 'second'), second], { env: B })).code).toBe(0);
    expect(await describeTree(path.join(target, 'first'))).toEqual(firstTree);
    expect(await describeTree(path.join(target, 'second'))).toEqual(await describeTree(source));
  });

  it('copies nothing the second time, and writes nothing', async () => {
    const before = await storeListing(storeB);
    const result = await kloset(['at', storeA, 'sync', 'to', storeB], { env: AtoB });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`sync ${storeA} to ${storeB}: copied 0 snapshots, 2 already there\n`);
    expect(await storeListing(storeB)).toEqual(before);
  });

  it("refuses with one line when the other store's passphrase is wrong, and changes neither store", async () => {
    const before = await storeListing(storeB);
    const result = await kloset(['at', storeA, 'sync', 'to', storeB], { env: A });
    expectOneLineError(result, /wrong passphrase .*KLOSET_PEER_PASSPHRASE/);
    expect(result.code).toBe(1);
    expect(await storeListing(storeB)).toEqual(before);
  });

  it('refuses a missing direction with a usage error', async () => {
    const result = await kloset(['at', storeA, 'sync', storeB], { env: AtoB });
    expectOneLineError(result, /to\|from\|with/);
    expect(result.code).toBe(2);
  });
});

describe('sync from and with', () => {
  it('copies the snapshots named or selected, then the rest both ways', async () => {
    const C = { KLOSET_PASSPHRASE: 'gamma passphrase' };
    const storeC = await newStore('C', C.KLOSET_PASSPHRASE);
    const passphraseFile = path.join(work, 'alpha.txt');
    await fs.writeFile(passphraseFile, `${A.KLOSET_PASSPHRASE}\n`);
    const [first, second] = (await listed(storeA, A)).map((s) => s.id);

    const named = await kloset(['at', storeC, 'sync', first.slice(0, 8), 'from', storeA, '--peer-passphrase-file', passphraseFile], { env: C });
    expect(named.code, named.stderr).toBe(0);
    expect((await listed(storeC, C)).map((s) => s.id)).toEqual([first]);

    const both = await kloset(['at', storeC, 'sync', 'with', storeA, '--peer-passphrase-file', passphraseFile], { env: C });
    expect(both.code, both.stderr).toBe(0);
    expect(both.stdout).toContain(`sync ${storeC} to ${storeA}: copied 0 snapshots, 1 already there`);
    expect(both.stdout).toContain(`sync ${storeA} to ${storeC}: copied 1 snapshot, 1 already there`);
    expect((await listed(storeC, C)).map((s) => s.id)).toEqual([first, second]);

    const unreadable = await kloset(['at', storeC, 'sync', 'from', storeA, '--peer-passphrase-file', path.join(work, 'no-such-file')], { env: C });
    expect(unreadable.code).toBe(1);
    expectOneLineError(unreadable, `kloset: cannot read other store's passphrase file ${path.join(work, 'no-such-file')}: no such file or directory`);
  });

  it('selects by tag', async () => {
    const D = { KLOSET_PASSPHRASE: 'delta passphrase' };
    const storeD = await newStore('D', D.KLOSET_PASSPHRASE);
    const result = await kloset(['at', storeA, 'sync', '-tag', 'first', 'to', storeD], { env: { ...A, KLOSET_PEER_PASSPHRASE: D.KLOSET_PASSPHRASE } });
    expect(result.code, result.stderr).toBe(0);
    expect((await listed(storeD, D)).map((s) => s.tags)).toEqual([['first']]);
  });
});

describe('sync of a snapshot taken under another host name', () => {
  it('keeps that host name in the copy, not the name of the machine that copies it', async () => {
    const from = await newStore('host-from', A.KLOSET_PASSPHRASE);
    const to = await newStore('host-to', AtoB.KLOSET_PEER_PASSPHRASE);
    const backup = await kloset(['at', from, 'backup', '-host', 'web1-elsewhere', path.join(source, 'docs')], { env: A });
    expect(backup.code, backup.stderr).toBe(0);
    const result = await kloset(['at', from, 'sync', 'to', to], { env: AtoB });
    expect(result.code, result.stderr).toBe(0);
    const copies = await listed(to, { KLOSET_PASSPHRASE: AtoB.KLOSET_PEER_PASSPHRASE });
    expect(copies.map((s) => s.host)).toEqual(['web1-elsewhere']);
    expect(copies).toEqual(await listed(from, A));
  });
});

describe('sync of a snapshot another user took', () => {
  it('keeps that user in the copy, not the user who copies it', async () => {
    const from = await newStore('user-from', A.KLOSET_PASSPHRASE);
    const to = await newStore('user-to', AtoB.KLOSET_PEER_PASSPHRASE);
    expect((await kloset(['at', from, 'backup', path.join(source, 'docs')], { env: A })).code).toBe(0);
    // The header rewritten as another account's backup would have written it.
    const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
    const { listSnapshots, putSnapshotHeader } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
    const savedCache = process.env.XDG_CACHE_HOME;
    process.env.XDG_CACHE_HOME = path.join(work, 'cache');
    try {
      const repository = await Repository.open(await openLocalStore(from), async () => A.KLOSET_PASSPHRASE, { loadIndex: false });
      const [header] = await listSnapshots(repository);
      await putSnapshotHeader(repository, { ...header, user: 'backup-operator' });
    } finally {
      process.env.XDG_CACHE_HOME = savedCache;
    }
    const result = await kloset(['at', from, 'sync', 'to', to], { env: AtoB });
    expect(result.code, result.stderr).toBe(0);
    const copies = await listed(to, { KLOSET_PASSPHRASE: AtoB.KLOSET_PEER_PASSPHRASE });
    expect(copies.map((s) => s.user)).toEqual(['backup-operator']);
    expect(copies).toEqual(await listed(from, A));
  });
});

describe('sync of a damaged snapshot', () => {
  it('copies no snapshot that cannot be read whole, names the file, and exits partial', async () => {
    const damaged = path.join(work, 'A-damaged');
    await fs.cp(storeA, damaged, { recursive: true });
    // The largest pack holds large.bin, which both snapshots share.
    const [pack] = (await packFiles(damaged)).sort((a, b) => b.size - a.size);
    await flipByte(pack.file);
    const E = { KLOSET_PASSPHRASE: 'epsilon passphrase' };
    const storeE = await newStore('E', E.KLOSET_PASSPHRASE);

    const result = await kloset(['at', damaged, 'sync', 'to', storeE], { env: { ...A, KLOSET_PEER_PASSPHRASE: E.KLOSET_PASSPHRASE } });
    expectNoStackTrace(result);
    expect(result.code).toBe(3);
    const errors = result.stderr.trim().split('\n');
    expect(errors).toHaveLength(2);
    for (const line of errors) expect(line).toMatch(/^kloset: [0-9a-f]{8} not copied to .*: \/large\.bin: .*authentication failed/);
    expect(result.stdout).toContain('copied 0 snapshots, 2 failed');
    expect(await listed(storeE, E)).toEqual([]);
  });

  it('counts a snapshot whose header is damaged as not copied, unless the other store has it', async () => {
    const damaged = path.join(work, 'A-damaged-header');
    await fs.cp(storeA, damaged, { recursive: true });
    const [first, second] = (await listed(storeA, A)).map((s) => s.id);
    await flipByte(path.join(damaged, 'snapshots', second));
    const H = { KLOSET_PASSPHRASE: 'eta passphrase' };
    const storeH = await newStore('H', H.KLOSET_PASSPHRASE);

    const result = await kloset(['at', damaged, 'sync', 'to', storeH], { env: { ...A, KLOSET_PEER_PASSPHRASE: H.KLOSET_PASSPHRASE } });
    expectNoStackTrace(result);
    expect(result.code).toBe(3);
    expect(result.stderr.trim()).toMatch(new RegExp(`^kloset: ${second.slice(0, 8)} not copied to .*: .*header is damaged`));
    expect(result.stdout).toContain('copied 1 snapshot, 1 failed');
    expect((await listed(storeH, H)).map((s) => s.id)).toEqual([first]);

    // storeB holds both already: nothing is missing there.
    const again = await kloset(['at', damaged, 'sync', 'to', storeB], { env: AtoB });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/^warning: snapshot [0-9a-f]{8}: its header is damaged/);
    expect(again.stdout).toContain('copied 0 snapshots, 1 already there');
  });

  it('leaves what a failed copy stored out of the next copies, which are whole', async () => {
    // The second snapshot stores a.bin's packs before its copy fails on z.bin; the third holds a.bin alone.
    const src = path.join(work, 'failing-source');
    await fs.mkdir(src);
    const F = { KLOSET_PASSPHRASE: 'phi passphrase' };
    const G = { KLOSET_PASSPHRASE: 'gamma passphrase' };
    const storeF = await newStore('phi', F.KLOSET_PASSPHRASE);
    const run = (args: string[]) => kloset(['at', storeF, ...args], { env: F });
    await writeRandomFile(path.join(src, 'z.bin'), 20 * MiB);
    expect((await run(['backup', src])).code).toBe(0);
    const zPacks = new Set((await packFiles(storeF)).map((p) => p.file));
    await writeRandomFile(path.join(src, 'a.bin'), 40 * MiB);
    expect((await run(['backup', src])).code).toBe(0);
    await fs.rm(path.join(src, 'z.bin'));
    expect((await run(['backup', src])).code).toBe(0);
    for (const file of zPacks) await flipByte(file);
    const storeG = await newStore('gamma', G.KLOSET_PASSPHRASE);
    const result = await kloset(['at', storeF, 'sync', 'to', storeG], { env: { ...F, KLOSET_PEER_PASSPHRASE: G.KLOSET_PASSPHRASE } });
    expect(result.code).toBe(3);
    expect(result.stdout).toContain('copied 1 snapshot, 2 failed');
    const check = await kloset(['at', storeG, 'check'], { env: G });
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    const restored = path.join(work, 'failing-restored');
    expect((await kloset(['at', storeG, 'restore', '-to', restored], { env: G })).code).toBe(0);
    expect((await fs.readFile(path.join(restored, 'a.bin'))).equals(await fs.readFile(path.join(src, 'a.bin')))).toBe(true);
  });
});

describe('a sync interrupted with Ctrl-C', () => {
  it('exits 130 and leaves the other store without a partial snapshot, passing check', async () => {
    const big = path.join(work, 'big-source');
    await fs.mkdir(big);
    for (let i = 0; i < 4; i++) await writeRandomFile(path.join(big, `part-${i}.bin`), 48 * MiB);
    const storeF = path.join(work, 'F');
    expect((await kloset(['at', storeF, 'create'], { env: A })).code).toBe(0);
    expect((await kloset(['at', storeF, 'backup', big], { env: A })).code).toBe(0);
    const storeG = await newStore('G', A.KLOSET_PASSPHRASE);
    const { child, done } = startKloset(['at', storeF, 'sync', 'to', storeG], { env: { ...A, XDG_CACHE_HOME: path.join(work, 'cache') } });
    let exited = false;
    void done.then(() => (exited = true));
    // Interrupted once the copy has stored a pack in the other store.
    while (!exited && (await packFiles(storeG).catch(() => [])).length === 0) await sleep(20);
    expect(exited, 'the sync finished before it could be interrupted').toBe(false);
    child.kill('SIGINT');
    const result = await done;
    expectNoStackTrace(result);
    expect(result.code, result.stdout + result.stderr).toBe(130);
    expect(result.stderr).toMatch(/^kloset: sync interrupted: 0 snapshots copied to .*; [0-9a-f]{8} was not$/m);
    expect(await listed(storeG, A)).toEqual([]);
    const check = await kloset(['at', storeG, 'check'], { env: A });
    expect(check.code, check.stdout + check.stderr).toBe(0);
  }, 120_000);
});

describe('a sync whose lock on the other store is taken away', () => {
  it('stops at the copy under way and commits no later one', async () => {
    const big = path.join(work, 'lost-lock-source');
    await fs.mkdir(big);
    const storeL = path.join(work, 'lost-lock-from');
    expect((await kloset(['at', storeL, 'create'], { env: A })).code).toBe(0);
    for (let i = 0; i < 2; i++) {
      await writeRandomFile(path.join(big, `part-${i}.bin`), 48 * MiB);
      expect((await kloset(['at', storeL, 'backup', big], { env: A })).code).toBe(0);
    }
    const storeM = await newStore('lost-lock-to', A.KLOSET_PASSPHRASE);
    const { done } = startKloset(['at', storeL, 'sync', 'to', storeM], { env: { ...A, XDG_CACHE_HOME: path.join(work, 'cache') } });
    let exited = false;
    void done.then(() => (exited = true));
    // As `unlock --remove-all` run elsewhere would do, once the copy is under way: as soon as it holds the other
    // store. Waiting for its first pack left a loaded machine a few hundred ms to notice before the first commit.
    const syncLocks = async () => (await fs.readdir(path.join(storeM, 'locks')).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n));
    while (!exited && (await syncLocks()).length === 0) await sleep(5);
    expect(exited, 'the sync ended before it locked the other store').toBe(false);
    for (const name of await syncLocks()) await fs.unlink(path.join(storeM, 'locks', name));
    const result = await done;
    expectNoStackTrace(result);
    expect(result.code, result.stdout + result.stderr).toBe(1);
    expect(result.stderr).toMatch(/^kloset: the store's lock was lost \(it was removed from the store\): stopping before anything is committed; 0 snapshots copied to /m);
    expect(await listed(storeM, A)).toEqual([]);
  }, 120_000);
});
