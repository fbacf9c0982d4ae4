/**
 * Backups only add to a store, so two may run into one store at once: both
 * snapshots are complete and the store stays sound.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, tempDir } from '../helpers/cli.js';
import { MiB, describeTree, expectNoStackTrace, klosetWith, startKloset, writeRandomFile } from '../helpers/fixtures.js';

let work: string;
let cache: string;
let kloset: ReturnType<typeof klosetWith>;
let store: string;
const sources: string[] = [];
const backups: CliResult[] = [];

/** Nested files of its own, plus shared.bin, identical in both sources, which both backups race to store. */
async function makeSource(root: string, shared: Buffer): Promise<void> {
  await fs.mkdir(path.join(root, 'nested/deeper'), { recursive: true });
  await writeRandomFile(path.join(root, 'own-1.bin'), 12 * MiB);
  await writeRandomFile(path.join(root, 'nested/own-2.bin'), 7 * MiB);
  await fs.writeFile(path.join(root, 'nested/deeper/notes.txt'), `notes of ${path.basename(root)}\n`);
  await fs.writeFile(path.join(root, 'shared.bin'), shared);
}

beforeAll(async () => {
  work = await tempDir('kloset-concurrent-');
  cache = path.join(work, 'cache');
  kloset = klosetWith({ XDG_CACHE_HOME: cache });
  store = path.join(work, 'store');
  const sharedFile = path.join(work, 'shared.bin');
  await writeRandomFile(sharedFile, 6 * MiB);
  const shared = await fs.readFile(sharedFile);
  for (const name of ['left', 'right']) {
    const source = path.join(work, name);
    await makeSource(source, shared);
    sources.push(source);
  }
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  const runs = sources.map((source) => startKloset(['at', store, 'backup', source], { env: { XDG_CACHE_HOME: cache } }));
  backups.push(...(await Promise.all(runs.map((r) => r.done))));

  // The test means something only if the two backups did overlap.
  const listed = await kloset(['at', store, 'ls', '--json']);
  const spans = (JSON.parse(listed.stdout) as { time: string; duration_ms: number }[]).map((s) => {
    const end = Date.parse(s.time);
    return [end - s.duration_ms, end];
  });
  expect(spans).toHaveLength(2);
  expect(spans[0][0] < spans[1][1] && spans[1][0] < spans[0][1], 'the backups ran one after the other').toBe(true);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('two backups into one store at the same time', () => {
  it('both succeed', () => {
    for (const result of backups) {
      expectNoStackTrace(result);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/created snapshot [0-9a-f]{8} /);
    }
  });

  it('are both listed by ls', async () => {
    const result = await kloset(['at', store, 'ls', '--json']);
    expect(result.code).toBe(0);
    const listed = JSON.parse(result.stdout) as { source: string; short_id: string }[];
    expect(listed.map((s) => s.source).sort()).toEqual([...sources].sort());
    for (const backup of backups) {
      const shortId = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
      expect(listed.map((s) => s.short_id)).toContain(shortId);
    }
  });

  it('both restore byte for byte', async () => {
    for (const [i, backup] of backups.entries()) {
      const shortId = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
      const target = path.join(work, `restored-${i}`);
      const result = await kloset(['at', store, 'restore', '-to', target, shortId]);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(await describeTree(target)).toEqual(await describeTree(sources[i]));
    }
  });

  it('leave a store that passes check', async () => {
    const result = await kloset(['at', store, 'check']);
    expectNoStackTrace(result);
    expect(result.stdout).toMatch(/no problems found/);
    expect(result.code).toBe(0);
  });
});
