/**
 * A damaged pack costs the files whose chunks it holds, and only those:
 * check names them and their snapshot, cat of such a file fails cleanly,
 * restore brings back everything else and reports the rest (exit 3).
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { type CliResult, tempDir } from '../helpers/cli.js';
import {
  escapeRegExp,
  expectNoStackTrace,
  expectOneLineError,
  flipByte,
  klosetWith,
  MiB,
  packFiles,
  sha256File,
  storeListing,
  storeWithTwoSnapshots,
  writeRandomFile,
} from '../helpers/fixtures.js';

let work: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-damage-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});


/**
 * Cuts the pack's trailer and 1000 bytes of its last blob: cutting only the
 * last 1000 bytes can remove no more than the trailer (the blob list that the
 * index duplicates), which leaves every blob readable.
 */
async function truncateIntoLastBlob(pack: string): Promise<void> {
  const data = await fs.readFile(pack);
  const trailer = data.readUInt32LE(data.length - 4) + 4;
  await fs.truncate(pack, data.length - trailer - 1000);
}

describe.each([
  ['a byte flipped in the middle of a pack', (pack: string) => flipByte(pack)],
  ['a pack cut short', truncateIntoLastBlob],
  ['a pack deleted', (pack: string) => fs.rm(pack)],
])('a store with %s', (_name, damage) => {
  let dir: string;
  let source: string;
  let store: string;
  /** Short id of the snapshot holding both files. */
  let id: string;
  let damagedPack: string;

  /**
   * A.bin is backed up alone first, so that the first, full pack of the store
   * holds only its chunks; then B.bin joins it in a second snapshot, its
   * chunks in new packs. That first pack is damaged.
   */
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(work, 'case-'));
    source = path.join(dir, 'source');
    store = path.join(dir, 'store');
    await fs.mkdir(source);
    await writeRandomFile(path.join(source, 'A.bin'), 24 * MiB);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const packsOfA = await packFiles(store);
    await writeRandomFile(path.join(source, 'B.bin'), 21 * MiB);
    const second = await kloset(['at', store, 'backup', source]);
    expect(second.code).toBe(0);
    id = /created snapshot ([0-9a-f]{8})/.exec(second.stdout)![1];
    const largest = packsOfA.sort((a, b) => b.size - a.size)[0];
    expect(largest.size).toBeGreaterThanOrEqual(16 * MiB);
    damagedPack = largest.id;
    await damage(largest.file);
  });

  describe('check', () => {
    let result: CliResult;
    beforeAll(async () => {
      result = await kloset(['at', store, 'check']);
    });

    it('exits non-zero', () => {
      expect(result.code).not.toBe(0);
      expect(result.code).not.toBeNull();
      expectNoStackTrace(result);
    });

    it('names the damaged file and the snapshot holding it', () => {
      const output = result.stdout + result.stderr;
      expect(output).toMatch(new RegExp(`^.*${id}.*/A\\.bin.*$`, 'm'));
    });

    it('does not name the intact file', () => {
      expect(result.stdout + result.stderr).not.toContain('B.bin');
    });
  });

  it('cat of the damaged file fails with one line naming the store and the pack', async () => {
    const result = await kloset(['at', store, 'cat', `${id}:/A.bin`]);
    expect(result.code).toBe(1);
    expectOneLineError(result);
    expect(result.stderr).toMatch(new RegExp(`${escapeRegExp(store)}|pack ${damagedPack.slice(0, 16)}`));
  });

  it('cat of the intact file gives its exact bytes', async () => {
    const result = await kloset(['at', store, 'cat', `${id}:/B.bin`]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdoutBytes.equals(await fs.readFile(path.join(source, 'B.bin')))).toBe(true);
  });

  describe('restore', () => {
    let target: string;
    let result: CliResult;
    beforeAll(async () => {
      target = path.join(dir, 'restored');
      result = await kloset(['at', store, 'restore', '-to', target, id]);
    });

    it('exits with 3, partial', () => {
      expect(result.code).toBe(3);
      expectNoStackTrace(result);
    });

    it('restores the intact file identically', async () => {
      expect(await sha256File(path.join(target, 'B.bin'))).toBe(await sha256File(path.join(source, 'B.bin')));
    });

    it('reports the damaged file in a warning and leaves no partial copy of it', async () => {
      expect(result.stderr).toMatch(new RegExp(`^warning: ${escapeRegExp('/A.bin')}: `, 'm'));
      expect(result.stdout).toMatch(/\b1 errors?\b/);
      await expect(fs.access(path.join(target, 'A.bin'))).rejects.toThrow();
    });
  });
});

