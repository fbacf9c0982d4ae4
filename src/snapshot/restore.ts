import { checkEntryName, type Exporter } from './exporter.js';
import { joinPath } from './importer.js';
import { failureText, KlosetError } from '../errors.js';
import { BlobType } from '../kloset/sealing.js';
import type { SnapshotReader } from './reader.js';
import { Slots } from './slots.js';
import type { Entry } from './tree.js';

/**
 * Chunks of files being read that are fetched at once, whatever the number
 * of files: each file reads ahead, and four large files at once held 40 MB
 * more in flight than two, for no gain on two cores. Every file being read
 * keeps at least one chunk coming.
 */
const CHUNKS_AHEAD = 8;

/** Single-chunk files fetched and written together: up to this many, or this many bytes. */
const SMALL_FILE_BATCH = 64;
const SMALL_FILE_BATCH_BYTES = 4 * 1024 * 1024;

/**
 * What a restore does with an entry: `skip` it, `take` it with everything
 * below it, or, for a directory, `enter` it (create it, then ask for each
 * child) or `search` it (ask for each child, and create the directory only
 * when one of them is taken).
 */
export type Selection = 'skip' | 'take' | 'enter' | 'search';

export interface RestoreOptions {
  onWarning?: (path: string, message: string) => void;
  onProgress?: (progress: { files: number; bytes: number; errors: number }) => void;
  /** Files written at once. */
  concurrency?: number;
  /** Asked for the entries under a restored directory, by path relative to it; absent: take everything. */
  select?: (rel: string, entry: Entry) => Selection;
}

export interface RestoreResult {
  files: number;
  directories: number;
  bytes: number;
  errors: number;
}

/**
 * The file a snapshot of one local file was taken of. FsImporter records
 * that file's directory as the root, holding it alone, so that paths stay
 * relative to a directory; the directory's owner, mode and times are not
 * what was backed up. (A directory backed up that holds only a file of its
 * own name looks the same, and is then restored as that file would be.)
 */
async function singleFileOf(reader: SnapshotReader): Promise<Entry | undefined> {
  const { header, root } = reader;
  if (header.importer !== 'fs' || root.kind !== 'directory') return undefined;
  if ((await reader.count(root)) !== 1) return undefined;
  const file = await reader.child(root, header.source.slice(header.source.lastIndexOf('/') + 1));
  return file?.kind === 'file' ? file : undefined;
}

/** A target that cannot be made a directory fails the whole restore: nothing could land in it. */
function unusableTarget(err: unknown): KlosetError {
  return new KlosetError(`cannot restore there: ${failureText(err)}`, { cause: err });
}

/**
 * Restores `chosen` (a directory's contents, or one file) into the exporter.
 * A file that cannot be read (a damaged chunk) is reported and skipped; the
 * rest is restored.
 */
