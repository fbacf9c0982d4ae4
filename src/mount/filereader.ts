import type { FileContent } from '../snapshot/reader.js';
import type { ChunkCache } from './chunkcache.js';

/** Read-ahead window limits, in chunks: it doubles on each sequential read up to MAX. */
const READ_AHEAD_MIN = 2;
const READ_AHEAD_MAX = 16;
/**
 * How far behind a sequential reader's position chunks are kept: more than
 * the kernel has in flight at once (12 background requests of 128 KiB).
 */
const BEHIND_SLACK = 2 * 1024 * 1024;

/**
 * One open file of the mount. Reads find their chunks by binary search over
 * the chunk offsets; a reader that goes sequentially gets the next chunks
 * fetched ahead, several in flight at once, the window growing while the
 * pattern holds and collapsing on a seek.
 */
export class FileReader {
  private expected = 0;
  private lastChunk = 0;
  private window = 0;
  /** Chunks [0, aheadUntil) have been requested already by read-ahead. */
  private aheadUntil = 0;
  /** Chunks [0, behindFrom) have been dropped from the cache behind a sequential stream. */
  private behindFrom = 0;

  constructor(
    private readonly content: FileContent,
    private readonly cache: ChunkCache,
  ) {}

  get size(): number {
    return this.content.size;
  }

  /** Copies up to `length` bytes at `position` into `target`; returns how many (fewer at the end of the file). */
  async readInto(target: Buffer, position: number, length: number): Promise<number> {
    const content = this.content;
    const end = Math.min(content.size, position + length);
    if (position >= end) return 0;
    const first = content.chunkAt(position);
    const last = content.chunkAt(end - 1);
    const ids = [];
    for (let i = first; i <= last; i++) ids.push(content.chunks[i].id);
    const wanted = this.cache.acquire(ids);
    this.readAhead(position, end, last);
    const settled = await Promise.allSettled(wanted);
    try {
      // Straight from each cached chunk into the caller's buffer: no joined copy.
      let written = 0;
      for (let i = first; i <= last; i++) {
        const part = settled[i - first];
        if (part.status === 'rejected') throw part.reason;
        const chunkStart = content.offsets[i];
        const from = Math.max(position, chunkStart) - chunkStart;
        const to = Math.min(end, content.offsets[i + 1]) - chunkStart;
        written += part.value.copy(target, written, from, to);
      }
      return written;
    } finally {
      for (const part of settled) if (part.status === 'fulfilled') this.cache.release(part.value);
    }
  }

  private readAhead(position: number, end: number, last: number): void {
    // The kernel's own read-ahead sends several requests at once, not always
    // in order: a read counts as sequential when it starts near where the
    // stream already is (the previous end, or within what was fetched ahead).
    const first = this.content.chunkAt(position);
    const sequential = position === this.expected || (this.window > 0 && first >= this.lastChunk - 1 && first <= this.aheadUntil);
    this.expected = Math.max(this.expected, end);
    this.lastChunk = Math.max(this.lastChunk, last);
    if (!sequential) {
      this.window = 0;
      this.aheadUntil = 0;
      this.behindFrom = first;
      this.expected = end;
      this.lastChunk = last;
      return;
    }
    this.dropBehind(position);
    this.window = Math.min(READ_AHEAD_MAX, Math.max(READ_AHEAD_MIN, this.window * 2));
    // Refilled in batches, not a chunk per read: chunks asked for together
    // come in one ranged request where they lie side by side in a pack.
    if (this.aheadUntil - (this.lastChunk + 1) >= this.window / 2) return;
    const from = Math.max(this.lastChunk + 1, this.aheadUntil);
    const until = Math.min(this.content.chunks.length, this.lastChunk + 1 + this.window);
    if (from >= until) return;
    // What the cache's read-ahead budget has no room for now is asked for again at a later read.
    this.aheadUntil = from + this.cache.prefetch(this.content.chunks.slice(from, until));
  }

  /**
   * A sequential stream is done with the chunks that end well before where
   * it reads now. The slack covers the kernel's read-ahead requests, which
   * are in flight together and may arrive out of order.
   */
  private dropBehind(position: number): void {
    if (position < BEHIND_SLACK) return;
    const until = this.content.chunkAt(position - BEHIND_SLACK);
    if (until <= this.behindFrom) return;
    const ids = [];
    for (let i = this.behindFrom; i < until; i++) ids.push(this.content.chunks[i].id);
    this.behindFrom = until;
    this.cache.discard(ids);
  }
}
