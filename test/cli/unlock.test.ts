/**
 * unlock clears the locks of processes that are gone, and with
 * --remove-all those of another machine that may still be running; until
 * then, prune refuses and says how to clear them.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKloset, tempDir } from '../helpers/cli.js';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { flipByte, klosetWith } from '../helpers/fixtures.js';

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
const env = () => ({ XDG_CACHE_HOME: path.join(work, 'cache') });

const locks = () => fs.readdir(path.join(store, 'locks')).catch(() => [] as string[]);

/** A shared lock as a backup on another machine writes it, fresh. */
async function lockFromElsewhere(holder: { host: string; boot?: string; pidns?: string; pid: number } = { host: 'db-server-7', pid: 4242 }): Promise<void> {
  const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
  const repository = await openBuiltStore(store, { loadIndex: false });
  const id = randomBytes(32);
  const record = { kind: 'shared', command: 'a backup', ...holder, time: new Date().toISOString() };
  await repository.store.put(`locks/${id.toString('hex')}`, await repository.sealStandalone(BlobType.lock, id, Buffer.from(JSON.stringify(record))));
}

beforeAll(async () => {
  work = await tempDir('kloset-unlock-');
  store = path.join(work, 'store');
  kloset = klosetWith(env());
  await fs.mkdir(path.join(work, 'source'));
  await fs.writeFile(path.join(work, 'source', 'file.txt'), 'content\n');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', path.join(work, 'source')])).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('unlock', () => {
  it('removes the lock a process killed with kill -9 left behind', async () => {
    const { child, done } = startKloset(['at', store, 'ui', '--no-spawn'], { env: env() });
    await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => d.toString().includes('token=') && resolve()));
    expect(await locks()).toHaveLength(1);
    child.kill('SIGKILL');
    await done;
    expect(await locks()).toHaveLength(1);
    const result = await kloset(['at', store, 'unlock']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^removed the lock of the viewer \(pid \d+ on .*\), which is gone$/m);
    expect(result.stdout).toMatch(/^unlock: removed 1 lock$/m);
    expect(await locks()).toEqual([]);
  });

  it('keeps the lock of another machine, which prune names with the way out; --remove-all removes it', async () => {
    await lockFromElsewhere();
    const refused = await kloset(['at', store, 'prune']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `kloset: store is in use by a backup (pid 4242 on db-server-7 since ${/since (\S+)\)/.exec(refused.stderr)?.[1]}): try again once it has ended` +
        ` (if that machine stopped it, 'kloset at ${store} unlock --remove-all' removes the lock)\n`,
    );
    const kept = await kloset(['at', store, 'unlock']);
    expect(kept.stdout).toMatch(/^kept the lock of a backup \(pid 4242 on db-server-7 .*\), which may still run: --remove-all removes it$/m);
    expect(kept.stdout).toMatch(/^unlock: removed 0 locks, kept 1 in use$/m);
    expect(await locks()).toHaveLength(1);
    const removed = await kloset(['at', store, 'unlock', '-remove-all']);
    expect(removed.stdout).toMatch(/^unlock: removed 1 lock$/m);
    expect(await locks()).toEqual([]);
    expect((await kloset(['at', store, 'prune'])).code).toBe(0);
  });

  it('keeps the lock of a machine of the same host name, or of an earlier boot, whatever its pid', async () => {
    // Cloned virtual machines share a host name, and pids start again at each boot.
    await lockFromElsewhere({ host: os.hostname(), boot: 'another-boot', pid: 2 ** 22 + 1 });
    const refused = await kloset(['at', store, 'prune']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^kloset: store is in use by a backup \(pid 4194305 on .*\): try again once it has ended \(if that machine stopped it, .* unlock --remove-all' removes the lock\)\n$/);
    expect((await kloset(['at', store, 'unlock'])).stdout).toMatch(/^unlock: removed 0 locks, kept 1 in use$/m);
    expect((await kloset(['at', store, 'unlock', '--remove-all'])).code).toBe(0);
    expect(await locks()).toEqual([]);
  });

  it('keeps the lock of a container of this very machine and boot, whose pids are its own', async () => {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    await lockFromElsewhere({ host: os.hostname(), boot, pidns: 'pid:[4026530000]', pid: 2 ** 22 + 1 });
    expect((await kloset(['at', store, 'prune'])).code).toBe(1);
    expect((await kloset(['at', store, 'unlock'])).stdout).toMatch(/^unlock: removed 0 locks, kept 1 in use$/m);
    // The same record from this namespace names a process that is gone: its lock is stale.
    expect((await kloset(['at', store, 'unlock', '--remove-all'])).code).toBe(0);
    await lockFromElsewhere({ host: os.hostname(), boot, pidns: readlinkSync('/proc/self/ns/pid'), pid: 2 ** 22 + 1 });
    expect((await kloset(['at', store, 'unlock'])).stdout).toMatch(/^unlock: removed 1 lock\b/m);
    expect(await locks()).toEqual([]);
  });
});

