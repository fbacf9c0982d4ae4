/**
 * A bucket as the source and another bucket as the destination, through the
 * real CLI and a real S3 server (s3rver on loopback): the seed's command lines
 * as written (`config s3_src …`, `backup @s3_src`, `restore -to @s3_dest`),
 * with an endpoint set for the local server and use_tls false (it speaks
 * plain HTTP).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Importer, SourceEntry } from '../../src/snapshot/importer.js';
import { EMPTY_NAME, OBJECT_SUFFIX, pathsForKeys } from '../../src/connectors/s3/keys.js';
import { type CliResult, tempDir } from '../helpers/cli.js';
import { escapeRegExp, expectNoStackTrace, expectOneLineError, klosetWith } from '../helpers/fixtures.js';
import { storeWithSnapshot } from '../helpers/mount.js';
import { s3Sandbox, startS3Server, withEndpointOf, type S3Server } from '../helpers/s3server.js';

interface Seed {
  key: string;
  body: Buffer;
  headers?: Partial<PutObjectCommandInput>;
}

const SEED: Seed[] = [
  {
    key: 'site/index.html',
    body: Buffer.from('<h1>hi</h1>'),
    headers: { ContentType: 'text/html', CacheControl: 'no-cache', Metadata: { owner: 'web-team' } },
  },
  {
    key: 'site/assets/app.js',
    body: Buffer.from('console.log(1)'),
    headers: { ContentType: 'application/javascript', ContentEncoding: 'identity', ContentLanguage: 'en' },
  },
  { key: 'site/', body: Buffer.alloc(0) },
  { key: 'reports/2024/q1.csv', body: Buffer.from('a,b\n1,2\n'), headers: { ContentType: 'text/csv', ContentDisposition: 'inline' } },
  { key: 'reports/readme.txt', body: Buffer.from('about the reports') },
  // Prefixes that hold only deeper prefixes, not an object of their own.
  { key: 'deep/only/prefixes/leaf.txt', body: Buffer.from('three prefixes down') },
  { key: 'reports', body: Buffer.from('an object named like a prefix') },
  { key: 'reports-old.txt', body: Buffer.from('sorts between reports and reports/') },
  { key: 'weird/%2e%2e/x', body: Buffer.from('percent dots') },
  { key: `weird/${EMPTY_NAME}`, body: Buffer.from('a key that is a token') },
  { key: 'weird/spaces and ünïcode.txt', body: Buffer.from('ü') },
];

let s3: S3Server;
let client: S3Client;
let work: string;

async function putAll(bucket: string, seeds: Seed[]): Promise<void> {
  await Promise.all(
    seeds.map((s) =>
      client.send(new PutObjectCommand({ Bucket: bucket, Key: s.key, Body: s.body, ContentLength: s.body.length, ...s.headers })),
    ),
  );
}

async function listKeys(bucket: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const object of page.Contents ?? []) keys.push(object.Key!);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys.sort();
}

async function getObject(bucket: string, key: string) {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const body = Buffer.from(await r.Body!.transformToByteArray());
  return {
    sha: createHash('sha256').update(body).digest('hex'),
    contentType: r.ContentType,
    cacheControl: r.CacheControl,
    contentEncoding: r.ContentEncoding,
    contentDisposition: r.ContentDisposition,
    contentLanguage: r.ContentLanguage,
    metadata: r.Metadata ?? {},
  };
}

// A test here runs the CLI up to twenty times against s3rver: on a loaded machine, close to a minute.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

beforeAll(async () => {
  s3 = await startS3Server();
  client = s3.client();
  work = await tempDir('kloset-s3conn-cli-');
  for (const bucket of ['your-source-bucket-name', 'your-dest-bucket-name', 'your-bucket-name', 'cold-bucket']) await s3.createBucket(bucket);
  await putAll('your-source-bucket-name', SEED);
  await putAll('cold-bucket', [
    { key: 'hot.txt', body: Buffer.from('hot') },
    { key: 'frozen/old.tar', body: Buffer.from('old'), headers: { StorageClass: 'GLACIER' } },
  ]);
});

afterAll(async () => {
  await s3?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const sandbox = (extraEnv: NodeJS.ProcessEnv = {}) => s3Sandbox(work, extraEnv);

type Kloset = ReturnType<typeof klosetWith>;

/** The seed's `kloset config <name> …` lines, with `endpoint` for the local server. */
async function configureAsTheSeed(kloset: Kloset, name: string, locationKey: 'uri' | 'location', location: string) {
  const steps: string[][] = [
    ['config', name, 'create', name],
    ['config', name, 'set', name, 'type', 's3'],
    ['config', name, 'set', name, locationKey, location],
    ['config', name, 'set', name, 'access_key', s3.accessKey],
    ['config', name, 'set', name, 'secret_access_key', s3.secretKey],
    ['config', name, 'set', name, 'use_tls', 'false'],
    ['config', name, 'set', name, 'endpoint', s3.endpoint],
  ];
  for (const args of steps) {
    const result = await kloset(args);
    expect(result.stderr, args.join(' ')).toBe('');
    expect(result.code, args.join(' ')).toBe(0);
  }
}

