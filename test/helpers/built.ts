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
