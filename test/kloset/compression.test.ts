import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Codec, DEFAULT_COMPRESSION, decodeBlob, encodeBlob, standaloneLimit } from '../../src/kloset/compression.js';
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
      expect((await decodeBlob(Buffer.concat([codec, body]), 'test', raw.length)).equals(raw)).toBe(true);
    }
  });

  it('stores random bytes as they are, without a compression attempt paying off', async () => {
    for (const size of [2_000, 20_000, 1_000_000]) {
      const raw = randomBytes(size);
      const [codec, body] = encodeBlob(raw, DEFAULT_COMPRESSION);
      expect(codec[0]).toBe(Codec.none);
      expect(body).toBe(raw);
      expect((await decodeBlob(Buffer.concat([codec, body]), 'test', raw.length)).equals(raw)).toBe(true);
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
    await expect(decodeBlob(damaged, 'blob x', 50_000)).rejects.toBeInstanceOf(IntegrityError);
    await expect(decodeBlob(Buffer.from([9, 1, 2, 3]), 'blob y', 3)).rejects.toThrow(/unknown codec 9/);
  });

  it('refuses a frame that expands past its limit, without decoding it whole', async () => {
    // A frame of RLE blocks, 4 bytes each for 128 KiB: 1 GiB from 32 KiB.
    const blocks = 8192;
    const bomb = Buffer.alloc(6 + 4 * blocks);
    bomb.writeUInt32LE(0xfd2fb528, 0);
    bomb[4] = 0; // no content size, no checksum, no dictionary
    bomb[5] = (20 - 10) << 3; // a 1 MiB window
    for (let n = 0; n < blocks; n++) bomb.writeUIntLE(((128 * 1024) << 3) | (1 << 1) | (n === blocks - 1 ? 1 : 0), 6 + 4 * n, 3);
    const encoded = Buffer.concat([Buffer.from([Codec.zstd]), bomb]);
    const started = performance.now();
    await expect(decodeBlob(encoded, 'blob z', 1_000_000)).rejects.toThrow(/^blob z: decompresses to more than 1000000 bytes$/);
    expect(performance.now() - started).toBeLessThan(2_000);
    // Within its limit, the same kind of frame decodes.
    const small = Buffer.concat([bomb.subarray(0, 6), bomb.subarray(6 + 4 * (blocks - 3))]);
    const decoded = await decodeBlob(Buffer.concat([Buffer.from([Codec.zstd]), small]), 'blob z', 3 * 128 * 1024);
    expect(decoded.length).toBe(3 * 128 * 1024);
    expect(decoded.every((byte) => byte === 0)).toBe(true);
  });

  it('decodes frames whose blocks are not full, as zstd may cut them, through the bounded decoder', async () => {
    // Five frames end to end: their headers allow five blocks of 128 KiB for 100 KB of plaintext.
    const parts = [0, 1, 2, 3, 4].map((n) => text(20_000 + n));
    const frames = parts.map((part) => encodeBlob(part, DEFAULT_COMPRESSION)[1]);
    const raw = Buffer.concat(parts);
    const decoded = await decodeBlob(Buffer.concat([Buffer.from([Codec.zstd]), ...frames]), 'blob w', raw.length);
    expect(decoded.equals(raw)).toBe(true);
    await expect(decodeBlob(Buffer.concat([Buffer.from([Codec.zstd]), ...frames]), 'blob w', raw.length - 1)).rejects.toThrow(/more than/);
  });

  it('refuses what is not a zstd frame, or asks for a window past what zstd decodes', async () => {
    const [, body] = encodeBlob(text(50_000), DEFAULT_COMPRESSION);
    const withTrailer = Buffer.concat([Buffer.from([Codec.zstd]), body, Buffer.from('trailing bytes')]);
    await expect(decodeBlob(withTrailer, 'blob v', 50_000)).rejects.toThrow(/^blob v: not a zstd frame$/);
    const cut = Buffer.concat([Buffer.from([Codec.zstd]), body.subarray(0, body.length - 10)]);
    await expect(decodeBlob(cut, 'blob v', 50_000)).rejects.toBeInstanceOf(IntegrityError);
    const wide = Buffer.concat([Buffer.from([Codec.zstd]), body]);
    wide[1 + 5] = (31 - 10) << 3; // a 2 GiB window
    await expect(decodeBlob(wide, 'blob v', 50_000)).rejects.toThrow(/^blob v: zstd window of 2147483648 bytes$/);
  });

  it('bounds a standalone object by its sealed size, never below a few MiB', () => {
    expect(standaloneLimit(100)).toBe(4 * 1024 * 1024);
    expect(standaloneLimit(1024 * 1024)).toBe(16 * 1024 * 1024);
  });
});
