import { LRUCache } from 'lru-cache';
import type { Repository } from '../kloset/repository.js';
import { BlobType } from '../kloset/sealing.js';

/** A cached chunk's bytes: copied out the way Buffer.copy does it. */
export interface ChunkBytes {
  readonly length: number;
  copy(target: Buffer, targetStart: number, sourceStart: number, sourceEnd: number): number;
}

/**
 * The cache's memory is cut into pages of this size, allocated SLAB_PAGES at a
 * time: 32 MiB, at malloc's mmap threshold, so each slab is a mapping of its
 * own rather than a stretch of the heap that short-lived buffers fragment.
 */
const PAGE = 128 * 1024;
const SLAB_PAGES = 256;

/** Read-ahead in flight at most, whatever the cache size (a quarter of it when that is less). */
const MAX_AHEAD_BYTES = 64 * 1024 * 1024;

/**
 * Fixed-size pages for the cache, allocated as needed up to a limit and then
 * reused. Decoded chunks are copied in and their own buffers dropped at
 * once: memory that malloc handed out for chunks of every size would stay
 * mapped after eviction, and the mount's footprint would drift far above the
 * cache size it was given.
 */
class PagePool {
  private readonly free: Buffer[] = [];
  private allocated = 0;

  constructor(private readonly limit: number) {}

  get available(): number {
    return this.free.length + (this.limit - this.allocated);
  }

  take(count: number): Buffer[] {
    while (this.free.length < count && this.allocated < this.limit) {
      const pages = Math.min(SLAB_PAGES, this.limit - this.allocated);
      const slab = Buffer.allocUnsafeSlow(pages * PAGE);
      for (let i = 0; i < pages; i++) this.free.push(slab.subarray(i * PAGE, (i + 1) * PAGE));
      this.allocated += pages;
    }
    return this.free.splice(this.free.length - count, count);
  }

  give(pages: Buffer[]): void {
    this.free.push(...pages);
  }
}

/**
 * A chunk held in pages: every page full but the last. A reader pins it
 * while copying out; pages of a chunk evicted meanwhile go back to the pool
 * only once the last reader is done, so they are never overwritten under it.
 */
class PagedChunk implements ChunkBytes {
  pins = 0;
  evicted = false;

  constructor(
    readonly pages: Buffer[],
    readonly length: number,
    private readonly pool: PagePool,
  ) {}

  copy(target: Buffer, targetStart: number, sourceStart: number, sourceEnd: number): number {
    let written = 0;
    for (let at = sourceStart; at < sourceEnd; ) {
      const page = Math.floor(at / PAGE);
      const from = at - page * PAGE;
      const to = Math.min(PAGE, sourceEnd - page * PAGE);
      written += this.pages[page].copy(target, targetStart + written, from, to);
      at += to - from;
    }
    return written;
  }

  evict(): void {
    this.evicted = true;
    if (this.pins === 0) this.pool.give(this.pages);
  }

  unpin(): void {
    if (--this.pins === 0 && this.evicted) this.pool.give(this.pages);
  }
}

/**
 * Decrypted, decompressed chunks, bounded in bytes. Concurrent readers of a
 * chunk share one fetch, and a batch of misses goes to the repository as one
 * request, which coalesces chunks stored side by side in a pack. Chunks of a
 * page or more live in pages of a fixed pool; smaller ones in buffers of
 * their own size.
 */
export class ChunkCache {
  private readonly chunks: LRUCache<string, ChunkBytes>;
  private readonly pages: PagePool;
  private readonly inFlight = new Map<string, Promise<ChunkBytes>>();
  /** Readers waiting for a chunk under way: it arrives pinned once for each. */
  private readonly waiting = new Map<string, number>();
  hits = 0;
  misses = 0;
  /** The most bytes the cache has held at once. */
  peakBytes = 0;
  /**
   * Bytes fetched ahead and not yet kept, across all readers: each reader's
   * window alone would let many readers at once hold far more than the cache
   * in flight, and what arrives must fit in the cache until it is read.
   */
  private readonly aheadLimit: number;
  private aheadBytes = 0;

