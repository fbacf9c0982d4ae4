import type { SnapshotHeader } from './header.js';

/** A calendar span, as restic's `--keep-within 1y2m3d4h` writes it: months and years are not fixed lengths. */
export interface CalendarSpan {
  years: number;
  months: number;
  days: number;
  hours: number;
}

/** `date` moved back by `span`, on the local calendar (a month back from 31 March is 3 March, as Go's AddDate does). */
export function spanBefore(date: Date, span: CalendarSpan): Date {
  const d = new Date(date.getTime());
  d.setFullYear(d.getFullYear() - span.years, d.getMonth() - span.months, d.getDate() - span.days);
  d.setHours(d.getHours() - span.hours);
  return d;
}

/**
 * Which snapshots to keep, restic's `forget` rules: `last` keeps the n
 * newest; each calendar rule keeps the newest snapshot of each of the n
 * latest hours, days, weeks, months or years that have one. A snapshot kept
 * by any rule stays. Counts are per group (see `groupKey`).
 */
export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Keep everything taken within this span before the group's newest snapshot. */
  within?: CalendarSpan;
  /** Keep every snapshot that has one of these tags. */
  tags?: string[];
}

export type GroupField = 'host' | 'source' | 'tags';

export interface RetentionDecision {
  header: SnapshotHeader;
  keep: boolean;
  /** Why it stays ("last", "daily", "within 7d", "tag x"); empty when it goes. */
  reasons: string[];
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** ISO 8601 week of the local date: weeks start on Monday, and a week belongs to the year of its Thursday. */
function isoWeek(date: Date): string {
  // Calendar arithmetic in UTC, on the local date's numbers, so that no DST change shifts a day.
  const day = new Date(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()));
  const weekday = day.getUTCDay() || 7;
  day.setUTCDate(day.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(day.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((day.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${pad(week)}`;
}

/** The calendar rules, finest first, each with how it names a snapshot's period in local time. */
const CALENDAR_RULES: [keyof RetentionPolicy & ('hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly'), (d: Date) => string][] = [
  ['hourly', (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}`],
  ['daily', (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`],
  ['weekly', isoWeek],
  ['monthly', (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}`],
  ['yearly', (d) => String(d.getFullYear())],
];

export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return (
    !policy.within &&
    !policy.tags?.length &&
    !policy.last &&
    CALENDAR_RULES.every(([rule]) => !policy[rule])
  );
}

/** Snapshots of one group are judged together: by default, those of the same host and source. */
export function groupKey(header: SnapshotHeader, fields: GroupField[]): string {
  return JSON.stringify(
    fields.map((field) =>
      field === 'host' ? header.host : field === 'source' ? [header.importer, header.origin, header.source] : [...header.tags].sort(),
    ),
  );
}

function decideGroup(headers: SnapshotHeader[], policy: RetentionPolicy): RetentionDecision[] {
  const newestFirst = [...headers].sort((a, b) => b.time.getTime() - a.time.getTime() || Buffer.compare(b.id, a.id));
  const rules = [
    ...(policy.last ? [{ reason: 'last', left: policy.last, period: (_: Date, n: number) => String(n), previous: '' }] : []),
    ...CALENDAR_RULES.filter(([rule]) => policy[rule]).map(([rule, period]) => ({
      reason: rule,
      left: policy[rule] as number,
      period: (d: Date) => period(d),
      previous: '',
    })),
  ];
  const withinFrom = policy.within && newestFirst.length ? spanBefore(newestFirst[0].time, policy.within).getTime() : undefined;
  return newestFirst.map((header, n) => {
    const reasons: string[] = [];
    for (const tag of policy.tags ?? []) if (header.tags.includes(tag)) reasons.push(`tag ${tag}`);
    if (withinFrom !== undefined && header.time.getTime() >= withinFrom) reasons.push('within');
    for (const rule of rules) {
      if (rule.left === 0) continue;
      const period = rule.period(header.time, n);
      if (period === rule.previous) continue;
      rule.previous = period;
      rule.left--;
      reasons.push(rule.reason);
    }
    return { header, keep: reasons.length > 0, reasons };
  });
}

/**
 * Applies `policy` to each group of `headers` separately. Returns every
 * snapshot once, newest first within each group, groups in order of their
 * newest snapshot.
 */
export function applyRetention(headers: SnapshotHeader[], policy: RetentionPolicy, groupBy: GroupField[]): RetentionDecision[] {
  const groups = new Map<string, SnapshotHeader[]>();
  for (const header of headers) {
    const key = groupKey(header, groupBy);
    const group = groups.get(key);
    if (group) group.push(header);
    else groups.set(key, [header]);
  }
  const decided = [...groups.values()].map((group) => decideGroup(group, policy));
  decided.sort((a, b) => b[0].header.time.getTime() - a[0].header.time.getTime());
  return decided.flat();
}
