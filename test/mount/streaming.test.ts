/**
 * A file streamed front to back through the mount: the kernel's page cache
 * keeps what was read, so the chunk cache drops chunks behind the reader
 * instead of filling up with them.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { MiB, writeRandomFile } from '../helpers/fixtures.js';
import { mountCli, storeWithSnapshot, unmountAll } from '../helpers/mount.js';

const SIZE = 64 * MiB + 12345;

let work: string;
let store: string;
let id: string;
let digest: string;

beforeAll(async () => {
  work = await tempDir('kloset-mount-stream-');
  const source = path.join(work, 'source');
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'big.bin'), SIZE);
  digest = createHash('sha256').update(await fs.readFile(path.join(source, 'big.bin'))).digest('hex');
  store = path.join(work, 'store');
  id = await storeWithSnapshot(store, source);
}, 120_000);

afterAll(async () => {
  await unmountAll();
  await fs.rm(work, { recursive: true, force: true });
});

/** The "cache peak" figure of the mount's closing account, in MiB. */
function cachePeakMiB(stdout: string): number {
  const match = /cache peak ([\d.]+) (B|KiB|MiB|GiB)/.exec(stdout);
  if (!match) throw new Error(`no cache peak in:\n${stdout}`);
  return Number(match[1]) / { B: MiB, KiB: 1024, MiB: 1, GiB: 1 / 1024 }[match[2]]!;
}

async function freshMount(name: string) {
  const dir = path.join(work, name);
  await fs.mkdir(dir);
  return mountCli(store, dir, [id]);
}

describe('a sequential read through the mount', () => {
  it('is exact and leaves the chunk cache holding only the read-ahead window', async () => {
    const mounted = await freshMount('mnt-seq');
    const data = await fs.readFile(path.join(mounted.dir, 'big.bin'));
    expect(createHash('sha256').update(data).digest('hex')).toBe(digest);
    const result = await mounted.stop();
    expect(result.code).toBe(0);
    // The read-ahead window is at most 16 chunks of about 1 MiB: far below the file.
    expect(cachePeakMiB(result.stdout)).toBeLessThan(40);
  }, 120_000);

});
