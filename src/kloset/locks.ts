import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { KlosetError, NotFoundError } from '../errors.js';
import type { Repository } from './repository.js';
import { BlobType, ID_BYTES } from './sealing.js';

/**
 * Writers only add blobs, so backups never exclude each other: they take
 * shared locks, which tell a deleting operation (rm, later garbage
 * collection) that blobs may be in use. A deleting operation takes an
 * exclusive lock, and refuses to run beside another one.
 */
export type LockKind = 'shared' | 'exclusive';

interface LockRecord {
  kind: LockKind;
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

export class StoreLock {
  private timer?: NodeJS.Timeout;

  private constructor(
    private readonly repository: Repository,
    private readonly key: string,
    private readonly id: Buffer,
    private readonly kind: LockKind,
  ) {}

  private async write(): Promise<void> {
    const record: LockRecord = { kind: this.kind, host: os.hostname(), pid: process.pid, time: new Date().toISOString() };
    const sealed = await this.repository.sealStandalone(BlobType.lock, this.id, Buffer.from(JSON.stringify(record)));
    await this.repository.store.put(this.key, sealed);
  }

  static async acquire(repository: Repository, kind: LockKind): Promise<StoreLock> {
    const id = randomBytes(ID_BYTES);
    const lock = new StoreLock(repository, `locks/${id.toString('hex')}`, id, kind);
    await lock.write();
    if (kind === 'exclusive') {
      const others = (await listLocks(repository)).filter((l) => l.key !== lock.key && l.record.kind === 'exclusive' && alive(l.record));
      if (others.length > 0) {
        await lock.release();
        const o = others[0].record;
        throw new KlosetError(`store is locked by another deleting operation (pid ${o.pid} on ${o.host} since ${o.time})`);
      }
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
