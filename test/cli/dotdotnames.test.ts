/**
 * No backup records an entry named '..', but a store is data, and whoever
 * holds its key can forge a snapshot that has some. restore and archive
 * leave such entries out, each named in a warning (exit 3): nothing is
 * written outside the target, and no member of a tar or zip climbs out of
 * the directory it is extracted into. ls, locate and diff print such a
 * name quoted, never as a path.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Importer, SourceEntry } from '../../src/snapshot/importer.js';
import { openLocalStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { describeTree, expectNoStackTrace, klosetWith } from '../helpers/fixtures.js';
import { builtLibrary, storeWithSnapshot } from '../helpers/mount.js';

const run = promisify(execFile);

const MTIME = { sec: 1_700_000_000, nsec: 0 };

/** A tree with a directory named '..' at the top, and another inside sub/, each holding a file. */
const FILES: Record<string, string> = {
  '../escaped.txt': 'one level above the target\n',
  'plain.txt': 'plain\n',
  'sub/../planted.txt': 'at the top of the target, planted through sub/..\n',
  'sub/kept.txt': 'kept\n',
};

/** The forged source: directories and files as FILES lays them out, in the order a backup lists them. */
class DotDotImporter implements Importer {
  readonly type = 'fs';
  readonly origin = 'forged';
  readonly source = '/forged';

  constructor(private readonly files: Record<string, string> = FILES) {}

  private entry(name: string, kind: 'file' | 'directory', size = 0): SourceEntry {
    return { name, kind, mode: kind === 'file' ? 0o100644 : 0o040755, uid: 0, gid: 0, size, mtime: MTIME };
  }

  async rootEntry(): Promise<SourceEntry> {
    return this.entry('', 'directory');
  }

  async *children(dir: string): AsyncIterable<SourceEntry> {
    const prefix = dir === '' ? '' : `${dir}/`;
    const names = new Map<string, SourceEntry>();
    for (const [file, content] of Object.entries(this.files)) {
      if (!file.startsWith(prefix)) continue;
      const [name, ...below] = file.slice(prefix.length).split('/');
      if (!names.has(name)) names.set(name, below.length ? this.entry(name, 'directory') : this.entry(name, 'file', Buffer.byteLength(content)));
    }
    for (const name of [...names.keys()].sort()) yield names.get(name)!;
  }

  async *read(file: string): AsyncIterable<Buffer> {
    yield Buffer.from(this.files[file]);
  }

  async close(): Promise<void> {}
}

let work: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;
let first: string;

