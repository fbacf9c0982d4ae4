/**
 * A damaged chunk costs only its own bytes. Read-ahead fetches a reader's
 * next chunks as one batch, and the store answers a batch with one damaged
 * chunk by failing it whole: the intact chunks of that batch must still read,
 * even for a reader that asks for one while the batch is under way.
 *
 * The store is made slow (every pread of the mount process delayed by strace)
 * so that the reader reliably reaches the next chunk before the batch holding
 * it and the damaged one has failed, as it does against a remote store.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { MiB, flipByte, writeRandomFile } from '../helpers/fixtures.js';
import { builtLibrary, mountCli, unmountAll, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);
const PAGE = 4096;
/** The size of the reads the test makes, with O_DIRECT so each is one request to the mount. */
const READ = 128 * 1024;
/** How long each read of the store takes while strace is attached. */
const STORE_DELAY_US = 200_000;

const hasStrace = await run('strace', ['-V']).then(
  () => true,
  () => false,
);
const isRoot = process.getuid?.() === 0;

let work: string;
let source: string;
let mnt: string;
let mount: MountedCli;
let slowStore: ChildProcess | undefined;
let slowStoreGone: Promise<unknown> = Promise.resolve();

/** Detaches strace: the store reads at full speed again. */
async function stopSlowStore(): Promise<void> {
  slowStore?.kill('SIGTERM');
  await slowStoreGone;
}
/** The page-aligned byte range that covers the two intact chunks before the damaged one. */
let intact: { start: number; end: number };

describe.skipIf(!hasStrace || !isRoot)('a mounted file with one damaged chunk, read just before it from a slow store', () => {
  beforeAll(async () => {
    work = await tempDir('kloset-mount-neighbours-');
    source = path.join(work, 'source');
    await fs.mkdir(source);
    await writeRandomFile(path.join(source, 'f.bin'), 24 * MiB);
    const store = path.join(work, 'store');
    const lib = await builtLibrary();
    const repository = await lib.Repository.create(await openLocalStore(store), { passphrase: null });
    const importer = new lib.FsImporter(source);
    const header = await lib.backup(repository, importer, {}).finally(() => importer.close());
    const reader = new lib.SnapshotReader(repository, header);
    const content = await reader.openFile(await reader.lookup('f.bin'));
    const { offsets, chunks } = content;
    // A chunk with two intact chunks before it, the nearer one long enough for several reads, and not
    // at the start of the file, where the first read would already count as sequential.
    let damaged = -1;
    for (let d = 3; d < chunks.length - 1; d++) {
      const start = Math.ceil(offsets[d - 2] / PAGE) * PAGE;
      const end = Math.floor(offsets[d] / PAGE) * PAGE;
      if (offsets[d - 1] - start >= 2 * READ && end - offsets[d - 1] >= 2 * READ) {
        damaged = d;
        intact = { start, end };
        break;
      }
    }
    expect(damaged).toBeGreaterThan(0);
    const location = (await repository.find(chunks[damaged].id))!;
    const pack = location.packId.toString('hex');
    await flipByte(path.join(store, 'packs', pack.slice(0, 2), pack), () => location.offset + (location.length >> 1));
    mnt = path.join(work, 'mnt');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt, [header.id.toString('hex').slice(0, 8)]);
    slowStore = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=pread64', '-e', `inject=pread64:delay_enter=${STORE_DELAY_US}`, '-p', String(mount.pid)], {
      stdio: 'ignore',
    });
    slowStoreGone = new Promise((resolve) => slowStore!.once('exit', resolve));
    // strace has attached once it shows as the mount process's tracer.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const status = await fs.readFile(`/proc/${mount.pid}/status`, 'utf8');
      if (/^TracerPid:\s+[1-9]/m.test(status)) break;
      if (Date.now() > deadline) throw new Error('strace did not attach to the mount');
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 60_000);

  afterAll(async () => {
    await stopSlowStore();
    await mount?.stop();
    await unmountAll();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('reads the intact chunks before the damaged one with their exact bytes', async () => {
    const out = path.join(work, 'out');
    await run('dd', [
      `if=${path.join(mnt, 'f.bin')}`,
      `of=${out}`,
      `bs=${READ}`,
      'iflag=direct,skip_bytes,count_bytes',
      `skip=${intact.start}`,
      `count=${intact.end - intact.start}`,
      'status=none',
    ]);
    const expected = Buffer.alloc(intact.end - intact.start);
    const handle = await fs.open(path.join(source, 'f.bin'));
    await handle.read(expected, 0, expected.length, intact.start).finally(() => handle.close());
    expect((await fs.readFile(out)).equals(expected)).toBe(true);
  }, 60_000);

  it('logs no read error for them', async () => {
    await stopSlowStore();
    const result = await mount.stop();
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).not.toMatch(/read errors/);
  }, 30_000);
});