describe('a lock that does not open', () => {
  it('keeps prune out, lets a backup in, and is removed by unlock', async () => {
    await lockFromElsewhere();
    const [name] = await locks();
    await flipByte(path.join(store, 'locks', name));

    const refused = await kloset(['at', store, 'prune']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `kloset: store is in use by an unreadable lock ${name.slice(0, 16)} (authentication failed (damaged or tampered)): ` +
        `'kloset at ${store} unlock' removes it (a process still holding it stops before it commits)\n`,
    );
    const backup = await kloset(['at', store, 'backup', path.join(work, 'source')]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);

    const unlock = await kloset(['at', store, 'unlock']);
    expect(unlock.code).toBe(0);
    expect(unlock.stdout).toMatch(new RegExp(`^removed an unreadable lock ${name.slice(0, 16)} \\(authentication failed \\(damaged or tampered\\)\\)$`, 'm'));
    expect(await locks()).toEqual([]);
    expect((await kloset(['at', store, 'prune'])).code).toBe(0);
  });
});

describe('a backup', () => {
  it('whose lock is taken away while it runs stores no snapshot, and says why', async () => {
    const source = path.join(work, 'large-source');
    await fs.mkdir(source);
    for (let i = 0; i < 8; i++) await fs.writeFile(path.join(source, `part-${i}.bin`), randomBytes(24 * 1024 * 1024));
    const before = (await kloset(['at', store, 'ls'])).stdout;
    const { done } = startKloset(['at', store, 'backup', source], { env: env() });
    // As `unlock --remove-all` run elsewhere, or a prune that took the lock for stale, would do.
    let removed = false;
    while (!removed) {
      // The lock itself, not the temporary file it is written through.
      for (const name of (await locks()).filter((n) => /^[0-9a-f]{64}$/.test(n))) {
        await fs.unlink(path.join(store, 'locks', name));
        removed = true;
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const result = await done;
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("kloset: the store's lock was lost (it was removed from the store): stopping before anything is committed\n");
    expect((await kloset(['at', store, 'ls'])).stdout).toBe(before);
    expect((await kloset(['at', store, 'check'])).code).toBe(0);
  });
});

/** Waits until every thread of process `pid` has stopped: SIGSTOP lets a thread finish the system call it is in. */
async function stoppedWhole(pid: number): Promise<void> {
  const states = async () => {
    const tids = await fs.readdir(`/proc/${pid}/task`);
    const stats = await Promise.all(tids.map((tid) => fs.readFile(`/proc/${pid}/task/${tid}/stat`, 'latin1').catch(() => ') X')));
    return stats.map((stat) => stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  };
  while (!(await states()).every((state) => state === 'T' || state === 'X')) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** The temporary files of writes under way in a store, outside locks/. */
async function tempFiles(store: string): Promise<string[]> {
  const names = (await fs.readdir(store, { recursive: true }).catch(() => [] as string[])) as string[];
  return names.filter((name) => /\.tmp-[0-9a-f]{12}$/.test(name) && !name.startsWith('locks'));
}

describe('a backup stopped while a prune takes its lock for stale', () => {
  it('writes no index delta once it runs again, so none names the packs the prune deleted', async () => {
    const dir = path.join(work, 'stopped');
    const own = path.join(dir, 'store');
    const source = path.join(dir, 'source');
    await fs.mkdir(source, { recursive: true });
    for (let i = 0; i < 10; i++) await fs.writeFile(path.join(source, `part-${i}.bin`), randomBytes(24 * 1024 * 1024));
    expect((await kloset(['at', own, 'create'])).code).toBe(0);
    const packs = async () => (await fs.readdir(path.join(own, 'packs'), { recursive: true }).catch(() => [] as string[])).filter((n) => /[0-9a-f]{64}$/.test(n));
    const { child, done } = startKloset(['at', own, 'backup', source], { env: env() });
    // Past its first index delta (after 4 packs), with more packs stored since, and stopped between two of its
    // writes: the prune removes a temporary file, and a write under way would fail on that before its lock check.
    for (;;) {
      while ((await packs()).length < 6) await new Promise((resolve) => setTimeout(resolve, 5));
      child.kill('SIGSTOP');
      await stoppedWhole(child.pid!);
      if (!(await tempFiles(own)).length) break;
      child.kill('SIGCONT');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    try {
      // What a prune that took the lock for stale does: the lock goes, and so does every pack no snapshot uses.
      for (const name of await fs.readdir(path.join(own, 'locks'))) await fs.unlink(path.join(own, 'locks', name));
      const prune = await kloset(['at', own, 'prune']);
      expect(prune.stderr).toBe('');
      expect(prune.code).toBe(0);
      expect(await packs()).toEqual([]);
    } finally {
      child.kill('SIGCONT');
    }
    const result = await done;
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/the store's lock was lost/);
    expect((await kloset(['at', own, 'ls'])).stdout).toBe('');
    const check = await kloset(['at', own, 'check']);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
  });
});

describe('a deleting operation whose reader goes away', () => {
  it('ends as SIGPIPE would and keeps its exclusive lock to the end, as a killed one: nothing it deletes lands once the lock is gone', async () => {
    const source = path.join(work, 'forgotten');
    await fs.mkdir(source);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      await fs.writeFile(path.join(source, 'file.txt'), `version ${i}\n`);
      const backup = await kloset(['at', store, 'backup', source]);
      expect(backup.code).toBe(0);
      ids.push(/created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1]);
    }
    expect(await locks()).toEqual([]);
    // As `kloset rm … | head -0`: the reader is gone before the first "removed" line, and rm goes on
    // deleting until the process ends. Its lock released meanwhile would let a backup in to reuse
    // what a prune under that lock is still removing.
    const { child, done } = startKloset(['at', store, 'rm', ...ids], { env: env() });
    child.stdout!.destroy();
    const result = await done;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(141);
    expect(await locks()).toHaveLength(1);
    // Its holder has ended: on this machine the lock keeps nothing out, and unlock removes it.
    const prune = await kloset(['at', store, 'prune']);
    expect(prune.stderr).toBe('');
    expect(prune.code).toBe(0);
    const unlock = await kloset(['at', store, 'unlock']);
    expect(unlock.stdout).toMatch(/^removed the lock of rm \(pid \d+ on .*\), which is gone$/m);
    expect(await locks()).toEqual([]);
    expect((await kloset(['at', store, 'check'])).code).toBe(0);
  });

  it('a reader (restore, archive) releases its shared lock before it ends', async () => {
    const target = path.join(work, 'restored-to-closed-pipe');
    const { child, done } = startKloset(['at', store, 'restore', '-to', target], { env: env() });
    child.stdout!.destroy();
    const result = await done;
    expect(result.code).toBe(141);
    expect(await locks()).toEqual([]);
  });
});
