import { LRUCache } from 'lru-cache';
import type { Repository } from '../kloset/repository.js';
import { DamagedSnapshotError, olderFirst, openHeader, snapshotIds, type SnapshotHeader } from '../snapshot/header.js';
import { checkEntryName } from '../snapshot/exporter.js';
import { shownName } from '../snapshot/names.js';
import { SnapshotReader } from '../snapshot/reader.js';
import type { Entry } from '../snapshot/tree.js';
import { InodeNumbers, ROOT_INODE } from './inodes.js';

/** A name in the mount that is not in any snapshot: the snapshot list, the by-date and by-tag views. */
export interface VirtualDirectory {
  type: 'virtual';
  ino: number;
  children: Map<string, Node>;
  time: Date;
}

export interface VirtualLink {
  type: 'link';
  ino: number;
  target: string;
  time: Date;
}

/** An entry inside a snapshot. */
export interface SnapshotNode {
  type: 'entry';
  ino: number;
  reader: SnapshotReader;
  entry: Entry;
}

export type Node = VirtualDirectory | VirtualLink | SnapshotNode;

export function shortSnapshotName(header: SnapshotHeader): string {
  return header.id.toString('hex').slice(0, 8);
}

function dateName(header: SnapshotHeader): string {
  const iso = header.time.toISOString().replace(/\.\d+Z$/, '').replace('T', '_').replace(/:/g, '-');
  return `${iso}_${shortSnapshotName(header)}`;
}

/**
 * Paths remembered. Enough for `ls -l` of any directory page and the getattr
 * calls that follow (the kernel keeps attributes for an hour after that);
 * each entry holds its decoded metadata, so the bound is part of the mount's
 * memory beside the chunk cache.
 */
const RESOLVED_PATHS = 20_000;

/**
 * How stale the list of snapshots may get: a snapshot made (or removed) while
 * mounted shows at the top level, in by-date/, by-tag/ and as latest once
 * this long has passed since the last look at the store.
 */
export const SNAPSHOTS_REFRESH_MS = 5_000;

/** The every-snapshot view: how to look the store up again, and what was seen. */
interface SnapshotsView {
  repository: Repository;
  select: (all: SnapshotHeader[]) => SnapshotHeader[];
  /** Every header read so far, by hex id (damaged ones as null), so a refresh reads only new ones. */
  headers: Map<string, SnapshotHeader | null>;
  /** One reader per snapshot, kept across refreshes with the directory pages it has decoded. */
  readers: Map<string, SnapshotReader>;
  checkedAt: number;
  checking?: Promise<void>;
  /** Ids of the snapshots shown so far, now or before. */
  shown: Set<string>;
  /** Told of each snapshot a refresh shows that was not shown before. */
  onShown?: (header: SnapshotHeader) => void;
}

/** A path of the virtual part of the every-snapshot view: a top-level name, or inside by-date/ or by-tag/. */
function isViewPath(path: string): boolean {
  return path.indexOf('/', 1) === -1 || path.startsWith('/by-date/') || path.startsWith('/by-tag/');
}

/**
 * Resolves mount paths to nodes. Lookups go one directory page at a time
 * through the reader; resolved paths are remembered (bounded), and a
 * directory listing primes that memory so `ls -l` does not look each name up.
 */
export class Namespace {
  private readonly resolved = new LRUCache<string, Node>({ max: RESOLVED_PATHS });

  private constructor(
    private root: Node,
    private readonly inodes: InodeNumbers,
    private readonly view?: SnapshotsView,
  ) {}

  /**
   * Every snapshot: /<short-id>/…, /by-date/<time>_<id> and /by-tag/<tag>/<id> links, /latest.
   * With `select`, the store's snapshots are looked up again (at most every
   * SNAPSHOTS_REFRESH_MS) when the view is looked at, and `select` picks those shown.
   */
  static ofSnapshots(
    repository: Repository,
    headers: SnapshotHeader[],
    select?: (all: SnapshotHeader[]) => SnapshotHeader[],
    onShown?: (header: SnapshotHeader) => void,
  ): Namespace {
    const readers = new Map<string, SnapshotReader>();
    const inodes = new InodeNumbers();
    const root = Namespace.snapshotsRoot(repository, headers, readers, inodes);
    if (!select) return new Namespace(root, inodes);
    const view: SnapshotsView = {
      repository,
      select,
      headers: new Map(headers.map((h) => [h.id.toString('hex'), h])),
      readers,
      checkedAt: Date.now(),
      shown: new Set(headers.map((h) => h.id.toString('hex'))),
      onShown,
    };
    return new Namespace(root, inodes, view);
  }

