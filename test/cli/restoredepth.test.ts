/**
 * A restore holds each directory open while it writes in it (FsExporter):
 * a tree deeper than a quarter of the descriptors the process may open is
 * still restored whole, the directories past that reached name by name.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

const DEPTH = 300;
let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

const chain = (root: string, depth: number) => path.join(root, ...Array.from({ length: depth }, (_, i) => `d${i + 1}`));

beforeAll(async () => {
  work = await tempDir('kloset-restoredepth-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(chain(source, DEPTH), { recursive: true });
  for (let depth = 1; depth <= DEPTH; depth++) {
    await fs.writeFile(path.join(chain(source, depth), 'f.txt'), `file ${depth}\n`);
    await fs.chmod(chain(source, depth), depth % 2 === 0 ? 0o750 : 0o755);
  }
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
}, 120_000);

afterAll(() => fs.rm(work, { recursive: true, force: true }));

describe('a restore of a tree deeper than the descriptors it may hold open', () => {
  it('restores every file and gives every directory its mode, with 256 descriptors for a chain of 300 directories', async () => {
    const target = path.join(work, 'restored');
    const result = await kloset(['at', store, 'restore', '-to', target], { through: ['prlimit', '--nofile=256'] });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    for (let depth = 1; depth <= DEPTH; depth++) {
      expect(await fs.readFile(path.join(chain(target, depth), 'f.txt'), 'utf8')).toBe(`file ${depth}\n`);
      expect((await fs.stat(chain(target, depth))).mode & 0o7777, `d${depth}`).toBe(depth % 2 === 0 ? 0o750 : 0o755);
    }
    expect(await fs.readdir(chain(target, DEPTH))).toEqual(['f.txt']);
  }, 120_000);
});
