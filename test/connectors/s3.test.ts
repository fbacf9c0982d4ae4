/**
 * The S3 source and destination against a real S3 server (s3rver, on
 * loopback): no fake client. What s3rver cannot store (keys with empty, '.'
 * or '..' segments, segments over 255 bytes, control characters) is covered
 * by s3keys.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type PutObjectCommandInput,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_NAME, OBJECT_SUFFIX, pathsForKeys } from '../../src/connectors/s3/keys.js';
import type { S3Importer as S3ImporterType } from '../../src/connectors/s3/importer.js';
import type { Repository } from '../../src/kloset/repository.js';
import type { SnapshotReader } from '../../src/snapshot/reader.js';
import type { Entry } from '../../src/snapshot/tree.js';
import { loadBuilt, openLocalStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultproxy.js';
import { startS3Server, type S3Server } from '../helpers/s3server.js';

const load = loadBuilt;
const { FsExporter } = (await load('connectors/fs/exporter.js')) as typeof import('../../src/connectors/fs/exporter.js');
const { FsImporter } = (await load('connectors/fs/importer.js')) as typeof import('../../src/connectors/fs/importer.js');
const { parseS3Uri } = (await load('connectors/s3/client.js')) as typeof import('../../src/connectors/s3/client.js');
const { S3Exporter, partSizeFor } = (await load('connectors/s3/exporter.js')) as typeof import('../../src/connectors/s3/exporter.js');
const { S3Importer } = (await load('connectors/s3/importer.js')) as typeof import('../../src/connectors/s3/importer.js');
const { Repository: RepositoryClass } = (await load('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { backup } = (await load('snapshot/builder.js')) as typeof import('../../src/snapshot/builder.js');
const { SnapshotReader: SnapshotReaderClass } = (await load('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
const { restore } = (await load('snapshot/restore.js')) as typeof import('../../src/snapshot/restore.js');
const { listSnapshots } = (await load('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
const { KlosetError } = (await load('errors.js')) as typeof import('../../src/errors.js');
const { compareNames } = (await load('snapshot/tree.js')) as typeof import('../../src/snapshot/tree.js');

const MiB = 1024 * 1024;

interface Seed {
  key: string;
  body: Buffer;
  headers?: Partial<PutObjectCommandInput>;
}

const big = randomBytes(12 * MiB + 12345);

/** Nested prefixes, headers, user metadata, and the awkward keys s3rver can store. */
const SEED: Seed[] = [
  {
    key: 'index.html',
    body: Buffer.from('<h1>hello</h1>'),
    headers: { ContentType: 'text/html; charset=utf-8', CacheControl: 'max-age=60', Metadata: { author: 'ann', 'build-id': '42' } },
  },
  {
    key: 'photos/2024/img 01.jpg',
    body: randomBytes(70_000),
    headers: {
      ContentType: 'image/jpeg',
      ContentDisposition: 'attachment; filename="img 01.jpg"',
      ContentLanguage: 'fr',
      Expires: new Date('2031-01-02T03:04:05Z'),
      Metadata: { camera: 'x100' },
    },
  },
  { key: 'photos/', body: Buffer.alloc(0), headers: { ContentType: 'application/x-directory' } },
  { key: 'photos/2024/notes.txt.gz', body: randomBytes(1000), headers: { ContentType: 'text/plain', ContentEncoding: 'gzip' } },
  // `a` is an object and a prefix; `a-1` and `a.txt` sort between `a` and `a/` in S3's order.
  { key: 'a', body: Buffer.from('object a') },
  { key: 'a/b', body: Buffer.from('object a/b') },
  { key: 'a-1', body: Buffer.from('object a-1') },
  { key: 'a.txt', body: Buffer.from('object a.txt') },
  { key: 'a0', body: Buffer.from('object a0') },
  // Names that look like the mapping's own marks, and percent-escapes that are not.
  { key: EMPTY_NAME, body: Buffer.from('a key that is the empty-segment token') },
  { key: `x${OBJECT_SUFFIX}`, body: Buffer.from('ends with the suffix') },
  { key: 'docs/%41%2F.txt', body: Buffer.from('percent') },
  { key: 'été/ß ü.txt', body: Buffer.from('unicode') },
  { key: `long/${'x'.repeat(200)}`, body: Buffer.from('long segment') },
  { key: 'big/blob.bin', body: big, headers: { ContentType: 'application/octet-stream', Metadata: { size: 'big' } } },
  ...Array.from({ length: 1205 }, (_, i) => ({ key: `many/f-${String(i).padStart(5, '0')}`, body: Buffer.from(`many ${i}`) })),
];

