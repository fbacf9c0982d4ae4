import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { KlosetError, NotFoundError } from '../errors.js';
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
  pid: number;
  time: string;
}

/** A lock not refreshed for this long belongs to a dead process. */
const STALE_AFTER_MS = 30 * 60 * 1000;
const REFRESH_EVERY_MS = 5 * 60 * 1000;

function alive(record: LockRecord): boolean {
  if (Date.now() - Date.parse(record.time) > STALE_AFTER_MS) return false;
  if (record.host !== os.hostname()) return true;
  try {
    process.kill(record.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function describe(record: LockRecord): string {
  return `${record.command ?? (record.kind === 'exclusive' ? 'a deleting operation' : 'a backup')} (pid ${record.pid} on ${record.host} since ${record.time})`;
}

/** Another process holds a lock this one cannot share. */
export class StoreLockedError extends KlosetError {}

export class StoreLock {
  private timer?: NodeJS.Timeout;

  private constructor(
    private readonly repository: Repository,
    private readonly key: string,
    private readonly id: Buffer,
    private readonly kind: LockKind,
    private readonly command: string,
  ) {}

  private async write(): Promise<void> {
    const record: LockRecord = { kind: this.kind, command: this.command, host: os.hostname(), pid: process.pid, time: new Date().toISOString() };
    const sealed = await this.repository.sealStandalone(BlobType.lock, this.id, Buffer.from(JSON.stringify(record)));
    await this.repository.store.put(this.key, sealed);
  }

  static async acquire(repository: Repository, kind: LockKind, command: string): Promise<StoreLock> {
    const id = randomBytes(ID_BYTES);
    const lock = new StoreLock(repository, `locks/${id.toString('hex')}`, id, kind, command);
    await lock.write();
    const others = (await listLocks(repository)).filter(
      (l) => l.key !== lock.key && (kind === 'exclusive' || l.record.kind === 'exclusive') && alive(l.record),
    );
    if (others.length > 0) {
      await lock.release();
      const holder = others[0].record;
      // Only this host can tell a dead process from a live one; a lock from another stays until it ages out.
      const elsewhere =
        holder.host !== os.hostname()
          ? ` (if that machine stopped it, 'kloset at ${repository.store.location} unlock --remove-all' removes the lock)`
          : '';
      throw new StoreLockedError(`store is in use by ${describe(holder)}: try again once it has ended${elsewhere}`);
    }
    lock.timer = setInterval(() => void lock.write().catch(() => undefined), REFRESH_EVERY_MS);
    lock.timer.unref();
    return lock;
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.repository.store.delete(this.key);
  }
}

export interface RemovedLock {
  /** What held it: "a backup (pid … on … since …)". */
  holder: string;
  stale: boolean;
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
  for (const { key, record } of await listLocks(repository)) {
    const lock = { holder: describe(record), stale: !alive(record) };
    if (lock.stale || all) {
      await repository.store.delete(key);
      removed.push(lock);
    } else {
      kept.push(lock);
    }
  }
  return { removed, kept };
}

async function listLocks(repository: Repository): Promise<{ key: string; record: LockRecord }[]> {
  const locks: { key: string; record: LockRecord }[] = [];
  for await (const { key } of repository.store.list('locks/')) {
    const hex = key.slice('locks/'.length);
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    try {
      const plaintext = await repository.readSealed(key, BlobType.lock, Buffer.from(hex, 'hex'));
      locks.push({ key, record: JSON.parse(plaintext.toString('utf8')) as LockRecord });
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  return locks;
}
