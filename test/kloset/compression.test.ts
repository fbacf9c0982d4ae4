import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Codec, DEFAULT_COMPRESSION, decodeBlob, encodeBlob } from '../../src/kloset/compression.js';
import { IntegrityError } from '../../src/errors.js';

const text = (size: number) => {
  const words = ['backup', 'restore', 'chunk', 'pack', 'index', 'snapshot', 'tree', 'bucket'];
  const parts: string[] = [];
  for (let n = 0, i = 0; n < size; i++) {
    const word = words[(i * 2654435761) % words.length >>> 0];
    parts.push(word);
    n += word.length + 1;
  }
  return Buffer.from(parts.join(' ')).subarray(0, size);
};

describe('blob encoding', () => {
  it('compresses text and decodes it back, small and large', async () => {
    for (const size of [1_000, 20_000, 300_000, 3_000_000]) {
      const raw = text(size);
      const [codec, body] = encodeBlob(raw, DEFAULT_COMPRESSION);
      expect(codec[0]).toBe(Codec.zstd);
      expect(body.length).toBeLessThan(raw.length / 2);
      expect((await decodeBlob(Buffer.concat([codec, body]), 'test')).equals(raw)).toBe(true);
    }
  });

  it('stores random bytes as they are, without a compression attempt paying off', async () => {
    for (const size of [2_000, 20_000, 1_000_000]) {
      const raw = randomBytes(size);
      const [codec, body] = encodeBlob(raw, DEFAULT_COMPRESSION);
      expect(codec[0]).toBe(Codec.none);
      expect(body).toBe(raw);
      expect((await decodeBlob(Buffer.concat([codec, body]), 'test')).equals(raw)).toBe(true);
    }
  });

  it('judges a large blob on samples spread over all of it', async () => {
    // Random but for a few text stretches: stored as is, without a zstd pass.
    const noisy = randomBytes(1_000_000);
    text(4096).copy(noisy, 0);
    text(4096).copy(noisy, noisy.length / 2);
    expect(encodeBlob(noisy, DEFAULT_COMPRESSION)[0][0]).toBe(Codec.none);
    // Text but for random stretches at its start, middle and end: compressed.
    const mixed = text(1_000_000);
    randomBytes(4096).copy(mixed, 0);
    randomBytes(4096).copy(mixed, mixed.length / 2 - 2048);
    randomBytes(4096).copy(mixed, mixed.length - 4096);
    expect(encodeBlob(mixed, DEFAULT_COMPRESSION)[0][0]).toBe(Codec.zstd);
  });

  it('compresses a table of fixed-size records whose every record starts with a random byte', async () => {
    // A sample taken every so many bytes would land on the random byte of each record and see noise.
    const records = Buffer.alloc(2_000_000);
    const noise = randomBytes(records.length / 8);
    for (let i = 0; i < noise.length; i++) {
      records[i * 8] = noise[i];
      records.writeUInt16LE(i & 0xffff, i * 8 + 4);
    }
    const [codec, body] = encodeBlob(records, DEFAULT_COMPRESSION);
    expect(codec[0]).toBe(Codec.zstd);
    expect(body.length).toBeLessThan(records.length / 2);
  });

  it('refuses a damaged compressed body and an unknown codec with an integrity error', async () => {
    const [codec, body] = encodeBlob(text(50_000), DEFAULT_COMPRESSION);
    const damaged = Buffer.concat([codec, body]);
    damaged.fill(0xff, 5, 40);
    await expect(decodeBlob(damaged, 'blob x')).rejects.toBeInstanceOf(IntegrityError);
    await expect(decodeBlob(Buffer.from([9, 1, 2, 3]), 'blob y')).rejects.toThrow(/unknown codec 9/);
  });
});