/**
 * The same alias in one command (`config <name> set <name> key=value…`): each
 * start of the CLI costs a test a fifth of a second, and the seed's lines run
 * once above.
 */
async function configure(kloset: Kloset, name: string, locationKey: 'uri' | 'location', location: string, extra: Record<string, string> = {}) {
  const values = { type: 's3', [locationKey]: location, access_key: s3.accessKey, secret_access_key: s3.secretKey, use_tls: 'false', endpoint: s3.endpoint, ...extra };
  const args = ['config', name, 'set', name, ...Object.entries(values).map(([key, value]) => `${key}=${value}`)];
  const result = await kloset(args);
  expect(result.stderr, args.join(' ')).toBe('');
  expect(result.code, args.join(' ')).toBe(0);
}

function snapshotIdOf(result: CliResult): string {
  const match = /created snapshot ([0-9a-f]{8})/.exec(result.stdout);
  if (!match) throw new Error(`no snapshot id in: ${result.stdout} ${result.stderr}`);
  return match[1];
}

describe('a bucket backed up and restored with the seed command lines', () => {
  let kloset: Kloset;
  let home: string;
  let id: string;

  beforeAll(async () => {
    ({ kloset, home } = await sandbox());
    await configureAsTheSeed(kloset, 's3_src', 'uri', 's3://your-source-bucket-name');
    await configureAsTheSeed(kloset, 's3_dest', 'uri', 's3://your-dest-bucket-name');
    await configureAsTheSeed(kloset, 's3_store', 'location', 's3://your-bucket-name/plakar-kloset');
    // As the seed writes it: the store's URI directly, endpoint and keys from the environment.
    const created = await kloset(['at', 's3://your-bucket-name/plakar-kloset', 'create'], { env: s3.env() });
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
  });

  it('backs up the bucket with `kloset at @s3_store backup @s3_src`', async () => {
    const result = await kloset(['at', '@s3_store', 'backup', '@s3_src']);
    expectNoStackTrace(result);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`of s3://your-source-bucket-name: ${SEED.length} files`);
    id = snapshotIdOf(result);
  });

  it('lists the snapshot and its tree with ls', async () => {
    const list = await kloset(['at', '@s3_store', 'ls']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`\\s${id}\\s.*s3://your-source-bucket-name`));
    const top = await kloset(['at', '@s3_store', 'ls', `${id}:/`]);
    expect(top.stdout.trim().split('\n').map((line) => line.split(' ').pop())).toEqual([
      'deep/',
      'reports/',
      'reports-old.txt',
      `reports${OBJECT_SUFFIX}`,
      'site/',
      'weird/',
    ]);
    const deep = await kloset(['at', '@s3_store', 'ls', `${id}:/deep/only/prefixes`]);
    expect(deep.stdout.trim().split(' ').pop()).toBe('leaf.txt');
    const json = JSON.parse((await kloset(['at', '@s3_store', 'ls', '--json', `${id}:/site`])).stdout) as { name: string; meta?: Record<string, string> }[];
    const index = json.find((e) => e.name === 'index.html')!;
    expect(index.meta).toMatchObject({ 's3.key': 'site/index.html', 's3.content_type': 'text/html', 's3.meta.owner': 'web-team' });
  });

  it('prints an object with `cat <snapshot-id>:/path/to/file`', async () => {
    const result = await kloset(['at', '@s3_store', 'cat', `${id}:/reports/2024/q1.csv`]);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('a,b\n1,2\n');
  });

  it('restores into another bucket with `restore -to @s3_dest`: keys, bodies, headers and metadata equal', async () => {
    const result = await kloset(['at', '@s3_store', 'restore', '-to', '@s3_dest', id]);
    expectNoStackTrace(result);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('to s3://your-dest-bucket-name');
    expect(await listKeys('your-dest-bucket-name')).toEqual(SEED.map((s) => s.key).sort());
    for (const seed of SEED) {
      expect(await getObject('your-dest-bucket-name', seed.key), seed.key).toEqual(await getObject('your-source-bucket-name', seed.key));
    }
  });

  it('backs up an unchanged bucket again without reading its objects, keeping their metadata', async () => {
    const again = await kloset(['at', '@s3_store', 'backup', '@s3_src']);
    expect(again.code).toBe(0);
    const added = /\(([\d.]+) (B|KiB) added to the store\)/.exec(again.stdout);
    expect(added, again.stdout).not.toBeNull();
    const second = snapshotIdOf(again);
    const json = JSON.parse((await kloset(['at', '@s3_store', 'ls', '--json', `${second}:/site`])).stdout) as { name: string; meta?: Record<string, string> }[];
    expect(json.find((e) => e.name === 'index.html')!.meta).toMatchObject({ 's3.content_type': 'text/html', 's3.meta.owner': 'web-team' });
  });

  it('restores the same snapshot into a local directory with `restore -to ./restore`', async () => {
    const result = await kloset(['at', '@s3_store', 'restore', '-to', './restore', id], { cwd: home });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const target = path.join(home, 'restore');
    for (const [key, rel] of pathsForKeys(SEED.map((s) => s.key))) {
      const data = await fs.readFile(path.join(target, ...rel.split('/')));
      expect(data.equals(SEED.find((s) => s.key === key)!.body), key).toBe(true);
    }
    // Nothing but the restore itself appeared beside it.
    expect((await fs.readdir(home)).sort()).toEqual(['cache', 'config', 'restore']);
  });

  it('backs up a local directory into the same store with `backup /etc`', async () => {
    const result = await kloset(['at', '@s3_store', 'backup', '/etc']);
    expectNoStackTrace(result);
    // Some files of /etc may be unreadable to the test's user: that is a partial backup (3), not a failure.
    expect([0, 3]).toContain(result.code);
    expect(result.stdout).toMatch(/created snapshot [0-9a-f]{8} of \/etc/);
  });

  it('finds the previous snapshot of a bucket by the host it is recorded under (-host), as restic does', async () => {
    const listed = async () => JSON.parse((await kloset(['at', '@s3_store', 'ls', '--json'])).stdout) as { id: string; host: string; parent?: string }[];
    for (const host of ['web1', 'web2', 'web1']) expect((await kloset(['at', '@s3_store', 'backup', '-host', host, '@s3_src'])).code).toBe(0);
    const [first, other, again] = (await listed()).slice(-3);
    expect([first.host, other.host, again.host]).toEqual(['web1', 'web2', 'web1']);
    expect(first.parent).not.toBe(other.id);
    expect(other.parent).toBeUndefined();
    expect(again.parent).toBe(first.id);
  });

  it('backs up a bucket named by its URI, endpoint and keys from the environment', async () => {
    const result = await kloset(['at', '@s3_store', 'backup', 's3://your-source-bucket-name/site'], { env: s3.env() });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('of s3://your-source-bucket-name/site: 3 files');
  });
});

