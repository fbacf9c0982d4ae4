import { LRUCache } from 'lru-cache';
import { IntegrityError, KlosetError } from '../errors.js';
import type { ChunkRef } from '../kloset/chunkpool.js';
import type { Repository } from '../kloset/repository.js';
import { BlobType } from '../kloset/sealing.js';
import type { SnapshotHeader } from './header.js';
import { shownName } from './names.js';
import type { Slots } from './slots.js';
import { compareNames, decodeChunkList, decodeDirectory, decodePage, follows, OUT_OF_ORDER, type DirectoryNode, type Entry } from './tree.js';

/** Chunks fetched ahead of a sequential reader: keeps a few ranged reads in flight. */
const READ_AHEAD = 8;

/** Subdirectories of a listing whose nodes are read ahead together: a walk or a reader of the listing wants them next. */
const DIRECTORIES_AHEAD = 64;

interface TreeCache {
  /** Decoded directory nodes and pages, by blob id. */
  nodes: LRUCache<string, DirectoryNode | Entry[]>;
  /** Directory nodes being read ahead, by blob id: settles (never rejects) once they are in `nodes`, or are not. */
  readingAhead: Map<string, Promise<void>>;
}

/**
 * The tree cache of every reader of a repository: snapshots share most of
 * their trees, and a mount or a viewer that walks many snapshots then holds
 * one cache, not one per snapshot.
 */
const treeCaches = new WeakMap<Repository, TreeCache>();

function treeCacheOf(repository: Repository): TreeCache {
  let cache = treeCaches.get(repository);
  // Nodes and pages are small and re-read on every lookup: keep the recent ones.
  if (!cache) treeCaches.set(repository, (cache = { nodes: new LRUCache({ max: 256 }), readingAhead: new Map() }));
  return cache;
}

/**
 * Read access to one snapshot, shared by ls, cat, restore, the viewer and the
 * mount: path lookup, paged directory listing, seekable file content.
 */
export class SnapshotReader {
  private readonly nodes: TreeCache['nodes'];
  private readonly readingAhead: TreeCache['readingAhead'];

  constructor(
    readonly repository: Repository,
    readonly header: SnapshotHeader,
  ) {
    ({ nodes: this.nodes, readingAhead: this.readingAhead } = treeCacheOf(repository));
  }

  get root(): Entry {
    return this.header.root;
  }

  private async directory(entry: Entry): Promise<DirectoryNode> {
    if (entry.kind !== 'directory' || !entry.tree) throw new KlosetError(`${entry.name || '/'}: not a directory`);
    const key = entry.tree.toString('latin1');
    let node = this.nodes.get(key) as DirectoryNode | undefined;
    if (!node && this.readingAhead.has(key)) {
      await this.readingAhead.get(key);
      node = this.nodes.get(key) as DirectoryNode | undefined;
    }
    if (!node) {
      node = decodeDirectory(await this.repository.getBlob(entry.tree, BlobType.tree));
      this.nodes.set(key, node);
    }
    return node;
  }

  /**
   * Starts reading the nodes of the first DIRECTORIES_AHEAD subdirectories
   * among `entries` that are neither cached nor on their way, as one batch:
   * written one after the other by the backup, they come in a ranged read
   * or a few, where fetching each when it is entered costs a request each
   * (a restore of a bucket's many prefixes from a store on S3). A batch that
   * fails caches nothing; each node is then read, and its damage named, when
   * it is entered.
   */
  private readAhead(entries: readonly Entry[]): void {
    const ids: Buffer[] = [];
    for (const entry of entries) {
      if (ids.length >= DIRECTORIES_AHEAD) break;
      if (entry.kind !== 'directory' || !entry.tree) continue;
      const key = entry.tree.toString('latin1');
      if (!this.nodes.has(key) && !this.readingAhead.has(key)) ids.push(entry.tree);
    }
    if (ids.length === 0) return;
    const keys = ids.map((id) => id.toString('latin1'));
    const reading = this.repository
      .getBlobs(ids, BlobType.tree)
      .then((blobs) => {
        const nodes = blobs.map(decodeDirectory);
        nodes.forEach((node, i) => this.nodes.set(keys[i], node));
      })
      .catch(() => undefined)
      .finally(() => {
        for (const key of keys) this.readingAhead.delete(key);
      });
    for (const key of keys) this.readingAhead.set(key, reading);
  }

