import { requireCjs } from '../cjs.js';
import { IntegrityError } from '../errors.js';

const { Decoder, Encoder } = requireCjs('@toondepauw/node-zstd') as typeof import('@toondepauw/node-zstd');
type Encoder = InstanceType<typeof Encoder>;

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

/** Bytes of a blob whose entropy is measured: all of a small blob, else WINDOWS windows spread over it. */
const SAMPLE_BYTES = 4096;
const WINDOWS = 16;
const WINDOW_BYTES = SAMPLE_BYTES / WINDOWS;
/** Bits per byte above which a sample is taken for random, encrypted or already compressed data. */
const INCOMPRESSIBLE_ENTROPY = 7.5;
const histogram = new Uint32Array(256);
const LOG2 = Float64Array.from({ length: SAMPLE_BYTES + 1 }, (_, n) => (n === 0 ? 0 : Math.log2(n)));

/**
 * Judges a blob on the byte entropy of a 4 KiB sample. zstd is slowest on
 * data it cannot shrink, and media, archives and encrypted files show an
 * entropy near 8 bits per byte at once; they are then stored as is. The
 * sample is contiguous windows rather than a byte every so often: a stride
 * would see one field of fixed-size records and could take a table of
 * numbers for noise.
 */
function looksCompressible(raw: Uint8Array): boolean {
  const counts = histogram;
  counts.fill(0);
  const length = raw.length;
  if (length <= SAMPLE_BYTES) {
    for (let i = 0; i < length; i++) counts[raw[i]]++;
  } else {
    const spacing = (length - WINDOW_BYTES) / (WINDOWS - 1);
    for (let w = 0; w < WINDOWS; w++) {
      const from = Math.floor(w * spacing);
      for (let i = from; i < from + WINDOW_BYTES; i++) counts[raw[i]]++;
    }
  }
  const count = Math.min(length, SAMPLE_BYTES);
  // H = log2(N) - sum(c * log2 c) / N
  let weighted = 0;
  for (let b = 0; b < 256; b++) weighted += counts[b] * LOG2[counts[b]];
  return LOG2[count] - weighted / count < INCOMPRESSIBLE_ENTROPY;
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
