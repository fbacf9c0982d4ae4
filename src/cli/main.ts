import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { Command, CommanderError } from 'commander';
import { ExitCode, KlosetError, systemErrorLine, systemReason, UsageError } from '../errors.js';
import { releaseHeldLocks } from '../kloset/locks.js';
import { nameToBytes, shownName } from '../snapshot/names.js';
import { registerConfigCommands } from './commands/config.js';
import { registerSnapshotCommands } from './commands/snapshots.js';
import { registerMaintenanceCommands } from './commands/maintenance.js';
import { registerMountCommand } from './commands/mount.js';
import { registerSyncCommand } from './commands/sync.js';
import { registerUiCommand } from './commands/ui.js';
import { CliContext } from './context.js';

/**
 * Every long option of the program and its commands: the Plakar
 * documentation writes them with one dash (`-to`, `-tag`), rewritten to the
 * double-dash form before commander sees them.
 */
function longOptionNames(command: Command, into = new Set<string>(['help', 'version'])): Set<string> {
  for (const option of command.options) if (option.long) into.add(option.long.slice(2));
  for (const sub of command.commands) longOptionNames(sub, into);
  return into;
}

export function normalizeArgs(argv: string[], longNames: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const arg of argv) {
    if (arg === '--') {
      out.push(...argv.slice(out.length));
      break;
    }
    const match = /^-([a-z][a-z-]+)(=.*)?$/.exec(arg);
    out.push(match && longNames.has(match[1]) ? `--${match[1]}${match[2] ?? ''}` : arg);
  }
  return out;
}

/**
 * `config <section> set <name> <key> <value>`: the value is an operand whatever it looks like. Left as it
 * is, one that reads as an option of the program (a generated passphrase starting with -V, or -h) was
 * taken by commander, which printed the version or the help and stored nothing, with status 0.
 */
export function configValueAsOperand(argv: string[]): string[] {
  let i = 0;
  const skipOptions = () => {
    while (i < argv.length && argv[i].startsWith('-')) i += argv[i] === '--passphrase-file' || argv[i] === '-passphrase-file' ? 2 : 1;
  };
  skipOptions();
  if (argv[i] === 'at') {
    i += 2;
    skipOptions();
  }
  const valueAt = i + 5;
  if (argv[i] !== 'config' || argv[i + 2] !== 'set' || argv.length <= valueAt || argv[valueAt] === '--') return argv;
  if (argv.slice(i + 1, valueAt).some((arg) => arg.startsWith('-'))) return argv;
  return [...argv.slice(0, valueAt), '--', ...argv.slice(valueAt)];
}

/**
 * `help bogus` (or `store help bogus`): commander prints the whole help on stderr for it; an unknown
 * command gets one line, as `kloset bogus` does.
 */
function refuseUnknownHelpTopic(program: Command, args: string[]): void {
  let command = program;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--passphrase-file') i++;
    else if (args[i].startsWith('-')) continue;
    else if (args[i] === 'help' && command.commands.length) {
      const topic = args[i + 1];
      const known = (name: string) => name === 'help' || command.commands.some((sub) => sub.name() === name || sub.aliases().includes(name));
      if (topic !== undefined && !topic.startsWith('-') && !known(topic)) throw new UsageError(`unknown command '${topic}'`);
      return;
    } else {
      const sub = command.commands.find((c) => c.name() === args[i] || c.aliases().includes(args[i]));
      if (!sub) return;
      command = sub;
    }
  }
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Splits `at <store>` off the front; the store defaults to KLOSET_REPOSITORY or ~/.kloset. */
function splitStore(argv: string[]): { store: string; rest: string[] } {
  // The first word that is neither an option nor the value of one: `kloset --passphrase-file F at ./store ls`.
  let atIndex = -1;
  for (let i = 0; i < argv.length && atIndex < 0; i++) {
    if (argv[i] === '--passphrase-file') i++;
    else if (!argv[i].startsWith('-')) atIndex = i;
  }
  if (atIndex >= 0 && argv[atIndex] === 'at') {
    if (atIndex + 1 >= argv.length) throw new KlosetError("'at' needs a store location", { exitCode: ExitCode.USAGE });
    return { store: argv[atIndex + 1], rest: [...argv.slice(0, atIndex), ...argv.slice(atIndex + 2)] };
  }
  return { store: CliContext.defaultStore(), rest: argv };
}

/**
 * Control characters but tab and newline, which a file name may hold: on a
 * terminal they are shown as '?', as ls does, since an escape sequence in a
 * name could rewrite the screen or retitle the window. A pipe gets them as
 * they are.
 */
const CONTROL_CHARACTERS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

function forTerminal(stream: NodeJS.WriteStream, text: string): string {
  return stream.isTTY ? text.replace(CONTROL_CHARACTERS, '?') : text;
}

const NUL = Buffer.of(0);

/** How long a process ending on a broken output waits for its locks to go from the store. */
const LOCK_RELEASE_WAIT_MS = 3000;