  private async page(id: Buffer): Promise<Entry[]> {
    const key = id.toString('latin1');
    let page = this.nodes.get(key) as Entry[] | undefined;
    if (!page) {
      page = decodePage(await this.repository.getBlob(id, BlobType.treePage));
      this.nodes.set(key, page);
    }
    return page;
  }

  /** Number of entries in a directory, without reading its pages. */
  async count(entry: Entry): Promise<number> {
    return (await this.directory(entry)).count;
  }

  /** All entries of a directory in name order, one page in memory at a time. */
  async *children(entry: Entry): AsyncIterable<Entry> {
    const node = await this.directory(entry);
    if ('entries' in node) {
      this.readAhead(node.entries);
      yield* node.entries;
      return;
    }
    // Each page in order, and the next page's names after this one's (see inNameOrder).
    let last: string | undefined;
    for (const page of node.pages) {
      const entries = await this.page(page.id);
      if (last !== undefined && entries.length > 0 && !follows(last, entries[0]!.name)) throw new IntegrityError(OUT_OF_ORDER);
      last = entries.at(-1)?.name ?? last;
      this.readAhead(entries);
      yield* entries;
    }
  }

  /** Entries [offset, offset + limit): reads only the pages that hold them. */
  async list(entry: Entry, offset: number, limit: number): Promise<Entry[]> {
    const node = await this.directory(entry);
    if ('entries' in node) return node.entries.slice(offset, offset + limit);
    const out: Entry[] = [];
    let start = 0;
    for (const page of node.pages) {
      const end = start + page.count;
      if (end > offset && out.length < limit) {
        const entries = await this.page(page.id);
        out.push(...entries.slice(Math.max(0, offset - start), Math.max(0, offset - start) + limit - out.length));
      }
      start = end;
      if (out.length >= limit) break;
    }
    return out;
  }

  /** One child by name: binary search over the page index, then within the page. */
  async child(entry: Entry, name: string): Promise<Entry | undefined> {
    return (await this.childAt(entry, name))?.entry;
  }

