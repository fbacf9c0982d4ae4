/**
 * What a local store writes is its owner's alone, also when the store's
 * directory existed before `create` with a mode that lets others in (a
 * directory made beforehand, the root of a mounted disk): a plaintext store
 * holds a 0600 file it backed up in clear, and an encrypted store's CONFIG
 * lets whoever reads it try passphrases offline.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

let work: string;
let kloset: ReturnType<typeof klosetWith>;

/** Mode bits of everything below `dir`, by path relative to it. */
async function modesBelow(dir: string): Promise<Map<string, { directory: boolean; mode: number }>> {
  const modes = new Map<string, { directory: boolean; mode: number }>();
  for (const rel of await fs.readdir(dir, { recursive: true })) {
    const stat = await fs.lstat(path.join(dir, rel));
    modes.set(rel, { directory: stat.isDirectory(), mode: stat.mode & 0o777 });
  }
  return modes;
}

beforeAll(async () => {
  work = await tempDir('kloset-storemodes-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') });
  const source = path.join(work, 'source');
  await fs.mkdir(source);
  await fs.writeFile(path.join(source, 'shadow'), 'root:$6$secret-hash:19000:0:99999:7:::\n', { mode: 0o600 });
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a local store in a directory that others may enter', () => {
  for (const plaintext of [true, false]) {
    it(`keeps its ${plaintext ? 'plaintext' : 'encrypted'} files and directories to its owner`, async () => {
      const store = path.join(work, plaintext ? 'plain' : 'sealed');
      await fs.mkdir(store);
      await fs.chmod(store, 0o755);
      expect((await kloset(['at', store, 'create', ...(plaintext ? ['-plaintext'] : [])])).code).toBe(0);
      const backup = await kloset(['at', store, 'backup', path.join(work, 'source')]);
      expect(backup.stderr).toBe('');
      expect(backup.code).toBe(0);
      const modes = await modesBelow(store);
      expect([...modes.keys()].some((rel) => rel.startsWith('packs/'))).toBe(true);
      for (const [rel, { directory, mode }] of modes) {
        expect([rel, mode.toString(8)]).toEqual([rel, directory ? '700' : '600']);
      }
    }, 60_000);
  }
});
