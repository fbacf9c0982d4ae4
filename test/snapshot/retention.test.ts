/**
 * Keep policies decide, per group, which snapshots stay; the calendar
 * periods are local time, weeks are ISO weeks. Dates below are built with
 * the local-time constructor, so the expectations hold in any time zone.
 */
import { describe, expect, it } from 'vitest';
import { parseMoment, parseSpan } from '../../src/cli/timespec.js';
import type { SnapshotHeader } from '../../src/snapshot/header.js';
import { applyRetention, spanBefore, type RetentionPolicy } from '../../src/snapshot/retention.js';

let serial = 0;

function snapshot(time: Date, fields: Partial<Pick<SnapshotHeader, 'host' | 'source' | 'tags'>> = {}): SnapshotHeader {
  const id = Buffer.alloc(32);
  id.writeUInt32BE(++serial);
  return {
    id,
    time,
    host: fields.host ?? 'host-a',
    user: 'root',
    importer: 'fs',
    origin: 'host-a',
    source: fields.source ?? '/data',
    tags: fields.tags ?? [],
    root: { name: '', kind: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: { sec: 0, nsec: 0 }, size: 0 } as SnapshotHeader['root'],
    stats: { files: 0, directories: 0, symlinks: 0, size: 0, storedBytes: 0, chunks: 0, newChunks: 0, errors: 0, durationMs: 0 },
  };
}

const at = (y: number, m: number, d: number, h = 12, min = 0) => new Date(y, m - 1, d, h, min);

/** "YYYY-MM-DD HH:MM" of each kept snapshot, newest first, with its reasons. */
function kept(headers: SnapshotHeader[], policy: RetentionPolicy, groupBy: ('host' | 'source' | 'tags')[] = ['host', 'source']): string[] {
  return applyRetention(headers, policy, groupBy)
    .filter((d) => d.keep)
    .map((d) => {
      const t = d.header.time;
      const stamp = `${t.getFullYear()}-${String(t.getMonth() + 1).padStart(2, '0')}-${String(t.getDate()).padStart(2, '0')} ${String(t.getHours()).padStart(2, '0')}:${String(t.getMinutes()).padStart(2, '0')}`;
      return `${stamp} ${d.reasons.join(',')}`;
    });
}

