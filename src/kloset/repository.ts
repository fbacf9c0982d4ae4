import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requireCjs } from '../cjs.js';
import { IntegrityError, KlosetError, NotFoundError } from '../errors.js';
import type { BlobStore } from '../storage/blobstore.js';
import { makeDirectories } from '../storage/directories.js';
import { BlobIndex, checkIndexTable, decodeIndexDelta, encodeIndexDelta, type BlobLocation, type IndexTable } from './blobindex.js';
import { DEFAULT_CHUNKING, type ChunkingParams } from './chunker.js';
import { DEFAULT_COMPRESSION, decodeBlob, encodeBlob, standaloneLimit, type CompressionParams } from './compression.js';
import {
  DEFAULT_KDF,
  MASTER_KEY_BYTES,
  deriveKeyEncryptionKey,
  deriveStoreKeys,
  macConfig,
  unwrapMasterKey,
  verifyConfigMac,
  wrapMasterKey,
  type KdfParams,
  type StoreKeys,
} from './keys.js';
import { DEFAULT_PACK_SIZE, PackBuilder, packKey } from './packfile.js';
import { ReadBuffers } from './readbuffers.js';
import { BlobType, ID_BYTES, Sealer } from './sealing.js';

const { decode, encode } = requireCjs('@msgpack/msgpack') as typeof import('@msgpack/msgpack');

export const CONFIG_KEY = 'CONFIG';
export const FORMAT_NAME = 'kloset-store';
export const FORMAT_VERSION = 1;

export interface StoreConfig {
  format: typeof FORMAT_NAME;
  version: number;
  storeId: string;
  createdAt: string;
  chunking: ChunkingParams;
  compression: CompressionParams;
  packfile: { targetSize: number };
  encryption: { cipher: 'aes-256-gcm'; kdf: KdfParams; wrappedKey: string } | null;
  /** Only in a plaintext store: the master key in clear, since ids and MACs still need one. */
  plaintextKey?: string;
}

/** Bytes of unwanted blobs a coalesced read may carry along rather than split into two requests. */
const COALESCE_GAP = 256 * 1024;
/** A blob missing from the index makes the repository look for new index deltas at most this often. */
const CATCH_UP_INTERVAL_MS = 1000;
/** A coalesced read stops growing here: its chunks are decoded only once all of it has arrived. */
const COALESCE_MAX = 4 * 1024 * 1024;
/** Free read buffers kept for the next reads: a few coalesced reads' worth. */
const READ_BUFFERS_KEPT = 16 * 1024 * 1024;
/** The layout of the local index cache; a cache of another layout is rebuilt from the store. */
const INDEX_CACHE_VERSION = 2;

export type PassphraseProvider = () => Promise<string>;

/** Bounds on what CONFIG may ask of a client: far above the defaults, far below harm. */
const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
const MAX_PACK_BYTES = 1024 * 1024 * 1024;
const MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024;
const MAX_KDF_ITERATIONS = 64;
/** CONFIG is read whole before anything is checked: a few hundred bytes, whatever its fields hold. */
const MAX_CONFIG_BYTES = 64 * 1024;

/**
 * Stores this machine has opened as encrypted, one per line (see
 * storeLine). CONFIG is authenticated only by a key it carries itself, so
 * whoever can write the store could put a plaintext CONFIG in place of an
 * encrypted one, and take the next backups in clear: a store remembered
 * here is refused when it turns up plaintext.
 */
function encryptedStoresFile(): string {
  return path.join(cacheRoot(), 'encrypted-stores');
}

/** This machine's cache of kloset: index copies, and what it remembers of the stores it used. */
function cacheRoot(): string {
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'kloset');
}

/** Replaces a cache file whole (a temporary file renamed over it), so a reader never sees half of one. */
async function replaceCacheFile(file: string, data: Buffer | string): Promise<void> {
  await makeDirectories(path.dirname(file), 0o700);
  const temp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temp, data, { mode: 0o600 });
  await fs.rename(temp, file);
}

function storeLocation(store: BlobStore): string {
  return store.location.includes('://') ? store.location : path.resolve(store.location);
}

/**
 * A store's line in the encrypted-stores file: its location, and for a store
 * on a server, `?endpoint=` and the server (`s3://bucket/kloset?endpoint=minio:9000`,
 * `…?endpoint=aws`), so that two servers' stores of one bucket and prefix are
 * two lines. (An S3 location has no `?` of its own.)
 */
function storeLine(store: BlobStore): string {
  const location = storeLocation(store);
  return store.server === undefined ? location : `${location}?endpoint=${store.server}`;
}

/**
 * The lines that say the store was encrypted. A line of the location alone
 * was written before lines named the server, for a server that is not
 * known: it stands for the location on every server.
 */
function linesOf(store: BlobStore): string[] {
  return [...new Set([storeLine(store), storeLocation(store)])];
}

