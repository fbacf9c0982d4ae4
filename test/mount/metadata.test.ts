/**
 * What a source records beside the bytes (an S3 object's content type, ETag
 * and user metadata, in the entry's meta map) is visible through the mount as
 * `user.<key>` extended attributes, so `getfattr -d` shows what the backup
 * captured. The snapshot comes from a real Importer producing such entries.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { getAttribute, listAttributes } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Importer, SourceEntry } from '../../src/snapshot/importer.js';
import { tempDir } from '../helpers/cli.js';
import { isMountPoint, mountCli, storeWithSnapshot, unmountAll, type MountedCli } from '../helpers/mount.js';

const run = promisify(execFile);

const MTIME = { sec: Date.UTC(2024, 5, 1, 12, 0, 0) / 1000, nsec: 250_000_000 };
const FILE_MODE = 0o100644;
const DIR_MODE = 0o040755;

interface Item {
  entry: SourceEntry;
  bytes?: Buffer;
}

/**
 * A bucket-like source held in memory: objects with bytes and S3 metadata,
 * "directories" for the key prefixes. Entries are what an S3 importer makes.
 */
class ObjectsImporter implements Importer {
  readonly type = 's3';
  readonly origin = 'test-endpoint';
  readonly source = 's3://bucket/prefix';
  private readonly items = new Map<string, Item>();

  constructor(objects: { key: string; bytes: Buffer; meta: Record<string, string> }[]) {
    for (const { key, bytes, meta } of objects) {
      const parts = key.split('/');
      for (let i = 1; i < parts.length; i++) {
        const dir = parts.slice(0, i).join('/');
        if (!this.items.has(dir)) this.items.set(dir, { entry: this.directory(parts[i - 1]) });
      }
      this.items.set(key, {
        entry: { name: parts[parts.length - 1], kind: 'file', mode: FILE_MODE, uid: 0, gid: 0, size: bytes.length, mtime: MTIME, meta },
        bytes,
      });
    }
  }

  private directory(name: string): SourceEntry {
    return { name, kind: 'directory', mode: DIR_MODE, uid: 0, gid: 0, size: 0, mtime: MTIME };
  }

  async rootEntry(): Promise<SourceEntry> {
    return this.directory('');
  }

  async *children(dir: string): AsyncIterable<SourceEntry> {
    const prefix = dir === '' ? '' : `${dir}/`;
    const names = [...this.items.keys()]
      .filter((key) => key.startsWith(prefix) && !key.slice(prefix.length).includes('/'))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of names) yield this.items.get(key)!.entry;
  }

  async *read(key: string): AsyncIterable<Buffer> {
    const bytes = this.items.get(key)?.bytes;
    if (!bytes) throw Object.assign(new Error(`${key}: no such object`), { code: 'ENOENT' });
    // In parts, as a ranged GET would deliver it.
    for (let at = 0; at < bytes.length; at += 1000) yield bytes.subarray(at, at + 1000);
  }

  async close(): Promise<void> {}
}

const OBJECTS: { key: string; bytes: Buffer; meta: Record<string, string> }[] = [
  {
    key: 'hello.txt',
    bytes: Buffer.from('hello from a bucket\n'),
    meta: { 's3.content_type': 'text/plain', 's3.etag': '"abc"', 's3.meta.owner': 'ana' },
  },
  {
    key: 'reports/2024/q1.csv',
    bytes: Buffer.from('quarter,total\nq1,42\n'.repeat(500)),
    meta: { 's3.content_type': 'text/csv; charset=utf-8', 's3.etag': '"d41d8cd98f00b204e9800998ecf8427e-2"', 's3.meta.reviewed-by': 'José Ñúñez' },
  },
  { key: 'reports/plain.bin', bytes: Buffer.from([0, 1, 2, 3]), meta: {} },
];

let work: string;
let store: string;
let id: string;
const env: NodeJS.ProcessEnv = {};

beforeAll(async () => {
  work = await tempDir('kloset-mount-meta-');
  store = path.join(work, 'store');
  env.XDG_CACHE_HOME = path.join(work, 'cache');
  id = await storeWithSnapshot(store, new ObjectsImporter(OBJECTS));
});

afterAll(async () => {
  await unmountAll();
  await fs.rm(work, { recursive: true, force: true });
});

describe('a snapshot of objects with S3 metadata, mounted', () => {
  let mnt: string;
  let mount: MountedCli;

  beforeAll(async () => {
    mnt = path.join(work, 'mnt');
    await fs.mkdir(mnt);
    mount = await mountCli(store, mnt, [id], { env });
  });

  afterAll(async () => {
    await mount?.stop();
  });

  it("shows each object's metadata as user.<key> attributes", async () => {
    const file = path.join(mnt, 'hello.txt');
    expect((await listAttributes(file)).sort()).toEqual(['user.s3.content_type', 'user.s3.etag', 'user.s3.meta.owner']);
    expect(String(await getAttribute(file, 'user.s3.content_type'))).toBe('text/plain');
    expect(String(await getAttribute(file, 'user.s3.etag'))).toBe('"abc"');
    expect(String(await getAttribute(file, 'user.s3.meta.owner'))).toBe('ana');
  });

  it('keeps values exactly, UTF-8 included, in nested directories', async () => {
    const file = path.join(mnt, 'reports/2024/q1.csv');
    expect(Buffer.from((await getAttribute(file, 'user.s3.meta.reviewed-by'))!).toString('utf8')).toBe('José Ñúñez');
    expect(String(await getAttribute(file, 'user.s3.content_type'))).toBe('text/csv; charset=utf-8');
    expect(String(await getAttribute(file, 'user.s3.etag'))).toBe('"d41d8cd98f00b204e9800998ecf8427e-2"');
  });

  it('has no attributes for an object without metadata, and none that were not recorded', async () => {
    expect(await listAttributes(path.join(mnt, 'reports/plain.bin'))).toEqual([]);
    expect(await getAttribute(path.join(mnt, 'hello.txt'), 'user.s3.no_such_key')).toBeNull();
  });

  it("serves the objects' bytes and times", async () => {
    for (const { key, bytes } of OBJECTS) expect((await fs.readFile(path.join(mnt, key))).equals(bytes), key).toBe(true);
    const st = await fs.stat(path.join(mnt, 'hello.txt'));
    expect(st.mtimeMs).toBe(MTIME.sec * 1000 + 250);
    expect(st.mode).toBe(FILE_MODE);
  });

  it('shows the attributes to getfattr -d (Debian package attr)', async (ctx) => {
    const found = await run('getfattr', ['--version']).then(
      () => true,
      () => false,
    );
    // The tests above made the same listxattr and getxattr calls through @napi-rs/xattr.
    if (!found) return ctx.skip('getfattr is not installed');
    const { stdout } = await run('getfattr', ['-d', path.join(mnt, 'hello.txt')]);
    expect(stdout).toContain('user.s3.content_type="text/plain"');
    expect(stdout).toContain('user.s3.meta.owner="ana"');
  });

  it('unmounts cleanly', async () => {
    expect(await mount.stop()).toMatchObject({ code: 0 });
    expect(await isMountPoint(mnt)).toBe(false);
  });
});
