/**
 * A backup stopped half way, by Ctrl-C or by kill -9, leaves a store that
 * lists no snapshot, passes check, and lets the next backup reuse what was
 * already uploaded.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBuiltStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import {
  MiB,
  addedToStore,
  expectNoStackTrace,
  klosetWith,
  packFiles,
  startKloset,
  writeRandomFile,
} from '../helpers/fixtures.js';

const FILES = 12;
const FILE_SIZE = 24 * MiB;
const DATASET = FILES * FILE_SIZE; // 288 MiB

let work: string;
let dataset: string;
let cache: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-interrupt-');
  cache = path.join(work, 'cache');
  kloset = klosetWith({ XDG_CACHE_HOME: cache });
  dataset = path.join(work, 'dataset');
  await fs.mkdir(dataset);
  for (let i = 0; i < FILES; i++) await writeRandomFile(path.join(dataset, `part-${String(i).padStart(2, '0')}.bin`), FILE_SIZE);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/**
 * Starts a backup, waits until it has run a second and uploaded at least one
 * pack (stored, and named by an index delta), then sends `signal`.
 */
async function interruptedBackup(store: string, signal: NodeJS.Signals) {
  const started = Date.now();
  const { child, done } = startKloset(['at', store, 'backup', dataset], { env: { XDG_CACHE_HOME: cache } });
  let exited = false;
  void done.then(() => (exited = true));
  while (!exited && (Date.now() - started < 1000 || (await indexedPackBytes(store)) === 0)) await sleep(20);
  expect(exited, 'the backup finished before it could be interrupted').toBe(false);
  expect(child.kill(signal)).toBe(true);
  return done;
}

/**
 * Bytes of the packs named by an index delta: what a later backup can find
 * and reuse. A pack whose delta was not written yet when the process died is
 * not indexed, so not reused (garbage for a later prune).
 */
async function indexedPackBytes(store: string): Promise<number> {
  if ((await fs.readdir(path.join(store, 'index')).catch(() => [])).length === 0) return 0;
  const savedCache = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = path.join(work, 'inspecting-cache');
  try {
    const repository = await openBuiltStore(store);
    const indexed = new Set([...repository.index].map(([, location]) => location.packId.toString('hex')));
    return (await packFiles(store)).filter((p) => indexed.has(p.id)).reduce((sum, p) => sum + p.size, 0);
  } finally {
    process.env.XDG_CACHE_HOME = savedCache;
  }
}

async function snapshotCount(store: string): Promise<number> {
  const result = await kloset(['at', store, 'ls', '--json']);
  expect(result.code).toBe(0);
  return (JSON.parse(result.stdout) as unknown[]).length;
}

describe('a backup interrupted with Ctrl-C (SIGINT)', () => {
  let store: string;

  beforeAll(async () => {
    store = path.join(work, 'sigint-store');
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
  });

  it('exits with 130 and says no snapshot was created', async () => {
    const result = await interruptedBackup(store, 'SIGINT');
    expect(result.code).toBe(130);
    expectNoStackTrace(result);
    expect(result.stderr).toMatch(/^kloset: .*interrupted/m);
    expect(result.stdout).not.toMatch(/created snapshot/);
  }, 60_000);

  it('leaves no snapshot in the store', async () => {
    expect(await snapshotCount(store)).toBe(0);
  });

  it('leaves a store that passes check', async () => {
    const result = await kloset(['at', store, 'check']);
    expectNoStackTrace(result);
    expect(result.code).toBe(0);
  }, 60_000);
});

