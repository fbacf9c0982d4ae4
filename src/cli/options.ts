import { InvalidArgumentError, type Command } from 'commander';
import { parseMoment } from './timespec.js';
import { parseTags, type SnapshotFilter } from './snapshotref.js';

/** For repeatable options: `-tag a -tag b`. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A --keep-* count: as in restic, -1 (or `unlimited`) has no limit. */
export function keepCount(value: string): number {
  if (value === '-1' || value === 'unlimited') return Number.POSITIVE_INFINITY;
  if (!/^\d+$/.test(value) || Number(value) < 1) throw new InvalidArgumentError('expected a whole number of at least 1, or -1 for no limit.');
  return Number(value);
}

export interface FilterFlags {
  tag?: string[];
  before?: string;
  since?: string;
  latest?: boolean;
}

/** -tag, -before, -since and -latest, on a command that selects snapshots. */
export function withFilterOptions(command: Command): Command {
  return command
    .option('--tag <tags>', 'only snapshots with all these tags (comma-separated, repeatable)', collect)
    .option('--before <when>', 'only snapshots taken before a date (2026-01-02, "2026-01-02 15:04") or a span back from now (30d, 2w, 6mo, 1y, 12h, 30min)')
    .option('--since <when>', 'only snapshots taken at or after a date or a span back from now')
    .option('--latest', 'only the newest of the snapshots selected');
}

export function filterFrom(flags: FilterFlags, now = new Date()): SnapshotFilter {
  return {
    tags: parseTags(flags.tag),
    before: flags.before === undefined ? undefined : parseMoment(flags.before, '-before', now),
    since: flags.since === undefined ? undefined : parseMoment(flags.since, '-since', now),
    latest: flags.latest,
  };
}
