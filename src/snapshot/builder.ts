import { getMaxListeners, setMaxListeners } from 'node:events';
import os from 'node:os';
import { IntegrityError, KlosetError, NotFoundError } from '../errors.js';
import { ChunkPool } from '../kloset/chunkpool.js';
import type { BlobWriter, Repository } from '../kloset/repository.js';
import { REPLACED } from '../kloset/replaced.js';
import { BlobType } from '../kloset/sealing.js';
import { joinPath, type Importer, type SourceEntry } from './importer.js';
import { newSnapshotId, putSnapshotHeader, type SnapshotHeader, type SnapshotStats } from './header.js';
import { SnapshotReader } from './reader.js';
import { Slots } from './slots.js';
import {
  INLINE_CHUNKS,
  compareNames,
  decodeChunkList,
  encodeChunkList,
  encodeDirectory,
  encodePage,
  sameEntry,
  type ContentRef,
  type Entry,
  type TreeSummary,
} from './tree.js';

/** Entries per directory page: a page stays well under a megabyte even with inline chunk lists. */
export const PAGE_ENTRIES = 1000;

/**
 * Files read at once, unless the source says otherwise: enough to keep every worker's queue full between
 * batches. A local file is read by the worker that chunks it, so its slot is held until it is chunked.
 */
const FILES_IN_FLIGHT = 128;
/** Files read and still being chunked, per file being read. */
const CHUNKING_PER_READ = 4;

export interface BackupProgress {
  files: number;
  bytes: number;
  errors: number;
}

export interface BackupOptions {
  tags?: string[];
  /** The host the snapshot is recorded under: this machine's name unless given (a container's changes at every start). */
  host?: string;
  /** Relative paths ('/'-separated) to leave out; directories prune their subtree. */
  exclude?: (path: string, entry: SourceEntry) => boolean;
  /** The previous snapshot of the same source: unchanged files are not read again. */
  parent?: SnapshotHeader;
  onWarning?: (path: string, message: string) => void;
  onProgress?: (progress: BackupProgress) => void;
  signal?: AbortSignal;
  /**
   * The snapshot of another store this backup copies: its id, time, host,
   * user and error count are kept, and an entry that cannot be read fails
   * the backup instead of being left out with a warning.
   */
  copyOf?: SnapshotHeader;
  /**
   * Called once every blob is stored, before the index and the snapshot
   * that make them visible are written, and before each index delta written
   * along the way; a throw leaves no snapshot. The CLI checks there that
   * its lock still holds.
   */
  beforeCommit?: () => Promise<void>;
}

/**
 * Writes a directory's entries, already in name order, as pages of
 * PAGE_ENTRIES: a directory of a million entries is never held whole.
 */
class DirectoryWriter {
  private page: Entry[] = [];
  private readonly pages: { first: string; count: number; id: Buffer }[] = [];
  private count = 0;
  readonly summary: TreeSummary = { files: 0, directories: 0, size: 0 };

  constructor(private readonly writer: BlobWriter) {}

  async add(entry: Entry): Promise<void> {
    this.page.push(entry);
    this.count++;
    if (entry.kind === 'file') {
      this.summary.files++;
      this.summary.size += entry.size;
    } else if (entry.kind === 'directory' && entry.summary) {
      this.summary.directories += 1 + entry.summary.directories;
      this.summary.files += entry.summary.files;
      this.summary.size += entry.summary.size;
    }
    if (this.page.length >= PAGE_ENTRIES) await this.flushPage();
  }

  private async flushPage(): Promise<void> {
    const entries = this.page;
    this.page = [];
    const id = await this.writer.put(BlobType.treePage, encodePage(entries));
    this.pages.push({ first: entries[0].name, count: entries.length, id });
  }

  async finish(): Promise<Buffer> {
    if (this.pages.length === 0) {
      return this.writer.put(BlobType.tree, encodeDirectory({ count: this.count, entries: this.page }));
    }
    if (this.page.length > 0) await this.flushPage();
    return this.writer.put(BlobType.tree, encodeDirectory({ count: this.count, pages: this.pages }));
  }
}

/**
 * Stops a file's read once the backup is interrupted, without waiting for
 * the source's next block: a command's output may stay silent for minutes.
 * `done` is called when the read ends, however it ends.
 */
async function* abortable(source: AsyncIterable<Buffer>, signal: AbortSignal | undefined, done: () => void): AsyncIterable<Buffer> {
  const blocks = source[Symbol.asyncIterator]();
  let stop = () => undefined as void;
  const aborted = new Promise<never>((_, reject) => {
    stop = () => reject(signal!.reason);
    if (signal?.aborted) stop();
    else signal?.addEventListener('abort', stop, { once: true });
  });
  aborted.catch(() => undefined);
  let ended = false;
  try {
    for (;;) {
      const next = await Promise.race([blocks.next(), aborted]);
      if (next.done) {
        ended = true;
        return;
      }
      yield next.value;
    }
  } finally {
    signal?.removeEventListener('abort', stop);
    done();
    // Ended early: the source lets go of what it holds (a download, its socket) once its pending read settles.
    if (!ended) blocks.return?.()?.catch(() => undefined);
  }
}

