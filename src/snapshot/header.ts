import { randomBytes } from 'node:crypto';
import { requireCjs } from '../cjs.js';
import { IntegrityError, KlosetError, NotFoundError } from '../errors.js';
import { mapLimit, type Repository } from '../kloset/repository.js';
import { BlobType, ID_BYTES } from '../kloset/sealing.js';
import { exactForm } from './names.js';
import { entryFromWire, entryToWire, nameFromWire, toBuffer, type Entry } from './tree.js';

const { decode, encode } = requireCjs('@msgpack/msgpack') as typeof import('@msgpack/msgpack');

export interface SnapshotStats {
  files: number;
  directories: number;
  symlinks: number;
  /** Logical bytes of file content. */
  size: number;
  /** Sealed bytes this backup added to the store. */
  storedBytes: number;
  chunks: number;
  newChunks: number;
  /** Entries that could not be read and are missing from the snapshot. */
  errors: number;
  durationMs: number;
  /**
   * Entries with extended attributes or a metadata map (which a mount shows as
   * attributes). Absent from snapshots made before it was counted.
   */
  withAttributes?: number;
}

export interface SnapshotHeader {
  id: Buffer;
  time: Date;
  host: string;
  user: string;
  /** Importer type ("fs", "s3") and what it read: a path, or a bucket and prefix. */
  importer: string;
  origin: string;
  source: string;
  tags: string[];
  root: Entry;
  stats: SnapshotStats;
  parent?: Buffer;
}

export function shortId(id: Buffer): string {
  return id.toString('hex').slice(0, 8);
}

/** A header as both JSON outputs give it: the commands' --json and the viewer's API. */
/** A snapshot as `ls --json` and the viewer's API give it. */
export type SnapshotSummary = ReturnType<typeof snapshotSummary>;

export function snapshotSummary(h: SnapshotHeader) {
  return {
    id: h.id.toString('hex'),
    short_id: shortId(h.id),
    time: h.time.toISOString(),
    host: h.host,
    user: h.user,
    importer: h.importer,
    origin: h.origin,
    source: h.source,
    tags: h.tags,
    size: h.stats.size,
    files: h.stats.files,
    directories: h.stats.directories,
    stored_bytes: h.stats.storedBytes,
    errors: h.stats.errors,
    duration_ms: h.stats.durationMs,
    parent: h.parent?.toString('hex'),
  };
}

export function snapshotKey(id: Buffer): string {
  return `snapshots/${id.toString('hex')}`;
}

export function newSnapshotId(): Buffer {
  return randomBytes(ID_BYTES);
}

function encodeHeader(h: SnapshotHeader): Buffer {
  return toBuffer(
    encode({
      v: 1,
      id: h.id,
      time: h.time.toISOString(),
      host: h.host,
      user: h.user,
      importer: h.importer,
      origin: h.origin,
      // A path typed with bytes that are not UTF-8 is kept as those bytes, as names are.
      source: exactForm(h.source),
      tags: h.tags,
      root: entryToWire(h.root),
      stats: h.stats,
      parent: h.parent,
    }),
  );
}

function decodeHeader(data: Buffer): SnapshotHeader {
  let w: Record<string, unknown>;
  try {
    w = decode(data) as Record<string, unknown>;
  } catch (err) {
    // Sealed with the key yet not a header: damage to this snapshot alone, as a failed seal is.
    throw new IntegrityError(`not a snapshot header (${(err as Error).message})`, { cause: err });
  }
  if (typeof w !== 'object' || w === null || !(w.id instanceof Uint8Array) || typeof w.root !== 'object' || w.root === null) {
    throw new IntegrityError('not a snapshot header');
  }
  return {
    id: Buffer.from(w.id as Uint8Array),
    time: new Date(w.time as string),
    host: w.host as string,
    user: w.user as string,
    importer: w.importer as string,
    origin: w.origin as string,
    source: nameFromWire(w.source) as string,
    tags: w.tags as string[],
    root: entryFromWire(w.root as Record<string, unknown>),
    stats: w.stats as SnapshotStats,
    parent: w.parent ? Buffer.from(w.parent as Uint8Array) : undefined,
  };
}

/**
 * A header is a few KB: the root's entry, the tags, the statistics. Bounded, so
 * that a file planted under snapshots/ (a sparse one costs its writer nothing)
 * is refused unread, not loaded by every listing; a header that would pass the
 * bound is refused when the snapshot is made.
 */
const MAX_HEADER_BYTES = 4 * 1024 * 1024;

/** Written last, after every blob it references is stored and indexed: a listed snapshot is complete. */
export async function putSnapshotHeader(repository: Repository, header: SnapshotHeader): Promise<void> {
  const sealed = await repository.sealStandalone(BlobType.snapshot, header.id, encodeHeader(header));
  if (sealed.length > MAX_HEADER_BYTES) {
    throw new KlosetError(`the snapshot's header would take ${sealed.length} bytes, more than the ${MAX_HEADER_BYTES} a reader takes: fewer or shorter tags`);
  }
  await repository.store.put(snapshotKey(header.id), sealed);
}

