import { Decoder, Encoder } from '@toondepauw/node-zstd';
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

export const DEFAULT_COMPRESSION: CompressionParams = { algorithm: 'zstd', level: 2 };

/** Below this, zstd's frame overhead outweighs any gain. */
const MIN_COMPRESSIBLE = 64;

const encoders = new Map<number, Encoder>();
function encoder(level: number): Encoder {
  let found = encoders.get(level);
  if (!found) encoders.set(level, (found = new Encoder(level)));
  return found;
}
const decoder = new Decoder();

/**
 * Synchronous: the backup hot path calls it from the chunk workers, which are
 * the parallelism; a thread-pool hop per chunk would cost more than
 * compressing a small one. Returns the codec byte and the body as two parts:
 * the sealer consumes them in turn, so the framed plaintext is never copied whole.
 */
export function encodeBlob(raw: Buffer, params: CompressionParams): Buffer[] {
  if (raw.length >= MIN_COMPRESSIBLE && looksCompressible(raw)) {
    const packed = encoder(params.level).encodeSync(raw);
    // Keep compression only when it saves at least 1/32: decoding costs time on every read.
    if (packed.length + (packed.length >> 5) < raw.length) return frame(Codec.zstd, packed);
  }
  return frame(Codec.none, raw);
}

const CODEC_BYTES = [Buffer.from([Codec.none]), Buffer.from([Codec.zstd])];

const SAMPLE_BYTES = 4096;
/** Bits per byte above which a sample is taken for random, encrypted or already compressed data. */
const INCOMPRESSIBLE_ENTROPY = 7.5;
const histogram = new Uint32Array(256);

/**
 * Judges a blob on the byte entropy of three 4 KiB samples (start, middle,
 * end; the whole blob when smaller). zstd is slowest on data it cannot
 * shrink, and media, archives and encrypted files show an entropy near 8
 * bits per byte at once; they are then stored as is.
 */
function looksCompressible(raw: Buffer): boolean {
  histogram.fill(0);
  let count = 0;
  const sample = (from: number, to: number) => {
    for (let i = from; i < to; i++) histogram[raw[i]]++;
    count += to - from;
  };
  if (raw.length <= 3 * SAMPLE_BYTES) sample(0, raw.length);
  else {
    const middle = (raw.length >> 1) - (SAMPLE_BYTES >> 1);
    sample(0, SAMPLE_BYTES);
    sample(middle, middle + SAMPLE_BYTES);
    sample(raw.length - SAMPLE_BYTES, raw.length);
  }
  let entropy = 0;
  for (let b = 0; b < 256; b++) {
    const n = histogram[b];
    if (n > 0) entropy -= n * Math.log2(n / count);
  }
  return entropy / count < INCOMPRESSIBLE_ENTROPY;
}

function frame(codec: number, body: Buffer): Buffer[] {
  return [CODEC_BYTES[codec], body];
}

/** Bodies up to this size are decoded on the calling thread: for them a thread-pool hop costs more than the work. */
const DECODE_INLINE = 256 * 1024;

/** Large blobs are decoded on the thread pool, so a main thread serving reads is not held up by one. */
export async function decodeBlob(encoded: Buffer, what: string): Promise<Buffer> {
  const codec = encoded[0];
  const body = encoded.subarray(1);
  if (codec === Codec.none) return body;
  if (codec !== Codec.zstd) throw new IntegrityError(`${what}: unknown codec ${codec}`);
  try {
    return body.length <= DECODE_INLINE ? decoder.decodeSync(body) : await decoder.decode(body);
  } catch (err) {
    throw new IntegrityError(`${what}: cannot decompress`, { cause: err });
  }
}
