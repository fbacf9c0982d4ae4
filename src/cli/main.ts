import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { ExitCode, KlosetError } from '../errors.js';
import { shownName } from '../snapshot/names.js';
import { registerConfigCommands } from './commands/config.js';
import { registerSnapshotCommands } from './commands/snapshots.js';
import { registerMaintenanceCommands } from './commands/maintenance.js';
import { registerMountCommand } from './commands/mount.js';
import { registerSyncCommand } from './commands/sync.js';
import { registerUiCommand } from './commands/ui.js';
import { CliContext } from './context.js';

/**
 * Long options that the Plakar documentation writes with one dash (`-to`,
 * `-tag`): rewritten to the double-dash form before commander sees them.
 */
const SINGLE_DASH_LONG = new Set([
  'to',
  'tag',
  'exclude',
  'plaintext',
  'json',
  'recursive',
  'concurrency',
  'passphrase-file',
  'verbose',
  'quiet',
  'no-parent',
  'no-encryption',
  'cache-size',
  'foreground',
  'addr',
  'no-spawn',
  'background',
  'daemon',
  'before',
  'since',
  'latest',
  'keep-last',
  'keep-hourly',
  'keep-daily',
  'keep-weekly',
  'keep-monthly',
  'keep-yearly',
  'keep-within',
  'keep-tag',
  'group-by',
  'dry-run',
  'prune',
  'snapshot',
  'remove-all',
  'new-passphrase-file',
  'include',
  'one-file-system',
  'exclude-file',
  'exclude-caches',
  'include-file',
  'read-data-subset',
  'no-read-data',
  'read-all-packs',
]);

export function normalizeArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (const arg of argv) {
    if (arg === '--') {
      out.push(...argv.slice(out.length));
      break;
    }
    const match = /^-([a-z][a-z-]+)(=.*)?$/.exec(arg);
    out.push(match && SINGLE_DASH_LONG.has(match[1]) ? `--${match[1]}${match[2] ?? ''}` : arg);
  }
  return out;
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
  const atIndex = argv.findIndex((a) => !a.startsWith('-'));
  if (atIndex >= 0 && argv[atIndex] === 'at') {
    if (atIndex + 1 >= argv.length) throw new KlosetError("'at' needs a store location", { exitCode: ExitCode.USAGE });
    return { store: argv[atIndex + 1], rest: [...argv.slice(0, atIndex), ...argv.slice(atIndex + 2)] };
  }
  return { store: CliContext.defaultStore(), rest: argv };
}

/** The shell's status for a process that SIGPIPE ended. */
const BROKEN_PIPE_EXIT = 128 + 13;

export async function main(argv: string[]): Promise<number> {
  // `kloset ls | head`: once the reader is gone, stop as coreutils do on SIGPIPE, silently.
  // Any other failure to write (a full disk) leaves the output incomplete: say so and fail.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(BROKEN_PIPE_EXIT);
    process.stderr.write(`kloset: cannot write the output: ${error.message}\n`);
    process.exit(ExitCode.FAILURE);
  });
  // A name that is not UTF-8 is printed as it is typed back (see shownName): with U+FFFD.
  const out = (line: string) => process.stdout.write(shownName(line) + '\n');
  const err = (line: string) => process.stderr.write(shownName(line) + '\n');
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
    const { store, rest } = splitStore(normalizeArgs(argv));
    const current = new CliContext(store, out, err);
    context = current;
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
    await program.parseAsync(rest, { from: 'user' });
    return exitCode;
  } catch (error) {
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
    err(`kloset: ${e.code ? `${e.message}` : `internal error: ${e.message ?? String(error)}`}`);
    if (verbose) err(String(e.stack));
    return ExitCode.FAILURE;
  } finally {
    process.off('beforeExit', drained);
    await context?.close();
  }
}
