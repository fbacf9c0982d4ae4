import { describe, expect, it } from 'vitest';
import { checkEntryName } from '../../src/snapshot/exporter.js';
import {
  DOT_NAME,
  DOTDOT_NAME,
  EMPTY_NAME,
  escapeChars,
  keyForPath,
  objectName,
  OBJECT_SUFFIX,
  parseDirectoryName,
  parseObjectName,
  pathsForKeys,
  prefixForPath,
  segmentName,
} from '../../src/connectors/s3/keys.js';
import { orderListing, type ListedItem } from '../../src/connectors/s3/listing.js';
import { compareNames } from '../../src/snapshot/tree.js';

const bytes = (s: string) => Buffer.from(s, 'utf8');
const byteOrder = (a: string, b: string) => Buffer.compare(bytes(a), bytes(b));

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Pieces awkward segments are made of: specials, escapes, the marks themselves, bytes around '/'. */
const PIECES = ['', '', '.', '..', 'a', 'b', 'a', '%', '%2E', '％', '％2E', '\0', '\u0001', '\u0002', '-', ' ', '!', '.', '0', 'é', '😀', '\uFFFF', '2E', 'x'.repeat(300)];

function awkwardKey(rand: () => number): string {
  const segments: string[] = [];
  const count = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < count; i++) {
    let segment = '';
    const pieces = Math.floor(rand() * 3);
    for (let j = 0; j < pieces; j++) segment += PIECES[Math.floor(rand() * PIECES.length)];
    segments.push(segment);
  }
  return segments.join('/');
}

/** Every directory path (proper prefixes of the tree paths) and every file path. */
function treeOf(paths: Iterable<string>): { files: Set<string>; directories: Set<string> } {
  const files = new Set<string>();
  const directories = new Set<string>(['']);
  for (const path of paths) {
    files.add(path);
    const names = path.split('/');
    for (let i = 1; i < names.length; i++) directories.add(names.slice(0, i).join('/'));
  }
  return { files, directories };
}

function expectExactMapping(keys: string[]): void {
  const paths = pathsForKeys(keys);
  const seen = new Map<string, string>();
  for (const [key, path] of paths) {
    for (const name of path.split('/')) expect(checkEntryName(name), `${JSON.stringify(key)} → ${JSON.stringify(path)}`).toBeUndefined();
    expect(keyForPath(path), `round trip of ${JSON.stringify(key)}`).toBe(key);
    expect(seen.get(path), `${JSON.stringify(key)} and ${JSON.stringify(seen.get(path))} share ${JSON.stringify(path)}`).toBeUndefined();
    seen.set(path, key);
  }
  const { files, directories } = treeOf(paths.values());
  for (const file of files) expect(directories.has(file), `${JSON.stringify(file)} is both a file and a directory`).toBe(false);
  for (const directory of directories) {
    if (directory === '') continue;
    const prefix = prefixForPath(directory);
    expect(prefix).toBeDefined();
    // The directory's prefix is shared by the keys below it.
    expect([...paths].some(([key, path]) => path.startsWith(`${directory}/`) && key.startsWith(prefix!))).toBe(true);
  }
}

