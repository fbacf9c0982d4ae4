import { LRUCache } from 'lru-cache';
import type { Repository } from '../kloset/repository.js';

/**
 * Decrypted, decompressed chunks, bounded in bytes. Concurrent readers of a
 * chunk share one fetch, and a batch of misses goes to the repository as one
 * request, which coalesces chunks stored side by side in a pack.
 */
export class ChunkCache {
  private readonly chunks: LRUCache<string, Buffer>;
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  hits = 0;
  misses = 0;

  constructor(
    private readonly repository: Repository,
    readonly maxBytes: number,
  ) {
    this.chunks = new LRUCache<string, Buffer>({ maxSize: Math.max(1, maxBytes), sizeCalculation: (b) => Math.max(1, b.length) });
  }

  get bytes(): number {
    return this.chunks.calculatedSize;
  }

  /** Chunks by id, in the order asked; fetches the missing ones together. */
  getMany(ids: Buffer[]): Promise<Buffer>[] {
    const keys = ids.map((id) => id.toString('latin1'));
    const results: (Promise<Buffer> | undefined)[] = keys.map((key) => {
      const cached = this.chunks.get(key);
      if (cached) {
        this.hits++;
        return Promise.resolve(cached);
      }
      return this.inFlight.get(key);
    });
    const missing: number[] = [];
    const seen = new Set<string>();
    results.forEach((r, i) => {
      if (!r && !seen.has(keys[i])) {
        seen.add(keys[i]);
        missing.push(i);
      }
    });
    if (missing.length > 0) {
      this.misses += missing.length;
      const batch = this.repository.getBlobs(missing.map((i) => ids[i]));
      missing.forEach((i, n) => {
        const key = keys[i];
        const one = batch.then((chunks) => chunks[n]);
        this.inFlight.set(key, one);
        one.then(
          (chunk) => {
            this.inFlight.delete(key);
            this.chunks.set(key, chunk);
          },
          () => this.inFlight.delete(key),
        );
      });
      results.forEach((r, i) => {
        if (!r) results[i] = this.inFlight.get(keys[i]);
      });
    }
    return results as Promise<Buffer>[];
  }

  get(id: Buffer): Promise<Buffer> {
    return this.getMany([id])[0];
  }
}
