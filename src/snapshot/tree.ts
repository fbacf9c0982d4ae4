import { requireCjs } from '../cjs.js';
import { IntegrityError } from '../errors.js';
import type { ChunkRef } from '../kloset/chunkpool.js';
import { exactForm, nameFromBytes, nameToBytes } from './names.js';

const { decode, encode } = requireCjs('@msgpack/msgpack') as typeof import('@msgpack/msgpack');

export type EntryKind = 'file' | 'directory' | 'symlink' | 'device' | 'fifo' | 'socket';

/** Seconds and nanoseconds since the epoch: file systems keep nanoseconds, and so do we. */
export interface Timespec {
  sec: number;
  nsec: number;
}

/** A directory's recursive totals, so listings and the viewer show sizes without walking. */
export interface TreeSummary {
  files: number;
  directories: number;
  size: number;
}

/**
 * A file's content. Files of up to INLINE_CHUNKS chunks carry their list in
 * the entry; longer lists are a separate `content` blob, loaded on open.
 */
export type ContentRef = { chunks: ChunkRef[] } | { list: Buffer; count: number };

export interface Entry {
  name: string;
  kind: EntryKind;
  /** st_mode as the source had it: type bits and permissions. */
  mode: number;
  uid: number;
  gid: number;
  /** Owner names as the source system knew them, for display; ids are what restore uses. */
  user?: string;
  group?: string;
  size: number;
  mtime: Timespec;
  ctime?: Timespec;
  atime?: Timespec;
  ino?: number;
  dev?: number;
  nlink?: number;
  rdev?: number;
  target?: string;
  xattrs?: Record<string, Buffer>;
  /** Free key/value metadata: S3 objects keep content type, ETag and user metadata here. */
  meta?: Record<string, string>;
  content?: ContentRef;
  /** Directories: id of the directory blob, and recursive totals. */
  tree?: Buffer;
  summary?: TreeSummary;
}

export const INLINE_CHUNKS = 8;

const S_IFMT = 0o170000;
const S_IFBLK = 0o060000;

/** A device entry keeps the source's type bits in its mode: block (S_IFBLK) or character. */
export function isBlockDevice(e: { kind: string; mode: number }): boolean {
  return e.kind === 'device' && (e.mode & S_IFMT) === S_IFBLK;
}

/** `ls -l` style mode string from st_mode. */
export function formatMode(mode: number, kind: string): string {
  const type = isBlockDevice({ kind, mode }) ? 'b' : ({ directory: 'd', symlink: 'l', device: 'c', fifo: 'p', socket: 's', file: '-' }[kind] ?? '?');
  const bits = 'rwxrwxrwx';
  let out = type;
  for (let i = 0; i < 9; i++) out += mode & (1 << (8 - i)) ? bits[i] : '-';
  // Set-user-ID, set-group-ID and sticky bits over the execute bits, as ls -l shows them (s/S, s/S, t/T).
  const special = (at: number, bit: number, letter: string) => {
    if (!(mode & bit)) return;
    const executable = out[at] !== '-';
    out = out.slice(0, at) + (executable ? letter : letter.toUpperCase()) + out.slice(at + 1);
  };
  special(3, 0o4000, 's');
  special(6, 0o2000, 's');
  special(9, 0o1000, 't');
  return out;
}

/** Names sort by their bytes (UTF-8 for text), the same order S3 lists keys in. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(nameToBytes(a), nameToBytes(b));
}

/** A name or link target on the wire is a string when it is UTF-8 text, else its bytes (see names.ts). */
export const nameFromWire = (value: unknown): string | undefined =>
  typeof value === 'string' ? value : value instanceof Uint8Array ? nameFromBytes(value) : undefined;

const KIND_CODES: Record<EntryKind, number> = { file: 0, directory: 1, symlink: 2, device: 3, fifo: 4, socket: 5 };
const KINDS = Object.keys(KIND_CODES) as EntryKind[];

type Wire = Record<string, unknown>;

const ts = (t: Timespec | undefined) => (t ? [t.sec, t.nsec] : undefined);
const unts = (v: unknown): Timespec | undefined => (Array.isArray(v) ? { sec: v[0], nsec: v[1] } : undefined);

