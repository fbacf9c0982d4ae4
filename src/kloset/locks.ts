import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import { IntegrityError, KlosetError, NotFoundError } from '../errors.js';
import type { Repository } from './repository.js';
import { BlobType, ID_BYTES } from './sealing.js';

/**
 * Writers only add blobs, so backups never exclude each other: they take
 * shared locks, as do long readers (restore, mount), which tell an
 * operation that deletes (rm, prune) that the store is in use. A deleting
 * operation takes an exclusive lock and runs alone. Each side writes its
 * lock before looking at the others', so of two that start together at
 * least one sees the other and steps back.
 */
export type LockKind = 'shared' | 'exclusive';

interface LockRecord {
  kind: LockKind;
  /** The command holding it, for the message of one that has to wait. */
  command?: string;
  host: string;
  /** Linux's boot id: a pid can be judged only by the machine, and within the boot, that gave it... */
  boot?: string;
  /** ...and in the pid namespace that gave it: a container shares the boot id, and with host networking the host name. */
  pidns?: string;
  pid: number;
  time: string;
}

/** A lock not refreshed for this long belongs to a dead process. */
const STALE_AFTER_MS = 30 * 60 * 1000;
/** A lock is a few hundred bytes: a larger file under locks/ is damaged, and not read. */
const MAX_LOCK_BYTES = 64 * 1024;
const REFRESH_EVERY_MS = 5 * 60 * 1000;

/**
 * Two machines may share a host name (cloned virtual machines, "localhost"),
 * a machine that rebooted reuses pids, and a container numbers its own: a
 * lock is tested by its pid only when it was taken in this very boot of this
 * machine, in this pid namespace.
 */
const BOOT_ID = (() => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
})();

const PID_NAMESPACE = (() => {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
})();

/** Whether this process can tell if the lock's holder still runs. */
function judgedByPid(record: LockRecord): boolean {
  return record.host === os.hostname() && record.boot === BOOT_ID && record.pidns === PID_NAMESPACE;
}

/** Not rewritten for STALE_AFTER_MS: its holder is taken for dead, wherever it runs. */
function aged(record: LockRecord): boolean {
  return Date.now() - Date.parse(record.time) > STALE_AFTER_MS;
}

