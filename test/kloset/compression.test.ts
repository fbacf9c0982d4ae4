import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
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

  it('refuses, in time proportional to its size, a frame whose Huffman weights never end', async () => {
    // An FSE table of one symbol for the Huffman weights: every state reads no bit, so the weights
    // would go on for ever (RFC 8878 allows 255). A few bytes, which must not hold the thread.
    const literals = Buffer.from([0x02, (16 >> 4) | ((10 & 3) << 6), 10 >> 2]); // compressed, 1 stream, 16 bytes
    const weights = Buffer.from([4, 0xf0, 0x03, 0xff, 0xff]); // 4 bytes: FSE header (symbol 0, all of 32), bits
    const content = Buffer.concat([literals, weights, Buffer.alloc(8, 0x55)]);
    const body = zstdFrame(17, [block(0, 2, content.length), content, ...padding(64)]);
    const started = performance.now();
    await expect(decodeBlob(body, 'blob h', 1000)).rejects.toBeInstanceOf(IntegrityError);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('refuses, in time proportional to its size, a frame of tiny blocks in a wide window, or of matches past its block', async () => {
    // 3,000 blocks of one byte under a 128 MiB window: the decoder must not move its window for each.
    const tiny = Array.from({ length: 3000 }, () => [block(0, 0, 1), Buffer.from([7])]).flat();
    const rle = Array.from({ length: 40 }, (_, n) => [block(n === 39 ? 1 : 0, 1, 128 * 1024), Buffer.from([1])]).flat();
    let started = performance.now();
    await expect(decodeBlob(zstdFrame(27, [...tiny, ...rle]), 'blob t', 1024 * 1024)).rejects.toThrow(/more than/);
    expect(performance.now() - started).toBeLessThan(1_000);
    // One compressed block of 20,000 sequences of 131,074-byte matches (RLE codes, 16 bits each): 2.6 GB
    // of copying in a block that may regenerate 128 KiB.
    const sequences = 20_000;
    const content = Buffer.concat([
      Buffer.from([0x00, 0x80 | (sequences >> 8), sequences & 0xff, 0x54, 0, 0, 52]), // no literals; LL, OF, ML as RLE
      Buffer.alloc(sequences * 2 + 1, 0xff),
    ]);
    started = performance.now();
    const body = zstdFrame(17, [block(0, 2, content.length), content, ...padding(64)]);
    await expect(decodeBlob(body, 'blob s', 1000)).rejects.toBeInstanceOf(IntegrityError);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('round-trips what zstd makes at every level, through either decoder', async () => {
    const { Encoder } = createRequire(import.meta.url)('@toondepauw/node-zstd') as typeof import('@toondepauw/node-zstd');
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    const kinds: Record<string, (size: number) => Buffer> = {
      text: (size) => text(size),
      mixed: (size) => {
        const raw = Buffer.from(text(size));
        for (let at = 0; at < size; at += 1 + Math.floor(random() * 20_000)) randomBytes(Math.min(Math.floor(random() * 3000), size - at)).copy(raw, at);
        return raw;
      },
      runs: (size) => {
        const raw = Buffer.alloc(size);
        for (let at = 0; at < size; at += 1 + Math.floor(random() * 5000)) raw.fill(Math.floor(random() * 256), at, Math.min(size, at + Math.floor(random() * 5000)));
        return raw;
      },
      small: (size) => Buffer.from(Array.from({ length: size }, () => Math.floor(random() * random() * 16))),
    };
    for (const level of [-7, -1, 1, 2, 3, 6, 9, 12, 16, 19, 22]) {
      const encoder = new Encoder(level);
      for (const [k, [kind, make]] of Object.entries(kinds).entries()) {
        // From level 12 on, each call costs zstd a quarter of a second to seconds (its tables): one size a kind.
        for (const size of level < 12 ? [64, 1000, 131_071, 131_073, 300_000, 1_100_000] : [[1000, 131_073, 300_000, 64][k]]) {
          const raw = make(size);
          const alone = Buffer.concat([Buffer.from([Codec.zstd]), encoder.encodeSync(raw)]);
          const what = `level ${level}, ${kind}, ${size} bytes`;
          expect((await decodeBlob(alone, what, raw.length)).equals(raw), what).toBe(true);
          // Followed by a frame of empty blocks that allow 128 KiB each: the bounded decoder takes both.
          const forced = Buffer.concat([alone, zstdFrame(17, padding(8 + Math.ceil(size / 16_384))).subarray(1)]);
          expect((await decodeBlob(forced, what, raw.length)).equals(raw), what).toBe(true);
          await expect(decodeBlob(forced, what, raw.length - 1), what).rejects.toThrow(/more than/);
        }
      }
    }
  }, 120_000);
});

/** A zstd frame (behind the codec byte) without content size, checksum or dictionary, of a 2^windowLog window. */
function zstdFrame(windowLog: number, parts: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from([Codec.zstd, 0x28, 0xb5, 0x2f, 0xfd, 0x00, (windowLog - 10) << 3]), ...parts]);
}

/** Blocks that regenerate nothing, but for which a frame's block headers allow 128 KiB each: compressed, no literal, no sequence. */
function padding(blocks: number): Buffer[] {
  return [...Array.from({ length: blocks }, () => [block(0, 2, 2), Buffer.from([0, 0])]).flat(), block(1, 0, 0)];
}

function block(last: 0 | 1, type: number, size: number): Buffer {
  const header = Buffer.alloc(3);
  header.writeUIntLE((size << 3) | (type << 1) | last, 0, 3);
  return header;
}
