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
