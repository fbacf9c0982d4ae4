import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { IntegrityError, KlosetError, NotFoundError } from '../errors.js';
import type { BlobInfo, BlobStore } from './blobstore.js';
import { makeDirectories } from './directories.js';

/** A blob is written as `<key>.tmp-<12 hex>`, then renamed. */
const TEMP_SUFFIX = '.tmp-';
const TEMP_NAME = /\.tmp-[0-9a-f]{12}$/;
/** No write of a lock or of CONFIG takes this long: a temporary file this old was left by a killed process. */
const ABANDONED_AFTER_MS = 60 * 60 * 1000;
/** What the store writes is its owner's only, as restic's local repositories are. */
export const STORE_FILE_MODE = 0o600;
export const STORE_DIRECTORY_MODE = 0o700;

/**
 * A blob store in a local directory: one file per key, written to a temporary
 * name, fsynced and renamed, so a crash never leaves a torn blob under a real
 * key; the directory is fsynced after each change to it, so a power failure
 * does not undo one change and keep a later one.
 */
export class LocalBlobStore implements BlobStore {
  readonly location: string;
  readonly writeConcurrency = 1;

  /** Blobs are immutable once written: reads of one pack share an open file. */
  private readonly handles = new OpenFiles(32);

  constructor(readonly root: string) {
    this.location = root;
  }

  private pathOf(key: string): string {
    if (key.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new KlosetError(`invalid blob key ${JSON.stringify(key)}`);
    }
    return path.join(this.root, key);
  }