describe('a backup killed with kill -9 (SIGKILL)', () => {
  let store: string;

  beforeAll(async () => {
    store = path.join(work, 'sigkill-store');
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
  });

  it('leaves no snapshot in the store', async () => {
    const result = await interruptedBackup(store, 'SIGKILL');
    expect(result.signal).toBe('SIGKILL');
    expect(await snapshotCount(store)).toBe(0);
  }, 60_000);

  it('leaves a store that passes check', async () => {
    const result = await kloset(['at', store, 'check']);
    expectNoStackTrace(result);
    expect(result.code).toBe(0);
  }, 60_000);

  it('is followed by a full backup that reuses the packs already uploaded', async () => {
    const reusable = await indexedPackBytes(store);
    expect(reusable).toBeGreaterThan(0);
    const result = await kloset(['at', store, 'backup', dataset]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // The summary rounds to 1 MiB at this size; the slack covers that and the new trees.
    expect(addedToStore(result.stdout)).toBeLessThanOrEqual(DATASET - reusable + MiB);
    expect(await snapshotCount(store)).toBe(1);
  }, 60_000);

  it('then has a complete snapshot that passes check', async () => {
    const result = await kloset(['at', store, 'check']);
    expectNoStackTrace(result);
    expect(result.code).toBe(0);
  }, 60_000);
});

/**
 * Backs `source` up into a store of its own, restores it, and sends SIGINT
 * as soon as the first restored files appear in `firstFilesIn` (relative to
 * the target), when some are bound to be half done.
 */
async function interruptedRestore(source: string, name: string, firstFilesIn = '.') {
  const store = path.join(work, `${name}-store`);
  const target = path.join(work, `${name}-target`);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  const { child, done } = startKloset(['at', store, 'restore', '-to', target], { env: { XDG_CACHE_HOME: cache } });
  let exited = false;
  void done.then(() => (exited = true));
  while (!exited && (await fs.readdir(path.join(target, firstFilesIn)).catch(() => [])).length === 0) await sleep(5);
  expect(exited, 'the restore finished before it could be interrupted').toBe(false);
  child.kill('SIGINT');
  return { target, result: await done };
}

/** The regular files a restore left, relative to its target. */
async function restoredFiles(target: string): Promise<string[]> {
  const files = (await fs.readdir(target, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
  return files.map((file) => path.relative(target, path.join(file.parentPath, file.name)));
}

describe('a restore interrupted with Ctrl-C (SIGINT)', () => {
  let target: string;
  let result: Awaited<ReturnType<typeof kloset>>;

  beforeAll(async () => {
    ({ target, result } = await interruptedRestore(dataset, 'restore'));
  }, 120_000);

  it('exits with 130 and says how far it got, in one line', () => {
    expect(result.code).toBe(130);
    expectNoStackTrace(result);
    expect(result.stderr).toMatch(/^kloset: restore interrupted: \d+ files? restored to [^\n]*\n$/);
  });

  it('leaves no file half written: every file there is whole', async () => {
    for (const rel of await restoredFiles(target)) {
      const bytes = await fs.readFile(path.join(target, rel));
      expect(bytes.equals(await fs.readFile(path.join(dataset, rel))), rel).toBe(true);
    }
  }, 60_000);
});

describe('a restore of many small files interrupted with Ctrl-C (SIGINT)', () => {
  let source: string;
  let target: string;
  let result: Awaited<ReturnType<typeof kloset>>;

  beforeAll(async () => {
    source = path.join(work, 'small-files');
    for (let d = 0; d < 40; d++) {
      const dir = path.join(source, `d${d}`);
      await fs.mkdir(dir, { recursive: true });
      await Promise.all(
        Array.from({ length: 500 }, (_, f) => fs.writeFile(path.join(dir, `f${f}`), randomBytes(1024 + ((d * 500 + f) % 3072)), { mode: 0o640 })),
      );
    }
    ({ target, result } = await interruptedRestore(source, 'small-files', 'd0'));
  }, 120_000);

  it('exits with 130', () => {
    expect(result.code).toBe(130);
    expectNoStackTrace(result);
  });

  it('leaves every file there whole, with its mode and time: none was cut short between its creation and its metadata', async () => {
    const restored = await restoredFiles(target);
    expect(restored.length).toBeGreaterThan(0);
    expect(restored.length).toBeLessThan(20_000);
    for (const rel of restored) {
      const [got, want] = await Promise.all([fs.stat(path.join(target, rel)), fs.stat(path.join(source, rel))]);
      // Restored times are exact to the microsecond; one never set would be the time of the restore.
      expect({ rel, mode: got.mode, sameTime: Math.abs(got.mtimeMs - want.mtimeMs) < 0.01 }).toEqual({ rel, mode: want.mode, sameTime: true });
      expect((await fs.readFile(path.join(target, rel))).equals(await fs.readFile(path.join(source, rel))), rel).toBe(true);
    }
  }, 60_000);
});
