/**
 * Differences between two snapshot trees, found by walking both in name
 * order side by side (a merge of two sorted listings, one page of each in
 * memory). A subdirectory whose tree id is the same on both sides is the
 * same subtree and is skipped unread; an added or removed directory is one
 * item carrying its totals, not a list of everything below it.
 */
import { checkEntryName } from './exporter.js';
import { listedName } from './names.js';
import type { SnapshotReader } from './reader.js';
import { compareNames, type Entry } from './tree.js';

export type DiffStatus = 'added' | 'removed' | 'changed';
export type ChangeReason = 'type' | 'size' | 'mtime' | 'content' | 'mode' | 'owner' | 'target';

export interface DiffSide {
  type: Entry['kind'];
  size: number;
  mtime: string;
  files?: number;
}

export interface DiffItem {
  /** Its names joined with '/', each as listedName gives it: one no directory can hold is quoted, never a path that climbs. */
  path: string;
  status: DiffStatus;
  before?: DiffSide;
  after?: DiffSide;
  reasons?: ChangeReason[];
  /** A name on its path is one no directory can hold, shown quoted: no path names the entry, and none should be made of it. */
  invalid_name?: true;
}

export interface DiffResult {
  counts: Record<DiffStatus, number>;
  items: DiffItem[];
  /** More items were found than `limit`: `counts` has them all, `items` the first `limit`. */
  truncated: boolean;
}

function side(e: Entry): DiffSide {
  const mtime = new Date(e.mtime.sec * 1000 + Math.floor(e.mtime.nsec / 1e6)).toISOString();
  if (e.kind === 'directory') return { type: e.kind, size: e.summary?.size ?? 0, mtime, files: e.summary?.files ?? 0 };
  return { type: e.kind, size: e.size, mtime };
}

/** A key equal for two files exactly when their chunk lists are equal (a long list is one content-addressed blob). */
function contentKey(e: Entry): string {
  const c = e.content;
  if (!c) return '';
  if ('list' in c) return `l:${c.list.toString('hex')}`;
  return `c:${c.chunks.map((chunk) => chunk.id.toString('hex')).join(',')}`;
}

export function changeReasons(a: Entry, b: Entry): ChangeReason[] {
  if (a.kind !== b.kind) return ['type'];
  const reasons: ChangeReason[] = [];
  if (a.kind !== 'directory') {
    if (a.size !== b.size) reasons.push('size');
    if (a.kind === 'file' && contentKey(a) !== contentKey(b)) reasons.push('content');
  }
  if (a.mtime.sec !== b.mtime.sec || a.mtime.nsec !== b.mtime.nsec) reasons.push('mtime');
  if ((a.mode & 0o7777) !== (b.mode & 0o7777)) reasons.push('mode');
  if (a.uid !== b.uid || a.gid !== b.gid) reasons.push('owner');
  if (a.kind === 'symlink' && a.target !== b.target) reasons.push('target');
  return reasons;
}

export interface DiffOptions {
  /** Items kept in the result (all are counted). */
  limit: number;
  /** Called with every item as it is found, in path order, kept or not. */
  onItem?: (item: DiffItem) => void;
  signal?: AbortSignal;
}

export async function diffTrees(
  readerA: SnapshotReader,
  rootA: Entry,
  readerB: SnapshotReader,
  rootB: Entry,
  basePath: string,
  options: DiffOptions,
): Promise<DiffResult> {
  const result: DiffResult = { counts: { added: 0, removed: 0, changed: 0 }, items: [], truncated: false };
  /** `invalid`: a name on the item's path is one no directory can hold. */
  const emit = (item: DiffItem, invalid: boolean) => {
    if (invalid) item.invalid_name = true;
    result.counts[item.status]++;
    options.onItem?.(item);
    if (result.items.length < options.limit) result.items.push(item);
    else result.truncated = true;
  };
  // As ls: a name no directory can hold ('..', 'a/b'), which only a forged snapshot has, goes in quoted.
  const join = (dir: string, name: string) => (dir === '/' ? `/${listedName(name)}` : `${dir}/${listedName(name)}`);

  const compare = async (path: string, a: Entry, b: Entry, invalid: boolean): Promise<void> => {
    if (a.kind === 'directory' && b.kind === 'directory') {
      // Its own mode, owner and times are in its parent's entry, not in its tree: same tree, same entries only.
      const reasons = changeReasons(a, b);
      if (reasons.length) emit({ path, status: 'changed', before: side(a), after: side(b), reasons }, invalid);
      if (a.tree && b.tree && a.tree.equals(b.tree)) return;
      await walk(path, a, b, invalid);
      return;
    }
    const reasons = changeReasons(a, b);
    if (reasons.length) emit({ path, status: 'changed', before: side(a), after: side(b), reasons }, invalid);
  };

  const walk = async (path: string, dirA: Entry, dirB: Entry, invalid: boolean): Promise<void> => {
    const itA = readerA.children(dirA)[Symbol.asyncIterator]();
    const itB = readerB.children(dirB)[Symbol.asyncIterator]();
    const below = (name: string) => invalid || checkEntryName(name) !== undefined;
    let a = await itA.next();
    let b = await itB.next();
    while (!a.done || !b.done) {
      options.signal?.throwIfAborted();
      const order = a.done ? 1 : b.done ? -1 : compareNames(a.value.name, b.value.name);
      if (order < 0) {
        emit({ path: join(path, a.value!.name), status: 'removed', before: side(a.value!) }, below(a.value!.name));
        a = await itA.next();
      } else if (order > 0) {
        emit({ path: join(path, b.value!.name), status: 'added', after: side(b.value!) }, below(b.value!.name));
        b = await itB.next();
      } else {
        await compare(join(path, a.value!.name), a.value!, b.value!, below(a.value!.name));
        a = await itA.next();
        b = await itB.next();
      }
    }
  };

  await compare(basePath, rootA, rootB, false);
  return result;
}
