import type { Worker } from 'node:worker_threads';
import { startThread } from '../../threads.js';
import type { EntryMetadata, WriteSettings } from './filewrite.js';

export interface SmallFile {
  /** As the restore names it, for messages. */
  rel: string;
  /** The path it is written by: checked to lie within the target, and reached through its directory's descriptor (FsExporter). */
  at: string;
  metadata: EntryMetadata;
  data: Buffer;
}

/** A message to the thread. */
export interface SmallFileBatch {
  id: number;
  settings: WriteSettings;
  /** Every file's content back to back: one buffer moved to the thread, rather than one copied per file. */
  data: ArrayBuffer;
  files: { rel: string; at: string; metadata: EntryMetadata; offset: number; length: number }[];
}

export interface SmallFileFailure {
  message: string;
  code?: string;
}

/**
 * A thread that writes whole small files, a batch per message. On a tree
 * of small files, creating, writing, chmod-ing and closing each one costs
 * the main thread about as much as fetching and decrypting it; here the
 * two overlap on two cores. Each file is written whole or removed before
 * the next is started, so a stop never leaves one cut short.
 */
export class SmallFileWriter {
  private thread: Worker | undefined;
  private failure: Error | undefined;
  private readonly stopping = new Int32Array(new SharedArrayBuffer(4));
  private readonly waiting = new Map<number, { resolve: (failures: (SmallFileFailure | null)[]) => void; reject: (err: Error) => void }>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private nextId = 0;

  /** Whether the thread has been started. */
  get running(): boolean {
    return this.thread !== undefined;
  }

  /** Resolves with each file's failure, or null for a file written. */
  write(settings: WriteSettings, files: SmallFile[]): Promise<(SmallFileFailure | null)[]> {
    if (this.failure) return Promise.reject(this.failure);
    const data = Buffer.allocUnsafeSlow(files.reduce((total, file) => total + file.data.length, 0));
    let offset = 0;
    const described = files.map(({ rel, at, metadata, data: content }) => {
      content.copy(data, offset);
      offset += content.length;
      return { rel, at, metadata, offset: offset - content.length, length: content.length };
    });
    const id = this.nextId++;
    const written = new Promise<(SmallFileFailure | null)[]>((resolve, reject) => {
      const thread = this.started();
      this.waiting.set(id, { resolve, reject });
      // Held open only while a batch is out: an idle thread must not keep the process alive.
      if (this.waiting.size === 1) thread.ref();
      thread.postMessage({ id, settings, data: data.buffer, files: described } satisfies SmallFileBatch, [data.buffer]);
    });
    this.inFlight.add(written);
    void written.then(
      () => this.inFlight.delete(written),
      () => this.inFlight.delete(written),
    );
    return written;
  }

  private started(): Worker {
    if (this.thread) return this.thread;
    const thread = startThread(new URL('./smallfileworker.js', import.meta.url), {
      workerData: { stopping: this.stopping.buffer },
      // A small young generation makes the thread collect promptly: RSS stays low.
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    });
    thread.on('message', ({ id, failures }: { id: number; failures: (SmallFileFailure | null)[] }) => {
      this.waiting.get(id)?.resolve(failures);
      this.waiting.delete(id);
      if (this.waiting.size === 0) thread.unref();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const { reject } of this.waiting.values()) reject(this.failure);
      this.waiting.clear();
    };
    thread.on('error', fail);
    thread.on('exit', () => fail(new Error('the file writing thread stopped')));
    return (this.thread = thread);
  }

  /** Starts no more files; resolves once the thread has answered for every batch sent. */
  async stop(): Promise<void> {
    Atomics.store(this.stopping, 0, 1);
    await Promise.allSettled(this.inFlight);
  }

  async close(): Promise<void> {
    const thread = this.thread;
    this.failure ??= new Error('closed');
    if (thread) await thread.terminate();
  }
}
