/**
 * rm forgets snapshots by id, by selection (-tag, -before, -since, -latest)
 * or by keep policy (--keep-last, --keep-daily, ...), shows what it would do
 * with --dry-run, and with --prune gives the space back in the same run.
 * The snapshots are back-dated through the library so that a policy over
 * days and months has days and months to judge; TZ is UTC for the CLI.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKloset, tempDir } from '../helpers/cli.js';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { MiB, describeTree, expectOneLineError, klosetWith, storeSize, writeRandomFile } from '../helpers/fixtures.js';

const TIMES = [
  '2026-01-05T09:00:00Z', // 0: tagged release
  '2026-01-20T09:00:00Z', // 1: newest of January
  '2026-02-02T09:00:00Z', // 2
  '2026-02-03T08:00:00Z', // 3
  '2026-02-03T20:00:00Z', // 4: newest of 3 February
  '2026-02-04T10:00:00Z', // 5: newest
];

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
/** Snapshot ids in TIMES order. */
let ids: string[];

async function backdate(times: Map<string, Date>): Promise<void> {
  const { readSnapshotHeader, putSnapshotHeader } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
  const repository = await openBuiltStore(store, { loadIndex: false });
  for (const [id, time] of times) {
    const header = await readSnapshotHeader(repository, Buffer.from(id, 'hex'));
    await putSnapshotHeader(repository, { ...header, time });
  }
}

async function listed(...args: string[]): Promise<string[]> {
  const result = await kloset(['at', store, 'ls', '--json', ...args]);
  expect(result.stderr).toBe('');
  return (JSON.parse(result.stdout) as { id: string }[]).map((s) => s.id);
}

const shortIds = (n: number[]) => n.map((i) => ids[i].slice(0, 8));

