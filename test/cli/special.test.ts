/**
 * FIFOs and device nodes are backed up as what they are (never opened, so a
 * FIFO cannot hang the backup) and restored as what they were: type, device
 * numbers, mode and mtime. Sockets are recorded and skipped on restore.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

const PAST = new Date('2020-01-02T03:04:05Z');

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
let socketServer: net.Server;

beforeAll(async () => {
  work = await tempDir('kloset-special-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(path.join(source, 'dev'), { recursive: true });
  await fs.writeFile(path.join(source, 'plain.txt'), 'beside the special files\n');
  execFileSync('mkfifo', ['-m', '640', path.join(source, 'queue')]);
  // The device numbers of /dev/null (1, 3) and /dev/loop0 (7, 0): a character and a block device.
  execFileSync('mknod', ['-m', '600', path.join(source, 'dev', 'null-like'), 'c', '1', '3']);
  execFileSync('mknod', ['-m', '660', path.join(source, 'dev', 'loop-like'), 'b', '7', '0']);
  for (const rel of ['queue', 'dev/null-like', 'dev/loop-like']) await fs.utimes(path.join(source, rel), PAST, PAST);
  socketServer = net.createServer();
  await new Promise<void>((resolve) => socketServer.listen(path.join(source, 'control.sock'), resolve));
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
}, 60_000);

afterAll(async () => {
  await new Promise<void>((resolve) => socketServer.close(() => resolve()));
  await fs.rm(work, { recursive: true, force: true });
});

describe('special files', () => {
  let target: string;

  it('are backed up without being opened', async () => {
    const result = await kloset(['at', store, 'backup', source]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  }, 60_000);

  it('come back from a restore as the FIFO and devices they were', async () => {
    target = path.join(work, 'restored');
    const result = await kloset(['at', store, 'restore', '-to', target]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    for (const [rel, check] of [
      ['queue', (s: import('node:fs').Stats) => s.isFIFO()],
      ['dev/null-like', (s: import('node:fs').Stats) => s.isCharacterDevice()],
      ['dev/loop-like', (s: import('node:fs').Stats) => s.isBlockDevice()],
    ] as const) {
      const original = await fs.lstat(path.join(source, rel));
      const restored = await fs.lstat(path.join(target, rel));
      expect(check(restored), rel).toBe(true);
      expect(restored.mode, rel).toBe(original.mode);
      expect(restored.rdev, rel).toBe(original.rdev);
      expect(restored.mtimeMs, rel).toBe(original.mtimeMs);
    }
    expect(await fs.readFile(path.join(target, 'plain.txt'), 'utf8')).toBe('beside the special files\n');
  }, 60_000);

  it('leave a socket out of the restore', async () => {
    await expect(fs.lstat(path.join(target, 'control.sock'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
