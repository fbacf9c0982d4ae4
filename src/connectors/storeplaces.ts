/**
 * Where a backup's source or a restore's destination meets the store: a
 * backup must not read the store into itself, nor a restore write over it.
 */
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { exactForm, nameFromBytes } from '../snapshot/names.js';
import type { BlobStore } from '../storage/blobstore.js';
import { LocalBlobStore } from '../storage/local.js';
import { isS3Location } from '../storage/open.js';

/**
 * The path with its symbolic links resolved, as far as it exists: a link into the store is the store.
 * Resolved as bytes, a path typed with bytes that are not UTF-8 included (see names.ts).
 */
export async function realLocation(location: string): Promise<string> {
  const below: string[] = [];
  for (let existing = path.resolve(location); ; ) {
    try {
      return path.join(nameFromBytes(await realpath(exactForm(existing), { encoding: 'buffer' })), ...below);
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) return path.resolve(location);
      below.unshift(path.basename(existing));
      existing = parent;
    }
  }
}

/** Whether `inner` is `outer` or below it. */
export function isWithin(inner: string, outer: string): boolean {
  const relative = path.relative(outer, inner);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

/** What a store at the top of a bucket writes there (src/kloset/FORMAT.md). */
const STORE_TOP_LEVEL = ['CONFIG', 'packs', 'index', 'snapshots', 'locks'];

/**
 * How the store lies to `location`, a local path or an s3:// location:
 * `inside` when the location is in the store (a directory of it; its
 * prefix, or one of its names at the top of a bucket), else the store's
 * places below the location ('/'-separated, relative to it), else none.
 * Buckets are compared by name, whatever the server: AWS's names are
 * global, and one server has many spellings (a trailing '/', capitals,
 * localhost for 127.0.0.1); a bucket of that name elsewhere only has the
 * store's places left alone.
 */
async function storeAgainst(store: BlobStore, location: string): Promise<'inside' | string[] | undefined> {
  if (isS3Location(location)) {
    if (!isS3Location(store.location)) return undefined;
    const { parseS3Uri } = await import('./s3/client.js');
    const at = parseS3Uri(location);
    const own = parseS3Uri(store.location);
    if (at.bucket !== own.bucket) return undefined;
    // A store at the top of its bucket owns only its own names there.
    const places = own.prefix === '' ? STORE_TOP_LEVEL : [own.prefix.slice(0, -1)];
    if (places.some((place) => at.prefix.startsWith(`${place}/`))) return 'inside';
    const below = places.filter((place) => `${place}/`.startsWith(at.prefix)).map((place) => place.slice(at.prefix.length));
    return below.length > 0 ? below : undefined;
  }
  if (!(store instanceof LocalBlobStore)) return undefined;
  const [storeRoot, root] = await Promise.all([realLocation(store.root), realLocation(location)]);
  if (isWithin(root, storeRoot)) return 'inside';
  return isWithin(storeRoot, root) ? [path.relative(root, storeRoot).split(path.sep).join('/')] : undefined;
}

/**
 * The paths, in a backup of `source`, of the store the backup writes to,
 * which the backup leaves out; a source inside the store is refused.
 */
export async function storeInSource(store: BlobStore, source: string): Promise<string[] | undefined> {
  const found = await storeAgainst(store, source);
  if (found === 'inside') throw new UsageError(`${source}: inside the store ${store.location}: back up something else`);
  return found;
}

/**
 * Where, below `destination`, a restore must not write: restored files
 * named as the store's (a CONFIG, an index/…) would replace them. A
 * destination inside the store is refused.
 */
export async function storeInDestination(store: BlobStore, destination: string): Promise<string[] | undefined> {
  const found = await storeAgainst(store, destination);
  if (found === 'inside') throw new UsageError(`${destination}: inside the store ${store.location}: restore somewhere else`);
  return found;
}