beforeAll(async () => {
  work = await tempDir('kloset-forget-');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache'), TZ: 'UTC' });
  const source = path.join(work, 'source');
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'stable.bin'), 1 * MiB);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  for (const [n] of TIMES.entries()) {
    // Each snapshot has a day.bin of its own, kept aside to compare restores with.
    await writeRandomFile(path.join(source, 'day.bin'), 2 * MiB);
    await fs.cp(source, path.join(work, `source-${n}`), { recursive: true, preserveTimestamps: true });
    const args = ['at', store, 'backup', source, ...(n === 0 ? ['-tag', 'release'] : [])];
    expect((await kloset(args)).code).toBe(0);
  }
  ids = await listed();
  expect(ids).toHaveLength(TIMES.length);
  await backdate(new Map(ids.map((id, n) => [id, new Date(TIMES[n])])));
  expect(await listed()).toEqual(ids);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('rm with a keep policy', () => {
  const policy = ['--keep-daily', '2', '-keep-monthly', '2', '--keep-tag', 'release'];

  it('with --dry-run lists what it keeps and why, and what it would remove, and removes nothing', async () => {
    const before = await storeSize(store);
    const result = await kloset(['at', store, 'rm', ...policy, '--dry-run', '--prune']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    const verdicts = lines.slice(0, TIMES.length).map((line) => line.split(/\s{2,}/).slice(0, 3));
    expect(verdicts).toEqual([
      ['keep', '2026-02-04 10:00:00', shortIds([5])[0]],
      ['keep', '2026-02-03 20:00:00', shortIds([4])[0]],
      ['would remove', '2026-02-03 08:00:00', shortIds([3])[0]],
      ['would remove', '2026-02-02 09:00:00', shortIds([2])[0]],
      ['keep', '2026-01-20 09:00:00', shortIds([1])[0]],
      ['keep', '2026-01-05 09:00:00', shortIds([0])[0]],
    ]);
    expect(lines[0]).toMatch(/\(daily, monthly\)$/);
    expect(lines[1]).toMatch(/\(daily\)$/);
    expect(lines[4]).toMatch(/\(monthly\)$/);
    expect(lines[5]).toMatch(/\(tag release\)$/);
    expect(lines[6]).toBe('rm (dry run): would remove 2 snapshots, kept 4 by the policy');
    // The prune's dry run counts the two as gone: their own day.bin chunks would go.
    expect(lines[7]).toMatch(/^prune \(dry run\): 4 snapshots, .* in use; would remove [1-9]/);
    expect(await listed()).toEqual(ids);
    expect(await storeSize(store)).toBe(before);
  });

  it('removes the others, and with --prune gives their space back; what stays restores byte for byte', async () => {
    const before = await storeSize(store);
    const result = await kloset(['at', store, 'forget', ...policy, '--prune']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^rm: removed 2 snapshots, kept 4 by the policy$/m);
    expect(result.stdout).toMatch(/^prune: 4 snapshots, .*; packs now /m);
    expect(await listed()).toEqual([ids[0], ids[1], ids[4], ids[5]]);
    // Two day.bin files of 2 MiB (random, so incompressible) are gone.
    expect(before - (await storeSize(store))).toBeGreaterThan(3.5 * MiB);
    for (const n of [0, 1, 4, 5]) {
      const target = path.join(work, `restored-${n}`);
      const restored = await kloset(['at', store, 'restore', '-to', target, ids[n]]);
      expect(restored.code).toBe(0);
      // The files, not the top directory, whose copy's mtime moved as the copy filled it.
      const files = async (root: string) => Object.fromEntries(Object.entries(await describeTree(root)).filter(([rel]) => rel !== '.'));
      expect(await files(target)).toEqual(await files(path.join(work, `source-${n}`)));
    }
    const checked = await kloset(['at', store, 'check']);
    expect(checked.stdout).toMatch(/no problems found/);
  });

  it('applies the policy only to the snapshots the selection flags name', async () => {
    const result = await kloset(['at', store, 'rm', '-since', '2026-02-01', '--keep-last', '1']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^rm: removed 1 snapshot, kept 1 by the policy$/m);
    expect(await listed()).toEqual([ids[0], ids[1], ids[5]]);
  });
});

describe('rm and ls with selection flags', () => {
  it('ls -before, -since and -latest select by time; -before is strict and -since inclusive', async () => {
    expect(await listed('-before', '2026-01-20 09:00')).toEqual([ids[0]]);
    expect(await listed('-since', '2026-01-20T09:00:00Z')).toEqual([ids[1], ids[5]]);
    expect(await listed('-before', '2026-02-01', '-latest')).toEqual([ids[1]]);
    // A span counts back from now: every test snapshot is older than a day.
    expect(await listed('-since', '1d')).toEqual([]);
    expect(await listed('-before', '1d')).toEqual([ids[0], ids[1], ids[5]]);
  });

  it('rm -tag forgets the tagged snapshots, rm -latest the newest one', async () => {
    const tagged = await kloset(['at', store, 'rm', '-tag', 'release']);
    expect(tagged.code).toBe(0);
    expect(tagged.stdout).toMatch(new RegExp(`^removed {7}2026-01-05 09:00:00  ${ids[0].slice(0, 8)} `, 'm'));
    expect(await listed()).toEqual([ids[1], ids[5]]);
    const latest = await kloset(['at', store, 'rm', '-latest']);
    expect(latest.code).toBe(0);
    expect(await listed()).toEqual([ids[1]]);
  });

  it('a selection that matches nothing removes nothing and says so', async () => {
    const result = await kloset(['at', store, 'rm', '-before', '2000-01-01']);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe('rm: removed 0 snapshots (no snapshot matches)');
    expect(await listed()).toEqual([ids[1]]);
  });
});

describe('rm refuses what it cannot read, in one line, and removes nothing', () => {
  it.each([
    [[], /rm needs snapshot ids, a selection/],
    [['deadbeef', '-tag', 'x'], /not both/],
    [['-before', '2026-02-30'], /-before: "2026-02-30" is neither a date/],
    [['-since', 'yesterday'], /-since: "yesterday" is neither a date/],
    [['--keep-daily', '0'], /--keep-daily <n>.* '0' is invalid/],
    [['--keep-weekly', 'two'], /--keep-weekly <n>.* 'two' is invalid/],
    [['--keep-within', '1q'], /--keep-within: "1q" is not a span/],
    // A zero span kept nothing, not even the newest snapshot: restic reads it as no policy.
    [['--keep-within', '0d'], /--keep-within: "0d" is no span at all/],
    [['--keep-within', '0y0m0h'], /--keep-within: "0y0m0h" is no span at all/],
    // Past the calendar, a span gave an invalid date that no snapshot was "within": everything went.
    [['--keep-within', '300000y'], /--keep-within: "300000y" reaches past the calendar/],
    [['--keep-within', '999999999999999999999999d'], /--keep-within: "999999999999999999999999d" reaches past the calendar/],
    [['-before', '99999999999y'], /-before: "99999999999y" reaches past the calendar/],
    // Dropped without a word, an empty set lost a keep rule, or a selection (restic: the snapshots without tags).
    [['--keep-last', '1', '--keep-tag', ''], /--keep-tag "" names no tag/],
    [['--keep-last', '1', '--keep-tag', 'release', '--keep-tag', ','], /--keep-tag "," names no tag/],
    [['--keep-last', '1', '-tag', ''], /-tag "" names no tag/],
    [['--keep-last', '1', '--group-by', 'host,colour'], /--group-by: unknown field "colour"/],
  ])('rm %j', async (args, message) => {
    const result = await kloset(['at', store, 'rm', ...args]);
    expectOneLineError(result, message);
    expect(result.code).toBe(2);
    expect(await listed()).toEqual([ids[1]]);
  });
});

describe('rm beside a backup', () => {
  it('is refused in one line while a backup holds the store, and the snapshot stays listed', async () => {
    const before = await listed();
    const gate = path.join(work, 'gate');
    execFileSync('mkfifo', [gate]);
    // The backup streams what cat reads from the FIFO: it holds its lock until the test closes its end.
    const { done } = startKloset(['at', store, 'backup', '-stdin-from-command', '-stdin-filename', 'gate.txt', '--', 'cat', gate], {
      env: { XDG_CACHE_HOME: path.join(work, 'cache'), TZ: 'UTC' },
    });
    // Opened once cat has the FIFO open: the backup took its lock before it started cat.
    const writer = await Promise.race([
      fs.open(gate, 'w'),
      done.then((result) => Promise.reject(new Error(`the backup ended before reading: ${result.stderr}`))),
    ]);
    try {
      await writer.write('written while rm is refused\n');
      const refused = await kloset(['at', store, 'rm', before[0].slice(0, 8)]);
      expectOneLineError(refused, /^kloset: store is in use by a backup \(pid \d+ on .* since .*\): try again once it has ended$/);
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(await listed()).toEqual(before);
    } finally {
      await writer.close();
    }
    const backup = await done;
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const after = await listed();
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after).toHaveLength(before.length + 1);
    expect((await kloset(['at', store, 'cat', 'latest:/gate.txt'])).stdout).toBe('written while rm is refused\n');
  });
});
