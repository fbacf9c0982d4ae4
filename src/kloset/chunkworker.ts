/**
 * The backup hot path, run in worker threads so that chunking, MAC,
 * compression and encryption use every core while the main thread walks the
 * source and writes packs.
 *
 * Work is synchronous and batched: a message from the main thread carries
 * many jobs (a local file to read, a block of a streamed source, a stream's
 * end), and one reply carries the chunks of many of them, their sealed bytes
 * side by side in one buffer. On a small-file tree, a message and a buffer
 * per file would cost more than the files' own hashing.
 *
 * Cutting a stream is sequential, but naming, compressing and sealing its
 * chunks is not: a worker with nothing of its own to do takes chunks off a
 * busy one (see LoadTable), through the main thread.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';
import { BlockPool, Chunker, GearScanner, gearTable, type ChunkingParams } from './chunker.js';
import { encodeBlob, type CompressionParams } from './compression.js';
import type { StoreKeys } from './keys.js';
import { HANDED_OFF, LoadTable } from './loadtable.js';
import { REPLACED } from './replaced.js';
import { BlobType, ID_BYTES, SEAL_OVERHEAD, Sealer } from './sealing.js';

export interface WorkerInit {
  keys: StoreKeys;
  chunking: ChunkingParams;
  compression: CompressionParams;
  /** Sorted ids already in the store: those chunks are not compressed or sealed again. */
  knownIds: SharedArrayBuffer;
  /** This worker's place in the pool's load table. */
  slot: number;
  /** The pool's load table (see LoadTable): how a worker finds an idle one to seal for it. */
  load: SharedArrayBuffer;
}

/** One stream is one file: its jobs are handled in order, its chunks returned in order. */
export type ChunkJob =
  /** A local file: read here, so its bytes never pass through the main thread. */
  | { kind: 'file'; stream: number; path: string | Uint8Array; size: number; ino?: number; dev?: number }
  /** Bytes of a streamed source (an S3 object), in the pieces they were read in... */
  | { kind: 'data'; stream: number; parts: Uint8Array[] }
  /** ...then its end. */
  | { kind: 'end'; stream: number }
  /** A chunk another worker cut, to name, compress and seal here; `position` is its place in the stream's chunk list. */
  | { kind: 'seal'; stream: number; position: number; data: Uint8Array };

export type WorkerRequest =
  | { op: 'init'; init: WorkerInit }
  /** New jobs, and batch buffers handed back once their sealed chunks are copied into packs. */
  | { op: 'jobs'; jobs: ChunkJob[]; buffers: ArrayBuffer[] };

/** What one stream produced in a batch: its next `chunks` chunks of the batch, in order. */
export interface StreamResult {
  stream: number;
  chunks: number;
  /** Bytes of `data` jobs used up, so the sender can send more. */
  consumed: number;
  last: boolean;
  /** With `last`: the file's ctime moved while it was read (written to, truncated, chmod-ed), as tar notices. */
  changed?: boolean;
  /** Chunks sealed for the worker that cut them: already in the stream's list, here only their ids and sealed bytes... */
  sealOnly: boolean;
  /** ...and their positions in that list. */
  positions?: number[];
}

export interface WorkerBatch {
  op: 'batch';
  results: StreamResult[];
  /** ID_BYTES per chunk, in order. */
  ids: Uint8Array;
  /**
   * Three numbers per chunk: plaintext size, then offset and length of its
   * sealed bytes in `sealed`. Length 0: already stored. Length HANDED_OFF: the
   * chunk's plaintext is next in `handedOff`, for the worker whose slot is in
   * place of the offset, and its id is zeros.
   */
  layout: Int32Array;
  sealed: ArrayBuffer | undefined;
  handedOff: ArrayBuffer[];
  errors: { stream: number; message: string; code?: string }[];
}

let init: WorkerInit | undefined;
let sealer: Sealer | undefined;
let known: Uint8Array = new Uint8Array(0);
let gear: GearScanner | undefined;
let blocks: BlockPool | undefined;
const producedHere = new Set<string>();
const chunkers = new Map<number, Chunker>();

/** Local files are read in blocks of this size, straight into the chunker's buffer. */
const READ_BLOCK = 2 * 1024 * 1024;

