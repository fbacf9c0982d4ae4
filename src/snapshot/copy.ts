import type { Importer, SourceEntry } from './importer.js';
import type { Repository } from '../kloset/repository.js';
import { backup, type BackupOptions, type BackupProgress } from './builder.js';
import type { SnapshotHeader } from './header.js';
import { SnapshotReader } from './reader.js';
import type { Entry } from './tree.js';

/** Files of a snapshot read at once: each is a few ranged reads of the other store. */
const FILES_IN_FLIGHT = 32;

/**
 * A snapshot of another store as the source of a backup. Two stores share
 * no keys (chunk ids are a MAC under each store's own key, and each has its
 * own chunker seed), so a copy cannot move sealed blobs: every file is read,
 * authenticated and decoded here, then chunked, deduplicated and sealed for
 * the destination by the ordinary backup path.
 */
export class SnapshotImporter implements Importer {
  readonly type: string;
  readonly origin: string;
  readonly source: string;
  readonly readConcurrency = FILES_IN_FLIGHT;
  private readonly reader: SnapshotReader;
  /** The snapshot's entry behind each entry handed to the backup, for its content. */
  private readonly entries = new WeakMap<SourceEntry, Entry>();

  constructor(repository: Repository, header: SnapshotHeader) {
    this.reader = new SnapshotReader(repository, header);
    this.type = header.importer;
    this.origin = header.origin;
    this.source = header.source;
  }

  private sourceEntry(entry: Entry): SourceEntry {
    const { content: _content, tree: _tree, summary: _summary, ...source } = entry;
    this.entries.set(source, entry);
    return source;
  }

  async rootEntry(): Promise<SourceEntry> {
    return this.sourceEntry(this.reader.root);
  }

  async *children(path: string): AsyncIterable<SourceEntry> {
    const directory = path === '' ? this.reader.root : await this.reader.lookup(path);
    for await (const child of this.reader.children(directory)) yield this.sourceEntry(child);
  }

  async *read(path: string, entry: SourceEntry): AsyncIterable<Buffer> {
    const original = this.entries.get(entry) ?? (await this.reader.lookup(path));
    yield* (await this.reader.openFile(original)).stream();
  }

  async close(): Promise<void> {}
}

export interface CopyOptions {
  /** The destination's snapshot of the same source to compare with: its unchanged files are not read again. */
  parent?: SnapshotHeader;
  onProgress?: (progress: BackupProgress) => void;
  signal?: AbortSignal;
  beforeCommit?: () => Promise<void>;
}

/**
 * Copies one snapshot into another store under the same id, time, host,
 * user, source and tags. Any entry that cannot be read (a damaged chunk)
 * fails the copy before its header is written: a copy is whole or absent.
 */
export function copySnapshot(from: Repository, header: SnapshotHeader, to: Repository, options: CopyOptions = {}): Promise<SnapshotHeader> {
  const backupOptions: BackupOptions = {
    tags: header.tags,
    parent: options.parent,
    copyOf: header,
    onProgress: options.onProgress,
    signal: options.signal,
    beforeCommit: options.beforeCommit,
  };
  return backup(to, new SnapshotImporter(from, header), backupOptions);
}