  async get(key: string, maxBytes?: number): Promise<Buffer> {
    if (maxBytes === undefined) {
      try {
        return await fs.readFile(this.pathOf(key));
      } catch (err) {
        throw mapError(err, this.location, key);
      }
    }
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(this.pathOf(key), 'r');
    } catch (err) {
      throw mapError(err, this.location, key);
    }
    try {
      const { size } = await handle.stat();
      if (size > maxBytes) throw new IntegrityError(`${key}: too large (${size} bytes, at most ${maxBytes} expected)`);
      return await handle.readFile();
    } catch (err) {
      throw err instanceof KlosetError ? err : mapError(err, this.location, key);
    } finally {
      await handle.close();
    }
  }

  async getRange(key: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const handle = await this.handles.acquire(key, () => this.pathOf(key), this.location);
    try {
      const buffer = into?.length === length ? into : Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buffer, done, length - done, offset + done).catch((err: unknown) => {
          throw mapError(err, this.location, key);
        });
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      if (done !== length) {
        throw new IntegrityError(`${this.location}: ${key}: truncated (wanted ${length} bytes at ${offset}, got ${done})`);
      }
      return buffer;
    } finally {
      this.handles.release(key);
    }
  }

  private async writeTemp(key: string, data: Buffer): Promise<string> {
    const target = this.pathOf(key);
    // The owner's alone, whatever the mode of a store directory that existed before `create`:
    // a plaintext store holds its files readable, and an encrypted one's CONFIG invites guessing.
    const made = await makeDirectories(path.dirname(target), STORE_DIRECTORY_MODE);
    // New directories (packs/<hh>) are entries of their parents, which must reach the disk too.
    if (made !== undefined) {
      for (let dir = path.dirname(target); dir !== path.dirname(made); dir = path.dirname(dir)) await syncDirectory(path.dirname(dir));
    }
    const temp = `${target}${TEMP_SUFFIX}${randomBytes(6).toString('hex')}`;
    try {
      const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, STORE_FILE_MODE);
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (err) {
      // A full disk must not also keep the part written: it is nobody's blob, and nothing would ever remove it.
      await fs.rm(temp, { force: true }).catch(() => undefined);
      throw writeError(err, this.location, key);
    }
    return temp;
  }

  async put(key: string, data: Buffer): Promise<void> {
    const temp = await this.writeTemp(key, data);
    try {
      await fs.rename(temp, this.pathOf(key));
    } catch (err) {
      await fs.rm(temp, { force: true });
      throw err;
    }
    await syncDirectory(path.dirname(this.pathOf(key)));
  }

  async putIfAbsent(key: string, data: Buffer): Promise<boolean> {
    const temp = await this.writeTemp(key, data);
    try {
      // link() fails with EEXIST instead of replacing: the atomic create-if-absent.
      await fs.link(temp, this.pathOf(key));
      await syncDirectory(path.dirname(this.pathOf(key)));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await fs.rm(temp, { force: true });
    }
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    // Keys are paths; walk the directory that holds the prefix.
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : '';
    yield* this.walk(dirKey, prefix);
  }

  private async *walk(dirKey: string, prefix: string): AsyncIterable<BlobInfo> {
    const dir = dirKey === '' ? this.root : path.join(this.root, dirKey);
    let entries;
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const entry of entries) {
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(key + '/')) yield* this.walk(key, prefix);
      } else if (entry.isFile() && key.startsWith(prefix) && !TEMP_NAME.test(entry.name)) {
        // Deleted since the directory was read (a writer folding its deltas, an rm): not listed.
        const size = (await fs.stat(path.join(dir, entry.name)).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') return undefined;
          throw err;
        }))?.size;
        if (size !== undefined) yield { key, size };
      }
    }
  }

  async removePartialWrites({ dryRun = false } = {}): Promise<{ count: number; bytes: number }> {
    let count = 0;
    let bytes = 0;
    const read = (dir: string, recursive: boolean) => fs.readdir(path.join(this.root, dir), { recursive, withFileTypes: true }).catch(() => []);
    const [guarded, unguarded] = await Promise.all([
      Promise.all(['packs', 'index', 'snapshots'].map((dir) => read(dir, true))),
      // locks/ and CONFIG are written without the exclusive lock (a lock's own refresh, passwd): a
      // temporary file there may be a write in progress, unless it is older than any write takes.
      Promise.all([read('locks', false), read('.', false)]),
    ]);
    const candidates = [...guarded.flat().map((entry) => ({ entry, minAgeMs: 0 })), ...unguarded.flat().map((entry) => ({ entry, minAgeMs: ABANDONED_AFTER_MS }))];
    for (const { entry, minAgeMs } of candidates) {
      if (!entry.isFile() || !TEMP_NAME.test(entry.name)) continue;
      // parentPath from Node 20.12; path before it.
      const file = path.join(entry.parentPath ?? (entry as unknown as { path: string }).path, entry.name);
      const stat = await fs.stat(file).catch(() => undefined);
      if (stat === undefined || Date.now() - stat.mtimeMs < minAgeMs) continue;
      if (!dryRun) await fs.unlink(file);
      count++;
      bytes += stat.size;
    }
    return { count, bytes };
  }

  async delete(key: string): Promise<void> {
    await this.handles.forget(key);
    // unlink, not rm: rm takes a file it may not remove for a directory and reports ENOTDIR.
    const removed = await fs.unlink(this.pathOf(key)).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        return false;
      },
    );
    // An index delta that a power failure brought back after prune removed its packs would name blobs that are gone.
    if (removed) await syncDirectory(path.dirname(this.pathOf(key)));
  }

  async stat(key: string): Promise<number | undefined> {
    try {
      return (await fs.stat(this.pathOf(key))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.handles.closeAll();
  }
}

interface OpenFile {
  handle: Promise<fs.FileHandle>;
  users: number;
}

/**
 * Open read handles by key, most recently used last; a handle in use is
 * never closed, and an idle one is closed once more than `limit` are open.
 */
class OpenFiles {
  private readonly files = new Map<string, OpenFile>();

  constructor(private readonly limit: number) {}

  async acquire(key: string, pathOf: () => string, location: string): Promise<fs.FileHandle> {
    let file = this.files.get(key);
    if (file) this.files.delete(key);
    else {
      const handle = fs.open(pathOf(), 'r').catch((err: unknown) => {
        this.files.delete(key);
        throw mapError(err, location, key);
      });
      file = { handle, users: 0 };
    }
    file.users++;
    this.files.set(key, file); // re-inserted: now the most recent
    try {
      return await file.handle;
    } catch (err) {
      file.users--;
      throw err;
    }
  }

  release(key: string): void {
    const file = this.files.get(key);
    if (file) file.users--;
    if (this.files.size <= this.limit) return;
    for (const [oldKey, old] of this.files) {
      if (this.files.size <= this.limit) break;
      if (old.users > 0) continue;
      this.files.delete(oldKey);
      void old.handle.then((h) => h.close()).catch(() => undefined);
    }
  }

  async forget(key: string): Promise<void> {
    const file = this.files.get(key);
    this.files.delete(key);
    if (file) await file.handle.then((h) => h.close()).catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    const all = [...this.files.values()];
    this.files.clear();
    await Promise.all(all.map((f) => f.handle.then((h) => h.close()).catch(() => undefined)));
  }
}

const WRITE_FAILURES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EIO: 'input/output error',
};

/**
 * Makes a directory's entries durable: a file renamed into place is on the
 * disk only once its directory is, or a power failure could keep a snapshot
 * header and lose the pack it needs.
 */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } catch (err) {
    // A file system that cannot sync a directory (some network ones) has nothing more to give.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await handle.close();
  }
}

/** What a user can act on: the store, the blob, and the reason in words. */
function writeError(err: unknown, location: string, key: string): Error {
  const reason = WRITE_FAILURES[(err as NodeJS.ErrnoException).code ?? ''];
  return reason ? new KlosetError(`${location}: cannot write ${key}: ${reason}`, { cause: err }) : (err as Error);
}

function mapError(err: unknown, location: string, key: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new NotFoundError(`${key}: not found`);
  // As writeError names it: `CONFIG: permission denied` alone does not say which store.
  if (code === 'EACCES') return new KlosetError(`${location}: cannot read ${key}: permission denied`, { cause: err });
  // The disk cannot give the bytes back: for check, cat and restore that is damage to what the file holds.
  if (code === 'EIO') return new IntegrityError(`${location}: cannot read ${key}: input/output error`, { cause: err });
  // Nothing the store writes whole comes near Node's limit for one read (packs are read by range).
  if (code === 'ERR_FS_FILE_TOO_LARGE') return new IntegrityError(`${location}: ${key}: too large to be the store's (over 2 GiB)`, { cause: err });
  return err as Error;
}
