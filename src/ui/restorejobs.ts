/**
 * Restores started from the page run here, in the server process; the page
 * polls their progress. A job holds counters and the first warnings only,
 * and the most recent jobs are kept after they end.
 */
import { randomBytes } from 'node:crypto';
import type { Exporter } from '../snapshot/exporter.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import { restore } from '../snapshot/restore.js';
import type { Entry } from '../snapshot/tree.js';

const KEPT_JOBS = 100;
const KEPT_WARNINGS = 50;

export type JobState = 'running' | 'done' | 'failed';

export interface RestoreJob {
  id: string;
  state: JobState;
  snapshot: string;
  path: string;
  destination: string;
  /** Where the exporter writes: a directory or s3://bucket/prefix. */
  target: string;
  files: number;
  bytes: number;
  errors: number;
  total_files: number;
  total_bytes: number;
  warnings: { path: string; message: string }[];
  started: string;
  finished?: string;
  error?: string;
}

export class RestoreJobs {
  private readonly jobs = new Map<string, RestoreJob>();
  private readonly work = new Set<Promise<void>>();
  /** The exporters of running jobs, for `abandon`. */
  private readonly exporters = new Set<Exporter>();

  get(id: string): RestoreJob | undefined {
    return this.jobs.get(id);
  }

  start(reader: SnapshotReader, entry: Entry, path: string, destination: string, exporter: Exporter): RestoreJob {
    const job: RestoreJob = {
      id: randomBytes(8).toString('hex'),
      state: 'running',
      snapshot: reader.header.id.toString('hex'),
      path,
      destination,
      target: exporter.target,
      files: 0,
      bytes: 0,
      errors: 0,
      total_files: entry.kind === 'directory' ? (entry.summary?.files ?? 0) : 1,
      total_bytes: entry.kind === 'directory' ? (entry.summary?.size ?? 0) : entry.size,
      warnings: [],
      started: new Date().toISOString(),
    };
    this.jobs.set(job.id, job);
    while (this.jobs.size > KEPT_JOBS) {
      const oldest = [...this.jobs.values()].find((j) => j.state !== 'running');
      if (!oldest) break;
      this.jobs.delete(oldest.id);
    }
    this.exporters.add(exporter);
    const work = (async () => {
      try {
        const result = await restore(reader, entry, path, exporter, {
          onProgress: (p) => Object.assign(job, { files: p.files, bytes: p.bytes, errors: p.errors }),
          onWarning: (where, message) => {
            if (job.warnings.length < KEPT_WARNINGS) job.warnings.push({ path: where, message });
          },
        });
        Object.assign(job, { files: result.files, bytes: result.bytes, errors: result.errors, state: 'done' as const });
      } catch (err) {
        job.state = 'failed';
        job.error = err instanceof Error ? err.message : String(err);
      } finally {
        this.exporters.delete(exporter);
        await exporter.close().catch(() => undefined);
        job.finished = new Date().toISOString();
      }
    })();
    this.work.add(work);
    void work.finally(() => this.work.delete(work));
    return job;
  }

  get running(): number {
    return this.work.size;
  }

  /** Resolves when every running job has ended. */
  async settle(): Promise<void> {
    await Promise.all(this.work);
  }

  /** Stops the running jobs as Ctrl-C stops `kloset restore`: what is half written is removed. */
  async abandon(): Promise<void> {
    await Promise.all([...this.exporters].map((exporter) => exporter.abandon?.()));
  }
}
