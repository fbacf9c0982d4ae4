import { UsageError } from '../errors.js';
import { spanBefore, type CalendarSpan } from '../snapshot/retention.js';

type Unit = (span: CalendarSpan, n: number) => void;

const YEARS: Unit = (span, n) => (span.years += n);
const MONTHS: Unit = (span, n) => (span.months += n);
const WEEKS: Unit = (span, n) => (span.days += 7 * n);
const DAYS: Unit = (span, n) => (span.days += n);
const HOURS: Unit = (span, n) => (span.seconds += 3600 * n);
const MINUTES: Unit = (span, n) => (span.seconds += 60 * n);
const SECONDS: Unit = (span, n) => (span.seconds += n);

/** restic's `--keep-within 1y5m7d2h`: m is months there. */
const KEEP_WITHIN_UNITS: Record<string, Unit> = { y: YEARS, m: MONTHS, w: WEEKS, d: DAYS, h: HOURS };
/**
 * -before and -since: Plakar reads `30m` as minutes and restic users as
 * months, so a bare m is refused rather than guessed; mo and min say which.
 */
const MOMENT_UNITS: Record<string, Unit> = { y: YEARS, mo: MONTHS, w: WEEKS, d: DAYS, h: HOURS, min: MINUTES, s: SECONDS };

function spanPattern(units: Record<string, Unit>): RegExp {
  const names = Object.keys(units).sort((a, b) => b.length - a.length).join('|');
  return new RegExp(`^(?:\\d+(?:${names}))+$`);
}

function readSpan(text: string, units: Record<string, Unit>): CalendarSpan | undefined {
  if (!spanPattern(units).test(text)) return undefined;
  const span: CalendarSpan = { years: 0, months: 0, days: 0, seconds: 0 };
  const names = Object.keys(units).sort((a, b) => b.length - a.length).join('|');
  for (const [, count, unit] of text.matchAll(new RegExp(`(\\d+)(${names})`, 'g'))) units[unit](span, Number(count));
  return span;
}

/** `1y6m`, `2w`, `36h`, as `--keep-within` takes them: y years, m months, w weeks, d days, h hours. */
export function parseSpan(text: string, option: string): CalendarSpan {
  const span = readSpan(text, KEEP_WITHIN_UNITS);
  if (!span) throw new UsageError(`${option}: ${JSON.stringify(text)} is not a span such as 30d, 2w, 6m or 1y2m (y, m for months, w, d, h)`);
  // Nothing is taken less than no time before the newest snapshot, not even the newest itself: a zero span would
  // keep nothing, where restic reads it as no --keep-within at all.
  if (Object.values(span).every((n) => n === 0)) throw new UsageError(`${option}: ${JSON.stringify(text)} is no span at all: it would keep no snapshot`);
  checkSpan(span, text, option);
  return span;
}

/** A span must lead to a date: one past the calendar's range would compare false with every snapshot time. */
function checkSpan(span: CalendarSpan, text: string, option: string, now = new Date()): Date {
  const date = spanBefore(now, span);
  if (!Object.values(span).every(Number.isSafeInteger) || Number.isNaN(date.getTime())) {
    throw new UsageError(`${option}: ${JSON.stringify(text)} reaches past the calendar (before the year -271821)`);
  }
  return date;
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/;

/**
 * A point in time for -before and -since: a span back from now (`30d`,
 * `6mo`, `90min`), a local date or time (`2026-01-02`, `2026-01-02
 * 15:04[:05]`), or an RFC 3339 time with its zone.
 */
export function parseMoment(text: string, option: string, now = new Date()): Date {
  const span = readSpan(text, MOMENT_UNITS);
  if (span) return checkSpan(span, text, option, now);
  if (/^(?:\d+[a-z]+)+$/.test(text) && /\d+m(?![a-z])/.test(text)) {
    throw new UsageError(`${option}: ${JSON.stringify(text)} is ambiguous: write min for minutes or mo for months`);
  }
  const local = DATE.exec(text);
  if (local) {
    const [year, month, day, hour, minute, second] = local.slice(1).map((part) => Number(part ?? 0));
    const date = new Date(year, month - 1, day, hour, minute, second);
    if (date.getMonth() === month - 1 && date.getDate() === day && hour < 24 && minute < 60 && second < 60) return date;
  } else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) {
    const date = new Date(text);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw new UsageError(
    `${option}: ${JSON.stringify(text)} is neither a date (2026-01-02, 2026-01-02 15:04:05) nor a span back from now (30d, 2w, 6mo, 1y, 12h, 30min)`,
  );
}