describe('a source or destination whose endpoint is no S3 server', () => {
  it('says the bucket is not there, or the endpoint is no S3 server, when every request gets a bare 404', async () => {
    const server = http.createServer((_request, response) => {
      response.statusCode = 404;
      response.end();
    });
    await withEndpointOf(server, async (endpoint) => {
      const { kloset } = await sandbox();
      await configure(kloset, 'elsewhere_src', 'uri', 's3://your-source-bucket-name', { endpoint });
      await configure(kloset, 'elsewhere_dest', 'uri', 's3://your-dest-bucket-name', { endpoint });
      const store = path.join(work, 'elsewhere-store');
      expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
      const backup = await kloset(['at', store, 'backup', '@elsewhere_src']);
      expect(backup.code).toBe(1);
      expectOneLineError(backup, new RegExp(`^kloset: s3://your-source-bucket-name: no such bucket at ${escapeRegExp(endpoint)} \\(or that is not an S3 server\\)`));
      const local = path.join(work, 'elsewhere-local');
      await fs.mkdir(local, { recursive: true });
      await fs.writeFile(path.join(local, 'a.txt'), 'a');
      const id = snapshotIdOf(await kloset(['at', store, 'backup', local]));
      const restore = await kloset(['at', store, 'restore', '-to', '@elsewhere_dest', id]);
      expect(restore.code).toBe(1);
      expectOneLineError(restore, new RegExp(`s3://your-dest-bucket-name: no such bucket at ${escapeRegExp(endpoint)} \\(or that is not an S3 server\\)`));
    });
  });
});

