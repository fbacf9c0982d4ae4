import { KlosetError, UsageError } from '../errors.js';
import type { Repository } from '../kloset/repository.js';
import { LATEST, listSnapshots, resolveSnapshot, type OnDamagedSnapshot, type SnapshotHeader } from '../snapshot/header.js';

/** `3f2a`, `3f2a:/src`, `latest:/src`, `:/src` or '' (the latest snapshot, among those with the tags). */
export interface SnapshotRef {
  id: string;
  path: string;
}

export function parseSnapshotRef(arg: string | undefined): SnapshotRef {
  if (!arg) return { id: '', path: '/' };
  const colon = arg.indexOf(':');
  if (colon < 0) return { id: arg, path: '/' };
  return { id: arg.slice(0, colon), path: arg.slice(colon + 1) || '/' };
}

export function hasTags(header: SnapshotHeader, tags: string[]): boolean {
  return tags.every((tag) => header.tags.includes(tag));
}

export function parseTags(value: string | string[] | undefined): string[] {
  const values = Array.isArray(value) ? value : value ? [value] : [];
  return values.flatMap((v) => v.split(',')).map((t) => t.trim()).filter(Boolean);
}

/** The snapshot `ref` names; with no id or `latest`, the newest of those `filter` selects. */
export async function findSnapshot(
  repository: Repository,
  ref: SnapshotRef,
  filter: SnapshotFilter,
  onDamaged: OnDamagedSnapshot,
): Promise<SnapshotHeader> {
  if (ref.id !== '' && ref.id !== LATEST) {
    // An id names one snapshot: a selection beside it would be silently ignored, and the wrong snapshot used.
    if (!isEmptyFilter(filter)) throw new UsageError(`${ref.id}: a snapshot id or selection flags (-tag, -host, -before, -since, -latest), not both`);
    return resolveSnapshot(repository, ref.id, onDamaged);
  }
  const all = await listSnapshots(repository, onDamaged);
  const candidates = filterSnapshots(all, filter);
  if (candidates.length === 0) {
    if (all.length === 0) throw new KlosetError('the store has no snapshot yet');
    throw new KlosetError(filter.tags.length && isEmptyFilter({ ...filter, tags: [] }) ? `no snapshot with tags ${filter.tags.join(',')}` : 'no snapshot matches');
  }
  return candidates[candidates.length - 1];
}

/** Each snapshot once, in the order first named. */
export function uniqueSnapshots(headers: SnapshotHeader[]): SnapshotHeader[] {
  return [...new Map(headers.map((h) => [h.id.toString('hex'), h])).values()];
}

/** The selection flags `ls` and `rm` share, as Plakar names them. */
export interface SnapshotFilter {
  tags: string[];
  /** Taken on any of these hosts; none: any host. */
  hosts: string[];
  before?: Date;
  since?: Date;
  /** Only the newest of what the other flags select. */
  latest?: boolean;
}

export function isEmptyFilter(filter: SnapshotFilter): boolean {
  return filter.tags.length === 0 && filter.hosts.length === 0 && !filter.before && !filter.since && !filter.latest;
}

/** `headers` oldest first, as listSnapshots gives them; -before is strict, -since inclusive. */
export function filterSnapshots(headers: SnapshotHeader[], filter: SnapshotFilter): SnapshotHeader[] {
  const selected = headers.filter(
    (h) =>
      hasTags(h, filter.tags) &&
      (filter.hosts.length === 0 || filter.hosts.includes(h.host)) &&
      (!filter.before || h.time.getTime() < filter.before.getTime()) &&
      (!filter.since || h.time.getTime() >= filter.since.getTime()),
  );
  return filter.latest ? selected.slice(-1) : selected;
}