  /** The top of the every-snapshot view; each name keeps its inode number across refreshes. */
  private static snapshotsRoot(
    repository: Repository,
    headers: SnapshotHeader[],
    readers: Map<string, SnapshotReader>,
    inodes: InodeNumbers,
  ): Node {
    const now = new Date();
    const dir = (ino: number): VirtualDirectory => ({ type: 'virtual', ino, children: new Map(), time: now });
    const link = (path: string, target: string, time: Date): VirtualLink => ({ type: 'link', ino: inodes.of(path), target, time });
    const root = dir(ROOT_INODE);
    const byDate = dir(inodes.of('/by-date'));
    const byTag = dir(inodes.of('/by-tag'));
    for (const header of headers) {
      const name = shortSnapshotName(header);
      const key = header.id.toString('hex');
      let reader = readers.get(key);
      if (!reader) readers.set(key, (reader = new SnapshotReader(repository, header)));
      root.children.set(name, { type: 'entry', ino: inodes.of(`snapshot ${key}`), reader, entry: header.root });
      byDate.children.set(dateName(header), link(`/by-date/${dateName(header)}`, `../${name}`, header.time));
      for (const tag of header.tags) {
        if (tag.includes('/') || tag === '.' || tag === '..' || tag === '') continue;
        let tagDir = byTag.children.get(tag) as VirtualDirectory | undefined;
        if (!tagDir) byTag.children.set(tag, (tagDir = dir(inodes.of(`/by-tag/${tag}`))));
        tagDir.children.set(name, link(`/by-tag/${tag}/${name}`, `../../${name}`, header.time));
      }
    }
    root.children.set('by-date', byDate);
    root.children.set('by-tag', byTag);
    const latest = headers[headers.length - 1];
    if (latest) root.children.set('latest', link('/latest', shortSnapshotName(latest), latest.time));
    return root;
  }

  /** Looks the store's snapshots up again if the last look is older than SNAPSHOTS_REFRESH_MS. */
  private async fresh(): Promise<void> {
    const view = this.view;
    if (!view) return;
    if (!view.checking && Date.now() - view.checkedAt >= SNAPSHOTS_REFRESH_MS) {
      // A store that does not answer keeps the view as it was: the snapshots shown stay readable.
      view.checking = this.refresh(view)
        .catch(() => undefined)
        .finally(() => {
          view.checkedAt = Date.now();
          view.checking = undefined;
        });
    }
    await view.checking;
  }

  private async refresh(view: SnapshotsView): Promise<void> {
    const ids = (await snapshotIds(view.repository)).map((id) => id.toString('hex'));
    const present = new Set(ids);
    const added = ids.filter((id) => !view.headers.has(id));
    const removed = [...view.headers.keys()].filter((id) => !present.has(id));
    if (added.length === 0 && removed.length === 0) return;
    const read = await Promise.all(
      added.map((id) =>
        // Removed meanwhile: undefined, not there. Damaged: left out, as listings do. Anything else: try again next time.
        openHeader(view.repository, Buffer.from(id, 'hex')).then(
          (header) => ({ id, header }),
          (err) => {
            if (err instanceof DamagedSnapshotError) return { id, header: null };
            throw err;
          },
        ),
      ),
    );
    for (const id of removed) {
      view.headers.delete(id);
      view.readers.delete(id);
    }
    for (const { id, header } of read) if (header !== undefined) view.headers.set(id, header);
    const all = [...view.headers.values()]
      .filter((h): h is SnapshotHeader => h !== null)
      .sort(olderFirst);
    // The headers given at first were those `select` picked: the others are read at the first refresh, and stay unshown.
    const selected = view.select(all);
    for (const header of selected) {
      const id = header.id.toString('hex');
      if (view.shown.has(id)) continue;
      view.shown.add(id);
      view.onShown?.(header);
    }
    this.root = Namespace.snapshotsRoot(view.repository, selected, view.readers, this.inodes);
    for (const path of [...this.resolved.keys()]) {
      if (isViewPath(path) || removed.some((id) => path.startsWith(`/${id.slice(0, 8)}/`))) this.resolved.delete(path);
    }
  }