/** A batch is sent once its sealed bytes reach this, or once this many files are done, or when the queue runs dry. */
const FLUSH_BYTES = 1024 * 1024;
const FLUSH_FILES = 32;
/**
 * Batch buffers per worker: one filling, the others with the main thread.
 * When none is back, the worker waits: memory stays bounded while packs upload.
 */
const BATCH_BUFFERS = 2;

/** Chunks smaller than this are sealed where they are cut: handing one off would cost more than it saves. */
const HAND_OFF_MIN = 64 * 1024;
/**
 * Bytes handed to one helper and not yet sealed: enough to keep it busy, and
 * little for the main thread to hold back meanwhile, since the chunks cut
 * after a handed-off one wait for it to keep the file's order in the packs
 * (at 8 MiB, a 1 GiB file held up to 22 MB and its packs broke its order 180 times).
 */
const HAND_OFF_LIMIT = 4 * 1024 * 1024;
let load: LoadTable | undefined;

let bufferCapacity = 0;
const spareBuffers: ArrayBuffer[] = [];
let buffersOut = 0;
let bufferReturned: (() => void) | undefined;

/** The batch being filled. */
let buffer: Buffer | undefined;
let used = 0;
let results: StreamResult[] = [];
let ids: Buffer[] = [];
let layout: number[] = [];
let errors: WorkerBatch['errors'] = [];
let handedOff: ArrayBuffer[] = [];
let filesDone = 0;

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

function flush(): void {
  if (results.length === 0 && errors.length === 0) return;
  const sealed = used > 0 ? (buffer!.buffer as ArrayBuffer) : undefined;
  const idBytes = Buffer.concat(ids);
  const batch: WorkerBatch = { op: 'batch', results, ids: idBytes, layout: Int32Array.from(layout), sealed, handedOff, errors };
  const transfer: ArrayBuffer[] = [batch.layout.buffer as ArrayBuffer, ...handedOff];
  if (idBytes.byteOffset === 0 && idBytes.byteLength === idBytes.buffer.byteLength) transfer.push(idBytes.buffer as ArrayBuffer);
  if (sealed) {
    transfer.push(sealed);
    buffersOut++;
    buffer = undefined;
  }
  parentPort!.postMessage(batch, transfer);
  used = 0;
  results = [];
  ids = [];
  layout = [];
  errors = [];
  handedOff = [];
  filesDone = 0;
}

/** Makes sure the batch buffer can take one more sealed chunk, sending the batch or waiting for a buffer as needed. */
async function room(): Promise<void> {
  if (buffer && used >= FLUSH_BYTES) flush();
  while (!buffer) {
    const spare = spareBuffers.pop();
    if (spare) buffer = Buffer.from(spare);
    else if (buffersOut < BATCH_BUFFERS) buffer = Buffer.allocUnsafeSlow(bufferCapacity);
    else await new Promise<void>((resolve) => (bufferReturned = resolve));
  }
}

function resultFor(stream: number, sealOnly = false): StreamResult {
  const last = results[results.length - 1];
  if (last && last.stream === stream && !last.last && last.sealOnly === sealOnly) return last;
  const fresh: StreamResult = { stream, chunks: 0, consumed: 0, last: false, sealOnly, positions: sealOnly ? [] : undefined };
  results.push(fresh);
  return fresh;
}

/** Stands in a batch for the id of a chunk handed off: its helper names it. */
const UNNAMED = Buffer.alloc(ID_BYTES);

/**
 * Adds a chunk to the batch: sealed here unless the store or this worker has
 * it already, or handed whole (naming it too) to an idle worker. The caller
 * has made room(). Returns whether the chunk was handed off.
 */
function produce(stream: number, raw: Buffer): boolean {
  const helper = raw.length >= HAND_OFF_MIN ? load!.reserveHelper(init!.slot, raw.length, HAND_OFF_LIMIT) : -1;
  if (helper >= 0) {
    // A copy the helper can own: the chunk is a view of the chunker's reused block.
    const copy = Buffer.allocUnsafeSlow(raw.length);
    raw.copy(copy);
    handedOff.push(copy.buffer as ArrayBuffer);
    ids.push(UNNAMED);
    layout.push(raw.length, helper, HANDED_OFF);
    resultFor(stream).chunks++;
    return true;
  }
  const id = sealer!.blobId(raw);
  ids.push(id);
  layout.push(raw.length, ...sealIfNew(id, raw));
  resultFor(stream).chunks++;
  return false;
}

