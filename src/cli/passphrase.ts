import { promises as fs } from 'node:fs';
import { KlosetError, systemReason, UsageError } from '../errors.js';
import { exactForm } from '../snapshot/names.js';
import { requireCurrentDirectoryFor } from '../threads.js';

/** What was typed or pasted after the line a prompt took: the next prompt's answer (both lines of a paste). */
let typedAhead = '';

/** Reads a line from the terminal without echo. */
async function promptHidden(question: string, kind: PassphraseKind): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new KlosetError(`a ${kind.label} is needed: set ${kind.envNames[0]} or use ${kind.fileOption}`);
  // Echo off before the question shows: an answer typed as soon as it appears must not reach the screen.
  stdin.setRawMode(true);
  process.stderr.write(question);
  stdin.resume();
  stdin.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    /** True once the line is complete (or interrupted). */
    const consume = (text: string): boolean => {
      for (let i = 0; i < text.length; i++) {
        const ch = text[i]!;
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          const rest = text.slice(i + 1);
          typedAhead = ch === '\r' && rest.startsWith('\n') ? rest.slice(1) : rest;
          done();
          resolve(value);
          return true;
        }
        if (ch === '\u0003') {
          done();
          reject(new KlosetError('interrupted', { exitCode: 130 }));
          return true;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
      return false;
    };
    const onData = (text: string) => void consume(text);
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const ahead = typedAhead;
    typedAhead = '';
    if (!consume(ahead)) stdin.on('data', onData);
  });
}

/** All of standard input (a pipe or socket: opening /dev/stdin fails on a socket). */
async function readStdin(): Promise<string> {
  let text = '';
  process.stdin.setEncoding('utf8');
  for await (const piece of process.stdin) text += piece;
  return text;
}

export interface PassphraseSource {
  passphraseFile?: string;
  /** The `passphrase` key of the store's alias, as Plakar keeps one in a store's configuration. */
  fromAlias?: string;
  env?: NodeJS.ProcessEnv;
}

/** Where a passphrase comes from when no file is given, and what to call it. */
interface PassphraseKind {
  label: string;
  envNames: string[];
  fileOption: string;
}

const STORE_PASSPHRASE: PassphraseKind = {
  label: 'passphrase',
  envNames: ['KLOSET_PASSPHRASE', 'PLAKAR_PASSPHRASE'],
  fileOption: '--passphrase-file',
};

const NEW_PASSPHRASE: PassphraseKind = { label: 'new passphrase', envNames: ['KLOSET_NEW_PASSPHRASE'], fileOption: '--new-passphrase-file' };

/** --passphrase-file (`-` for standard input), the store alias's, KLOSET_PASSPHRASE, PLAKAR_PASSPHRASE, then the terminal. */
export async function readPassphrase(source: PassphraseSource, confirm = false, kind = STORE_PASSPHRASE): Promise<string> {
  const env = source.env ?? process.env;
  if (source.passphraseFile === '-') return nonEmpty((await readStdin()).replace(/\r?\n$/, ''), `the ${kind.label} read from standard input`);
  // `--passphrase-file "$UNSET"` must not fall back to the environment or the terminal unsaid.
  if (source.passphraseFile === '') throw new UsageError(`${kind.fileOption}: empty file name`);
  if (source.passphraseFile !== undefined) {
    requireCurrentDirectoryFor(source.passphraseFile);
    let text: string;
    try {
      text = await fs.readFile(exactForm(source.passphraseFile), 'utf8');
    } catch (err) {
      throw new KlosetError(`cannot read ${kind.label} file ${source.passphraseFile}: ${systemReason(err)}`);
    }
    return nonEmpty(text.replace(/\r?\n$/, ''), `${kind.label} file ${source.passphraseFile}`);
  }
  if (source.fromAlias !== undefined) return nonEmpty(source.fromAlias, "the alias's passphrase");
  for (const name of kind.envNames) {
    // Set but empty (KLOSET_PASSPHRASE=$UNSET): a store created so would be encrypted under no secret at all.
    if (env[name] !== undefined) return confirm ? nonEmpty(env[name]!, name) : env[name]!;
  }
  const first = await promptHidden(`${kind.label}: `, kind);
  if (confirm) {
    const second = await promptHidden(`${kind.label} (again): `, kind);
    if (first !== second) throw new KlosetError('passphrases do not match');
  }
  if (first === '') throw new KlosetError(`empty ${kind.label}`);
  return first;
}

function nonEmpty(passphrase: string, from: string): string {
  if (passphrase === '') throw new KlosetError(`${from} is empty`);
  return passphrase;
}

const PEER_PASSPHRASE: PassphraseKind = {
  label: "other store's passphrase",
  envNames: ['KLOSET_PEER_PASSPHRASE'],
  fileOption: '--peer-passphrase-file',
};

/** For sync's other store: --peer-passphrase-file or KLOSET_PEER_PASSPHRASE; without either, `same` (this store's). */
export async function readPeerPassphrase(
  file: string | undefined,
  same: () => Promise<string>,
  fromAlias?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  if (file === undefined && fromAlias === undefined && env.KLOSET_PEER_PASSPHRASE === undefined) return same();
  return readPassphrase({ passphraseFile: file, fromAlias, env }, false, PEER_PASSPHRASE);
}

/** For passwd: --new-passphrase-file, KLOSET_NEW_PASSPHRASE, or asked twice on the terminal; never empty. */
export async function readNewPassphrase(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const passphrase = await readPassphrase({ passphraseFile: file, env }, true, NEW_PASSPHRASE);
  if (passphrase === '') throw new KlosetError('empty new passphrase');
  return passphrase;
}
