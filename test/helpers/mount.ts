/**
 * Real FUSE mounts for the tests: the CLI's `mount` command in a child
 * process, started and stopped as a user would (SIGTERM), with a safety net
 * that leaves nothing mounted behind even when a test fails half-way.
 */
import { execFile, type SpawnOptions } from 'node:child_process';
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { afterAll } from 'vitest';
import type { Importer } from '../../src/snapshot/importer.js';
import { loadBuilt, openLocalStore } from './built.js';
import { startKloset, type CliResult } from './cli.js';

const run = promisify(execFile);

/** How long a mount may take to print its "mounted" line on a slow CI machine. */
const MOUNT_TIMEOUT_MS = 20_000;
/** How long a mount may take to unmount and exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 15_000;

export interface MountedCli {
  /** The mount point, absolute. */
  dir: string;
  /** Process id of the mounting CLI. */
  pid: number;
  /** performance.now() when the process was spawned, and when it printed its "mounted" line. */
  spawnedAt: number;
  printedAt: number;
  /** What the process has written so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited, by itself or after stop(). */
  done: Promise<CliResult>;
  /** SIGTERM (or `signal`), then waits for the process to exit; kills it if it does not. */
  stop(signal?: NodeJS.Signals): Promise<CliResult>;
}

interface Tracked {
  dir: string;
  pid?: number;
  exited: () => boolean;
  done?: Promise<unknown>;
}

/** Every mount point and mounting process a test started, for the safety net. */
const tracked = new Set<Tracked>();

/** Undoes the octal escapes (\040 for a space) that /proc/self/mountinfo uses in paths. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points and file system types, as the kernel lists them for this process. */
export async function mountTable(): Promise<{ mountpoint: string; fstype: string; options: string }[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      // id parent major:minor root mountpoint options [optional...] - fstype source super-options
      const fields = line.split(' ');
      const dash = fields.indexOf('-');
      return { mountpoint: unescapeMountinfo(fields[4]), fstype: fields[dash + 1], options: fields[5] };
    });
}

/** True when `dir` is a mount point (of any file system) right now. */
export async function isMountPoint(dir: string): Promise<boolean> {
  const wanted = path.resolve(dir);
  return (await mountTable()).some((m) => m.mountpoint === wanted);
}

/** The FUSE type of the mount at `dir` ('fuse.kloset'), or undefined. */
export async function mountType(dir: string): Promise<string | undefined> {
  const wanted = path.resolve(dir);
  return (await mountTable()).reverse().find((m) => m.mountpoint === wanted)?.fstype;
}

/** `fusermount -uz`: detaches whatever is mounted at `dir`, even a mount whose process is gone. */
export async function lazyUnmount(dir: string): Promise<void> {
  await run('fusermount', ['-uz', dir]).catch(() => undefined);
}

/**
 * True once process `pid` has exited. A zombie counts as gone: a detached
 * mount process is re-parented, and its new parent may be slow to reap it.
 */
export function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * Where process `pid` and its children wait, from /proc: each thread's name,
 * state and kernel wait channel, so a mount that does not stop says whether
 * it is blocked in the kernel, in fusermount, or never saw the signal.
 */
function whereStuck(pid: number, mountpoint: string): string {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  const describe = (p: string): string[] => {
    let tids: string[] = [];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      return [`${p}: gone`];
    }
    const lines = [`${p}: ${read(`/proc/${p}/cmdline`).replace(/\0/g, ' ')}`];
    for (const tid of tids) {
      const stat = read(`/proc/${p}/task/${tid}/stat`);
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      lines.push(`  ${tid} ${read(`/proc/${p}/task/${tid}/comm`)} ${state} ${read(`/proc/${p}/task/${tid}/wchan`)}`);
    }
    const children = tids.flatMap((tid) => read(`/proc/${p}/task/${tid}/children`).split(' ').filter((c) => /^\d+$/.test(c)));
    return [...lines, ...children.flatMap(describe)];
  };
  const mounted = read('/proc/self/mountinfo').split('\n').some((line) => unescapeMountinfo(line.split(' ')[4] ?? '') === mountpoint);
  return [`${mountpoint} ${mounted ? 'still mounted' : 'not mounted'}`, ...describe(String(pid))].join('\n');
}

/** Remembers a mount point (and the process serving it) for the safety net, e.g. one made with --background. */
export function trackMount(dir: string, pid?: number): void {
  tracked.add({ dir: path.resolve(dir), pid, exited: () => pid === undefined || processGone(pid) });
}

function waitFor<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * `kloset at <store> mount <dir> [args]` in the foreground, returned once it
 * has printed its "mounted … at <dir>" line. Rejects with the process's
 * output if it exits first or takes longer than MOUNT_TIMEOUT_MS.
 */
