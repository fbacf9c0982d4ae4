import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** CLI tests run bin/kloset.js, which loads dist/: build it once from the current sources. */
export default function setup(): void {
  const root = path.resolve(import.meta.dirname, '..');
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
}
