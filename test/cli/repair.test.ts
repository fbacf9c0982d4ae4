/**
 * `repair index` gives back a usable index when deltas are damaged or lost,
 * or packs are gone: it indexes the packs from their trailers and drops what
 * the store no longer holds, so restores work again and the next backup
 * stores the lost blobs anew.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { describeTree, expectOneLineError, flipByte, klosetWith, MiB, packFiles, storeListing, writeRandomFile } from '../helpers/fixtures.js';

// A test here makes a store of two snapshots, then repairs, backs up, restores and checks it: on a
// loaded machine, over half a minute.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

let work: string;
let source: string;
let store: string;
let cache: string;
let kloset: ReturnType<typeof klosetWith>;
/** Pack file names of the first backup, then of the second. */
let firstPacks: string[];
let secondPacks: string[];
let first: string;
let second: string;

beforeEach(async () => {
  work = await tempDir('kloset-repair-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  cache = path.join(work, 'cache');
  kloset = klosetWith({ XDG_CACHE_HOME: cache });
  await fs.mkdir(path.join(source, 'docs'), { recursive: true });
  await writeRandomFile(path.join(source, 'a.bin'), 2 * MiB);
  await fs.writeFile(path.join(source, 'docs', 'notes.txt'), 'first notes\n'.repeat(1000));
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  firstPacks = (await packFiles(store)).map((p) => p.file);
  await writeRandomFile(path.join(source, 'b.bin'), 2 * MiB);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  secondPacks = (await packFiles(store)).map((p) => p.file).filter((file) => !firstPacks.includes(file));
  expect(secondPacks).toHaveLength(1);
  [first, second] = (JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { id: string }[]).map((s) => s.id.slice(0, 8));
});

afterEach(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function deltas(): Promise<string[]> {
  return (await fs.readdir(path.join(store, 'index'))).sort();
}

/** What another machine sees: no local copy of the index. */
async function forgetLocalIndex(): Promise<void> {
  await fs.rm(cache, { recursive: true, force: true });
}

async function expectRestoresAsSource(snapshot: string): Promise<void> {
  const target = path.join(work, `restored-${snapshot}`);
  const restore = await kloset(['at', store, 'restore', '-to', target, snapshot]);
  expect(restore.stderr).toBe('');
  expect(restore.code).toBe(0);
  expect(await describeTree(target)).toEqual(await describeTree(source));
}

function withoutLocks(listing: string[]): string[] {
  return listing.filter((line) => !line.startsWith('locks/'));
}

describe('repair index', () => {
  it('finds nothing to do in a sound store, and changes nothing', async () => {
    const before = await storeListing(store);
    const repair = await kloset(['at', store, 'repair', 'index']);
    expect(repair.stderr).toBe('');
    expect(repair.code).toBe(0);
    expect(repair.stdout).toMatch(/^repair index: 2 packs, 2 index deltas; every delta opens, .*nothing to do in /);
    expect(withoutLocks(await storeListing(store))).toEqual(withoutLocks(before));
  });

  it('replaces a damaged delta, which otherwise stops every command, prune included', async () => {
    const [delta] = await deltas();
    await flipByte(path.join(store, 'index', delta));
    await forgetLocalIndex();

    const ls = await kloset(['at', store, 'ls', `${second}:/`]);
    expect(ls.code).not.toBe(0);
    expectOneLineError(ls, /authentication failed .*'kloset repair index' rebuilds the index from the packs/);
    // A prune that went on without that delta would take its packs for unused.
    const before = await storeListing(store);
    expectOneLineError(await kloset(['at', store, 'prune']), /repair index/);
    const dry = await kloset(['at', store, 'repair', 'index', '-n']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^repair index \(dry run\): 2 packs, 2 index deltas; would drop 1 damaged delta, would index \d+ blobs from 1 pack trailer;/);
    expect(withoutLocks(await storeListing(store))).toEqual(withoutLocks(before));

    const repair = await kloset(['at', store, 'repair', 'index']);
    expect(repair.stderr).toBe(`damaged: index delta ${delta.slice(0, 16)}: authentication failed (damaged or tampered)\n`);
    expect(repair.code).toBe(0);
    expect(repair.stdout).toMatch(/dropped 1 damaged delta, indexed [1-9]\d* blobs from 1 pack trailer; the index now names \d+ blobs in one delta/);
    expect(await deltas()).toHaveLength(1);

    await forgetLocalIndex();
    const check = await kloset(['at', store, 'check']);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    await expectRestoresAsSource(second);
    expect((await kloset(['at', store, 'repair', 'index'])).stdout).toMatch(/nothing to do/);
  });

  it('indexes every pack again when every delta is lost, as check suggests', async () => {
    for (const delta of await deltas()) await fs.rm(path.join(store, 'index', delta));
    await forgetLocalIndex();
    const lost = await kloset(['at', store, 'check']);
    expect(lost.code).toBe(1);
    expect(lost.stderr).toContain(`damaged: snapshot ${second}: /: directory damaged or missing`);
    expect(lost.stdout).toMatch(/^2 packs in the store are in no index delta: 'kloset repair index' indexes them, which may bring back what is missing$/m);
    const repair = await kloset(['at', store, 'repair', 'index']);
    expect(repair.stderr).toBe('');
    expect(repair.code).toBe(0);
    expect(repair.stdout).toMatch(/^repair index: 2 packs, 0 index deltas; indexed \d+ blobs from 2 pack trailers;/);
    const check = await kloset(['at', store, 'check']);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    await expectRestoresAsSource(second);
  });

  it('rebuilds from every trailer with --read-all-packs, to the same index', async () => {
    const before = (await kloset(['at', store, 'info', '--json'])).stdout;
    const repair = await kloset(['at', store, 'repair', 'index', '--read-all-packs']);
    expect(repair.code).toBe(0);
    expect(repair.stdout).toMatch(/indexed \d+ blobs from 2 pack trailers; the index now names \d+ blobs in one delta/);
    await forgetLocalIndex();
    const info = (s: string) => {
      const { blobs, packs, stored_size } = JSON.parse(s) as Record<string, number>;
      return { blobs, packs, stored_size };
    };
    expect(info((await kloset(['at', store, 'info', '--json'])).stdout)).toEqual(info(before));
    expect((await kloset(['at', store, 'check'])).code).toBe(0);
  });

  it('drops a pack gone from the store, so that the next backup stores its blobs again', async () => {
    const [lost] = secondPacks;
    await fs.rm(lost);
    const repair = await kloset(['at', store, 'repair', 'index']);
    expect(repair.stderr).toMatch(new RegExp(`^missing: pack ${path.basename(lost).slice(0, 16)}, where the index places \\d+ blobs\\n`));
    expect(repair.stderr).toMatch(/cannot be read from this store: check names the snapshots that used them/);
    expect(repair.code).toBe(1);
    expect(repair.stdout).toMatch(/dropped 1 missing pack/);

    const check = await kloset(['at', store, 'check']);
    expect(check.code).toBe(1);
    // That pack held the second backup's new blobs: b.bin's chunks and the root directory.
    expect(check.stderr).toContain(`damaged: snapshot ${second}: /: directory damaged or missing`);
    expect((await kloset(['at', store, 'check', first])).code).toBe(0);

    const backup = await kloset(['at', store, 'backup', source]);
    expect(backup.code).toBe(0);
    expect(backup.stdout).toMatch(/\(2\.\d+ MiB added to the store\)/);
    const latest = await kloset(['at', store, 'check', 'latest']);
    expect(latest.stderr).toBe('');
    expect(latest.code).toBe(0);
    await expectRestoresAsSource('latest');
  });

  it('drops a pack gone from the store, and the next backup stores again the chunks of a large file whose chunk list stayed', async () => {
    const large = path.join(work, 'large');
    const largeStore = path.join(work, 'large-store');
    await fs.mkdir(large);
    await writeRandomFile(path.join(large, 'big.bin'), 40 * MiB);
    expect((await kloset(['at', largeStore, 'create'])).code).toBe(0);
    expect((await kloset(['at', largeStore, 'backup', large])).code).toBe(0);
    // The first pack holds the file's first chunks; its chunk list, stored once the file is read, is in the last.
    const packs = await Promise.all((await packFiles(largeStore)).map(async (p) => ({ ...p, mtime: (await fs.stat(p.file)).mtimeMs })));
    packs.sort((a, b) => a.mtime - b.mtime);
    expect(packs.length).toBeGreaterThan(2);
    await fs.rm(packs[0].file);
    expect((await kloset(['at', largeStore, 'repair', 'index'])).code).toBe(1);

    const backup = await kloset(['at', largeStore, 'backup', large]);
    expect(backup.code).toBe(0);
    const latest = await kloset(['at', largeStore, 'check', 'latest']);
    expect(latest.stderr).toBe('');
    expect(latest.code).toBe(0);
    const target = path.join(work, 'large-restored');
    expect((await kloset(['at', largeStore, 'restore', '-to', target, 'latest'])).code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(large));
  });

  it('names a pack whose trailer does not open, and indexes the others', async () => {
    for (const delta of await deltas()) await fs.rm(path.join(store, 'index', delta));
    await forgetLocalIndex();
    const [damaged] = secondPacks;
    await flipByte(damaged, (size) => size - 10);
    const repair = await kloset(['at', store, 'repair', 'index']);
    expect(repair.stderr).toMatch(
      new RegExp(`^damaged: pack ${path.basename(damaged).slice(0, 16)}: trailer: authentication failed .*: its blobs cannot be indexed\\n`),
    );
    expect(repair.code).toBe(1);
    expect(repair.stdout).toMatch(/indexed [1-9]\d* blobs from 2 pack trailers/);
    expect((await kloset(['at', store, 'check', first])).code).toBe(0);
  });

  it('with --read-all-packs, keeps what a sound delta says of a pack whose trailer does not open', async () => {
    const [damaged] = secondPacks;
    await flipByte(damaged, (size) => size - 10);
    const repair = await kloset(['at', store, 'repair', 'index', '--read-all-packs']);
    expect(repair.stderr).toBe(`damaged: pack ${path.basename(damaged).slice(0, 16)}: trailer: authentication failed (damaged or tampered): its entries in the index are kept\n`);
    expect(repair.code).toBe(0);
    await forgetLocalIndex();
    const check = await kloset(['at', store, 'check', second]);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    await expectRestoresAsSource(second);
  });
});
