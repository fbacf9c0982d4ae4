import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import { KlosetError } from '../errors.js';
import { startThread } from '../threads.js';
import type { BlobWriter } from './repository.js';
import { BlobType, ID_BYTES } from './sealing.js';
import type { ChunkJob, WorkerBatch, WorkerRequest } from './chunkworker.js';
import { HANDED_OFF, LoadTable } from './loadtable.js';

/** A file's content as the snapshot records it: chunk ids in order with their plaintext sizes. */
export interface ChunkRef {
  id: Buffer;
  size: number;
}

export interface ChunkedContent {
  chunks: ChunkRef[];
  size: number;
  newChunks: number;
  newBytes: number;
  /** A local file's ctime moved while it was read: what was stored may mix its old and new content. */
  changed: boolean;
}

/** Streamed sources reach the workers in blocks of at least this size. */
const STREAM_BLOCK = 1024 * 1024;

/**
 * The buffer itself when it is the whole of its ArrayBuffer, which can then
 * be transferred to a worker instead of copied (a network read's buffers
 * are); else a copy that is.
 */
function transferable(part: Buffer): Buffer {
  if (part.byteOffset === 0 && part.byteLength === part.buffer.byteLength && !(part.buffer instanceof SharedArrayBuffer)) return part;
  const copy = Buffer.allocUnsafeSlow(part.length);
  part.copy(copy);
  return copy;
}

/**
 * Sealed chunks held back, across streams, until a chunk cut before them
 * comes back from the worker that seals it (see StreamState.held). A chunk
 * that finds no room goes to the packs at once, after what its stream holds.
 */
const HELD_MAX = 16 * 1024 * 1024;

/** Bytes of streamed sources handed to one worker and not yet used up: bounds memory and keeps every worker busy. */
const IN_FLIGHT_PER_WORKER = 8 * 1024 * 1024;

/**
 * Local files wait here while every worker has at least this many bytes
 * queued, so each file goes to the worker that frees up first: a worker
 * compressing a large text file is not handed the next large file while the
 * other runs dry.
 */
const QUEUED_PER_WORKER = 8 * 1024 * 1024;

interface StreamState {
  worker: PoolWorker | undefined;
  /** Bytes expected (the size the walk saw), counted against the worker's queue... */
  size: number;
  /** ...less those already chunked. */
  counted: number;
  chunks: ChunkRef[];
  newChunks: number;
  newBytes: number;
  /** Chunks handed to another worker to seal, not yet back: the stream is done only when none is left... */
  handedOff: number;
  /** ...and its worker has cut its last chunk... */
  cut: boolean;
  /** ...and no write of its chunks is under way, and none is held. */
  writing: number;
  /**
   * Chunks [0, placed) are in the writer's packs, or need no place there
   * (stored before). A chunk handed off to another worker comes back after
   * the chunks cut after it; those wait in `held`, copied out of their
   * batch, and follow it into the pack, so that a file's chunks lie in its
   * packs in order and a reader fetches several of them in one request.
   * Null: a chunk stored before, which only stands in line.
   */
  placed: number;
  held: Map<number, SealedChunk | null>;
  changed: boolean;
  resolve: (content: ChunkedContent) => void;
  reject: (err: Error) => void;
  failed: boolean;
}

interface SealedChunk {
  id: Buffer;
  sealed: Buffer;
  size: number;
}

interface PoolWorker {
  thread: Worker;
  /** Jobs and emptied batch buffers waiting for the next message to this worker. */
  jobs: ChunkJob[];
  buffers: ArrayBuffer[];
  /** A set: two views of one ArrayBuffer in a message must not list it twice, which postMessage refuses. */
  transfer: Set<ArrayBuffer>;
  /** Bytes of assigned streams not yet chunked. */
  queued: number;
  inFlight: number;
  waiters: (() => void)[];
  /** Batches are applied in order, each awaiting the pack writer's back-pressure. */
  tail: Promise<void>;
}

/**
 * Runs files through the chunk workers (chunk, MAC, compress, seal) and
 * hands new sealed chunks to the writer. The main thread only moves buffers;
 * jobs queued during one turn of the event loop go out as one message.
 */
export class ChunkPool {
  private readonly workers: PoolWorker[] = [];
  private readonly streams = new Map<number, StreamState>();
  private readonly waiting: Extract<ChunkJob, { kind: 'file' }>[] = [];
  /**
   * Every stream's held chunks are copied into one buffer, one after the
   * other, which starts over once none of them is left: a buffer for each
   * raised a backup's peak memory by twice what they held.
   */
  private heldSpace: Buffer | undefined;
  private heldUsed = 0;
  private heldCount = 0;
  private nextStream = 1;
  private sendScheduled = false;
  private failure: Error | undefined;
  /** Chunks one worker cut and another sealed. */
  chunksHandedOff = 0;