describe('S3 key mapping', () => {
  it('keeps ordinary keys readable', () => {
    const paths = pathsForKeys(['photos/2024/img 01.jpg', 'notes%20draft.txt', 'été/ß.txt']);
    expect(paths.get('photos/2024/img 01.jpg')).toBe('photos/2024/img 01.jpg');
    expect(paths.get('notes%20draft.txt')).toBe('notes%20draft.txt');
    expect(paths.get('été/ß.txt')).toBe('été/ß.txt');
  });

  it('names an object that is also a directory with a suffix', () => {
    const paths = pathsForKeys(['a', 'a/b']);
    expect(paths.get('a')).toBe(`a${OBJECT_SUFFIX}`);
    expect(paths.get('a/b')).toBe('a/b');
    expect(keyForPath(`a${OBJECT_SUFFIX}`)).toBe('a');
  });

  it('keeps a folder object as a file inside its directory', () => {
    const paths = pathsForKeys(['photos/', 'photos/x.jpg']);
    expect(paths.get('photos/')).toBe(`photos/${EMPTY_NAME}`);
    expect(keyForPath(`photos/${EMPTY_NAME}`)).toBe('photos/');
  });

  it('maps empty, "." and ".." segments to tokens', () => {
    const paths = pathsForKeys(['a//b', '/a', 'a/./b', 'a/../b', '..', '.']);
    expect(paths.get('a//b')).toBe(`a/${EMPTY_NAME}/b`);
    expect(paths.get('/a')).toBe(`${EMPTY_NAME}/a`);
    expect(paths.get('a/./b')).toBe(`a/${DOT_NAME}/b`);
    expect(paths.get('a/../b')).toBe(`a/${DOTDOT_NAME}/b`);
    expect(paths.get('..')).toBe(DOTDOT_NAME);
    expect(paths.get('.')).toBe(DOT_NAME);
  });

  it('escapes segments that look like the tokens', () => {
    for (const segment of [EMPTY_NAME, DOT_NAME, DOTDOT_NAME, `x${OBJECT_SUFFIX}`, `${DOT_NAME}${OBJECT_SUFFIX}`]) {
      const name = segmentName(segment);
      expect(name).not.toBe(segment);
      expect(parseDirectoryName(name)).toBe(segment);
      expect(parseObjectName(objectName(segment, true))).toEqual({ segment, shadowed: true });
    }
  });

  it('escapes NUL and keeps very long segments whole', () => {
    const long = 'é'.repeat(200); // 400 bytes
    expectExactMapping(['a\0b', `${long}/${long}`, '\u0001', '\u0001/x']);
    expect(pathsForKeys([`${long}/${long}`]).get(`${long}/${long}`)).toBe(`${long}/${long}`);
  });

  it('refuses names the mapping never makes', () => {
    expect(parseDirectoryName('a\u0001')).toBeUndefined();
    expect(parseDirectoryName('a\u0001x')).toBeUndefined();
    expect(parseDirectoryName(`a${OBJECT_SUFFIX}`)).toBeUndefined();
    expect(parseDirectoryName('')).toBeUndefined();
    expect(keyForPath('a/b\u0001')).toBeUndefined();
  });

  it('maps every key of awkward key sets injectively and reversibly', () => {
    const rand = random(20240611);
    for (let round = 0; round < 300; round++) {
      const keys: string[] = [];
      const count = 1 + Math.floor(rand() * 30);
      for (let i = 0; i < count; i++) {
        const key = awkwardKey(rand);
        if (key !== '') keys.push(key);
      }
      expectExactMapping(keys);
    }
  });

  it('keeps the byte order of segments in their escaped form', () => {
    const rand = random(7);
    for (let i = 0; i < 5000; i++) {
      const a = awkwardKey(rand).replaceAll('/', '');
      const b = awkwardKey(rand).replaceAll('/', '');
      expect(Math.sign(byteOrder(escapeChars(a), escapeChars(b)))).toBe(Math.sign(byteOrder(a, b)));
    }
  });
});

/** One level of a listing as S3 gives it: keys and common prefixes below `prefix`, in UTF-8 byte order, in pages. */
function levelPages(keys: string[], prefix: string, pageSize: number): ListedItem<string>[][] {
  const items = new Map<string, ListedItem<string>>();
  for (const key of keys) {
    if (!key.startsWith(prefix)) continue;
    const rest = key.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash < 0) items.set(rest, { segment: rest, directory: false, data: key });
    else items.set(`${rest.slice(0, slash)}/`, { segment: rest.slice(0, slash), directory: true, data: `${prefix}${rest.slice(0, slash + 1)}` });
  }
  const sorted = [...items.entries()].sort(([a], [b]) => byteOrder(a, b)).map(([, item]) => item);
  const pages: ListedItem<string>[][] = [];
  for (let i = 0; i < sorted.length; i += pageSize) pages.push(sorted.slice(i, i + pageSize));
  return pages;
}

