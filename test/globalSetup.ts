import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** CLI tests run bin/kloset.js, which loads dist/: build it once from the current sources. */
export default function setup(): void {
  // Node reads and parses that bundle of certificates at every start (85 ms here), before any of
  // its code runs; the tests' servers are plain HTTP on loopback. Workers and their children inherit this.
  delete process.env.NODE_EXTRA_CA_CERTS;
  const root = path.resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
}
