import type { Command } from 'commander';
import { ExitCode } from '../../errors.js';
import { verifyPacks } from '../../kloset/verify.js';
import { listSnapshots, resolveSnapshot } from '../../snapshot/header.js';
import { prune } from '../../snapshot/prune.js';
import { BlobJudge, verifySnapshot, type DamagedPath } from '../../snapshot/verify.js';
import type { CliContext, Run } from '../context.js';
import { formatBytes, formatDuration, plural, shortId } from '../format.js';
import { ProgressLine } from '../progress.js';
import { snapshotSummary } from './snapshots.js';



export function registerMaintenanceCommands(program: Command, context: () => CliContext, run: Run): void {
  program
    .command('check')
    .description('verify every blob of the store, or of some snapshots, and name what is damaged')
    .argument('[snapshot...]', 'snapshot id prefixes (default: the whole store)')
    .action((ids: string[]) =>
      run(async () => {
        const ctx = context();
        const started = Date.now();
        const repository = await ctx.repository();
        let judge: BlobJudge;
        let packSummary = '';
        let problems = 0;
        const snapshots = ids.length
          ? await Promise.all(ids.map((id) => resolveSnapshot(repository, id)))
          : await listSnapshots(repository);
        if (ids.length === 0) {
          const progress = new ProgressLine('check', undefined, 'packs');
          const packs = await verifyPacks(repository, (p) => {
            progress.setTotal(p.estimate);
            progress.update({ files: p.packs, bytes: p.bytes, errors: 0 });
          });
          progress.clear();
          for (const problem of packs.problems) {
            problems++;
            ctx.err(`damaged: pack ${problem.packId.toString('hex').slice(0, 16)}: ${problem.message}`);
          }
          judge = new BlobJudge(repository, packs.damaged);
          packSummary = `${plural(packs.packs, 'pack')}, ${plural(packs.blobs, 'blob')}, ${formatBytes(packs.bytes)}; `;
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
          damaged.length || problems
            ? `${plural(damaged.length, 'damaged path')} in ${plural(hit, 'snapshot')}${problems ? `, ${plural(problems, 'damaged pack')}` : ''}`
            : 'no problems found';
        ctx.out(
          `check: ${packSummary}${plural(snapshots.length, 'snapshot')} verified in ${formatDuration(Date.now() - started)}: ${verdict}`,
        );
        return damaged.length || problems ? ExitCode.FAILURE : ExitCode.OK;
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
        const started = Date.now();
        const { repository, lock } = await ctx.lockedRepository('exclusive', 'prune');
        const progress = new ProgressLine('prune');
        try {
          const result = await prune(repository, { dryRun: opts.dryRun, onProgress: (step) => progress.note(step) });
          progress.clear();
          const { plan } = result;
          const deleted = plan.deletePacks.reduce((sum, p) => sum + p.bytes, 0);
          const repacked = plan.repackPacks.reduce((sum, p) => sum + p.bytes, 0);
          const moved = plan.repackPacks.reduce((sum, p) => sum + p.liveBytes, 0);
          const changed = plan.deletePacks.length + plan.repackPacks.length > 0;
          const changes = !changed
            ? 'nothing to remove'
            : `${opts.dryRun ? 'would remove' : 'removed'} ${plural(plan.deletePacks.length, 'pack')} (${formatBytes(deleted)}) and ` +
              `${opts.dryRun ? 'would rewrite' : 'rewrote'} ${plural(plan.repackPacks.length, 'pack')} (${formatBytes(repacked)}, ${formatBytes(moved)} of it in use)`;
          const after = result.swept && changed ? plan.packBytes - deleted - repacked + result.swept.writtenBytes : undefined;
          ctx.out(
            `prune${opts.dryRun ? ' (dry run)' : ''}: ${plural(result.snapshots, 'snapshot')}, ${plural(result.liveBlobs, 'blob')} in use; ${changes}` +
              (after !== undefined ? `; packs now ${formatBytes(after)}, were ${formatBytes(plan.packBytes)}` : '') +
              ` in ${formatDuration(Date.now() - started)}`,
          );
        } finally {
          progress.clear();
          await lock?.release();
        }
      }),
    );

  program
    .command('info')
    .description('store details and statistics, or one snapshot\'s')
    .argument('[snapshot]', 'snapshot id prefix')
    .option('--json', 'JSON output')
    .action((id: string | undefined, opts: { json?: boolean }) =>
      run(async () => {
        const ctx = context();
        const repository = await ctx.repository();
        if (id) {
          const header = await resolveSnapshot(repository, id);
          const summary = snapshotSummary(header);
          if (opts.json) return void ctx.out(JSON.stringify(summary, null, 2));
          for (const [key, value] of Object.entries(summary)) {
            if (value === undefined) continue;
            const shown = key === 'size' || key === 'stored_bytes' ? `${formatBytes(value as number)} (${value})` : Array.isArray(value) ? value.join(',') : value;
            ctx.out(`${key.padEnd(13)} ${shown}`);
          }
          return;
        }
        const snapshots = await listSnapshots(repository);
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