describe('a store where one small file among others is damaged', () => {
  it('restores every other file of its directory, and names that one alone', async () => {
    const { store, source, kloset: run, second } = await storeWithTwoSnapshots(
      'kloset-damaged-small-',
      async (dir) => {
        for (const name of ['one', 'two', 'three', 'four']) await fs.writeFile(path.join(dir, `${name}.txt`), `${name} `.repeat(200));
      },
      async () => undefined,
    );
    // A byte flipped in the middle of two.txt's only chunk, found through the index.
    const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
    const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
    const { packKey } = (await loadBuilt('kloset/packfile.js')) as typeof import('../../src/kloset/packfile.js');
    const repository = await openBuiltStore(store);
    const [header] = await listSnapshots(repository);
    const entry = await new SnapshotReader(repository, header).lookup('/two.txt');
    const chunks = (entry.content as { chunks: { id: Buffer }[] }).chunks;
    expect(chunks).toHaveLength(1);
    const location = (await repository.find(chunks[0].id))!;
    await flipByte(path.join(store, packKey(location.packId)), () => location.offset + (location.length >> 1));

    const target = path.join(path.dirname(store), 'restored');
    const result = await run(['at', store, 'restore', '-to', target, second]);
    expectNoStackTrace(result);
    expect(result.code).toBe(3);
    expect(result.stderr.split('\n').filter(Boolean)).toEqual([expect.stringMatching(/^warning: \/two\.txt: /)]);
    expect((await fs.readdir(target)).sort()).toEqual(['four.txt', 'one.txt', 'three.txt']);
    for (const name of ['one', 'three', 'four']) {
      expect(await fs.readFile(path.join(target, `${name}.txt`), 'utf8')).toBe(await fs.readFile(path.join(source, `${name}.txt`), 'utf8'));
    }
    await fs.rm(path.dirname(store), { recursive: true, force: true });
  });
});

describe('a store with a damaged snapshot header', () => {
  let store: string;
  let run: ReturnType<typeof klosetWith>;
  let first: string;
  let second: string;

  beforeAll(async () => {
    ({ store, kloset: run, first, second } = await storeWithTwoSnapshots(
      'kloset-damaged-header-',
      async (source) => fs.writeFile(path.join(source, 'a.txt'), 'first\n'),
      async (source) => fs.writeFile(path.join(source, 'b.txt'), 'second\n'),
    ));
    const [header] = (await fs.readdir(path.join(store, 'snapshots'))).filter((name) => name.startsWith(second));
    await flipByte(path.join(store, 'snapshots', header));
  });

  afterAll(async () => {
    await fs.rm(path.dirname(store), { recursive: true, force: true });
  });

  const warning = () => new RegExp(`^warning: snapshot ${second}: its header is damaged: authentication failed [^;]*; 'rm ${second}' removes it$`);

  it('keeps the others listed and restorable, with a warning naming it', async () => {
    const listed = await run(['at', store, 'ls']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`  ${first}  `));
    expect(listed.stdout).not.toContain(second);
    expect(listed.stderr.trim()).toMatch(warning());
    const cat = await run(['at', store, 'cat', `${first}:/a.txt`]);
    expect(cat.stdout).toBe('first\n');
    const latest = await run(['at', store, 'cat', 'latest:/a.txt']);
    expect(latest.stdout).toBe('first\n');
    expect(latest.stderr.trim()).toMatch(warning());
  });

  it('is named by check, which fails', async () => {
    const check = await run(['at', store, 'check']);
    expect(check.code).toBe(1);
    expect(check.stderr).toMatch(new RegExp(`^damaged: snapshot ${second}: its header is damaged`, 'm'));
    expectNoStackTrace(check);
  });

  it('stops prune, which cannot tell what it refers to, before anything is removed', async () => {
    const before = await storeListing(store);
    const prune = await run(['at', store, 'prune']);
    expectOneLineError(prune, new RegExp(`snapshot ${second}: its header is damaged: .*; prune removes nothing while it cannot tell what a snapshot refers to`));
    expect((await storeListing(store)).filter((line) => !line.startsWith('locks/'))).toEqual(before.filter((line) => !line.startsWith('locks/')));
  });

  it('is named by a dry run of rm --prune, which removes nothing', async () => {
    const before = await storeListing(store);
    const dry = await run(['at', store, 'rm', '-n', '--prune', second]);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`would remove  ${second}  (damaged header)`);
    expect(dry.stdout).toMatch(/^prune \(dry run\): 1 snapshot, /m);
    expect((await storeListing(store)).filter((line) => !line.startsWith('locks/'))).toEqual(before.filter((line) => !line.startsWith('locks/')));
  });

  it('is removed by rm with its id, after which check is clean', async () => {
    const rm = await run(['at', store, 'rm', second]);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toContain(`removed       ${second}  (damaged header)`);
    expect(rm.stdout).toMatch(/rm: removed 1 snapshot\b/);
    const check = await run(['at', store, 'check']);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
  });
});

