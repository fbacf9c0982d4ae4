/**
 * Exclusions as a server's backup job keeps them: patterns in a file
 * (restic's --exclude-file), and cache directories marked with CACHEDIR.TAG
 * (--exclude-caches, as tar, restic and borg honour them), and files above
 * a size (restic's --exclude-larger-than).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { expectOneLineError, klosetWith, storeListing } from '../helpers/fixtures.js';

const SIGNATURE = 'Signature: 8a477f597d28d172789f06886806bc55';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

/** Every path under `root`, relative, directories with a trailing '/'. */
async function paths(root: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (rel: string) => {
    for (const entry of await fs.readdir(path.join(root, rel), { withFileTypes: true })) {
      const child = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        found.push(`${child}/`);
        await visit(child);
      } else found.push(child);
    }
  };
  await visit('');
  return found.sort();
}

let restores = 0;
async function restoredPaths(args: string[]): Promise<string[]> {
  const target = path.join(work, `restored-${++restores}`);
  const result = await kloset(['at', store, 'restore', '-to', target, ...args]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return paths(target);
}

beforeAll(async () => {
  work = await tempDir('kloset-excludefile-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  const files: Record<string, string> = {
    'src/main.c': 'int main;\n',
    'src/main.o': 'object\n',
    'build/out.bin': 'built\n',
    'notes.txt': 'notes\n',
    'notes.tmp': 'scratch\n',
    // A cache directory by the specification: its content goes, the directory and the tag stay.
    'cache/CACHEDIR.TAG': `${SIGNATURE}\n# This file is a cache directory tag.\n`,
    'cache/blob/one': 'cached\n',
    'cache/two': 'cached\n',
    // A tag without the signature marks nothing.
    'unsigned/CACHEDIR.TAG': 'not a cache directory tag\n',
    'unsigned/kept': 'kept\n',
    'elsewhere/tag': `${SIGNATURE}\n`,
    'linked/kept': 'kept\n',
  };
  for (const [rel, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(source, rel)), { recursive: true });
    await fs.writeFile(path.join(source, rel), content);
  }
  // A tag that is a symbolic link is not followed: the directory is backed up whole.
  await fs.symlink('../elsewhere/tag', path.join(source, 'linked', 'CACHEDIR.TAG'));
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('backup --exclude-file and --exclude-caches', () => {
  it('leaves out what the file lists and what cache directories hold', async () => {
    const patterns = path.join(work, 'excludes');
    await fs.writeFile(patterns, '# build products\n*.o\n\n  build  \r\n# scratch files\n*.tmp\n');
    const backup = await kloset(['at', store, 'backup', '-exclude-file', patterns, '-exclude-caches', source]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(await restoredPaths(['latest'])).toEqual([
      'cache/',
      'cache/CACHEDIR.TAG',
      'elsewhere/',
      'elsewhere/tag',
      'linked/',
      'linked/CACHEDIR.TAG',
      'linked/kept',
      'notes.txt',
      'src/',
      'src/main.c',
      'unsigned/',
      'unsigned/CACHEDIR.TAG',
      'unsigned/kept',
    ]);
  });

  it('keeps cache directories without --exclude-caches, and adds -exclude patterns to the file', async () => {
    const patterns = path.join(work, 'excludes-2');
    await fs.writeFile(patterns, 'elsewhere\n');
    const backup = await kloset(['at', store, 'backup', '--exclude-file', patterns, '-exclude', 'linked', source]);
    expect(backup.code).toBe(0);
    const restored = await restoredPaths(['latest']);
    expect(restored).toContain('cache/blob/one');
    expect(restored).toContain('cache/two');
    expect(restored.filter((p) => p.startsWith('elsewhere') || p.startsWith('linked'))).toEqual([]);
  });

  it('names a pattern file it cannot read, in one line, and stores nothing', async () => {
    const before = await storeListing(store);
    const missing = path.join(work, 'no-such-excludes');
    const result = await kloset(['at', store, 'backup', '--exclude-file', missing, source]);
    expect(result.code).toBe(2);
    expectOneLineError(result, `kloset: cannot read the pattern file ${missing}: no such file`);
    expect(await storeListing(store)).toEqual(before);
    const directory = await kloset(['at', store, 'backup', '--exclude-file', work, source]);
    expectOneLineError(directory, /illegal operation on a directory$/);
  });
});

describe('restore --include-file and --exclude-file', () => {
  it('restores what the pattern files select', async () => {
    const include = path.join(work, 'includes');
    await fs.writeFile(include, '# sources only\nsrc/*.c\n');
    expect(await restoredPaths(['--include-file', include, 'latest'])).toEqual(['src/', 'src/main.c']);
    const nothing = path.join(work, 'includes-nothing');
    await fs.writeFile(nothing, '*.pdf\n');
    const warned = await kloset(['at', store, 'restore', '-to', path.join(work, 'restored-nothing'), '-include-file', nothing, 'latest']);
    expect(warned.stderr).toMatch(/^warning: -include: nothing in [0-9a-f]{8}:\/ matches \*\.pdf\n$/);
    const exclude = path.join(work, 'restore-excludes');
    await fs.writeFile(exclude, 'cache\nunsigned\n');
    const restored = await restoredPaths(['-exclude-file', exclude, 'latest']);
    expect(restored).toContain('notes.txt');
    expect(restored.filter((p) => p.startsWith('cache') || p.startsWith('unsigned'))).toEqual([]);
  });
});

describe('backup --exclude-larger-than', () => {
  it('leaves out the files larger than the size, as restic does, and keeps one of exactly that size', async () => {
    const sized = path.join(work, 'sized');
    await fs.mkdir(path.join(sized, 'dir'), { recursive: true });
    for (const [rel, size] of [['small', 1024], ['exact', 2048], ['large', 2049], ['dir/big', 10_240]] as const) {
      await fs.writeFile(path.join(sized, rel), Buffer.alloc(size, 1));
    }
    const backup = await kloset(['at', store, 'backup', '-exclude-larger-than', '2K', sized]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(await restoredPaths(['latest'])).toEqual(['dir/', 'exact', 'small']);
  });

  it('refuses a size it cannot read, in one line, and stores nothing', async () => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'backup', '-exclude-larger-than', 'lots', source]);
    expect(result.code).toBe(2);
    expectOneLineError(result, 'kloset: invalid size "lots" (examples: 512M, 2G, 1048576)');
    expect(await storeListing(store)).toEqual(before);
  });
});