async function* asPages<T>(pages: T[][]): AsyncGenerator<T[]> {
  for (const page of pages) yield page;
}

async function listLevel(keys: string[], prefix: string, pageSize: number, window: number) {
  let probes = 0;
  const probe = async (segment: string) => {
    probes++;
    return keys.some((key) => key.startsWith(`${prefix}${segment}/`));
  };
  let listed = 0;
  let held = 0;
  async function* counted(): AsyncGenerator<ListedItem<string>[]> {
    for (const page of levelPages(keys, prefix, pageSize)) {
      listed += page.length;
      yield page;
    }
  }
  const out: { name: string; directory: boolean }[] = [];
  for await (const item of orderListing(counted(), probe, window)) {
    held = Math.max(held, listed - out.length);
    out.push({ name: item.name, directory: item.directory });
  }
  return { out, probes, held };
}

describe('S3 listing order', () => {
  it('puts a directory before the keys S3 lists ahead of it', async () => {
    const keys = ['a', 'a-1', 'a.txt', 'a/x', 'a0'];
    const { out } = await listLevel(keys, '', 1000, 1000);
    expect(out).toEqual([
      { name: 'a', directory: true },
      { name: 'a-1', directory: false },
      { name: 'a.txt', directory: false },
      { name: 'a0', directory: false },
      { name: `a${OBJECT_SUFFIX}`, directory: false },
    ]);
  });

  it('gives every level of awkward key sets in name order, matching the mapping', async () => {
    const rand = random(99);
    for (let round = 0; round < 150; round++) {
      const keys = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 25) }, () => awkwardKey(rand)).filter((k) => k !== ''))];
      const paths = pathsForKeys(keys);
      const { directories } = treeOf(paths.values());
      for (const directory of directories) {
        const prefix = prefixForPath(directory)!;
        const expected = new Map<string, boolean>();
        for (const path of paths.values()) {
          if (directory !== '' && !path.startsWith(`${directory}/`)) continue;
          const rest = directory === '' ? path : path.slice(directory.length + 1);
          const slash = rest.indexOf('/');
          expected.set(slash < 0 ? rest : rest.slice(0, slash), slash >= 0);
        }
        const want = [...expected.entries()].sort(([a], [b]) => compareNames(a, b)).map(([name, dir]) => ({ name, directory: dir }));
        const pageSize = 1 + Math.floor(rand() * 4);
        const window = 1 + Math.floor(rand() * 4);
        const { out } = await listLevel(keys, prefix, pageSize, window);
        expect(out, `level ${JSON.stringify(directory)} of ${JSON.stringify(keys)}`).toEqual(want);
      }
    }
  });

  it('asks S3 about a blocking directory instead of holding back a long run of keys', async () => {
    const keys = ['a', ...Array.from({ length: 5000 }, (_, i) => `a-${String(i).padStart(5, '0')}`), 'a/x', 'b'];
    const { out, probes, held } = await listLevel(keys, '', 50, 100);
    // What waits in the merge stays near the window, not the 5000 keys before `a/`.
    expect(held).toBeLessThanOrEqual(100 + 50);
    expect(out.map((o) => o.name)).toEqual(
      ['a', ...keys.slice(1, 5001), `a${OBJECT_SUFFIX}`, 'b'].sort(compareNames),
    );
    expect(out[0]).toEqual({ name: 'a', directory: true });
    expect(probes).toBeGreaterThan(0);
    expect(probes).toBeLessThan(5);
  });

  it('refuses a listing out of key order', async () => {
    const pages: ListedItem<string>[][] = [[{ segment: 'b', directory: false, data: 'b' }], [{ segment: 'a', directory: false, data: 'a' }]];
    const run = async () => {
      for await (const _ of orderListing(asPages(pages), async () => false)) void _;
    };
    await expect(run()).rejects.toThrow(/not in key order/);
  });
});