describe('files planted in the store, gigabytes long', () => {
  it('under snapshots/, is a damaged header, refused unread, and the others are listed', async () => {
    const { store, kloset: run, first, second } = await storeWithTwoSnapshots(
      'kloset-planted-header-',
      async (source) => fs.writeFile(path.join(source, 'a.txt'), 'first\n'),
      async (source) => fs.writeFile(path.join(source, 'b.txt'), 'second\n'),
    );
    // Sparse: its writer spends nothing, while a reader loading it would spend 3 GB (Node refuses that much in one read).
    const planted = path.join(store, 'snapshots', 'ab'.repeat(32));
    await fs.writeFile(planted, '');
    await fs.truncate(planted, 3 * 1024 * MiB);
    const listed = await run(['at', store, 'ls']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`  ${first}  [\\s\\S]*  ${second}  `));
    expect(listed.stderr).toMatch(new RegExp(`^warning: snapshot abababab: its header is damaged: .*too large \\(3221225472 bytes, at most \\d+ expected\\); 'rm abababab' removes it\\n$`));
    await fs.rm(path.dirname(store), { recursive: true, force: true });
  });

  it('under index/, is a damaged delta, named in one line with the way out, which repair index takes', async () => {
    const { store, kloset: run, first } = await storeWithTwoSnapshots('kloset-planted-delta-', async () => undefined, async () => undefined);
    const planted = path.join(store, 'index', 'cd'.repeat(32));
    await fs.writeFile(planted, '');
    await fs.truncate(planted, 3 * 1024 * MiB);
    const listed = await run(['at', store, 'ls']);
    expect(listed.code).toBe(1);
    expectOneLineError(listed, /index\/(cd){32}: too large to be the store's \(over 2 GiB\) \('kloset repair index' rebuilds the index from the packs\)$/);
    expect((await run(['at', store, 'repair', 'index'])).code).toBe(0);
    expect((await run(['at', store, 'ls'])).stdout).toContain(first);
    await fs.rm(path.dirname(store), { recursive: true, force: true });
  });

  it('under snapshots/, cannot be matched by a header the writer makes: one over the bound is refused before it is stored', async () => {
    const { store, first } = await storeWithTwoSnapshots('kloset-large-header-', async () => undefined, async () => undefined);
    const { readSnapshotHeader, putSnapshotHeader } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
    const repository = await openBuiltStore(store, { loadIndex: false });
    const header = await readSnapshotHeader(repository, Buffer.from((await fs.readdir(path.join(store, 'snapshots'))).find((n) => n.startsWith(first))!, 'hex'));
    const id = Buffer.alloc(32, 7);
    // Random tags: compression cannot bring them under the bound.
    const tags = Array.from({ length: 120 }, () => randomBytes(48 * 1024).toString('base64'));
    await expect(putSnapshotHeader(repository, { ...header, id, tags })).rejects.toThrow(/header would take \d+ bytes, more than the \d+ a reader takes/);
    await expect(fs.access(path.join(store, 'snapshots', id.toString('hex')))).rejects.toThrow();
    await fs.rm(path.dirname(store), { recursive: true, force: true });
  });
});

