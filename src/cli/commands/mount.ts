import { spawn } from 'node:child_process';
import { closeSync, createWriteStream, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { setTimeout as delay } from 'node:timers/promises';
import { Option, type Command } from 'commander';
import { childEnvironment } from '../../childenv.js';
import { ExitCode, KlosetError, UsageError, systemReason } from '../../errors.js';
import { exactForm } from '../../snapshot/names.js';
import { requireCurrentDirectoryFor } from '../../threads.js';
import { listSnapshots } from '../../snapshot/header.js';
import type { MountTarget } from '../../mount/mount.js';
import type { CliContext, Run } from '../context.js';
import { formatBytes, plural } from '../format.js';
import { collect, filterFrom, parseSize, withFilterOptions, type FilterFlags } from '../options.js';
import { filterSnapshots, findSnapshot, parseSnapshotRef } from '../snapshotref.js';

interface MountFlags extends FilterFlags {
  cacheSize?: string;
  background?: boolean;
  foreground?: boolean;
  options?: string[];
  logFile?: string;
  notifyFd?: string;
}

/**
 * Where the mount's log (a damaged chunk, a storage outage) goes: standard
 * error, or a file it is appended to with the time, as a background mount
 * has no standard error to write to. The file is opened before mounting,
 * so a path that cannot be written is refused at once.
 */
function mountLog(ctx: CliContext, file: string | undefined): { log: (line: string) => void; close: () => void } {
  if (file === undefined) return { log: (line) => ctx.err(`kloset: mount: ${line}`), close: () => undefined };
  requireCurrentDirectoryFor(file);
  let fd: number;
  try {
    fd = openSync(exactForm(file), 'a', 0o600);
  } catch (err) {
    throw new KlosetError(`${file}: cannot write the log: ${systemReason(err)}`, { cause: err });
  }
  return {
    log: (line) => {
      try {
        writeSync(fd, `${new Date().toISOString()} ${line}\n`);
      } catch {
        // A full disk must not take the mount down: the read that failed answered EIO already.
      }
    },
    close: () => closeSync(fd),
  };
}

/** Memory for decrypted chunks and directory metadata, unless -cache-size says otherwise. */
const DEFAULT_CACHE_BYTES = 512 * 1024 * 1024;

/** The signals that unmount a foreground mount. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** How long an unmount may take after a signal before the process ends without it. */
const UNMOUNT_WAIT_MS = 10_000;

/** How long a process ending without its unmount waits for its lock to go from the store. */
const LOCK_RELEASE_WAIT_MS = 3000;

/**
 * The signals that ask a mount to stop, listened to from just before the
 * file system is mounted until it is unmounted. A signal nothing listens to
 * ends the process at once, and one that came between the mount and the
 * listener (while mounting, or as "mounted" was printed) left a mount point
 * answering ENOTCONN. One that comes while nothing waits is kept: one that
 * came while mounting unmounts as soon as the mount is done, one that came
 * during an unmount that then failed makes the next attempt.
 */
function stopSignals(): { next(): Promise<void>; listen(): void; close(): void } {
  let pending = false;
  let wake: (() => void) | undefined;
  let listening = false;
  const onSignal = () => {
    if (wake) {
      wake();
      wake = undefined;
    } else {
      pending = true;
    }
  };
  return {
    listen: () => {
      if (listening) return;
      listening = true;
      for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
    },
    next: () =>
      new Promise<void>((resolve) => {
        if (pending) {
          pending = false;
          resolve();
        } else {
          wake = resolve;
        }
      }),
    close: () => {
      for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
    },
  };
}

/**
 * Detaches: the same command runs again in the foreground in a new session,
 * gets the passphrase through a pipe (never the environment or argv), and
 * says on another pipe when the file system is mounted or why it is not.
 */
async function detach(ctx: CliContext, argv: string[], mountpoint: string): Promise<void> {
  const passphrase = await ctx.repository().then(
    async (repository) => (repository.encrypted ? ctx.passphrase(false) : ''),
  );
  const args = [...argv.filter((a) => a !== '--background' && a !== '--daemon'), '--foreground', '--notify-fd', '3', '--passphrase-file', '-'];
  // The program itself, through its shebang, so the child gets the same runtime settings.
  const child = spawn(process.argv[1], args, { detached: true, stdio: ['pipe', 'ignore', 'ignore', 'pipe'], env: childEnvironment() });
  child.stdin!.end(passphrase);
  const notice = await new Promise<string>((resolve) => {
    let text = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => (text += d));
    pipe.on('end', () => resolve(text));
    child.on('exit', () => resolve(text));
  });
  child.unref();
  if (!notice.startsWith('ready')) throw new KlosetError(notice.replace(/^error: /, '').trim() || 'mount failed in the background');
  ctx.info(`mounted in the background (pid ${child.pid}); unmount with 'fusermount -u ${path.resolve(mountpoint)}'`);
}

