import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Chunker, DEFAULT_CHUNKING, GearScanner, gearTable, type ChunkingParams } from '../../src/kloset/chunker.js';
import { GEAR_WASM } from '../../src/kloset/gearwasm.js';
// @ts-expect-error a build script, without type declarations
import { compileGearWat } from '../../scripts/gear-wasm.mjs';

const SMALL: ChunkingParams = { algorithm: 'fastcdc', minSize: 2048, avgSize: 8192, maxSize: 32768 };
const table = gearTable(Buffer.from('chunker test seed'));
const gear = new GearScanner(table);

/** FastCDC with normalized chunking as a plain loop over all of the data: what every store's boundaries must stay. */
function referenceSizes(data: Buffer, params: ChunkingParams, gearValues: Int32Array): number[] {
  const bits = Math.round(Math.log2(params.avgSize));
  const strict = (0xffffffff << (32 - (bits + 2))) | 0;
  const loose = (0xffffffff << (32 - (bits - 2))) | 0;
  const cutAt = (at: number): number => {
    const remaining = data.length - at;
    if (remaining <= params.minSize) return remaining;
    const end = Math.min(remaining, params.maxSize);
    const normal = Math.min(end, params.avgSize);
    let hash = 0;
    for (let i = params.minSize; i < end; i++) {
      hash = ((hash << 1) + gearValues[data[at + i]]) | 0;
      if ((hash & (i < normal ? strict : loose)) === 0) return i + 1;
    }
    return end;
  };
  const sizes: number[] = [];
  for (let at = 0; at < data.length; at += sizes[sizes.length - 1]) sizes.push(cutAt(at));
  return sizes;
}

function chunkIn(data: Buffer, pieces: number[], params = SMALL): Buffer[] {
  const chunker = new Chunker(params, gear);
  const out: Buffer[] = [];
  let offset = 0;
  for (let i = 0; offset < data.length; i++) {
    const size = pieces[i % pieces.length];
    out.push(...chunker.push(data.subarray(offset, offset + size)).map((c) => Buffer.from(c)));
    offset += size;
  }
  out.push(...chunker.finish().map((c) => Buffer.from(c)));
  return out;
}

const digest = (chunks: Buffer[]) => chunks.map((c) => createHash('sha256').update(c).digest('hex').slice(0, 12));

describe('the chunker', () => {
  const data = randomBytes(1024 * 1024);

  it('cuts the same chunks however the data is split into reads', () => {
    const reference = digest(chunkIn(data, [data.length]));
    expect(digest(chunkIn(data.subarray(0, 200_000), [1]))).toEqual(digest(chunkIn(data.subarray(0, 200_000), [200_000])));
    expect(digest(chunkIn(data, [4096]))).toEqual(reference);
  }, 120_000);

  it('cuts the same chunks for reads of odd sizes', () => {
    const reference = digest(chunkIn(data, [data.length]));
    expect(digest(chunkIn(data, [7919, 100_003, 3]))).toEqual(reference);
    expect(digest(chunkIn(data, [SMALL.maxSize]))).toEqual(reference);
  });

  it('cuts the same chunks from reads handed over several at once', () => {
    const reference = digest(chunkIn(data, [data.length]));
    const chunker = new Chunker(SMALL, gear);
    const out: Buffer[] = [];
    for (let offset = 0; offset < data.length; offset += 5 * 4099) {
      const pieces = [0, 1, 2, 3, 4].map((k) => data.subarray(offset + k * 4099, Math.min(data.length, offset + (k + 1) * 4099)));
      out.push(...chunker.push(pieces).map((c) => Buffer.from(c)));
    }
    out.push(...chunker.finish().map((c) => Buffer.from(c)));
    expect(digest(out)).toEqual(reference);
  });

  it('gives chunks that concatenate to the input', () => {
    expect(Buffer.concat(chunkIn(data, [65536])).equals(data)).toBe(true);
  });

  it('keeps every chunk but the last between the minimum and maximum size', () => {
    const chunks = chunkIn(data, [65536]);
    for (const chunk of chunks.slice(0, -1)) {
      expect(chunk.length).toBeGreaterThanOrEqual(SMALL.minSize);
      expect(chunk.length).toBeLessThanOrEqual(SMALL.maxSize);
    }
    const mean = data.length / chunks.length;
    expect(mean).toBeGreaterThan(SMALL.avgSize / 2);
    expect(mean).toBeLessThan(SMALL.avgSize * 2);
  });

  it('changes only the chunks near an insertion', () => {
    // The same bytes on every run: the boundaries after an insertion can take several chunks to fall back
    // into step, and on about one random megabyte in three hundred they take more than three.
    const data = createCipheriv('aes-128-ctr', Buffer.from('chunker test key'), Buffer.alloc(16)).update(Buffer.alloc(1024 * 1024));
    const edited = Buffer.concat([data.subarray(0, 500_000), Buffer.from('inserted bytes'), data.subarray(500_000)]);
    const before = new Set(digest(chunkIn(data, [65536])));
    const after = digest(chunkIn(edited, [65536]));
    const changed = after.filter((d) => !before.has(d)).length;
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(3);
  });

  it('gives a file smaller than the minimum as one chunk', () => {
    const small = randomBytes(100);
    const chunks = chunkIn(small, [small.length]);
    expect(chunks).toHaveLength(1);
    expect(chunks[0].equals(small)).toBe(true);
  });

  it('cuts differently under another key, so boundaries do not reveal content', () => {
    const chunker = new Chunker(SMALL, new GearScanner(gearTable(Buffer.from('another seed'))));
    const other = [...chunker.push(data), ...chunker.finish()].map((c) => c.length);
    expect(other).not.toEqual(chunkIn(data, [data.length]).map((c) => c.length));
  });

  it('cuts exactly where the plain gear loop does, for random data and text, small chunks and the defaults', () => {
    const text = Buffer.from(Array.from({ length: 120_000 }, (_, i) => `line ${i} of ${(i * 7919) % 1000}\n`).join(''));
    const large = randomBytes(9 * 1024 * 1024);
    for (const [sample, params, pieces] of [
      [data, SMALL, [65536]],
      [data, SMALL, [7919, 100_003, 3]],
      [text, SMALL, [70_000]],
      [large, DEFAULT_CHUNKING, [1024 * 1024]],
      [Buffer.concat([text, large]), DEFAULT_CHUNKING, [3 * 1024 * 1024 + 17]],
    ] as const) {
      const sizes = chunkIn(sample, [...pieces], params).map((c) => c.length);
      expect(sizes).toEqual(referenceSizes(sample, params, table));
    }
  }, 120_000);

  it('runs the WebAssembly compiled from gear.wat', async () => {
    expect(GEAR_WASM.equals(await compileGearWat())).toBe(true);
  });

  it('uses the store defaults of 256 KiB, 1 MiB and 4 MiB', () => {
    expect([DEFAULT_CHUNKING.minSize, DEFAULT_CHUNKING.avgSize, DEFAULT_CHUNKING.maxSize]).toEqual([262144, 1048576, 4194304]);
  });
});