export async function mountCli(
  store: string,
  dir: string,
  args: string[] = [],
  options: SpawnOptions & { input?: string } = {},
): Promise<MountedCli> {
  dir = path.resolve(dir);
  const spawnedAt = performance.now();
  const { child, done } = startKloset(['at', store, 'mount', dir, ...args], options);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  let exited = false;
  const settled = done.finally(() => (exited = true));
  settled.catch(() => undefined);
  const entry: Tracked = { dir, pid: child.pid, exited: () => exited, done: settled };
  tracked.add(entry);

  const printed = new Promise<number>((resolve, reject) => {
    const onData = () => {
      if (/^mounted .* at /m.test(stdout)) {
        child.stdout!.off('data', onData);
        resolve(performance.now());
      }
    };
    child.stdout!.on('data', onData);
    done.then(
      (result) => reject(new Error(`mount exited (code ${result.code}, signal ${result.signal}) before mounting:\n${result.stderr}${result.stdout}`)),
      reject,
    );
  });
  const printedAt = await waitFor(printed, MOUNT_TIMEOUT_MS);
  if (printedAt === 'timeout') {
    child.kill('SIGKILL');
    await done;
    await lazyUnmount(dir);
    throw new Error(`mount did not print "mounted" within ${MOUNT_TIMEOUT_MS} ms:\n${stderr}${stdout}`);
  }

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<CliResult> => {
    if (!exited) child.kill(signal);
    const result = await waitFor(done, STOP_TIMEOUT_MS);
    if (result === 'timeout') {
      const where = whereStuck(child.pid!, dir);
      child.kill('SIGKILL');
      await done;
      await lazyUnmount(dir);
      throw new Error(`mount did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}:\n${stderr}${stdout}\n${where}`);
    }
    return result;
  };

  return {
    dir,
    pid: child.pid!,
    spawnedAt,
    printedAt,
    stdout: () => stdout,
    stderr: () => stderr,
    done,
    stop,
  };
}

/**
 * Stops every mounting process a test started (SIGTERM, then SIGKILL) and
 * lazily unmounts whatever is still mounted. Call it before removing the
 * directories the mounts live in; it also runs by itself after each file.
 */
export async function unmountAll(): Promise<void> {
  for (const entry of [...tracked]) {
    if (entry.pid !== undefined && !entry.exited()) {
      try {
        process.kill(entry.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      const deadline = Date.now() + 5_000;
      while (!entry.exited() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (!entry.exited()) {
        try {
          process.kill(entry.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      if (entry.done) await waitFor(entry.done, 5_000);
    }
    while (await isMountPoint(entry.dir)) {
      await lazyUnmount(entry.dir);
      if (await isMountPoint(entry.dir)) {
        // fusermount could not detach it: leave it for a person rather than loop forever
        console.warn(`test/helpers/mount: ${entry.dir} is still mounted`);
        break;
      }
    }
    tracked.delete(entry);
  }
}

// The safety net: whatever a test file leaves mounted is gone when the file ends.
afterAll(unmountAll);

/** The library as built into dist/, typed as its sources (see loadBuilt). */
export async function builtLibrary() {
  const load = loadBuilt;
  return {
    ...((await load('kloset/repository.js')) as typeof import('../../src/kloset/repository.js')),
    ...((await load('snapshot/builder.js')) as typeof import('../../src/snapshot/builder.js')),
    ...((await load('snapshot/header.js')) as typeof import('../../src/snapshot/header.js')),
    ...((await load('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js')),
    ...((await load('snapshot/tree.js')) as typeof import('../../src/snapshot/tree.js')),
    ...((await load('connectors/fs/importer.js')) as typeof import('../../src/connectors/fs/importer.js')),
  };
}

/**
 * A new store at `store` holding one snapshot of `source` (a directory, or any
 * Importer), made through the library in this process: no CLI start-up, and
 * the same store format the CLI writes. Returns the snapshot's short id.
 */
export async function storeWithSnapshot(
  store: string,
  source: string | Importer,
  options: { passphrase?: string | null; tags?: string[] } = {},
): Promise<string> {
  const lib = await builtLibrary();
  const repository = await lib.Repository.create(await openLocalStore(store), { passphrase: options.passphrase ?? null });
  const importer = typeof source === 'string' ? new lib.FsImporter(source) : source;
  try {
    const header = await lib.backup(repository, importer, { tags: options.tags });
    return header.id.toString('hex').slice(0, 8);
  } finally {
    await importer.close();
  }
}

/** A snapshot of `source` in a plaintext store under `work`, mounted by the CLI at `work`/mnt. */
export async function mountSnapshotOf(work: string, source: string): Promise<{ mnt: string; mount: MountedCli }> {
  const store = path.join(work, 'store');
  const id = await storeWithSnapshot(store, source);
  const mnt = path.join(work, 'mnt');
  await fs.mkdir(mnt);
  return { mnt, mount: await mountCli(store, mnt, [id]) };
}

/** Stops what mountSnapshotOf started, and removes `work`. */
export async function endMountOf(mount: MountedCli | undefined, work: string | undefined): Promise<void> {
  await mount?.stop();
  await unmountAll();
  if (work) await fs.rm(work, { recursive: true, force: true });
}
