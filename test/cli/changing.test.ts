/**
 * A file written to while the backup reads it (a log, a database without a
 * snapshot of its own) is stored as read, and named in a warning, as tar
 * and borg name it: the copy may mix old and new content.
 */
import { appendFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { MiB, expectNoStackTrace, klosetWith, writeRandomFile } from '../helpers/fixtures.js';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-changing-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  source = path.join(work, 'source');
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'growing.log'), 96 * MiB);
  await fs.writeFile(path.join(source, 'still.txt'), 'not written to\n');
  store = path.join(work, 'store');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a file written to during the backup', () => {
  it('is named in a warning, stored as read, and the backup succeeds', async () => {
    const log = path.join(source, 'growing.log');
    const writer = setInterval(() => appendFileSync(log, 'another line\n'), 1);
    let result;
    try {
      result = await kloset(['at', store, 'backup', source]);
    } finally {
      clearInterval(writer);
    }
    expectNoStackTrace(result);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('warning: /growing.log: changed while it was read: the snapshot holds what was read\n');
    const listed = await kloset(['at', store, 'ls', 'latest:/']);
    expect(listed.stdout).toMatch(/growing\.log/);
  });

  it('is not named once left alone', async () => {
    const result = await kloset(['at', store, 'backup', source]);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
  });
});

describe('a file removed during the backup', () => {
  it('is said to have vanished when it goes between its read and that of its attributes', async () => {
    const dir = path.join(work, 'removed');
    await fs.mkdir(dir);
    const file = path.join(dir, 'gone.txt');
    await fs.writeFile(file, 'read, then removed\n');
    await fs.writeFile(path.join(dir, 'kept.txt'), 'kept\n');
    // The kernel's own answer once the file is gone: strace gives it to every attribute call on that file.
    const calls = 'llistxattr,listxattr,lgetxattr,getxattr';
    const inject = ['-f', '-qq', '-o', '/dev/null', '-P', file, '-e', `trace=${calls}`, '-e', `inject=${calls}:error=ENOENT`];
    const result = await kloset(['at', store, 'backup', dir], { through: ['strace', ...inject] });
    expectNoStackTrace(result);
    expect(result.stderr).toBe('warning: /gone.txt: vanished during backup\n');
    expect(result.code).toBe(3);
  });
});
