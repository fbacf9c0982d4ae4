import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * CLI tests run bin/kloset.js, which loads dist/: build it once from the
 * current sources. Every temporary directory and index cache of the run goes
 * below one directory of its own, removed when the run ends: the tests make
 * hundreds of stores, and the CLI caches an index for each under
 * XDG_CACHE_HOME, so a run would otherwise leave some 200 MB behind.
 */
export default function setup(): () => void {
  // Node reads and parses that bundle of certificates at every start (85 ms here), before any of
  // its code runs; the tests' servers are plain HTTP on loopback. Workers and their children inherit this.
  delete process.env.NODE_EXTRA_CA_CERTS;
  const root = path.resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });

  const run = mkdtempSync(path.join(os.tmpdir(), 'kloset-suite-'));
  const tmp = path.join(run, 'tmp');
  const cache = path.join(run, 'cache');
  // Some tests run the CLI as another user, in directories of theirs below TMPDIR: as /tmp, it lets anyone in.
  chmodSync(run, 0o755);
  mkdirSync(tmp);
  chmodSync(tmp, 0o1777);
  mkdirSync(cache);
  process.env.TMPDIR = tmp;
  process.env.XDG_CACHE_HOME = cache;
  return () => {
    try {
      rmSync(run, { recursive: true, force: true });
    } catch (err) {
      // A mount a failed test left behind: the run's result stands, and this says where it is.
      console.warn(`left behind: ${run} (${(err as Error).message})`);
    }
  };
}
