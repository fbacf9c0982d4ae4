/**
 * The backup hot path, run in worker threads so that chunking, MAC,
 * compression and encryption use every core while the main thread reads
 * files and writes packs. One stream is one file: its messages are handled in
 * order, its chunks returned in order; several streams interleave.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { BlockPool, Chunker, gearTable, type ChunkingParams } from './chunker.js';
import { encodeBlob, type CompressionParams } from './compression.js';
import type { StoreKeys } from './keys.js';
import { BlobType, ID_BYTES, Sealer } from './sealing.js';

export interface WorkerInit {
  keys: StoreKeys;
  chunking: ChunkingParams;
  compression: CompressionParams;
  /** Sorted ids already in the store: those chunks are not compressed or sealed again. */
  knownIds: SharedArrayBuffer;
}

export type WorkerRequest =
  | { op: 'init'; init: WorkerInit }
  /** A local file: read here, so its bytes never pass through the main thread. */
  | { op: 'file'; stream: number; path: string; size: number }
  /** Bytes of a streamed source (an S3 object), then its end. */
  | { op: 'data'; stream: number; data: Uint8Array }
  | { op: 'end'; stream: number }
  /** The main thread has queued this many sealed bytes: room for more. */
  | { op: 'ack'; bytes: number };

export interface ProducedChunk {
  id: Uint8Array;
  size: number;
  /** Absent when the store (or this worker) already has the chunk. */
  sealed?: Uint8Array;
}

export type WorkerReply =
  | { op: 'chunks'; stream: number; consumed: number; chunks: ProducedChunk[]; last: boolean }
  | { op: 'error'; stream: number; message: string; code?: string };

let init: WorkerInit | undefined;
let sealer: Sealer | undefined;
let known: Uint8Array = new Uint8Array(0);
let gear: Int32Array | undefined;
let blocks: BlockPool | undefined;
const producedHere = new Set<string>();
const streams = new Map<number, { chunker: Chunker; tail: Promise<void> }>();

/** Local files are read in blocks of this size, straight into the chunker's buffer. */
const READ_BLOCK = 2 * 1024 * 1024;
const probe = Buffer.alloc(1);

/**
 * Sealed bytes sent and not yet acknowledged: a worker stops reading once the
 * main thread (waiting on pack uploads) is this far behind, so memory stays bounded.
 */
const UNACKNOWLEDGED_LIMIT = 8 * 1024 * 1024;
let unacknowledged = 0;
let creditWaiters: (() => void)[] = [];

async function credit(): Promise<void> {
  while (unacknowledged >= UNACKNOWLEDGED_LIMIT) await new Promise<void>((r) => creditWaiters.push(r));
}

function isKnown(id: Buffer): boolean {
  let lo = 0;
  let hi = known.length / ID_BYTES - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const cmp = Buffer.compare(id, known.subarray(mid * ID_BYTES, (mid + 1) * ID_BYTES));
    if (cmp === 0) return true;
    if (cmp < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return false;
}

async function produce(raw: Buffer): Promise<ProducedChunk> {
  const id = sealer!.blobId(raw);
  const key = id.toString('latin1');
  if (isKnown(id) || producedHere.has(key)) return { id, size: raw.length };
  producedHere.add(key);
  const encoded = await encodeBlob(raw, init!.compression);
  return { id, size: raw.length, sealed: sealer!.seal(BlobType.chunk, id, encoded) };
}

function reply(message: WorkerReply): void {
  const transfer: ArrayBuffer[] = [];
  if (message.op === 'chunks') {
    for (const chunk of message.chunks) {
      unacknowledged += chunk.sealed?.byteLength ?? 0;
      // Sealed buffers are fresh allocations of their own: hand them over without a copy.
      if (chunk.sealed && chunk.sealed.byteOffset === 0 && chunk.sealed.byteLength === chunk.sealed.buffer.byteLength) {
        transfer.push(chunk.sealed.buffer as ArrayBuffer);
      }
    }
  }
  parentPort!.postMessage(message, transfer);
}

function enqueue(streamId: number, work: (chunker: Chunker) => Promise<void>): void {
  let stream = streams.get(streamId);
  if (!stream) {
    stream = { chunker: new Chunker(init!.chunking, gear!, blocks), tail: Promise.resolve() };
    streams.set(streamId, stream);
  }
  const current = stream;
  current.tail = current.tail
    .then(() => work(current.chunker))
    .catch((err: unknown) => {
      streams.delete(streamId);
      const code = (err as NodeJS.ErrnoException).code;
      reply({ op: 'error', stream: streamId, message: err instanceof Error ? err.message : String(err), code });
    });
}

parentPort!.on('message', (message: WorkerRequest) => {
  switch (message.op) {
    case 'init': {
      init = message.init;
      const keys = init.keys;
      sealer = new Sealer({
        idKey: Buffer.from(keys.idKey),
        macKey: Buffer.from(keys.macKey),
        chunkerSeed: Buffer.from(keys.chunkerSeed),
        encryptionKey: keys.encryptionKey ? Buffer.from(keys.encryptionKey) : undefined,
      });
      known = new Uint8Array(init.knownIds);
      gear = gearTable(Buffer.from(keys.chunkerSeed));
      // A read block plus the longest tail a chunker can carry (under maxSize).
      blocks = new BlockPool(READ_BLOCK + init.chunking.maxSize, 2);
      break;
    }
    case 'file': {
      enqueue(message.stream, async (chunker) => {
        const fd = openSync(message.path, 'r');
        try {
          // The size the walk saw: reading past it is caught by the probe below.
          let remaining = message.size;
          for (let position = 0; ; ) {
            if (remaining === 0) {
              // Read to the true end: a file that grew since stat is read whole.
              if (readSync(fd, probe, 0, 1, position) === 0) break;
              remaining = READ_BLOCK;
            }
            await credit();
            const want = Math.min(READ_BLOCK, remaining);
            const { buffer, offset } = chunker.prepare(want);
            let bytesRead = 0;
            while (bytesRead < want) {
              const n = readSync(fd, buffer, offset + bytesRead, want - bytesRead, position + bytesRead);
              if (n === 0) break;
              bytesRead += n;
            }
            position += bytesRead;
            remaining = bytesRead < want ? 0 : remaining - bytesRead;
            const chunks = await Promise.all(chunker.commit(buffer, offset + bytesRead).map(produce));
            if (chunks.length > 0) reply({ op: 'chunks', stream: message.stream, consumed: 0, chunks, last: false });
          }
        } finally {
          closeSync(fd);
        }
        const chunks = await Promise.all(chunker.finish().map(produce));
        chunker.dispose();
        streams.delete(message.stream);
        reply({ op: 'chunks', stream: message.stream, consumed: 0, chunks, last: true });
      });
      break;
    }
    case 'ack': {
      unacknowledged -= message.bytes;
      const waiters = creditWaiters;
      creditWaiters = [];
      for (const wake of waiters) wake();
      break;
    }
    case 'data': {
      const data = Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength);
      enqueue(message.stream, async (chunker) => {
        await credit();
        const chunks = await Promise.all(chunker.push(data).map(produce));
        reply({ op: 'chunks', stream: message.stream, consumed: data.length, chunks, last: false });
      });
      break;
    }
    case 'end': {
      enqueue(message.stream, async (chunker) => {
        const chunks = await Promise.all(chunker.finish().map(produce));
        chunker.dispose();
        streams.delete(message.stream);
        reply({ op: 'chunks', stream: message.stream, consumed: 0, chunks, last: true });
      });
      break;
    }
  }
});
