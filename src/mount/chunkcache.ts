import { LRUCache } from 'lru-cache';
import type { Repository } from '../kloset/repository.js';
import { BlobType } from '../kloset/sealing.js';

/** A cached chunk's bytes: copied out the way Buffer.copy does it. */
export interface ChunkBytes {
  readonly length: number;
  copy(target: Buffer, targetStart: number, sourceStart: number, sourceEnd: number): number;
}

/**
 * The cache's memory is cut into units of a memory page, allocated in slabs
 * of 32 MiB: at malloc's mmap threshold, so each slab is a mapping of its own
 * rather than a stretch of the heap that short-lived buffers fragment.
 */
const UNIT = 4096;
const SLAB_UNITS = 8192;

/** Read-ahead in flight at most, whatever the cache size (a quarter of it when that is less). */
const MAX_AHEAD_BYTES = 64 * 1024 * 1024;

/**
 * Every cached chunk lives in units of this pool, allocated as needed up to
 * the cache size and then reused: decoded chunks are copied in and their own
 * buffers dropped at once. Memory that malloc handed out for chunks of every
 * size would stay mapped after eviction, and small chunks kept in buffers of
 * their own would come on top of the pool's; this way the cache's footprint
 * is its size, whatever the mix of chunks it held. A unit is a number, its
 * slab and offset following from it; the free list hands out ascending
 * numbers, so a chunk's units mostly follow each other in memory and are
 * copied as one run.
 */
class UnitPool {
  private readonly slabs: Buffer[] = [];
  /** A stack whose top is the lowest free unit. */
  private readonly free: number[] = [];
  private allocated = 0;

  constructor(private readonly limit: number) {}

  get available(): number {
    return this.free.length + (this.limit - this.allocated);
  }

  get allocatedBytes(): number {
    return this.allocated * UNIT;
  }

  take(count: number): number[] {
    while (this.free.length < count && this.allocated < this.limit) {
      const units = Math.min(SLAB_UNITS, this.limit - this.allocated);
      const first = this.slabs.length * SLAB_UNITS;
      this.slabs.push(Buffer.allocUnsafeSlow(units * UNIT));
      this.free.unshift(...Array.from({ length: units }, (_, i) => first + units - 1 - i));
      this.allocated += units;
    }
    return this.free.splice(this.free.length - count, count).reverse();
  }

  give(units: readonly number[]): void {
    for (let i = units.length - 1; i >= 0; i--) this.free.push(units[i]);
  }

  /**
   * Copies between a chunk's units and a buffer outside the pool, a run of
   * units adjacent in one slab at a time: `into` copies the buffer into the
   * units, otherwise the units into the buffer. `at` is the chunk's offset.
   */
  transfer(units: readonly number[], buffer: Buffer, bufferStart: number, at: number, end: number, into: boolean): number {
    let moved = 0;
    while (at < end) {
      const first = Math.floor(at / UNIT);
      let last = first;
      while (last + 1 < units.length && (last + 1) * UNIT < end && units[last + 1] === units[last] + 1 && units[last + 1] % SLAB_UNITS !== 0) last++;
      const runEnd = Math.min(end, (last + 1) * UNIT);
      const slab = this.slabs[Math.floor(units[first] / SLAB_UNITS)];
      const offset = (units[first] % SLAB_UNITS) * UNIT + (at - first * UNIT);
      const length = runEnd - at;
      if (into) buffer.copy(slab, offset, bufferStart + moved, bufferStart + moved + length);
      else slab.copy(buffer, bufferStart + moved, offset, offset + length);
      moved += length;
      at = runEnd;
    }
    return moved;
  }
}

/**
 * A chunk held in units of the pool. A reader pins it while copying out;
 * units of a chunk evicted meanwhile go back to the pool only once the last
 * reader is done, so they are never overwritten under it.
 */
class PooledChunk implements ChunkBytes {
  pins = 0;
  evicted = false;

  constructor(
    readonly units: number[],
    readonly length: number,
    private readonly pool: UnitPool,
  ) {}

  copy(target: Buffer, targetStart: number, sourceStart: number, sourceEnd: number): number {
    return this.pool.transfer(this.units, target, targetStart, sourceStart, Math.min(sourceEnd, this.length), false);
  }

  evict(): void {
    this.evicted = true;
    if (this.pins === 0) this.pool.give(this.units);
  }

  unpin(): void {
    if (--this.pins === 0 && this.evicted) this.pool.give(this.units);
  }
}

/**
 * Decrypted, decompressed chunks, bounded in bytes. Concurrent readers of a
 * chunk share one fetch, and a batch of misses goes to the repository as one
 * request, which coalesces chunks stored side by side in a pack. Chunks live
 * in a pool of memory the size of the cache (UnitPool).
 */
export class ChunkCache {
  private readonly chunks: LRUCache<string, PooledChunk>;
  private readonly pool: UnitPool;
  private readonly inFlight = new Map<string, Promise<ChunkBytes>>();
  /** Readers waiting for a chunk under way: it arrives pinned once for each. */
  private readonly waiting = new Map<string, number>();
  hits = 0;
  misses = 0;
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
    this.pool = new UnitPool(Math.floor(maxBytes / UNIT));
    this.chunks = new LRUCache<string, PooledChunk>({
      maxSize: Math.max(1, maxBytes),
      sizeCalculation: (chunk) => Math.max(1, chunk.units.length * UNIT),
      dispose: (chunk) => chunk.evict(),
    });
  }

  get bytes(): number {
    return this.chunks.calculatedSize;
  }

  /** The memory the cache has taken: the most it has held at once, as its pool never shrinks. */
  get peakBytes(): number {
    return this.pool.allocatedBytes;
  }

  /** Keeps a decoded chunk: copied into the pool, evicting the least recently used as needed. */
  private keep(key: string, plaintext: Buffer): ChunkBytes {
    this.inFlight.delete(key);
    const readers = this.waiting.get(key) ?? 0;
    this.waiting.delete(key);
    const count = Math.ceil(plaintext.length / UNIT);
    while (this.pool.available < count && this.chunks.size > 0) this.chunks.pop();
    // Larger than the whole cache (or than what pinned chunks leave of it): served from its own buffer, not kept.
    if (this.pool.available < count) return plaintext;
    const units = this.pool.take(count);
    this.pool.transfer(units, plaintext, 0, 0, plaintext.length, true);
    const chunk = new PooledChunk(units, plaintext.length, this.pool);
    chunk.pins = readers;
    this.chunks.set(key, chunk);
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
    if (chunk instanceof PooledChunk) chunk.unpin();
  }

  /**
   * Drops chunks a sequential reader has gone past. With the kernel's page
   * cache holding what was read, keeping them would only fill the cache with
   * a stream that is not read again, and each fresh page of it costs a page
   * fault; dropped, their units go straight back to the next chunks.
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
        if (pin) cached.pins++;
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
