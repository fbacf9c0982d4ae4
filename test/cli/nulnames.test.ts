/**
 * `ls -0` and `locate -0` (`--null`): each name ended by NUL instead of a
 * newline, as find -print0 and locate -0 write them for `xargs -0`, and
 * given exactly: a newline in a name is part of it, and a name that is not
 * UTF-8 comes out as its bytes, not with U+FFFD.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, tempDir } from '../helpers/cli.js';
import { expectOneLineError, klosetWith } from '../helpers/fixtures.js';

const run = promisify(execFile);

const latin1 = (text: string) => Buffer.from(text, 'latin1');
/** NUL-ended records, as exact bytes. */
const records = (...names: (string | Buffer)[]) => Buffer.concat(names.flatMap((name) => [Buffer.from(name), Buffer.of(0)]));

let work: string;
let source: string;
let store: string;
let id: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-nulnames-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(path.join(source, 'sub'), { recursive: true });
  await fs.writeFile(path.join(source, 'two\nlines.txt'), 'a newline in the name\n');
  await fs.writeFile(path.join(source, 'with space.txt'), 'a space\n');
  await fs.writeFile(Buffer.concat([Buffer.from(source + '/'), latin1('caf\xe9.txt')]), 'a Latin-1 name\n');
  await fs.writeFile(path.join(source, 'sub', 'inner.txt'), 'below\n');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  const listed = await kloset(['at', store, 'ls', '--json']);
  id = (JSON.parse(listed.stdout) as { id: string }[])[0].id.slice(0, 8);
});

afterAll(() => fs.rm(work, { recursive: true, force: true }));

describe('ls -0', () => {
  it('prints the names of a directory, each ended by NUL, exactly as stored', async () => {
    const result = await kloset(['at', store, 'ls', '-0', 'latest:/']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdoutBytes).toEqual(records(latin1('caf\xe9.txt'), 'sub', 'two\nlines.txt', 'with space.txt'));
  });

  it('prints the paths below the directory with -R, and --null is the same flag', async () => {
    for (const flags of [['-R', '-0'], ['-R0'], ['--recursive', '--null']]) {
      const result = await kloset(['at', store, 'ls', ...flags, 'latest']);
      expect(result.code).toBe(0);
      expect(result.stdoutBytes).toEqual(records(latin1('caf\xe9.txt'), 'sub', 'sub/inner.txt', 'two\nlines.txt', 'with space.txt'));
    }
  });

  it('hands xargs -0 every name whole', async () => {
    const { stdout } = await run('sh', ['-c', `"$0" at "$1" ls -0 latest:/ | xargs -0 -n 1 printf '[%s]'`, BIN, store], {
      encoding: 'buffer',
      env: { ...process.env, KLOSET_PASSPHRASE: 'test passphrase', XDG_CACHE_HOME: path.join(work, 'cache') },
    });
    expect(stdout).toEqual(Buffer.concat([Buffer.from('['), latin1('caf\xe9.txt'), Buffer.from('][sub][two\nlines.txt][with space.txt]')]));
  });

  it('is refused with --json, and without a snapshot to list', async () => {
    for (const [args, message] of [
      [['ls', '-0', '--json', 'latest'], 'kloset: -0 and --json: choose one'],
      [['ls', '-0'], /^kloset: -0 lists the names in a snapshot/],
    ] as const) {
      const result = await kloset(['at', store, ...args]);
      expect(result.code).toBe(2);
      expectOneLineError(result, message);
      expect(result.stdout).toBe('');
    }
  });
});

describe('locate -0', () => {
  it('prints snapshot:path for every match, each ended by NUL, exactly as stored', async () => {
    for (const flag of ['-0', '--null']) {
      const result = await kloset(['at', store, 'locate', flag, '*.txt', 'sub']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdoutBytes).toEqual(
        records(
          Buffer.concat([Buffer.from(`${id}:/`), latin1('caf\xe9.txt')]),
          `${id}:/sub/`,
          `${id}:/sub/inner.txt`,
          `${id}:/two\nlines.txt`,
          `${id}:/with space.txt`,
        ),
      );
    }
  });
});