/** The wire form of an entry: a MessagePack map with short keys (see FORMAT.md). */
export function entryToWire(e: Entry): Wire {
  const wire: Wire = { n: exactForm(e.name), k: KIND_CODES[e.kind], m: e.mode, u: e.uid, g: e.gid, s: e.size, mt: ts(e.mtime) };
  if (e.user !== undefined) wire.un = e.user;
  if (e.group !== undefined) wire.gn = e.group;
  if (e.ctime) wire.ct = ts(e.ctime);
  if (e.atime) wire.at = ts(e.atime);
  if (e.ino !== undefined) wire.i = e.ino;
  if (e.dev !== undefined) wire.d = e.dev;
  if (e.nlink !== undefined) wire.nl = e.nlink;
  if (e.rdev !== undefined) wire.rd = e.rdev;
  if (e.target !== undefined) wire.l = exactForm(e.target);
  if (e.xattrs && Object.keys(e.xattrs).length > 0) wire.x = e.xattrs;
  if (e.meta && Object.keys(e.meta).length > 0) wire.md = e.meta;
  if (e.content) {
    wire.c = 'chunks' in e.content ? e.content.chunks.map((c) => [c.id, c.size]) : { l: e.content.list, n: e.content.count };
  }
  if (e.tree) wire.t = e.tree;
  if (e.summary) wire.sm = [e.summary.files, e.summary.directories, e.summary.size];
  return wire;
}

const buf = (v: unknown) => Buffer.from(v as Uint8Array);

export function entryFromWire(w: Wire): Entry {
  const entry: Entry = {
    name: nameFromWire(w.n) as string,
    kind: KINDS[w.k as number],
    mode: w.m as number,
    uid: w.u as number,
    gid: w.g as number,
    size: w.s as number,
    mtime: unts(w.mt)!,
  };
  if (!entry.kind || typeof entry.name !== 'string') throw new IntegrityError('malformed directory entry');
  if (w.un !== undefined) entry.user = w.un as string;
  if (w.gn !== undefined) entry.group = w.gn as string;
  if (w.ct) entry.ctime = unts(w.ct);
  if (w.at) entry.atime = unts(w.at);
  if (w.i !== undefined) entry.ino = w.i as number;
  if (w.d !== undefined) entry.dev = w.d as number;
  if (w.nl !== undefined) entry.nlink = w.nl as number;
  if (w.rd !== undefined) entry.rdev = w.rd as number;
  if (w.l !== undefined) entry.target = nameFromWire(w.l);
  if (w.x) entry.xattrs = Object.fromEntries(Object.entries(w.x as Wire).map(([k, v]) => [k, buf(v)]));
  if (w.md) entry.meta = w.md as Record<string, string>;
  if (w.c) {
    entry.content = Array.isArray(w.c)
      ? { chunks: (w.c as [Uint8Array, number][]).map(([id, size]) => ({ id: buf(id), size })) }
      : { list: buf((w.c as Wire).l), count: (w.c as Wire).n as number };
  }
  if (w.t) entry.tree = buf(w.t);
  if (w.sm) {
    const [files, directories, size] = w.sm as number[];
    entry.summary = { files, directories, size };
  }
  return entry;
}

type Same<T> = (a: T, b: T) => boolean;
const same = <T>(a: T, b: T) => a === b;
const sameTime: Same<Timespec | undefined> = (a, b) => a === b || (a !== undefined && b !== undefined && a.sec === b.sec && a.nsec === b.nsec);
const sameBytes: Same<Buffer | undefined> = (a, b) => a === b || (a !== undefined && b !== undefined && a.equals(b));
/** Empty and absent are the same: neither reaches the wire. */
const sameRecord =
  <V>(sameValue: Same<V>): Same<Record<string, V> | undefined> =>
  (a, b) => {
    if (a === b) return true;
    if (a === undefined || b === undefined) return Object.keys(a ?? b!).length === 0;
    const keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length) return false;
    return keys.every((key) => b[key] !== undefined && sameValue(a[key], b[key]));
  };
