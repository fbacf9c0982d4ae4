import { IntegrityError, KlosetError } from '../errors.js';
import type { Repository } from '../kloset/repository.js';
import { BlobType } from '../kloset/sealing.js';
import { missingMessage, planSweep, sweep, type SweepPlan, type SweepResult } from '../kloset/sweep.js';
import { listSnapshots, snapshotIds } from './header.js';
import { decodeChunkList, decodeDirectory, decodePage, type Entry } from './tree.js';

export interface PruneOptions {
  /** Work out and report what would go, and change nothing. */
  dryRun?: boolean;
  /** Snapshots to count as already gone: for a dry run of `rm --prune`. */
  forgotten?: Buffer[];
  onProgress?: (step: string) => void;
  /** Throws if the exclusive lock was lost meanwhile (StoreLock.check): called just before anything is removed. */
  checkLock?: () => Promise<void>;
}

export interface PruneResult {
  snapshots: number;
  liveBlobs: number;
  plan: SweepPlan;
  /** Absent on a dry run. */
  swept?: SweepResult;
  /** What killed writers left half written, removed (or, on a dry run, found). */
  partialWrites: { count: number; bytes: number };
}

/**
 * The ids (latin1 strings) of every blob the snapshots refer to: directory
 * blobs and pages, chunk lists and chunks. A directory blob seen before is
 * a subtree already marked (ids are MACs of content), and so is a page seen
 * before, so the unchanged parts of a long series of snapshots are walked once.
 */
async function markLive(repository: Repository, roots: Entry[], onProgress?: (step: string) => void): Promise<Set<string>> {
  const live = new Set<string>();
  const mark = (id: Buffer) => {
    const key = id.toString('latin1');
    if (live.has(key)) return false;
    live.add(key);
    return true;
  };
  const walk = async (dir: Entry): Promise<void> => {
    if (!dir.tree || !mark(dir.tree)) return;
    const node = decodeDirectory(await repository.getBlob(dir.tree, BlobType.tree));
    const pages = 'entries' in node ? [node.entries] : [];
    if ('pages' in node) {
      for (const page of node.pages) {
        // A page marked before was walked then: one changed name in a large directory leaves its other pages as they were.
        if (mark(page.id)) pages.push(decodePage(await repository.getBlob(page.id, BlobType.treePage)));
      }
    }
    for (const entries of pages) {
      for (const entry of entries) {
        if (entry.kind === 'directory') await walk(entry);
        else if (entry.content && 'chunks' in entry.content) for (const chunk of entry.content.chunks) mark(chunk.id);
        else if (entry.content && mark(entry.content.list)) {
          for (const chunk of decodeChunkList(await repository.getBlob(entry.content.list, BlobType.content))) mark(chunk.id);
        }
      }
    }
  };
  for (const [n, root] of roots.entries()) {
    onProgress?.(`marking snapshot ${n + 1}/${roots.length}`);
    await walk(root);
  }
  return live;
}

/**
 * Removes from the store every blob no snapshot refers to any more (after
 * rm, or left by an interrupted backup). Needs the store's exclusive lock,
 * taken before the index was loaded. Any snapshot that cannot be read
 * whole stops it before anything is removed.
 */
export async function prune(repository: Repository, options: PruneOptions = {}): Promise<PruneResult> {
  const forgotten = new Set(options.forgotten?.map((id) => id.toString('hex')));
  // A damaged header stops prune, unless it is one of those being forgotten (rm -n --prune names it).
  const headers = (
    await listSnapshots(repository, (damaged) => {
      if (forgotten.has(damaged.id.toString('hex'))) return;
      throw new KlosetError(`${damaged.message}; prune removes nothing while it cannot tell what a snapshot refers to`, { cause: damaged });
    })
  ).filter((h) => !forgotten.has(h.id.toString('hex')));
  const live = await markLive(
    repository,
    headers.map((h) => h.root),
    options.onProgress,
  );
  const plan = await planSweep(repository, live);
  // The sweep refuses such a plan: a dry run must say so too, rather than list what prune would never remove.
  if (plan.missing > 0) throw new IntegrityError(missingMessage(plan.missing));
  const marked = new Set(headers.map((h) => h.id.toString('hex')));
  // A snapshot committed since the marking may need what the plan removes: stop then, with `outcome` said.
  const stopIfAnotherWriter = async (outcome: string) => {
    await options.checkLock?.();
    for (const snapshot of await snapshotIds(repository)) {
      const id = snapshot.toString('hex');
      if (!marked.has(id) && !forgotten.has(id)) {
        throw new KlosetError(`snapshot ${id.slice(0, 8)} appeared while prune ran: another writer used the store, ${outcome}`);
      }
    }
  };
  const result: PruneResult = { snapshots: headers.length, liveBlobs: live.size, plan, partialWrites: { count: 0, bytes: 0 } };
  if (!options.dryRun) result.swept = await sweep(repository, live, plan, options.onProgress, () => stopIfAnotherWriter('nothing was removed'));
  // Last: half-written files are left by a killed writer only if no writer is at work.
  if (!options.dryRun) await stopIfAnotherWriter('its half-written files were left alone');
  result.partialWrites = (await repository.store.removePartialWrites?.({ dryRun: options.dryRun })) ?? result.partialWrites;
  return result;
}
