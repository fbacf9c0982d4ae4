import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { KlosetError } from '../errors.js';
import type { BlobWriter } from './repository.js';
import { BlobType } from './sealing.js';
import type { WorkerReply, WorkerRequest } from './chunkworker.js';

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
}

/** Streamed sources reach the workers in blocks of at least this size. */
const STREAM_BLOCK = 1024 * 1024;

/** One buffer with its own ArrayBuffer (so it can be transferred, not copied) holding all of `parts`. */
function ownedConcat(parts: Buffer[], length: number): Buffer {
  if (parts.length === 1 && parts[0].byteOffset === 0 && parts[0].byteLength === parts[0].buffer.byteLength) return parts[0];
  const out = Buffer.allocUnsafeSlow(length);
  let offset = 0;
  for (const part of parts) offset += part.copy(out, offset);
  return out;
}

/** Bytes handed to one worker and not yet answered: bounds memory and keeps every worker busy. */
const IN_FLIGHT_PER_WORKER = 8 * 1024 * 1024;

interface StreamState {
  worker: PoolWorker;
  chunks: ChunkRef[];
  newChunks: number;
  newBytes: number;
  /** Replies are applied in order, each awaiting the pack writer's back-pressure. */
  tail: Promise<void>;
  resolve: (content: ChunkedContent) => void;
  reject: (err: Error) => void;
  failed: boolean;
}

interface PoolWorker {
  thread: Worker;
  /** Streams assigned and not finished: a file's chunker state lives in one worker. */
  streams: number;
  inFlight: number;
  waiters: (() => void)[];
}

/**
 * Runs files through the chunk workers (chunk, MAC, compress, seal) and
 * hands new sealed chunks to the writer. The main thread only moves buffers.
 */
export class ChunkPool {
  private readonly workers: PoolWorker[] = [];
  private readonly streams = new Map<number, StreamState>();
  private nextStream = 1;

  constructor(
    private readonly writer: BlobWriter,
    size = Math.max(1, os.availableParallelism()),
  ) {
    const repository = writer.repository;
    const init: WorkerRequest = {
      op: 'init',
      init: {
        keys: repository.keys,
        chunking: repository.config.chunking,
        compression: repository.config.compression,
        knownIds: repository.index.sortedIds(),
      },
    };
    for (let i = 0; i < size; i++) {
      // A small young generation makes the worker collect transferred buffers promptly: RSS stays low.
      const thread = new Worker(new URL('./chunkworker.js', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 16 } });
      const worker: PoolWorker = { thread, streams: 0, inFlight: 0, waiters: [] };
      thread.on('message', (reply: WorkerReply) => this.onReply(reply));
      thread.on('error', (err) => this.failAll(err));
      thread.on('exit', () => this.failAll(new Error('chunk worker stopped')));
      thread.postMessage(init);
      this.workers.push(worker);
    }
  }

  private open(): { stream: number; worker: PoolWorker; done: Promise<ChunkedContent> } {
    const worker = this.workers.reduce((a, b) => (b.streams < a.streams || (b.streams === a.streams && b.inFlight < a.inFlight) ? b : a));
    worker.streams++;
    const stream = this.nextStream++;
    const done = new Promise<ChunkedContent>((resolve, reject) => {
      this.streams.set(stream, {
        worker,
        chunks: [],
        newChunks: 0,
        newBytes: 0,
        tail: Promise.resolve(),
        resolve,
        reject,
        failed: false,
      });
    }).finally(() => {
      worker.streams--;
    });
    done.catch(() => undefined); // the caller awaits it; never an unhandled rejection meanwhile
    return { stream, worker, done };
  }

  /** Chunks a local file, read by the worker itself; resolves once every new chunk is queued for a pack. */
  chunkFile(path: string, size: number): Promise<ChunkedContent> {
    const { stream, worker, done } = this.open();
    worker.thread.postMessage({ op: 'file', stream, path, size } satisfies WorkerRequest);
    return done;
  }

  /**
   * Chunks a stream of bytes (an object being downloaded), with back-pressure
   * on the source. Network reads come in small pieces: they are gathered into
   * blocks of STREAM_BLOCK so the worker appends to its tail rarely.
   */
  async chunk(source: AsyncIterable<Buffer>): Promise<ChunkedContent> {
    const { stream, worker, done } = this.open();
    const send = async (block: Buffer) => {
      while (worker.inFlight >= IN_FLIGHT_PER_WORKER) await new Promise<void>((r) => worker.waiters.push(r));
      worker.inFlight += block.length;
      worker.thread.postMessage({ op: 'data', stream, data: block } satisfies WorkerRequest, [block.buffer as ArrayBuffer]);
    };
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    try {
      for await (const data of source) {
        if (this.streams.get(stream)?.failed ?? true) break;
        pending.push(data);
        pendingBytes += data.length;
        if (pendingBytes >= STREAM_BLOCK) {
          await send(ownedConcat(pending, pendingBytes));
          pending = [];
          pendingBytes = 0;
        }
      }
      if (pendingBytes > 0) await send(ownedConcat(pending, pendingBytes));
    } catch (err) {
      // The source failed mid-way: end the stream so the worker forgets it, then report.
      worker.thread.postMessage({ op: 'end', stream } satisfies WorkerRequest);
      await done.catch(() => undefined);
      throw err;
    }
    worker.thread.postMessage({ op: 'end', stream } satisfies WorkerRequest);
    return done;
  }

  private onReply(reply: WorkerReply): void {
    const state = this.streams.get(reply.stream);
    if (!state) return;
    if (reply.op === 'error') {
      state.failed = true;
      this.streams.delete(reply.stream);
      state.reject(Object.assign(new KlosetError(reply.message), { code: reply.code }));
      return;
    }
    state.tail = state.tail.then(async () => {
      let sealedBytes = 0;
      for (const chunk of reply.chunks) {
        const id = Buffer.from(chunk.id.buffer, chunk.id.byteOffset, chunk.id.byteLength);
        state.chunks.push({ id, size: chunk.size });
        if (chunk.sealed) {
          const sealed = Buffer.from(chunk.sealed.buffer, chunk.sealed.byteOffset, chunk.sealed.byteLength);
          sealedBytes += sealed.length;
          if (await this.writer.addSealed(BlobType.chunk, id, sealed, chunk.size)) {
            state.newChunks++;
            state.newBytes += sealed.length;
          }
        }
      }
      this.release(state.worker, reply.consumed);
      if (sealedBytes > 0) state.worker.thread.postMessage({ op: 'ack', bytes: sealedBytes } satisfies WorkerRequest);
      if (reply.last) {
        this.streams.delete(reply.stream);
        const size = state.chunks.reduce((sum, c) => sum + c.size, 0);
        state.resolve({ chunks: state.chunks, size, newChunks: state.newChunks, newBytes: state.newBytes });
      }
    });
    state.tail.catch((err: Error) => {
      state.failed = true;
      this.release(state.worker, reply.consumed);
      this.streams.delete(reply.stream);
      state.reject(err);
    });
  }

  private release(worker: PoolWorker, bytes: number): void {
    worker.inFlight -= bytes;
    for (const wake of worker.waiters.splice(0)) wake();
  }

  private failAll(err: Error): void {
    for (const [id, state] of this.streams) {
      this.streams.delete(id);
      state.reject(new KlosetError(`chunk worker failed: ${err.message}`, { cause: err }));
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.thread.terminate()));
  }
}