describe('a bucket of many objects', () => {
  it('is read many objects at a time with nothing on stderr but what kloset says', async () => {
    await s3.createBucket('many-objects');
    // Each object read at once listens for an interrupt: more than ten at a time tripped Node's leak warning.
    const seeds = Array.from({ length: 300 }, (_, n) => ({ key: `part-${String(n).padStart(3, '0')}.bin`, body: Buffer.alloc(96 * 1024, n) }));
    for (let at = 0; at < seeds.length; at += 50) await putAll('many-objects', seeds.slice(at, at + 50));
    const { kloset } = await sandbox();
    await configure(kloset, 'many', 'uri', 's3://many-objects');
    const store = path.join(work, 'many-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    const result = await kloset(['at', store, 'backup', '@many']);
    expectNoStackTrace(result);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`of s3://many-objects: ${seeds.length} files`);
  });
});

describe('objects in GLACIER', () => {
  it('are skipped with a warning naming each, and the backup ends partial (exit code 3)', async () => {
    const { kloset } = await sandbox();
    await configure(kloset, 'cold', 'uri', 's3://cold-bucket');
    const store = path.join(work, 'cold-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    const result = await kloset(['at', store, 'backup', '@cold']);
    expectNoStackTrace(result);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('/frozen/old.tar: s3://cold-bucket/frozen/old.tar: object is in GLACIER and not restored');
    expect(result.stdout).toMatch(/1 file, .*, 1 error\b/);
  });

  it("fail the backup, with no snapshot, when the alias says glacier 'fail'", async () => {
    const { kloset } = await sandbox();
    await configure(kloset, 'cold', 'uri', 's3://cold-bucket', { glacier: 'fail' });
    const store = path.join(work, 'cold-store-fail');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    const result = await kloset(['at', store, 'backup', '@cold']);
    expectNoStackTrace(result);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('s3://cold-bucket/frozen/old.tar: object is in GLACIER and not restored');
    const list = await kloset(['at', store, 'ls']);
    expect(list.stdout.trim()).toBe('');
  });
});

describe('a key the listing cannot carry', () => {
  it('is named in a warning and counted, not stored with the bucket listing as its content', async () => {
    await s3.createBucket('odd-keys-bucket');
    // s3rver does not URL-encode listings, and XML parsing turns a key of a line feed into an empty string.
    await putAll('odd-keys-bucket', [
      { key: '\n', body: Buffer.from('a line feed as a key') },
      { key: 'plain.txt', body: Buffer.from('plain') },
    ]);
    const { kloset } = await sandbox();
    await configure(kloset, 'odd', 'uri', 's3://odd-keys-bucket');
    const store = path.join(work, 'odd-keys-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    const result = await kloset(['at', store, 'backup', '@odd']);
    expectNoStackTrace(result);
    expect(result.stderr).toBe('warning: /"": s3://odd-keys-bucket/: the listing gave a key whose characters it lost: not backed up\n');
    expect(result.code).toBe(3);
    expect(result.stdout).toMatch(/1 file, .*, 1 error\b/);
    const listed = await kloset(['at', store, 'ls', '-R', ':/']);
    expect(listed.stdout.trim().split('\n').map((line) => line.split(' ').pop())).toEqual(['plain.txt']);
  });
});

describe('a file whose name is not UTF-8, restored into a bucket', () => {
  it('is named in a warning and left out, since a key is text; the rest is written', async () => {
    await s3.createBucket('latin1-dest');
    const source = path.join(work, 'latin1-source');
    await fs.mkdir(source);
    await fs.writeFile(Buffer.from(`${source}/caf\xe9.txt`, 'latin1'), 'latin-1 name');
    await fs.writeFile(path.join(source, 'plain.txt'), 'plain');
    const { kloset } = await sandbox();
    await configure(kloset, 'latin1_dest', 'uri', 's3://latin1-dest');
    const store = path.join(work, 'latin1-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const result = await kloset(['at', store, 'restore', '-to', '@latin1_dest']);
    expectNoStackTrace(result);
    expect(result.stderr).toMatch(/^warning: .*s3:\/\/latin1-dest\/caf\uFFFD\.txt: the name is not UTF-8 text, which an S3 key must be: not written\n$/);
    expect(result.code).toBe(3);
    expect(await listKeys('latin1-dest')).toEqual(['plain.txt']);
  });
});

describe('symbolic links and FIFOs, restored into a bucket', () => {
  it('are each named in a warning and left out, since S3 has no form for them; the files are written', async () => {
    await s3.createBucket('links-dest');
    const source = path.join(work, 'links-source');
    await fs.mkdir(path.join(source, 'd'), { recursive: true });
    await fs.writeFile(path.join(source, 'd', 'file.txt'), 'content');
    await fs.symlink('file.txt', path.join(source, 'd', 'link'));
    execFileSync('mkfifo', [path.join(source, 'fifo')]);
    const { kloset } = await sandbox();
    const store = path.join(work, 'links-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const result = await kloset(['at', store, 'restore', '-to', 's3://links-dest/r'], { env: s3.env() });
    expectNoStackTrace(result);
    expect(result.stderr.split('\n').filter(Boolean).sort()).toEqual([
      'warning: /d/link: s3://links-dest/r/d/link: a symbolic link has no S3 form: not written',
      'warning: /fifo: s3://links-dest/r/fifo: a fifo has no S3 form: not written',
    ]);
    expect(result.code).toBe(3);
    expect(await listKeys('links-dest')).toEqual(['r/d/file.txt']);
  });
});

describe('an alias with a key that does not apply to what it is used as', () => {
  it('is used, and the key named in a warning: storage_class on a source, glacier_objects on a destination', async () => {
    const { kloset } = await sandbox();
    await configure(kloset, 'classed_src', 'uri', 's3://your-source-bucket-name/reports', { storage_class: 'STANDARD_IA' });
    const store = path.join(work, 'inapplicable-keys-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    const backup = await kloset(['at', store, 'backup', '@classed_src']);
    expect(backup.stderr).toBe('warning: alias @classed_src: storage_class does not apply to a source: ignored\n');
    expect(backup.code).toBe(0);

    await s3.createBucket('inapplicable-keys-dest');
    await configure(kloset, 'skipping_dest', 'uri', 's3://inapplicable-keys-dest', { glacier_objects: 'fail' });
    const restore = await kloset(['at', store, 'restore', '-to', '@skipping_dest']);
    expect(restore.stderr).toBe('warning: alias @skipping_dest: glacier_objects does not apply to a destination: ignored\n');
    expect(restore.code).toBe(0);
    expect(await listKeys('inapplicable-keys-dest')).toEqual(['reports/2024/q1.csv', 'reports/readme.txt']);
  });
});

describe('a destination alias with storage_class', () => {
  it('writes every object in that class, through single and multipart PUTs, as rclone and aws s3 cp --storage-class do', async () => {
    await s3.createBucket('classed-dest');
    const source = path.join(work, 'classed-source');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'small.txt'), 'small');
    await fs.writeFile(path.join(source, 'large.bin'), Buffer.alloc(9 * 1024 * 1024, 7));
    const { kloset } = await sandbox();
    await configure(kloset, 'classed_dest', 'uri', 's3://classed-dest', { storage_class: 'standard_ia' });
    const store = path.join(work, 'classed-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const result = await kloset(['at', store, 'restore', '-to', '@classed_dest']);
    expectNoStackTrace(result);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    for (const key of ['large.bin', 'small.txt']) {
      const head = await client.send(new HeadObjectCommand({ Bucket: 'classed-dest', Key: key }));
      expect(head.StorageClass, key).toBe('STANDARD_IA');
    }
    // An archive class, which a store refuses since it could not read its packs back, suits a destination.
    expect((await kloset(['config', 'classed_dest', 'set', 'classed_dest', 'storage_class', 'DEEP_ARCHIVE'])).code).toBe(0);
    const archived = await kloset(['at', store, 'restore', '-to', '@classed_dest']);
    expect(archived.stderr).toBe('');
    expect(archived.code).toBe(0);
    expect((await client.send(new HeadObjectCommand({ Bucket: 'classed-dest', Key: 'small.txt' }))).StorageClass).toBe('DEEP_ARCHIVE');
  });

  it('refuses, on AWS, a storage_class that is no S3 storage class, before writing anything', async () => {
    const { kloset } = await sandbox({ KLOSET_S3_ENDPOINT: '', AWS_ENDPOINT_URL_S3: '', AWS_ENDPOINT_URL: '' });
    for (const [key, value] of [['uri', 's3://aws-dest'], ['storage_class', 'bogus']]) {
      expect((await kloset(['config', 'aws_dest', 'set', 'aws_dest', key!, value!])).code).toBe(0);
    }
    const source = path.join(work, 'aws-class-source');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'small.txt'), 'small');
    const store = path.join(work, 'aws-class-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const result = await kloset(['at', store, 'restore', '-to', '@aws_dest']);
    expect(result.code).toBe(2);
    expectOneLineError(result, /^kloset: storage_class 'bogus' is not an S3 storage class: use one of STANDARD, INTELLIGENT_TIERING, STANDARD_IA, .*GLACIER_IR/);
  });

  it('names the storage_class that its own server refuses', async () => {
    await s3.createBucket('refused-class-dest');
    const { kloset } = await sandbox();
    await configure(kloset, 'refused_dest', 'uri', 's3://refused-class-dest', { storage_class: 'bogus' });
    const source = path.join(work, 'refused-class-source');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'small.txt'), 'small');
    await fs.writeFile(path.join(source, 'large.bin'), Buffer.alloc(9 * 1024 * 1024, 7));
    const store = path.join(work, 'refused-class-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const result = await kloset(['at', store, 'restore', '-to', '@refused_dest']);
    expectNoStackTrace(result);
    expect(result.code).toBe(3);
    const warnings = result.stderr.split('\n').filter(Boolean);
    expect(warnings).toHaveLength(2);
    for (const warning of warnings) {
      expect(warning).toMatch(/^warning: \/(large\.bin|small\.txt): s3:\/\/refused-class-dest\/\S+: the server does not accept storage class BOGUS \(InvalidStorageClass\): AWS takes STANDARD, /);
    }
  });
});

describe('files of a local directory, restored into a bucket', () => {
  it('get a content type guessed from their names, as the aws CLI gives them; an unknown name gets the default', async () => {
    await s3.createBucket('typed-dest');
    const source = path.join(work, 'typed-source');
    await fs.mkdir(source);
    for (const name of ['index.html', 'photo.JPG', 'data.json', 'README']) await fs.writeFile(path.join(source, name), name);
    const { kloset } = await sandbox();
    await configure(kloset, 'typed_dest', 'uri', 's3://typed-dest/site');
    const store = path.join(work, 'typed-store');
    expect((await kloset(['at', store, 'create', '--plaintext'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const result = await kloset(['at', store, 'restore', '-to', '@typed_dest']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect((await getObject('typed-dest', 'site/index.html')).contentType).toBe('text/html');
    expect((await getObject('typed-dest', 'site/photo.JPG')).contentType).toBe('image/jpeg');
    expect((await getObject('typed-dest', 'site/data.json')).contentType).toBe('application/json');
    expect((await getObject('typed-dest', 'site/README')).contentType).toBe('application/octet-stream');
  });
});

/** Two objects as an S3 source records them, one under a key that climbs out of any prefix it is written below. */
class ClimbingKeysImporter implements Importer {
  readonly type = 's3';
  readonly origin = 'test';
  readonly source = 's3://crafted';
  private readonly files: Record<string, { key: string; bytes: Buffer }> = {
    'climbs.txt': { key: '../../victim/owned', bytes: Buffer.from('should never land in the victim bucket') },
    'plain.txt': { key: 'plain.txt', bytes: Buffer.from('plain') },
  };

  async rootEntry(): Promise<SourceEntry> {
    return { name: '', kind: 'directory', mode: 0o40755, uid: 0, gid: 0, size: 0, mtime: { sec: 0, nsec: 0 } };
  }

  async *children(): AsyncIterable<SourceEntry> {
    for (const [name, { key, bytes }] of Object.entries(this.files)) {
      yield { name, kind: 'file', mode: 0o100644, uid: 0, gid: 0, size: bytes.length, mtime: { sec: 0, nsec: 0 }, meta: { 's3.key': key } };
    }
  }

  async *read(name: string): AsyncIterable<Buffer> {
    yield this.files[name].bytes;
  }

  async close(): Promise<void> {}
}

describe("a key with '..' segments, restored into a bucket", () => {
  it('is named in a warning and left out: a server that resolves the path would write it outside the destination', async () => {
    await s3.createBucket('dots-dest');
    await s3.createBucket('victim');
    const store = path.join(work, 'dots-store');
    await storeWithSnapshot(store, new ClimbingKeysImporter());
    const { kloset } = await sandbox();
    await configure(kloset, 'dots_dest', 'uri', 's3://dots-dest/restore/here');
    const result = await kloset(['at', store, 'restore', '-to', '@dots_dest']);
    expectNoStackTrace(result);
    expect(result.stderr).toMatch(
      /^warning: .*s3:\/\/dots-dest\/restore\/here\/\.\.\/\.\.\/victim\/owned: a key with a '\.' or '\.\.' segment could be written elsewhere .*: not written\n$/,
    );
    expect(result.code).toBe(3);
    expect(await listKeys('victim')).toEqual([]);
    expect(await listKeys('dots-dest')).toEqual(['restore/here/plain.txt']);
  });

  it("refuses in one line a destination whose prefix has a '.' or '..' segment, rather than a warning per file", async () => {
    await s3.createBucket('dots-prefix-dest');
    const store = path.join(work, 'dots-prefix-store');
    await storeWithSnapshot(store, new ClimbingKeysImporter());
    const { kloset } = await sandbox();
    for (const destination of ['s3://dots-prefix-dest/a/..', 's3://dots-prefix-dest/./b']) {
      const result = await kloset(['at', store, 'restore', '-to', destination], { env: s3.env() });
      expect(result.code, destination).toBe(2);
      expectOneLineError(result, `kloset: ${destination}: a prefix with a '.' or '..' segment: name the prefix without it`);
    }
    expect(await listKeys('dots-prefix-dest')).toEqual([]);
  });
});
