/**
 * A stream backed up as one file, as restic's backup --stdin and
 * --stdin-from-command: a dump piped in, or a command's output. A stream
 * cannot be read twice, so a command that fails, or an interrupt, leaves no
 * snapshot.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKloset, tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
const env = () => ({ XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') });

async function snapshotCount(): Promise<number> {
  const listed = await kloset(['at', store, 'ls', '--json']);
  expect(listed.code).toBe(0);
  return (JSON.parse(listed.stdout) as unknown[]).length;
}

/** The pid the command wrote to `pidFile`, once it has written it and its first output has had time to flow. */
async function commandStarted(pidFile: string): Promise<number> {
  let pid = 0;
  for (let tries = 0; !pid && tries < 200; tries++) {
    pid = Number(await fs.readFile(pidFile, 'utf8').catch(() => '0'));
    if (!pid) await new Promise((r) => setTimeout(r, 50));
  }
  expect(pid).toBeGreaterThan(0);
  await new Promise((r) => setTimeout(r, 500));
  return pid;
}

/** Whether the process, or with a negative id the process group, still exists (a zombie not yet reaped counts). */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits for each process (or group, with a negative id) to be gone, for at most `ms`: an ended one is reaped by init, here and there late. */
async function allGone(pids: number[], ms = 4000): Promise<boolean> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    if (!pids.some(exists)) return true;
  }
  return !pids.some(exists);
}

/** Sends SIGKILL to what a failed test may have left. */
function cleanUp(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
}

