import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nameToBytes } from '../../src/snapshot/names.js';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/kloset.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

/**
 * How the tests start the CLI: `node bin/kloset.js`, with the environment the
 * first line of bin/kloset.js sets (malloc tuning) but not its V8 flags. Any
 * V8 flag makes Node compile its own modules from source, not from its code
 * cache: 85 ms more CPU at every start, and the tests start the CLI some
 * 1,800 times. The flags size V8's heap; they change nothing the tests check.
 * Tests that run BIN itself (pipelines, strace) go through the first line.
 */
const LAUNCH = (() => {
  const words = readFileSync(BIN, 'utf8').split('\n')[0].replace(/^#!\/usr\/bin\/env -S /, '').split(/\s+/);
  const env = Object.fromEntries(words.filter((word) => /^[A-Z_]+=/.test(word)).map((word) => word.split('=', 2)));
  return { env, command: [process.execPath, BIN] };
})();

/** A CLI process the test can signal while it runs; `input` goes to its stdin. */
export function startKloset(
  args: string[],
  options: SpawnOptions & { input?: string | Buffer; through?: string[] } = {},
): { child: ChildProcess; done: Promise<CliResult> } {
  // `through` runs it under another program (strace injecting faults), which ends as it does.
  const [command, ...before] = [...(options.through ?? []), ...LAUNCH.command];
  const child = spawn(command!, [...before, ...args], {
    ...options,
    // Stores are created with a key derivation of milliseconds (test/cli/roundtrip.test.ts checks the default).
    env: { KLOSET_PASSPHRASE: 'test passphrase', KLOSET_TESTONLY_WEAKEN_KDF: '1', ...LAUNCH.env, ...process.env, ...(options.env ?? {}) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  child.stdin!.on('error', () => undefined); // the process may exit before reading its input
  child.stdin!.end(options.input ?? '');
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
  });
  return { child, done };
}

/** Runs the real CLI in a child process, as a user would. */
export function kloset(args: string[], options: SpawnOptions & { input?: string | Buffer; through?: string[] } = {}): Promise<CliResult> {
  return startKloset(args, options).done;
}

/**
 * Runs the CLI with arguments typed as bytes, as a shell passes `$'caf\xe9'`:
 * each string stands for the bytes names.ts maps it to, a lone surrogate
 * U+DC80..U+DCFF for a byte that is not UTF-8 ('caf\udce9'). Node gives a
 * child its arguments as UTF-8 text, which would turn such a byte into
 * U+FFFD: the shell's printf makes each argument from its bytes instead,
 * and each of `variables` (environment variables typed so) too.
 */
export function klosetTyped(
  args: string[],
  { variables = {}, ...options }: Parameters<typeof kloset>[1] & { variables?: Record<string, string> } = {},
): Promise<CliResult> {
  const octal = (arg: string) => [...nameToBytes(arg)].map((byte) => `\\${byte.toString(8).padStart(3, '0')}`).join('');
  const typed = (arg: string) => `"$(printf '${octal(arg)}')"`;
  const exports = Object.entries(variables).map(([name, value]) => `export ${name}=${typed(value)}; `);
  const script = `${exports.join('')}exec "$@" ${args.map(typed).join(' ')}`;
  return kloset([], { ...options, through: [...(options.through ?? []), 'sh', '-c', script, 'sh'] });
}

export async function tempDir(prefix = 'kloset-test-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Full id of the newest snapshot, via `ls --json`. */
export async function latestSnapshotId(store: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const result = await kloset(['at', store, 'ls', '--json'], { env });
  if (result.code !== 0) throw new Error(`ls failed: ${result.stderr}`);
  const list = JSON.parse(result.stdout) as { id: string }[];
  return list[list.length - 1].id;
}