  /** One snapshot, or one directory or file of it, at the mount point. */
  static ofEntry(reader: SnapshotReader, entry: Entry): Namespace {
    return new Namespace({ type: 'entry', ino: ROOT_INODE, reader, entry }, new InodeNumbers());
  }

  /** The node of `entry`, at `index` of the `count` entries of the directory `parent`. */
  private child(parent: SnapshotNode, entry: Entry, index: number, count: number): SnapshotNode {
    const ino = this.inodes.entry(parent.ino, index, count, entry, parent.reader.header.id.toString('latin1'));
    return { type: 'entry', ino, reader: parent.reader, entry };
  }

  /** The node at a FUSE path ('/', '/a/b'), or undefined. */
  async lookup(path: string): Promise<Node | undefined> {
    if (path === '/' || path === '') return this.root;
    if (this.view && isViewPath(path)) await this.fresh();
    const known = this.resolved.get(path);
    if (known) return known;
    const slash = path.lastIndexOf('/');
    const parent = await this.lookup(slash <= 0 ? '/' : path.slice(0, slash));
    if (!parent) return undefined;
    const name = path.slice(slash + 1);
    let node: Node | undefined;
    if (parent.type === 'virtual') node = parent.children.get(name);
    // The kernel never asks for such a name, and list() never shows one: a forged entry named '..' or 'a/b' is no path.
    else if (parent.type === 'entry' && parent.entry.kind === 'directory' && checkEntryName(name) === undefined) {
      const found = await parent.reader.findAt(parent.entry, name);
      if (found) node = this.child(parent, found.entry, found.index, await parent.reader.count(parent.entry));
    }
    if (node) this.resolved.set(path, node);
    return node;
  }

  /**
   * Names in a directory, in order, with their nodes; remembers each child's node for the getattr calls that follow.
   * A name no directory can hold ('', '.', '..', a '/' or a NUL in it: see checkEntryName), which only a forged
   * snapshot has, is left out: the kernel would refuse the whole listing, show '.' or '..' twice, or cut the name
   * at its NUL; and remembered under path + name, 'a/b' would stand for the entry b of the directory a.
   * `onLeftOut` is told of the names left out.
   */
  async list(path: string, node: Node, onLeftOut?: (names: string[]) => void): Promise<[string, Node][]> {
    const prefix = path === '/' ? '/' : `${path}/`;
    if (node.type === 'virtual') {
      if (this.view) {
        await this.fresh();
        // The directory as it is now: the node looked up before a refresh may be the old one.
        const current = await this.lookup(path);
        if (current?.type === 'virtual') node = current;
      }
      return [...node.children.entries()];
    }
    if (node.type !== 'entry' || node.entry.kind !== 'directory') return [];
    const children: SnapshotNode[] = [];
    const leftOut: string[] = [];
    const count = await node.reader.count(node.entry);
    let index = 0;
    for await (const child of node.reader.children(node.entry)) {
      // Numbered by its place among all the entries, as lookup numbers it.
      const at = index++;
      if (checkEntryName(child.name) === undefined) children.push(this.child(node, child, at, count));
      else leftOut.push(child.name);
    }
    if (leftOut.length > 0) onLeftOut?.(leftOut);
    // The kernel takes names as bytes but fuse-native passes them as text: one that is not UTF-8 is
    // shown, and asked for, with U+FFFD. Names that show alike are not remembered under that name,
    // so a lookup finds what SnapshotReader.find does: the name that is that very text, or none.
    const names = children.map((child) => shownName(child.entry.name));
    const showings = new Map<string, number>();
    for (const name of names) showings.set(name, (showings.get(name) ?? 0) + 1);
    children.forEach((child, i) => {
      if (child.entry.name.isWellFormed() || showings.get(names[i]) === 1) this.resolved.set(prefix + names[i], child);
    });
    return children.map((child, i) => [names[i], child]);
  }
}