/**
 * Dead buffers a mount may leave to V8 between two full collections. Every
 * chunk a mount serves passes through a few buffers (the socket's reads, the
 * decrypted blob, the decompressed chunk), and V8 counts their bytes toward
 * starting a full collection against a limit it sets from the heap's live
 * objects: a few megabytes in a mount, so a cold read of 1 GiB from a store
 * on S3 ran some 40 full collections, each marking the whole heap. Letting
 * the heap grow by about this much instead (ten times a live heap of 13 MB)
 * left a dozen: the mount used about a sixth less CPU and read 10 to 25%
 * faster, for 15 to 50 MB more RSS. Set for the mount alone: a backup's peak
 * would rise too.
 */
const GARBAGE_HEADROOM_BYTES = 128 * 1024 * 1024;
/** V8's own growing factor goes up to 4 (300%): below that, its own choice stands. */
const V8_MAX_GROWING_PERCENT = 300;
const HEAP_CHECK_MS = 1000;

/**
 * Keeps V8's heap growing factor at GARBAGE_HEADROOM_BYTES over the live
 * heap, as the heap grows (directory pages of a large tree): a fixed factor
 * would let a large live heap pile up as many times its size. Returns the
 * stop.
 */
function boundGarbageToHeadroom(): () => void {
  let current = -1;
  const adjust = () => {
    const used = Math.max(1, v8.getHeapStatistics().used_heap_size);
    const percent = Math.floor((GARBAGE_HEADROOM_BYTES / used) * 100);
    const flag = percent > V8_MAX_GROWING_PERCENT ? percent : 0;
    if (flag === current) return;
    v8.setFlagsFromString(`--heap-growing-percent=${flag}`);
    current = flag;
  };
  adjust();
  const timer = setInterval(adjust, HEAP_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

export function registerMountCommand(program: Command, context: () => CliContext, run: Run, argv: string[]): void {
  withFilterOptions(program.command('mount'))
    .description('mount snapshots read-only through FUSE')
    .argument('<mountpoint>', 'an existing empty directory')
    .argument('[snapshot]', 'one snapshot, optionally with :/path (default: every snapshot)')
    .option('--cache-size <size>', `memory for decrypted chunks and directory metadata (default ${formatBytes(DEFAULT_CACHE_BYTES)})`)
    .option('-f, --foreground', 'stay in the foreground until Ctrl-C (the default)')
    .option('--background', 'detach once mounted')
    .addOption(new Option('--daemon', 'same as --background').hideHelp())
    .option('-o, --options <options>', 'FUSE options: allow_other, debug (comma-separated, repeatable)', collect)
    .option('--log-file <file>', "append the mount's log (files that could not be read) to a file instead of standard error")
    .addOption(new Option('--notify-fd <fd>').hideHelp())
    .action((mountpoint: string, snapshot: string | undefined, flags: MountFlags & { daemon?: boolean }) =>
      run(async () => {
        const ctx = context();
        const filter = filterFrom(flags);
        const cacheBytes = flags.cacheSize === undefined ? DEFAULT_CACHE_BYTES : parseSize(flags.cacheSize);
        const fuseOptions = (flags.options ?? []).flatMap((o) => o.split(',')).filter(Boolean);
        for (const option of fuseOptions) {
          if (option !== 'allow_other' && option !== 'debug') throw new UsageError(`unsupported mount option ${JSON.stringify(option)}`);
        }
        // The FUSE binding takes the mount point as text: typed with bytes that are not UTF-8, it would mount elsewhere.
        if (!mountpoint.isWellFormed()) throw new UsageError(`${mountpoint}: a mount point's path must be UTF-8 text: mount at another directory`);
        if ((flags.background || flags.daemon) && !flags.foreground) return detach(ctx, argv, mountpoint);
        const stopBounding = boundGarbageToHeadroom();
        const notify = flags.notifyFd ? createWriteStream('', { fd: Number(flags.notifyFd) }) : undefined;
        let releaseLock: () => Promise<void> = async () => undefined;
        let closeLog: () => void = () => {};
        const signals = stopSignals();
        try {
          const { log, close } = mountLog(ctx, flags.logFile);
          closeLog = close;
          // Held while mounted: a prune must not remove what a reader may still open.
          const { repository, lock } = await ctx.lockedRepository('shared', 'a mount', { reader: true });
          releaseLock = () => ctx.release(lock);
          let target: MountTarget;
          if (snapshot) {
            const ref = parseSnapshotRef(snapshot);
            target = { snapshot: await findSnapshot(repository, ref, filter, ctx.onDamagedSnapshot), path: ref.path };
          } else {
            target = {
              snapshots: filterSnapshots(await listSnapshots(repository, ctx.onDamagedSnapshot), filter),
              select: (all) => filterSnapshots(all, filter),
            };
          }
          const where = path.resolve(mountpoint);
          const { mountSnapshots } = await import('../../mount/mount.js');
          const mounted = await mountSnapshots(repository, where, target, {
            cacheBytes,
            allowOther: fuseOptions.includes('allow_other'),
            debug: fuseOptions.includes('debug'),
            log,
            beforeMount: () => signals.listen(),
          });
          const what = 'snapshots' in target ? plural(target.snapshots.length, 'snapshot') : `snapshot ${snapshot}`;
          const unmountOnOutputLost = () => mounted.unmount();
          ctx.untilOutputLost.add(unmountOnOutputLost);
          ctx.info(`mounted ${what} at ${where}; Ctrl-C or SIGTERM unmounts`);
          notify?.end('ready\n');
          // Until a signal, or until someone else unmounts (fusermount -u, umount).
          // While the unmount fails, the files are still served: the lock stays, and the next signal tries again.
          for (;;) {
            await Promise.race([mounted.gone, signals.next()]);
            let timer: NodeJS.Timeout | undefined;
            const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), UNMOUNT_WAIT_MS)));
            try {
              const outcome = await Promise.race([mounted.unmount(), late]).finally(() => clearTimeout(timer));
              if (outcome === 'late') {
                // The unmount is stuck (fusermount, or the kernel under it, does not return): a signal must still
                // end the process, which ends its FUSE connection with it.
                ctx.err(
                  `kloset: ${where}: the unmount did not finish within ${UNMOUNT_WAIT_MS / 1000} s; ending without it: ` +
                    `if the mount point answers "Transport endpoint is not connected", clear it with 'fusermount -uz ${where}'`,
                );
                await Promise.race([releaseLock(), delay(LOCK_RELEASE_WAIT_MS)]).catch(() => undefined);
                closeLog();
                process.exit(ExitCode.FAILURE);
              }
              ctx.untilOutputLost.delete(unmountOnOutputLost);
              break;
            } catch (err) {
              ctx.err(`kloset: ${err instanceof Error ? err.message : String(err)}; still mounted: Ctrl-C or SIGTERM tries again`);
            }
          }
          signals.close();
          stopBounding();
          const s = mounted.filesystem.stats;
          const c = mounted.filesystem.cache;
          ctx.info(
            `unmounted ${where}: ${s.reads} reads, ${formatBytes(s.readBytes)} served, ${c.hits} cache hits, ${c.misses} chunks fetched, cache peak ${formatBytes(c.peakBytes)}` +
              (s.errors ? `, ${s.errors} read errors` : ''),
          );
          await releaseLock();
          closeLog();
          // The FUSE binding keeps a thread that holds the event loop open after unmounting.
          // exitCode: a broken output (see main) may have set its own status while this unmounted.
          process.exit();
        } catch (err) {
          signals.close();
          stopBounding();
          await releaseLock();
          closeLog();
          notify?.end(`error: ${err instanceof Error ? err.message : String(err)}\n`);
          throw err;
        }
      }),
    );
}