function alive(record: LockRecord): boolean {
  if (aged(record)) return false;
  if (!judgedByPid(record)) return true;
  try {
    process.kill(record.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock as listed: its record, or why it could not be read (damaged, or sealed under another key). */
interface ListedLock {
  key: string;
  record?: LockRecord;
  damaged?: string;
}

function describe(lock: ListedLock): string {
  const record = lock.record;
  if (!record) return `an unreadable lock ${lock.key.slice('locks/'.length, 'locks/'.length + 16)} (${lock.damaged})`;
  return `${record.command ?? (record.kind === 'exclusive' ? 'a deleting operation' : 'a backup')} (pid ${record.pid} on ${record.host} since ${record.time})`;
}

/** Another process holds a lock this one cannot share. */
export class StoreLockedError extends KlosetError {}

/** Locks this process holds: released on the way out when the process has to end at once (a reader of its output gone). */
const held = new Set<StoreLock>();

/**
 * Releases the shared locks this process still holds; errors are ignored, since the process is ending.
 * An exclusive lock stays, as a process killed there leaves it: the command it guards (rm, prune, repair)
 * runs on until the process ends, and a deletion of its must not land once the lock is gone, when a
 * backup may already have started on what is being deleted. On this machine a lock of a process that
 * has ended is ignored at once; elsewhere `unlock` removes it, or it ages out.
 */
export async function releaseHeldLocks(): Promise<void> {
  await Promise.all([...held].filter((lock) => lock.shared).map((lock) => lock.release().catch(() => undefined)));
}

export class StoreLock {
  private timer?: NodeJS.Timeout;
  /** The refresh under way, if any: a release waits for it, or the lock would be written back after its deletion. */
  private refreshing: Promise<void> | undefined;
  /** When the lock was last written: once that is too long ago, others may have taken it for stale. */
  private writtenAt = 0;
  /** Set once a refresh finds the lock gone from the store: it is not written back, and check() refuses. */
  private removed = false;
  /** Minutes the lock once went unrefreshed past the point where another process may have taken it for stale. */
  private lapsedFor: number | undefined;

  get shared(): boolean {
    return this.kind === 'shared';
  }

  private constructor(
    private readonly repository: Repository,
    private readonly key: string,
    private readonly id: Buffer,
    private readonly kind: LockKind,
    private readonly command: string,
  ) {}

  private async write(): Promise<void> {
    const now = Date.now();
    const record: LockRecord = {
      kind: this.kind,
      command: this.command,
      host: os.hostname(),
      ...(BOOT_ID ? { boot: BOOT_ID } : {}),
      ...(PID_NAMESPACE ? { pidns: PID_NAMESPACE } : {}),
      pid: process.pid,
      time: new Date(now).toISOString(),
    };
    const sealed = await this.repository.sealStandalone(BlobType.lock, this.id, Buffer.from(JSON.stringify(record)));
    await this.repository.store.put(this.key, sealed);
    this.writtenAt = now;
  }

  static async acquire(repository: Repository, kind: LockKind, command: string): Promise<StoreLock> {
    const id = randomBytes(ID_BYTES);
    const lock = new StoreLock(repository, `locks/${id.toString('hex')}`, id, kind, command);
    await lock.write().catch((err: unknown) => {
      // rm and prune, which give space back, need a lock first: the way out of a full disk is not through them.
      if (((err as KlosetError).cause as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC') {
        throw new KlosetError(`${repository.store.location}: no space left for ${command}'s lock, a few hundred bytes: free some space on that disk first`, { cause: err });
      }
      throw err;
    });
    let listed: ListedLock[];
    try {
      listed = (await listLocks(repository)).filter((l) => l.key !== lock.key);
    } catch (err) {
      await lock.release().catch(() => undefined);
      throw err;
    }
    const others = listed.filter((l) => lock.excludes(l));
    if (others.length > 0) {
      await lock.release();
      const holder = others[0];
      if (!holder.record) {
        throw new StoreLockedError(
          `store is in use by ${describe(holder)}: 'kloset at ${repository.store.location} unlock' removes it (a process still holding it stops before it commits)`,
        );
      }
      // Only the holder's machine, in the same boot, can tell a dead process from a live one; other locks stay until they age out.
      const elsewhere = judgedByPid(holder.record)
        ? ''
        : ` (if that machine stopped it, 'kloset at ${repository.store.location} unlock --remove-all' removes the lock)`;
      throw new StoreLockedError(`store is in use by ${describe(holder)}: try again once it has ended${elsewhere}`);
    }
    // A lock this one would wait for, were it not aged, may still have a holder: a process stopped or a machine
    // suspended for that long, or one whose clock is behind. Removed, its holder finds it gone at its next check
    // and stops before it commits over what this command deletes; left, its check would find it there, and pass.
    try {
      for (const other of listed) {
        if (other.record && lock.conflicts(other.record) && aged(other.record)) await repository.store.delete(other.key);
      }
    } catch (err) {
      await lock.release().catch(() => undefined);
      throw err;
    }
    lock.timer = setInterval(() => {
      // A failed refresh is not fatal here: check() refuses once the lock has gone unrefreshed too long.
      lock.refreshing ??= lock
        .refresh()
        .catch(() => undefined)
        .finally(() => (lock.refreshing = undefined));
    }, REFRESH_EVERY_MS);
    lock.timer.unref();
    held.add(lock);
    return lock;
  }

  /**
   * Rewrites the lock, unless it was removed (an unlock, or a prune that took
   * it for stale): writing it back would hide that from check(), and the
   * work it guards would commit over what was removed meanwhile.
   */
  private async refresh(): Promise<void> {
    if (this.removed) return;
    if (this.lapsed()) {
      // Due long ago (the process was stopped, the machine suspended): another process may have taken the lock
      // for stale and removed what it guards meanwhile, so check() refuses from now on. The lock is still
      // written back, when the store has it: a reader that goes on (a mount, the viewer) keeps prune out.
      this.lapsedFor ??= Math.round((Date.now() - this.writtenAt) / 60_000);
    }
    if ((await this.repository.store.stat(this.key)) === undefined) {
      this.removed = true;
      if (this.timer) clearInterval(this.timer);
      return;
    }
    await this.write();
  }

  /**
   * A live lock this one cannot be held beside. An unreadable lock counts as
   * a live shared one: it keeps a prune out, and lets backups in.
   */
  private excludes(other: ListedLock): boolean {
    if (!other.record) return this.kind === 'exclusive';
    return this.conflicts(other.record) && alive(other.record);
  }

  /** Whether the two cannot be held together (while both holders live). */
  private conflicts(other: LockRecord): boolean {
    return this.kind === 'exclusive' || other.kind === 'exclusive';
  }

  /** Not written for so long that another process may have judged it stale (with a margin for clocks that differ). */
  private lapsed(): boolean {
    return Date.now() - this.writtenAt > STALE_AFTER_MS - REFRESH_EVERY_MS;
  }

  /**
   * Throws unless the lock still holds: written recently enough that no
   * other process can have judged it stale, still in the store, and with
   * no lock it excludes beside it. For a writer to call before it makes
   * its work visible: a prune that took it for stale (the machine was
   * suspended, its refreshes failed, an unlock removed it) may have
   * deleted what it stored.
   */
  async check(): Promise<void> {
    const lost = (why: string) => new StoreLockedError(`the store's lock was lost (${why}): stopping before anything is committed`);
    if (this.lapsedFor !== undefined) throw lost(`not refreshed for ${this.lapsedFor} minutes`);
    if (this.removed) throw lost('it was removed from the store');
    if (this.lapsed()) {
      throw lost(`not refreshed for ${Math.round((Date.now() - this.writtenAt) / 60_000)} minutes`);
    }
    const locks = await listLocks(this.repository);
    if (!locks.some((l) => l.key === this.key)) throw lost('it was removed from the store');
    const other = locks.find((l) => l.key !== this.key && this.excludes(l));
    if (other) throw lost(`${describe(other)} holds the store`);
  }

  async release(): Promise<void> {
    held.delete(this);
    if (this.timer) clearInterval(this.timer);
    await this.refreshing;
    await this.repository.store.delete(this.key);
  }
}

export interface RemovedLock {
  /** What held it: "a backup (pid … on … since …)", or for a lock that does not open, "an unreadable lock … (why)". */
  holder: string;
  stale: boolean;
  unreadable: boolean;
}

/**
 * Removes the locks of processes that are gone (stale), or every lock with
 * `all`: for a store whose locks name a machine that died, which would
 * otherwise block rm and prune until the locks age out. Returns what it
 * removed and, with `kept`, the live locks it left.
 */
export async function removeLocks(repository: Repository, { all = false } = {}): Promise<{ removed: RemovedLock[]; kept: RemovedLock[] }> {
  const removed: RemovedLock[] = [];
  const kept: RemovedLock[] = [];
  for (const listed of await listLocks(repository)) {
    // An unreadable lock names no process to wait for; one that still runs rewrites it, or stops at its commit check.
    const lock = { holder: describe(listed), stale: !listed.record || !alive(listed.record), unreadable: !listed.record };
    if (lock.stale || all) {
      await repository.store.delete(listed.key);
      removed.push(lock);
    } else {
      kept.push(lock);
    }
  }
  return { removed, kept };
}

async function listLocks(repository: Repository): Promise<ListedLock[]> {
  const locks: ListedLock[] = [];
  for await (const { key } of repository.store.list('locks/')) {
    const hex = key.slice('locks/'.length);
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    let plaintext: Buffer;
    try {
      plaintext = await repository.readSealed(key, BlobType.lock, Buffer.from(hex, 'hex'), MAX_LOCK_BYTES);
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      if (!(err instanceof IntegrityError)) throw err;
      locks.push({ key, damaged: err.message.replace(`${key}: `, '') });
      continue;
    }
    const record = parseLockRecord(plaintext);
    locks.push(record ? { key, record } : { key, damaged: 'malformed' });
  }
  return locks;
}

function parseLockRecord(plaintext: Buffer): LockRecord | undefined {
  try {
    const record = JSON.parse(plaintext.toString('utf8')) as LockRecord;
    return record && typeof record === 'object' && typeof record.time === 'string' && Number.isSafeInteger(record.pid) ? record : undefined;
  } catch {
    return undefined;
  }
}