beforeAll(async () => {
  work = await tempDir('kloset-stdin-');
  kloset = klosetWith(env());
  store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('backup -stdin', () => {
  it('keeps standard input as one file of the given name, byte for byte, owned by the user', async () => {
    // Several chunks: the content-defined chunker cuts at 1 MiB on average.
    const dump = randomBytes(5 * 1024 * 1024 + 123);
    const result = await kloset(['at', store, 'backup', '-stdin', '-stdin-filename', 'db.dump', '-tag', 'db'], { input: dump });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/created snapshot [0-9a-f]{8} of stdin:\/db\.dump: 1 file/);

    const listed = await kloset(['at', store, 'ls', '--json', '-tag', 'db']);
    const [header] = JSON.parse(listed.stdout) as { source: string; importer: string }[];
    expect(header.source).toBe('stdin:/db.dump');
    const entries = JSON.parse((await kloset(['at', store, 'ls', '--json', 'latest'])).stdout) as { name: string; uid: number; mode: string; size: number }[];
    expect(entries.map((e) => [e.name, e.size, e.uid])).toEqual([['db.dump', dump.length, os.userInfo().uid]]);

    const cat = await kloset(['at', store, 'cat', 'latest:/db.dump']);
    expect(cat.code).toBe(0);
    expect(cat.stdoutBytes.equals(dump)).toBe(true);

    const target = path.join(work, 'restored');
    expect((await kloset(['at', store, 'restore', '-to', target, 'latest'])).code).toBe(0);
    expect(await fs.readdir(target)).toEqual(['db.dump']);
    const restored = path.join(target, 'db.dump');
    expect((await fs.readFile(restored)).equals(dump)).toBe(true);
    expect((await fs.stat(restored)).mode & 0o777).toBe(0o644);
  });

  it('reads standard input for a path of -, as rustic does', async () => {
    const result = await kloset(['at', store, 'backup', '-', '-stdin-filename', 'dash.txt'], { input: 'from a pipe\n' });
    expect(result.code).toBe(0);
    expect((await kloset(['at', store, 'cat', 'latest:/dash.txt'])).stdout).toBe('from a pipe\n');
  });

  it('names the file "stdin" by default, and keeps an empty input as an empty file', async () => {
    const result = await kloset(['at', store, 'backup', '--stdin'], { input: '' });
    expect(result.code).toBe(0);
    const entries = JSON.parse((await kloset(['at', store, 'ls', '--json', 'latest'])).stdout) as { name: string; size: number }[];
    expect(entries.map((e) => [e.name, e.size])).toEqual([['stdin', 0]]);
  });
});

describe('backup -stdin-from-command', () => {
  it("keeps the command's output, and gives the command no passphrase", async () => {
    const script = 'seq 1 200000; env | grep -c PASSPHRASE || true';
    const result = await kloset(['at', store, 'backup', '-stdin-from-command', '-stdin-filename', 'out.txt', '--', 'sh', '-c', script], {
      env: { PLAKAR_PASSPHRASE: 'also secret' },
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const cat = await kloset(['at', store, 'cat', 'latest:/out.txt']);
    const lines = cat.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(200_001);
    expect(lines[199_999]).toBe('200000');
    expect(lines[200_000]).toBe('0');
  });

  it('creates no snapshot when the command fails, and says why in one line', async () => {
    const before = await snapshotCount();
    const result = await kloset(['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', 'seq 1 50000; exit 3']);
    expect(result.code).not.toBe(0);
    expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/exited with status 3; the backup stopped and created no snapshot$/)]);
    expect(await snapshotCount()).toBe(before);
  });

  it('creates no snapshot when the command does not exist', async () => {
    const before = await snapshotCount();
    const result = await kloset(['at', store, 'backup', '-stdin-from-command', '--', 'no-such-command-here', 'x']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/^kloset: .*no-such-command-here: command not found; the backup stopped and created no snapshot\n$/);
    expect(await snapshotCount()).toBe(before);
  });

  it('stops the command when interrupted while it writes nothing, and creates no snapshot', async () => {
    const before = await snapshotCount();
    const pidFile = path.join(work, 'command.pid');
    const { child, done } = startKloset(
      ['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', `echo $$ > ${pidFile}; seq 1 1000; exec sleep 60`],
      { env: env() },
    );
    const pid = await commandStarted(pidFile);
    child.kill('SIGINT');
    const result = await done;
    expect(result.code).toBe(130);
    expect(result.stderr).toContain('backup interrupted: no snapshot was created');
    expect(await allGone([pid])).toBe(true);
    expect(await snapshotCount()).toBe(before);
  });

  it('stops what the command started when terminated, though it holds the output open', async () => {
    const before = await snapshotCount();
    const pidFile = path.join(work, 'grandchild.pid');
    // No exec: the shell is the command, and the sleep it waits for keeps the pipe open.
    const { child } = startKloset(['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', `seq 1 1000; sleep 40 & echo $! > ${pidFile}; wait`], {
      env: env(),
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const pid = await commandStarted(pidFile);
    try {
      const started = Date.now();
      child.kill('SIGTERM');
      expect(await exited).toBe(130);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await allGone([pid])).toBe(true);
    } finally {
      cleanUp([pid]);
    }
    expect(await snapshotCount()).toBe(before);
  });

  it('hands a Ctrl-C on to the whole process group of the command, and leaves none of it running', async () => {
    const before = await snapshotCount();
    const shellFile = path.join(work, 'group-shell.pid');
    const sleepFile = path.join(work, 'group-sleep.pid');
    const { child, done } = startKloset(
      ['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', `echo $$ > ${shellFile}; sleep 300 & echo $! > ${sleepFile}; seq 1 1000; wait`],
      { env: env() },
    );
    const sleep = await commandStarted(sleepFile);
    const shell = Number(await fs.readFile(shellFile, 'utf8'));
    try {
      // A group of its own, led by the command: no longer kloset's, which the terminal signals.
      const group = Number((await fs.readFile(`/proc/${sleep}/stat`, 'latin1')).split(') ')[1].split(' ')[2]);
      expect(group).toBe(shell);
      expect(group).not.toBe(child.pid);
      const started = Date.now();
      child.kill('SIGINT');
      const result = await done;
      expect(result.code).toBe(130);
      expect(result.stderr).toContain('backup interrupted: no snapshot was created');
      expect(Date.now() - started).toBeLessThan(4000);
      expect(await allGone([shell, sleep, -group])).toBe(true);
    } finally {
      cleanUp([shell, sleep]);
    }
    expect(await snapshotCount()).toBe(before);
  });

  it('kills a command that ignores SIGINT and SIGTERM after 5 seconds, or at a second Ctrl-C', async () => {
    for (const again of [false, true]) {
      const pidFile = path.join(work, `stubborn-${again}.pid`);
      // An ignored signal stays ignored across exec.
      const { child } = startKloset(
        ['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', `trap '' INT TERM; echo $$ > ${pidFile}; seq 1 1000; exec sleep 60`],
        { env: env() },
      );
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const pid = await commandStarted(pidFile);
      try {
        const started = Date.now();
        child.kill('SIGINT');
        if (again) {
          await new Promise((r) => setTimeout(r, 500));
          expect(exists(pid)).toBe(true);
          child.kill('SIGINT');
        }
        expect(await exited).toBe(130);
        const took = Date.now() - started;
        if (again) expect(took).toBeLessThan(3000);
        else expect(took).toBeGreaterThanOrEqual(4500);
        expect(took).toBeLessThan(15_000);
        expect(await allGone([pid])).toBe(true);
      } finally {
        cleanUp([pid]);
      }
    }
  });

  it('hands a hangup on to the command, and ends without a snapshot', async () => {
    const before = await snapshotCount();
    const pidFile = path.join(work, 'hangup.pid');
    const { child, done } = startKloset(['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', `echo $$ > ${pidFile}; seq 1 1000; exec sleep 60`], {
      env: env(),
    });
    const pid = await commandStarted(pidFile);
    try {
      child.kill('SIGHUP');
      const result = await done;
      expect(result.code).toBe(1);
      expect(result.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/: killed by SIGHUP; the backup stopped and created no snapshot$/)]);
      expect(await allGone([pid])).toBe(true);
    } finally {
      cleanUp([pid]);
    }
    expect(await snapshotCount()).toBe(before);
  });

  it('keeps what a process the command started writes after the command has exited, as a pipe reader would', async () => {
    // bash's `> >(gzip)` and `cmd &` leave a writer behind the shell: its output is the command's too.
    const result = await kloset(['at', store, 'backup', '-stdin-from-command', '-stdin-filename', 'late.txt', '--', 'sh', '-c', '(sleep 1; seq 1001 2000) & seq 1 1000']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = (await kloset(['at', store, 'cat', 'latest:/late.txt'])).stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2000);
    expect(lines[1999]).toBe('2000');
  });

  it('stops, at the end of the output, a process the command started that no longer holds it', async () => {
    const pidFile = path.join(work, 'left.pid');
    const result = await kloset(['at', store, 'backup', '-stdin-from-command', '-stdin-filename', 'left.txt', '--', 'sh', '-c', `seq 1 1000; sleep 300 >/dev/null & echo $! > ${pidFile}`]);
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    try {
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(await allGone([pid])).toBe(true);
    } finally {
      cleanUp([pid]);
    }
    const lines = (await kloset(['at', store, 'cat', 'latest:/left.txt'])).stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(1000);
  });

  it("passes the command's standard error on as it comes", async () => {
    const result = await kloset(['at', store, 'backup', '-stdin-from-command', '--', 'sh', '-c', 'echo "pg_dump: a notice" >&2; seq 1 10']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('pg_dump: a notice\n');
  });
});

describe('backup -stdin usage', () => {
  it.each([
    [['-stdin', 'somewhere'], /-stdin backs up standard input: no path/],
    [['-stdin', '-stdin-from-command', '--', 'true'], /choose one/],
    [['-stdin-from-command'], /give the command after --/],
    [['-stdin', '-stdin-filename', 'a/b'], /holds a slash/],
    [['-stdin', '-stdin-filename', '..'], /cannot name a file/],
    [['-stdin-filename', 'x', '.'], /-stdin-filename names what -stdin or -stdin-from-command reads/],
    [['-stdin', '-exclude', '*.tmp'], /-exclude applies to a directory, not to -stdin/],
    [['/tmp', '/etc'], /back up one directory or bucket at a time/],
    [['-stdin', '--passphrase-file', '-'], /standard input cannot carry both/],
    [['-', '--passphrase-file', '-'], /standard input cannot carry both/],
  ])('refuses %j in one line', async (args, message) => {
    const before = await snapshotCount();
    const result = await kloset(['at', store, 'backup', ...args], { input: 'data' });
    expect(result.code).toBe(2);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(message);
    expect(await snapshotCount()).toBe(before);
  });
});
