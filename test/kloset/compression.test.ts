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

  it('compresses a blob whose samples are random but whose whole is repetitive only if zstd gains', async () => {
    // Random start, middle and end, text everywhere else: judged on its samples, stored as is.
    const raw = text(1_000_000);
    randomBytes(4096).copy(raw, 0);
    randomBytes(4096).copy(raw, raw.length / 2 - 2048);
    randomBytes(4096).copy(raw, raw.length - 4096);
    const [codec] = encodeBlob(raw, DEFAULT_COMPRESSION);
    expect(codec[0]).toBe(Codec.none);
    // Mostly text with one random sample out of three: compressed.
    const mixed = text(1_000_000);
    randomBytes(4096).copy(mixed, 0);
    expect(encodeBlob(mixed, DEFAULT_COMPRESSION)[0][0]).toBe(Codec.zstd);
  });

  it('refuses a damaged compressed body and an unknown codec with an integrity error', async () => {
    const [codec, body] = encodeBlob(text(50_000), DEFAULT_COMPRESSION);
    const damaged = Buffer.concat([codec, body]);
    damaged.fill(0xff, 5, 40);
    await expect(decodeBlob(damaged, 'blob x')).rejects.toBeInstanceOf(IntegrityError);
    await expect(decodeBlob(Buffer.from([9, 1, 2, 3]), 'blob y')).rejects.toThrow(/unknown codec 9/);
  });
});
