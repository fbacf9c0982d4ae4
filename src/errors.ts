/**
 * Exit codes shared by every command. PARTIAL means the command finished but
 * skipped something it names in its output (an unreadable file, a damaged chunk).
 */
export const ExitCode = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  PARTIAL: 3,
} as const;

/**
 * An error whose message is meant for the user: the CLI prints it as one line
 * and exits with its code. Anything else reaching the top is a bug, shown as
 * "internal error" with the stack only under --verbose.
 */
export class KlosetError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'KlosetError';
    this.exitCode = options.exitCode ?? ExitCode.FAILURE;
  }
}

export class UsageError extends KlosetError {
  constructor(message: string) {
    super(message, { exitCode: ExitCode.USAGE });
    this.name = 'UsageError';
  }
}

/** A blob, pack or file was found damaged: authentication or decoding failed. */
export class IntegrityError extends KlosetError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = 'IntegrityError';
  }
}

export class NotFoundError extends KlosetError {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/** What a relative path meets when the current directory has been deleted (`cd d; rmdir ../d; kloset …`). */
export const VANISHED_DIRECTORY = 'the current directory no longer exists';

/** A system call's failure in words alone (Node's "ENOENT: no such file or directory, open '<path>'" → "no such file or directory"), for a message that names the path already. */
export function systemReason(err: unknown): string {
  // process.cwd(), as path.resolve calls it for a relative path: Node's message names only the libuv call.
  if ((err as NodeJS.ErrnoException | undefined)?.syscall === 'uv_cwd') return VANISHED_DIRECTORY;
  return (err instanceof Error ? err.message : String(err)).replace(/^E[A-Z]+: /, '').replace(/, \w+( '.*')?$/, '');
}

/** What a failed system call was doing, in the words of coreutils' messages. */
const SYSCALL_WORDS: Record<string, string> = {
  open: 'cannot open',
  mkdir: 'cannot create directory',
  stat: 'cannot access',
  lstat: 'cannot access',
  access: 'cannot access',
  scandir: 'cannot read directory',
  opendir: 'cannot read directory',
  read: 'cannot read',
  write: 'cannot write',
  unlink: 'cannot remove',
  rmdir: 'cannot remove directory',
  rm: 'cannot remove',
  rename: 'cannot rename',
  symlink: 'cannot create symbolic link',
  link: 'cannot create link',
  chmod: 'cannot change the mode of',
  chown: 'cannot change the owner of',
  utime: 'cannot set the times of',
  readlink: 'cannot read link',
  copyfile: 'cannot copy',
};

/**
 * A system call's failure that reached the top unexplained, as one line:
 * "cannot create directory /etc/st: permission denied" rather than Node's
 * "EACCES: permission denied, mkdir '/etc/st'".
 */
export function systemErrorLine(err: NodeJS.ErrnoException & { dest?: string }): string {
  if (err.syscall === 'uv_cwd') return systemReason(err);
  const doing = err.syscall === undefined ? undefined : SYSCALL_WORDS[err.syscall];
  if (doing === undefined || err.path === undefined) return err.message;
  const reason = systemReason(err);
  return `${doing} ${err.path}${err.dest !== undefined ? ` to ${err.dest}` : ''}: ${reason}`;
}

/** Any failure as words for a message: a system call's as systemErrorLine gives it. */
export function failureText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  return typeof (err as NodeJS.ErrnoException).code === 'string' ? systemErrorLine(err) : err.message;
}