export async function readSnapshotHeader(repository: Repository, id: Buffer): Promise<SnapshotHeader> {
  return decodeHeader(await repository.readSealed(snapshotKey(id), BlobType.snapshot, id, MAX_HEADER_BYTES));
}

/** Headers read at once by a listing: a store of thousands of snapshots would otherwise open them all together. */
const HEADERS_AT_ONCE = 32;

/**
 * A snapshot whose header does not open (damaged, tampered with). It is left
 * out of listings so that the other snapshots stay usable, and `rm` can
 * still name it to remove it.
 */
export class DamagedSnapshotError extends KlosetError {
  constructor(
    readonly id: Buffer,
    cause: unknown,
  ) {
    const short = id.toString('hex').slice(0, 8);
    const reason = cause instanceof Error ? cause.message.replace(/^snapshots\/[0-9a-f]+: /, '') : String(cause);
    super(`snapshot ${short}: its header is damaged: ${reason}; 'rm ${short}' removes it`, { cause });
    this.name = 'DamagedSnapshotError';
  }
}

/** Called with each snapshot a listing leaves out because its header is damaged. */
export type OnDamagedSnapshot = (damaged: DamagedSnapshotError) => void;

/** The ids of the snapshots in the store, without reading their headers. */
export async function snapshotIds(repository: Repository): Promise<Buffer[]> {
  const ids: Buffer[] = [];
  for await (const { key } of repository.store.list('snapshots/')) {
    const match = /^snapshots\/([0-9a-f]{64})$/.exec(key);
    if (match) ids.push(Buffer.from(match[1], 'hex'));
  }
  return ids;
}

/** One header, undefined if it was removed meanwhile; a damaged one throws DamagedSnapshotError. */
export async function openHeader(repository: Repository, id: Buffer): Promise<SnapshotHeader | undefined> {
  try {
    return await readSnapshotHeader(repository, id);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    if (err instanceof IntegrityError) throw new DamagedSnapshotError(id, err);
    throw err;
  }
}

/**
 * Every snapshot, oldest first. A damaged header goes to `onDamaged` and is
 * left out; without `onDamaged` it is an error, as it must be for prune,
 * which cannot tell what such a snapshot still needs.
 */
export async function listSnapshots(repository: Repository, onDamaged?: OnDamagedSnapshot): Promise<SnapshotHeader[]> {
  const ids = await snapshotIds(repository);
  const headers: SnapshotHeader[] = [];
  const damaged: DamagedSnapshotError[] = [];
  await mapLimit(ids, HEADERS_AT_ONCE, async (id) => {
    try {
      const header = await openHeader(repository, id);
      if (header) headers.push(header);
    } catch (err) {
      if (!(err instanceof DamagedSnapshotError)) throw err;
      damaged.push(err);
    }
  });
  damaged.sort((a, b) => Buffer.compare(a.id, b.id));
  if (damaged.length > 0 && !onDamaged) throw damaged[0];
  for (const err of damaged) onDamaged!(err);
  return headers.sort(olderFirst);
}

/** The order of listings: oldest first, ties by id. */
export function olderFirst(a: SnapshotHeader, b: SnapshotHeader): number {
  return a.time.getTime() - b.time.getTime() || Buffer.compare(a.id, b.id);
}

/** Names the newest snapshot wherever an id is asked for, as in restic. */
export const LATEST = 'latest';

/**
 * A hex prefix names a snapshot when exactly one id starts with it (a damaged
 * one then throws DamagedSnapshotError, which rm catches); LATEST names the
 * newest that opens.
 */
export async function resolveSnapshot(repository: Repository, prefix: string, onDamaged: OnDamagedSnapshot): Promise<SnapshotHeader> {
  if (prefix === LATEST) {
    const all = await listSnapshots(repository, onDamaged);
    if (all.length === 0) throw new KlosetError('the store has no snapshot yet');
    return all[all.length - 1];
  }
  if (!/^[0-9a-fA-F]+$/.test(prefix)) throw new KlosetError(`invalid snapshot id ${JSON.stringify(prefix)}`);
  const wanted = prefix.toLowerCase();
  const matches = (await snapshotIds(repository)).filter((id) => id.toString('hex').startsWith(wanted));
  if (matches.length > 1) {
    const names = matches
      .map((id) => id.toString('hex').slice(0, Math.max(12, wanted.length + 2)))
      .sort()
      .join(', ');
    throw new KlosetError(`snapshot id ${prefix} is ambiguous: ${names}`);
  }
  const header = matches.length === 1 ? await openHeader(repository, matches[0]) : undefined;
  if (!header) throw new KlosetError(`no snapshot with id ${prefix}`);
  return header;
}

export async function deleteSnapshotHeader(repository: Repository, id: Buffer): Promise<void> {
  await repository.store.delete(snapshotKey(id));
}
