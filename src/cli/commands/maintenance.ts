import type { Command } from 'commander';
import { randomInt } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { ExitCode, UsageError } from '../../errors.js';
import { removeLocks } from '../../kloset/locks.js';
import { indexDeltaId, Repository } from '../../kloset/repository.js';
import { DamagedSnapshotError, deleteSnapshotHeader, listSnapshots, resolveSnapshot, shortId, snapshotSummary, type SnapshotHeader } from '../../snapshot/header.js';
import { applyRetention, isEmptyPolicy, type GroupField, type RetentionPolicy } from '../../snapshot/retention.js';
import type { PackSubset } from '../../kloset/verify.js';
import type { BlobJudge, DamagedPath } from '../../snapshot/verify.js';
import type { CliContext, Run } from '../context.js';
import { formatBytes, formatDuration, plural } from '../format.js';
import { readNewPassphrase } from '../passphrase.js';
import { ProgressLine } from '../progress.js';
import { collect, filterFrom, keepCount, refuseEmptyTags, withFilterOptions, type FilterFlags } from '../options.js';
import { filterSnapshots, findSnapshot, isEmptyFilter, parseTags, uniqueSnapshots } from '../snapshotref.js';
import { parseSpan } from '../timespec.js';
import { ABANDON_TIMEOUT_MS, snapshotLine } from './snapshots.js';
interface RmFlags extends FilterFlags {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepWithin?: string;
  keepTag?: string[];
  groupBy: string;
  dryRun?: boolean;
  prune?: boolean;
}

function policyFrom(flags: RmFlags): RetentionPolicy {
  // As -tag's (filterFrom): an empty set dropped would be a keep rule gone.
  refuseEmptyTags('--keep-tag', flags.keepTag);
  return {
    last: flags.keepLast,
    hourly: flags.keepHourly,
    daily: flags.keepDaily,
    weekly: flags.keepWeekly,
    monthly: flags.keepMonthly,
    yearly: flags.keepYearly,
    within: flags.keepWithin === undefined ? undefined : parseSpan(flags.keepWithin, '--keep-within'),
    tags: (flags.keepTag ?? []).map((set) => parseTags(set)),
  };
}

const GROUP_FIELDS: readonly GroupField[] = ['host', 'source', 'tags'];

function groupFields(text: string): GroupField[] {
  const fields = text.split(',').map((f) => f.trim()).filter(Boolean);
  for (const field of fields) {
    if (!GROUP_FIELDS.includes(field as GroupField)) throw new UsageError(`--group-by: unknown field ${JSON.stringify(field)} (host, source, tags, or '' for one group)`);
  }
  return fields as GroupField[];
}

/**
 * Which packs a partial check reads, as restic's --read-data-subset: `n/t`
 * takes group n of t by the pack id (the same packs every time, so t runs
 * with n = 1..t read each pack once), `x%` that share of the packs, picked
 * at random, and at least one.
 */
