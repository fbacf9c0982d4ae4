import type { Entry } from './tree.js';

/** What a source tells about one item: an entry without content or subtree yet. */
export type SourceEntry = Omit<Entry, 'content' | 'tree' | 'summary'>;

/**
 * A child the source lists but cannot record (it cannot be stat'ed, its name
 * cannot be kept exactly): the backup warns, counts it, and goes on with its
 * siblings.
 */
export interface SkippedChild {
  name: string;
  skipped: Error;
}

/**
 * A source of a backup (a directory, a bucket). Paths are relative to the
 * source's root, '/'-separated, '' for the root itself.
 */
export interface Importer {
  /** "fs", "s3": recorded in the snapshot header. */
  readonly type: string;
  /** Where the data came from: a host name, an endpoint. */
  readonly origin: string;
  /** What was backed up, as the user named it (an absolute path, s3://bucket/prefix). */
  readonly source: string;
  /** A source that cannot be read again (a stream): an entry it fails to give fails the backup, rather than a warning. */
  readonly allOrNothing?: boolean;
  /** Files worth reading at once: a few for a disk, many for a store whose cost is latency. */
  readonly readConcurrency?: number;
  rootEntry(): Promise<SourceEntry>;
  /** A directory's children, sorted by compareNames. */
  children(path: string): AsyncIterable<SourceEntry | SkippedChild>;
  /**
   * A file's bytes; errors surface as the iteration throws. Each buffer
   * yielded is the backup's from then on: one that is the whole of its
   * ArrayBuffer is handed to a chunk worker, not copied.
   */
  read(path: string, entry: SourceEntry): AsyncIterable<Buffer>;
  /**
   * For a source on the local file system: the file's path on disk. The chunk
   * workers then read it themselves and its bytes never cross threads.
   */
  localPath?(path: string): string | Buffer;
  /**
   * When present, children() lists files without their extended
   * attributes: they are read with this, for the files that changed since
   * the parent snapshot; an unchanged file keeps the ones recorded then.
   */
  xattrs?(path: string): Record<string, Buffer> | undefined;
  /**
   * For a source on the local file system: the entry at `path` as it is
   * now (undefined if it is gone), for a file found replaced by another
   * between the listing and the read.
   */
  stat?(path: string, name: string): SourceEntry | undefined;
  /**
   * Bytes in the files the backup will read, for a progress estimate. Optional:
   * a source where a second listing costs requests leaves it out.
   */
  scan?(options: ScanOptions): Promise<number>;
  /** What the source has to say once the backup is done, beyond per-entry warnings: one line each. */
  notes?(): string[];
  close(): Promise<void>;
}

export interface ScanOptions {
  /** Paths the backup leaves out; a directory leaves out its subtree. */
  skip?: (path: string) => boolean;
  /** Files over this many bytes are left out, as the backup leaves them. */
  largerThan?: number;
  signal?: AbortSignal;
}

export function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}