/** A path as warnings name it: from the source's root, which is '/'. */
const shownPath = (path: string) => (path === '' ? '/' : `/${path}`);

/**
 * Who made the snapshot: the account's name, or its uid where the account
 * has none (a container run with --user 1500), as `ls -l` shows an owner.
 */
function userName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return String(process.getuid?.() ?? '');
  }
}

function sameFile(a: SourceEntry, b: Entry): boolean {
  return (
    b.kind === 'file' &&
    b.content !== undefined &&
    a.size === b.size &&
    a.mtime.sec === b.mtime.sec &&
    a.mtime.nsec === b.mtime.nsec &&
    a.ctime?.sec === b.ctime?.sec &&
    a.ctime?.nsec === b.ctime?.nsec &&
    a.ino === b.ino &&
    // What the source lists about a file (an S3 ETag, storage class) must not have changed either.
    Object.entries(a.meta ?? {}).every(([key, value]) => b.meta?.[key] === value)
  );
}

/**
 * The previous snapshot's entries of one directory, found by name in the
 * order the source lists its children (compareNames, as the tree keeps
 * them): read a page at a time alongside the listing, never held whole. A
 * name asked for out of order, or a parent that cannot be read, only costs
 * reading the file again.
 */
class PreviousEntries {
  private readonly entries: AsyncIterator<Entry>;
  private next: Entry | undefined;
  private ended = false;
  /** An entry was passed over (its name is no longer listed, or no longer taken) or could not be read. */
  private missed = false;

  constructor(entries: AsyncIterable<Entry>) {
    this.entries = entries[Symbol.asyncIterator]();
  }

  async get(name: string): Promise<Entry | undefined> {
    while (!this.ended) {
      if (this.next === undefined) {
        try {
          const result = await this.entries.next();
          if (result.done) {
            this.ended = true;
            break;
          }
          this.next = result.value;
        } catch {
          this.ended = true; // an unreadable parent only costs re-reading
          this.missed = true;
          break;
        }
      }
      const order = compareNames(this.next.name, name);
      if (order > 0) return undefined;
      const entry = this.next;
      this.next = undefined;
      if (order === 0) return entry;
      this.missed = true;
    }
    return undefined;
  }

  /** Whether every previous entry was asked for, in turn, and none is left. */
  async allTaken(): Promise<boolean> {
    if (this.missed || this.next !== undefined) return false;
    if (this.ended) return true;
    try {
      const result = await this.entries.next();
      this.ended = result.done === true;
      if (!this.ended) this.next = result.value;
    } catch {
      this.missed = true;
    }
    return this.ended && !this.missed;
  }
}

/**
 * Backs a source up into the repository: walks it depth first, chunks files
 * through the worker pool, writes directory pages bottom-up, and writes the
 * snapshot header only after every blob is stored and indexed.
 */