const sameContent: Same<ContentRef | undefined> = (a, b) => {
  if (a === b) return true;
  if (!a || !b) return false;
  if ('chunks' in a) return 'chunks' in b && a.chunks.length === b.chunks.length && a.chunks.every((c, i) => c.size === b.chunks[i].size && c.id.equals(b.chunks[i].id));
  return 'list' in b && a.count === b.count && a.list.equals(b.list);
};
const sameSummary: Same<TreeSummary | undefined> = (a, b) =>
  a === b || (a !== undefined && b !== undefined && a.files === b.files && a.directories === b.directories && a.size === b.size);

/** One comparison per field of Entry: a field added to Entry does not compile until it is compared here. */
const SAME_FIELD: { [K in keyof Entry]-?: Same<Entry[K]> } = {
  name: same,
  kind: same,
  mode: same,
  uid: same,
  gid: same,
  user: same,
  group: same,
  size: same,
  mtime: sameTime,
  ctime: sameTime,
  atime: sameTime,
  ino: same,
  dev: same,
  nlink: same,
  rdev: same,
  target: same,
  xattrs: sameRecord(sameBytes),
  meta: sameRecord(same),
  content: sameContent,
  tree: sameBytes,
  summary: sameSummary,
};
const COMPARISONS = Object.entries(SAME_FIELD) as [keyof Entry, Same<unknown>][];

/** Whether two entries record the same thing, field by field (attributes and metadata in any order). */
export function sameEntry(a: Entry, b: Entry): boolean {
  for (const [field, sameField] of COMPARISONS) if (!sameField(a[field], b[field])) return false;
  return true;
}

/** A directory blob: its entries inline, or the index of its pages. */
export type DirectoryNode =
  | { count: number; entries: Entry[] }
  | { count: number; pages: { first: string; count: number; id: Buffer }[] };

export function encodeDirectory(node: DirectoryNode): Buffer {
  const wire =
    'entries' in node
      ? { v: 1, n: node.count, e: node.entries.map(entryToWire) }
      : { v: 1, n: node.count, p: node.pages.map((p) => [exactForm(p.first), p.count, p.id]) };
  return toBuffer(encode(wire));
}

export function decodeDirectory(data: Buffer): DirectoryNode {
  const wire = decode(data) as Wire;
  if (wire.e) return { count: wire.n as number, entries: inNameOrder((wire.e as Wire[]).map(entryFromWire)) };
  const pages = (wire.p as [unknown, number, Uint8Array][]).map(([first, count, id]) => {
    const name = nameFromWire(first);
    if (name === undefined) throw new IntegrityError('malformed directory page index');
    return { first: name, count, id: buf(id) };
  });
  inNameOrder(pages.map((page) => ({ name: page.first })));
  return { count: wire.n as number, pages };
}

/**
 * A directory's entries as the builder writes them: sorted, each name once. A directory that
 * named one twice (only a writer holding the key could seal one) would have a restore or an
 * archive take the second through the first: `a` a symlink out of the target, then `a/f`.
 */
export function inNameOrder<T extends { name: string }>(entries: T[]): T[] {
  for (let i = 1; i < entries.length; i++) {
    if (!follows(entries[i - 1]!.name, entries[i]!.name)) throw new IntegrityError(OUT_OF_ORDER);
  }
  return entries;
}

export const OUT_OF_ORDER = 'directory entries out of order or named twice';

/**
 * Whether `name` may come after `previous` in a directory. Builds from before
 * names were kept as bytes stored a name that is not UTF-8 with U+FFFD in
 * place of its stray bytes, so two such names of one directory can be equal:
 * their snapshots stay readable (a restore replaces what holds a name, it
 * never writes through it).
 */
export function follows(previous: string, name: string): boolean {
  const order = compareNames(previous, name);
  return order < 0 || (order === 0 && name.includes('\uFFFD'));
}

export function encodePage(entries: Entry[]): Buffer {
  return toBuffer(encode({ v: 1, e: entries.map(entryToWire) }));
}

export function decodePage(data: Buffer): Entry[] {
  return inNameOrder(((decode(data) as Wire).e as Wire[]).map(entryFromWire));
}

export function encodeChunkList(chunks: ChunkRef[]): Buffer {
  return toBuffer(encode({ v: 1, c: chunks.map((c) => [c.id, c.size]) }));
}

export function decodeChunkList(data: Buffer): ChunkRef[] {
  return ((decode(data) as Wire).c as [Uint8Array, number][]).map(([id, size]) => ({ id: buf(id), size }));
}

export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
