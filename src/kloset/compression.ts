import { compress as zstdCompress, decompress as zstdDecompress } from '@mongodb-js/zstd';
import { IntegrityError } from '../errors.js';

/**
 * Every blob's plaintext starts with one byte naming how the rest is encoded,
 * so incompressible data is stored as is and the format can add codecs later.
 */
export const Codec = { none: 0, zstd: 1 } as const;

export interface CompressionParams {
  algorithm: 'zstd';
  level: number;
}

export const DEFAULT_COMPRESSION: CompressionParams = { algorithm: 'zstd', level: 3 };

/** Below this, zstd's frame overhead outweighs any gain. */
const MIN_COMPRESSIBLE = 64;

/**
 * Runs on libuv's thread pool, so compression of several chunks proceeds in
 * parallel. Returns the codec byte and the body as two parts: the sealer
 * consumes them in turn, so the framed plaintext is never copied whole.
 */
export async function encodeBlob(raw: Buffer, params: CompressionParams): Promise<Buffer[]> {
  if (raw.length >= MIN_COMPRESSIBLE && (raw.length < SAMPLE_FROM || (await looksCompressible(raw)))) {
    const packed = await zstdCompress(raw, params.level);
    // Keep compression only when it saves at least 1/32: decoding costs time on every read.
    if (packed.length + (packed.length >> 5) < raw.length) return frame(Codec.zstd, packed);
  }
  return frame(Codec.none, raw);
}

const CODEC_BYTES = [Buffer.from([Codec.none]), Buffer.from([Codec.zstd])];

/** Blobs this large are first judged on samples: zstd is slowest on data it cannot shrink. */
const SAMPLE_FROM = 32 * 1024;
const SAMPLE_BYTES = 4096;

/**
 * Compresses three 4 KiB samples (start, middle, end) at the fastest level:
 * encrypted, already compressed or random data shows there at once, and is
 * then stored as is without running zstd over all of it.
 */
async function looksCompressible(raw: Buffer): Promise<boolean> {
  const middle = (raw.length >> 1) - (SAMPLE_BYTES >> 1);
  const sample = Buffer.concat([
    raw.subarray(0, SAMPLE_BYTES),
    raw.subarray(middle, middle + SAMPLE_BYTES),
    raw.subarray(raw.length - SAMPLE_BYTES),
  ]);
  const packed = await zstdCompress(sample, 1);
  return packed.length + (packed.length >> 5) < sample.length;
}

function frame(codec: number, body: Buffer): Buffer[] {
  return [CODEC_BYTES[codec], body];
}

export async function decodeBlob(encoded: Buffer, what: string): Promise<Buffer> {
  const codec = encoded[0];
  const body = encoded.subarray(1);
  if (codec === Codec.none) return body;
  if (codec === Codec.zstd) {
    try {
      return await zstdDecompress(body);
    } catch (err) {
      throw new IntegrityError(`${what}: cannot decompress`, { cause: err });
    }
  }
  throw new IntegrityError(`${what}: unknown codec ${codec}`);
}
