/**
 * The viewer's zip writer on trees that strain it: thousands of directories
 * queued behind a large file (yazl writes such a run recursively), a time
 * before 1970 (zip times are unsigned), and a damaged file, which must fail
 * the stream rather than end it as if complete.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { MiB, flipByte, klosetWith, packFiles, sha256File, writeRandomFile } from '../helpers/fixtures.js';

const run = promisify(execFile);
const DIRECTORIES = 6000;

let work: string;
let source: string;
let store: string;

/** The zip of a path in the snapshot; `pause`: a client that reads slowly, waiting that long after each piece. */
async function zipOf(where: string, pause = 0): Promise<string> {
  const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
  const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
  const { zipStream } = (await loadBuilt('connectors/archive/zip.js')) as typeof import('../../src/connectors/archive/zip.js');
  const repository = await openBuiltStore(store);
  const [header] = await listSnapshots(repository);
  const reader = new SnapshotReader(repository, header);
  const file = path.join(work, `${path.basename(where) || 'root'}.zip`);
  const handle = await fs.open(file, 'w');
  try {
    for await (const data of zipStream(reader, await reader.lookup(where), 'root')) {
      await handle.write(data);
      if (pause) await new Promise((resolve) => setTimeout(resolve, pause));
    }
  } finally {
    await handle.close();
  }
  return file;
}

beforeAll(async () => {
  work = await tempDir('kloset-zip-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  const kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(path.join(source, 'dirs'), { recursive: true });
  await writeRandomFile(path.join(source, 'a-big.bin'), 24 * MiB);
  for (let i = 0; i < DIRECTORIES; i++) await fs.mkdir(path.join(source, 'dirs', `d${String(i).padStart(5, '0')}`));
  await fs.writeFile(path.join(source, 'old.txt'), 'from 1969\n');
  await fs.utimes(path.join(source, 'old.txt'), -86_400, -86_400);
  await fs.symlink('old.txt', path.join(source, 'link'));
  await fs.lutimes(path.join(source, 'link'), -86_400, -86_400);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
}, 120_000);

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('zipStream', () => {
  it('writes thousands of directories queued behind a large file, a file from before 1970 and a symlink', async () => {
    const file = await zipOf('/');
    const out = path.join(work, 'unzipped');
    await run('unzip', ['-q', file, '-d', out], { maxBuffer: 64 * MiB });
    expect(await sha256File(path.join(out, 'root/a-big.bin'))).toBe(await sha256File(path.join(source, 'a-big.bin')));
    expect(await fs.readdir(path.join(out, 'root/dirs'))).toHaveLength(DIRECTORIES);
    expect(await fs.readFile(path.join(out, 'root/old.txt'), 'utf8')).toBe('from 1969\n');
    expect(await fs.readlink(path.join(out, 'root/link'))).toBe('old.txt');
  });

  it('writes them for a client that reads slowly, with the large file still being written when the directories come', async () => {
    const file = await zipOf('/', 2);
    const { stdout } = await run('unzip', ['-Z1', file], { maxBuffer: 64 * MiB });
    expect(stdout.split('\n').filter((name) => name.startsWith('root/dirs/d'))).toHaveLength(DIRECTORIES);
  });

  it('fails the stream, not ends it, when a file turns out damaged', async () => {
    // A byte in the middle of each pack: inside a sealed chunk of the big file.
    for (const pack of await packFiles(store)) await flipByte(pack.file);
    await expect(zipOf('/')).rejects.toThrow(/damaged|authenticat|integrity/i);
  });
});
