/**
 * restore --sparse: runs of zeros come back as holes, so a disk image or a
 * database file takes on disk what it took before (restic's restore --sparse).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { MiB, klosetWith, sha256File } from '../helpers/fixtures.js';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

const IMAGE = 256 * MiB;
const TAIL = 64 * MiB;

/** Bytes the file takes on disk. */
async function allocated(file: string): Promise<number> {
  return (await fs.stat(file)).blocks * 512;
}

beforeAll(async () => {
  work = await tempDir('kloset-sparse-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(source);
  // A disk image: holes around a little data in the middle.
  const image = await fs.open(path.join(source, 'disk.img'), 'w');
  await image.write(Buffer.from('partition table'), 0, 15, 0);
  await image.write(Buffer.alloc(1 * MiB, 0x5a), 0, 1 * MiB, 100 * MiB);
  await image.truncate(IMAGE);
  await image.close();
  // A file that ends in a hole: its length comes from no write.
  const tail = await fs.open(path.join(source, 'tail.db'), 'w');
  await tail.write(Buffer.from('header'));
  await tail.truncate(TAIL);
  await tail.close();
  expect((await kloset(['at', store, 'create', '-plaintext'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('restore --sparse', () => {
  it('leaves the zeros as holes, with the same bytes and length', async () => {
    const target = path.join(work, 'sparse');
    const result = await kloset(['at', store, 'restore', '--sparse', '-to', target, 'latest']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    for (const name of ['disk.img', 'tail.db']) {
      expect(await sha256File(path.join(target, name))).toBe(await sha256File(path.join(source, name)));
    }
    expect((await fs.stat(path.join(target, 'disk.img'))).size).toBe(IMAGE);
    expect((await fs.stat(path.join(target, 'tail.db'))).size).toBe(TAIL);
    // The data and the chunks around it are written; a chunk is at most a few MiB.
    expect(await allocated(path.join(target, 'disk.img'))).toBeLessThan(24 * MiB);
    expect(await allocated(path.join(target, 'tail.db'))).toBeLessThan(16 * MiB);
  });

  it('without it, writes every byte, as restic and rsync do by default', async () => {
    const target = path.join(work, 'dense');
    expect((await kloset(['at', store, 'restore', '-to', target, 'latest'])).code).toBe(0);
    expect(await allocated(path.join(target, 'disk.img'))).toBeGreaterThanOrEqual(IMAGE);
    expect(await sha256File(path.join(target, 'disk.img'))).toBe(await sha256File(path.join(source, 'disk.img')));
  });
});
