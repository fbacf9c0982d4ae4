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

/** A system call's failure in words alone (Node's "ENOENT: no such file or directory, open '<path>'" → "no such file or directory"), for a message that names the path already. */
export function systemReason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/^E[A-Z]+: /, '').replace(/, \w+( '.*')?$/, '');
}
