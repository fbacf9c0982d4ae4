import { UsageError } from '../errors.js';
import { spanBefore, type CalendarSpan } from '../snapshot/retention.js';

const SPAN = /^(?:\d+[ymwdh])+$/;

/** `1y6m`, `2w`, `36h`: y years, m months (as restic writes them), w weeks, d days, h hours. */
export function parseSpan(text: string, option: string): CalendarSpan {
  if (!SPAN.test(text)) throw new UsageError(`${option}: ${JSON.stringify(text)} is not a span such as 30d, 2w, 6m or 1y2m (y, m for months, w, d, h)`);
  const span: CalendarSpan = { years: 0, months: 0, days: 0, hours: 0 };
  for (const [, count, unit] of text.matchAll(/(\d+)([ymwdh])/g)) {
    const n = Number(count);
    if (unit === 'y') span.years += n;
    else if (unit === 'm') span.months += n;
    else if (unit === 'w') span.days += 7 * n;
    else if (unit === 'd') span.days += n;
    else span.hours += n;
  }
  return span;
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/;

/**
 * A point in time for -before and -since: a span back from now (`30d`), a
 * local date or time (`2026-01-02`, `2026-01-02 15:04[:05]`), or an RFC 3339
 * time with its zone.
 */
export function parseMoment(text: string, option: string, now = new Date()): Date {
  if (SPAN.test(text)) return spanBefore(now, parseSpan(text, option));
  const local = DATE.exec(text);
  if (local) {
    const [year, month, day, hour, minute, second] = local.slice(1).map((part) => Number(part ?? 0));
    const date = new Date(year, month - 1, day, hour, minute, second);
    if (date.getMonth() === month - 1 && date.getDate() === day && hour < 24 && minute < 60 && second < 60) return date;
  } else if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text)) {
    const date = new Date(text);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw new UsageError(`${option}: ${JSON.stringify(text)} is neither a date (2026-01-02, 2026-01-02 15:04:05) nor a span back from now (30d, 2w, 1y)`);
}
