/**
 * A check need not download the whole store each time: --read-data-subset
 * reads one group of packs (so a week of runs reads each once), and
 * --no-read-data reads none, yet still finds packs gone from the store.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { expectOneLineError, flipByte, klosetWith, MiB, packFiles, writeRandomFile } from '../helpers/fixtures.js';

const BACKUPS = 4;

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
/** The pack each backup wrote, holding its new file (and its directories). */
let packs: { file: string; id: string; size: number }[];

beforeEach(async () => {
  work = await tempDir('kloset-checksubset-');
  const source = path.join(work, 'source');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(source);
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  packs = [];
  for (let i = 0; i < BACKUPS; i++) {
    await writeRandomFile(path.join(source, `file-${i}.bin`), MiB + i);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const known = new Set(packs.map((p) => p.id));
    packs.push(...(await packFiles(store)).filter((p) => !known.has(p.id)));
  }
  expect(packs).toHaveLength(BACKUPS);
});

afterEach(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** The group of t that `--read-data-subset n/t` reads a pack in, as n. */
function groupOf(packId: string, t: number): number {
  return (Buffer.from(packId, 'hex').readUInt32BE(0) % t) + 1;
}

function packsRead(stdout: string): number {
  const match = /^check: (\d+) packs? read \([^)]*\), (\d+) only listed, /m.exec(stdout);
  if (!match) throw new Error(`no pack counts in: ${stdout}`);
  expect(Number(match[1]) + Number(match[2])).toBe(BACKUPS);
  return Number(match[1]);
}

describe('check --read-data-subset', () => {
  it('reads each pack in exactly one of the groups 1/t to t/t', async () => {
    let total = 0;
    for (let n = 1; n <= 3; n++) {
      const check = await kloset(['at', store, 'check', '--read-data-subset', `${n}/3`]);
      expect(check.stderr).toBe('');
      expect(check.code).toBe(0);
      const expected = packs.filter((p) => groupOf(p.id, 3) === n).length;
      expect(packsRead(check.stdout)).toBe(expected);
      total += expected;
    }
    expect(total).toBe(BACKUPS);
    expect(packsRead((await kloset(['at', store, 'check', '--read-data-subset', '100%'])).stdout)).toBe(BACKUPS);
  });

  it('reads that share of the packs, rounded down, and at least one, as restic does', async () => {
    for (const [share, expected] of [['50%', 2], ['74.9%', 2], ['75%', 3], ['1%', 1], ['0.5%', 1]] as const) {
      const check = await kloset(['at', store, 'check', '--read-data-subset', share]);
      expect(check.code, share).toBe(0);
      expect(packsRead(check.stdout), share).toBe(expected);
    }
  });

  it('finds a flipped byte in the group that holds its pack, and only there', async () => {
    const damaged = packs[1];
    await flipByte(damaged.file, (size) => size >> 2); // inside the first blob: file-1.bin's first chunk
    for (let n = 1; n <= 2; n++) {
      const check = await kloset(['at', store, 'check', '--read-data-subset', `${n}/2`]);
      if (groupOf(damaged.id, 2) === n) {
        expect(check.code).toBe(1);
        expect(check.stderr).toContain(`damaged: pack ${damaged.id.slice(0, 16)}: content does not match its name (damaged)`);
        expect(check.stderr).toMatch(/damaged: snapshot [0-9a-f]{8}: \/file-1\.bin: \d+ of \d+ chunks damaged or missing/);
      } else {
        expect(check.stderr).toBe('');
        expect(check.code).toBe(0);
      }
    }
    // Reading no data cannot see it.
    expect((await kloset(['at', store, 'check', '--no-read-data'])).code).toBe(0);
  });
});

describe('a damaged directory in a pack the check does not read', () => {
  it('is named, and every other snapshot is still checked, the summary printed', async () => {
    const ids = (JSON.parse((await kloset(['at', store, 'ls', '--json'])).stdout) as { id: string }[]).map((h) => h.id);
    const { readSnapshotHeader } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
    const repository = await openBuiltStore(store, { loadIndex: true });
    // The second backup's root directory, in the second backup's pack; no other snapshot has that directory.
    const root = (await readSnapshotHeader(repository, Buffer.from(ids[1], 'hex'))).root.tree!;
    const location = (await repository.find(root))!;
    const pack = packs.find((p) => p.id === location.packId.toString('hex'))!;
    await flipByte(pack.file, () => location.offset + (location.length >> 1));
    const unread = groupOf(pack.id, 2) === 1 ? 2 : 1;
    for (const args of [['--read-data-subset', `${unread}/2`], ['--no-read-data']]) {
      const check = await kloset(['at', store, 'check', ...args]);
      expect(check.code, args.join(' ')).toBe(1);
      expect(check.stderr).toBe(`damaged: snapshot ${ids[1].slice(0, 8)}: /: directory damaged or missing\n`);
      expect(check.stdout).toMatch(new RegExp(`${BACKUPS} snapshots verified in .*: 1 damaged path in 1 snapshot$`, 'm'));
    }
  });
});

describe('check --no-read-data', () => {
  it('reads no pack, and names a pack gone from the store and every file that needed it', async () => {
    const sound = await kloset(['at', store, 'check', '--no-read-data']);
    expect(sound.stderr).toBe('');
    expect(sound.code).toBe(0);
    expect(packsRead(sound.stdout)).toBe(0);

    const gone = packs[2];
    await fs.rm(gone.file);
    const check = await kloset(['at', store, 'check', '--no-read-data']);
    expect(check.code).toBe(1);
    expect(check.stderr).toContain(`damaged: pack ${gone.id.slice(0, 16)}: missing\n`);
    // The third backup's pack held file-2.bin and that snapshot's directory; the fourth reuses file-2.bin.
    expect(check.stderr).toMatch(/damaged: snapshot [0-9a-f]{8}: \/: directory damaged or missing/);
    expect(check.stderr).toMatch(/damaged: snapshot [0-9a-f]{8}: \/file-2\.bin: \d+ of \d+ chunks damaged or missing/);
    expect(check.stdout).toMatch(/: \d+ damaged paths? in 2 snapshots, 1 damaged pack$/m);

    const latest = await kloset(['at', store, 'check', 'latest', '--no-read-data']);
    expect(latest.code).toBe(1);
    expect(latest.stderr).toMatch(/^damaged: snapshot [0-9a-f]{8}: \/file-2\.bin: \d+ of \d+ chunks damaged or missing\n$/);
  });

  it('refuses forms it cannot honour, in one line', async () => {
    for (const [args, message] of [
      [['--read-data-subset', '0/3'], /n\/t needs 1 <= n <= t/],
      [['--read-data-subset', '4/3'], /n\/t needs 1 <= n <= t/],
      [['--read-data-subset', 'half'], /is neither n\/t \(as 1\/7\) nor a share/],
      [['--read-data-subset', '0%'], /is neither n\/t/],
      [['--read-data-subset', '1/2', '--no-read-data'], /one or the other/],
      [['latest', '--read-data-subset', '1/2'], /checks the whole store, not named snapshots/],
    ] as const) {
      const result = await kloset(['at', store, 'check', ...args]);
      expect(result.code, args.join(' ')).toBe(2);
      expectOneLineError(result, message);
    }
  });
});