/** Offset and length of the chunk's sealed bytes in the batch; length 0 when the store or this worker has it already. */
/**
 * Sealing a chunk leaves buffers of its size behind (zstd's output, the
 * cipher's), which V8 frees only when it collects. A worker cutting a large
 * file makes few JavaScript objects, so it collected only once 64 MB of
 * them had piled up, and the two workers raised a backup's peak by some
 * 30 MB while the large files went through. Collecting the young
 * generation every few megabytes sealed frees them while they are young,
 * for a fraction of a millisecond each time.
 */
const COLLECT_EVERY = 4 * 1024 * 1024;
let sealedSinceCollect = 0;
v8.setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('typeof gc === "function" ? gc : undefined') as ((options: { type: 'minor' }) => void) | undefined;

function sealIfNew(id: Buffer, raw: Buffer): [number, number] {
  const key = id.toString('latin1');
  if (isKnown(id) || producedHere.has(key)) return [0, 0];
  producedHere.add(key);
  const offset = used;
  const length = sealer!.sealInto(BlobType.chunk, id, encodeBlob(raw, init!.compression), buffer!, used);
  used += length;
  if ((sealedSinceCollect += raw.length) >= COLLECT_EVERY && collectGarbage) {
    sealedSinceCollect = 0;
    collectGarbage({ type: 'minor' });
  }
  return [offset, length];
}

async function produceAll(stream: number, chunks: Buffer[]): Promise<void> {
  for (const chunk of chunks) {
    await room();
    // A handed-off chunk leaves at once: its helper is waiting for it.
    if (produce(stream, chunk)) flush();
  }
}

async function sealFor(job: Extract<ChunkJob, { kind: 'seal' }>): Promise<void> {
  const raw = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
  try {
    await room();
    const id = sealer!.blobId(raw);
    ids.push(id);
    layout.push(raw.length, ...sealIfNew(id, raw));
    const result = resultFor(job.stream, true);
    result.chunks++;
    result.positions!.push(job.position);
  } finally {
    load!.sealed(init!.slot, raw.length);
  }
}

function chunkerFor(stream: number): Chunker {
  let chunker = chunkers.get(stream);
  if (!chunker) chunkers.set(stream, (chunker = new Chunker(init!.chunking, gear!, blocks)));
  return chunker;
}

async function finishStream(stream: number, changed = false): Promise<void> {
  const chunker = chunkers.get(stream);
  if (chunker) {
    await produceAll(stream, chunker.finish());
    chunker.dispose();
    chunkers.delete(stream);
  }
  const result = resultFor(stream);
  result.last = true;
  if (changed) result.changed = true;
  filesDone++;
}

/** Linux's O_NOATIME, absent elsewhere. */
const NOATIME = constants.O_NOATIME ?? 0;

/**
 * The walk saw a regular file; by now the name may be something else. A
 * symlink put in its place (by whoever may write the directory) is not
 * followed, or a backup run as root would store, under the name, a file
 * its owner cannot read; a FIFO would block the read forever.
 */
