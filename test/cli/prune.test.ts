/**
 * prune gives back the space of forgotten snapshots without ever touching
 * what a remaining snapshot needs: not when it stops half-way, not with a
 * damaged blob, not beside a reader, and not for another machine whose
 * index cache still names what it removed.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { startKloset, tempDir } from '../helpers/cli.js';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import {
  describeTree,
  expectOneLineError,
  flipByte,
  klosetWith,
  MiB,
  packFiles,
  storeListing,
  storeSize,
  writeRandomFile,
} from '../helpers/fixtures.js';
import { mountCli } from '../helpers/mount.js';

// A test here runs the CLI a dozen times over tens of MiB: on a loaded machine, most of a minute.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

let work: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-prune-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/**
 * A store with two snapshots of `source`: the first holds `gone.bin` (20 MiB,
 * a copy kept as `<name>-gone.bin`), the second does not but shares
 * `kept.bin` (10 MiB) and some small files.
 */
async function twoSnapshots(name: string, createArgs: string[] = []): Promise<{ store: string; source: string; first: string; second: string }> {
  const source = path.join(work, `${name}-source`);
  const store = path.join(work, `${name}-store`);
  await fs.mkdir(path.join(source, 'docs'), { recursive: true });
  await writeRandomFile(path.join(source, 'kept.bin'), 10 * MiB);
  await writeRandomFile(path.join(source, 'gone.bin'), 20 * MiB);
  await fs.copyFile(path.join(source, 'gone.bin'), path.join(work, `${name}-gone.bin`));
  for (let i = 0; i < 50; i++) await fs.writeFile(path.join(source, 'docs', `note-${i}.txt`), `note ${i}\n`.repeat(i + 1));
  expect((await kloset(['at', store, 'create', ...createArgs])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  await fs.rm(path.join(source, 'gone.bin'));
  await fs.writeFile(path.join(source, 'docs', 'note-0.txt'), 'changed\n');
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  const ids = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { id: string }[];
  return { store, source, first: ids[0].id, second: ids[1].id };
}

/**
 * gone.bin's 20 MiB are given back, but for what prune leaves on purpose: a
 * pack whose unused bytes are at most a quarter of it stays as it is, and
 * how the chunks of gone.bin and kept.bin share packs depends on the order
 * the chunk workers finish them in. So at most a quarter of what is left
 * may still be gone.bin's (and a MiB for the index and the snapshots).
 */
async function expectGoneGivenBack(store: string, before: number): Promise<void> {
  const after = await storeSize(store);
  expect(before - after).toBeGreaterThan(20 * MiB - after / 4 - MiB);
}

async function expectRestoresExactly(store: string, source: string, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const target = await fs.mkdtemp(path.join(work, 'restored-'));
  const restored = await kloset(['at', store, 'restore', '-to', target], { env });
  expect(restored.stderr).toBe('');
  expect(restored.code).toBe(0);
  expect(await describeTree(target)).toEqual(await describeTree(source));
  const checked = await kloset(['at', store, 'check'], { env });
  expect(checked.stdout).toMatch(/no problems found/);
  expect(checked.code).toBe(0);
}

describe('prune after rm', () => {
  let store: string;
  let source: string;

  beforeAll(async () => {
    ({ store, source } = await twoSnapshots('main'));
    const ids = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { id: string }[];
    expect((await kloset(['at', store, 'rm', ids[0].id])).code).toBe(0);
  });

  it('with --dry-run says what it would remove and changes nothing', async () => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'prune', '--dry-run']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^prune \(dry run\): 1 snapshot, .* would (remove|rewrite)/);
    expect(await storeListing(store)).toEqual(before);
  });

  it('gives back the space of the forgotten snapshot; the other restores byte for byte and passes check', async () => {
    const before = await storeSize(store);
    const result = await kloset(['at', store, 'prune']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^prune: 1 snapshot, /);
    // gone.bin (20 MiB of random bytes) was only in the forgotten snapshot.
    await expectGoneGivenBack(store, before);
    expect(await fs.readdir(path.join(store, 'locks'))).toEqual([]);
    await expectRestoresExactly(store, source);
  });

  it('finds nothing more to remove the second time', async () => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'prune']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/nothing to remove/);
    expect(await storeListing(store)).toEqual(before);
  });

  it('is also called maintenance, as in Plakar', async () => {
    const result = await kloset(['at', store, 'maintenance', '-n']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/nothing to remove/);
  });

  it('removes packs that no index delta names, as an interrupted backup leaves them', async () => {
    const [pack] = await packFiles(store);
    const orphan = path.join(path.dirname(pack.file), `${pack.id.slice(0, 2)}${'0'.repeat(62)}`);
    await fs.copyFile(pack.file, orphan);
    const result = await kloset(['at', store, 'prune']);
    expect(result.code).toBe(0);
    await expect(fs.stat(orphan)).rejects.toThrow(/ENOENT/);
    await expectRestoresExactly(store, source);
  });
});