async function encryptedStores(): Promise<string[]> {
  const text = await fs.readFile(encryptedStoresFile(), 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

/**
 * Records whether the store is encrypted; a cache that cannot be written does not fail a command.
 * A store created plaintext also drops the line of its location alone, as such a line was dropped
 * before lines named the server: kept, it would refuse the store the user has just made.
 */
async function rememberEncryption(store: BlobStore, encrypted: boolean): Promise<void> {
  const known = await encryptedStores();
  const next = encrypted ? [...new Set([...known, storeLine(store)])] : known.filter((line) => !linesOf(store).includes(line));
  if (next.length === known.length) return;
  try {
    await replaceCacheFile(encryptedStoresFile(), next.map((l) => `${l}\n`).join(''));
  } catch {
    // as for the index cache: an optimisation of the cache directory, not a reason to fail
  }
}

export interface CreateOptions {
  /** null makes a plaintext store: still MACed and compressed, not encrypted. */
  passphrase: string | null;
  kdf?: Partial<Omit<KdfParams, 'salt' | 'algorithm'>>;
  chunking?: ChunkingParams;
  compression?: CompressionParams;
  packSize?: number;
}

function canonical(config: StoreConfig): string {
  return JSON.stringify(config);
}

async function readConfig(store: BlobStore): Promise<{ config: StoreConfig; mac: string }> {
  let raw: Buffer;
  try {
    raw = await store.get(CONFIG_KEY, MAX_CONFIG_BYTES);
  } catch (err) {
    if (err instanceof NotFoundError) {
      // An empty location is told apart before (CLI context): this one holds something, so create would refuse it.
      throw new KlosetError(`${store.location}: not a kloset store (it holds files, but no CONFIG)`);
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new KlosetError(`${store.location}: not a kloset store (not a directory)`, { cause: err });
    if (code === 'EISDIR') throw new KlosetError(`${store.location}: not a kloset store (its CONFIG is a directory)`, { cause: err });
    if (err instanceof IntegrityError) throw new KlosetError(`${store.location}: not a kloset store (its CONFIG is unreadable: too large)`, { cause: err });
    throw err;
  }
  let parsed: (StoreConfig & { mac?: string }) | undefined;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  if (!parsed || parsed.format !== FORMAT_NAME || typeof parsed.mac !== 'string') {
    throw new KlosetError(`${store.location}: not a kloset store (its CONFIG is unreadable)`);
  }
  if (parsed.version !== FORMAT_VERSION) {
    throw new KlosetError(`${store.location}: store format version ${parsed.version} is not supported`);
  }
  const { mac, ...config } = parsed;
  const malformed = configShapeProblem(config);
  if (malformed) throw new KlosetError(`${store.location}: not a kloset store (its CONFIG is malformed: ${malformed})`);
  return { config, mac };
}

/**
 * CONFIG is read before anything authenticates it, and its KDF cost is spent
 * before the passphrase is known to be right: a store anyone could write to
 * must not make a client allocate terabytes, hash for hours, or write its
 * cache outside the cache directory (storeId names a directory there).
 */
function configShapeProblem(config: StoreConfig): string | undefined {
  const whole = (n: unknown, min: number, max: number) => Number.isSafeInteger(n) && (n as number) >= min && (n as number) <= max;
  const base64Bytes = (text: unknown, length: number) => typeof text === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(text) && Buffer.from(text, 'base64').length === length;
  if (typeof config.storeId !== 'string' || !/^[0-9a-f]{32}$/.test(config.storeId)) return 'storeId';
  const chunking = config.chunking as Partial<ChunkingParams> | undefined;
  if (
    chunking?.algorithm !== 'fastcdc' ||
    !whole(chunking.minSize, 64, MAX_CHUNK_BYTES) ||
    !whole(chunking.avgSize, chunking.minSize!, MAX_CHUNK_BYTES) ||
    !whole(chunking.maxSize, chunking.avgSize!, MAX_CHUNK_BYTES)
  ) {
    return 'chunking';
  }
  if (config.compression?.algorithm !== 'zstd' || !whole(config.compression.level, -7, 22)) return 'compression';
  if (!whole(config.packfile?.targetSize, 1024, MAX_PACK_BYTES)) return 'packfile';
  const encryption = config.encryption;
  if (encryption === null) return base64Bytes(config.plaintextKey, MASTER_KEY_BYTES) ? undefined : 'plaintextKey';
  const kdf = encryption?.kdf as Partial<KdfParams> | undefined;
  if (encryption?.cipher !== 'aes-256-gcm' || !base64Bytes(encryption.wrappedKey, 12 + MASTER_KEY_BYTES + 16)) return 'encryption';
  if (
    kdf?.algorithm !== 'argon2id' ||
    !whole(kdf.parallelism, 1, 16) ||
    // Argon2 itself refuses less than 8 KiB per lane, in words of its own that would not name CONFIG.
    !whole(kdf.memoryKiB, 8 * kdf.parallelism!, MAX_KDF_MEMORY_KIB) ||
    !whole(kdf.iterations, 1, MAX_KDF_ITERATIONS) ||
    !base64Bytes(kdf.salt, 16)
  ) {
    return 'encryption.kdf';
  }
  return undefined;
}

/**
 * The master key of a store and the keys derived from it, once CONFIG is
 * proved unaltered by its MAC. The passphrase is asked for only when the
 * store is encrypted; a wrong one fails here, before any other read.
 */
async function unlockConfig(
  store: BlobStore,
  config: StoreConfig,
  mac: string,
  passphrase: PassphraseProvider,
): Promise<{ masterKey: Buffer; keys: StoreKeys }> {
  let masterKey: Buffer;
  if (config.encryption) {
    const kek = await deriveKeyEncryptionKey(await passphrase(), config.encryption.kdf);
    masterKey = unwrapMasterKey(config.encryption.wrappedKey, kek);
  } else if (config.plaintextKey) {
    masterKey = Buffer.from(config.plaintextKey, 'base64');
  } else {
    throw new KlosetError(`${store.location}: store config has no key`);
  }
  const keys = deriveStoreKeys(masterKey, config.encryption !== null);
  if (!verifyConfigMac(keys.macKey, canonical(config), mac)) {
    throw new IntegrityError(`${store.location}: store config has been altered (MAC mismatch)`);
  }
  return { masterKey, keys };
}

/**
 * The content layer: an authenticated, compressed, deduplicated blob space
 * over a BlobStore. Knows packs and the index; knows nothing of files or snapshots.
 */
export class Repository {
  readonly sealer: Sealer;
  readonly index = new BlobIndex();
  /** The index deltas the last loadIndex() merged: all that prune may replace, since only those does it know. */
  loadedDeltas: ReadonlySet<string> = new Set();
  private readonly readBuffers = new ReadBuffers(READ_BUFFERS_KEPT);

  private constructor(
    readonly store: BlobStore,
    readonly config: StoreConfig,
    readonly keys: StoreKeys,
  ) {
    this.sealer = new Sealer(keys);
  }

  static async create(store: BlobStore, options: CreateOptions): Promise<Repository> {
    const masterKey = randomBytes(MASTER_KEY_BYTES);
    const encrypted = options.passphrase !== null;
    let encryption: StoreConfig['encryption'] = null;
    if (options.passphrase !== null) {
      const kdf: KdfParams = { ...DEFAULT_KDF, ...options.kdf, salt: randomBytes(16).toString('base64') };
      const kek = await deriveKeyEncryptionKey(options.passphrase, kdf);
      encryption = { cipher: 'aes-256-gcm', kdf, wrappedKey: wrapMasterKey(masterKey, kek) };
    }
    const config: StoreConfig = {
      format: FORMAT_NAME,
      version: FORMAT_VERSION,
      storeId: randomBytes(16).toString('hex'),
      createdAt: new Date().toISOString(),
      chunking: options.chunking ?? DEFAULT_CHUNKING,
      compression: options.compression ?? DEFAULT_COMPRESSION,
      packfile: { targetSize: options.packSize ?? DEFAULT_PACK_SIZE },
      encryption,
      ...(encrypted ? {} : { plaintextKey: masterKey.toString('base64') }),
    };
    const keys = deriveStoreKeys(masterKey, encrypted);
    const body = { ...config, mac: macConfig(keys.macKey, canonical(config)) };
    const written = await store.putIfAbsent(CONFIG_KEY, Buffer.from(JSON.stringify(body, null, 2) + '\n'));
    if (!written) throw new KlosetError(`${store.location}: a store already exists here`);
    await rememberEncryption(store, encrypted);
    return new Repository(store, config, keys);
  }

  /**
   * The passphrase is asked for only when the store is encrypted, and
   * checked before any other read. Loads the index, unless `loadIndex` is false: a
   * command that must lock the store first loads it once the lock is held,
   * so that no prune can remove blobs between the two.
   */
  static async open(store: BlobStore, passphrase: PassphraseProvider, { loadIndex = true } = {}): Promise<Repository> {
    const { config, mac } = await readConfig(store);
    const remembered = config.encryption ? undefined : (await encryptedStores()).find((line) => linesOf(store).includes(line));
    if (remembered !== undefined) {
      throw new KlosetError(
        `${store.location}: this store was encrypted when this machine last used it, and its CONFIG now says it is not: refusing, ` +
          `since someone able to write the store could replace it so as to receive backups in clear (if you re-created it yourself, remove the line ${remembered} from ${encryptedStoresFile()})`,
      );
    }
    const { keys } = await unlockConfig(store, config, mac, passphrase);
    if (config.encryption) await rememberEncryption(store, true);
    const repository = new Repository(store, config, keys);
    if (loadIndex) await repository.loadIndex();
    return repository;
  }

  /**
   * Wraps the master key under a new passphrase (new salt, same KDF cost).
   * CONFIG is rewritten by one put, so another process reads the old or
   * the new one whole; nothing else changes, since every other key derives
   * from the master key. The new CONFIG is read back and opened before
   * this returns.
   */
  static async changePassphrase(store: BlobStore, current: PassphraseProvider, next: PassphraseProvider): Promise<void> {
    const { config, mac } = await readConfig(store);
    if (!config.encryption) throw new KlosetError(`${store.location}: the store is not encrypted, so it has no passphrase`);
    const { masterKey, keys } = await unlockConfig(store, config, mac, current);
    const passphrase = await next();
    const kdf: KdfParams = { ...config.encryption.kdf, salt: randomBytes(16).toString('base64') };
    const rewrapped: StoreConfig = {
      ...config,
      encryption: { ...config.encryption, kdf, wrappedKey: wrapMasterKey(masterKey, await deriveKeyEncryptionKey(passphrase, kdf)) },
    };
    await store.put(CONFIG_KEY, Buffer.from(JSON.stringify({ ...rewrapped, mac: macConfig(keys.macKey, canonical(rewrapped)) }, null, 2) + '\n'));
    await Repository.open(store, async () => passphrase, { loadIndex: false });
  }

  get encrypted(): boolean {
    return this.config.encryption !== null;
  }

  // ---- index ---------------------------------------------------------------

  private cacheFile(): string {
    return path.join(cacheRoot(), this.config.storeId, 'index');
  }

  /**
   * Merges every index delta. A sealed local copy of the merged index remembers
   * which deltas it holds, so reopening a remote store fetches only new ones.
   * The copy is used only while every delta it holds is still in the store:
   * a prune replaces the deltas, and the blobs it removed must not linger
   * here, where a backup would take them for stored.
   */
  async loadIndex(): Promise<void> {
    const names: string[] = [];
    for await (const { key } of this.store.list('index/')) if (isIndexDeltaKey(key)) names.push(key);
    const listed = new Set(names);
    let cached = await this.readIndexCache();
    if (cached && !cached.deltas.every((name) => listed.has(name))) cached = undefined;
    const covered = new Set(cached?.deltas ?? []);
    // Without the cache the index is rebuilt from nothing: a reload must not keep what a prune removed.
    this.index.loadTable(cached?.table ?? { packs: [], records: Buffer.alloc(0) });
    const fresh = names.filter((name) => !covered.has(name));
    await this.mergeDeltas(fresh);
    if (fresh.length > 0 && names.length > 0) await this.writeIndexCache(names);
    this.loadedDeltas = listed;
    this.caughtUpDeltas = new Set();
    this.indexLoaded = true;
    this.indexGeneration++;
  }

  private indexLoaded = false;
  /** Counts loadIndex() calls: a read that found its pack gone knows whether the index was loaded again since it began. */
  private indexGeneration = 0;
  private reloading: Promise<void> | undefined;

  /**
   * Runs a read of blobs located with the index as loaded. A reader holds no
   * lock, so a prune may have repacked a pack it names meanwhile: the new
   * pack and the delta naming it are stored before the old pack is deleted,
   * so the index loaded again places the blob where it now lies. Loaded
   * once for all the reads that fail at once, and each read tried once more.
   */
  private async followingRepacks<T>(read: () => Promise<T>): Promise<T> {
    const generation = this.indexGeneration;
    try {
      return await read();
    } catch (err) {
      if (!(err instanceof MissingPackError) || !this.indexLoaded) throw err;
      if (this.indexGeneration === generation) {
        this.reloading ??= this.loadIndex().finally(() => (this.reloading = undefined));
        // A delta the prune deleted while it was read: the pack stays missing, as first found.
        await this.reloading.catch(() => {
          throw err;
        });
      }
      return read();
    }
  }

  /**
   * A writer's delta is in the store: the local copy of the index is brought
   * to cover it, so the next command on this machine (a re-backup) reads no
   * delta from the store and merges nothing.
   */
  async cacheIndexWith(delta: string): Promise<void> {
    if (!this.indexLoaded) return; // the index holds only this writer's blobs
    await this.writeIndexCache([...this.loadedDeltas, ...this.caughtUpDeltas, delta]);
  }

  /** The cache's table is checked whole before it is used: one that fails is rebuilt from the store. */
  private async readIndexCache(): Promise<{ deltas: string[]; table: IndexTable } | undefined> {
    try {
      const sealed = await fs.readFile(this.cacheFile());
      const opened = this.sealer.open(BlobType.index, Buffer.alloc(ID_BYTES), sealed, 'index cache');
      const plaintext = await decodeBlob(opened, 'index cache', standaloneLimit(sealed.length));
      const cache = decode(plaintext) as { v?: number; deltas: string[]; packs: Uint8Array[]; records: Uint8Array };
      if (cache.v !== INDEX_CACHE_VERSION) return undefined;
      const table = { packs: cache.packs.map((p) => Buffer.from(p)), records: Buffer.from(cache.records) };
      checkIndexTable(table);
      return { deltas: cache.deltas, table };
    } catch {
      return undefined; // a missing, damaged or older cache is rebuilt from the store
    }
  }

  private async writeIndexCache(deltas: string[]): Promise<void> {
    try {
      const { packs, records } = this.index.table();
      const plaintext = Buffer.from(encode({ v: INDEX_CACHE_VERSION, deltas, packs, records }));
      const sealed = this.sealer.seal(BlobType.index, Buffer.alloc(ID_BYTES), encodeBlob(plaintext, this.config.compression));
      await replaceCacheFile(this.cacheFile(), sealed);
    } catch {
      // The cache is an optimisation: an unwritable cache directory must not fail a command.
    }
  }

  // ---- blobs ---------------------------------------------------------------

  has(id: Buffer): boolean {
    return this.index.has(id);
  }

  /**
   * Where a blob is, or undefined if no index delta names it. A blob the
   * loaded index lacks may be a new one: a snapshot listed after the index
   * was loaded names blobs of deltas written meanwhile (a backup stores its
   * deltas, then its header). So a miss first merges the deltas stored since,
   * at most once per CATCH_UP_INTERVAL_MS, and a damaged store costs one listing
   * per interval, not one per missing blob.
   */
  async find(id: Buffer): Promise<BlobLocation | undefined> {
    const location = this.index.get(id);
    if (location) return location;
    if (!this.catchingUp && Date.now() - this.caughtUpAt >= CATCH_UP_INTERVAL_MS) {
      this.catchingUp = this.catchUpIndex().finally(() => {
        this.caughtUpAt = Date.now();
        this.catchingUp = undefined;
      });
    }
    await this.catchingUp;
    return this.index.get(id);
  }

  private catchingUp: Promise<void> | undefined;
  private caughtUpAt = 0;
  /** Deltas merged since loadIndex(), apart from loadedDeltas: to prune they are still another writer's. */
  private caughtUpDeltas = new Set<string>();

  /** Merges the deltas stored since the index was loaded. */
  private async catchUpIndex(): Promise<void> {
    const names: string[] = [];
    for await (const { key } of this.store.list('index/')) {
      if (isIndexDeltaKey(key) && !this.loadedDeltas.has(key) && !this.caughtUpDeltas.has(key)) names.push(key);
    }
    await this.mergeDeltas(names);
    for (const name of names) this.caughtUpDeltas.add(name);
  }

  private async mergeDeltas(names: string[]): Promise<void> {
    await mapLimit(names, 8, async (name) => {
      try {
        decodeIndexDelta(await this.readSealed(name, BlobType.index, indexDeltaId(name)), this.index, name);
      } catch (err) {
        // A delta consolidated and removed by a concurrent writer since it was listed.
        if (err instanceof NotFoundError) return;
        if (err instanceof IntegrityError) {
          throw new IntegrityError(`${err.message} ('kloset repair index' rebuilds the index from the packs)`, { cause: err });
        }
        throw err;
      }
    });
  }

  /** Where blob `id` is; it must be of `type`, or a snapshot crafted with the key could make a reader decode one kind as another. */
  private async locate(id: Buffer, type: BlobType): Promise<BlobLocation> {
    const location = await this.find(id);
    const what = `blob ${id.toString('hex').slice(0, 16)}`;
    if (!location) throw new IntegrityError(`${what} is missing from the store`);
    if (location.type !== type) throw new IntegrityError(`${what} is a ${BLOB_KINDS[location.type] ?? 'blob'}, not a ${BLOB_KINDS[type]}`);
    return location;
  }

  /** One ranged read, authenticated and decoded: a blob of `type`. */
  getBlob(id: Buffer, type: BlobType): Promise<Buffer> {
    return this.followingRepacks(async () => {
      const location = await this.locate(id, type);
      const what = describeBlob(id, location);
      const opened = await this.readOpened(location.packId, location.offset, location.length, (sealed) =>
        this.sealer.open(location.type, id, sealed, what),
      );
      return this.decodeOpened(location, opened, what);
    });
  }

  /**
   * Reads `length` bytes of a pack at `offset` and hands them to `open`,
   * which must not keep them: in an encrypted store, opening copies the
   * plaintext out, and the read buffer serves the next read.
   */
  private async readOpened<T>(packId: Buffer, offset: number, length: number, open: (sealed: Buffer) => T): Promise<T> {
    const into = this.sealer.encrypted ? this.readBuffers.take(length) : undefined;
    const key = packKey(packId);
    try {
      return open(
        await this.store.getRange(key, offset, length, into).catch((err: unknown) => {
          // The index places blobs in it: a pack gone is damage to what they hold, as a cut one is.
          if (err instanceof NotFoundError) throw new MissingPackError(`${this.store.location}: ${key} is missing, though the index lists it`, { cause: err });
          throw err;
        }),
      );
    } finally {
      this.readBuffers.give(into);
    }
  }

  /**
   * Several blobs at once: those stored back to back in one pack come in one
   * ranged read (gaps up to COALESCE_GAP are read through), so a reader
   * asking for the next chunks of a file makes one request, not one per chunk.
   */
  getBlobs(ids: Buffer[], type: BlobType): Promise<Buffer[]> {
    return this.followingRepacks(() => this.readBlobs(ids, type));
  }

  private async readBlobs(ids: Buffer[], type: BlobType): Promise<Buffer[]> {
    const located = await Promise.all(ids.map(async (id, index) => ({ id, index, location: await this.locate(id, type) })));
    located.sort(
      (a, b) => Buffer.compare(a.location.packId, b.location.packId) || a.location.offset - b.location.offset,
    );
    const runs: (typeof located)[] = [];
    for (const item of located) {
      const run = runs[runs.length - 1];
      const last = run?.[run.length - 1];
      if (
        last &&
        last.location.packId.equals(item.location.packId) &&
        item.location.offset >= last.location.offset &&
        item.location.offset - (last.location.offset + last.location.length) <= COALESCE_GAP &&
        item.location.offset + item.location.length - run[0].location.offset <= COALESCE_MAX
      ) {
        run.push(item);
      } else runs.push([item]);
    }
    const results: Buffer[] = new Array(ids.length);
    await Promise.all(
      runs.map(async (run) => {
        const start = run[0].location.offset;
        const end = Math.max(...run.map((r) => r.location.offset + r.location.length));
        const whats = run.map((r) => describeBlob(r.id, r.location));
        const opened = await this.readOpened(run[0].location.packId, start, end - start, (bytes) =>
          run.map((r, n) => {
            const from = r.location.offset - start;
            return this.sealer.open(r.location.type, r.id, bytes.subarray(from, from + r.location.length), whats[n]);
          }),
        );
        await Promise.all(
          run.map(async (r, n) => {
            results[r.index] = await this.decodeOpened(r.location, opened[n], whats[n]);
          }),
        );
      }),
    );
    return results;
  }

  async decodeLocated(id: Buffer, location: BlobLocation, sealed: Buffer): Promise<Buffer> {
    const what = describeBlob(id, location);
    return this.decodeOpened(location, this.sealer.open(location.type, id, sealed, what), what);
  }

  private async decodeOpened(location: BlobLocation, opened: Buffer, what: string): Promise<Buffer> {
    const plaintext = await decodeBlob(opened, what, location.rawLength);
    if (plaintext.length !== location.rawLength) throw new IntegrityError(`${what}: wrong length`);
    return plaintext;
  }

  /**
   * A standalone sealed object (snapshot header, index delta, lock): one file, not in a pack.
   * With `maxBytes`, a larger one is damage, refused before it is read: whoever can write the
   * store could otherwise make every reader load gigabytes (a sparse file costs them nothing).
   */
  async readSealed(key: string, type: BlobType, id: Buffer, maxBytes?: number): Promise<Buffer> {
    const sealed = await this.store.get(key, maxBytes);
    return decodeBlob(this.sealer.open(type, id, sealed, key), key, standaloneLimit(sealed.length));
  }

  async sealStandalone(type: BlobType, id: Buffer, plaintext: Buffer): Promise<Buffer> {
    const sealed = this.sealer.seal(type, id, encodeBlob(plaintext, this.config.compression));
    if (plaintext.length > standaloneLimit(sealed.length)) {
      throw new KlosetError(`cannot store ${plaintext.length} bytes that compress to ${sealed.length}: a reader takes at most ${standaloneLimit(sealed.length)}`);
    }
    return sealed;
  }

  newWriter(options: BlobWriterOptions = {}): BlobWriter {
    return new BlobWriter(this, options);
  }
}

/** A pack the index names is not in the store: damage, unless a prune repacked it since the index was loaded. */
class MissingPackError extends IntegrityError {}

function describeBlob(id: Buffer, location: BlobLocation): string {
  return `blob ${id.toString('hex').slice(0, 16)} in pack ${location.packId.toString('hex').slice(0, 16)}`;
}

/** What each type of blob is, in messages. */
const BLOB_KINDS: Record<number, string> = {
  [BlobType.chunk]: 'chunk',
  [BlobType.content]: 'chunk list',
  [BlobType.tree]: 'directory',
  [BlobType.treePage]: 'directory page',
  [BlobType.snapshot]: 'snapshot',
};

/** An index delta's key; anything else under index/ (an editor's or a sync tool's file) is not the store's. */
export function isIndexDeltaKey(key: string): boolean {
  return /^index\/[0-9a-f]{64}$/.test(key);
}

export function indexDeltaId(key: string): Buffer {
  const hex = key.slice(key.lastIndexOf('/') + 1);
  return /^[0-9a-f]{64}$/.test(hex) ? Buffer.from(hex, 'hex') : Buffer.alloc(ID_BYTES);
}

/**
 * The first index delta follows FIRST_DELTA_PACKS packs, each later one
 * twice as many packs as the one before, up to MAX_DELTA_PACKS; a delta
 * also follows the first pack stored DELTA_INTERVAL_MS after the last one.
 * A killed backup loses the reuse of at most that much (half of what a
 * small one stored, a gigabyte or half a minute of a large one), while a
 * large backup on S3 pays about one PUT per gigabyte for its deltas rather
 * than one for every few packs.
 */
const FIRST_DELTA_PACKS = 4;
const MAX_DELTA_PACKS = 64;
const DELTA_INTERVAL_MS = 30_000;

/** Packs uploading at once unless the store says otherwise; each holds a pack of memory. */
const DEFAULT_UPLOADS_IN_FLIGHT = 2;

export interface BlobWriterOptions {
  /**
   * Called before what makes stored packs usable is written: each index
   * delta along the way, and once at commit, which the caller's snapshot
   * follows; a throw leaves the packs since the last delta unindexed. A
   * delta written once a prune has taken the writer's lock for stale would
   * name packs that prune deleted, and the next backup would take their
   * blobs for stored: the CLI checks there that its lock still holds.
   */
  beforePublish?: () => Promise<void>;
}

/**
 * Adds blobs to a repository. Blobs go into packs; stored packs are named
 * by index deltas along the way, so a backup killed at any point leaves
 * complete packs, indexed (and reused by the next backup) but for those
 * stored since the last delta, which stay unreferenced until garbage
 * collection. commit() folds the
 * writer's deltas into one.
 */
export class BlobWriter {
  /** Pack buffers not in use: at most uploadsInFlight + 1 exist, whatever the size of the backup. */
  private readonly spareBuffers: Buffer[] = [];
  private builder: PackBuilder;
  /**
   * Blobs this writer added that no delta in the store names yet. They reach
   * the repository's index only once one does: a writer that fails (one
   * copy of a sync) must not leave blobs there that a later writer of the
   * same process would take as stored, while no delta, and so no other
   * process and no prune, knows their packs.
   */
  private readonly pending = new Set<string>();
  private readonly uploads = new Set<Promise<void>>();
  private sealing: Promise<void> | undefined;
  private readonly written: [Buffer, BlobLocation][] = [];
  private readonly packDeltas: string[] = [];
  /** Stored packs' blobs not yet named by a delta in the store. */
  private unindexed: [Buffer, BlobLocation][] = [];
  private unindexedPacks = 0;
  private packsPerDelta = FIRST_DELTA_PACKS;
  private lastDelta = Date.now();
  private deltas: Promise<void> = Promise.resolve();
  private failure: unknown;
  bytesStored = 0;
  blobsStored = 0;
  packsStored = 0;

  constructor(
    readonly repository: Repository,
    private readonly options: BlobWriterOptions = {},
  ) {
    this.builder = this.newBuilder();
  }

  private newBuilder(): PackBuilder {
    return new PackBuilder(this.spareBuffers.pop() ?? packBuffer(this.repository.config));
  }

  has(id: Buffer): boolean {
    return this.repository.has(id) || this.pending.has(id.toString('latin1'));
  }

  /** Why a pack could not be stored, if one could not: every later add fails with it, and so will commit(). */
  get storeFailure(): unknown {
    return this.failure;
  }

  /** Returns false when the blob was already there; resolves once the blob is queued, with back-pressure. */
  async addSealed(type: BlobType, id: Buffer, sealed: Buffer, rawLength: number): Promise<boolean> {
    while (this.sealing) await this.sealing;
    if (this.failure) throw this.failure;
    if (this.has(id)) return false;
    this.pending.add(id.toString('latin1'));
    this.builder.add(type, id, sealed, rawLength);
    this.blobsStored++;
    if (this.builder.byteLength >= this.repository.config.packfile.targetSize) await this.sealPack();
    return true;
  }

  /** Content-addressed put of a metadata blob (tree, page, chunk list). */
  async put(type: BlobType, plaintext: Buffer): Promise<Buffer> {
    const repository = this.repository;
    const id = repository.sealer.blobId(plaintext);
    if (this.has(id)) return id;
    const sealed = repository.sealer.seal(type, id, encodeBlob(plaintext, repository.config.compression));
    await this.addSealed(type, id, sealed, plaintext.length);
    return id;
  }

  /**
   * Closes the current pack and starts its upload. While it waits for an
   * upload slot, adders wait too: the full pack takes no more blobs, and no
   * second buffer is allocated for the next one.
   */
  private sealPack(): Promise<void> {
    if (this.sealing) return this.sealing;
    if (this.builder.empty) return Promise.resolve();
    this.sealing = (async () => {
      const limit = this.repository.store.writeConcurrency ?? DEFAULT_UPLOADS_IN_FLIGHT;
      while (this.uploads.size >= limit) await Promise.race(this.uploads);
      const builder = this.builder;
      this.builder = this.newBuilder();
      const upload = this.upload(builder)
        .then(() => void this.spareBuffers.push(builder.storage))
        .catch((err: unknown) => {
          this.failure ??= err;
        });
      this.uploads.add(upload);
      void upload.finally(() => this.uploads.delete(upload));
    })().finally(() => {
      this.sealing = undefined;
    });
    return this.sealing;
  }

  private async upload(builder: PackBuilder): Promise<void> {
    const repository = this.repository;
    const { id: packId, data } = builder.finish(repository.sealer);
    await repository.store.put(packKey(packId), data);
    for (const blob of builder.blobs) {
      const location = { type: blob.type, packId, offset: blob.offset, length: blob.length, rawLength: blob.rawLength };
      this.written.push([blob.id, location]);
      this.unindexed.push([blob.id, location]);
    }
    this.unindexedPacks++;
    this.bytesStored += data.length;
    this.packsStored++;
    if (this.unindexedPacks >= this.packsPerDelta || Date.now() - this.lastDelta >= DELTA_INTERVAL_MS) await this.writeDelta();
  }

  /**
   * Stores an index delta for the packs stored since the last one, under a
   * random name. Deltas are written one at a time, in order.
   */
  private writeDelta({ checked = false } = {}): Promise<void> {
    this.deltas = this.deltas.then(async () => {
      if (this.unindexed.length === 0) return;
      if (!checked) await this.options.beforePublish?.();
      const entries = this.unindexed;
      this.unindexed = [];
      this.unindexedPacks = 0;
      this.packsPerDelta = Math.min(MAX_DELTA_PACKS, this.packsPerDelta * 2);
      this.lastDelta = Date.now();
      // A name of its own: named after a pack, two writers of a plaintext store (whose packs of equal
      // blobs are equal, names included) could write one delta over the other's, and commit would delete it.
      const name = randomBytes(ID_BYTES);
      const key = `index/${name.toString('hex')}`;
      await this.repository.store.put(key, await this.repository.sealStandalone(BlobType.index, name, encodeIndexDelta(entries)));
      this.packDeltas.push(key);
      this.indexed(entries);
    });
    return this.deltas;
  }

  /** Blobs a delta in the store now names: from here on the repository knows them. */
  private indexed(entries: [Buffer, BlobLocation][]): void {
    for (const [id, location] of entries) {
      this.repository.index.add(id, location);
      this.pending.delete(id.toString('latin1'));
    }
  }

  /** Every added blob is in a stored pack when this resolves (not yet necessarily named by a delta). */
  async storePacks(): Promise<void> {
    while (this.sealing || !this.builder.empty) await this.sealPack();
    while (this.uploads.size > 0) await Promise.all(this.uploads);
    if (this.failure) throw this.failure;
    await this.deltas;
  }

  /**
   * Stores the last packs and leaves this writer's blobs named by one delta:
   * the deltas written along the way are replaced by one that also names the
   * packs no delta has named yet (one PUT for those, not two).
   */
  async commit(): Promise<void> {
    await this.storePacks();
    await this.options.beforePublish?.();
    if (this.packDeltas.length === 0) {
      await this.writeDelta({ checked: true });
      if (this.packDeltas.length > 0) await this.repository.cacheIndexWith(this.packDeltas[0]);
      return;
    }
    const deltaId = randomBytes(ID_BYTES);
    const key = `index/${deltaId.toString('hex')}`;
    const store = this.repository.store;
    await store.put(key, await this.repository.sealStandalone(BlobType.index, deltaId, encodeIndexDelta(this.written)));
    this.indexed(this.unindexed);
    this.unindexed = [];
    this.unindexedPacks = 0;
    // What they name, the new delta names too: one left behind (credentials that may write but not delete,
    // as an append-only policy grants) costs a read until prune folds it, and must not cost the snapshot.
    for (const stale of this.packDeltas.splice(0)) await store.delete(stale).catch(() => undefined);
    await this.repository.cacheIndexWith(key);
  }
}

/** Room for a full pack plus the largest chunk and its trailer, so a pack never regrows. */
export function packBuffer(config: StoreConfig): Buffer {
  return Buffer.allocUnsafeSlow(config.packfile.targetSize + config.chunking.maxSize + 1024 * 1024);
}

export async function mapLimit<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(runners);
}