describe('keep policies', () => {
  it('--keep-last keeps the n newest, whatever order they come in', () => {
    const headers = [3, 1, 5, 2, 4].map((d) => snapshot(at(2026, 5, d)));
    expect(kept(headers, { last: 2 })).toEqual(['2026-05-05 12:00 last', '2026-05-04 12:00 last']);
  });

  it('--keep-daily keeps the newest of each of the n latest days that have a snapshot, skipping empty days', () => {
    const headers = [
      snapshot(at(2026, 5, 1, 9)),
      snapshot(at(2026, 5, 1, 18)),
      snapshot(at(2026, 5, 4, 8)),
      snapshot(at(2026, 5, 4, 23, 59)),
      snapshot(at(2026, 5, 7, 0, 0)),
      snapshot(at(2026, 5, 7, 6)),
    ];
    expect(kept(headers, { daily: 3 })).toEqual(['2026-05-07 06:00 daily', '2026-05-04 23:59 daily', '2026-05-01 18:00 daily']);
    expect(kept(headers, { daily: 2 })).toEqual(['2026-05-07 06:00 daily', '2026-05-04 23:59 daily']);
  });

  it('--keep-hourly tells hours apart within a day', () => {
    const headers = [snapshot(at(2026, 5, 1, 8, 10)), snapshot(at(2026, 5, 1, 9, 10)), snapshot(at(2026, 5, 1, 9, 50)), snapshot(at(2026, 5, 1, 10, 5))];
    expect(kept(headers, { hourly: 2 })).toEqual(['2026-05-01 10:05 hourly', '2026-05-01 09:50 hourly']);
  });

  it('keeps the oldest snapshot too while a rule has periods left, as restic does, so the history reaches back', () => {
    const headers = [snapshot(at(2026, 5, 1, 9, 10)), snapshot(at(2026, 5, 1, 9, 50)), snapshot(at(2026, 5, 1, 10, 5))];
    expect(kept(headers, { hourly: 5 })).toEqual(['2026-05-01 10:05 hourly', '2026-05-01 09:50 hourly', '2026-05-01 09:10 hourly']);
    expect(kept(headers, { hourly: 2 })).toEqual(['2026-05-01 10:05 hourly', '2026-05-01 09:50 hourly']);
  });

  it('takes a count of Infinity (-1 on the command line) as no limit', () => {
    const headers = Array.from({ length: 30 }, (_, i) => snapshot(at(2026, 4, 1 + i, 12)));
    headers.push(snapshot(at(2026, 4, 30, 18)));
    expect(kept(headers, { daily: Number.POSITIVE_INFINITY })).toHaveLength(30);
  });

  it('--keep-weekly counts ISO weeks, which run Monday to Sunday across the new year', () => {
    const headers = [
      snapshot(at(2026, 12, 27)), // Sunday of 2026-W52
      snapshot(at(2026, 12, 28)), // Monday of 2026-W53
      snapshot(at(2027, 1, 3)), // Sunday of 2026-W53
      snapshot(at(2027, 1, 4)), // Monday of 2027-W01
    ];
    expect(kept(headers, { weekly: 3 })).toEqual(['2027-01-04 12:00 weekly', '2027-01-03 12:00 weekly', '2026-12-27 12:00 weekly']);
  });

  it('rules add up, and one snapshot can be kept for several reasons', () => {
    const headers = [snapshot(at(2025, 12, 31)), snapshot(at(2026, 1, 31)), snapshot(at(2026, 2, 27)), snapshot(at(2026, 2, 28))];
    expect(kept(headers, { last: 1, monthly: 2, yearly: 2 })).toEqual([
      '2026-02-28 12:00 last,monthly,yearly',
      '2026-01-31 12:00 monthly',
      '2025-12-31 12:00 yearly',
    ]);
  });

  it('--keep-within keeps what is less than the span older than the newest snapshot, not than now', () => {
    const headers = [snapshot(at(2020, 3, 1)), snapshot(at(2020, 3, 8)), snapshot(at(2020, 3, 9)), snapshot(at(2020, 3, 10))];
    // 8 March at noon is exactly two days before the newest: out, as in restic.
    expect(kept(headers, { within: parseSpan('2d', '--keep-within') })).toEqual(['2020-03-10 12:00 within', '2020-03-09 12:00 within']);
  });

  it('--keep-within does not let a snapshot dated in the future move the window', () => {
    const future = new Date(Date.now() + 400 * 86_400_000);
    const headers = [snapshot(at(2020, 3, 8)), snapshot(at(2020, 3, 9)), snapshot(at(2020, 3, 10)), snapshot(future)];
    const decisions = applyRetention(headers, { within: parseSpan('2d', '--keep-within') }, []);
    expect(decisions.filter((d) => d.keep).map((d) => d.header.time)).toEqual([future, at(2020, 3, 10), at(2020, 3, 9)]);
    // Only future snapshots: no window can be placed, so none is removed.
    const onlyFuture = [snapshot(future), snapshot(new Date(future.getTime() - 30 * 86_400_000))];
    expect(applyRetention(onlyFuture, { within: parseSpan('2d', '--keep-within') }, []).every((d) => d.keep)).toBe(true);
    // A span past the calendar's range keeps everything, whatever reached the policy.
    expect(applyRetention(headers, { within: { years: 300_000, months: 0, days: 0, seconds: 0 } }, []).every((d) => d.keep)).toBe(true);
  });

  it('--keep-tag keeps a snapshot with all the tags of one set: a,b is both, two options are either', () => {
    const headers = [
      snapshot(at(2026, 1, 1), { tags: ['release'] }),
      snapshot(at(2026, 1, 2), { tags: ['a'] }),
      snapshot(at(2026, 1, 3), { tags: ['a', 'b'] }),
      snapshot(at(2026, 1, 4)),
      snapshot(at(2026, 1, 5)),
    ];
    expect(kept(headers, { last: 1, tags: [['release'], ['a', 'b']] })).toEqual([
      '2026-01-05 12:00 last',
      '2026-01-03 12:00 tag a,b',
      '2026-01-01 12:00 tag release',
    ]);
  });

  it('judges each host and source apart by default, and everything as one group with no fields', () => {
    const headers = [
      snapshot(at(2026, 1, 1), { source: '/etc' }),
      snapshot(at(2026, 1, 2), { source: '/home' }),
      snapshot(at(2026, 1, 3), { source: '/etc' }),
      snapshot(at(2026, 1, 4), { source: '/home', host: 'host-b' }),
    ];
    expect(kept(headers, { last: 1 })).toEqual(['2026-01-04 12:00 last', '2026-01-03 12:00 last', '2026-01-02 12:00 last']);
    expect(kept(headers, { last: 1 }, [])).toEqual(['2026-01-04 12:00 last']);
    expect(kept(headers, { last: 1 }, ['source'])).toEqual(['2026-01-04 12:00 last', '2026-01-03 12:00 last']);
  });

  it('returns every snapshot it was given exactly once', () => {
    const headers = Array.from({ length: 40 }, (_, i) => snapshot(at(2026, 1, 1 + (i % 20), i % 24), { source: i % 2 ? '/a' : '/b' }));
    const decisions = applyRetention(headers, { daily: 3, weekly: 2 }, ['source']);
    expect(decisions).toHaveLength(40);
    expect(new Set(decisions.map((d) => d.header))).toEqual(new Set(headers));
    expect(decisions.filter((d) => d.keep).length).toBeGreaterThan(0);
    expect(decisions.filter((d) => !d.keep).every((d) => d.reasons.length === 0)).toBe(true);
  });
});