describe('files a killed writer left half written', () => {
  it('are found by a dry run and removed by prune; in locks/ and beside CONFIG, only once an hour old', async () => {
    const { store, source } = await twoSnapshots('partial');
    // What a process killed in the middle of a put leaves: the temporary name, never renamed.
    const partial = ['packs/ab/' + 'ab'.repeat(32) + '.tmp-0123456789ab', 'index/' + 'cd'.repeat(32) + '.tmp-ba9876543210', 'snapshots/' + 'ef'.repeat(32) + '.tmp-00ff00ff00ff'];
    // Written without the exclusive lock (a lock's refresh, passwd): recent ones may be writes in progress.
    const abandoned = ['locks/' + '34'.repeat(32) + '.tmp-bbbbbbbbbbbb', 'CONFIG.tmp-cccccccccccc'];
    const inProgress = ['locks/' + '12'.repeat(32) + '.tmp-aaaaaaaaaaaa', 'CONFIG.tmp-dddddddddddd'];
    for (const rel of [...partial, ...abandoned, ...inProgress]) {
      await fs.mkdir(path.dirname(path.join(store, rel)), { recursive: true });
      await fs.writeFile(path.join(store, rel), Buffer.alloc(1000, 1));
    }
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    for (const rel of abandoned) await fs.utimes(path.join(store, rel), twoHoursAgo, twoHoursAgo);
    const dry = await kloset(['at', store, 'prune', '-n']);
    expect(dry.stdout).toMatch(/; would remove 5 partly written files \(4\.88 KiB\) in /);
    for (const rel of [...partial, ...abandoned]) await fs.access(path.join(store, rel));
    const done = await kloset(['at', store, 'prune']);
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(/; removed 5 partly written files \(4\.88 KiB\) in /);
    for (const rel of [...partial, ...abandoned]) await expect(fs.access(path.join(store, rel))).rejects.toThrow(/ENOENT/);
    for (const rel of inProgress) await fs.access(path.join(store, rel));
    for (const rel of inProgress) await fs.rm(path.join(store, rel));
    await expectRestoresExactly(store, source);
  });
});

describe('a machine whose index cache predates a prune', () => {
  it('stores the removed data again instead of taking it for stored', async () => {
    const { store, source, first } = await twoSnapshots('cache');
    const otherMachine = { XDG_CACHE_HOME: path.join(work, 'other-machine-cache') };
    // The other machine's cache now names every blob of both snapshots, gone.bin's included.
    expect((await kloset(['at', store, 'ls'], { env: otherMachine })).code).toBe(0);
    expect((await kloset(['at', store, 'rm', first])).code).toBe(0);
    expect((await kloset(['at', store, 'prune'])).code).toBe(0);
    // gone.bin comes back into the source, and the other machine backs it up.
    await fs.copyFile(path.join(work, 'cache-gone.bin'), path.join(source, 'gone.bin'));
    const backup = await kloset(['at', store, 'backup', source], { env: otherMachine });
    expect(backup.code).toBe(0);
    await expectRestoresExactly(store, source, otherMachine);
  });
});

