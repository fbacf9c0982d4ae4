import { Worker, type WorkerOptions } from 'node:worker_threads';
import { KlosetError, systemReason, VANISHED_DIRECTORY } from './errors.js';

/** Set once the process has left a current directory deleted since it started. */
let leftVanishedDirectory = false;

/**
 * Node 20 cannot start a worker thread while the current directory is gone
 * (`cd d; rmdir ../d; kloset …`): the thread's bootstrap calls getcwd(),
 * and the thread dies of "ENOENT, uv_cwd" before running a line. The
 * process then moves to `/` first. By then the command has resolved the
 * paths it was given (a relative one has already failed), and process.cwd(),
 * which path.resolve calls for a relative path, goes on failing: no path
 * met later is taken as relative to `/`.
 */
function leaveVanishedDirectory(): void {
  if (leftVanishedDirectory) return;
  try {
    process.cwd();
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  process.chdir('/');
  process.cwd = () => {
    throw new KlosetError(VANISHED_DIRECTORY);
  };
  leftVanishedDirectory = true;
}

/** A worker thread running `script`, which starts even when the current directory has been deleted. */
export function startThread(script: URL, options?: WorkerOptions): Worker {
  leaveVanishedDirectory();
  return new Worker(script, options);
}

/**
 * Before a file named on the command line is opened as given (a passphrase
 * file, a pattern file, a mount's log): a relative name fails as a relative
 * path does everywhere else when the current directory has been deleted,
 * with VANISHED_DIRECTORY (process.cwd()'s error, worded by systemReason),
 * rather than as "no such file or directory", or, once the process has moved
 * to `/`, opening a file there. The name itself is left as typed (not
 * resolved: see exactForm).
 */
export function requireCurrentDirectoryFor(file: string): void {
  if (file.startsWith('/')) return;
  try {
    process.cwd();
  } catch (err) {
    throw new KlosetError(systemReason(err), { cause: err });
  }
}
