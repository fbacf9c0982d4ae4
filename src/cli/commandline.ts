import { readFileSync } from 'node:fs';
import path from 'node:path';
import { nameFromBytes } from '../snapshot/names.js';

/** How Node says the process was started: the program's name as typed, node's own options, and argv. */
export interface StartedAs {
  argv0: string;
  execArgv: readonly string[];
  argv: readonly string[];
}

/** The command line as Linux keeps it: each word's bytes followed by a NUL; undefined where there is none to read. */
function readCommandLine(): Buffer | undefined {
  try {
    return readFileSync('/proc/self/cmdline');
  } catch {
    return undefined;
  }
}

/** The words of /proc/self/cmdline or /proc/self/environ: NUL ends each one (an empty argument is an empty word). */
export function nulSeparatedWords(commandLine: Buffer): Buffer[] {
  const words: Buffer[] = [];
  for (let start = 0; start < commandLine.length; ) {
    let end = commandLine.indexOf(0, start);
    if (end < 0) end = commandLine.length;
    words.push(commandLine.subarray(start, end));
    start = end + 1;
  }
  return words;
}

/**
 * The program's arguments as they were typed, byte for byte. Node decodes
 * its command line as UTF-8 and puts U+FFFD for every byte outside a valid
 * sequence, so a path typed with a Latin-1 name (`backup $'/srv/caf\xe9'`)
 * would name another file. Linux keeps the bytes in /proc/self/cmdline:
 * node, its options, the script, then the arguments. Each argument is
 * decoded there with nameFromBytes, a stray byte becoming its surrogate
 * escape as in a snapshot's names, so that exactForm gives the bytes back
 * to the file system. The line is used only when it is the one Node read:
 * as many words, each giving what Node gave when decoded as Node decodes.
 * Otherwise (another system, no /proc, a line rewritten since) the
 * arguments are Node's. Without U+FFFD in them they are exact already, and
 * the line is not read.
 */
export function typedArguments(startedAs: StartedAs = process, commandLine: () => Buffer | undefined = readCommandLine): string[] {
  const given = startedAs.argv.slice(2);
  if (given.every((arg) => !arg.includes('\uFFFD'))) return given;
  const line = commandLine();
  if (line === undefined) return given;
  const words = nulSeparatedWords(line);
  const options = startedAs.execArgv.length;
  if (words.length !== 2 + options + given.length) return given;
  const asNode = (word: Buffer) => word.toString('utf8');
  if (asNode(words[0]) !== startedAs.argv0) return given;
  if (startedAs.execArgv.some((option, i) => asNode(words[1 + i]) !== option)) return given;
  // Node gives the script's path resolved against the current directory.
  const script = asNode(words[1 + options]);
  if (script !== startedAs.argv[1] && path.resolve(script) !== startedAs.argv[1]) return given;
  const typed = words.slice(2 + options);
  if (typed.some((word, i) => asNode(word) !== given[i])) return given;
  return typed.map(nameFromBytes);
}

/** The environment the process started with, as Linux keeps it: `NAME=value` words, each ended by a NUL. */
function readEnvironment(): Buffer | undefined {
  try {
    return readFileSync('/proc/self/environ');
  } catch {
    return undefined;
  }
}

/**
 * An environment variable as it was set, byte for byte, as typedArguments
 * reads the arguments: from /proc/self/environ, when the value there decodes
 * as Node decoded it; else (another system, a value changed since) Node's.
 */
export function typedVariable(name: string, env: NodeJS.ProcessEnv = process.env, environment: () => Buffer | undefined = readEnvironment): string | undefined {
  const value = env[name];
  if (value === undefined || !value.includes('\uFFFD')) return value;
  const words = environment();
  if (words === undefined) return value;
  const prefix = Buffer.from(`${name}=`);
  // The first of two settings of one name is the one Node reads, as getenv(3) does.
  const set = nulSeparatedWords(words).find((word) => word.subarray(0, prefix.length).equals(prefix))?.subarray(prefix.length);
  return set !== undefined && set.toString('utf8') === value ? nameFromBytes(set) : value;
}
