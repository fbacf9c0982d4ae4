import { createHmac } from 'node:crypto';
import { GEAR_WASM } from './gearwasm.js';

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

/** Where the bytes to scan start in the scanner's memory: after the table. */
const WINDOW_AT = 1024;
/** Bytes copied into the scanner's memory and scanned at a time: a cut found early wastes at most this much copying. */
const WINDOW = 64 * 1024;
const gearModule = new WebAssembly.Module(GEAR_WASM);

interface GearExports {
  memory: WebAssembly.Memory;
  hash: WebAssembly.Global;
  scan(p: number, normal: number, end: number, strict: number, loose: number): number;
}

/**
 * The gear scan of one table, run in WebAssembly (gear.wat). The bytes are
 * copied into its memory a window at a time; the copy costs a small part of
 * what the faster loop saves.
 */
export class GearScanner {
  private readonly exports: GearExports;
  private readonly memory: Uint8Array;

  constructor(table: Int32Array) {
    this.exports = new WebAssembly.Instance(gearModule).exports as unknown as GearExports;
    this.memory = new Uint8Array(this.exports.memory.buffer);
    const view = new DataView(this.exports.memory.buffer);
    for (let i = 0; i < 256; i++) view.setInt32(i * 4, table[i], true);
  }

  /** The hash where the last scan stopped. */
  get hash(): number {
    return this.exports.hash.value as number;
  }

  /**
   * Scans buf[from, end) starting from `hash`: with the strict mask below
   * `normal`, then the loose one. Returns the index just past the first
   * byte whose hash matches, or -1 (then `hash` is the hash at `end`).
   */
  scan(buf: Uint8Array, from: number, normal: number, end: number, hash: number, strict: number, loose: number): number {
    this.exports.hash.value = hash;
    for (let at = from; at < end; at += WINDOW) {
      const stop = Math.min(end, at + WINDOW);
      this.memory.set(buf.subarray(at, stop), WINDOW_AT);
      const shift = WINDOW_AT - at;
      const cut = this.exports.scan(WINDOW_AT, Math.max(at, Math.min(normal, stop)) + shift, stop + shift, strict, loose);
      if (cut >= 0) return cut - shift;
    }
    return -1;
  }
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
   * `gear` holds the table from gearTable(): made once per store (and thread), not per file.
   * `blocks`, when given, supplies and takes back buffers of a fixed
   * capacity, so a long stream does not allocate (and fault in) fresh memory
   * for every read; the caller must then be done with the chunks of one
   * commit() before the next prepare().
   */
  constructor(
    private readonly params: ChunkingParams,
    private readonly gear: GearScanner,
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

  /** Bytes that follow the stream so far, in one piece or in several (copied once, side by side). */
  push(data: Buffer | Buffer[]): Buffer[] {
    const parts = Array.isArray(data) ? data : [data];
    const { buffer, offset } = this.prepare(parts.reduce((sum, part) => sum + part.length, 0));
    let end = offset;
    for (const part of parts) end += part.copy(buffer, end);
    return this.commit(buffer, end);
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
    const from = Math.max(this.scanned, minSize);
    const cut = this.gear.scan(buf, from, normal, end, this.hash, this.maskStrict, this.maskLoose);
    if (cut >= 0) return cut;
    if (end === maxSize || final) return end;
    this.scanned = Math.max(from, end);
    this.hash = this.gear.hash;
    return -1;
  }
}