/** The shell's status for a process that SIGPIPE ended. */
const BROKEN_PIPE_EXIT = 128 + 13;

export async function main(argv: string[]): Promise<number> {
  // `kloset ls | head`: once the reader is gone, stop as coreutils do on SIGPIPE, silently.
  // Any other failure to write (a full disk) leaves the output incomplete: say so and fail.
  // The command may not get to its own clean-up: what it registered is undone (a mount unmounted) and its
  // shared locks are released here, within a bound (an exclusive one stays, as a killed process leaves
  // it: see releaseHeldLocks).
  // One that fails meanwhile over its output (archive -output -) ends with this status, its error unsaid.
  let outputStatus: number | undefined;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (outputStatus !== undefined) return;
    outputStatus = error.code === 'EPIPE' ? BROKEN_PIPE_EXIT : ExitCode.FAILURE;
    if (error.code !== 'EPIPE') process.stderr.write(`kloset: cannot write the output: ${systemReason(error)}\n`);
    const status = outputStatus;
    process.exitCode = status; // also for a command that calls process.exit() meanwhile
    const undo = [...(context?.untilOutputLost ?? [])].map((work) => work().catch(() => undefined));
    const cleanUp = Promise.all(undo).then(() => releaseHeldLocks());
    void Promise.race([cleanUp, delay(LOCK_RELEASE_WAIT_MS)]).finally(() => process.exit(status));
  });
  // A name that is not UTF-8 is printed as it is typed back (see shownName): with U+FFFD.
  const out = (line: string) => process.stdout.write(forTerminal(process.stdout, shownName(line)) + '\n');
  const err = (line: string) => process.stderr.write(forTerminal(process.stderr, shownName(line)) + '\n');
  // `-0`: for `xargs -0`, as find -print0 writes names: their exact bytes, neither shown nor escaped, each ended by NUL.
  const outNul = (name: string) => process.stdout.write(Buffer.concat([nameToBytes(name), NUL]));
  let exitCode: number = ExitCode.OK;
  let verbose = argv.includes('--verbose') || argv.includes('-verbose');
  let context: CliContext | undefined;
  // Node exits with status 0 once nothing is left to wait for, even with a command's promise still pending:
  // that is a bug, and it must not pass for success.
  const drained = () => {
    err('kloset: internal error: the command stopped with its work unfinished');
    process.exitCode = ExitCode.FAILURE;
  };
  process.once('beforeExit', drained);
  try {
    let current!: CliContext;
    const program = new Command('kloset')
      .description('deduplicated, compressed, encrypted backups into a Kloset store')
      .usage('[at <store>] <command> [options]')
      .version(packageVersion(), '-V, --version')
      .option('--passphrase-file <file>', 'read the store passphrase from a file')
      .option('--verbose', 'log causes of errors')
      .option('--quiet', 'only errors and warnings')
      .exitOverride()
      .configureOutput({
        writeOut: (s) => process.stdout.write(s),
        writeErr: (s) => process.stderr.write(s),
        // One line, like every other error.
        outputError: (s, write) => write(`kloset: ${s.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')}\n`),
      })
      .showSuggestionAfterError(true);
    program.hook('preAction', () => {
      current.options = program.opts();
      verbose = current.options.verbose === true;
    });
    const run = async (work: () => Promise<number | void>) => {
      exitCode = (await work()) ?? ExitCode.OK;
    };
    registerSnapshotCommands(program, () => current, run);
    registerMaintenanceCommands(program, () => current, run);
    registerSyncCommand(program, () => current, run);
    registerMountCommand(program, () => current, run, argv);
    registerUiCommand(program, () => current, run);
    registerConfigCommands(program, () => current.aliases, out);
    // Plakar's `plakar version`, beside -V/--version.
    program.command('version').description('print the version').action(() => void out(packageVersion()));
    const { store, rest } = splitStore(normalizeArgs(configValueAsOperand(argv), longOptionNames(program)));
    refuseUnknownHelpTopic(program, rest);
    current = new CliContext(store, out, err, outNul);
    context = current;
    await program.parseAsync(rest, { from: 'user' });
    return outputStatus ?? exitCode;
  } catch (error) {
    if (outputStatus !== undefined) return outputStatus;
    if (error instanceof CommanderError) {
      // commander already printed the message (or the help / version).
      return error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    }
    if (error instanceof KlosetError) {
      err(`kloset: ${error.message}`);
      if (verbose && error.cause) err(`cause: ${String((error.cause as Error).stack ?? error.cause)}`);
      return error.exitCode;
    }
    const e = error as NodeJS.ErrnoException;
    err(`kloset: ${e.code ? systemErrorLine(e) : `internal error: ${e.message ?? String(error)}`}`);
    if (verbose) err(String(e.stack));
    return ExitCode.FAILURE;
  } finally {
    process.off('beforeExit', drained);
    await context?.close();
  }
}
