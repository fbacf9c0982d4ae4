import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { KlosetError, UsageError, systemReason } from '../errors.js';
import { exactForm } from '../snapshot/names.js';
import { requireCurrentDirectoryFor } from '../threads.js';
import { parseMoment } from './timespec.js';
import { parseTags, type SnapshotFilter } from './snapshotref.js';

/** For repeatable options: `-tag a -tag b`. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * Patterns given one by one plus those of pattern files, one per line as
 * restic's --exclude-file reads them: blank lines and lines starting with
 * '#' are left out, and so is the space around a pattern.
 */
export function patternsWithFiles(patterns: string[] = [], files: string[] = []): string[] {
  const all = [...patterns];
  for (const file of files) {
    requireCurrentDirectoryFor(file);
    let text: string;
    try {
      text = readFileSync(exactForm(file), 'utf8');
    } catch (err) {
      throw new KlosetError(`cannot read the pattern file ${file}: ${systemReason(err)}`, { exitCode: 2 });
    }
    for (const line of text.split('\n')) {
      const pattern = line.trim();
      if (pattern !== '' && !pattern.startsWith('#')) all.push(pattern);
    }
  }
  return all;
}

function isWholeCount(value: string): boolean {
  return /^\d+$/.test(value) && Number(value) >= 1 && Number.isSafeInteger(Number(value));
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "512M", "2GiB", "1048576": bytes, in powers of 1024 as restic reads them. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!match) throw new UsageError(`invalid size ${JSON.stringify(text)} (examples: 512M, 2G, 1048576)`);
  return Math.round(Number(match[1]) * SIZE_UNITS[match[2].toLowerCase()]);
}

/** A count of things at once (--concurrency): a whole number of at least 1. */
export function positiveCount(value: string): number {
  if (!isWholeCount(value)) throw new InvalidArgumentError('expected a whole number of at least 1.');
  return Number(value);
}

/** A --keep-* count: as in restic, -1 (or `unlimited`) has no limit. */
export function keepCount(value: string): number {
  if (value === '-1' || value === 'unlimited') return Number.POSITIVE_INFINITY;
  if (!isWholeCount(value)) throw new InvalidArgumentError('expected a whole number of at least 1, or -1 for no limit.');
  return Number(value);
}

export interface FilterFlags {
  tag?: string[];
  host?: string[];
  before?: string;
  since?: string;
  latest?: boolean;
}

/** -tag, -host, -before, -since and -latest, on a command that selects snapshots. */
export function withFilterOptions(command: Command): Command {
  return command
    .option('--tag <tags>', 'only snapshots with all these tags (comma-separated, repeatable)', collect)
    .option('--host <name>', 'only snapshots taken on this host (repeatable: on any of them)', collect)
    .option('--before <when>', 'only snapshots taken before a date (2026-01-02, "2026-01-02 15:04") or a span back from now (30d, 2w, 6mo, 1y, 12h, 30min)')
    .option('--since <when>', 'only snapshots taken at or after a date or a span back from now')
    .option('--latest', 'only the newest of the snapshots selected');
}

/**
 * An empty tag set (`-tag ''`) or host is refused, not dropped: restic reads an empty tag set as "the
 * snapshots without tags", and dropping either would select more snapshots than asked, which rm would forget.
 */
export function filterFrom(flags: FilterFlags, now = new Date()): SnapshotFilter {
  refuseEmptyTags('-tag', flags.tag);
  for (const host of flags.host ?? []) if (host.trim() === '') throw new UsageError(`-host ${JSON.stringify(host)} names no host`);
  return {
    tags: parseTags(flags.tag),
    hosts: flags.host ?? [],
    before: flags.before === undefined ? undefined : parseMoment(flags.before, '-before', now),
    since: flags.since === undefined ? undefined : parseMoment(flags.since, '-since', now),
    latest: flags.latest,
  };
}

export function refuseEmptyTags(option: string, values: string[] | undefined): void {
  for (const value of values ?? []) {
    if (parseTags(value).length === 0) throw new UsageError(`${option} ${JSON.stringify(value)} names no tag`);
  }
}
