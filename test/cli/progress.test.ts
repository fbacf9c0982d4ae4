import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, kloset, tempDir } from '../helpers/cli.js';
import { MiB, writeRandomFile } from '../helpers/fixtures.js';

const run = promisify(execFile);
const env = { ...process.env, KLOSET_PASSPHRASE: 'progress test', XDG_CACHE_HOME: '' };

/** Runs the CLI with its standard error on a pseudo-terminal (util-linux script), as a user at a shell sees it. */
async function onTerminal(args: string[]): Promise<string> {
  const command = [BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const { stdout } = await run('script', ['-qfec', command, '/dev/null'], { env, maxBuffer: 16 * MiB });
  return stdout;
}

/** The progress lines drawn (each redraw starts with a carriage return and a clear-line sequence). */
const drawn = (output: string) =>
  output
    .split('\r\x1b[K')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

describe('the progress line', () => {
  let dir: string;
  let store: string;
  let source: string;

  beforeAll(async () => {
    dir = await tempDir();
    store = path.join(dir, 'store');
    source = path.join(dir, 'source');
    env.XDG_CACHE_HOME = path.join(dir, 'cache');
    for (let i = 0; i < 3; i++) await fs.mkdir(path.join(source, `sub${i}`), { recursive: true });
    for (let i = 0; i < 12; i++) await writeRandomFile(path.join(source, `sub${i % 3}`, `file${i}.bin`), 12 * MiB);
    expect((await kloset(['at', store, 'create'], { env })).code).toBe(0);
  }, 120_000);
  afterAll(() => fs.rm(dir, { recursive: true, force: true }));

  it('shows files, bytes, rate, percentage and ETA while a backup runs on a terminal', async () => {
    const lines = drawn(await onTerminal(['at', store, 'backup', source]));
    const progress = lines.filter((l) => l.startsWith('backup: '));
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.some((l) => /^backup: \d+ files, [\d.]+ \w+, [\d.]+ \w+\/s, \d+%, ETA /.test(l))).toBe(true);
    expect(lines[lines.length - 1]).toMatch(/^created snapshot [0-9a-f]{8} of /);
  }, 120_000);

  it('shows the same on restore and check', async () => {
    const restored = drawn(await onTerminal(['at', store, 'restore', '-to', path.join(dir, 'restored')]));
    expect(restored.some((l) => /^restore: \d+ files, .*\d+%, ETA /.test(l))).toBe(true);
    expect(restored[restored.length - 1]).toMatch(/^restored 12 files/);
    const checked = drawn(await onTerminal(['at', store, 'check']));
    expect(checked.some((l) => /^check: \d+ packs, .*\d+%, ETA /.test(l))).toBe(true);
    expect(checked[checked.length - 1]).toMatch(/no problems found/);
  }, 120_000);

  it('stays quiet when standard error is not a terminal: only the summary', async () => {
    const result = await kloset(['at', store, 'backup', '--no-parent', source], { env });
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).not.toContain('\r');
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
  }, 120_000);

  it("shows a name's control characters as '?' on a terminal, and gives them as they are to a pipe", async () => {
    const named = path.join(dir, 'named');
    await fs.mkdir(named);
    const evil = 'title\x1b]0;owned\x07red\x1b[31m.txt';
    await fs.writeFile(path.join(named, evil), 'x');
    const backup = await kloset(['at', store, 'backup', named], { env });
    expect(backup.code).toBe(0);
    const onScreen = await onTerminal(['at', store, 'ls', 'latest:/']);
    expect(onScreen).toContain('title?]0;owned?red?[31m.txt');
    expect(onScreen).not.toContain('\x1b');
    const piped = await kloset(['at', store, 'ls', 'latest:/'], { env });
    expect(piped.stdout).toContain(evil);
  }, 120_000);

  it('with --quiet prints nothing but errors and warnings: no summary either', async () => {
    for (const args of [
      ['--quiet', 'at', store, 'backup', source],
      ['at', store, 'restore', '-quiet', '-to', path.join(dir, 'quiet-restore')],
      ['at', store, 'check', '--quiet'],
    ]) {
      const result = await kloset(args, { env });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toBe('');
    }
  }, 120_000);
});