describe('prune that stops half-way', () => {
  it('leaves every snapshot whole when a pack cannot be deleted, and finishes on the next run', async () => {
    const { store, source, first } = await twoSnapshots('stuck');
    expect((await kloset(['at', store, 'rm', first])).code).toBe(0);
    // An immutable pack: not even root can delete it, so the prune stops among its deletions.
    const packs = await packFiles(store);
    for (const pack of packs) execFileSync('chattr', ['+i', pack.file]);
    try {
      const stuck = await kloset(['at', store, 'prune']);
      expect(stuck.code).not.toBe(0);
      expectOneLineError(stuck, /operation not permitted|EPERM/i);
      await expectRestoresExactly(store, source);
    } finally {
      for (const pack of packs) execFileSync('chattr', ['-i', pack.file]);
    }
    const before = await storeSize(store);
    const done = await kloset(['at', store, 'prune']);
    expect(done.code).toBe(0);
    await expectGoneGivenBack(store, before);
    await expectRestoresExactly(store, source);
  });

  it('keeps, in a plaintext store, the pack it rewrites when one stopped before its index delta left that very pack', async () => {
    const { store, source, first } = await twoSnapshots('plain-repack', ['-plaintext']);
    expect((await kloset(['at', store, 'rm', first])).code).toBe(0);
    const { prune } = (await loadBuilt('snapshot/prune.js')) as typeof import('../../src/snapshot/prune.js');
    // Stopped once its rewritten packs are stored, before the delta naming them: as a full disk or a kill leaves it.
    const stop = async () => {
      throw new Error('stopped');
    };
    await expect(prune(await openBuiltStore(store), { checkLock: stop })).rejects.toThrow('stopped');
    const before = await packFiles(store);
    // Sealed alike, the blobs rewritten again make a pack of the same bytes and so of the same name.
    const result = await kloset(['at', store, 'prune']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const after = await packFiles(store);
    expect(after.length).toBeLessThan(before.length);
    // The summary counts the packs that are gone, not the one stored again under its name.
    const gone = before.filter((pack) => !after.some((other) => other.id === pack.id)).length;
    const [, removed, rewritten] = /removed (\d+) packs? .* rewrote (\d+) packs? /.exec(result.stdout) ?? [];
    expect(Number(removed) + Number(rewritten)).toBe(gone);
    const check = await kloset(['at', store, 'check']);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    await expectRestoresExactly(store, source);
  });

  it('removes nothing when a blob it would keep is damaged', async () => {
    const { store, first } = await twoSnapshots('damaged');
    expect((await kloset(['at', store, 'rm', first])).code).toBe(0);
    // Damage every pack in its middle: whichever holds blobs in use and must be rewritten is hit.
    for (const pack of await packFiles(store)) await flipByte(pack.file);
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'prune']);
    expect(result.code).not.toBe(0);
    expectOneLineError(result, /damaged|authentication failed/);
    expect((await storeListing(store)).filter((line) => !line.startsWith('packs/'))).toEqual(
      before.filter((line) => !line.startsWith('packs/')),
    );
    for (const line of before.filter((l) => l.startsWith('packs/'))) expect(await storeListing(store)).toContain(line);
  });
});

