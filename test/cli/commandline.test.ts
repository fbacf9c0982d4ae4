/**
 * The arguments (and the store's environment variable) kloset acts on are the bytes typed, read from Linux's
 * /proc/self/cmdline, and only when that line is the one Node decoded into
 * process.argv; anywhere else they are Node's own.
 */
import { describe, expect, it } from 'vitest';
import { nulSeparatedWords, typedArguments, typedVariable, type StartedAs } from '../../src/cli/commandline.js';

const latin1 = (text: string) => Buffer.from(text, 'latin1');

/** /proc/self/cmdline for these words: each one's bytes, then a NUL. */
const line = (...words: Buffer[]) => Buffer.concat(words.flatMap((word) => [word, Buffer.of(0)]));

/**
 * How Node starts the program through its shebang: node, two options, the script as the shell found it
 * (process.argv has it resolved), then `args` as Node decodes them.
 */
function startedWith(args: Buffer[]): { startedAs: StartedAs; commandLine: Buffer } {
  const execArgv = ['--max-semi-space-size=2', '--initial-old-space-size=48'];
  return {
    startedAs: { argv0: 'node', execArgv, argv: ['/usr/bin/node', `${process.cwd()}/bin/kloset.js`, ...args.map((arg) => arg.toString('utf8'))] },
    commandLine: line(Buffer.from('node'), ...execArgv.map((option) => Buffer.from(option)), Buffer.from('bin/kloset.js'), ...args),
  };
}

describe('the arguments typed', () => {
  it('keep the bytes that are not UTF-8, as the surrogate escapes names use', () => {
    const { startedAs, commandLine } = startedWith([Buffer.from('backup'), latin1('/srv/caf\xe9'), Buffer.from('-tag'), Buffer.from('été')]);
    expect(startedAs.argv[3]).toBe('/srv/caf\uFFFD');
    expect(typedArguments(startedAs, () => commandLine)).toEqual(['backup', '/srv/caf\udce9', '-tag', 'été']);
  });

  it('keep empty arguments in their places', () => {
    const { startedAs, commandLine } = startedWith([Buffer.from(''), latin1('\xff'), Buffer.from('')]);
    expect(typedArguments(startedAs, () => commandLine)).toEqual(['', '\udcff', '']);
    expect(nulSeparatedWords(commandLine).map((word) => word.toString('latin1'))).toEqual([
      'node', '--max-semi-space-size=2', '--initial-old-space-size=48', 'bin/kloset.js', '', '\xff', '',
    ]);
  });

  it("are Node's when they are all UTF-8, without reading the command line", () => {
    const { startedAs } = startedWith([Buffer.from('ls'), Buffer.from('latest:/été')]);
    let read = false;
    expect(typedArguments(startedAs, () => ((read = true), undefined))).toEqual(['ls', 'latest:/été']);
    expect(read).toBe(false);
  });

  it("are Node's when there is no command line to read (another system, no /proc)", () => {
    const { startedAs } = startedWith([latin1('caf\xe9')]);
    expect(typedArguments(startedAs, () => undefined)).toEqual(['caf\uFFFD']);
  });

  it("are Node's when the command line is not the one Node read", () => {
    const { startedAs, commandLine } = startedWith([Buffer.from('ls'), latin1('caf\xe9')]);
    const words = nulSeparatedWords(commandLine);
    const variants = [
      line(...words.slice(0, -1)), // a word fewer
      line(...words, Buffer.from('more')), // a word more
      line(...words.slice(0, -2), Buffer.from('rm'), words[words.length - 1]), // another argument
      line(Buffer.from('nodejs'), ...words.slice(1)), // another program
      line(words[0], Buffer.from('--stack-size=100'), ...words.slice(2)), // another option of node's
      line(...words.slice(0, 3), Buffer.from('other.js'), ...words.slice(4)), // another script
    ];
    for (const variant of variants) expect(typedArguments(startedAs, () => variant)).toEqual(['ls', 'caf\uFFFD']);
  });
});

describe('an environment variable as set', () => {
  const environ = line(Buffer.from('HOME=/home/me'), Buffer.concat([Buffer.from('KLOSET_REPOSITORY='), latin1('/srv/d\xe9p\xf4t')]), Buffer.from('KLOSET_REPOSITORY=/second'));

  it('keeps the bytes that are not UTF-8', () => {
    expect(typedVariable('KLOSET_REPOSITORY', { KLOSET_REPOSITORY: '/srv/d\uFFFDp\uFFFDt' }, () => environ)).toBe('/srv/d\udce9p\udcf4t');
  });

  it("is Node's when it is UTF-8, unset, changed since, or where there is no /proc", () => {
    expect(typedVariable('HOME', { HOME: '/home/me' }, () => environ)).toBe('/home/me');
    expect(typedVariable('KLOSET_REPOSITORY', {}, () => environ)).toBeUndefined();
    expect(typedVariable('KLOSET_REPOSITORY', { KLOSET_REPOSITORY: '/other\uFFFD' }, () => environ)).toBe('/other\uFFFD');
    expect(typedVariable('KLOSET_REPOSITORY', { KLOSET_REPOSITORY: '/srv/d\uFFFDp\uFFFDt' }, () => undefined)).toBe('/srv/d\uFFFDp\uFFFDt');
    expect(typedVariable('PLAKAR_REPOSITORY', { PLAKAR_REPOSITORY: '/srv/d\uFFFDp\uFFFDt' }, () => environ)).toBe('/srv/d\uFFFDp\uFFFDt');
  });
});
