import { LRUCache } from 'lru-cache';
import type { Repository } from '../kloset/repository.js';
import type { SnapshotHeader } from '../snapshot/header.js';
import { shownName } from '../snapshot/names.js';
import { SnapshotReader } from '../snapshot/reader.js';
import type { Entry } from '../snapshot/tree.js';

/** A name in the mount that is not in any snapshot: the snapshot list, the by-date and by-tag views. */
export interface VirtualDirectory {
  type: 'virtual';
  children: Map<string, Node>;
  time: Date;
}

export interface VirtualLink {
  type: 'link';
  target: string;
  time: Date;
}

/** An entry inside a snapshot. */
export interface SnapshotNode {
  type: 'entry';
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
 * Resolves mount paths to nodes. Lookups go one directory page at a time
 * through the reader; resolved paths are remembered (bounded), and a
 * directory listing primes that memory so `ls -l` does not look each name up.
 */
export class Namespace {
  private readonly resolved = new LRUCache<string, Node>({ max: RESOLVED_PATHS });

  private constructor(private readonly root: Node) {}

  /** Every snapshot: /<short-id>/…, /by-date/<time>_<id> and /by-tag/<tag>/<id> links, /latest. */
  static ofSnapshots(repository: Repository, headers: SnapshotHeader[]): Namespace {
    const now = new Date();
    const dir = (): VirtualDirectory => ({ type: 'virtual', children: new Map(), time: now });
    const root = dir();
    const byDate = dir();
    const byTag = dir();
    for (const header of headers) {
      const name = shortSnapshotName(header);
      root.children.set(name, { type: 'entry', reader: new SnapshotReader(repository, header), entry: header.root });
      byDate.children.set(dateName(header), { type: 'link', target: `../${name}`, time: header.time });
      for (const tag of header.tags) {
        if (tag.includes('/') || tag === '.' || tag === '..' || tag === '') continue;
        let tagDir = byTag.children.get(tag) as VirtualDirectory | undefined;
        if (!tagDir) byTag.children.set(tag, (tagDir = dir()));
        tagDir.children.set(name, { type: 'link', target: `../../${name}`, time: header.time });
      }
    }
    root.children.set('by-date', byDate);
    root.children.set('by-tag', byTag);
    const latest = headers[headers.length - 1];
    if (latest) root.children.set('latest', { type: 'link', target: shortSnapshotName(latest), time: latest.time });
    return new Namespace(root);
  }

  /** One snapshot, or one directory or file of it, at the mount point. */
  static ofEntry(reader: SnapshotReader, entry: Entry): Namespace {
    return new Namespace({ type: 'entry', reader, entry });
  }

  /** The node at a FUSE path ('/', '/a/b'), or undefined. */
  async lookup(path: string): Promise<Node | undefined> {
    if (path === '/' || path === '') return this.root;
    const known = this.resolved.get(path);
    if (known) return known;
    const slash = path.lastIndexOf('/');
    const parent = await this.lookup(slash <= 0 ? '/' : path.slice(0, slash));
    if (!parent) return undefined;
    const name = path.slice(slash + 1);
    let node: Node | undefined;
    if (parent.type === 'virtual') node = parent.children.get(name);
    else if (parent.type === 'entry' && parent.entry.kind === 'directory') {
      const entry = await parent.reader.find(parent.entry, name);
      if (entry) node = { type: 'entry', reader: parent.reader, entry };
    }
    if (node) this.resolved.set(path, node);
    return node;
  }

  /** Names in a directory, in order; remembers each child's node for the getattr calls that follow. */
  async list(path: string, node: Node): Promise<string[]> {
    const prefix = path === '/' ? '/' : `${path}/`;
    if (node.type === 'virtual') return [...node.children.keys()];
    if (node.type !== 'entry' || node.entry.kind !== 'directory') return [];
    const children: Entry[] = [];
    for await (const child of node.reader.children(node.entry)) children.push(child);
    // The kernel takes names as bytes but fuse-native passes them as text: one that is not UTF-8 is
    // shown, and asked for, with U+FFFD. Names that show alike are not remembered under that name,
    // so a lookup finds what SnapshotReader.find does: the name that is that very text, or none.
    const names = children.map((child) => shownName(child.name));
    const showings = new Map<string, number>();
    for (const name of names) showings.set(name, (showings.get(name) ?? 0) + 1);
    children.forEach((child, i) => {
      if (child.name.isWellFormed() || showings.get(names[i]) === 1) {
        this.resolved.set(prefix + names[i], { type: 'entry', reader: node.reader, entry: child });
      }
    });
    return names;
  }
}
