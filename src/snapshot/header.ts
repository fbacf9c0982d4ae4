import { randomBytes } from 'node:crypto';
import { requireCjs } from '../cjs.js';
import { KlosetError, NotFoundError } from '../errors.js';
import type { Repository } from '../kloset/repository.js';
import { BlobType, ID_BYTES } from '../kloset/sealing.js';
import { entryFromWire, entryToWire, toBuffer, type Entry } from './tree.js';

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
      source: h.source,
      tags: h.tags,
      root: entryToWire(h.root),
      stats: h.stats,
      parent: h.parent,
    }),
  );
}

function decodeHeader(data: Buffer): SnapshotHeader {
  const w = decode(data) as Record<string, unknown>;
  return {
    id: Buffer.from(w.id as Uint8Array),
    time: new Date(w.time as string),
    host: w.host as string,
    user: w.user as string,
    importer: w.importer as string,
    origin: w.origin as string,
    source: w.source as string,
    tags: w.tags as string[],
    root: entryFromWire(w.root as Record<string, unknown>),
    stats: w.stats as SnapshotStats,
    parent: w.parent ? Buffer.from(w.parent as Uint8Array) : undefined,
  };
}

/** Written last, after every blob it references is stored and indexed: a listed snapshot is complete. */
export async function putSnapshotHeader(repository: Repository, header: SnapshotHeader): Promise<void> {
  const sealed = await repository.sealStandalone(BlobType.snapshot, header.id, encodeHeader(header));
  await repository.store.put(snapshotKey(header.id), sealed);
}

export async function readSnapshotHeader(repository: Repository, id: Buffer): Promise<SnapshotHeader> {
  return decodeHeader(await repository.readSealed(snapshotKey(id), BlobType.snapshot, id));
}

/** Every snapshot, oldest first. */
export async function listSnapshots(repository: Repository): Promise<SnapshotHeader[]> {
  const ids: Buffer[] = [];
  for await (const { key } of repository.store.list('snapshots/')) {
    const match = /^snapshots\/([0-9a-f]{64})$/.exec(key);
    if (match) ids.push(Buffer.from(match[1], 'hex'));
  }
  const headers: SnapshotHeader[] = [];
  await Promise.all(
    ids.map(async (id) => {
      try {
        headers.push(await readSnapshotHeader(repository, id));
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err; // removed while we listed
      }
    }),
  );
  return headers.sort((a, b) => a.time.getTime() - b.time.getTime() || Buffer.compare(a.id, b.id));
}

/** Names the newest snapshot wherever an id is asked for, as in restic. */
export const LATEST = 'latest';

/** A hex prefix names a snapshot when exactly one id starts with it; LATEST names the newest. */
export async function resolveSnapshot(repository: Repository, prefix: string): Promise<SnapshotHeader> {
  if (prefix === LATEST) {
    const all = await listSnapshots(repository);
    if (all.length === 0) throw new KlosetError('the store has no snapshot yet');
    return all[all.length - 1];
  }
  if (!/^[0-9a-fA-F]+$/.test(prefix)) throw new KlosetError(`invalid snapshot id ${JSON.stringify(prefix)}`);
  const wanted = prefix.toLowerCase();
  const all = await listSnapshots(repository);
  const matches = all.filter((h) => h.id.toString('hex').startsWith(wanted));
  if (matches.length === 0) throw new KlosetError(`no snapshot with id ${prefix}`);
  if (matches.length > 1) {
    const names = matches.map((h) => h.id.toString('hex').slice(0, Math.max(12, wanted.length + 2))).join(', ');
    throw new KlosetError(`snapshot id ${prefix} is ambiguous: ${names}`);
  }
  return matches[0];
}

export async function deleteSnapshotHeader(repository: Repository, id: Buffer): Promise<void> {
  await repository.store.delete(snapshotKey(id));
}
