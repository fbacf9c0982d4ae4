import { requireCjs } from '../cjs.js';
import { IntegrityError } from '../errors.js';
import { decompressWithin } from './fzstd.js';

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

/**
 * Large blobs are decoded on the thread pool, so a main thread serving reads is not held up by one.
 *
 * `limit` is the most plaintext the blob may hold (a blob in a pack: its
 * rawLength). zstd's decoder takes no output bound, so a frame of a few
 * kilobytes could expand to gigabytes: one whose block headers allow more
 * than NATIVE_EXPANSION times the limit is decoded by a second decoder, in
 * JavaScript, that stops at the limit. zstd's own frames stay far below
 * that; the native decoder may spend up to that much memory on a bad one.
 */
export async function decodeBlob(encoded: Buffer, what: string, limit: number): Promise<Buffer> {
  const codec = encoded[0];
  const body = encoded.subarray(1);
  if (codec === Codec.none) return body;
  if (codec !== Codec.zstd) throw new IntegrityError(`${what}: unknown codec ${codec}`);
  const bound = zstdOutputBound(body, what);
  try {
    if (bound > NATIVE_EXPANSION * limit + ZSTD_BLOCK_MAX) return decodeWithin(body, limit, what);
    return body.length <= DECODE_INLINE ? decoder.decodeSync(body) : await decoder.decode(body);
  } catch (err) {
    if (err instanceof IntegrityError) throw err;
    throw new IntegrityError(`${what}: cannot decompress`, { cause: err });
  }
}

/** The plaintext of a standalone object (a header, an index delta, a lock) may be this many times its sealed size... */
const STANDALONE_EXPANSION = 16;
/** ...or this many bytes, whichever is more. */
const STANDALONE_MIN_LIMIT = 4 * 1024 * 1024;

/**
 * The most plaintext a standalone object of `sealedLength` bytes may hold. Its
 * writer refuses to store more (sealStandalone), so no stored object is
 * refused by a reader; a malformed one costs a reader no more than this.
 */
export function standaloneLimit(sealedLength: number): number {
  return Math.max(STANDALONE_MIN_LIMIT, STANDALONE_EXPANSION * sealedLength);
}

/**
 * How far past its limit a frame's bound may go for the native decoder.
 * zstd 1.5 splits blocks where the data changes (at level 2, where text and
 * noise alternate): a frame of a chunk that mixes them bounds at up to 1.6
 * times its plaintext, and at higher levels more.
 */
const NATIVE_EXPANSION = 4;
/** The most a zstd block regenerates (RFC 8878, Block_Maximum_Size). */
const ZSTD_BLOCK_MAX = 128 * 1024;
/** The largest window zstd's decoder accepts unless told otherwise (ZSTD_WINDOWLOG_LIMIT_DEFAULT). */
const ZSTD_WINDOW_MAX = 2 ** 27;
const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC = 0x184d2a50;

/**
 * The most bytes the zstd frames of `body` can decode to, read from their
 * block headers alone (RFC 8878): a raw or RLE block states its size, a
 * compressed one regenerates at most a block, and an RLE block of 4 bytes
 * can stand for 128 KiB.
 */
function zstdOutputBound(body: Buffer, what: string): number {
  const malformed = () => new IntegrityError(`${what}: not a zstd frame`);
  let bound = 0;
  let at = 0;
  while (at < body.length) {
    if (at + 8 > body.length) throw malformed();
    const magic = body.readUInt32LE(at);
    if ((magic & 0xfffffff0) === SKIPPABLE_MAGIC) {
      at += 8 + body.readUInt32LE(at + 4);
      continue;
    }
    if (magic !== ZSTD_MAGIC) throw malformed();
    const descriptor = body[at + 4];
    const singleSegment = (descriptor >> 5) & 1;
    const contentSizeBytes = [singleSegment, 2, 4, 8][descriptor >> 6];
    at += 5;
    let window = 0;
    if (!singleSegment) {
      const base = 2 ** (10 + (body[at] >> 3));
      window = base + (base / 8) * (body[at] & 7);
      at += 1;
    }
    at += [0, 1, 2, 4][descriptor & 3];
    if (at + contentSizeBytes > body.length) throw malformed();
    if (singleSegment) window = readContentSize(body, at, contentSizeBytes);
    if (window > ZSTD_WINDOW_MAX) throw new IntegrityError(`${what}: zstd window of ${window} bytes`);
    at += contentSizeBytes;
    const blockMax = Math.min(window, ZSTD_BLOCK_MAX);
    for (let last = 0; !last; ) {
      if (at + 3 > body.length) throw malformed();
      const header = body.readUIntLE(at, 3);
      last = header & 1;
      const type = (header >> 1) & 3;
      const size = header >>> 3;
      at += 3;
      if (type === 0) (bound += size), (at += size);
      else if (type === 1) (bound += size), (at += 1);
      else if (type === 2) (bound += blockMax), (at += size);
      else throw malformed();
    }
    if ((descriptor >> 2) & 1) at += 4; // content checksum
  }
  if (at > body.length) throw malformed();
  return bound;
}

function readContentSize(body: Buffer, at: number, bytes: number): number {
  if (bytes === 1) return body[at];
  if (bytes === 2) return body.readUInt16LE(at) + 256;
  if (bytes === 4) return body.readUInt32LE(at);
  return Number(body.readBigUInt64LE(at));
}

/**
 * Decodes in JavaScript into one buffer, and stops as soon as the output
 * passes `limit` (fzstd.ts: its time and memory follow the input and the
 * limit, not what the frame header asks for).
 */
function decodeWithin(body: Buffer, limit: number, what: string): Buffer {
  const decoded = decompressWithin(body, limit);
  if (!decoded) throw new IntegrityError(`${what}: decompresses to more than ${limit} bytes`);
  // Its buffer grew by doubling: a view would keep up to twice the plaintext alive (in a cache, say).
  if (decoded.buffer.byteLength - decoded.length > decoded.length >> 4) return Buffer.from(decoded);
  return Buffer.from(decoded.buffer, decoded.byteOffset, decoded.length);
}
