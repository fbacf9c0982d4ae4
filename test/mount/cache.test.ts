/**
 * A cache far smaller than what is read: chunks are evicted and their pages
 * reused all the time, while several readers are in the middle of copying
 * out. Every byte read must still be the file's.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { MiB, writeRandomFile } from '../helpers/fixtures.js';
import { mountCli, storeWithSnapshot, unmountAll, type MountedCli } from '../helpers/mount.js';

const FILES = 6;
const SIZE = 5 * MiB + 777;

let work: string;
let source: string;
let mounted: MountedCli;
let id: string;
const digests: string[] = [];

beforeAll(async () => {
  work = await tempDir('kloset-mount-cache-');
  source = path.join(work, 'source');
  await fs.mkdir(source);
  for (let i = 0; i < FILES; i++) {
    const file = path.join(source, `f${i}.bin`);
    await writeRandomFile(file, SIZE);
    digests.push(createHash('sha256').update(await fs.readFile(file)).digest('hex'));
  }
  const store = path.join(work, 'store');
  id = await storeWithSnapshot(store, source);
  await fs.mkdir(path.join(work, 'mnt'));
  // About two chunks' worth: almost every read evicts something.
  mounted = await mountCli(store, path.join(work, 'mnt'), ['--cache-size', '2M']);
}, 120_000);

afterAll(async () => {
  await unmountAll();
  await fs.rm(work, { recursive: true, force: true });
});

const inMount = (i: number) => path.join(mounted.dir, id, `f${i}.bin`);

describe('a mount with a cache smaller than its reads', () => {
  it('reads every file whole and exact, several at once', async () => {
    const read = await Promise.all(Array.from({ length: FILES }, (_, i) => fs.readFile(inMount(i))));
    expect(read.map((data) => createHash('sha256').update(data).digest('hex'))).toEqual(digests);
  }, 120_000);

  it('answers interleaved reads at scattered offsets with the right bytes', async () => {
    const originals = await Promise.all(Array.from({ length: FILES }, (_, i) => fs.readFile(path.join(source, `f${i}.bin`))));
    const handles = await Promise.all(Array.from({ length: FILES }, (_, i) => fs.open(inMount(i), 'r')));
    try {
      let state = 12345;
      const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
      const reads = Array.from({ length: 300 }, () => {
        const file = next() % FILES;
        const length = 1 + (next() % (300 * 1024));
        const position = next() % (SIZE - 1);
        return { file, position, length: Math.min(length, SIZE - position) };
      });
      await Promise.all(
        reads.map(async ({ file, position, length }) => {
          const buffer = Buffer.alloc(length);
          const { bytesRead } = await handles[file].read(buffer, 0, length, position);
          expect(bytesRead).toBe(length);
          expect(buffer.equals(originals[file].subarray(position, position + length))).toBe(true);
        }),
      );
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
  }, 120_000);
});