export async function backup(repository: Repository, importer: Importer, options: BackupOptions = {}): Promise<SnapshotHeader> {
  const started = Date.now();
  const writer = repository.newWriter({ beforePublish: options.beforeCommit });
  const pool = new ChunkPool(writer);
  // Stopping the workers fails every file in flight at once: an interrupt does not wait for a large file.
  const stopPool = () => void pool.close();
  options.signal?.addEventListener('abort', stopPool, { once: true });
  const reading = importer.readConcurrency ?? FILES_IN_FLIGHT;
  // Every file being read listens for the interrupt (abortable): room for them all past Node's leak warning at ten.
  if (options.signal) setMaxListeners(getMaxListeners(options.signal) + reading, options.signal);
  // Files being read, and files read or being read whose chunks are not all stored yet: the second bound
  // keeps the walk from running far ahead of the workers on a source of many empty objects.
  const slots = new Slots(reading);
  const unfinished = new Slots(CHUNKING_PER_READ * reading);
  const parent = options.parent ? new SnapshotReader(repository, options.parent) : undefined;
  const stats: SnapshotStats = {
    files: 0,
    directories: 0,
    symlinks: 0,
    size: 0,
    storedBytes: 0,
    chunks: 0,
    newChunks: 0,
    errors: 0,
    durationMs: 0,
    withAttributes: 0,
  };
  const countAttributes = (entry: Entry) => {
    if (hasKeys(entry.xattrs) || hasKeys(entry.meta)) stats.withAttributes!++;
  };
  const progress = () => options.onProgress?.({ files: stats.files, bytes: stats.size, errors: stats.errors });
  const reason = (err: unknown): string => {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM'
      ? 'permission denied'
      : code === 'ENOENT'
        ? 'vanished during backup'
        : err instanceof Error
          ? err.message
          : String(err);
  };
  const warn = (path: string, err: unknown) => {
    const message = reason(err);
    const shown = shownPath(path);
    // A copy is whole or absent: it must not pass for the snapshot it copies with a file missing. Nor a stream for what was sent.
    if (options.copyOf || importer.allOrNothing) throw new KlosetError(`${shown}: ${message}`, { cause: err });
    stats.errors++;
    options.onWarning?.(shown, message);
  };

  const reuseContent = async (content: ContentRef): Promise<boolean> => {
    // A parent's chunk may be gone (pruned, or the pack damaged): then read the file again.
    if ('chunks' in content) return content.chunks.every((c) => repository.has(c.id));
    if (!repository.has(content.list)) return false;
    // A list can outlive chunks it names, stored in another pack (one lost, which repair index dropped): each is looked up.
    try {
      return decodeChunkList(await repository.getBlob(content.list, BlobType.content)).every((c) => repository.has(c.id));
    } catch (err) {
      if (err instanceof IntegrityError || err instanceof NotFoundError) return false;
      throw err;
    }
  };

  /**
   * `readDone` is called once the file's bytes have all been read (for a
   * streamed source, once they are all with the chunk pool): the read slot is
   * then free for the next download while this file is still being chunked.
   */
  async function snapshotFile(
    path: string,
    source: SourceEntry,
    previous: Entry | undefined,
    readDone: () => void,
    retried = false,
  ): Promise<Entry | undefined> {
    if (previous && sameFile(source, previous) && (await reuseContent(previous.content!))) {
      stats.files++;
      stats.size += previous.size;
      stats.chunks += 'chunks' in previous.content! ? previous.content!.chunks.length : previous.content!.count;
      progress();
      // The listing's metadata over what reading the file added last time (S3 headers, user metadata).
      const meta = previous.meta || source.meta ? { ...previous.meta, ...source.meta } : undefined;
      const xattrs = importer.xattrs ? previous.xattrs : source.xattrs;
      return { ...source, ...(meta ? { meta } : {}), ...(xattrs ? { xattrs } : {}), content: previous.content };
    }
    try {
      const chunked = importer.localPath
        ? await pool.chunkFile(
            importer.localPath(path),
            source.size,
            source.ino !== undefined && source.dev !== undefined ? { ino: source.ino, dev: source.dev } : undefined,
          )
        : await pool.chunk(abortable(importer.read(path, source), options.signal, readDone), source.size);
      let content: ContentRef;
      if (chunked.chunks.length <= INLINE_CHUNKS) content = { chunks: chunked.chunks };
      else content = { list: await writer.put(BlobType.content, encodeChunkList(chunked.chunks)), count: chunked.chunks.length };
      // Kept as read, like tar and borg: the next backup reads it again, since its ctime moved.
      if (chunked.changed) options.onWarning?.(shownPath(path), 'changed while it was read: the snapshot holds what was read');
      const xattrs = importer.xattrs ? importer.xattrs(path) : source.xattrs;
      stats.files++;
      stats.size += chunked.size;
      stats.chunks += chunked.chunks.length;
      stats.newChunks += chunked.newChunks;
      progress();
      // The size is what was read: a file growing or shrinking under us stays self-consistent.
      return { ...source, size: chunked.size, ...(xattrs ? { xattrs } : {}), content };
    } catch (err) {
      if (options.signal?.aborted) throw err;
      // The store failing is the backup's failure, not this file's: no warning that blames the file.
      if (writer.storeFailure !== undefined) throw writer.storeFailure;
      // Another file took the name since the walk (renamed over it): record that one, with its own
      // metadata, as restic does from the opened file; once, so a file replaced over and over is not chased.
      if ((err as NodeJS.ErrnoException).code === REPLACED && importer.stat && !retried) {
        let fresh: SourceEntry | undefined;
        try {
          fresh = importer.stat(path, source.name);
        } catch (statErr) {
          warn(path, statErr);
          return undefined;
        }
        if (fresh === undefined) {
          warn(path, Object.assign(new Error('vanished during backup'), { code: 'ENOENT' }));
          return undefined;
        }
        if (fresh.kind === 'file') return snapshotFile(path, fresh, previous, readDone, true);
        if (fresh.kind !== 'directory') {
          if (fresh.kind === 'symlink') stats.symlinks++;
          return { ...fresh };
        }
      }
      warn(path, err);
      return undefined;
    }
  }

  function previousChildren(previous: Entry | undefined): PreviousEntries | undefined {
    if (!parent || !previous || previous.kind !== 'directory' || !previous.tree) return undefined;
    return new PreviousEntries(parent.children(previous));
  }

  /**
   * Walks one directory: dispatches its files to the pool and recurses, then
   * returns with a promise of the directory's entry (wrapped, so that await
   * does not flatten it), so the walk runs
   * ahead of the chunking and no directory boundary drains the pipeline.
   */
  async function walkDirectory(path: string, source: SourceEntry, previous: Entry | undefined): Promise<{ done: Promise<Entry | undefined> }> {
    if (options.signal?.aborted) throw new KlosetError('backup interrupted');
    const before = previousChildren(previous);
    // Each entry goes into the directory's pages as soon as it and those before it are done, while the
    // listing goes on: a directory of a million objects (a flat bucket prefix) is never held whole.
    const directory = new DirectoryWriter(writer);
    // Whether each entry comes out as the previous snapshot has it, in the same order: then so does the
    // directory, and its previous tree stands for it, not encoded and hashed again.
    let unchanged = before !== undefined;
    // The chain never rejects, so that it settles only once every task has: the first failure is kept for finish().
    let written: Promise<void> = Promise.resolve();
    let failure: { error: unknown } | undefined;
    const add = (task: Promise<Entry | undefined>, prior: Entry | undefined) => {
      written = written.then(async () => {
        try {
          const entry = await task;
          if (!entry || !prior || !sameEntry(entry, prior)) unchanged = false;
          if (entry && !failure) {
            countAttributes(entry);
            await directory.add(entry);
          }
        } catch (error) {
          failure ??= { error };
        }
      });
    };
    try {
      for await (const child of importer.children(path)) {
        const childPath = joinPath(path, child.name);
        if ('skipped' in child) {
          warn(childPath, child.skipped);
          unchanged = false;
          continue;
        }
        if (options.exclude?.(childPath, child)) continue;
        const prior = await before?.get(child.name);
        if (child.kind === 'directory') {
          add((await walkDirectory(childPath, child, prior)).done, prior);
        } else if (child.kind === 'file') {
          const releaseUnfinished = await unfinished.acquire();
          const releaseRead = await slots.acquire();
          const task = snapshotFile(childPath, child, prior?.kind === 'file' ? prior : undefined, releaseRead);
          const settled = () => {
            releaseRead();
            releaseUnfinished();
          };
          void task.then(settled, settled);
          add(task, prior);
        } else {
          if (child.kind === 'symlink') stats.symlinks++;
          add(Promise.resolve({ ...child }), prior);
        }
      }
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (writer.storeFailure !== undefined) throw writer.storeFailure;
      await written;
      // The source itself: no snapshot can be made, and the one error says why.
      if (path === '') throw new KlosetError(`${importer.source}: cannot read the directory: ${reason(err)}`, { cause: err });
      warn(path, err);
      return { done: Promise.resolve(undefined) };
    }
    const finish = async (): Promise<Entry> => {
      await written;
      if (failure) throw failure.error;
      stats.directories++;
      const previousTree = previous?.tree;
      if (unchanged && previousTree && (await before!.allTaken()) && repository.has(previousTree)) {
        return { ...source, tree: previousTree, summary: directory.summary };
      }
      const tree = await directory.finish();
      return { ...source, tree, summary: directory.summary };
    };
    const done = finish();
    done.catch(() => undefined); // observed by the parent; avoid an unhandled rejection meanwhile
    return { done };
  }

  try {
    const rootSource = await importer.rootEntry();
    const root = await (await walkDirectory('', rootSource, options.parent?.root)).done;
    if (!root) throw new KlosetError(`${importer.source}: cannot read the directory`);
    countAttributes(root);
    options.signal?.throwIfAborted();
    await writer.commit();
    stats.storedBytes = writer.bytesStored;
    stats.durationMs = Date.now() - started;
    const original = options.copyOf;
    const header: SnapshotHeader = {
      id: original?.id ?? newSnapshotId(),
      time: original?.time ?? new Date(),
      host: original?.host ?? options.host ?? os.hostname(),
      user: original?.user ?? userName(),
      importer: importer.type,
      origin: importer.origin,
      source: importer.source,
      tags: options.tags ?? [],
      root,
      stats: original ? { ...stats, errors: original.stats.errors } : stats,
      parent: options.parent?.id,
    };
    await putSnapshotHeader(repository, header);
    return header;
  } finally {
    options.signal?.removeEventListener('abort', stopPool);
    await pool.close();
  }
}

function hasKeys(map: object | undefined): boolean {
  return map !== undefined && Object.keys(map).length > 0;
}
