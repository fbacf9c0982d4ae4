/**
 * The one place that turns a store location into a BlobStore: a path is a
 * local directory, `s3://bucket/prefix` an S3 prefix. Options are an alias's
 * keys (`endpoint`, `access_key`, …); without them, an S3 store takes its
 * credentials from the AWS SDK's default chain and its endpoint from
 * KLOSET_S3_ENDPOINT or AWS_ENDPOINT_URL.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { KlosetError, UsageError } from '../errors.js';
import type { BlobStore } from './blobstore.js';
import { makeDirectories } from './directories.js';
import { LocalBlobStore } from './local.js';

const URI_SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/**
 * A URI's user info: where it starts (after `scheme://`) and where its '@'
 * is, or undefined. A password typed into a location is seldom
 * percent-encoded, and an AWS secret key often holds a '/': so once a user
 * name is followed by ':', the user info runs to the last '@', wherever a
 * '/', '?', '#' or '@' lies before it. That may take in a path with an '@'
 * behind a host:port as well; better to hide some of a location than to show a secret.
 */
export function userInfo(location: string): { start: number; at: number } | undefined {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(location);
  if (!scheme) return undefined;
  const start = scheme[0].length;
  const authorityEnd = location.slice(start).search(/[/?#]|$/) + start;
  const inAuthority = location.lastIndexOf('@', authorityEnd - 1);
  const user = /^[^/?#@:]*:/.test(location.slice(start));
  const at = user ? location.lastIndexOf('@') : inAuthority;
  return at >= start ? { start, at } : undefined;
}

/**
 * A location as it may be printed: the password of a URI's user info
 * (sftp://user:secret@host/…) reduced to `****`. An alias's location is
 * listed so, and an error that names it must not show more.
 */
export function withoutPassword(location: string): string {
  const info = userInfo(location);
  if (!info) return location;
  const colon = location.indexOf(':', info.start);
  if (colon < 0 || colon > info.at) return location;
  return `${location.slice(0, colon)}:****${location.slice(info.at)}`;
}

/** What a store may offer beyond BlobStore for create and for telling "no store here". */
interface StoreExtras {
  /** One cheap request: does anything lie under the store's location? */
  isEmpty?(): Promise<boolean>;
  /** Makes the location ready to write (an S3 store creates its bucket). */
  ensureBucket?(): Promise<void>;
}

/** Whether `location` names an S3 bucket or prefix; answered here, where the AWS SDK is not loaded. */
export function isS3Location(location: string): boolean {
  return /^s3:\/\//i.test(location);
}

/**
 * The SDK takes most of a second to load: only S3 locations pay for it, so
 * local commands start as fast as before.
 */
export async function openBlobStore(
  location: string,
  options: Readonly<Record<string, string>> = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<BlobStore> {
  if (isS3Location(location)) {
    const { S3BlobStore, s3OptionsFromConfig } = await import('./s3.js');
    return new S3BlobStore(location, s3OptionsFromConfig(options, env));
  }
  const scheme = URI_SCHEME.exec(location);
  if (scheme) {
    if (scheme[1]!.toLowerCase() === 'fs' || scheme[1]!.toLowerCase() === 'file') {
      return new LocalBlobStore(textDirectory(path.resolve(location.slice(scheme[0].length))));
    }
    throw new KlosetError(`${withoutPassword(location)}: unsupported store location (a directory or s3://bucket/prefix)`);
  }
  return new LocalBlobStore(textDirectory(path.resolve(location)));
}

/**
 * A store's directory is named by text: its path is joined, compared, kept
 * in the cache's list of stores and shown. One typed with bytes that are not
 * UTF-8 (see names.ts) is refused, rather than a directory of another name
 * (with U+FFFD) used in its place.
 */
function textDirectory(dir: string): string {
  if (!dir.isWellFormed()) {
    throw new UsageError(`${dir}: a store directory's path must be UTF-8 text: rename it, or name it through a symbolic link whose path is`);
  }
  return dir;
}

/** True when the store holds nothing at all (a missing directory or an empty prefix included). */
export async function isEmptyStore(store: BlobStore): Promise<boolean> {
  const extras = store as BlobStore & StoreExtras;
  if (extras.isEmpty) return extras.isEmpty();
  if (store instanceof LocalBlobStore) {
    try {
      return (await fs.readdir(store.root)).length === 0;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code === 'ENOTDIR') return false;
      throw err;
    }
  }
  for await (const _ of store.list('')) return false;
  return true;
}

/** CONFIG as a killed create left it (LocalBlobStore's temporary name). */
const KILLED_CREATE = /^CONFIG\.tmp-[0-9a-f]{12}$/;

/**
 * For create: the location must hold nothing (a new or empty directory, an
 * empty prefix); it is then made ready to write (the directory or the bucket
 * created). Anything else is refused, and left untouched.
 */
export async function prepareEmptyStore(store: BlobStore): Promise<void> {
  if (store instanceof LocalBlobStore) {
    const dir = store.root;
    try {
      const entries = await fs.readdir(dir);
      // A create killed before its CONFIG was in place leaves only that file half written: not a store, nobody's data.
      const leftovers = entries.filter((name) => KILLED_CREATE.test(name));
      if (entries.length > leftovers.length) {
        throw new KlosetError(`${dir}: directory is not empty; a store is created in a new or empty directory`);
      }
      for (const name of leftovers) await fs.rm(path.join(dir, name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR') throw new KlosetError(`${dir}: not a directory`);
      if (code !== 'ENOENT') throw err;
    }
    await makeDirectories(dir, 0o700);
    return;
  }
  await (store as BlobStore & StoreExtras).ensureBucket?.();
  if (!(await isEmptyStore(store))) {
    throw new KlosetError(`${store.location}: not empty; a store is created under a new or empty prefix`);
  }
}