describe('prune with blobs in use that the store no longer holds', () => {
  it('refuses, and so does its dry run, rather than list what prune would never remove', async () => {
    const source = path.join(work, 'lostpack-source');
    const store = path.join(work, 'lostpack-store');
    await fs.mkdir(source);
    await writeRandomFile(path.join(source, 'big.bin'), 40 * MiB);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    // A pack of chunks only (the directories and chunk lists are written last) that the remaining snapshot
    // still needs: marking reads no blob of it, and a sweep would lose what it holds.
    const repository = await openBuiltStore(store);
    const chunksOnly = new Map<string, boolean>();
    for (const [, location] of repository.index) {
      const id = location.packId.toString('hex');
      chunksOnly.set(id, (chunksOnly.get(id) ?? true) && location.type === 1);
    }
    const dry = await kloset(['at', store, 'prune', '-n']);
    expect(dry.code).toBe(0);
    const lostId = [...chunksOnly].find(([, only]) => only)![0];
    await fs.rm((await packFiles(store)).find((pack) => pack.id === lostId)!.file);
    const before = await storeListing(store);
    for (const args of [['prune', '-n'], ['prune'], ['rm', '--keep-last', '1', '--prune', '-n']]) {
      const result = await kloset(['at', store, ...args]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/blobs in use are missing from the index or from the store's packs: nothing was removed/);
      expect(result.stdout).not.toMatch(/would remove \d+ pack/);
    }
    expect(await storeListing(store)).toEqual(before);
  });
});

describe('prune beside other commands', () => {
  it('refuses while a mount reads the store, and a backup refuses while prune holds it', async () => {
    const { store, source, first } = await twoSnapshots('locks');
    expect((await kloset(['at', store, 'rm', first])).code).toBe(0);
    const mountpoint = path.join(work, 'locks-mnt');
    await fs.mkdir(mountpoint);
    const mounted = await mountCli(store, mountpoint, [], { env: { XDG_CACHE_HOME: path.join(work, 'cache') } });
    try {
      const before = await storeListing(store);
      const refused = await kloset(['at', store, 'prune']);
      expect(refused.code).toBe(1);
      expectOneLineError(refused, /store is in use by a mount \(pid \d+ on .*\): try again once it has ended/);
      expect((await storeListing(store)).filter((l) => !l.startsWith('locks/'))).toEqual(before.filter((l) => !l.startsWith('locks/')));
    } finally {
      await mounted.stop();
    }
    // A prune's exclusive lock, held by this process, keeps a backup out.
    const { StoreLock } = (await loadBuilt('kloset/locks.js')) as typeof import('../../src/kloset/locks.js');
    const repository = await openBuiltStore(store, { loadIndex: false });
    const lock = await StoreLock.acquire(repository, 'exclusive', 'prune');
    try {
      const refused = await kloset(['at', store, 'backup', source]);
      expect(refused.code).toBe(1);
      expectOneLineError(refused, /store is in use by prune \(pid \d+/);
    } finally {
      await lock.release();
    }
    expect((await kloset(['at', store, 'prune'])).code).toBe(0);
    await expectRestoresExactly(store, source);
  });
  it('refuses while a check reads the store, which would otherwise find the packs it removed missing', async () => {
    const { store, source, first } = await twoSnapshots('checking');
    expect((await kloset(['at', store, 'rm', first])).code).toBe(0);
    const { child, done } = startKloset(['at', store, 'check'], { env: { XDG_CACHE_HOME: path.join(work, 'cache') } });
    // Held still once it reads packs (past the program's own files), with the index it loaded in hand.
    const readBytes = async () => Number(/rchar: (\d+)/.exec(await fs.readFile(`/proc/${child.pid}/io`, 'utf8').catch(() => ''))?.[1] ?? 0);
    while ((await readBytes()) < 4 * MiB) {
      expect(child.exitCode, 'the check ended before it was held').toBeNull();
      await sleep(1);
    }
    child.kill('SIGSTOP');
    try {
      const refused = await kloset(['at', store, 'prune']);
      expect(refused.code).toBe(1);
      expectOneLineError(refused, /store is in use by a check \(pid \d+ on .*\): try again once it has ended/);
    } finally {
      child.kill('SIGCONT');
    }
    const checked = await done;
    expect(checked.stderr).toBe('');
    expect(checked.stdout).toMatch(/no problems found/);
    expect(checked.code).toBe(0);
    expect((await kloset(['at', store, 'prune'])).code).toBe(0);
    await expectRestoresExactly(store, source);
  });
});

describe('prune racing another writer, as when its lock was taken for dead while it was suspended', () => {
  /** twoSnapshots with the first one forgotten, and the built prune with the store opened for it. */
  async function forgottenFirst(name: string) {
    const { store, source, first } = await twoSnapshots(name);
    expect((await kloset(['at', store, 'rm', first])).code).toBe(0);
    const { prune } = (await loadBuilt('snapshot/prune.js')) as typeof import('../../src/snapshot/prune.js');
    return { store, source, prune, repository: await openBuiltStore(store) };
  }

  it('removes nothing when a snapshot was committed after it marked what is in use', async () => {
    const { store, source, prune, repository } = await forgottenFirst('race');
    const packs = await packFiles(store);
    // gone.bin comes back: the new snapshot reuses the very blobs this prune is about to remove.
    const writeSnapshot = async () => {
      await fs.copyFile(path.join(work, 'race-gone.bin'), path.join(source, 'gone.bin'));
      const backup = await kloset(['at', store, 'backup', source]);
      expect(backup.code).toBe(0);
    };
    await expect(prune(repository, { checkLock: writeSnapshot })).rejects.toThrow(
      /^snapshot [0-9a-f]{8} appeared while prune ran: another writer used the store, nothing was removed$/,
    );
    for (const pack of packs) await fs.access(pack.file);
    await expectRestoresExactly(store, source);
  });

  it('leaves alone the half-written files of a writer that got in, even one that stores no new blob', async () => {
    const { store, source, prune, repository } = await forgottenFirst('race-partial');
    // The upload of another writer, under way.
    const partial = path.join(store, 'packs', 'ab', `${'ab'.repeat(32)}.tmp-0123456789ab`);
    await fs.mkdir(path.dirname(partial), { recursive: true });
    await fs.writeFile(partial, 'half a pack');
    const deltas = await fs.readdir(path.join(store, 'index'));
    let backedUp = false;
    const unchangedBackup = async () => {
      if (backedUp) return;
      backedUp = true;
      expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    };
    await expect(prune(repository, { checkLock: unchangedBackup })).rejects.toThrow(/^snapshot [0-9a-f]{8} appeared while prune ran/);
    // Nothing new to index: only the check of the snapshots could have stopped it.
    expect(await fs.readdir(path.join(store, 'index'))).toEqual(deltas);
    await fs.access(partial);
  });

  it('removes nothing when an index delta appeared after it loaded the index', async () => {
    const { store, source, prune, repository } = await forgottenFirst('race-delta');
    const packs = await packFiles(store);
    const stray = path.join(store, 'index', 'ab'.repeat(32));
    const writeDelta = async () => fs.copyFile(path.join(store, 'index', (await fs.readdir(path.join(store, 'index')))[0]), stray);
    await expect(prune(repository, { checkLock: writeDelta })).rejects.toThrow(/index\/(ab)+ appeared while prune ran/);
    for (const pack of packs) await fs.access(pack.file);
    await fs.rm(stray);
    await expectRestoresExactly(store, source);
  });
});

describe('prune of a store whose kept snapshot holds a large directory', () => {
  it('keeps the pages of that directory, stored with the forgotten data, and restores it byte for byte', async () => {
    const source = path.join(work, 'pages-kept-source');
    const store = path.join(work, 'pages-kept-store');
    // 1,200 names: a directory stored as two pages, in the pack that also holds gone.bin.
    await fs.mkdir(path.join(source, 'many'), { recursive: true });
    for (let i = 0; i < 1200; i++) await fs.writeFile(path.join(source, 'many', `f${String(i).padStart(4, '0')}`), `${i}\n`);
    await writeRandomFile(path.join(source, 'gone.bin'), 6 * MiB);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    await fs.rm(path.join(source, 'gone.bin'));
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const ids = JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { id: string }[];
    expect((await kloset(['at', store, 'rm', ids[0].id])).code).toBe(0);
    const pruned = await kloset(['at', store, 'prune']);
    expect(pruned.stderr).toBe('');
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toMatch(/rewr/);
    await expectRestoresExactly(store, source);
  });
});

describe('prune over a long series of snapshots of a large directory', () => {
  it('reads each directory page once, not once per snapshot that kept it', async () => {
    const source = path.join(work, 'paged-source');
    const store = path.join(work, 'paged-store');
    await fs.mkdir(source);
    // 2,500 names: three pages of a directory, of which each backup below changes only the first.
    for (let i = 0; i < 2500; i++) await fs.writeFile(path.join(source, `f${String(i).padStart(4, '0')}`), `${i}\n`);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    for (let n = 0; n < 4; n++) {
      await fs.writeFile(path.join(source, 'f0000'), `version ${n}\n`);
      expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    }
    const { prune } = (await loadBuilt('snapshot/prune.js')) as typeof import('../../src/snapshot/prune.js');
    const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
    const repository = await openBuiltStore(store);
    const pageReads: string[] = [];
    const getBlob = repository.getBlob.bind(repository);
    repository.getBlob = (id, type) => {
      if (type === BlobType.treePage) pageReads.push(id.toString('hex'));
      return getBlob(id, type);
    };
    const result = await prune(repository, { dryRun: true });
    expect(result.snapshots).toBe(4);
    // The first page in four versions, the other two once.
    expect(new Set(pageReads).size).toBe(6);
    expect(pageReads).toHaveLength(6);
  });
});