function openRegularFile(path: string | Uint8Array, listed?: { ino: number; dev: number }): { fd: number; ctimeNs: bigint } {
  let fd: number;
  try {
    // A path that is not UTF-8 text comes as its bytes, which arrive here as a plain Uint8Array.
    const at = typeof path === 'string' ? path : Buffer.from(path.buffer, path.byteOffset, path.byteLength);
    const flags = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
    try {
      // The backup's read leaves the file's atime as it was, as restic's and tar --atime-preserve's do
      // (mail readers and cleaners of old files go by it); only its owner or root may ask that.
      fd = openSync(at, flags | NOATIME);
    } catch (err) {
      if (NOATIME === 0 || (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      fd = openSync(at, flags);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new Error('replaced by a symlink since it was listed: not followed');
    throw err;
  }
  const stat = fstatSync(fd, { bigint: true });
  if (!stat.isFile()) {
    closeSync(fd);
    throw new Error('no longer a regular file since it was listed: not read');
  }
  // Another file renamed over the name (an editor's save, an install): its bytes must not be
  // recorded under the mode, owner and inode the walk saw for the one it replaced.
  if (listed && (Number(stat.ino) !== listed.ino || Number(stat.dev) !== listed.dev)) {
    closeSync(fd);
    throw Object.assign(new Error('replaced by another file since it was listed'), { code: REPLACED });
  }
  return { fd, ctimeNs: stat.ctimeNs };
}

async function readFile(job: Extract<ChunkJob, { kind: 'file' }>): Promise<void> {
  const chunker = chunkerFor(job.stream);
  const { fd, ctimeNs } = openRegularFile(job.path, job.ino !== undefined && job.dev !== undefined ? { ino: job.ino, dev: job.dev } : undefined);
  let changed: boolean;
  try {
    // One byte more than the walk saw: a short read then proves the end without another call,
    // and a file that grew since is read whole.
    let expected = job.size + 1;
    for (let position = 0; ; ) {
      const want = Math.min(READ_BLOCK, expected);
      const { buffer: into, offset } = chunker.prepare(want);
      let got = 0;
      while (got < want) {
        const n = readSync(fd, into, offset + got, want - got, position + got);
        if (n === 0) break;
        got += n;
      }
      position += got;
      await produceAll(job.stream, chunker.commit(into, offset + got));
      if (got < want) break;
      expected = expected > got ? expected - got : READ_BLOCK;
    }
    changed = fstatSync(fd, { bigint: true }).ctimeNs !== ctimeNs;
  } finally {
    closeSync(fd);
  }
  await finishStream(job.stream, changed);
}

function partsLength(parts: Uint8Array[]): number {
  return parts.reduce((sum, part) => sum + part.byteLength, 0);
}

async function run(job: ChunkJob): Promise<void> {
  switch (job.kind) {
    case 'file':
      return readFile(job);
    case 'data': {
      const parts = job.parts.map((part) => Buffer.from(part.buffer, part.byteOffset, part.byteLength));
      await produceAll(job.stream, chunkerFor(job.stream).push(parts));
      resultFor(job.stream).consumed += partsLength(job.parts);
      return;
    }
    case 'end':
      return finishStream(job.stream);
    case 'seal':
      return sealFor(job);
  }
}

/** Streams that failed: their remaining jobs are skipped. */
const failed = new Set<number>();
const queue: ChunkJob[] = [];
/** Chunks to seal for others come first: the worker that handed them off counts on this one being idle. */
const sealQueue: ChunkJob[] = [];
let draining = false;

async function drain(): Promise<void> {
  draining = true;
  while (queue.length > 0 || sealQueue.length > 0) {
    const job = sealQueue.shift() ?? queue.shift()!;
    await runOrSkip(job);
    if (job.kind !== 'seal') load!.ownJobs(init!.slot, -1);
    if (filesDone >= FLUSH_FILES) flush();
  }
  flush();
  draining = false;
}

async function runOrSkip(job: ChunkJob): Promise<void> {
  if (job.kind !== 'seal' && failed.has(job.stream)) {
    if (job.kind === 'data') resultFor(job.stream).consumed += partsLength(job.parts);
    else failed.delete(job.stream);
    return;
  }
  try {
    await run(job);
  } catch (err) {
    chunkers.get(job.stream)?.dispose();
    chunkers.delete(job.stream);
    // A failed stream's further jobs ('data', then 'end') are dropped; a file has none.
    if (job.kind === 'data') {
      failed.add(job.stream);
      resultFor(job.stream).consumed += partsLength(job.parts);
    }
    const code = (err as NodeJS.ErrnoException).code;
    errors.push({ stream: job.stream, message: err instanceof Error ? err.message : String(err), code });
  }
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
      load = new LoadTable(init.load);
      gear = new GearScanner(gearTable(Buffer.from(keys.chunkerSeed)));
      // A read block plus the longest tail a chunker can carry (under maxSize).
      blocks = new BlockPool(READ_BLOCK + init.chunking.maxSize, 2);
      // A full batch plus the largest sealed chunk: a stored-as-is chunk, its codec byte and the seal.
      bufferCapacity = FLUSH_BYTES + init.chunking.maxSize + 1 + SEAL_OVERHEAD;
      break;
    }
    case 'jobs': {
      buffersOut -= message.buffers.length;
      spareBuffers.push(...message.buffers);
      if (message.buffers.length > 0) {
        const wake = bufferReturned;
        bufferReturned = undefined;
        wake?.();
      }
      let own = 0;
      for (const job of message.jobs) {
        if (job.kind === 'seal') sealQueue.push(job);
        else {
          queue.push(job);
          own++;
        }
      }
      load!.ownJobs(init!.slot, own);
      if (!draining) void drain();
      break;
    }
  }
});