  /** One child by name, and its place in the directory (0 for the first name). */
  private async childAt(entry: Entry, name: string): Promise<{ entry: Entry; index: number } | undefined> {
    const node = await this.directory(entry);
    let entries: Entry[];
    let start = 0;
    if ('entries' in node) {
      entries = node.entries;
    } else {
      let lo = 0;
      let hi = node.pages.length - 1;
      let found = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        if (compareNames(node.pages[mid].first, name) <= 0) {
          found = mid;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      if (found < 0) return undefined;
      entries = await this.page(node.pages[found].id);
      for (let i = 0; i < found; i++) start += node.pages[i].count;
    }
    let lo = 0;
    let hi = entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const cmp = compareNames(entries[mid].name, name);
      if (cmp === 0) return { entry: entries[mid], index: start + mid };
      if (cmp < 0) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /**
   * One child by its name, or by the name as shownName gives it: U+FFFD
   * where the name is not UTF-8, as it comes from a command line or through
   * a mount. Such a name has no place in the sorted order to search, so the
   * directory is then read through; two names that show alike match neither.
   */
  async find(entry: Entry, name: string): Promise<Entry | undefined> {
    return (await this.findAt(entry, name))?.entry;
  }

  /** As find, with the child's place in the directory (0 for the first name), as children() gives them. */
  async findAt(entry: Entry, name: string): Promise<{ entry: Entry; index: number } | undefined> {
    const exact = await this.childAt(entry, name);
    if (exact || !name.includes('\uFFFD')) return exact;
    let found: { entry: Entry; index: number } | undefined;
    let index = 0;
    for await (const child of this.children(entry)) {
      const at = index++;
      if (child.name.isWellFormed() || shownName(child.name) !== name) continue;
      if (found) return undefined;
      found = { entry: child, index: at };
    }
    return found;
  }

  /**
   * '/a/b', 'a/b' and '' all work; throws a user-facing error for a missing path. `names`, when given,
   * gets the names of the entries on the way as they are in the snapshot, byte for byte: a name that
   * is not UTF-8 is typed (and found) as its shown form, with U+FFFD.
   */
  async lookup(path: string, names?: string[]): Promise<Entry> {
    let entry = this.root;
    /** The directories above `entry`, and the path to it as resolved. */
    const above: Entry[] = [];
    const resolved: string[] = [];
    for (const part of path.split('/')) {
      if (part === '' || part === '.') continue;
      if (entry.kind !== 'directory') throw new KlosetError(`/${resolved.join('/')}: not a directory`);
      if (part === '..') {
        // By the path, as no name in a tree is '..'; above the root is the root, as for '/..'.
        entry = above.pop() ?? this.root;
        resolved.pop();
        names?.pop();
        continue;
      }
      const next = await this.find(entry, part);
      if (!next) throw new KlosetError(`/${[...resolved, part].join('/')}: no such file or directory in snapshot ${this.header.id.toString('hex').slice(0, 8)}`);
      above.push(entry);
      entry = next;
      resolved.push(part);
      names?.push(next.name);
    }
    // As for open(2): a trailing '/' asks for a directory. A symbolic link is not followed here, so it is given as itself.
    if (resolved.length > 0 && /\/\.?$/.test(path) && entry.kind !== 'directory' && entry.kind !== 'symlink') {
      throw new KlosetError(`/${resolved.join('/')}/: not a directory`);
    }
    return entry;
  }

  async openFile(entry: Entry): Promise<FileContent> {
    if (entry.kind !== 'file') throw new KlosetError(`${entry.name}: not a regular file`);
    const content = entry.content;
    const chunks = !content ? [] : 'chunks' in content ? content.chunks : decodeChunkList(await this.repository.getBlob(content.list, BlobType.content));
    return new FileContent(this.repository, chunks);
  }
}

/**
 * A file's bytes as a seekable object: `offsets[i]` is where chunk i starts,
 * so a read at any offset finds its chunk by binary search (O(log n)).
 */
export class FileContent {
  readonly offsets: Float64Array;
  readonly size: number;

  constructor(
    private readonly repository: Repository,
    readonly chunks: ChunkRef[],
  ) {
    this.offsets = new Float64Array(chunks.length + 1);
    for (let i = 0; i < chunks.length; i++) this.offsets[i + 1] = this.offsets[i] + chunks[i].size;
    this.size = this.offsets[chunks.length];
  }

  /** Index of the chunk holding byte `offset`. */
  chunkAt(offset: number): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.offsets[mid] <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Up to `length` bytes at `offset` (fewer at the end of the file), read as stream() reads them. */
  async read(offset: number, length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const part of this.stream({ start: offset, end: offset + length })) parts.push(part);
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /**
   * Bytes [start, end) of the content (all of it by default) in order, in
   * pieces that follow the chunks, with up to READ_AHEAD chunks fetched
   * ahead. They are asked for in batches of at least half of that: chunks
   * asked for together come in one ranged read where they lie side by side
   * in a pack, so a large file costs a request per few megabytes, not one
   * per chunk. Readers given the same `ahead` (a restore's files) take one
   * of its slots per chunk, so together they fetch no more than it holds;
   * a reader waits for a slot only when it has nothing of its own in flight.
   */
  async *stream({ start = 0, end = this.size, ahead }: StreamOptions = {}): AsyncGenerator<Buffer> {
    end = Math.min(end, this.size);
    if (start >= end) return;
    const last = this.chunkAt(end - 1);
    let next = this.chunkAt(start);
    const inFlight: { index: number; data: Promise<Buffer>; release: () => void }[] = [];
    const fill = async () => {
      if (inFlight.length > READ_AHEAD / 2) return;
      const releases: (() => void)[] = [];
      while (next + releases.length <= last && inFlight.length + releases.length < READ_AHEAD) {
        const release = !ahead ? () => undefined : inFlight.length + releases.length === 0 ? await ahead.acquire() : ahead.tryAcquire();
        if (!release) break;
        releases.push(release);
      }
      if (releases.length === 0) return;
      const first = next;
      next += releases.length;
      const batch = this.repository.getBlobs(
        this.chunks.slice(first, next).map((chunk) => chunk.id),
        BlobType.chunk,
      );
      releases.forEach((release, k) => {
        const data = batch.then((all) => all[k]);
        data.catch(() => undefined); // awaited below in order, or not at all by a reader stopped early
        inFlight.push({ index: first + k, data, release });
      });
    };
    try {
      await fill();
      while (inFlight.length > 0) {
        const { index, data, release } = inFlight.shift()!;
        let chunk: Buffer;
        try {
          chunk = await data;
        } finally {
          release();
        }
        await fill();
        const base = this.offsets[index];
        yield base >= start && this.offsets[index + 1] <= end ? chunk : chunk.subarray(Math.max(0, start - base), end - base);
      }
    } finally {
      for (const { release } of inFlight) release(); // a reader stopped early (a failed write)
    }
  }
}

export interface StreamOptions {
  /** The first byte to read. */
  start?: number;
  /** Where to stop: the byte after the last one read. */
  end?: number;
  /** Fetch slots shared with other readers. */
  ahead?: Slots;
}
