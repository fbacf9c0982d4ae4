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
  /** ...and its worker has cut its last chunk. */
  cut: boolean;
  changed: boolean;
  resolve: (content: ChunkedContent) => void;
  reject: (err: Error) => void;
  failed: boolean;
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
   * to its helper; its sealed bytes come back in one of the helper's batches.
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
          if (length === HANDED_OFF) {
            const data = batch.handedOff[handedOff++];
            const position = state ? state.chunks.length - 1 : 0;
            if (state) state.handedOff++;
            this.chunksHandedOff++;
            this.send(this.workers[offset], { kind: 'seal', stream: result.stream, position, data: new Uint8Array(data) }, data);
            continue;
          }
          if (length === 0 || writerError) continue;
          try {
            if (await this.writer.addSealed(BlobType.chunk, id, sealedBytes!.subarray(offset, offset + length), size) && state) {
              state.newChunks++;
              state.newBytes += length;
            }
          } catch (err) {
            writerError = err as Error;
          }
        }
        if (result.consumed > 0) this.release(worker, result.consumed);
        if (!state) continue;
        if (result.last) state.cut = true;
        if (result.changed) state.changed = true;
        if (writerError) this.fail(result.stream, state, writerError);
        else if (state.cut && state.handedOff === 0) {
          this.finish(result.stream, state);
          const size = state.chunks.reduce((sum, c) => sum + c.size, 0);
          state.resolve({ chunks: state.chunks, size, newChunks: state.newChunks, newBytes: state.newBytes, changed: state.changed });
        }
      }
      for (const error of batch.errors) {
        const state = this.streams.get(error.stream);
        if (state) this.fail(error.stream, state, Object.assign(new KlosetError(error.message), { code: error.code }));
      }
    } finally {
      if (batch.sealed) {
        worker.buffers.push(batch.sealed);
        this.send(worker, undefined, batch.sealed);
      }
    }
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