  constructor(
    private readonly repository: Repository,
    readonly maxBytes: number,
  ) {
    this.aheadLimit = Math.min(MAX_AHEAD_BYTES, Math.floor(maxBytes / 4));
    this.pages = new PagePool(Math.floor(maxBytes / PAGE));
    this.chunks = new LRUCache<string, ChunkBytes>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (chunk) => (chunk instanceof PagedChunk ? chunk.pages.length * PAGE : Math.max(1, chunk.length)),
      dispose: (chunk) => {
        if (chunk instanceof PagedChunk) chunk.evict();
      },
    });
  }

  get bytes(): number {
    return this.chunks.calculatedSize;
  }

  /** Keeps a decoded chunk: copied into pages (evicting the least recently used as needed), or as is when small. */
  private keep(key: string, plaintext: Buffer): ChunkBytes {
    this.inFlight.delete(key);
    const readers = this.waiting.get(key) ?? 0;
    this.waiting.delete(key);
    if (plaintext.length < PAGE) {
      const own = Buffer.from(plaintext); // not a view pinning a larger buffer
      return this.remember(key, own);
    }
    const count = Math.ceil(plaintext.length / PAGE);
    while (this.pages.available < count && this.chunks.size > 0) this.chunks.pop();
    // Larger than the whole cache: served from its own buffer, not kept.
    if (this.pages.available < count) return plaintext;
    const pages = this.pages.take(count);
    for (let i = 0; i < count; i++) plaintext.copy(pages[i], 0, i * PAGE, Math.min(plaintext.length, (i + 1) * PAGE));
    const chunk = new PagedChunk(pages, plaintext.length, this.pages);
    chunk.pins = readers;
    return this.remember(key, chunk);
  }

  private remember(key: string, chunk: ChunkBytes): ChunkBytes {
    this.chunks.set(key, chunk);
    this.peakBytes = Math.max(this.peakBytes, this.chunks.calculatedSize);
    return chunk;
  }

  /**
   * Chunks by id, in the order asked, each pinned for the caller, who must
   * release() every one it receives once it has copied out what it needs.
   */
  acquire(ids: Buffer[]): Promise<ChunkBytes>[] {
    return this.fetch(ids, true);
  }

  release(chunk: ChunkBytes): void {
    if (chunk instanceof PagedChunk) chunk.unpin();
  }

  /**
   * Drops chunks a sequential reader has gone past. With the kernel's page
   * cache holding what was read, keeping them would only fill the cache with
   * a stream that is not read again, and each fresh page of it costs a page
   * fault; dropped, their pages go straight back to the next chunks.
   */
  discard(ids: Buffer[]): void {
    for (const id of ids) this.chunks.delete(id.toString('latin1'));
  }

  /**
   * Starts fetching chunks that are likely to be read soon, in order, as many
   * as the read-ahead budget has room for (at least one when nothing else is
   * under way); returns how many.
   */
  prefetch(chunks: readonly { id: Buffer; size: number }[]): number {
    let taken = 0;
    let bytes = 0;
    while (taken < chunks.length && (this.aheadBytes + bytes + chunks[taken].size <= this.aheadLimit || this.aheadBytes + bytes === 0)) {
      bytes += chunks[taken++].size;
    }
    this.aheadBytes += bytes;
    const fetches = this.fetch(
      chunks.slice(0, taken).map((chunk) => chunk.id),
      false,
    );
    fetches.forEach((fetched, i) => {
      // Errors surface when the chunk is read for real; a failed prefetch is retried then.
      void fetched.catch(() => undefined).then(() => (this.aheadBytes -= chunks[i].size));
    });
    return taken;
  }

  /**
   * Fetches the missing chunks together, sharing fetches already under way.
   * Pins are taken synchronously (a hit now, a miss as it is kept), so no
   * eviction can come between a chunk's arrival and its pin.
   */
  private fetch(ids: Buffer[], pin: boolean): Promise<ChunkBytes>[] {
    const keys = ids.map((id) => id.toString('latin1'));
    const results: (Promise<ChunkBytes> | undefined)[] = [];
    const missing: number[] = [];
    for (const [i, key] of keys.entries()) {
      const cached = this.chunks.get(key);
      if (cached) {
        this.hits++;
        if (pin && cached instanceof PagedChunk) cached.pins++;
        results.push(Promise.resolve(cached));
        continue;
      }
      if (pin) this.waiting.set(key, (this.waiting.get(key) ?? 0) + 1);
      const pending = this.inFlight.get(key);
      if (!pending) missing.push(i);
      results.push(pending);
    }
    if (missing.length > 0) {
      const unique = [...new Set(missing.map((i) => keys[i]))];
      this.misses += unique.length;
      const uniqueIds = unique.map((key) => ids[keys.indexOf(key)]);
      const batch = this.repository.getBlobs(uniqueIds, BlobType.chunk);
      unique.forEach((key, n) => {
        // A batch fails as a whole when one of its chunks is damaged: each is then fetched on
        // its own, so that only the damaged chunk's readers get the error, not a reader of its
        // intact neighbours that the same read-ahead brought along.
        const fetched = batch.then(
          (chunks) => chunks[n],
          (err: unknown) => {
            if (unique.length === 1) throw err;
            return this.repository.getBlob(uniqueIds[n], BlobType.chunk);
          },
        );
        const one = fetched.then((plaintext) => this.keep(key, plaintext));
        this.inFlight.set(key, one);
        one.catch(() => {
          this.inFlight.delete(key);
          this.waiting.delete(key);
        });
      });
      for (const i of missing) results[i] = this.inFlight.get(keys[i]);
    }
    return results as Promise<ChunkBytes>[];
  }
}