  constructor(
    private readonly writer: BlobWriter,
    private readonly size = Math.max(1, os.availableParallelism()),
  ) {}

  /** Workers start with the first file to read: a backup with nothing new starts none. */
  private start(): void {
    const repository = this.writer.repository;
    const shared = {
      keys: repository.keys,
      chunking: repository.config.chunking,
      compression: repository.config.compression,
      knownIds: repository.index.sortedIds(),
      load: LoadTable.allocate(this.size),
    };
    for (let slot = 0; slot < this.size; slot++) {
      // A small young generation makes the worker collect garbage promptly: RSS stays low.
      const thread = startThread(new URL('./chunkworker.js', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 4 } });
      const worker: PoolWorker = { thread, jobs: [], buffers: [], transfer: new Set(), queued: 0, inFlight: 0, waiters: [], tail: Promise.resolve() };
      thread.on('message', (batch: WorkerBatch) => {
        worker.tail = worker.tail.then(() => this.apply(worker, batch)).catch((err: Error) => this.failAll(err));
      });
      thread.on('error', (err) => this.failAll(err));
      thread.on('exit', () => this.failAll(new Error('chunk worker stopped')));
      thread.postMessage({ op: 'init', init: { ...shared, slot } } satisfies WorkerRequest);
      this.workers.push(worker);
    }
  }

  private open(size: number, worker: PoolWorker | undefined): { stream: number; done: Promise<ChunkedContent> } {
    if (this.failure) throw new KlosetError(`chunk worker failed: ${this.failure.message}`, { cause: this.failure });
    const stream = this.nextStream++;
    const done = new Promise<ChunkedContent>((resolve, reject) => {
      this.streams.set(stream, {
        worker,
        size,
        counted: 0,
        chunks: [],
        newChunks: 0,
        newBytes: 0,
        handedOff: 0,
        cut: false,
        writing: 0,
        placed: 0,
        held: new Map(),
        changed: false,
        resolve,
        reject,
        failed: false,
      });
    });
    if (worker) worker.queued += size;
    done.catch(() => undefined); // the caller awaits it; never an unhandled rejection meanwhile
    return { stream, done };
  }

  private leastQueued(): PoolWorker {
    if (this.workers.length === 0) this.start();
    return this.workers.reduce((a, b) => (b.queued < a.queued ? b : a));
  }

  /** Hands waiting files to workers with room in their queue. */
  private pump(): void {
    while (this.waiting.length > 0 && !this.failure) {
      const worker = this.leastQueued();
      if (worker.queued >= QUEUED_PER_WORKER) return;
      const job = this.waiting.shift()!;
      const state = this.streams.get(job.stream);
      if (!state) continue;
      state.worker = worker;
      worker.queued += state.size;
      this.send(worker, job);
    }
  }

  /** Takes `bytes` off the stream's worker queue, at most what was put on it. */
  private count(state: StreamState, bytes: number): void {
    const counted = Math.min(bytes, state.size - state.counted);
    state.counted += counted;
    if (state.worker) state.worker.queued -= counted;
  }

  private send(worker: PoolWorker, job: ChunkJob | undefined, transfer?: ArrayBuffer): void {
    if (job) worker.jobs.push(job);
    if (transfer) worker.transfer.add(transfer);
    if (this.sendScheduled) return;
    this.sendScheduled = true;
    // A message wakes a thread, which costs more than the message: one per worker per turn of the event loop.
    setImmediate(() => {
      this.sendScheduled = false;
      for (const w of this.workers) {
        if (w.jobs.length === 0 && w.buffers.length === 0) continue;
        w.thread.postMessage({ op: 'jobs', jobs: w.jobs, buffers: w.buffers } satisfies WorkerRequest, [...w.transfer]);
        w.jobs = [];
        w.buffers = [];
        w.transfer = new Set();
      }
    });
  }

  /**
   * Chunks a local file, read by the worker itself; resolves once every new chunk is queued for a pack.
   * With `listed`, the inode the walk saw: a file opened with another fails with code REPLACED (replaced.ts).
   */
  chunkFile(path: string | Uint8Array, size: number, listed?: { ino: number; dev: number }): Promise<ChunkedContent> {
    const { stream, done } = this.open(size, undefined);
    this.waiting.push({ kind: 'file', stream, path, size, ...listed });
    this.pump();
    return done;
  }

  /**
   * Chunks a stream of bytes (an object being downloaded), with back-pressure
   * on the source. The source's buffers become the pool's: network reads come
   * in small pieces, each in an ArrayBuffer of its own, and are handed to the
   * worker as they are, in messages of at least STREAM_BLOCK bytes, so the
   * main thread does not copy them and the worker copies them once, into its
   * chunker's buffer.
   */
  async chunk(source: AsyncIterable<Buffer>, size = 0): Promise<ChunkedContent> {
    // A stream's chunker state lives in one worker, chosen now: its blocks are sent as they arrive.
    const worker = this.leastQueued();
    const { stream, done } = this.open(size, worker);
    // A stream that failed, or a pool stopped, takes no more blocks: its sender must not wait for room that never comes.
    const open = () => this.failure === undefined && this.streams.get(stream)?.failed === false;
    // A stream that fits in one block may pass large streams' bytes, up to a second budget: else a few large
    // objects keep the worker's queue full, and the many small downloads wait until they are done.
    const budget = size > 0 && size <= STREAM_BLOCK ? 2 * IN_FLIGHT_PER_WORKER : IN_FLIGHT_PER_WORKER;
    const sendParts = async (parts: Buffer[], bytes: number) => {
      while (worker.inFlight >= budget && open()) await new Promise<void>((r) => worker.waiters.push(r));
      if (!open()) return;
      worker.inFlight += bytes;
      for (const part of parts) worker.transfer.add(part.buffer as ArrayBuffer);
      this.send(worker, { kind: 'data', stream, parts });
    };
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    try {
      for await (const data of source) {
        if (!open()) break;
        if (data.length === 0) continue;
        pending.push(transferable(data));
        pendingBytes += data.length;
        if (pendingBytes >= STREAM_BLOCK) {
          await sendParts(pending, pendingBytes);
          pending = [];
          pendingBytes = 0;
        }
      }
      if (pendingBytes > 0) await sendParts(pending, pendingBytes);
    } catch (err) {
      // The source failed mid-way: end the stream so the worker forgets it, then report.
      this.send(worker, { kind: 'end', stream });
      await done.catch(() => undefined);
      throw err;
    }
    this.send(worker, { kind: 'end', stream });
    return done;
  }

  /**
   * Applies one batch: every sealed chunk goes to the writer, even one of a
   * stream that failed meanwhile, because the worker now counts it as stored
   * and will not seal it again for another file. A chunk handed off goes on
   * to its helper; its sealed bytes come back in one of the helper's batches,
   * and the chunks cut after it wait for them (place).
   */
  private async apply(worker: PoolWorker, batch: WorkerBatch): Promise<void> {
    const sealedBytes = batch.sealed ? Buffer.from(batch.sealed) : undefined;
    const ids = Buffer.from(batch.ids.buffer, batch.ids.byteOffset, batch.ids.byteLength);
    const layout = batch.layout;
    let index = 0;
    let handedOff = 0;
    let writerError: Error | undefined;
    try {
      for (const result of batch.results) {
        const state = this.streams.get(result.stream);
        for (let n = 0; n < result.chunks; n++, index++) {
          const id = ids.subarray(index * ID_BYTES, (index + 1) * ID_BYTES);
          const offset = layout[index * 3 + 1];
          const length = layout[index * 3 + 2];
          const size = layout[index * 3];
          if (result.sealOnly) {
            if (state) {
              state.chunks[result.positions![n]].id = id;
              state.handedOff--;
            }
          } else if (state) {
            state.chunks.push({ id, size });
            this.count(state, size);
          }
          const position = result.sealOnly ? result.positions![n] : state ? state.chunks.length - 1 : 0;
          if (length === HANDED_OFF) {
            const data = batch.handedOff[handedOff++];
            if (state) state.handedOff++;
            this.chunksHandedOff++;
            this.send(this.workers[offset], { kind: 'seal', stream: result.stream, position, data: new Uint8Array(data) }, data);
            continue;
          }
          if (writerError) continue;
          const chunk = length === 0 ? null : { id, sealed: sealedBytes!.subarray(offset, offset + length), size };
          try {
            await this.place(state, position, chunk);
          } catch (err) {
            writerError = err as Error;
          }
        }
        if (result.consumed > 0) this.release(worker, result.consumed);
        if (!state) continue;
        if (result.last) state.cut = true;
        if (result.changed) state.changed = true;
        if (writerError) this.fail(result.stream, state, writerError);
        else this.settle(result.stream, state);
      }
      for (const error of batch.errors) {
        const state = this.streams.get(error.stream);
        if (!state) continue;
        // Another stream may have used a held chunk as stored: it goes to the writer whatever becomes of this one.
        if (!writerError) await this.placeHeld(state, Infinity).catch(() => undefined);
        this.fail(error.stream, state, Object.assign(new KlosetError(error.message), { code: error.code }));
      }
    } finally {
      if (batch.sealed) {
        worker.buffers.push(batch.sealed);
        this.send(worker, undefined, batch.sealed);
      }
    }
  }

  /**
   * Sends a sealed chunk (null: one stored before) at `position` of its
   * stream to the writer, in stream order: held while an earlier chunk is
   * still with another worker, then followed by the held chunks it was
   * holding up. A stream that failed (no state) takes no order.
   */
  private async place(state: StreamState | undefined, position: number, chunk: SealedChunk | null): Promise<void> {
    if (!state) return this.write(undefined, chunk);
    if (position > state.placed) {
      if (!chunk || this.heldUsed + chunk.sealed.length <= HELD_MAX) {
        state.held.set(position, chunk && this.holdCopy(chunk));
        return;
      }
      // No room to hold it: what the stream holds goes now, then this chunk; those it waited for follow when they come.
      await this.placeHeld(state, position);
    }
    state.placed = Math.max(state.placed, position + 1);
    await this.write(state, chunk);
    await this.placeHeld(state);
  }

  /**
   * Writes the held chunks next in line; with `past`, first every held chunk
   * before that position, whether or not the chunks between them have come.
   */
  private async placeHeld(state: StreamState, past = 0): Promise<void> {
    state.placed = Math.max(state.placed, past);
    while (state.held.size > 0) {
      const position = Math.min(...state.held.keys());
      if (position > state.placed) return;
      if (position === state.placed) state.placed++;
      const chunk = state.held.get(position)!;
      state.held.delete(position);
      try {
        await this.write(state, chunk);
      } finally {
        if (chunk && --this.heldCount === 0) this.heldUsed = 0;
      }
    }
  }

  /** Its batch buffer goes back to the worker once the batch is applied: a held chunk is a copy. */
  private holdCopy(chunk: SealedChunk): SealedChunk {
    this.heldSpace ??= Buffer.allocUnsafeSlow(HELD_MAX);
    const sealed = this.heldSpace.subarray(this.heldUsed, this.heldUsed + chunk.sealed.length);
    chunk.sealed.copy(sealed);
    this.heldUsed += sealed.length;
    this.heldCount++;
    return { ...chunk, sealed };
  }

  /** Hands a chunk to the writer, counted for its stream when it has one. */
  private async write(state: StreamState | undefined, chunk: SealedChunk | null): Promise<void> {
    if (!chunk) return;
    if (state) state.writing++;
    try {
      if ((await this.writer.addSealed(BlobType.chunk, chunk.id, chunk.sealed, chunk.size)) && state) {
        state.newChunks++;
        state.newBytes += chunk.sealed.length;
      }
    } finally {
      if (state) state.writing--;
    }
  }

  /** Resolves a stream once it is cut, its hand-offs are back, and all its chunks are with the writer. */
  private settle(stream: number, state: StreamState): void {
    if (!state.cut || state.handedOff > 0 || state.writing > 0 || state.held.size > 0 || this.streams.get(stream) !== state) return;
    this.finish(stream, state);
    const size = state.chunks.reduce((sum, c) => sum + c.size, 0);
    state.resolve({ chunks: state.chunks, size, newChunks: state.newChunks, newBytes: state.newBytes, changed: state.changed });
  }

  private fail(stream: number, state: StreamState, err: Error): void {
    state.failed = true;
    this.finish(stream, state);
    state.reject(err);
    // Its sender may be waiting for room on the worker: woken, it sees the failure and stops.
    if (state.worker) for (const wake of state.worker.waiters.splice(0)) wake();
  }

  private finish(stream: number, state: StreamState): void {
    this.streams.delete(stream);
    this.count(state, Infinity);
    this.pump();
  }

  private release(worker: PoolWorker, bytes: number): void {
    worker.inFlight -= bytes;
    for (const wake of worker.waiters.splice(0)) wake();
  }

  private failAll(err: Error): void {
    this.failure ??= err;
    for (const [id, state] of this.streams) this.fail(id, state, new KlosetError(`chunk worker failed: ${err.message}`, { cause: err }));
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.thread.terminate()));
  }
}
