/**
 * The bottom layer: named byte strings in a flat namespace ("packs/ab/ab12…",
 * "index/…"). A local directory implements it, and so does an S3 bucket;
 * nothing above this interface knows which one it talks to.
 */
export interface BlobInfo {
  key: string;
  size: number;
}

export interface BlobStore {
  /** Human-readable location, for messages. */
  readonly location: string;
  /**
   * The server the location is on, where two servers can hold the same
   * location: an S3 endpoint's host and port, `aws` for AWS itself. Absent
   * for a local directory.
   */
  readonly server?: string;
  /**
   * How many pack-sized puts are worth having in flight: one for a local
   * disk, where more only holds more memory, several for a remote store
   * whose cost is latency. Absent: 2.
   */
  readonly writeConcurrency?: number;
  /** Requests sent so far by kind (GET, PUT, …), for stores billed per request. */
  readonly requests?: Readonly<Record<string, number>>;
  /**
   * Whole blob; throws NotFoundError when absent, and with `maxBytes`
   * IntegrityError, before reading it, when the blob is larger.
   */
  get(key: string, maxBytes?: number): Promise<Buffer>;
  /**
   * Exactly `length` bytes at `offset`; throws IntegrityError when the blob
   * is shorter. With `into` (exactly `length` bytes), the bytes may be read
   * into it, and `into` itself returned, so that a caller can reuse its buffers.
   */
  getRange(key: string, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /** Atomic: readers see the old state or the whole new blob, never a part. */
  put(key: string, data: Buffer): Promise<void>;
  /** Writes only when the key is free; returns false when it already existed. */
  putIfAbsent(key: string, data: Buffer): Promise<boolean>;
  /** Keys under `prefix`, in no particular order, streamed. */
  list(prefix: string): AsyncIterable<BlobInfo>;
  /** Missing keys are not an error: deletion is idempotent. */
  delete(key: string): Promise<void>;
  /** Size of a blob, or undefined when absent. */
  stat(key: string): Promise<number | undefined>;
  /**
   * Finds, and unless `dryRun` removes, what writes cut short by a killed
   * process left behind (a local store's temporary files), which no key
   * names. Only under the store's exclusive lock, when no put can be under
   * way. Absent where a put leaves nothing partial.
   */
  removePartialWrites?(options?: { dryRun?: boolean }): Promise<{ count: number; bytes: number }>;
  close(): Promise<void>;
}