export async function restore(
  reader: SnapshotReader,
  chosen: Entry,
  sourcePath: string,
  exporter: Exporter,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  // A snapshot of one file, restored whole, comes back as a restore of that file alone does: into the
  // target, which never takes the owner, mode or times of the directory the file was in.
  const entry = chosen === reader.root ? ((await singleFileOf(reader)) ?? chosen) : chosen;
  const result: RestoreResult = { files: 0, directories: 0, bytes: 0, errors: 0 };
  // At least one: with none running, waiting for a free slot would never end.
  const limit = options.concurrency !== undefined && options.concurrency >= 1 ? Math.floor(options.concurrency) : 8;
  const running = new Set<Promise<unknown>>();
  // One entry that is not a directory is written under its own name: shown from its directory, not below itself.
  const shownFrom = entry.kind === 'directory' ? sourcePath : sourcePath.replace(/[^/]*\/*$/, '');
  const shown = (rel: string) => '/' + [shownFrom.replace(/^\/+|\/+$/g, ''), rel].filter(Boolean).join('/');
  const fail = (rel: string, err: unknown) => {
    result.errors++;
    options.onWarning?.(shown(rel), err instanceof Error ? err.message : String(err));
    options.onProgress?.({ files: result.files, bytes: result.bytes, errors: result.errors });
  };

  /** Resolves true once the file is written, false when it could not be (and was reported). */
  const ahead = new Slots(CHUNKS_AHEAD);
  const restoreFile = async (rel: string, file: Entry): Promise<boolean> => {
    try {
      const content = await reader.openFile(file);
      await exporter.writeFile(rel, file, content.stream({ ahead }));
      result.files++;
      result.bytes += file.size;
      options.onProgress?.({ files: result.files, bytes: result.bytes, errors: result.errors });
      return true;
    } catch (err) {
      fail(rel, err);
      return false;
    }
  };

  /**
   * Files the source had under several names (hard links), by device and
   * inode: the first name restored, once written (undefined if it failed).
   * The others become links to it, within what this restore writes.
   */
  const linked = new Map<string, Promise<string | undefined>>();
  const linkKey = (file: Entry) =>
    exporter.linkFile && file.nlink !== undefined && file.nlink > 1 && file.ino !== undefined ? `${file.dev ?? 0}:${file.ino}` : undefined;
  const restoreLinked = async (rel: string, file: Entry, key: string): Promise<void> => {
    const first = linked.get(key);
    if (!first) {
      const written = restoreFile(rel, file).then((ok) => (ok ? rel : undefined));
      linked.set(key, written);
      await written;
      return;
    }
    const existing = await first;
    if (existing === undefined) return void (await restoreFile(rel, file)); // the first name failed: this one on its own
    try {
      await exporter.linkFile!(existing, rel, file);
      result.files++;
      options.onProgress?.({ files: result.files, bytes: result.bytes, errors: result.errors });
    } catch (err) {
      fail(rel, err);
    }
  };

  /** Writes files whose only chunk is already at hand. */
  const restoreChunks = async (items: { rel: string; file: Entry }[], chunks: Buffer[]) => {
    const failures = exporter.writeFiles
      ? await exporter.writeFiles(items.map(({ rel, file }, k) => ({ path: rel, entry: file, data: chunks[k] }))).catch((err: Error) => items.map(() => err))
      : await Promise.all(
          items.map(({ rel, file }, k) =>
            exporter.writeFile(rel, file, (async function* () {
              yield chunks[k];
            })()).then(
              () => undefined,
              (err: Error) => err,
            ),
          ),
        );
    items.forEach(({ rel, file }, k) => {
      if (failures[k]) return fail(rel, failures[k]);
      result.files++;
      result.bytes += file.size;
    });
    options.onProgress?.({ files: result.files, bytes: result.bytes, errors: result.errors });
  };

  const schedule = async (task: Promise<unknown>) => {
    running.add(task);
    void task.finally(() => running.delete(task));
    while (running.size >= limit) await Promise.race(running);
  };

  /**
   * Single-chunk files are fetched SMALL_FILE_BATCH at a time, across
   * directories: chunks stored side by side come in one ranged read, not
   * one request per file, and a tree of small directories (a bucket's many
   * prefixes) does not cost a request per directory. A batch is a task like
   * a large file, so the walk goes on while it is fetched; each directory
   * with files in it is finished once it is written.
   */
  interface Batch {
    items: { rel: string; file: Entry }[];
    bytes: number;
    start: () => void;
    done: Promise<void>;
  }
  let batch: Batch | undefined;
  const restoreBatch = async (items: Batch['items']) => {
    const ids = items.map((item) => (item.file.content as { chunks: { id: Buffer }[] }).chunks[0].id);
    const chunks = await reader.repository.getBlobs(ids, BlobType.chunk).catch(() => undefined);
    // A damaged chunk fails the whole batch: then each file on its own, so the damage is named.
    if (chunks) await restoreChunks(items, chunks);
    else await Promise.all(items.map((item) => restoreFile(item.rel, item.file)));
  };
  const openBatch = (): Batch => {
    let start!: () => void;
    const started = new Promise<void>((resolve) => (start = resolve));
    const items: Batch['items'] = [];
    return { items, bytes: 0, start, done: started.then(() => restoreBatch(items)) };
  };
  const flushBatch = async () => {
    const full = batch;
    batch = undefined;
    if (!full) return;
    full.start();
    await schedule(full.done);
  };

  /**
   * Walks a directory and returns once its entries are scheduled; the
   * promise it gives back settles when the directory is complete. The walk
   * does not wait for one directory's files before going on to the next,
   * so fetching, decoding and writing overlap across directories.
   */
  const walk = async (
    rel: string,
    dir: Entry,
    mode: 'take' | 'enter' | 'search',
    parentCreated?: () => Promise<boolean>,
  ): Promise<{ done: Promise<void> }> => {
    // Created once, on first need: at once unless searching, where only a child taken needs it.
    let creation: Promise<boolean> | undefined;
    const created = () =>
      (creation ??= (async () => {
        if (parentCreated && !(await parentCreated())) return false;
        try {
          await exporter.createDirectory(rel, dir);
          return true;
        } catch (err) {
          if (rel === '') throw unusableTarget(err);
          fail(rel, err);
          return false;
        }
      })());
    if (mode !== 'search' && !(await created())) return { done: Promise.resolve() };
    const pendingHere = new Set<Promise<unknown>>();
    const start = async (task: Promise<unknown>) => {
      pendingHere.add(task);
      await schedule(task);
    };
    try {
      for await (const child of reader.children(dir)) {
        const childRel = joinPath(rel, child.name);
        const selection = mode === 'take' || !options.select ? 'take' : options.select(childRel, child);
        if (selection === 'skip' || (selection === 'search' && child.kind !== 'directory')) continue;
        const problem = checkEntryName(child.name);
        if (problem) {
          fail(childRel, new Error(`${problem}, left out`));
          continue;
        }
        if (child.kind === 'directory') {
          pendingHere.add((await walk(childRel, child, selection, created)).done);
          continue;
        }
        if (mode === 'search' && !(await created())) continue;
        const key = child.kind === 'file' ? linkKey(child) : undefined;
        if (key) {
          await start(restoreLinked(childRel, child, key));
        } else if (child.kind === 'file' && child.content && 'chunks' in child.content && child.content.chunks.length === 1) {
          batch ??= openBatch();
          pendingHere.add(batch.done);
          batch.items.push({ rel: childRel, file: child });
          batch.bytes += child.size;
          if (batch.items.length >= SMALL_FILE_BATCH || batch.bytes >= SMALL_FILE_BATCH_BYTES) await flushBatch();
        } else if (child.kind === 'file') {
          await start(restoreFile(childRel, child));
        } else {
          await exporter.createSpecial(childRel, child).catch((err) => fail(childRel, err));
        }
      }
    } catch (err) {
      fail(rel, err);
    }
    // The directory's own times and mode are set last: creating its entries changes them.
    const done = Promise.all(pendingHere).then(async () => {
      if (!creation || !(await creation)) return; // searched, and nothing in it was taken
      result.directories++;
      await exporter.finishDirectory(rel, dir).catch((err) => fail(rel, err));
    });
    return { done };
  };

  if (entry.kind === 'directory') {
    const walked = await walk('', entry, options.select ? 'enter' : 'take');
    await flushBatch();
    await walked.done;
  } else {
    // One file, symlink, FIFO or device: into the target, made as for a directory's contents,
    // if -include or -exclude takes it by its name, as they take a directory's entries.
    const selection = options.select?.(entry.name, entry) ?? 'take';
    const problem = checkEntryName(entry.name);
    if (selection === 'skip' || selection === 'search') return result;
    if (problem) fail('', new Error(problem));
    else {
      await exporter.createDirectory('', entry).catch((err) => {
        throw unusableTarget(err);
      });
      if (entry.kind === 'file') await restoreFile(entry.name, entry);
      else await exporter.createSpecial(entry.name, entry).catch((err) => fail(entry.name, err));
    }
  }
  await Promise.all(running);
  return result;
}
