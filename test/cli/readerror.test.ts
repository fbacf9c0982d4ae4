/**
 * A disk that cannot give a pack's bytes back (EIO): the files whose
 * chunks are in it are damaged, named by check, and fail alone in cat and
 * restore, with a line naming the store and the pack; the rest is read.
 * The error comes from the kernel's side of a real read: strace injects it
 * into the read calls on that one pack file.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kloset, latestSnapshotId, tempDir, type CliResult } from '../helpers/cli.js';
import { MiB, writeRandomFile } from '../helpers/fixtures.js';

let work: string;
let store: string;
let id: string;
/** A pack holding chunks of big.bin alone. */
let failingPack: string;
const env = () => ({ ...process.env, KLOSET_PASSPHRASE: 'read error', XDG_CACHE_HOME: path.join(work, 'cache') });

/** The CLI with every read of `failingPack` failing with EIO. */
function withFailingPack(args: string[]): Promise<CliResult> {
  const inject = ['-f', '-qq', '-o', '/dev/null', '-P', failingPack, '-e', 'trace=read,pread64,preadv,preadv2', '-e', 'inject=read,pread64,preadv,preadv2:error=EIO'];
  return kloset(args, { env: env(), through: ['strace', ...inject] });
}

async function packFiles(): Promise<{ file: string; size: number }[]> {
  const found: { file: string; size: number }[] = [];
  for (const dir of await fs.readdir(path.join(store, 'packs'))) {
    for (const name of await fs.readdir(path.join(store, 'packs', dir))) {
      const file = path.join(store, 'packs', dir, name);
      found.push({ file, size: (await fs.stat(file)).size });
    }
  }
  return found.sort((a, b) => b.size - a.size);
}

beforeAll(async () => {
  work = await tempDir('kloset-readerror-');
  store = path.join(work, 'store');
  const source = path.join(work, 'source');
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'big.bin'), 24 * MiB);
  const run = async (args: string[]) => (await kloset(args, { env: env() })).code;
  expect(await run(['at', store, 'create'])).toBe(0);
  expect(await run(['at', store, 'backup', source])).toBe(0);
  // The first, full pack holds big.bin's chunks alone: the tree is written after them, and
  // small.txt, added now, goes into a pack of the second backup.
  failingPack = (await packFiles())[0].file;
  await fs.writeFile(path.join(source, 'small.txt'), 'still readable\n');
  expect(await run(['at', store, 'backup', source])).toBe(0);
  id = (await latestSnapshotId(store, env())).slice(0, 8);
}, 120_000);
afterAll(() => fs.rm(work, { recursive: true, force: true }));

const READ_ERROR = /cannot read packs\/[0-9a-f]{2}\/[0-9a-f]{64}: input\/output error/;

describe('a pack the disk cannot read', () => {
  it('check names the damaged file and the pack, and exits 1', async () => {
    const result = await withFailingPack(['at', store, 'check', id]);
    expect(result.code, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/damaged: snapshot [0-9a-f]{8}: \/big\.bin/);
    expect(result.stderr).not.toMatch(/small\.txt|EIO|^\s+at /m);
  }, 60_000);

  it('cat fails for that file in one line naming the store and the pack, and prints the others', async () => {
    const result = await withFailingPack(['at', store, 'cat', `${id}:/big.bin`, `${id}:/small.txt`]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('still readable\n');
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(READ_ERROR);
    expect(lines[0]).toContain(store);
  }, 60_000);

  it('restore brings back the rest and names the file it could not, exit 3', async () => {
    const target = path.join(work, 'restored');
    const result = await withFailingPack(['at', store, 'restore', '-to', target, id]);
    expect(result.code, result.stderr).toBe(3);
    expect(await fs.readFile(path.join(target, 'small.txt'), 'utf8')).toBe('still readable\n');
    expect(result.stderr).toMatch(/^warning: \/big\.bin: .*input\/output error$/m);
    expect(result.stderr).not.toMatch(/EIO|^\s+at /m);
  }, 60_000);
});
