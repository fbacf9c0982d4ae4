import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * A module of the library as built into dist/ by the global setup. Tests that
 * start chunk workers go through it rather than src/: the pool starts its
 * workers from `chunkworker.js` beside itself, which exists only in dist/.
 * Callers type the result as the matching source module.
 */
export function loadBuilt(rel: string): Promise<unknown> {
  return import(pathToFileURL(path.resolve(import.meta.dirname, '../../dist', rel)).href);
}

/**
 * A local store opened through the built library with the passphrase the
 * CLI helpers use, for tests that set up or inspect what the CLI cannot
 * (a back-dated snapshot, another machine's lock, a reader's calls).
 */
export async function openBuiltStore(dir: string, { loadIndex = true } = {}): Promise<import('../../src/kloset/repository.js').Repository> {
  const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
  const { LocalBlobStore } = (await loadBuilt('storage/local.js')) as typeof import('../../src/storage/local.js');
  return Repository.open(new LocalBlobStore(dir), async () => 'test passphrase', { loadIndex });
}