let s3: S3Server;
let client: S3Client;

async function put(bucket: string, seed: Seed): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: seed.key, Body: seed.body, ContentLength: seed.body.length, ...seed.headers }));
}

async function putAll(bucket: string, seeds: Seed[]): Promise<void> {
  for (let i = 0; i < seeds.length; i += 32) await Promise.all(seeds.slice(i, i + 32).map((seed) => put(bucket, seed)));
}

async function listKeys(bucket: string, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const object of page.Contents ?? []) keys.push(object.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

async function getObject(bucket: string, key: string) {
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const body = Buffer.from(await response.Body!.transformToByteArray());
  return {
    body,
    contentType: response.ContentType,
    cacheControl: response.CacheControl,
    contentEncoding: response.ContentEncoding,
    contentDisposition: response.ContentDisposition,
    contentLanguage: response.ContentLanguage,
    expires: response.ExpiresString ?? response.Expires?.toUTCString(),
    metadata: response.Metadata ?? {},
  };
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function newRepository(): Promise<Repository> {
  return RepositoryClass.create(await openLocalStore(await tempDir('kloset-s3conn-')), { passphrase: null });
}

function importer(uri: string, options: ConstructorParameters<typeof S3Importer>[2] = {}, c: S3Client = client): S3ImporterType {
  return new S3Importer(c, parseS3Uri(uri), { endpoint: s3.endpoint, ...options });
}

async function backupOf(repository: Repository, source: S3ImporterType) {
  const warnings: string[] = [];
  const header = await backup(repository, source, { onWarning: (p, m) => warnings.push(`${p}: ${m}`) });
  return { header, warnings, reader: new SnapshotReaderClass(repository, header) };
}

/** Every file of a snapshot by path, and every directory's names in the order the tree keeps them. */
async function walkSnapshot(reader: SnapshotReader, root: Entry) {
  const files = new Map<string, Entry>();
  const orders: string[][] = [];
  const visit = async (dir: Entry, prefix: string) => {
    const names: string[] = [];
    for await (const child of reader.children(dir)) {
      names.push(child.name);
      if (child.kind === 'directory') await visit(child, `${prefix}${child.name}/`);
      else files.set(prefix + child.name, child);
    }
    orders.push(names);
  };
  await visit(root, '');
  return { files, orders };
}

beforeAll(async () => {
  s3 = await startS3Server();
  client = s3.client();
  for (const bucket of ['source', 'restored', 'below', 'cold', 'probe', 'from-local', 'denied', 'stopped', 'put-direct', 'put-sdk', 'put-retried', 'changing', 'expires-source', 'expires-direct', 'expires-sdk', 'expires-parts', 'put-only']) await s3.createBucket(bucket);
  await putAll('source', SEED);
}, 120_000);

afterAll(async () => {
  await s3?.stop();
});

describe('S3 source and destination', () => {
  let repository: Repository;
  let reader: SnapshotReader;
  let root: Entry;
  let warnings: string[];

  beforeAll(async () => {
    repository = await newRepository();
    const result = await backupOf(repository, importer('s3://source'));
    reader = result.reader;
    root = result.header.root;
    warnings = result.warnings;
  }, 120_000);

  it('backs up every object of a bucket without a warning', () => {
    expect(warnings).toEqual([]);
    expect(root.summary?.files).toBe(SEED.length);
  });

  it('shows the keys as a tree named by the key mapping, each directory in name order', async () => {
    const { files, orders } = await walkSnapshot(reader, root);
    const expected = pathsForKeys(SEED.map((s) => s.key));
    expect(new Set(files.keys())).toEqual(new Set(expected.values()));
    for (const [key, path] of expected) expect(files.get(path)?.meta?.['s3.key']).toBe(key);
    for (const names of orders) expect(names).toEqual([...names].sort(compareNames));
    expect(files.has(`a${OBJECT_SUFFIX}`)).toBe(true);
    expect(files.has(`photos/${EMPTY_NAME}`)).toBe(true);
  });

  it('records size, time, ETag, content headers and user metadata of each object', async () => {
    const entry = await reader.lookup('/photos/2024/img 01.jpg');
    const head = await client.send(new HeadObjectCommand({ Bucket: 'source', Key: 'photos/2024/img 01.jpg' }));
    expect(entry.size).toBe(70_000);
    expect(entry.mode & 0o777).toBe(0o644);
    expect(entry.mtime.sec).toBe(Math.floor(head.LastModified!.getTime() / 1000));
    expect(entry.meta).toMatchObject({
      's3.key': 'photos/2024/img 01.jpg',
      's3.etag': head.ETag!.replaceAll('"', ''),
      's3.content_type': 'image/jpeg',
      's3.content_disposition': 'attachment; filename="img 01.jpg"',
      's3.content_language': 'fr',
      's3.meta.camera': 'x100',
    });
    expect(new Date(entry.meta!['s3.expires']).toISOString()).toBe('2031-01-02T03:04:05.000Z');
    const index = await reader.lookup('/index.html');
    expect(index.meta).toMatchObject({ 's3.cache_control': 'max-age=60', 's3.meta.author': 'ann', 's3.meta.build-id': '42' });
  });

  it('restores into another bucket: every key, body, content type and user metadata equal', async () => {
    const result = await restore(reader, root, '/', new S3Exporter(client, parseS3Uri('s3://restored')));
    expect(result.errors).toBe(0);
    expect(await listKeys('restored')).toEqual(await listKeys('source'));
    for (const seed of SEED.filter((s) => !s.key.startsWith('many/'))) {
      const [was, now] = await Promise.all([getObject('source', seed.key), getObject('restored', seed.key)]);
      expect(sha(now.body), seed.key).toBe(sha(was.body));
      expect({ ...now, body: undefined }, seed.key).toEqual({ ...was, body: undefined });
    }
    const many = await getObject('restored', 'many/f-01204');
    expect(many.body.toString()).toBe('many 1204');
  });

  it('writes the same objects with its own signed PUTs as through PutObjectCommand', async () => {
    const direct = await restore(reader, root, '/', new S3Exporter(client, parseS3Uri('s3://put-direct')));
    const sdk = await restore(reader, root, '/', new S3Exporter(client, parseS3Uri('s3://put-sdk'), { sdkPuts: true }));
    expect([direct.errors, sdk.errors]).toEqual([0, 0]);
    expect(await listKeys('put-direct')).toEqual(await listKeys('put-sdk'));
    for (const seed of SEED.filter((s) => !s.key.startsWith('many/'))) {
      const [a, b] = await Promise.all([getObject('put-direct', seed.key), getObject('put-sdk', seed.key)]);
      expect(sha(a.body), seed.key).toBe(sha(b.body));
      expect({ ...a, body: undefined }, seed.key).toEqual({ ...b, body: undefined });
    }
  });

  it('retries a PUT answered 503 SlowDown, 500 or a dropped connection, and writes the object whole', async () => {
    const proxy = await startFaultProxy(s3.endpoint);
    try {
      proxy.addRule({ method: 'PUT', path: /index\.html/, fault: 'slowdown', times: 2 });
      proxy.addRule({ method: 'PUT', path: /img%2001\.jpg/, fault: 'internal', times: 1 });
      proxy.addRule({ method: 'PUT', path: /notes\.txt\.gz/, fault: 'drop', times: 1 });
      const result = await restore(reader, root, '/', new S3Exporter(s3.client({ endpoint: proxy.endpoint, maxAttempts: 4 }), parseS3Uri('s3://put-retried')));
      expect(result.errors).toBe(0);
      expect(proxy.faults.PUT).toBe(4);
      for (const key of ['index.html', 'photos/2024/img 01.jpg', 'photos/2024/notes.txt.gz']) {
        const [was, now] = await Promise.all([getObject('source', key), getObject('put-retried', key)]);
        expect(sha(now.body), key).toBe(sha(was.body));
        expect({ ...now, body: undefined }, key).toEqual({ ...was, body: undefined });
      }
    } finally {
      await proxy.stop();
    }
  });

  it('restores below a destination prefix, under the original keys', async () => {
    const sub = await reader.lookup('/photos');
    const result = await restore(reader, sub, '/photos', new S3Exporter(client, parseS3Uri('s3://below/copy')));
    expect(result.errors).toBe(0);
    expect(await listKeys('below')).toEqual(['copy/photos/', 'copy/photos/2024/img 01.jpg', 'copy/photos/2024/notes.txt.gz']);
    expect((await getObject('below', 'copy/photos/2024/notes.txt.gz')).contentEncoding).toBe('gzip');
  });

  it('restores into a local directory with the escaped names, nothing outside it', async () => {
    const parent = await tempDir('kloset-s3local-');
    const target = path.join(parent, 'out');
    const result = await restore(reader, root, '/', new FsExporter(target));
    expect(result.errors).toBe(0);
    expect(await fs.readdir(parent)).toEqual(['out']);
    for (const [key, rel] of pathsForKeys(SEED.map((s) => s.key))) {
      const data = await fs.readFile(path.join(target, ...rel.split('/')));
      expect(sha(data), key).toBe(sha(SEED.find((s) => s.key === key)!.body));
    }
    expect((await fs.stat(path.join(target, 'a'))).isDirectory()).toBe(true);
    expect(await fs.readFile(path.join(target, `a${OBJECT_SUFFIX}`), 'utf8')).toBe('object a');
    await fs.rm(parent, { recursive: true, force: true });
  });
});

describe('S3 source', () => {
  it('backs up a prefix as the root of the snapshot', async () => {
    const repository = await newRepository();
    const { header, reader, warnings } = await backupOf(repository, importer('s3://source/photos'));
    expect(warnings).toEqual([]);
    expect(header.source).toBe('s3://source/photos');
    expect(header.importer).toBe('s3');
    const { files } = await walkSnapshot(reader, header.root);
    expect([...files.keys()].sort()).toEqual([EMPTY_NAME, '2024/img 01.jpg', '2024/notes.txt.gz'].sort());
    expect(files.get(EMPTY_NAME)?.meta?.['s3.key']).toBe('photos/');
  });

  it('keeps every header in a backup made against a parent snapshot', async () => {
    const repository = await newRepository();
    const first = await backupOf(repository, importer('s3://source/photos'));
    const second = await backup(repository, importer('s3://source/photos'), { parent: first.header });
    const entry = await new SnapshotReaderClass(repository, second).lookup('/2024/img 01.jpg');
    expect(entry.meta).toMatchObject({ 's3.content_type': 'image/jpeg', 's3.meta.camera': 'x100', 's3.content_language': 'fr' });
  });

  it('asks the server about a directory that a long run of keys keeps waiting', async () => {
    await putAll('probe', [
      { key: 'a', body: Buffer.from('a') },
      ...Array.from({ length: 150 }, (_, i) => ({ key: `a-${String(i).padStart(3, '0')}`, body: Buffer.from(`${i}`) })),
      { key: 'a/x', body: Buffer.from('a/x') },
      { key: 'b', body: Buffer.from('b') },
    ]);
    const repository = await newRepository();
    const { header, reader } = await backupOf(repository, importer('s3://probe', { window: 20 }));
    const { orders, files } = await walkSnapshot(reader, header.root);
    const top = orders[orders.length - 1];
    expect(top[0]).toBe('a');
    expect(top).toEqual([...top].sort(compareNames));
    expect(files.size).toBe(153);
    expect(files.get(`a${OBJECT_SUFFIX}`)?.meta?.['s3.key']).toBe('a');
  });

  it('skips an object in GLACIER with a warning naming its key, and counts it', async () => {
    await putAll('cold', [
      { key: 'warm.txt', body: Buffer.from('warm') },
      { key: 'old/archive.bin', body: Buffer.from('frozen'), headers: { StorageClass: 'GLACIER' } },
      { key: 'old/deep.bin', body: Buffer.from('deeper'), headers: { StorageClass: 'DEEP_ARCHIVE' } },
    ]);
    const repository = await newRepository();
    const { header, warnings, reader } = await backupOf(repository, importer('s3://cold'));
    expect(warnings.sort()).toEqual([
      '/old/archive.bin: s3://cold/old/archive.bin: object is in GLACIER and not restored',
      '/old/deep.bin: s3://cold/old/deep.bin: object is in DEEP_ARCHIVE and not restored',
    ]);
    expect(header.stats.errors).toBe(2);
    const { files } = await walkSnapshot(reader, header.root);
    expect([...files.keys()]).toEqual(['warm.txt']);
  });

  it("fails the backup on an archived object with glacier 'fail'", async () => {
    const repository = await newRepository();
    const source = importer('s3://cold', { glacier: 'fail' });
    await expect(backup(repository, source)).rejects.toThrow(/cannot read/);
  });

  it('resumes a body the connection cuts short, byte-exact', async () => {
    const proxy: FaultProxy = await startFaultProxy(s3.endpoint);
    try {
      proxy.addRule({ method: 'GET', path: /big\/blob\.bin/, fault: 'truncate', times: 2 });
      const repository = await newRepository();
      const { header, reader, warnings } = await backupOf(repository, importer('s3://source/big', {}, s3.client({ endpoint: proxy.endpoint })));
      expect(warnings).toEqual([]);
      expect(proxy.faults.GET).toBe(2);
      const entry = await reader.lookup('/blob.bin');
      const chunks: Buffer[] = [];
      for await (const data of (await reader.openFile(entry)).stream()) chunks.push(data);
      expect(sha(Buffer.concat(chunks))).toBe(sha(big));
      expect(header.stats.errors).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  it('leaves out, with a warning, an object replaced between a body cut short and its resumption, on a server that ignores If-Match', async () => {
    const proxy: FaultProxy = await startFaultProxy(s3.endpoint);
    try {
      const first = randomBytes(3 * MiB);
      const second = randomBytes(3 * MiB);
      await put('changing', { key: 'object.bin', body: first });
      // s3rver answers a ranged GET whatever its If-Match says, as some gateways do.
      proxy.addRule({ method: 'GET', path: /\/changing\/object\.bin/, fault: 'truncate', times: 1 });
      // The resumption is held until the object is replaced: a fixed delay could end before a slow PUT does.
      let replaced!: () => void;
      proxy.addRule({ method: 'GET', path: /\/changing\/object\.bin/, fault: 'delay', until: new Promise<void>((resolve) => (replaced = resolve)), times: 1 });
      const repository = await newRepository();
      const running = backupOf(repository, importer('s3://changing', {}, s3.client({ endpoint: proxy.endpoint })));
      while (proxy.log.filter((request) => request.url.includes('object.bin')).length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
      await put('changing', { key: 'object.bin', body: second });
      replaced();
      const { header, reader, warnings } = await running;
      expect(warnings).toEqual(['/object.bin: s3://changing/object.bin: changed while it was read']);
      expect(header.stats.errors).toBe(1);
      const { files } = await walkSnapshot(reader, header.root);
      expect(files.size).toBe(0);
    } finally {
      await proxy.stop();
    }
  });

  it('lists directories ahead of the walk and gives the same entries, in the same order, as listing each on entry', async () => {
    const entries = async (source: S3ImporterType) => {
      const out: string[] = [];
      const visit = async (path: string) => {
        for await (const child of source.children(path)) {
          const childPath = path === '' ? child.name : `${path}/${child.name}`;
          if ('skipped' in child) throw child.skipped;
          // A directory's time is its importer's start: left out.
          out.push(JSON.stringify([childPath, child.kind, child.size, child.kind === 'file' ? [child.mtime, child.meta] : child.meta]));
          if (child.kind === 'directory') await visit(childPath);
        }
      };
      await source.rootEntry();
      await visit('');
      return out;
    };
    const proxy = await startFaultProxy(s3.endpoint);
    try {
      const sequential = await entries(importer('s3://source', { listAhead: 0 }, s3.client({ endpoint: proxy.endpoint })));
      const sequentialLists = proxy.requests.GET;
      proxy.resetCounts();
      // A small window and page size: probes, continuation pages and first pages fetched ahead all meet.
      const ahead = await entries(importer('s3://source', { listAhead: 3, pageSize: 7, window: 5 }, s3.client({ endpoint: proxy.endpoint })));
      const aheadWalk = await entries(importer('s3://source', { listAhead: 16 }));
      expect(sequential.length).toBe(SEED.length + 8);
      expect(ahead).toEqual(sequential);
      expect(aheadWalk).toEqual(sequential);
      expect(sequentialLists).toBeGreaterThan(0);
      expect(proxy.requests.GET).toBeGreaterThan(sequentialLists); // pages of 7 keys
    } finally {
      await proxy.stop();
    }
  });

  it('records the same entries reading objects with its own signed GETs as through GetObjectCommand', async () => {
    const snapshot = async (sdkGets: boolean) => {
      const repository = await newRepository();
      const { header, reader, warnings } = await backupOf(repository, importer('s3://source', { sdkGets }));
      expect(warnings).toEqual([]);
      const { files } = await walkSnapshot(reader, header.root);
      const out = new Map<string, unknown>();
      for (const [p, entry] of files) out.set(p, { size: entry.size, mtime: entry.mtime, meta: entry.meta });
      const blob = await reader.lookup('/big/blob.bin');
      const chunks: Buffer[] = [];
      for await (const data of (await reader.openFile(blob)).stream()) chunks.push(data);
      return { out, big: sha(Buffer.concat(chunks)) };
    };
    const direct = await snapshot(false);
    const sdk = await snapshot(true);
    expect(direct.out.size).toBe(SEED.length);
    expect([...direct.out]).toEqual([...sdk.out]);
    expect(direct.big).toBe(sha(big));
    expect(direct.out.get('index.html')).toMatchObject({
      meta: { 's3.content_type': 'text/html; charset=utf-8', 's3.cache_control': 'max-age=60', 's3.meta.author': 'ann', 's3.meta.build-id': '42' },
    });
  });

  it('retries a GET answered 503 SlowDown, 500 or a dropped connection, and reports a refused object by its key', async () => {
    const proxy = await startFaultProxy(s3.endpoint);
    try {
      proxy.addRule({ method: 'GET', path: /img%2001\.jpg/, fault: 'slowdown', times: 2 });
      proxy.addRule({ method: 'GET', path: /notes\.txt\.gz/, fault: 'internal', times: 1 });
      proxy.addRule({ method: 'GET', path: /\/source\/photos\/$/, fault: 'drop', times: 1 });
      const repository = await newRepository();
      const { header, reader, warnings } = await backupOf(repository, importer('s3://source/photos', {}, s3.client({ endpoint: proxy.endpoint, maxAttempts: 4 })));
      expect(warnings).toEqual([]);
      expect(proxy.faults.GET).toBe(4);
      const { files } = await walkSnapshot(reader, header.root);
      expect(files.get('2024/img 01.jpg')?.meta?.['s3.meta.camera']).toBe('x100');
      expect(files.size).toBe(3);

      proxy.clearRules();
      proxy.addRule({ method: 'GET', path: /notes\.txt\.gz/, fault: 'error', status: 403, code: 'AccessDenied', message: 'Access Denied', times: 100 });
      const denied = await backupOf(await newRepository(), importer('s3://source/photos', {}, s3.client({ endpoint: proxy.endpoint, maxAttempts: 4 })));
      expect(denied.warnings).toEqual(['/2024/notes.txt.gz: permission denied']);
      expect(denied.header.stats.errors).toBe(1);
    } finally {
      await proxy.stop();
    }
  });

  it('reports a missing bucket in one line', async () => {
    const repository = await newRepository();
    await expect(backup(repository, importer('s3://no-such-bucket'))).rejects.toThrow('s3://no-such-bucket: no such bucket');
  });

  it('says the access key is wrong, not only that access is denied, though the HEAD of the bucket has no body to tell', async () => {
    const repository = await newRepository();
    await expect(backup(repository, importer('s3://source/photos', {}, s3.client({ accessKey: 'NOT-A-KEY' })))).rejects.toThrow(
      /^s3:\/\/source: the access key is not known to the server \(InvalidAccessKeyId\)$/,
    );
    expect(await listSnapshots(repository, () => undefined)).toEqual([]);
  });

  it('refuses a prefix with nothing under it, or one that names an object, rather than store an empty snapshot', async () => {
    const repository = await newRepository();
    await expect(backup(repository, importer('s3://source/no-such-prefix'))).rejects.toThrow(
      new KlosetError('s3://source/no-such-prefix/: no object under this prefix: nothing to back up'),
    );
    await expect(backup(repository, importer('s3://source/photos/2024/img 01.jpg'))).rejects.toThrow(
      new KlosetError('s3://source/photos/2024/img 01.jpg: an object, not a prefix: back up the prefix that holds it'),
    );
    expect(await listSnapshots(repository, () => undefined)).toEqual([]);
    // An empty bucket is a bucket: its snapshot is empty.
    await s3.createBucket('empty-bucket');
    const { header } = await backupOf(repository, importer('s3://empty-bucket'));
    expect(header.stats.files).toBe(0);
  });
});

describe('multipart parts of a restored object', () => {
  it('keep their size up to 10,000 parts, then grow in whole MiB so that no object needs more', () => {
    const MiB = 1024 * 1024;
    const GiB = 1024 * MiB;
    expect(partSizeFor(100 * MiB, 8 * MiB)).toBe(8 * MiB);
    expect(partSizeFor(10_000 * 8 * MiB, 8 * MiB)).toBe(8 * MiB);
    for (const size of [10_000 * 8 * MiB + 1, 100 * GiB, 5 * 1024 * GiB]) {
      const part = partSizeFor(size, 8 * MiB);
      expect(part % MiB).toBe(0);
      expect(Math.ceil(size / part)).toBeLessThanOrEqual(10_000);
    }
    // S3's largest object in parts under its 5 GiB part limit.
    expect(partSizeFor(5 * 1024 * GiB, 8 * MiB)).toBeLessThanOrEqual(5 * GiB);
  });
});

describe('S3 destination', () => {
  it('puts the files of a local directory under their relative paths', async () => {
    const dir = await tempDir('kloset-s3src-');
    await fs.mkdir(path.join(dir, 'sub/deeper'), { recursive: true });
    await fs.writeFile(path.join(dir, 'top.txt'), 'top');
    await fs.writeFile(path.join(dir, 'sub/deeper/leaf.txt'), 'leaf');
    await fs.symlink('top.txt', path.join(dir, 'link'));
    const repository = await newRepository();
    const header = await backup(repository, new FsImporter(dir));
    const reader = new SnapshotReaderClass(repository, header);
    const warnings: string[] = [];
    const result = await restore(reader, header.root, '/', new S3Exporter(client, parseS3Uri('s3://from-local/here')), {
      onWarning: (p, m) => warnings.push(`${p}: ${m}`),
    });
    // A symbolic link has no S3 form: named, not dropped without a word.
    expect(warnings).toEqual(['/link: s3://from-local/here/link: a symbolic link has no S3 form: not written']);
    expect(result.errors).toBe(1);
    expect(await listKeys('from-local')).toEqual(['here/sub/deeper/leaf.txt', 'here/top.txt']);
    expect((await getObject('from-local', 'here/sub/deeper/leaf.txt')).body.toString()).toBe('leaf');
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('reports an object the server refuses by its path, and restores the rest', async () => {
    const repository = await newRepository();
    const { header, reader } = await backupOf(repository, importer('s3://source/photos'));
    const proxy = await startFaultProxy(s3.endpoint);
    try {
      proxy.addRule({ method: 'PUT', path: /notes\.txt\.gz/, fault: 'error', status: 403, code: 'AccessDenied', message: 'Access Denied', times: 100 });
      const warnings: string[] = [];
      const result = await restore(reader, header.root, '/', new S3Exporter(s3.client({ endpoint: proxy.endpoint }), parseS3Uri('s3://denied')), {
        onWarning: (p, m) => warnings.push(`${p}: ${m}`),
      });
      expect(result.errors).toBe(1);
      expect(warnings).toEqual(['/2024/notes.txt.gz: s3://denied/photos/2024/notes.txt.gz: access denied']);
      expect(await listKeys('denied')).toEqual(['photos/', 'photos/2024/img 01.jpg']);
    } finally {
      await proxy.stop();
    }
  });

  it('gives an Expires that is no date (`0`: already expired) back as it was, through single and multipart PUTs', async () => {
    for (const [key, body] of [['small.txt', Buffer.from('small')], ['large.bin', randomBytes(6 * MiB)]] as const) {
      const command = new PutObjectCommand({ Bucket: 'expires-source', Key: key, Body: body, ContentLength: body.length });
      // The SDK takes only a date; S3 keeps whatever header it is sent.
      command.middlewareStack.add(
        (next) => async (args) => {
          (args.request as { headers: Record<string, string> }).headers.expires = '0';
          return next(args);
        },
        { step: 'build' },
      );
      await client.send(command);
    }
    const repository = await newRepository();
    const { header, reader } = await backupOf(repository, importer('s3://expires-source'));
    const exporters = {
      'expires-direct': new S3Exporter(client, parseS3Uri('s3://expires-direct')),
      'expires-sdk': new S3Exporter(client, parseS3Uri('s3://expires-sdk'), { sdkPuts: true }),
      'expires-parts': new S3Exporter(client, parseS3Uri('s3://expires-parts'), { singlePutLimit: 1, partSize: 5 * MiB }),
    };
    for (const [bucket, exporter] of Object.entries(exporters)) {
      expect((await restore(reader, header.root, '/', exporter)).errors).toBe(0);
      for (const key of ['small.txt', 'large.bin']) {
        expect((await getObject(bucket, key)).expires, `${bucket}/${key}`).toBe('0');
      }
    }
  });

  it('restores with credentials that may only put objects, which a HEAD of the bucket answers 403', async () => {
    const repository = await newRepository();
    const { header, reader } = await backupOf(repository, importer('s3://source/photos'));
    const proxy = await startFaultProxy(s3.endpoint);
    try {
      // s3:PutObject without s3:ListBucket: AWS refuses HeadBucket and listings.
      proxy.addRule({ method: 'HEAD', path: /^\/put-only\/?$/, fault: 'error', status: 403, code: 'AccessDenied', every: 1 });
      proxy.addRule({ method: 'GET', path: /^\/put-only\/?\?/, fault: 'error', status: 403, code: 'AccessDenied', every: 1 });
      const exporter = new S3Exporter(s3.client({ endpoint: proxy.endpoint }), parseS3Uri('s3://put-only'));
      const result = await restore(reader, header.root, '/', exporter);
      expect(result.errors).toBe(0);
      expect(proxy.faults.HEAD).toBe(1);
      expect(await listKeys('put-only')).toEqual(['photos/', 'photos/2024/img 01.jpg', 'photos/2024/notes.txt.gz']);
    } finally {
      await proxy.stop();
    }
  });

  it('stops in one line, before any PUT, when the access key is wrong', async () => {
    const repository = await newRepository();
    const { header, reader } = await backupOf(repository, importer('s3://source/photos'));
    const exporter = new S3Exporter(s3.client({ accessKey: 'NOT-A-KEY' }), parseS3Uri('s3://put-only/wrong-key'));
    await expect(restore(reader, header.root, '/', exporter)).rejects.toThrow(/^cannot restore there: s3:\/\/put-only: the access key is not known to the server \(InvalidAccessKeyId\)$/);
    expect(await listKeys('put-only', 'wrong-key/')).toEqual([]);
  });

  it('once the restore is stopping, starts no upload that would be left unfinished', async () => {
    const exporter = new S3Exporter(client, parseS3Uri('s3://stopped'), { singlePutLimit: 5 * 1024 * 1024, partSize: 5 * 1024 * 1024 });
    await exporter.createDirectory('', { name: '', kind: 'directory', mode: 0o040755, uid: 0, gid: 0, size: 0, mtime: { sec: 0, nsec: 0 } });
    await exporter.abandon();
    const size = 12 * 1024 * 1024;
    const entry: Entry = { name: 'large.bin', kind: 'file', mode: 0o100644, uid: 0, gid: 0, size, mtime: { sec: 0, nsec: 0 } };
    let read = 0;
    const content = (async function* () {
      read++;
      yield randomBytes(size);
    })();
    await expect(exporter.writeFile('large.bin', entry, content)).rejects.toThrow(/s3:\/\/stopped\/large\.bin: not written, the restore is stopping/);
    expect(read).toBe(0);
    expect(await listKeys('stopped')).toEqual([]);
  });
});

describe('a listing page asked for with EncodingType=url', () => {
  it('is decoded where the server encoded it, as botocore decodes it, and left alone where it did not', async () => {
    const { decodeListing } = await import('../../src/connectors/s3/importer.js');
    const encoded = decodeListing({
      $metadata: {},
      EncodingType: 'url',
      Prefix: 'dir%0D/',
      Contents: [{ Key: 'dir%0D/a+b%2Bc%25d%0A' }],
      CommonPrefixes: [{ Prefix: 'dir%0D/sub%09/' }],
    });
    expect(encoded.Prefix).toBe('dir\r/');
    expect(encoded.Contents?.map((o) => o.Key)).toEqual(['dir\r/a b+c%d\n']);
    expect(encoded.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['dir\r/sub\t/']);
    const plain = decodeListing({ $metadata: {}, Contents: [{ Key: 'a+b%2B' }] });
    expect(plain.Contents?.map((o) => o.Key)).toEqual(['a+b%2B']);
  });
});
