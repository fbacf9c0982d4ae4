import type { Command } from 'commander';
import { ExitCode, KlosetError, UsageError } from '../../errors.js';
import { StoreLockedError, type StoreLock } from '../../kloset/locks.js';
import type { Repository } from '../../kloset/repository.js';
import { listSnapshots, resolveSnapshot, shortId, type DamagedSnapshotError, type SnapshotHeader } from '../../snapshot/header.js';
import type { CliContext, NamedStore, Run } from '../context.js';
import { formatBytes, formatDuration, plural } from '../format.js';
import { filterFrom, withFilterOptions, type FilterFlags } from '../options.js';
import { readPeerPassphrase } from '../passphrase.js';
import { ProgressLine } from '../progress.js';
import { filterSnapshots, isEmptyFilter, uniqueSnapshots } from '../snapshotref.js';

type Direction = 'to' | 'from' | 'with';
const DIRECTIONS: readonly string[] = ['to', 'from', 'with'];

interface SyncFlags extends FilterFlags {
  peerPassphraseFile?: string;
}

interface Side {
  name: string;
  repository: Repository;
  lock: StoreLock | undefined;
}

/**
 * `sync [snapshot...] to|from|with <store>`, as in Plakar: copies the
 * snapshots one store has and the other lacks, keeping their ids, so a
 * second run copies nothing. `with` does both directions.
 */
export function registerSyncCommand(program: Command, context: () => CliContext, run: Run): void {
  withFilterOptions(
    program
      .command('sync')
      .description('copy snapshots to another store, from it, or both ways, keeping their ids')
      .argument('<args...>', '[snapshot...] to|from|with <store>: snapshot id prefixes (of the store copied from), a direction, then the other store'),
  )
    .option('--peer-passphrase-file <file>', "the other store's passphrase (else KLOSET_PEER_PASSPHRASE, else this store's)")
    .action((args: string[], opts: SyncFlags) =>
      run(async () => {
        const ctx = context();
        if (args.length < 2 || !DIRECTIONS.includes(args[args.length - 2])) {
          throw new UsageError('sync needs a direction and a store: sync [snapshot...] to|from|with <store>');
        }
        const direction = args[args.length - 2] as Direction;
        const otherArg = args[args.length - 1];
        const ids = args.slice(0, -2);
        const filter = filterFrom(opts);
        if (ids.length && !isEmptyFilter(filter)) throw new UsageError('sync takes snapshot ids or selection flags (-tag, -host, -before, -since, -latest), not both');
        if (ids.length && direction === 'with') throw new UsageError('sync with copies both ways: name snapshots with sync to or sync from');

        let own: Promise<string> | undefined;
        const ownPassphrase = () => (own ??= ctx.passphrase(false));
        const peer: NamedStore = {
          storeArg: otherArg,
          passphrase: () => readPeerPassphrase(opts.peerPassphraseFile, ownPassphrase, ctx.aliasPassphrase(otherArg)),
        };
        const locks: StoreLock[] = [];
        try {
          // The store only copied from is read, as by a restore: without a lock if it cannot take one (read-only).
          const here = await ctx.lockedRepository('shared', 'a sync', { reader: direction === 'to', store: { storeArg: ctx.storeArg, passphrase: ownPassphrase } });
          if (here.lock) locks.push(here.lock);
          const there = await ctx.lockedRepository('shared', 'a sync', { reader: direction === 'from', store: peer }).catch((err: unknown) => {
            if (err instanceof KlosetError && err.message === 'wrong passphrase') {
              throw new KlosetError(`${otherArg}: wrong passphrase (set the other store's with KLOSET_PEER_PASSPHRASE or --peer-passphrase-file; without them, this store's is tried)`);
            }
            throw err;
          });
          if (there.lock) locks.push(there.lock);
          const local: Side = { name: ctx.storeArg, repository: here.repository, lock: here.lock };
          const remote: Side = { name: otherArg, repository: there.repository, lock: there.lock };
          const legs: [Side, Side][] = direction === 'to' ? [[local, remote]] : direction === 'from' ? [[remote, local]] : [[local, remote], [remote, local]];
          let failed = 0;
          for (const [from, to] of legs) {
            const damaged: DamagedSnapshotError[] = [];
            const selected = ids.length
              ? uniqueSnapshots(await Promise.all(ids.map((id) => resolveSnapshot(from.repository, id, ctx.onDamagedSnapshot))))
              : filterSnapshots(await listSnapshots(from.repository, (err) => damaged.push(err)), filter);
            failed += await syncLeg(ctx, from, to, selected, damaged);
          }
          return failed ? ExitCode.PARTIAL : ExitCode.OK;
        } finally {
          for (const lock of locks) await ctx.release(lock);
        }
      }),
    );
}

