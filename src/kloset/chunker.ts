import { createHmac } from 'node:crypto';

/** Recorded in the store config: every writer of a store must cut at the same places to dedup. */
export interface ChunkingParams {
  algorithm: 'fastcdc';
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export const DEFAULT_CHUNKING: ChunkingParams = {
  algorithm: 'fastcdc',
  minSize: 256 * 1024,
  avgSize: 1024 * 1024,
  maxSize: 4 * 1024 * 1024,
};

/** A gear table from the store's secret seed: boundaries then depend on the key, not only on content. */
export function gearTable(seed: Buffer): Int32Array {
  const table = new Int32Array(256);
  for (let block = 0; block < 32; block++) {
    const bytes = createHmac('sha256', seed).update(`gear ${block}`).digest();
    for (let j = 0; j < 8; j++) table[block * 8 + j] = bytes.readInt32LE(j * 4);
  }
  return table;
}

/** A mask of the `bits` highest bits: with a left-shifting gear hash those depend on the last 32 bytes. */
function highBits(bits: number): number {
  return (0xffffffff << (32 - bits)) | 0;
}

/**
 * FastCDC with normalized chunking (Xia et al., 2016/2020): a stricter mask
 * before the average size and a looser one after it narrow the size spread.
 * Streaming: push() data as it arrives, finish() at the end; each chunk is
 * returned as its own Buffer.
 */
export class Chunker {
  private readonly gear: Int32Array;
  private readonly maskStrict: number;
  private readonly maskLoose: number;
  private buffer: Buffer;
  private filled = 0;

  /** `gear` comes from gearTable(): computed once per store, not per file. */
  constructor(
    private readonly params: ChunkingParams,
    gear: Int32Array,
  ) {
    this.gear = gear;
    const bits = Math.round(Math.log2(params.avgSize));
    this.maskStrict = highBits(bits + 2);
    this.maskLoose = highBits(bits - 2);
    this.buffer = Buffer.alloc(0);
  }

  push(data: Buffer): Buffer[] {
    const chunks: Buffer[] = [];
    let offset = 0;
    while (offset < data.length) {
      this.reserve(data.length - offset);
      const take = Math.min(data.length - offset, this.buffer.length - this.filled);
      data.copy(this.buffer, this.filled, offset, offset + take);
      this.filled += take;
      offset += take;
      if (this.filled === this.params.maxSize) {
        // Full window: a cut always exists in it (maxSize at the latest).
        while (this.filled >= this.params.maxSize) chunks.push(this.cut(this.findCut(this.filled)));
      }
    }
    return chunks;
  }

  /** Small files never pay for a maxSize window: the buffer grows with the data, up to maxSize. */
  private reserve(incoming: number): void {
    const wanted = Math.min(this.params.maxSize, this.filled + incoming);
    if (wanted <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.min(this.params.maxSize, Math.max(wanted, this.buffer.length * 2)));
    this.buffer.copy(grown, 0, 0, this.filled);
    this.buffer = grown;
  }

  finish(): Buffer[] {
    const chunks: Buffer[] = [];
    while (this.filled > 0) chunks.push(this.cut(this.findCut(this.filled)));
    return chunks;
  }

  private cut(length: number): Buffer {
    const chunk = Buffer.from(this.buffer.subarray(0, length));
    this.buffer.copyWithin(0, length, this.filled);
    this.filled -= length;
    return chunk;
  }

  /** Cut point in buffer[0, available); returns `available` when it is the tail of the stream. */
  private findCut(available: number): number {
    const { minSize, avgSize, maxSize } = this.params;
    if (available <= minSize) return available;
    const end = Math.min(available, maxSize);
    const normal = Math.min(end, avgSize);
    const gear = this.gear;
    const buf = this.buffer;
    const strict = this.maskStrict;
    const loose = this.maskLoose;
    let hash = 0;
    let i = minSize;
    for (; i < normal; i++) {
      hash = ((hash << 1) + gear[buf[i]]) | 0;
      if ((hash & strict) === 0) return i + 1;
    }
    for (; i < end; i++) {
      hash = ((hash << 1) + gear[buf[i]]) | 0;
      if ((hash & loose) === 0) return i + 1;
    }
    return end;
  }
}
