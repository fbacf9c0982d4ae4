import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll } from 'vitest';

/**
 * A module of the library as built into dist/ by the global setup. Tests that
 * start chunk workers go through it rather than src/: the pool starts its
 * workers from `chunkworker.js` beside itself, which exists only in dist/.
 * Callers type the result as the matching source module.
 */
export function loadBuilt(rel: string): Promise<unknown> {
  return import(pathToFileURL(path.resolve(import.meta.dirname, '../../dist', rel)).href);
}

/** The local stores a test file opened, to be closed when it ends. */
const opened = new Set<{ close(): Promise<void> }>();

/**
 * Closes every recorded store. A local store keeps the packs it read from
 * open, and a file left open is closed only when garbage collected, which
 * Node warns of.
 */
async function closeRecordedStores(): Promise<void> {
  const stores = [...opened];
  opened.clear();
  await Promise.all(stores.map((store) => store.close()));
}

// Registered here, once for every file that opens a store through this module,
// rather than by each file: shared helpers (openBuiltStore, storeWithSnapshot)
// open stores for many files, and none can forget the hook. After the file's
// tests rather than after each, as a store opened in a beforeAll serves
// several tests; hooks after tests run last registered first, so this one
// runs after the file's own, once nothing reads any longer.
afterAll(closeRecordedStores);

/** Records `store`, a store of a test's own class, to be closed when the test file ends. */
export function recordStore<T extends { close(): Promise<void> }>(store: T): T {
  opened.add(store);
  return store;
}

/** A local store at `dir`, through the built library, closed when the test file ends. */
export async function openLocalStore(dir: string): Promise<import('../../src/storage/local.js').LocalBlobStore> {
  const { LocalBlobStore } = (await loadBuilt('storage/local.js')) as typeof import('../../src/storage/local.js');
  return recordStore(new LocalBlobStore(dir));
}

/**
 * A local store opened through the built library with the passphrase the
 * CLI helpers use, for tests that set up or inspect what the CLI cannot
 * (a back-dated snapshot, another machine's lock, a reader's calls).
 */
export async function openBuiltStore(dir: string, { loadIndex = true } = {}): Promise<import('../../src/kloset/repository.js').Repository> {
  const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
  return Repository.open(await openLocalStore(dir), async () => 'test passphrase', { loadIndex });
}
