import { KlosetError } from '../errors.js';
import type { Repository } from '../kloset/repository.js';
import { listSnapshots, resolveSnapshot, type SnapshotHeader } from '../snapshot/header.js';

/** `3f2a`, `3f2a:/src`, `:/src` or '' (the latest snapshot, among those with the tags). */
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

export async function findSnapshot(repository: Repository, ref: SnapshotRef, tags: string[] = []): Promise<SnapshotHeader> {
  if (ref.id !== '') return resolveSnapshot(repository, ref.id);
  const candidates = (await listSnapshots(repository)).filter((h) => hasTags(h, tags));
  if (candidates.length === 0) {
    throw new KlosetError(tags.length ? `no snapshot with tags ${tags.join(',')}` : 'the store has no snapshot yet');
  }
  return candidates[candidates.length - 1];
}