describe('time specifications', () => {
  const now = at(2026, 3, 31, 15, 30);

  it('spans count days, months and years back on the calendar, and hours in real time', () => {
    expect(parseSpan('1y2m3w4d5h', 'x')).toEqual({ years: 1, months: 2, days: 25, seconds: 5 * 3600 });
    expect(spanBefore(now, parseSpan('1d', 'x'))).toEqual(at(2026, 3, 30, 15, 30));
    expect(spanBefore(now, parseSpan('2w', 'x'))).toEqual(at(2026, 3, 17, 15, 30));
    // As Go's AddDate: 31 February normalizes to 3 March.
    expect(spanBefore(now, parseSpan('1m', 'x'))).toEqual(at(2026, 3, 3, 15, 30));
    expect(spanBefore(now, parseSpan('1y', 'x'))).toEqual(at(2025, 3, 31, 15, 30));
    expect(spanBefore(now, parseSpan('36h', 'x')).getTime()).toBe(now.getTime() - 36 * 3600_000);
    // The calendar first, then the hours: a month back from 1 April 00:30 is 1 March, and an hour more is 28 February.
    expect(spanBefore(at(2026, 4, 1, 0, 30), parseSpan('1m1h', 'x'))).toEqual(at(2026, 2, 28, 23, 30));
  });

  it('a --keep-within span of no time is refused: it would keep no snapshot at all', () => {
    for (const text of ['0d', '0h', '0y0m0w0d0h']) expect(() => parseSpan(text, '--keep-within')).toThrow(/is no span at all/);
  });

  it('-before and -since take a span back from now, a local date or time, or RFC 3339', () => {
    expect(parseMoment('30d', '-before', now)).toEqual(at(2026, 3, 1, 15, 30));
    expect(parseMoment('2mo', '-before', now)).toEqual(at(2026, 1, 31, 15, 30));
    expect(parseMoment('90min', '-since', now).getTime()).toBe(now.getTime() - 90 * 60_000);
    expect(parseMoment('1h30min', '-since', now).getTime()).toBe(now.getTime() - 90 * 60_000);
    expect(parseMoment('45s', '-since', now).getTime()).toBe(now.getTime() - 45_000);
    expect(parseMoment('2026-01-02', '-before', now)).toEqual(at(2026, 1, 2, 0, 0));
    expect(parseMoment('2026-01-02 15:04', '-before', now)).toEqual(at(2026, 1, 2, 15, 4));
    expect(parseMoment('2026-01-02 15:04:05', '-before', now)).toEqual(new Date(2026, 0, 2, 15, 4, 5));
    expect(parseMoment('2026-01-02T15:04:05Z', '-before', now)).toEqual(new Date(Date.UTC(2026, 0, 2, 15, 4, 5)));
    expect(parseMoment('2026-01-02T15:04:05+02:00', '-before', now)).toEqual(new Date(Date.UTC(2026, 0, 2, 13, 4, 5)));
  });

  it('refuses what it cannot read, with the option named', () => {
    for (const bad of ['2026-02-30', '2026-13-01', '2026-01-02 25:00', 'yesterday', '30', '5x', '']) {
      expect(() => parseMoment(bad, '-before', now)).toThrow(/^-before: .* is neither a date/);
    }
    expect(() => parseSpan('1q', '--keep-within')).toThrow(/^--keep-within: "1q" is not a span/);
  });

  it('refuses a bare m in -before and -since, which Plakar reads as minutes and restic as months', () => {
    for (const text of ['30m', '1h30m', '2m3d']) {
      expect(() => parseMoment(text, '-since', now)).toThrow(/^-since: ".*" is ambiguous: write min for minutes or mo for months$/);
    }
  });
});