beforeAll(async () => {
  work = await tempDir('kloset-dotdot-');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  first = await storeWithSnapshot(store, new DotDotImporter());
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** Every file under `dir` whose name is one of the files behind a '..', wherever it landed. */
async function landed(dir: string): Promise<string[]> {
  const found = await fs.readdir(dir, { recursive: true });
  return found.filter((rel) => ['escaped.txt', 'planted.txt'].includes(path.basename(rel))).sort();
}

describe("entries named '..' in a snapshot", () => {
  it('are left out of a restore, each with a warning: nothing is written above the target or through sub/..', async () => {
    const around = path.join(work, 'around');
    const target = path.join(around, 'target');
    await fs.mkdir(around);
    const result = await kloset(['at', store, 'restore', '-to', target, 'latest']);
    expectNoStackTrace(result);
    // Named by the directory that holds them.
    expect(result.stderr.split('\n').filter(Boolean).sort()).toEqual(['warning: /..: invalid name "..", left out', 'warning: /sub/..: invalid name "..", left out']);
    expect(result.code).toBe(3);
    expect(await fs.readdir(around)).toEqual(['target']);
    expect(Object.keys(await describeTree(target)).sort()).toEqual(['.', 'plain.txt', 'sub', 'sub/kept.txt']);
    expect(await fs.readFile(path.join(target, 'sub/kept.txt'), 'utf8')).toBe('kept\n');
    expect(await landed(work)).toEqual([]);
  });

  it.each([
    ['tar', ['tar', '-tf']],
    ['zip', ['unzip', '-Z1']],
  ])('are left out of a %s archive, each with a warning', async (format, [lister, ...flags]) => {
    const output = path.join(work, `forged.${format}`);
    const result = await kloset(['at', store, 'archive', '-output', output, 'latest']);
    expectNoStackTrace(result);
    expect(result.stderr).toBe('warning: ..: invalid name "..", left out\nwarning: sub/..: invalid name "..", left out\n');
    expect(result.code).toBe(3);
    const { stdout } = await run(lister, [...flags, output]);
    const members = stdout.split('\n').filter(Boolean).sort();
    expect(members).toEqual(['plain.txt', 'sub/', 'sub/kept.txt']);
    // Extracted, it makes nothing beside the directory it goes into.
    const around = path.join(work, `extracted-${format}`);
    const into = path.join(around, 'into');
    await fs.mkdir(into, { recursive: true });
    await run(lister === 'tar' ? 'tar' : 'unzip', lister === 'tar' ? ['-xf', output, '-C', into] : ['-q', output, '-d', into]);
    expect(await fs.readdir(around)).toEqual(['into']);
    expect(await landed(around)).toEqual([]);
  });
});

/** A forged root whose file and directory have names that are paths. */
class SlashNameImporter extends DotDotImporter {
  override async *children(dir: string): AsyncIterable<SourceEntry> {
    const entry = (name: string, kind: 'file' | 'directory'): SourceEntry =>
      ({ name, kind, mode: kind === 'file' ? 0o100644 : 0o040755, uid: 0, gid: 0, size: kind === 'file' ? 8 : 0, mtime: MTIME });
    if (dir === '') yield* [entry('../slashed', 'directory'), entry('../slashed.txt', 'file')];
    if (dir === '../slashed') yield entry('inside.txt', 'file');
  }

  override async *read(): AsyncIterable<Buffer> {
    yield Buffer.from('slashed\n');
  }
}

describe("a listing of names no directory can hold ('..', a name with a slash)", () => {
  it('prints them quoted with ls -R and ls --json, never as a path that climbs out', async () => {
    const result = await kloset(['at', store, 'ls', '-R', 'latest']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const names = result.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => line.replace(/^.* \d\d:\d\d:\d\d /, ''));
    expect(names).toEqual(['".."/', '".."/escaped.txt', 'plain.txt', 'sub/', 'sub/".."/', 'sub/".."/planted.txt', 'sub/kept.txt']);
    const json = await kloset(['at', store, 'ls', '--json', '-R', 'latest']);
    expect((JSON.parse(json.stdout) as { name: string }[]).map((e) => e.name)).toEqual([
      '".."',
      '".."/escaped.txt',
      'plain.txt',
      'sub',
      'sub/".."',
      'sub/".."/planted.txt',
      'sub/kept.txt',
    ]);
  });

  it('prints them quoted with ls -R -0 and with locate, whose paths then never climb out either', async () => {
    const nul = await kloset(['at', store, 'ls', '-R', '-0', 'latest']);
    expect(nul.code).toBe(0);
    expect(nul.stdout.split('\0')).toEqual(['".."', '".."/escaped.txt', 'plain.txt', 'sub', 'sub/".."', 'sub/".."/planted.txt', 'sub/kept.txt', '']);
    const located = await kloset(['at', store, 'locate', 'escaped.txt', 'planted.txt', '..']);
    expect(located.stderr).toBe('');
    expect(located.code).toBe(0);
    expect(located.stdout.split('\n').map((line) => line.replace(/^[0-9a-f]{8}:/, ''))).toEqual([
      '/".."/',
      '/".."/escaped.txt',
      '/sub/".."/',
      '/sub/".."/planted.txt',
      '',
    ]);
  });

  it('prints a name holding a slash quoted, as one name', async () => {
    const slashed = path.join(work, 'slashed-store');
    await storeWithSnapshot(slashed, new SlashNameImporter());
    const result = await kloset(['at', slashed, 'ls', '-R', 'latest']);
    expect(result.code).toBe(0);
    const names = result.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => line.replace(/^.* \d\d:\d\d:\d\d /, ''));
    expect(names).toEqual(['"../slashed"/', '"../slashed"/inside.txt', '"../slashed.txt"']);
    const located = await kloset(['at', slashed, 'locate', 'inside.txt']);
    expect(located.stdout).toMatch(/^[0-9a-f]{8}:\/"\.\.\/slashed"\/inside\.txt\n$/);
  });
});

describe("diff of snapshots with names no directory can hold", () => {
  it('prints them quoted, in text and with --json, never as a path that climbs out', async () => {
    const lib = await builtLibrary();
    const repository = await lib.Repository.open(await openLocalStore(store), async () => 'unused');
    const importer = new DotDotImporter({ ...FILES, '../added.txt': 'new\n', '../escaped.txt': 'changed\n', 'sub/../planted.txt': 'changed too\n' });
    const second = (await lib.backup(repository, importer)).id.toString('hex').slice(0, 8);
    const result = await kloset(['at', store, 'diff', first, second]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')).toEqual([
      '+  /".."/added.txt',
      'M  /".."/escaped.txt  (size, content)',
      'M  /sub/".."/planted.txt  (size, content)',
      `diff ${first}..${second}: 1 added, 0 removed, 2 changed`,
      '',
    ]);
    const json = await kloset(['at', store, 'diff', '--json', first, second]);
    expect(json.code).toBe(0);
    const items = (JSON.parse(json.stdout) as { items: { path: string; invalid_name?: boolean }[] }).items;
    expect(items.map((item) => [item.path, item.invalid_name])).toEqual([
      ['/".."/added.txt', true],
      ['/".."/escaped.txt', true],
      ['/sub/".."/planted.txt', true],
    ]);
    // Above a forged name, the path given is the one resolved, as always.
    const below = await kloset(['at', store, 'diff', `${first}:/sub`, second]);
    expect(below.stdout.split('\n')[0]).toBe('M  /sub/".."/planted.txt  (size, content)');
  });
});
