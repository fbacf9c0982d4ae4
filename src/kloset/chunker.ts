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

const EMPTY = Buffer.alloc(0);

/** Reusable buffers of one capacity. */
export class BlockPool {
  private readonly free: Buffer[] = [];
  constructor(
    readonly capacity: number,
    private readonly keep: number,
  ) {}
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.capacity);
  }
  give(block: Buffer): void {
    if (this.free.length < this.keep) this.free.push(block);
  }
}

/**
 * FastCDC with normalized chunking (Xia et al., 2016/2020): a stricter mask
 * before the average size and a looser one after it narrow the size spread.
 *
 * Streaming without copies: data is written after the uncut tail in a buffer
 * from prepare(), and the chunks commit() returns are views of that buffer,
 * so a byte is copied only when its chunk straddles two reads. A cut is
 * final as soon as it is found (the hash only looks back), and a scan that
 * runs out of data resumes where it stopped.
 */
export class Chunker {
  private readonly maskStrict: number;
  private readonly maskLoose: number;
  private tail: Buffer = EMPTY;
  /** How far into the tail the current scan has hashed, and the hash there. */
  private scanned = 0;
  private hash = 0;

  /** The buffer the tail lives in, handed back to `blocks` once the tail has moved on. */
  private block: Buffer | undefined;

  /**
   * `gear` comes from gearTable(): computed once per store, not per file.
   * `blocks`, when given, supplies and takes back buffers of a fixed
   * capacity, so a long stream does not allocate (and fault in) fresh memory
   * for every read; the caller must then be done with the chunks of one
   * commit() before the next prepare().
   */
  constructor(
    private readonly params: ChunkingParams,
    private readonly gear: Int32Array,
    private readonly blocks?: BlockPool,
  ) {
    const bits = Math.round(Math.log2(params.avgSize));
    this.maskStrict = highBits(bits + 2);
    this.maskLoose = highBits(bits - 2);
  }

  /** A fresh buffer holding the uncut tail, with room for `size` more bytes at `offset`. */
  prepare(size: number): { buffer: Buffer; offset: number } {
    const needed = this.tail.length + size;
    const pooled = this.blocks && needed <= this.blocks.capacity;
    const buffer = pooled ? this.blocks!.take() : Buffer.allocUnsafeSlow(needed);
    this.tail.copy(buffer, 0);
    this.retire(buffer);
    return { buffer, offset: this.tail.length };
  }

  private retire(next: Buffer | undefined): void {
    if (this.block && this.blocks && this.block.length === this.blocks.capacity) this.blocks.give(this.block);
    this.block = next;
  }

  /** The stream is over and its last chunks consumed: hand the buffer back. */
  dispose(): void {
    this.tail = EMPTY;
    this.retire(undefined);
  }

  /** After bytes were written to buffer[offset, end): the chunks now determined. The buffer is the chunker's from here on. */
  commit(buffer: Buffer, end: number): Buffer[] {
    this.tail = buffer.subarray(0, end);
    return this.cutAll(false);
  }

  push(data: Buffer): Buffer[] {
    const { buffer, offset } = this.prepare(data.length);
    data.copy(buffer, offset);
    return this.commit(buffer, offset + data.length);
  }

  /** The last chunks of the stream. */
  finish(): Buffer[] {
    return this.cutAll(true);
  }

  private cutAll(final: boolean): Buffer[] {
    const chunks: Buffer[] = [];
    while (this.tail.length > 0) {
      const cut = this.nextCut(final);
      if (cut < 0) break;
      chunks.push(this.tail.subarray(0, cut));
      this.tail = this.tail.subarray(cut);
      this.scanned = 0;
      this.hash = 0;
    }
    if (final) this.tail = EMPTY;
    return chunks;
  }

  /** Length of the next chunk, or -1 when more data is needed to decide. */
  private nextCut(final: boolean): number {
    const { minSize, avgSize, maxSize } = this.params;
    const buf = this.tail;
    const available = buf.length;
    if (available <= minSize) return final ? available : -1;
    const end = Math.min(available, maxSize);
    const normal = Math.min(end, avgSize);
    const gear = this.gear;
    const strict = this.maskStrict;
    const loose = this.maskLoose;
    let hash = this.hash;
    let i = Math.max(this.scanned, minSize);
    for (; i < normal; i++) {
      hash = ((hash << 1) + gear[buf[i]]) | 0;
      if ((hash & strict) === 0) return i + 1;
    }
    for (; i < end; i++) {
      hash = ((hash << 1) + gear[buf[i]]) | 0;
      if ((hash & loose) === 0) return i + 1;
    }
    if (end === maxSize || final) return end;
    this.scanned = i;
    this.hash = hash;
    return -1;
  }
}