describe('objects sealed with the key, yet malformed', () => {
  it('are a damaged header or a damaged delta, named in one line, never an internal error', async () => {
    const { store, kloset: run, first, second } = await storeWithTwoSnapshots('kloset-malformed-', async () => undefined, async () => undefined);
    const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');
    const repository = await openBuiltStore(store, { loadIndex: false });
    const seal = async (key: string, type: import('../../src/kloset/sealing.js').BlobType, id: Buffer, plaintext: Buffer) => repository.store.put(key, await repository.sealStandalone(type, id, plaintext));
    // MessagePack with bytes after its one value, and an array where a map belongs.
    const header = Buffer.alloc(32, 0xee);
    await seal(`snapshots/${header.toString('hex')}`, BlobType.snapshot, header, Buffer.from([0x90, 0xc0, 0xc0]));
    const listed = await run(['at', store, 'ls']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(first);
    expect(listed.stdout).toContain(second);
    expect(listed.stderr).toMatch(/^warning: snapshot eeeeeeee: its header is damaged: not a snapshot header \(.*\); 'rm eeeeeeee' removes it\n$/);
    expect((await run(['at', store, 'rm', 'eeeeeeee'])).code).toBe(0);

    // A header whose zstd frame, of RLE blocks, stands for 1 GiB of zeros in 32 KiB.
    const bomb = Buffer.alloc(6 + 4 * 8192);
    bomb.writeUInt32LE(0xfd2fb528, 0);
    bomb[5] = (20 - 10) << 3;
    for (let n = 0; n < 8192; n++) bomb.writeUIntLE(((128 * 1024) << 3) | (1 << 1) | (n === 8191 ? 1 : 0), 6 + 4 * n, 3);
    const expanding = Buffer.alloc(32, 0xcc);
    await repository.store.put(`snapshots/${expanding.toString('hex')}`, repository.sealer.seal(BlobType.snapshot, expanding, [Buffer.from([1]), bomb]));
    const bounded = await run(['at', store, 'ls']);
    expect(bounded.code).toBe(0);
    expect(bounded.stdout).toContain(first);
    expect(bounded.stderr).toMatch(/^warning: snapshot cccccccc: its header is damaged: decompresses to more than 4194304 bytes; 'rm cccccccc' removes it\n$/);
    expect((await run(['at', store, 'rm', 'cccccccc'])).code).toBe(0);

    const delta = Buffer.alloc(32, 0xdd);
    await seal(`index/${delta.toString('hex')}`, BlobType.index, delta, Buffer.from([0x82, 0xa5, ...Buffer.from('packs'), 0x01, 0xa5, ...Buffer.from('blobs'), 0x90]));
    const broken = await run(['at', store, 'ls']);
    expect(broken.code).toBe(1);
    expectOneLineError(broken, /index\/(dd){32}: not an index delta \(.*\) \('kloset repair index' rebuilds the index from the packs\)$/);
    expect((await run(['at', store, 'repair', 'index'])).code).toBe(0);
    expect((await run(['at', store, 'ls'])).stdout).toContain(first);
    await fs.rm(path.dirname(store), { recursive: true, force: true });
  });
});

describe('check reads what the local index copy stands in for', () => {
  let store: string;
  let run: ReturnType<typeof klosetWith>;

  beforeAll(async () => {
    ({ store, kloset: run } = await storeWithTwoSnapshots(
      'kloset-damaged-delta-',
      async (source) => fs.writeFile(path.join(source, 'a.txt'), 'first\n'),
      async (source) => fs.writeFile(path.join(source, 'b.txt'), 'second\n'),
    ));
    expect((await run(['at', store, 'check'])).code).toBe(0); // the local copy of the index is warm
  });

  afterAll(async () => {
    await fs.rm(path.dirname(store), { recursive: true, force: true });
  });

  it('names an index delta damaged since the index was copied locally', async () => {
    const [delta] = await fs.readdir(path.join(store, 'index'));
    const file = path.join(store, 'index', delta);
    const original = await fs.readFile(file);
    const data = Buffer.from(original);
    data[data.length >> 1] ^= 0xff;
    await fs.writeFile(file, data);
    try {
      const check = await run(['at', store, 'check']);
      expect(check.code).toBe(1);
      expect(check.stderr).toBe(`damaged: index delta ${delta.slice(0, 16)}: authentication failed (damaged or tampered)\n`);
      expect(check.stdout).toMatch(/: 0 damaged paths in 0 snapshots, 1 damaged index delta$/m);
    } finally {
      await fs.writeFile(file, original);
    }
  });

  it('names a damaged pack that no blob in use comes from, as a second copy or a leftover is', async () => {
    const content = Buffer.from('a pack that no index delta names');
    const name = createHash('sha256').update(content).digest('hex');
    const dir = path.join(store, 'packs', name.slice(0, 2));
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, name), content);
    expect((await run(['at', store, 'check'])).code).toBe(0);
    content[0] ^= 0xff;
    await fs.writeFile(path.join(dir, name), content);
    const check = await run(['at', store, 'check']);
    expect(check.code).toBe(1);
    expect(check.stderr).toBe(`damaged: pack ${name.slice(0, 16)}: content does not match its name (damaged); no blob in use is read from it here\n`);
    await fs.rm(path.join(dir, name));
  });
});
