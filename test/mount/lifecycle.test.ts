/**
 * Mounting and unmounting as users do it: in the foreground until a signal,
 * in the background until `fusermount -u`; a mount point left by a killed
 * process; mount points and paths that cannot be mounted.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, tempDir, type CliResult } from '../helpers/cli.js';
import { expectOneLineError, klosetWith, startKloset } from '../helpers/fixtures.js';
import { isMountPoint, mountCli, processGone, storeWithSnapshot, trackMount, unmountAll } from '../helpers/mount.js';

const run = promisify(execFile);

let work: string;
let store: string;
let id: string;
/** The same source in a plaintext store: no passphrase to hand to a background process. */
let plainStore: string;
let plainId: string;
let kloset: ReturnType<typeof klosetWith>;
const env: NodeJS.ProcessEnv = {};

async function waitUntil(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

async function newMountpoint(name: string): Promise<string> {
  const dir = path.join(work, name);
  await fs.mkdir(dir);
  return dir;
}

beforeAll(async () => {
  work = await tempDir('kloset-mount-life-');
  const source = path.join(work, 'source');
  env.XDG_CACHE_HOME = path.join(work, 'cache');
  env.KLOSET_PASSPHRASE = 'test passphrase';
  kloset = klosetWith(env);
  await fs.mkdir(path.join(source, 'dir'), { recursive: true });
  await fs.writeFile(path.join(source, 'hello.txt'), 'hello\n');
  await fs.writeFile(path.join(source, 'dir/inner.txt'), 'inner\n');
  store = path.join(work, 'store');
  id = await storeWithSnapshot(store, source, { passphrase: env.KLOSET_PASSPHRASE });
  plainStore = path.join(work, 'plain-store');
  plainId = await storeWithSnapshot(plainStore, source);
});

afterAll(async () => {
  await unmountAll();
  await fs.rm(work, { recursive: true, force: true });
});

describe('a mount point left by a process killed with SIGKILL', () => {
  it('answers ENOTCONN, and the next mount clears it and mounts', async () => {
    const mnt = await newMountpoint('mnt-killed');
    const first = await mountCli(store, mnt, [id], { env });
    expect(await fs.readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello\n');
    const killed = await first.stop('SIGKILL');
    expect(killed.signal).toBe('SIGKILL');
    // What the user sees before running kloset again:
    await expect(fs.stat(mnt)).rejects.toMatchObject({ code: 'ENOTCONN' });
    expect(await isMountPoint(mnt)).toBe(true);

    const second = await mountCli(store, mnt, [id], { env });
    expect(await fs.readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello\n');
    const result = await second.stop();
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(await isMountPoint(mnt)).toBe(false);
    expect(await fs.readdir(mnt)).toEqual([]);
  });
});

describe('--background', () => {
  let mnt: string;
  let pid: number;

  /** `mount --background`: the pid it names is tracked for the safety net. */
  async function background(store: string, dir: string, args: string[]) {
    const result = await kloset(['at', store, 'mount', dir, ...args, '--background']);
    const match = /mounted in the background \(pid (\d+)\); unmount with 'fusermount -u (.+)'/.exec(result.stdout);
    if (match) trackMount(dir, Number(match[1]));
    return { result, pid: match ? Number(match[1]) : undefined, hint: match?.[2] };
  }

  it('returns once mounted, naming the process and how to unmount', async () => {
    mnt = await newMountpoint('mnt-background');
    const started = await background(plainStore, mnt, [plainId]);
    expect(started.result.code, started.result.stderr).toBe(0);
    expect(started.result.stderr).toBe('');
    expect(started.pid).toBeDefined();
    expect(started.hint).toBe(mnt);
    pid = started.pid!;
    expect(await isMountPoint(mnt)).toBe(true);
    expect(await fs.readFile(path.join(mnt, 'dir/inner.txt'), 'utf8')).toBe('inner\n');
  });

  it('is unmounted by `fusermount -u`', async () => {
    expect(pid).toBeDefined();
    await run('fusermount', ['-u', mnt]);
    expect(await isMountPoint(mnt)).toBe(false);
    expect(await fs.readdir(mnt)).toEqual([]);
  });

  it('exits once `fusermount -u` has unmounted it, instead of lingering', async () => {
    expect(pid).toBeDefined();
    expect(await waitUntil(() => processGone(pid), 10_000), `background mount process ${pid} still running 10 s after its unmount`).toBe(true);
  });

  it('mounts an encrypted store, the passphrase handed over to the background process', async () => {
    const dir = await newMountpoint('mnt-background-encrypted');
    const started = await background(store, dir, [id]);
    expect(started.result.stderr).toBe('');
    expect(started.result.code).toBe(0);
    expect(await fs.readFile(path.join(dir, 'hello.txt'), 'utf8')).toBe('hello\n');
    await run('fusermount', ['-u', dir]);
    expect(await isMountPoint(dir)).toBe(false);
  });

  it('names the mount point to unmount when options come before it, as in the README', async () => {
    const dir = await newMountpoint('mnt-background-options-first');
    const result = await kloset(['at', plainStore, 'mount', '--cache-size', '64M', '--background', '-o', 'debug', dir, plainId]);
    const match = /mounted in the background \(pid (\d+)\); unmount with 'fusermount -u (.+)'/.exec(result.stdout);
    if (match) trackMount(dir, Number(match[1]));
    expect(result.code, result.stderr).toBe(0);
    expect(match?.[2]).toBe(dir);
    await run('fusermount', ['-u', match![2]]);
    expect(await isMountPoint(dir)).toBe(false);
  });

  it('reports a failure to mount in the command itself, and leaves nothing behind', async () => {
    const dir = await newMountpoint('mnt-background-bad');
    const started = await background(plainStore, dir, ['ffffffff']);
    expect(started.result.code).toBe(1);
    expectOneLineError(started.result, /no snapshot with id ffffffff/);
    expect(await isMountPoint(dir)).toBe(false);
  });
});

describe('a foreground mount', () => {
  it('exits 0 when someone else unmounts it with `fusermount -u`', async () => {
    const mnt = await newMountpoint('mnt-external-unmount');
    const mount = await mountCli(store, mnt, [id], { env });
    await run('fusermount', ['-u', mnt]);
    expect(await isMountPoint(mnt)).toBe(false);
    // The mount looks for an unmount from outside every second; the rest is margin for a loaded machine.
    const exited = await Promise.race([mount.done, new Promise<'running'>((r) => setTimeout(() => r('running'), 10_000))]);
    expect(exited === 'running' ? 'still running 10 s after the unmount' : { code: exited.code }).toEqual({ code: 0 });
  });

  it('whose output is gone before it says "mounted" unmounts, and ends as SIGPIPE would', async () => {
    const mnt = await newMountpoint('mnt-output-gone');
    const { child, done } = startKloset(['at', store, 'mount', mnt, id], { env });
    trackMount(mnt, child.pid);
    child.stdout!.destroy(); // `kloset mount … | true`
    const result = await done;
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 141, stderr: '' });
    expect(await isMountPoint(mnt)).toBe(false);
    // Not a dead mount (ENOTCONN): an empty directory again, which mounts.
    expect(await fs.readdir(mnt)).toEqual([]);
    const again = await mountCli(store, mnt, [id], { env });
    expect(await fs.readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(await again.stop()).toMatchObject({ code: 0 });
  });

  it('unmounts on a SIGTERM that comes while it mounts, leaving no dead mount point', async () => {
    // Sent the moment the mount point shows in the mount table: before "mounted" is printed, when a
    // process that has no listener yet ends at once and leaves a mount point answering ENOTCONN.
    const mnt = await newMountpoint('mnt-signal-while-mounting');
    const { child, done } = startKloset(['at', store, 'mount', mnt, id], { env });
    trackMount(mnt, child.pid);
    let exited = false;
    void done.finally(() => (exited = true));
    while (!exited && !(await isMountPoint(mnt)));
    expect(exited, 'the mount ended before its mount point showed').toBe(false);
    child.kill('SIGTERM');
    const result = await done;
    expect({ code: result.code, signal: result.signal, stderr: result.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(result.stdout).toMatch(/^unmounted /m);
    expect(await isMountPoint(mnt)).toBe(false);
    expect(await fs.readdir(mnt)).toEqual([]);
  });

  it('unmounts on a SIGTERM sent the moment it says "mounted"', async () => {
    const mnt = await newMountpoint('mnt-signal-at-mounted');
    const { child, done } = startKloset(['at', store, 'mount', mnt, id], { env });
    trackMount(mnt, child.pid);
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => {
      const before = stdout;
      stdout += d.toString('utf8');
      if (!/^mounted /m.test(before) && /^mounted /m.test(stdout)) child.kill('SIGTERM');
    });
    const result = await done;
    expect({ code: result.code, signal: result.signal, stderr: result.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(result.stdout).toMatch(/^mounted .*\nunmounted /m);
    expect(await isMountPoint(mnt)).toBe(false);
    expect(await fs.readdir(mnt)).toEqual([]);
  });

  it('ends within a bound after SIGTERM when the unmount does not finish, saying how to clear the mount point', async () => {
    // A fusermount that never returns, as one stuck in the kernel would.
    const bin = path.join(work, 'stuck-fusermount');
    await fs.mkdir(bin);
    const pidFile = path.join(bin, 'pid');
    await fs.writeFile(path.join(bin, 'fusermount'), `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 120\n`, { mode: 0o755 });
    const mnt = await newMountpoint('mnt-stuck-unmount');
    const mount = await mountCli(store, mnt, [id], { env: { ...env, PATH: `${bin}:${process.env.PATH}` } });
    try {
      const sentAt = Date.now();
      process.kill(mount.pid, 'SIGTERM');
      const result = await Promise.race([mount.done, new Promise<'running'>((r) => setTimeout(() => r('running'), 40_000))]);
      expect(result, 'still running 40 s after SIGTERM').not.toBe('running');
      const { code, stderr } = result as CliResult;
      expect(Date.now() - sentAt).toBeGreaterThanOrEqual(9_000);
      expect(code).toBe(1);
      const escaped = mnt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      expectOneLineError(result as CliResult, new RegExp(`unmount did not finish within 10 s; .*clear it with 'fusermount -uz ${escaped}'`));
      expect(stderr).toContain('Transport endpoint is not connected');
    } finally {
      // It holds the FUSE connection too (the binding opens /dev/fuse without close-on-exec): once it is gone, the connection ends.
      const stuck = Number((await fs.readFile(pidFile, 'utf8').catch(() => '')).trim());
      if (stuck > 0) {
        process.kill(stuck, 'SIGKILL');
        await waitUntil(() => processGone(stuck), 5_000);
      }
    }
    // Left as a process killed then leaves it, which the next mount clears.
    await expect(fs.stat(mnt)).rejects.toMatchObject({ code: 'ENOTCONN' });
    const again = await mountCli(store, mnt, [id], { env });
    expect(await fs.readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(await again.stop()).toMatchObject({ code: 0 });
  }, 60_000);

  it('refuses a mount point that is already mounted, and the first mount keeps serving', async () => {
    const mnt = await newMountpoint('mnt-twice');
    const first = await mountCli(store, mnt, [id], { env });
    const second = await kloset(['at', store, 'mount', mnt, id]);
    expect(second.code).not.toBe(0);
    expectOneLineError(second, new RegExp(mnt));
    expect(await fs.readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(await first.stop()).toMatchObject({ code: 0 });
    expect(await isMountPoint(mnt)).toBe(false);
  });
});

describe('mount points users give', () => {
  it('one reached through a symlink stays mounted until told, and unmounts then', async () => {
    await newMountpoint('mnt-behind-link');
    const link = path.join(work, 'link-to-work');
    await fs.symlink(work, link);
    const mount = await mountCli(store, path.join(link, 'mnt-behind-link'), [id], { env });
    // The watch for an unmount from outside polls every second: it must not take this one for gone.
    await new Promise((r) => setTimeout(r, 2_500));
    expect(await fs.readFile(path.join(work, 'mnt-behind-link', 'hello.txt'), 'utf8')).toBe('hello\n');
    expect(await mount.stop()).toMatchObject({ code: 0 });
    expect(await isMountPoint(path.join(work, 'mnt-behind-link'))).toBe(false);
  });

  it('one whose name holds shell characters is unmounted, and nothing runs', async () => {
    const canary = path.join(work, 'canary');
    const mnt = await newMountpoint('mnt-$(touch canary)-`id`-"q"');
    const mount = await mountCli(store, mnt, [id], { env, cwd: work });
    expect(await fs.readFile(path.join(mnt, 'hello.txt'), 'utf8')).toBe('hello\n');
    const result = await mount.stop();
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await isMountPoint(mnt)).toBe(false);
    await expect(fs.stat(canary)).rejects.toThrow(/ENOENT/);
  });

  it('with -o allow_other, other users read only what the modes let them', async (ctx) => {
    if (process.getuid?.() !== 0) return ctx.skip();
    const open = path.join(work, 'open-tree');
    await fs.mkdir(open);
    await fs.chmod(work, 0o755); // the way to the mount point, for the other user
    const source = path.join(open, 'source');
    await fs.mkdir(source, { mode: 0o755 });
    await fs.writeFile(path.join(source, 'public.txt'), 'public\n', { mode: 0o644 });
    await fs.writeFile(path.join(source, 'secret.txt'), 'secret\n', { mode: 0o600 });
    await fs.chmod(path.join(source, 'secret.txt'), 0o600);
    const openStore = path.join(open, 'store');
    const openId = await storeWithSnapshot(openStore, source, { passphrase: env.KLOSET_PASSPHRASE });
    const mnt = await newMountpoint('mnt-allow-other');
    const mount = await mountCli(openStore, mnt, [openId, '-o', 'allow_other'], { env });
    const asNobody = (file: string) =>
      run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'cat', path.join(mnt, file)]).then(
        (r) => r.stdout,
        (err: { stderr: string }) => `refused: ${err.stderr.trim()}`,
      );
    expect(await asNobody('public.txt')).toBe('public\n');
    expect(await asNobody('secret.txt')).toMatch(/^refused: .*Permission denied$/);
    expect(await fs.readFile(path.join(mnt, 'secret.txt'), 'utf8')).toBe('secret\n');
    expect(await mount.stop()).toMatchObject({ code: 0 });
  });
});

describe('times', () => {
  it('shows a time before 1970 as the epoch rather than a wrapped far future', async () => {
    const source = path.join(work, 'times-source');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'old.txt'), 'from 1965\n');
    await fs.writeFile(path.join(source, 'new.txt'), 'from 2020\n');
    await fs.utimes(path.join(source, 'old.txt'), new Date('1965-03-01T00:00:00Z'), new Date('1965-03-01T00:00:00Z'));
    await fs.utimes(path.join(source, 'new.txt'), new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
    const timesStore = path.join(work, 'times-store');
    const timesId = await storeWithSnapshot(timesStore, source, { passphrase: env.KLOSET_PASSPHRASE });
    const mnt = await newMountpoint('mnt-times');
    const mount = await mountCli(timesStore, mnt, [timesId], { env });
    expect((await fs.stat(path.join(mnt, 'old.txt'))).mtimeMs).toBe(0);
    expect((await fs.stat(path.join(mnt, 'new.txt'))).mtime.toISOString()).toBe('2020-01-01T00:00:00.000Z');
    expect(await mount.stop()).toMatchObject({ code: 0 });
  });
});

describe('what cannot be mounted', () => {
  it('a mount point that does not exist: one line saying so', async () => {
    const result = await kloset(['at', store, 'mount', path.join(work, 'no-such-dir'), id]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /no-such-dir: mount point does not exist/);
  });

  it('a mount point that is not empty: one line saying so, its files left alone', async () => {
    const dir = await newMountpoint('mnt-not-empty');
    await fs.writeFile(path.join(dir, 'mine.txt'), 'mine\n');
    const result = await kloset(['at', store, 'mount', dir, id]);
    expect(result.code).toBe(1);
    expect(await isMountPoint(dir)).toBe(false);
    expect(await fs.readFile(path.join(dir, 'mine.txt'), 'utf8')).toBe('mine\n');
    expectOneLineError(result, /not empty/);
  });

  it('a path missing from the snapshot: one line naming it', async () => {
    const dir = await newMountpoint('mnt-missing-path');
    const result = await kloset(['at', store, 'mount', dir, `${id}:/nope`]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /\/nope: no such file or directory/);
    expect(await isMountPoint(dir)).toBe(false);
  });

  it('a path to a single file: refused with one line, not a mount point answering EIO', async () => {
    const dir = await newMountpoint('mnt-file');
    // A file cannot be the root of a FUSE mount: the kernel wants a directory there.
    const outcome = await mountCli(store, dir, [`${id}:/hello.txt`], { env }).then(
      async (mount) => {
        const answer = await fs.readdir(dir).then(
          (names) => names.join(', '),
          (err: NodeJS.ErrnoException) => err.code,
        );
        await mount.stop();
        return `mounted, and the mount point answers ${answer}`;
      },
      (err: Error) => err.message,
    );
    expect(outcome).toMatch(/^mount exited \(code 1, signal null\) before mounting:\nkloset: .*hello\.txt.*\n$/);
    expect(await isMountPoint(dir)).toBe(false);
  });
});

/**
 * libfuse.so.2 is a system library (Debian's libfuse2) that the binding
 * links against: a machine without it can still back up, list and restore;
 * only mount needs it, and says so. Simulated by hiding the library behind
 * /dev/null in a private mount namespace (needs root and unshare).
 */
describe('on a machine without libfuse.so.2', () => {
  let library = '';
  let canHide = false;

  /** The CLI with libfuse.so.2 replaced by an empty file, in a mount namespace of its own. */
  async function withoutLibfuse(args: string[]): Promise<CliResult> {
    const command = ['-m', 'sh', '-c', 'mount --bind /dev/null "$0" && exec "$@"', library, process.execPath, BIN, ...args];
    const { stdout, stderr, code } = await run('unshare', command, { env: { ...process.env, ...env } }).then(
      (ok) => ({ ...ok, code: 0 }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({
        stdout: err.stdout ?? '',
        stderr: err.stderr ?? '',
        code: typeof err.code === 'number' ? err.code : null,
      }),
    );
    return { code, signal: null, stdout, stderr, stdoutBytes: Buffer.from(stdout) };
  }

  beforeAll(async () => {
    // The libfuse.so.2 the binding really loads, as the dynamic linker found it.
    const script =
      "require('fuse-native'); const m = /\\S*libfuse\\.so\\.2\\S*/.exec(require('fs').readFileSync('/proc/self/maps', 'utf8')); process.stdout.write(m ? m[0] : '')";
    library = (await run(process.execPath, ['-e', script], { cwd: ROOT })).stdout;
    canHide = library !== '' && (await run('unshare', ['-m', 'true']).then(() => true, () => false));
  });

  it('still lists snapshots: only mount needs the library', async (ctx) => {
    if (!canHide) return ctx.skip('needs root and unshare -m to hide libfuse.so.2');
    const result = await withoutLibfuse(['at', plainStore, 'ls']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(plainId);
  });

  it('refuses to mount with one line saying libfuse2 is missing', async (ctx) => {
    if (!canHide) return ctx.skip('needs root and unshare -m to hide libfuse.so.2');
    const dir = await newMountpoint('mnt-no-libfuse');
    const result = await withoutLibfuse(['at', plainStore, 'mount', dir, plainId]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /libfuse/i);
    expect(await isMountPoint(dir)).toBe(false);
  });
});
