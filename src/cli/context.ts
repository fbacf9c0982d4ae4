import os from 'node:os';
import path from 'node:path';
import { failureText, KlosetError } from '../errors.js';
import { StoreLock, StoreLockedError, type LockKind } from '../kloset/locks.js';
import { CONFIG_KEY, Repository, type PassphraseProvider } from '../kloset/repository.js';
import type { BlobStore } from '../storage/blobstore.js';
import { isEmptyStore, openBlobStore, prepareEmptyStore } from '../storage/open.js';
import { AliasConfig, resolveLocation } from '../config/aliases.js';
import { typedVariable } from './commandline.js';
import { readPassphrase } from './passphrase.js';

/** Runs a command's work and records its exit code. */
export type Run = (work: () => Promise<number | void>) => Promise<void>;

export interface GlobalOptions {
  passphraseFile?: string;
  verbose?: boolean;
  quiet?: boolean;
}

/** A store named on the command line, with where its passphrase comes from (sync opens two). */
export interface NamedStore {
  storeArg: string;
  passphrase: PassphraseProvider;
}

/** What every command gets: where the store is, how to open it, where to write. */
export class CliContext {
  readonly aliases = new AliasConfig(undefined, { onWarning: (message) => this.warn(message) });
  options: GlobalOptions = {};
  private readonly opened: BlobStore[] = [];
  /**
   * What must still be undone when the process ends early because its output
   * is gone (`kloset mount … | head -1`): a mount that outlived its process
   * would leave a dead mount point behind.
   */
  readonly untilOutputLost = new Set<() => Promise<void>>();
  /** The `passphrase` keys of the aliases of the stores opened, by the argument that named each. */
  private readonly aliasPassphrases = new Map<string, string>();

  constructor(
    /** The `at` argument, or KLOSET_REPOSITORY, or ~/.kloset. */
    readonly storeArg: string,
    readonly out: (line: string) => void,
    readonly err: (line: string) => void,
    /** A name for `-0` output (ls, locate): its exact bytes, ended by NUL. */
    readonly outNul: (name: string) => void,
  ) {}

  /** As set, byte for byte: a directory named with bytes that are not UTF-8 is then refused, not taken for another (see openBlobStore). */
  static defaultStore(env: NodeJS.ProcessEnv = process.env): string {
    return typedVariable('KLOSET_REPOSITORY', env) ?? typedVariable('PLAKAR_REPOSITORY', env) ?? path.join(os.homedir(), '.kloset');
  }

  warn(message: string): void {
    this.err(`warning: ${message}`);
  }

  /** What a listing does with a snapshot whose header is damaged: says so, and goes on with the others. */
  readonly onDamagedSnapshot = (damaged: Error): void => this.warn(damaged.message);

  info(message: string): void {
    if (!this.options.quiet) this.out(message);
  }

  /** The store named by `at` (a directory, `s3://bucket/prefix`, or an alias with its options), or by `storeArg`. */
  async blobStore(storeArg = this.storeArg): Promise<BlobStore> {
    const { location, options } = await resolveLocation(storeArg, 'store', this.aliases);
    if (options.passphrase !== undefined) this.aliasPassphrases.set(storeArg, options.passphrase);
    const store = await openBlobStore(location, options);
    this.opened.push(store);
    return store;
  }

  /** Closes what the command opened (file handles, connections), whether it succeeded or not. */
  async close(): Promise<void> {
    await Promise.all(this.opened.splice(0).map((store) => store.close().catch(() => undefined)));
  }

  /** For create: the location may not exist, or be empty; anything else is refused. */
  async emptyBlobStore(): Promise<BlobStore> {
    const store = await this.blobStore();
    await prepareEmptyStore(store);
    return store;
  }

  /** The store named by `at`, or `store`. */
  async repository({ loadIndex = true, store: named }: { loadIndex?: boolean; store?: NamedStore } = {}): Promise<Repository> {
    const storeArg = named?.storeArg ?? this.storeArg;
    const store = await this.blobStore(storeArg);
    // Store-neutral: a location with no CONFIG that holds nothing at all is no store yet.
    if ((await configSize(store)) === undefined && (await isEmptyStore(store))) {
      throw new KlosetError(`${store.location}: not a kloset store: the store does not exist (create it with 'kloset at ${storeArg} create')`);
    }
    return Repository.open(store, named?.passphrase ?? (() => readPassphrase(this.passphraseSource(storeArg))), { loadIndex });
  }

  /**
   * The repository with a lock on the store, its index loaded once the lock
   * is held (unless `loadIndex` is false): a prune cannot then remove what
   * the index names. A reader (`shared` for restore and mount) that cannot
   * write a lock, with credentials that only read, goes on without one.
   */
  async lockedRepository(
    kind: LockKind,
    command: string,
    { reader = false, store, loadIndex = true }: { reader?: boolean; store?: NamedStore; loadIndex?: boolean } = {},
  ): Promise<{ repository: Repository; lock?: StoreLock }> {
    const repository = await this.repository({ loadIndex: false, store });
    let lock: StoreLock | undefined;
    try {
      lock = await StoreLock.acquire(repository, kind, command);
    } catch (err) {
      if (!reader || err instanceof StoreLockedError) throw err;
      this.warn(`cannot lock the store (${failureText(err)}): reading without a lock`);
    }
    try {
      if (loadIndex) await repository.loadIndex();
    } catch (err) {
      await this.release(lock);
      throw err;
    }
    return { repository, lock };
  }

  /**
   * Releases the command's lock. One the store will not delete (credentials that may write but
   * not delete, as a policy without s3:DeleteObject) is said, since it holds back rm and prune.
   */
  async release(lock: StoreLock | undefined): Promise<void> {
    try {
      await lock?.release();
    } catch (err) {
      this.warn(`cannot remove this command's lock from the store (${failureText(err)}): it holds back rm and prune until 'kloset unlock' removes it`);
    }
  }

  /** The store's passphrase, from where the options, its alias or the environment say (asked for on a terminal otherwise). */
  passphrase(confirm: boolean, storeArg = this.storeArg): Promise<string> {
    return readPassphrase(this.passphraseSource(storeArg), confirm);
  }

  /** The passphrase kept in the alias of a store opened by this command, if any. */
  aliasPassphrase(storeArg: string): string | undefined {
    return this.aliasPassphrases.get(storeArg);
  }

  private passphraseSource(storeArg: string) {
    return { passphraseFile: this.options.passphraseFile, fromAlias: this.aliasPassphrases.get(storeArg) };
  }
}

/** Size of the store's CONFIG, or undefined when it has none (or the location cannot hold one). */
async function configSize(store: BlobStore): Promise<number | undefined> {
  try {
    return await store.stat(CONFIG_KEY);
  } catch (err) {
    // A local "store" that is a file: let Repository.open say what it is.
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return 0;
    throw err;
  }
}
