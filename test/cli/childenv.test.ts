/**
 * The programs kloset starts get no store passphrase in their environment:
 * the desktop's browser (through xdg-open) keeps it for its whole life and
 * hands it to everything it starts, and mkfifo or mknod have no use for it.
 * Each is replaced here, first in PATH, by a script that writes down the
 * environment it was given.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKloset, tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

const PASSPHRASE = 'test passphrase';

let work: string;
let store: string;
let bin: string;
let kloset: ReturnType<typeof klosetWith>;
let env: NodeJS.ProcessEnv;

/** A program of that name that writes its environment and arguments to `<name>.env`, then runs the real one (if any). */
async function spy(name: string, real?: string): Promise<string> {
  const log = path.join(work, `${name}.env`);
  await fs.writeFile(
    path.join(bin, name),
    `#!/bin/sh\nenv > '${log}'\necho "ARGS $*" >> '${log}'\n${real ? `exec ${real} "$@"\n` : ''}`,
    { mode: 0o755 },
  );
  return log;
}

async function waitFor(file: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const text = await fs.readFile(file, 'utf8').catch(() => undefined);
    if (text?.includes('ARGS')) return text;
    await delay(50);
  }
  throw new Error(`${file} was never written`);
}

beforeAll(async () => {
  work = await tempDir('kloset-childenv-');
  store = path.join(work, 'store');
  bin = path.join(work, 'bin');
  await fs.mkdir(bin);
  env = {
    XDG_CACHE_HOME: path.join(work, 'cache'),
    XDG_CONFIG_HOME: path.join(work, 'config'),
    KLOSET_PASSPHRASE: PASSPHRASE,
    KLOSET_PEER_PASSPHRASE: 'peer passphrase',
    PATH: `${bin}:${process.env.PATH}`,
  };
  kloset = klosetWith(env);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
}, 60_000);

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('the environment of the programs kloset starts', () => {
  it('holds no passphrase for the browser the viewer opens', async () => {
    const log = await spy('xdg-open');
    const { child, done } = startKloset(['at', store, 'ui'], { env: { ...env, DISPLAY: ':99' } });
    const seen = await waitFor(log);
    child.kill('SIGINT');
    expect((await done).code).toBe(0);
    expect(seen).toMatch(/ARGS .*open\.html/); // the opener did run, with the page that redirects
    expect(seen).not.toContain('PASSPHRASE');
    expect(seen).not.toContain(PASSPHRASE);
  }, 60_000);

  it('holds no passphrase for mkfifo during a restore', async () => {
    const source = path.join(work, 'source');
    await fs.mkdir(source);
    execFileSync('mkfifo', [path.join(source, 'queue')]);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const real = execFileSync('sh', ['-c', 'command -v mkfifo'], { encoding: 'utf8' }).trim();
    const log = await spy('mkfifo', real);
    const target = path.join(work, 'restored');
    const result = await kloset(['at', store, 'restore', '-to', target]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((await fs.lstat(path.join(target, 'queue'))).isFIFO()).toBe(true);
    const seen = await waitFor(log);
    expect(seen).not.toContain('PASSPHRASE');
    expect(seen).not.toContain(PASSPHRASE);
  }, 60_000);
});
