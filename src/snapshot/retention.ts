import type { SnapshotHeader } from './header.js';

/**
 * A span of time as the command line writes it (`1y2m`, `36h`, `30min`):
 * years, months and days count on the local calendar, since they are not
 * fixed lengths; hours, minutes and seconds are real time.
 */
export interface CalendarSpan {
  years: number;
  months: number;
  days: number;
  seconds: number;
}

/**
 * `date` moved back by `span`, as restic computes it: first on the
 * calendar (a month back from 31 March is 3 March, as Go's AddDate has
 * it), then by the hours, minutes and seconds.
 */
export function spanBefore(date: Date, span: CalendarSpan): Date {
  const d = new Date(date.getTime());
  d.setFullYear(d.getFullYear() - span.years, d.getMonth() - span.months, d.getDate() - span.days);
  return new Date(d.getTime() - span.seconds * 1000);
}

/**
 * Which snapshots to keep, as restic's `forget` decides it: `last` keeps
 * the n newest; each calendar rule keeps the newest snapshot of each of the
 * n latest hours, days, weeks, months or years that have one, and, while a
 * rule still has periods left when the group runs out, the oldest snapshot
 * too. A count of Infinity has no limit. A snapshot kept by any rule stays.
 * Counts are per group (see `groupKey`).
 */
export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Keep what was taken less than this span before the group's newest snapshot (not counting any dated in the future). */
  within?: CalendarSpan;
  /** Keep a snapshot that has every tag of one of these sets. */
  tags?: string[][];
}

export type GroupField = 'host' | 'source' | 'tags';

export interface RetentionDecision {
  header: SnapshotHeader;
  keep: boolean;
  /** Why it stays ("last", "daily", "within", "tag a,b"); empty when it goes. */
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

function decideGroup(headers: SnapshotHeader[], policy: RetentionPolicy, now: Date): RetentionDecision[] {
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
  // A clock set wrong on one machine must not shift everyone else's window;
  // with nothing but future snapshots, the window holds them all, as in restic.
  const newest = newestFirst.find((h) => h.time.getTime() <= now.getTime());
  let withinAfter = !policy.within ? undefined : newest ? spanBefore(newest.time, policy.within).getTime() : Number.NEGATIVE_INFINITY;
  // A span past the calendar's range keeps everything: an invalid date would compare false and keep nothing.
  if (Number.isNaN(withinAfter)) withinAfter = Number.NEGATIVE_INFINITY;
  return newestFirst.map((header, n) => {
    const reasons: string[] = [];
    for (const set of policy.tags ?? []) if (set.every((tag) => header.tags.includes(tag))) reasons.push(`tag ${set.join(',')}`);
    if (withinAfter !== undefined && header.time.getTime() > withinAfter) reasons.push('within');
    const oldest = n === newestFirst.length - 1;
    for (const rule of rules) {
      if (rule.left === 0) continue;
      const period = rule.period(header.time, n);
      // The oldest is kept while a rule has periods left: the history then reaches back as far as it can.
      if (period === rule.previous && !oldest) continue;
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
export function applyRetention(headers: SnapshotHeader[], policy: RetentionPolicy, groupBy: GroupField[], now = new Date()): RetentionDecision[] {
  const groups = new Map<string, SnapshotHeader[]>();
  for (const header of headers) {
    const key = groupKey(header, groupBy);
    const group = groups.get(key);
    if (group) group.push(header);
    else groups.set(key, [header]);
  }
  const decided = [...groups.values()].map((group) => decideGroup(group, policy, now));
  decided.sort((a, b) => b[0].header.time.getTime() - a[0].header.time.getTime());
  return decided.flat();
}
