import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KlosetError } from '../errors.js';
import { Repository } from '../kloset/repository.js';
import type { BlobStore } from '../storage/blobstore.js';
import { LocalBlobStore } from '../storage/local.js';
import { AliasConfig, resolveLocation } from './aliases.js';
import { readPassphrase } from './passphrase.js';

/** Runs a command's work and records its exit code. */
export type Run = (work: () => Promise<number | void>) => Promise<void>;

export interface GlobalOptions {
  passphraseFile?: string;
  verbose?: boolean;
  quiet?: boolean;
}

/** What every command gets: where the store is, how to open it, where to write. */
export class CliContext {
  readonly aliases = new AliasConfig();
  options: GlobalOptions = {};

  constructor(
    /** The `at` argument, or KLOSET_REPOSITORY, or ~/.kloset. */
    readonly storeArg: string,
    readonly out: (line: string) => void,
    readonly err: (line: string) => void,
  ) {}

  static defaultStore(env: NodeJS.ProcessEnv = process.env): string {
    return env.KLOSET_REPOSITORY ?? env.PLAKAR_REPOSITORY ?? path.join(os.homedir(), '.kloset');
  }

  warn(message: string): void {
    this.err(`warning: ${message}`);
  }

  info(message: string): void {
    if (!this.options.quiet) this.out(message);
  }

  async blobStore(): Promise<BlobStore> {
    const { location } = await resolveLocation(this.storeArg, 'store', this.aliases);
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
      throw new KlosetError(`${location}: unsupported store location (only local directories are supported)`);
    }
    return new LocalBlobStore(path.resolve(location));
  }

  /** For create: the directory may not exist, or be empty; anything else is refused. */
  async emptyBlobStore(): Promise<BlobStore> {
    const store = await this.blobStore();
    const dir = store.location;
    try {
      const entries = await fs.readdir(dir);
      if (entries.length > 0) {
        throw new KlosetError(`${dir}: directory is not empty; a store is created in a new or empty directory`);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw new KlosetError(`${dir}: not a directory`);
      if (code !== 'ENOENT') throw err;
    }
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    return store;
  }

  async repository(): Promise<Repository> {
    const store = await this.blobStore();
    try {
      await fs.access(store.location);
    } catch {
      throw new KlosetError(`${store.location}: store does not exist (create it with 'kloset at ${this.storeArg} create')`);
    }
    return Repository.open(store, () => readPassphrase(this.options));
  }

  passphrase(confirm: boolean): Promise<string> {
    return readPassphrase(this.options, confirm);
  }
}