function packSubset(text: string): PackSubset {
  const group = /^(\d+)\/(\d+)$/.exec(text);
  if (group) {
    const [n, t] = [Number(group[1]), Number(group[2])];
    if (t < 1 || n < 1 || n > t) throw new UsageError(`--read-data-subset: ${text}: n/t needs 1 <= n <= t`);
    return () => (packId) => packId.readUInt32BE(0) % t === n - 1;
  }
  const share = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (share && Number(share[1]) > 0 && Number(share[1]) <= 100) {
    return (packIds) => {
      const count = Math.min(packIds.length, Math.max(1, Math.floor((packIds.length * Number(share[1])) / 100)));
      const shuffled = [...packIds];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = randomInt(i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const picked = new Set(shuffled.slice(0, count).map((id) => id.toString('latin1')));
      return (packId) => picked.has(packId.toString('latin1'));
    };
  }
  throw new UsageError(`--read-data-subset: ${JSON.stringify(text)} is neither n/t (as 1/7) nor a share of 0 to 100% (as 10%)`);
}

/** A pack or index delta in messages: the first 16 hex digits of its id. */
function hex16(id: Buffer): string {
  return id.toString('hex').slice(0, 16);
}

/** "keep", "would remove" or "removed", then the snapshot as `ls` lists it. */
function verdictLine(verdict: string, header: SnapshotHeader): string {
  return `${verdict.padEnd(12)}  ${snapshotLine(header)}`;
}

/** Runs prune under the exclusive lock the caller holds, and prints its one-line summary. */
async function pruneAndReport(
  ctx: CliContext,
  repository: Repository,
  options: { dryRun?: boolean; forgotten?: Buffer[]; checkLock?: () => Promise<void> },
): Promise<void> {
  const started = Date.now();
  const progress = new ProgressLine('prune');
  try {
    const { prune } = await import('../../snapshot/prune.js');
    const result = await prune(repository, { ...options, onProgress: (step) => progress.note(step) });
    progress.clear();
    const { plan } = result;
    const removedPacks = plan.deletePacks.filter((p) => !result.swept?.storedAgain.has(p.key));
    const removed = removedPacks.reduce((sum, p) => sum + p.bytes, 0);
    const deleted = plan.deletePacks.reduce((sum, p) => sum + p.bytes, 0);
    const repacked = plan.repackPacks.reduce((sum, p) => sum + p.bytes, 0);
    const moved = plan.repackPacks.reduce((sum, p) => sum + p.liveBytes, 0);
    const changed = plan.deletePacks.length + plan.repackPacks.length > 0;
    const changes = !changed
      ? 'nothing to remove'
      : `${options.dryRun ? 'would remove' : 'removed'} ${plural(removedPacks.length, 'pack')} (${formatBytes(removed)}) and ` +
        `${options.dryRun ? 'would rewrite' : 'rewrote'} ${plural(plan.repackPacks.length, 'pack')} (${formatBytes(repacked)}, ${formatBytes(moved)} of it in use)`;
    // A pack stored again under its own name is among those deleted and those written: counted once.
    const after = result.swept && changed ? plan.packBytes - deleted - repacked + result.swept.writtenBytes : undefined;
    const { partialWrites } = result;
    const partial = partialWrites.count
      ? `; ${options.dryRun ? 'would remove' : 'removed'} ${plural(partialWrites.count, 'partly written file')} (${formatBytes(partialWrites.bytes)})`
      : '';
    ctx.info(
      `prune${options.dryRun ? ' (dry run)' : ''}: ${plural(result.snapshots, 'snapshot')}, ${plural(result.liveBlobs, 'blob')} in use; ${changes}` +
        (after !== undefined ? `; packs now ${formatBytes(after)}, were ${formatBytes(plan.packBytes)}` : '') +
        partial +
        ` in ${formatDuration(Date.now() - started)}`,
    );
  } finally {
    progress.clear();
  }
}

export function registerMaintenanceCommands(program: Command, context: () => CliContext, run: Run): void {
  program
    .command('check')
    .description('verify every blob of the store, or of some snapshots, and name what is damaged')
    .argument('[snapshot...]', 'snapshot id prefixes (default: the whole store)')
    .option('--read-data-subset <n/t|x%>', 'read only some packs whole: group n of t (1/7 to 7/7 over a week reads every pack once), or x% of them (at least one) picked at random; the others are looked up in the listing')
    .option('--no-read-data', 'read no pack: check that every blob in use is indexed in a pack the store lists, and every directory opens')
    .action((ids: string[], opts: { readDataSubset?: string; readData: boolean }) =>
      run(async () => {
        const ctx = context();
        const started = Date.now();
        if (opts.readDataSubset !== undefined && !opts.readData) throw new UsageError('--read-data-subset and --no-read-data: one or the other');
        if (opts.readDataSubset !== undefined && ids.length) throw new UsageError('--read-data-subset checks the whole store, not named snapshots');
        const readPacks: PackSubset | undefined = !opts.readData ? () => () => false : opts.readDataSubset !== undefined ? packSubset(opts.readDataSubset) : undefined;
        // Loaded by the commands that use them only: every other command starts that much sooner.
        const [{ verifyIndexDeltas, verifyPacks }, { BlobJudge, verifySnapshot }] = await Promise.all([
          import('../../kloset/verify.js'),
          import('../../snapshot/verify.js'),
        ]);
        // Shared, as a restore's: a prune that ran meanwhile would delete packs this check has yet to read, and it would call them missing.
        const { repository, lock } = await ctx.lockedRepository('shared', 'a check', { reader: true });
        // A check changes nothing: Ctrl-C can end it at once, once its lock is gone.
        const onSignal = () => {
          void Promise.race([ctx.release(lock), delay(ABANDON_TIMEOUT_MS)]).then(() => {
            ctx.err('kloset: check interrupted');
            process.exit(130);
          });
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          let judge: BlobJudge;
          let packSummary = '';
          let unindexedPacks = 0;
          /** Damaged files beside the snapshots' paths, by kind: 'pack', 'index delta', 'snapshot header'. */
          const problems = new Map<string, number>();
          const problem = (kind: string) => problems.set(kind, (problems.get(kind) ?? 0) + 1);
          const snapshots = ids.length
            ? await Promise.all(ids.map((id) => resolveSnapshot(repository, id, ctx.onDamagedSnapshot)))
            : await listSnapshots(repository, (damaged) => {
                problem('snapshot header');
                ctx.err(`damaged: ${damaged.message}`);
              });
          if (ids.length === 0 || readPacks) {
            for (const delta of ids.length ? [] : await verifyIndexDeltas(repository)) {
              problem('index delta');
              ctx.err(`damaged: index delta ${hex16(indexDeltaId(delta.key))}: ${delta.message}`);
            }
            const progress = new ProgressLine('check', undefined, 'packs');
            const packs = await verifyPacks(
              repository,
              (p) => {
                progress.setTotal(p.estimate);
                progress.update({ files: p.packs, bytes: p.bytes, errors: 0 });
              },
              undefined,
              readPacks,
            );
            progress.clear();
            // Named snapshots are judged by their own blobs, below: a pack they do not use is not their problem.
            for (const pack of ids.length ? [] : packs.problems) {
              problem('pack');
              ctx.err(`damaged: pack ${hex16(pack.packId)}: ${pack.message}`);
            }
            judge = new BlobJudge(repository, packs.damaged);
            unindexedPacks = packs.unindexed;
            packSummary = readPacks
              ? `${plural(packs.packs, 'pack')} read (${formatBytes(packs.bytes)}), ${packs.listedOnly} only listed, ${plural(packs.blobs, 'blob')}; `
              : `${plural(packs.packs, 'pack')}, ${plural(packs.blobs, 'blob')}, ${formatBytes(packs.bytes)}; `;
          } else {
            judge = new BlobJudge(repository);
          }
          const damaged: DamagedPath[] = [];
          for (const snapshot of snapshots) {
            await verifySnapshot(repository, snapshot, judge, (d) => {
              damaged.push(d);
              ctx.err(`damaged: snapshot ${shortId(d.snapshot.id)}: ${d.path}: ${d.reason}`);
            });
          }
          const hit = new Set(damaged.map((d) => d.snapshot.id.toString('hex'))).size;
          const verdict =
            damaged.length || problems.size
              ? [
                  `${plural(damaged.length, 'damaged path')} in ${plural(hit, 'snapshot')}`,
                  ...[...problems].map(([kind, count]) => plural(count, `damaged ${kind}`)),
                ].join(', ')
              : 'no problems found';
          ctx.info(
            `check: ${packSummary}${plural(snapshots.length, 'snapshot')} verified in ${formatDuration(Date.now() - started)}: ${verdict}`,
          );
          if (problems.has('index delta')) ctx.info("'kloset repair index' rebuilds the index from the packs");
          else if (damaged.length && unindexedPacks) {
            // A lost delta leaves its packs in the store, named by nothing: the blobs found missing may be there.
            ctx.info(`${plural(unindexedPacks, 'pack')} in the store ${unindexedPacks === 1 ? 'is' : 'are'} in no index delta: 'kloset repair index' indexes them, which may bring back what is missing`);
          }
          return damaged.length || problems.size ? ExitCode.FAILURE : ExitCode.OK;
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await ctx.release(lock);
        }
      }),
    );

  program
    .command('prune')
    .alias('maintenance')
    .description('remove from the store the data no snapshot refers to any more (after rm, or left by an interrupted backup)')
    .option('-n, --dry-run', 'say what would be removed, and remove nothing')
    .action((opts: { dryRun?: boolean }) =>
      run(async () => {
        const ctx = context();
        const { repository, lock } = await ctx.lockedRepository('exclusive', 'prune');
        try {
          await pruneAndReport(ctx, repository, { dryRun: opts.dryRun, checkLock: async () => lock?.check() });
        } finally {
          await ctx.release(lock);
        }
      }),
    );

  program
    .command('repair')
    .description('repair the store')
    .command('index')
    .description("rebuild the index from the packs: drop damaged deltas and packs gone from the store, index every pack no delta names")
    .option('--read-all-packs', "read every pack's trailer, not only those of packs no delta names")
    .option('-n, --dry-run', 'say what would change, and change nothing')
    .action((opts: { readAllPacks?: boolean; dryRun?: boolean }) =>
      run(async () => {
        const ctx = context();
        const started = Date.now();
        const { repairIndex } = await import('../../kloset/repair.js');
        // The index is what is being repaired: it is not loaded, and a damaged delta must not stop the command.
        const { repository, lock } = await ctx.lockedRepository('exclusive', 'repair index', { loadIndex: false });
        const progress = new ProgressLine('repair', undefined, 'packs');
        try {
          const result = await repairIndex(repository, {
            readAllPacks: opts.readAllPacks,
            dryRun: opts.dryRun,
            checkLock: async () => lock?.check(),
            onProgress: ({ packs, total }) => {
              progress.setTotal(total);
              progress.update({ files: packs, bytes: 0, errors: 0 });
            },
          });
          progress.clear();
          for (const delta of result.damagedDeltas) ctx.err(`damaged: index delta ${hex16(indexDeltaId(delta.key))}: ${delta.message}`);
          for (const pack of result.missingPacks) ctx.err(`missing: pack ${hex16(pack.packId)}, where the index places ${plural(pack.blobs, 'blob')}`);
          for (const pack of result.unreadablePacks) {
            ctx.err(`damaged: pack ${hex16(pack.packId)}: ${pack.message}: ${pack.keptFromIndex ? 'its entries in the index are kept' : 'its blobs cannot be indexed'}`);
          }
          const would = (done: string, planned: string) => (opts.dryRun ? planned : done);
          const found = [
            result.damagedDeltas.length && `${would('dropped', 'would drop')} ${plural(result.damagedDeltas.length, 'damaged delta')}`,
            result.missingPacks.length && `${would('dropped', 'would drop')} ${plural(result.missingPacks.length, 'missing pack')}`,
            `${would('indexed', 'would index')} ${plural(result.blobsFound, 'blob')} from ${plural(result.packsRead, 'pack trailer')}`,
          ].filter(Boolean);
          ctx.info(
            `repair index${opts.dryRun ? ' (dry run)' : ''}: ${plural(result.packs, 'pack')}, ${plural(result.deltas, 'index delta')}; ` +
              (result.changed
                ? `${found.join(', ')}; the index ${would('now names', 'would name')} ${plural(result.blobs, 'blob')} in one delta`
                : 'every delta opens, names only packs the store holds, and every pack is named: nothing to do') +
              ` in ${formatDuration(Date.now() - started)}`,
          );
          const lost = result.missingPacks.length + result.unreadablePacks.filter((pack) => !pack.keptFromIndex).length;
          if (lost) ctx.err("the blobs of those packs cannot be read from this store: check names the snapshots that used them, and a new backup of the same data stores them again");
          return lost ? ExitCode.FAILURE : ExitCode.OK;
        } finally {
          progress.clear();
          await ctx.release(lock);
        }
      }),
    );

  program
    .command('passwd')
    .description("change the store's passphrase")
    .option('--new-passphrase-file <file>', 'read the new passphrase from a file (else KLOSET_NEW_PASSPHRASE, else it is asked twice)')
    .action((opts: { newPassphraseFile?: string }) =>
      run(async () => {
        const ctx = context();
        // Asked once: it opens the store for the lock, then unwraps the master key.
        let current: Promise<string> | undefined;
        const currentPassphrase = () => (current ??= ctx.passphrase(false));
        // Alone: two changes at once would each read CONFIG, write its own and report success, while one passphrase opens the store.
        const { repository, lock } = await ctx.lockedRepository('exclusive', 'a passphrase change', {
          loadIndex: false,
          store: { storeArg: ctx.storeArg, passphrase: currentPassphrase },
        });
        const store = repository.store;
        try {
          await Repository.changePassphrase(store, currentPassphrase, () => readNewPassphrase(opts.newPassphraseFile));
        } finally {
          // The passphrase is changed either way: a lock the store will not delete is said, not taken for a failure.
          await ctx.release(lock);
        }
        ctx.info(`passwd: the passphrase of ${store.location} is changed`);
        // The master key stays (re-encrypting every blob is what a new store is for): an old CONFIG still opens with the old passphrase.
        ctx.info('the master key is the same: a copy of the old CONFIG (a versioned bucket, a copy of the store) still opens with the old passphrase');
      }),
    );

  program
    .command('unlock')
    .description('remove the locks of processes that are gone; with --remove-all, every lock')
    .option('--remove-all', 'also the locks of processes that may still run (only once they are known to have stopped)')
    .action((opts: { removeAll?: boolean }) =>
      run(async () => {
        const ctx = context();
        const repository = await ctx.repository({ loadIndex: false });
        const { removed, kept } = await removeLocks(repository, { all: opts.removeAll });
        for (const lock of removed) ctx.info(lock.unreadable ? `removed ${lock.holder}` : `removed the lock of ${lock.holder}${lock.stale ? ', which is gone' : ''}`);
        for (const lock of kept) ctx.info(`kept the lock of ${lock.holder}, which may still run: --remove-all removes it`);
        ctx.info(`unlock: removed ${plural(removed.length, 'lock')}${kept.length ? `, kept ${kept.length} in use` : ''}`);
      }),
    );

  withFilterOptions(
    program
      .command('rm')
      .alias('forget')
      .description('forget snapshots: those named, those the filters select, or all but those a --keep policy keeps')
      .argument('[snapshot...]', 'snapshot id prefixes'),
  )
    .option('--keep-last <n>', 'keep the n newest snapshots (-1: all)', keepCount)
    .option('--keep-hourly <n>', 'keep the newest snapshot of each of the last n hours that have one (-1: no limit)', keepCount)
    .option('--keep-daily <n>', 'the same for days', keepCount)
    .option('--keep-weekly <n>', 'the same for ISO weeks (Monday to Sunday)', keepCount)
    .option('--keep-monthly <n>', 'the same for months', keepCount)
    .option('--keep-yearly <n>', 'the same for years', keepCount)
    .option('--keep-within <span>', 'keep every snapshot taken less than this span before the newest one (7d, 2w, 6m, 1y2m)')
    .option('--keep-tag <tags>', 'keep every snapshot with all of these tags (comma-separated; repeat the option for either set)', collect)
    .option('--group-by <fields>', 'apply the policy to each group of snapshots with the same host, source and/or tags', 'host,source')
    .option('-n, --dry-run', 'say what would be forgotten, and forget nothing')
    .option('--prune', 'then remove the data no remaining snapshot refers to')
    .action((ids: string[], opts: RmFlags) =>
      run(async () => {
        const ctx = context();
        const filter = filterFrom(opts);
        const policy = policyFrom(opts);
        const groupBy = groupFields(opts.groupBy);
        if (ids.length && !(isEmptyFilter(filter) && isEmptyPolicy(policy))) {
          throw new UsageError('rm takes snapshot ids or selection flags (-tag, -host, -before, -since, -latest, --keep-*), not both');
        }
        if (!ids.length && isEmptyFilter(filter) && isEmptyPolicy(policy)) {
          throw new UsageError('rm needs snapshot ids, a selection (-tag, -host, -before, -since, -latest) or a keep policy (--keep-last, --keep-daily, ...)');
        }
        const { repository, lock } = await ctx.lockedRepository('exclusive', 'rm');
        try {
          // A snapshot named by id whose header is damaged can only be removed, by its id.
          const damaged = new Map<string, DamagedSnapshotError>();
          const named = await Promise.all(
            ids.map((id) =>
              resolveSnapshot(repository, id, ctx.onDamagedSnapshot).catch((err: unknown) => {
                if (!(err instanceof DamagedSnapshotError)) throw err;
                damaged.set(err.id.toString('hex'), err);
                return undefined;
              }),
            ),
          );
          const selected = ids.length
            ? uniqueSnapshots(named.filter((h): h is SnapshotHeader => h !== undefined))
            : filterSnapshots(await listSnapshots(repository, ctx.onDamagedSnapshot), filter);
          const decisions = isEmptyPolicy(policy)
            ? selected.map((header) => ({ header, keep: false, reasons: [] }))
            : applyRetention(selected, policy, groupBy);
          const doomed = decisions.filter((d) => !d.keep).map((d) => d.header);
          for (const { header, keep, reasons } of decisions) {
            if (keep) ctx.info(`${verdictLine('keep', header)}  (${reasons.join(', ')})`);
            else if (opts.dryRun) ctx.info(verdictLine('would remove', header));
          }
          for (const { id } of damaged.values()) {
            if (!opts.dryRun) await deleteSnapshotHeader(repository, id);
            ctx.info(`${(opts.dryRun ? 'would remove' : 'removed').padEnd(12)}  ${id.toString('hex').slice(0, 8)}  (damaged header)`);
          }
          if (!opts.dryRun) {
            for (const header of doomed) {
              await deleteSnapshotHeader(repository, header.id);
              ctx.info(verdictLine('removed', header));
            }
          }
          const kept = decisions.length - doomed.length;
          const removed = doomed.length + damaged.size;
          ctx.info(
            `rm${opts.dryRun ? ' (dry run)' : ''}: ${opts.dryRun ? 'would remove' : 'removed'} ${plural(removed, 'snapshot')}` +
              (isEmptyPolicy(policy) ? '' : `, kept ${kept} by the policy`) +
              (selected.length === 0 && damaged.size === 0 ? ' (no snapshot matches)' : ''),
          );
          const forgotten = [...doomed.map((h) => h.id), ...[...damaged.values()].map((d) => d.id)];
          if (opts.prune) await pruneAndReport(ctx, repository, { dryRun: opts.dryRun, forgotten, checkLock: async () => lock?.check() });
        } finally {
          await ctx.release(lock);
        }
      }),
    );

  program
    .command('info')
    .description('store details and statistics, or one snapshot\'s')
    .argument('[snapshot]', 'snapshot id prefix, or latest')
    .option('--tag <tags>', 'with no snapshot given: the latest snapshot with these tags', collect)
    .option('--host <name>', 'with no snapshot given: the latest snapshot taken on this host', collect)
    .option('--json', 'JSON output')
    .action((id: string | undefined, opts: { tag?: string[]; host?: string[]; json?: boolean }) =>
      run(async () => {
        const ctx = context();
        const repository = await ctx.repository();
        if (id || opts.tag || opts.host) {
          const ref = { id: id ?? '', path: '/' };
          const header = await findSnapshot(repository, ref, filterFrom(opts), ctx.onDamagedSnapshot);
          const summary = snapshotSummary(header);
          if (opts.json) return void ctx.out(JSON.stringify(summary, null, 2));
          for (const [key, value] of Object.entries(summary)) {
            if (value === undefined) continue;
            const shown = key === 'size' || key === 'stored_bytes' ? `${formatBytes(value as number)} (${value})` : Array.isArray(value) ? value.join(',') : value;
            ctx.out(`${key.padEnd(13)} ${shown}`);
          }
          return;
        }
        const snapshots = await listSnapshots(repository, ctx.onDamagedSnapshot);
        const packs = new Set<string>();
        let stored = 0;
        let raw = 0;
        for (const [, location] of repository.index) {
          packs.add(location.packId.toString('latin1'));
          stored += location.length;
          raw += location.rawLength;
        }
        const logical = snapshots.reduce((sum, h) => sum + h.stats.size, 0);
        const config = repository.config;
        const info = {
          location: repository.store.location,
          store_id: config.storeId,
          created: config.createdAt,
          version: config.version,
          encryption: config.encryption ? `${config.encryption.cipher}, key from ${config.encryption.kdf.algorithm}` : 'none (plaintext, authenticated)',
          compression: `${config.compression.algorithm} level ${config.compression.level}`,
          chunking: `${config.chunking.algorithm} ${formatBytes(config.chunking.minSize)} / ${formatBytes(config.chunking.avgSize)} / ${formatBytes(config.chunking.maxSize)}`,
          snapshots: snapshots.length,
          packs: packs.size,
          blobs: repository.index.size,
          logical_size: logical,
          unique_size: raw,
          stored_size: stored,
          dedup_ratio: raw ? Number((logical / raw).toFixed(2)) : 0,
          compression_ratio: stored ? Number((raw / stored).toFixed(2)) : 0,
        };
        if (opts.json) return void ctx.out(JSON.stringify(info, null, 2));
        for (const [key, value] of Object.entries(info)) {
          const shown = key.endsWith('_size') ? `${formatBytes(value as number)} (${value})` : value;
          ctx.out(`${key.padEnd(17)} ${shown}`);
        }
      }),
    );
}
