import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import type { Readable } from 'node:stream';
import { childEnvironment } from '../../childenv.js';
import { KlosetError } from '../../errors.js';
import type { Timespec } from '../../snapshot/tree.js';
import { Accounts } from '../fs/accounts.js';
import type { Importer, SourceEntry } from '../../snapshot/importer.js';
import { CommandGroup } from './processgroup.js';

/** The mode restic gives a file read from standard input. */
const FILE_MODE = 0o100644;
const DIRECTORY_MODE = 0o040755;

/** Why a name cannot be the one file of a snapshot's root, or undefined when it can. */
export function streamFileNameProblem(name: string): string | undefined {
  if (name === '' || name === '.' || name === '..') return `"${name}" cannot name a file`;
  if (name.includes('/')) return `"${name}" holds a slash: name one file, not a path`;
  if (name.includes('\0')) return 'a file name cannot hold a NUL byte';
  return undefined;
}

/**
 * One stream backed up as one file in the snapshot's root: standard input,
 * or what a command writes to its standard output (a database dump), as
 * restic's backup --stdin and --stdin-from-command. The file belongs to the
 * user running the backup and takes the backup's time. A stream cannot be
 * read twice, so it is whole or there is no snapshot: a read that fails, or
 * a command that exits with an error, fails the backup.
 */
export class StreamImporter implements Importer {
  readonly type = 'stdin';
  readonly origin: string;
  readonly source: string;
  readonly allOrNothing = true;
  private readonly started: Timespec;
  private readonly owner: Pick<SourceEntry, 'uid' | 'gid' | 'user' | 'group'>;
  private child: ChildProcess | undefined;
  private group: CommandGroup | undefined;

  /** `command`: the program and its arguments, run without a shell; absent, standard input. `host`: the origin to record. */
  constructor(
    private readonly fileName: string,
    private readonly command?: readonly string[],
    host = os.hostname(),
  ) {
    this.origin = host;
    const problem = streamFileNameProblem(fileName);
    if (problem) throw new KlosetError(`-stdin-filename: ${problem}`);
    this.source = `stdin:/${fileName}`;
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    const accounts = new Accounts();
    this.owner = { uid, gid, user: accounts.user(uid), group: accounts.group(gid) };
    const now = Date.now();
    this.started = { sec: Math.floor(now / 1000), nsec: (now % 1000) * 1e6 };
  }

  async rootEntry(): Promise<SourceEntry> {
    return { name: '', kind: 'directory', mode: DIRECTORY_MODE, ...this.owner, size: 0, mtime: this.started };
  }

  async *children(path: string): AsyncIterable<SourceEntry> {
    if (path !== '') return;
    yield { name: this.fileName, kind: 'file', mode: FILE_MODE, ...this.owner, size: 0, mtime: this.started };
  }

  read(): AsyncIterable<Buffer> {
    return this.command ? this.readCommand(this.command) : this.readStream(process.stdin, 'standard input');
  }

  private async *readStream(stream: Readable, what: string): AsyncIterable<Buffer> {
    try {
      for await (const data of stream) yield data as Buffer;
    } catch (err) {
      throw new KlosetError(`cannot read ${what}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async *readCommand([program, ...args]: readonly string[]): AsyncIterable<Buffer> {
    const shown = [program, ...args].join(' ');
    // Its errors reach the terminal as they come; the passphrase stays out of its environment. Detached: in a
    // process group (a session) of its own, so that what it starts can be stopped with it (processgroup.ts).
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'inherit'], env: childEnvironment(), detached: true });
    this.child = child;
    // Its output is read to its end, as a pipe's reader does, also after it exits: a writer it left behind
    // (bash's `> >(gzip)`) is still writing the command's output. What of the group outlives that is stopped at close().
    if (child.pid !== undefined) this.group = new CommandGroup(child.pid);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    exited.catch(() => undefined); // awaited below, or the read stopped first and it is killed
    let finished = false;
    try {
      yield* this.readStream(child.stdout, `the output of ${shown}`);
      const { code, signal } = await exited.catch((err: NodeJS.ErrnoException) => {
        throw new KlosetError(err.code === 'ENOENT' ? `${program}: command not found` : `cannot run ${program}: ${err.message}`, { cause: err });
      });
      if (signal) throw new KlosetError(`${shown}: killed by ${signal}`);
      if (code !== 0) throw new KlosetError(`${shown}: exited with status ${code}`);
      finished = true;
    } finally {
      if (!finished) this.stopCommand();
    }
  }

  /**
   * The backup stopped before the end of the output (an interrupt, a store failing): so does the command,
   * with every process of its group. Its output is let go at once rather than read to its end.
   */
  private stopCommand(): void {
    void this.group?.stop();
    this.child?.stdout?.destroy();
  }

  /** Returns once no process of the command's group runs: SIGKILL ends those that outlive SIGTERM by 5 s. */
  async close(): Promise<void> {
    this.stopCommand();
    await this.group?.stop();
  }
}