/**
 * Copies what `to` lacks of `selected`, oldest first, so each copy finds the one before it as its parent; returns the failures.
 * `damaged` are the snapshots of `from` whose header does not open.
 */
async function syncLeg(ctx: CliContext, from: Side, to: Side, selected: SnapshotHeader[], damaged: DamagedSnapshotError[] = []): Promise<number> {
  const present = await listSnapshots(to.repository, ctx.onDamagedSnapshot);
  const have = new Set(present.map((h) => h.id.toString('hex')));
  const missing = selected.filter((h) => !have.has(h.id.toString('hex'))).sort((a, b) => a.time.getTime() - b.time.getTime());
  let failed = 0;
  for (const err of damaged) {
    // One the other store lacks cannot be copied: the other store is short of it, which the exit code must say.
    if (have.has(err.id.toString('hex'))) ctx.onDamagedSnapshot(err);
    else {
      ctx.err(`kloset: ${shortId(err.id)} not copied to ${to.name}: ${err.message}`);
      failed++;
    }
  }
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let copied = 0;
  try {
    for (const header of missing) {
      const parent = present
        .filter((h) => h.importer === header.importer && h.origin === header.origin && h.source === header.source && h.time <= header.time)
        .pop();
      const progress = new ProgressLine(`copy ${shortId(header.id)}`, header.root.summary?.size);
      try {
        const { copySnapshot } = await import('../../snapshot/copy.js');
        const copy = await copySnapshot(from.repository, header, to.repository, {
          parent,
          signal: controller.signal,
          beforeCommit: async () => to.lock?.check(),
          onProgress: (p) => progress.update(p),
        });
        progress.clear();
        const s = copy.stats;
        ctx.info(
          `copied ${shortId(header.id)} ${header.source} to ${to.name}: ${plural(s.files, 'file')}, ${formatBytes(s.size)} ` +
            `(${formatBytes(s.storedBytes)} added to the store) in ${formatDuration(s.durationMs)}`,
        );
        copied++;
        present.push(copy);
        present.sort((a, b) => a.time.getTime() - b.time.getTime());
      } catch (err) {
        progress.clear();
        if (controller.signal.aborted) {
          throw new KlosetError(`sync interrupted: ${plural(copied, 'snapshot')} copied to ${to.name}; ${shortId(header.id)} was not`, { exitCode: 130 });
        }
        // Without the lock, no later copy may commit either: stop here.
        if (err instanceof StoreLockedError) throw new KlosetError(`${err.message}; ${plural(copied, 'snapshot')} copied to ${to.name}`, { cause: err });
        if (!(err instanceof KlosetError)) {
          const code = (err as NodeJS.ErrnoException).code;
          // A system call failed (a full disk, a store gone): the next copies would fail alike.
          if (code && /^E[A-Z0-9]+$/.test(code)) throw new KlosetError(`${(err as Error).message}; the copy of ${shortId(header.id)} stopped`, { cause: err });
          throw err;
        }
        ctx.err(`kloset: ${shortId(header.id)} not copied to ${to.name}: ${err.message}`);
        failed++;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  const already = selected.length - missing.length;
  ctx.info(
    `sync ${from.name} to ${to.name}: copied ${plural(copied, 'snapshot')}` +
      (already ? `, ${already} already there` : '') +
      (failed ? `, ${failed} failed` : '') +
      (selected.length === 0 && !failed ? ' (no snapshot selected)' : ''),
  );
  return failed;
}
