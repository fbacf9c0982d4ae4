/** In a batch's layout, the sealed length of a chunk handed to another worker to seal. */
export const HANDED_OFF = -1;

/**
 * Shared by every worker of a pool: per worker, how many of its own jobs
 * (files, stream blocks) are queued or running, then how many bytes others
 * have handed it to seal and it has not sealed yet. A stream is chunked in
 * one worker, in order; a worker with a large file hands every chunk it
 * can to a worker with nothing of its own to do, so one large file keeps
 * every core busy.
 */
export class LoadTable {
  private readonly cells: Int32Array;
  private readonly workers: number;

  constructor(buffer: SharedArrayBuffer) {
    this.cells = new Int32Array(buffer);
    this.workers = this.cells.length / 2;
  }

  static allocate(workers: number): SharedArrayBuffer {
    return new SharedArrayBuffer(2 * workers * Int32Array.BYTES_PER_ELEMENT);
  }

  ownJobs(slot: number, delta: number): void {
    Atomics.add(this.cells, slot, delta);
  }

  sealed(slot: number, bytes: number): void {
    Atomics.sub(this.cells, this.workers + slot, bytes);
  }

  /** An idle worker other than `self` with room for `bytes` more, now reserved on it; -1 if none. */
  reserveHelper(self: number, bytes: number, limit: number): number {
    let best = -1;
    let bestReserved = Infinity;
    for (let w = 0; w < this.workers; w++) {
      if (w === self || Atomics.load(this.cells, w) !== 0) continue;
      const reserved = Atomics.load(this.cells, this.workers + w);
      if (reserved + bytes > limit && reserved > 0) continue;
      if (reserved < bestReserved) {
        best = w;
        bestReserved = reserved;
      }
    }
    if (best >= 0) Atomics.add(this.cells, this.workers + best, bytes);
    return best;
  }
}
