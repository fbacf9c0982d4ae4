/**
 * A store in an S3 bucket, through the real CLI and a real S3 server (s3rver
 * on loopback): the seed's command lines as written, with an endpoint set for
 * the local server; create refusing a used prefix; two backups at once; and a
 * backup and restore that survive injected faults byte for byte, and an
 * interrupted restore into a bucket that aborts its multipart upload.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, type CliResult, tempDir } from '../helpers/cli.js';
import {
  MiB,
  describeTree,
  expectNoStackTrace,
  expectOneLineError,
  klosetWith,
  startKloset,
  writeRandomFile,
} from '../helpers/fixtures.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultproxy.js';
import { s3Sandbox, startS3Server, withEndpointOf, type S3Server } from '../helpers/s3server.js';

let s3: S3Server;
let work: string;

beforeAll(async () => {
  s3 = await startS3Server();
  work = await tempDir('kloset-s3store-');
});

afterAll(async () => {
  await s3?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const sandbox = (extraEnv: NodeJS.ProcessEnv = {}) => s3Sandbox(work, extraEnv);

/** `kloset config <alias> ...` lines for a store alias on the test server, as the seed writes them. */
async function configureAsTheSeed(kloset: ReturnType<typeof klosetWith>, name: string, location: string, endpoint: string): Promise<void> {
  const steps: string[][] = [
    ['config', name, 'create', name],
    ['config', name, 'set', name, 'location', location],
    ['config', name, 'set', name, 'endpoint', endpoint],
    ['config', name, 'set', name, 'access_key', s3.accessKey],
    ['config', name, 'set', name, 'secret_access_key', s3.secretKey],
    ['config', name, 'set', name, 'use_tls', 'false'],
  ];
  for (const args of steps) {
    const result = await kloset(args);
    expect(result.stderr, args.join(' ')).toBe('');
    expect(result.code, args.join(' ')).toBe(0);
  }
}

/**
 * The same alias in one command (`config <alias> set <alias> key=value…`):
 * each start of the CLI costs a test a fifth of a second, and the seed's
 * lines run once, for the store the seed's commands use.
 */
async function configureStoreAlias(
  kloset: ReturnType<typeof klosetWith>,
  name: string,
  location: string,
  endpoint: string,
  extra: Record<string, string> = {},
): Promise<void> {
  const values = { location, endpoint, access_key: s3.accessKey, secret_access_key: s3.secretKey, use_tls: 'false', ...extra };
  const args = ['config', name, 'set', name, ...Object.entries(values).map(([key, value]) => `${key}=${value}`)];
  const result = await kloset(args);
  expect(result.stderr, args.join(' ')).toBe('');
  expect(result.code, args.join(' ')).toBe(0);
}

async function makeSource(root: string, label: string): Promise<void> {
  await fs.mkdir(path.join(root, 'sub/deeper'), { recursive: true });
  await writeRandomFile(path.join(root, 'big.bin'), 3 * MiB);
  await fs.writeFile(path.join(root, 'notes.txt'), `notes of ${label}\n`.repeat(100));
  await fs.writeFile(path.join(root, 'empty'), '');
  await fs.writeFile(path.join(root, 'sub/a.txt'), 'in sub\n');
  await fs.writeFile(path.join(root, 'sub/deeper/leaf.txt'), 'leaf\n', { mode: 0o600 });
  await fs.symlink('sub/deeper/leaf.txt', path.join(root, 'link'));
}

function snapshotIdOf(backup: CliResult): string {
  const match = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout);
  if (!match) throw new Error(`no snapshot id in: ${backup.stdout} ${backup.stderr}`);
  return match[1]!;
}

describe('a store on S3 configured as an alias (the seed command lines)', () => {
  let kloset: ReturnType<typeof klosetWith>;
  let source: string;
  let id: string;

  beforeAll(async () => {
    await s3.createBucket('seed-bucket');
    ({ kloset } = await sandbox());
    source = path.join(work, 'seed-source');
    await makeSource(source, 'seed');
    await configureAsTheSeed(kloset, 's3_store', 's3://seed-bucket/plakar-kloset', `127.0.0.1:${s3.port}`);
  });

  it('creates the store with `kloset at @s3_store create`', async () => {
    const result = await kloset(['at', '@s3_store', 'create']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/created encrypted store [0-9a-f]{8} at s3:\/\/seed-bucket\/plakar-kloset/);
  });

  it('backs up a local directory into it', async () => {
    const result = await kloset(['at', '@s3_store', 'backup', source]);
    expectNoStackTrace(result);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    id = snapshotIdOf(result);
    // The summary reports what the backup cost in requests; a rate per GiB
    // only once enough is stored for it to mean something.
    expect(result.stdout).toMatch(/^requests to s3:\/\/\S+: .*\d+ PUT.*; [\d.]+ (B|KiB|MiB) stored$/m);
  });

  it('lists the snapshot with ls', async () => {
    const result = await kloset(['at', '@s3_store', 'ls']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`\\s${id}\\s.*${source}`));
    const inside = await kloset(['at', '@s3_store', 'ls', `${id}:/sub`]);
    expect(inside.stdout.trim().split('\n').map((l) => l.split(' ').pop())).toEqual(['a.txt', 'deeper/']);
  });

  it('gives back exact bytes with cat', async () => {
    const big = await kloset(['at', '@s3_store', 'cat', `${id}:/big.bin`]);
    expect(big.code).toBe(0);
    expect(big.stdoutBytes.equals(await fs.readFile(path.join(source, 'big.bin')))).toBe(true);
    const text = await kloset(['at', '@s3_store', 'cat', `${id}:/sub/a.txt`]);
    expect(text.stdout).toBe('in sub\n');
  });

  it('restores to a local directory byte for byte', async () => {
    const target = path.join(work, 'seed-restored');
    const result = await kloset(['at', '@s3_store', 'restore', '-to', target, id]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });

  it('passes check', async () => {
    const result = await kloset(['at', '@s3_store', 'check']);
    expectNoStackTrace(result);
    expect(result.stdout).toMatch(/no problems found/);
    expect(result.code).toBe(0);
  });

  it('rebuilds its index from the packs with repair index once every index object is lost', async () => {
    const client = s3.client();
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'seed-bucket', Prefix: 'plakar-kloset/index/' }));
    const keys = (listed.Contents ?? []).map((object) => object.Key!);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) await client.send(new DeleteObjectCommand({ Bucket: 'seed-bucket', Key: key }));
    client.destroy();
    const { kloset: elsewhere } = await sandbox(); // another machine: no local copy of the index
    await configureStoreAlias(elsewhere, 's3_store', 's3://seed-bucket/plakar-kloset', `127.0.0.1:${s3.port}`);
    const repair = await elsewhere(['at', '@s3_store', 'repair', 'index']);
    expect(repair.stderr).toBe('');
    expect(repair.code).toBe(0);
    expect(repair.stdout).toMatch(/^repair index: (\d+) packs?, 0 index deltas; indexed [1-9]\d* blobs from \1 pack trailers?;/);
    const big = await elsewhere(['at', '@s3_store', 'cat', `${id}:/big.bin`]);
    expect(big.code).toBe(0);
    expect(big.stdoutBytes.equals(await fs.readFile(path.join(source, 'big.bin')))).toBe(true);
    expect((await elsewhere(['at', '@s3_store', 'check'])).stdout).toMatch(/no problems found/);
  });

  it('copies its snapshot to a store on local disk with sync, which restores it byte for byte', async () => {
    const local = path.join(work, 'seed-copy');
    expect((await kloset(['at', local, 'create'])).code).toBe(0);
    // Both stores have the same passphrase: no second one is needed.
    const result = await kloset(['at', '@s3_store', 'sync', 'to', local]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`sync @s3_store to ${local}: copied 1 snapshot`);
    const target = path.join(work, 'seed-copy-restored');
    expect((await kloset(['at', local, 'restore', '-to', target, id])).code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });

  it('refuses, on AWS, a storage_class that is no S3 storage class, naming it and the classes there are', async () => {
    // No endpoint: AWS itself, which the refusal comes before any request to.
    const { kloset } = await sandbox({ KLOSET_S3_ENDPOINT: '', AWS_ENDPOINT_URL_S3: '', AWS_ENDPOINT_URL: '' });
    for (const args of [['config', 'aws_store', 'set', 'aws_store', 'location', 's3://aws-bucket/kloset'], ['config', 'aws_store', 'set', 'aws_store', 'storage_class', 'bogus']]) {
      expect((await kloset(args)).code).toBe(0);
    }
    const result = await kloset(['at', '@aws_store', 'create']);
    expect(result.code).toBe(2);
    expectOneLineError(result, /^kloset: storage_class 'bogus' is not an S3 storage class: use one of STANDARD, INTELLIGENT_TIERING, STANDARD_IA, .*GLACIER_IR/);
  });

  it('names the storage_class that its own server refuses, at the first pack, in one line', async () => {
    const { kloset } = await sandbox();
    await configureStoreAlias(kloset, 'bogus_class', 's3://seed-bucket/bogus-class', s3.endpoint, { storage_class: 'bogus' });
    expect((await kloset(['at', '@bogus_class', 'create'])).code).toBe(0);
    const result = await kloset(['at', '@bogus_class', 'backup', source]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /^kloset: s3:\/\/seed-bucket: the server does not accept storage class BOGUS \(InvalidStorageClass\): AWS takes STANDARD, /);
  });

  it('refuses a second create on the same prefix, in one line', async () => {
    const result = await kloset(['at', '@s3_store', 'create']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /s3:\/\/seed-bucket\/plakar-kloset: not empty/);
  });
});

describe('a store given as s3://bucket/prefix', () => {
  it('is created and used with credentials and endpoint from the environment', async () => {
    const { kloset } = await sandbox(s3.env());
    const source = path.join(work, 'env-source');
    await makeSource(source, 'env');
    const store = 's3://env-bucket/kloset';
    const created = await kloset(['at', store, 'create']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0); // the bucket is made on create
    const backup = await kloset(['at', store, 'backup', source]);
    expect(backup.code).toBe(0);
    const target = path.join(work, 'env-restored');
    const restored = await kloset(['at', store, 'restore', '-to', target, snapshotIdOf(backup)]);
    expect(restored.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });

  it('is "not a kloset store" when the prefix holds no store', async () => {
    await s3.createBucket('empty-bucket');
    const { kloset } = await sandbox(s3.env());
    const result = await kloset(['at', 's3://empty-bucket/nothing-here', 'ls']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /^kloset: s3:\/\/empty-bucket\/nothing-here: not a kloset store.*create/);
  });

  it("creates a store under a prefix that holds only the console's empty folder object", async () => {
    await s3.createBucket('console-bucket');
    await s3.client().send(new PutObjectCommand({ Bucket: 'console-bucket', Key: 'backups/', Body: '', ContentLength: 0 }));
    const { kloset } = await sandbox(s3.env());
    const result = await kloset(['at', 's3://console-bucket/backups', 'create']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('refuses to create a store under a prefix that holds other objects', async () => {
    await s3.createBucket('busy-bucket');
    await s3.client().send(new PutObjectCommand({ Bucket: 'busy-bucket', Key: 'data/precious.txt', Body: 'keep me' }));
    const { kloset } = await sandbox(s3.env());
    const result = await kloset(['at', 's3://busy-bucket/data', 'create']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /s3:\/\/busy-bucket\/data: not empty/);
    const ls = await kloset(['at', 's3://busy-bucket/data', 'ls']);
    expectOneLineError(ls, /s3:\/\/busy-bucket\/data: not a kloset store/);
  });

  it("refuses to create a store under a prefix that holds the console's folder object and other objects beside it", async () => {
    await s3.createBucket('folder-busy-bucket');
    await s3.client().send(new PutObjectCommand({ Bucket: 'folder-busy-bucket', Key: 'data/', Body: '', ContentLength: 0 }));
    await s3.client().send(new PutObjectCommand({ Bucket: 'folder-busy-bucket', Key: 'data/precious.txt', Body: 'keep me' }));
    const { kloset } = await sandbox(s3.env());
    const result = await kloset(['at', 's3://folder-busy-bucket/data', 'create']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /s3:\/\/folder-busy-bucket\/data: not empty/);
    const listed = await s3.client().send(new ListObjectsV2Command({ Bucket: 'folder-busy-bucket' }));
    expect((listed.Contents ?? []).map((o) => o.Key).sort()).toEqual(['data/', 'data/precious.txt']);
  });

  it("refuses a prefix with a '.' or '..' segment, which a server resolving the request's path puts elsewhere", async () => {
    await s3.createBucket('dots-bucket');
    const { kloset } = await sandbox(s3.env());
    for (const store of ['s3://dots-bucket/x/../kloset', 's3://dots-bucket/./kloset']) {
      const result = await kloset(['at', store, 'create']);
      expect(result.code, store).toBe(2);
      expectOneLineError(result, `kloset: ${store}: a prefix with a '.' or '..' segment: name the prefix without it`);
    }
    const listed = await s3.client().send(new ListObjectsV2Command({ Bucket: 'dots-bucket' }));
    expect(listed.Contents ?? []).toEqual([]);
  });

  it('says the bucket is not there, or the endpoint is no S3 server, when every request gets a bare 404', async () => {
    const server = http.createServer((_request, response) => {
      response.statusCode = 404;
      response.end();
    });
    await withEndpointOf(server, async (endpoint) => {
      const { kloset } = await sandbox(s3.env({ endpoint }));
      for (const command of ['ls', 'create']) {
        const result = await kloset(['at', 's3://some-bucket/kloset', command]);
        expect(result.code).toBe(1);
        expectOneLineError(result, `kloset: s3://some-bucket: no such bucket at ${endpoint} (or that is not an S3 server)`);
      }
    });
  });

  it('says in one line that no credentials were found', async () => {
    const { kloset } = await sandbox({ KLOSET_S3_ENDPOINT: s3.endpoint });
    const result = await kloset(['at', 's3://seed-bucket/plakar-kloset', 'ls']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /^kloset: s3:\/\/seed-bucket: no AWS credentials found/);
  });

  it('names what the environment sets when the credential chain finds nothing in it', async () => {
    const { kloset } = await sandbox({ KLOSET_S3_ENDPOINT: s3.endpoint, AWS_PROFILE: 'backups' });
    const profile = await kloset(['at', 's3://seed-bucket/plakar-kloset', 'ls']);
    expect(profile.code).toBe(1);
    expectOneLineError(profile, /^kloset: s3:\/\/seed-bucket: no AWS credentials found for the profile 'backups' that AWS_PROFILE names \(check/);
    const { kloset: halfKeys } = await sandbox({ KLOSET_S3_ENDPOINT: s3.endpoint, AWS_ACCESS_KEY_ID: s3.accessKey });
    const source = await halfKeys(['at', path.join(work, 'no-credentials-store'), 'create', '-plaintext']);
    expect(source.code).toBe(0);
    const backup = await halfKeys(['at', path.join(work, 'no-credentials-store'), 'backup', 's3://seed-bucket']);
    expect(backup.code).toBe(1);
    expectOneLineError(backup, /^kloset: s3:\/\/seed-bucket: no AWS credentials found: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY/);
  });

  it("says in one line, not the SDK's nine, that AWS_PROFILE wins over the key pair in the environment", async () => {
    const { kloset, home } = await sandbox({ ...s3.env(), AWS_PROFILE: 'backups' });
    const credentials = path.join(home, 'credentials');
    await fs.writeFile(credentials, `[backups]\naws_access_key_id = ${s3.accessKey}\naws_secret_access_key = ${s3.secretKey}\n`);
    const store = `s3://seed-bucket/profile-and-keys`;
    const env = { AWS_SHARED_CREDENTIALS_FILE: credentials };
    const created = await kloset(['at', store, 'create', '-plaintext'], { env });
    expect(created.stderr).toBe('warning: AWS_PROFILE and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are all set: the profile is used; unset one or the other\n');
    expect(created.code).toBe(0);
  });

  it('names the bucket in one line when the access key is wrong, as the S3 source does', async () => {
    const { kloset } = await sandbox({ ...s3.env(), AWS_ACCESS_KEY_ID: 'NOT-A-KEY' });
    // The first request of each is a HEAD, whose answer has no body to name the error.
    for (const command of ['ls', 'create']) {
      const result = await kloset(['at', 's3://seed-bucket/plakar-kloset', command]);
      expect(result.code, command).toBe(1);
      expectOneLineError(result, 'kloset: s3://seed-bucket: the access key is not known to the server (InvalidAccessKeyId)');
    }
  });
});

describe('stores at one bucket and prefix on two servers, one encrypted', () => {
  const store = 's3://twin-bucket/kloset';
  let other: S3Server;

  beforeAll(async () => {
    other = await startS3Server();
    for (const server of [s3, other]) await server.createBucket('twin-bucket');
  });

  afterAll(async () => {
    await other?.stop();
  });

  /** What someone able to write the store could do: a plaintext store's CONFIG of their own, put in place of its CONFIG. */
  async function swapConfig(from: S3Server, to: S3Server): Promise<void> {
    const config = await from.client().send(new GetObjectCommand({ Bucket: 'twin-bucket', Key: 'kloset/CONFIG' }));
    const body = Buffer.from(await config.Body!.transformToByteArray());
    await to.client().send(new PutObjectCommand({ Bucket: 'twin-bucket', Key: 'kloset/CONFIG', Body: body }));
  }

  it('are remembered apart: a plaintext store created on the other server leaves the encrypted one refused when its CONFIG turns plaintext', async () => {
    const { kloset } = await sandbox();
    const on = (server: S3Server) => ({ env: server.env() });
    expect((await kloset(['at', store, 'create'], on(s3))).code).toBe(0);
    const plaintext = await kloset(['at', store, 'create', '-plaintext'], on(other));
    expect(plaintext.code).toBe(0);
    // The other server's plaintext store is no reason to refuse, nor to forget, the encrypted one's.
    const listed = await kloset(['at', store, 'ls'], on(other));
    expect(listed.stderr).toBe('');
    expect(listed.code).toBe(0);
    await swapConfig(other, s3);
    const swapped = await kloset(['at', store, 'ls'], on(s3));
    expect(swapped.code).toBe(1);
    expectOneLineError(
      swapped,
      new RegExp(`^kloset: s3://twin-bucket/kloset: this store was encrypted when this machine last used it, .*remove the line s3://twin-bucket/kloset\\?endpoint=127\\.0\\.0\\.1:${s3.port} from `),
    );
  });

  it('are both refused on a line written before lines named the server, which cannot tell which server it was for', async () => {
    const legacy = 's3://twin-bucket/legacy';
    const elsewhere = await sandbox();
    for (const server of [s3, other]) expect((await elsewhere.kloset(['at', legacy, 'create', '-plaintext'], { env: server.env() })).code).toBe(0);
    const { kloset, home } = await sandbox();
    const list = path.join(home, 'cache', 'kloset', 'encrypted-stores');
    await fs.mkdir(path.dirname(list), { recursive: true });
    await fs.writeFile(list, `${legacy}\n`);
    for (const server of [s3, other]) {
      const result = await kloset(['at', legacy, 'ls'], { env: server.env() });
      expect(result.code).toBe(1);
      expectOneLineError(result, /this store was encrypted when this machine last used it, .*remove the line s3:\/\/twin-bucket\/legacy from /);
    }
  });

  it('keep a line written before lines named the server when an encrypted one is opened, and add its own', async () => {
    const encrypted = 's3://twin-bucket/encrypted';
    const { kloset, home } = await sandbox();
    expect((await kloset(['at', encrypted, 'create'], { env: s3.env() })).code).toBe(0);
    const list = path.join(home, 'cache', 'kloset', 'encrypted-stores');
    await fs.writeFile(list, `${encrypted}\n`);
    expect((await kloset(['at', encrypted, 'ls'], { env: s3.env() })).code).toBe(0);
    expect(await fs.readFile(list, 'utf8')).toBe(`${encrypted}\n${encrypted}?endpoint=127.0.0.1:${s3.port}\n`);
  });
});

describe('two backups at once into one S3 store', () => {
  it('are both listed, valid and restorable', async () => {
    await s3.createBucket('shared-bucket');
    const { kloset, env } = await sandbox();
    await configureStoreAlias(kloset, 'shared', 's3://shared-bucket/kloset', s3.endpoint);
    expect((await kloset(['at', '@shared', 'create'])).code).toBe(0);
    const sources = ['left', 'right'].map((name) => path.join(work, `concurrent-${name}`));
    for (const source of sources) await makeSource(source, path.basename(source));
    const runs = sources.map((source) => startKloset(['at', '@shared', 'backup', source], { env }));
    const backups = await Promise.all(runs.map((run) => run.done));
    for (const backup of backups) {
      expectNoStackTrace(backup);
      expect(backup.stderr).toBe('');
      expect(backup.code).toBe(0);
    }
    const listed = JSON.parse((await kloset(['at', '@shared', 'ls', '--json'])).stdout) as { source: string; short_id: string }[];
    expect(listed.map((s) => s.source).sort()).toEqual([...sources].sort());
    expect(listed.map((s) => s.short_id).sort()).toEqual(backups.map(snapshotIdOf).sort());
    const check = await kloset(['at', '@shared', 'check']);
    expect(check.stdout).toMatch(/no problems found/);
    expect(check.code).toBe(0);
    for (const [i, backup] of backups.entries()) {
      const target = path.join(work, `concurrent-restored-${i}`);
      expect((await kloset(['at', '@shared', 'restore', '-to', target, snapshotIdOf(backup)])).code).toBe(0);
      expect(await describeTree(target)).toEqual(await describeTree(sources[i]!));
    }
  });
});

describe('a reader beside prune on S3', () => {
  it('reads on where prune moved the blobs: cat takes no lock, and the packs it reads are repacked under it', async () => {
    const { kloset, env } = await sandbox(s3.env());
    const store = 's3://race-bucket/kloset';
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    const source = path.join(work, 'race-source');
    await fs.mkdir(source);
    await writeRandomFile(path.join(source, 'kept.bin'), 12 * MiB);
    await writeRandomFile(path.join(source, 'gone.bin'), 20 * MiB);
    const first = await kloset(['at', store, 'backup', source]);
    expect(first.code).toBe(0);
    await fs.rm(path.join(source, 'gone.bin'));
    const second = await kloset(['at', store, 'backup', source]);
    expect(second.code).toBe(0);
    // Its output is not read, so it stops at the first full pipe with most of the file still to fetch.
    const cat = spawn(BIN, ['at', store, 'cat', `${snapshotIdOf(second)}:/kept.bin`], {
      env: { ...process.env, KLOSET_PASSPHRASE: 'test passphrase', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const errors: Buffer[] = [];
    cat.stderr!.on('data', (d: Buffer) => errors.push(d));
    const ended = new Promise<number | null>((resolve) => cat.on('close', (code) => resolve(code)));
    await new Promise((resolve) => cat.stdout!.once('readable', resolve));
    expect((await kloset(['at', store, 'rm', snapshotIdOf(first)])).code).toBe(0);
    const pruned = await kloset(['at', store, 'prune']);
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toMatch(/removed \d+ packs?/);
    const out: Buffer[] = [];
    cat.stdout!.on('data', (d: Buffer) => out.push(d));
    expect(await ended).toBe(0);
    expect(Buffer.concat(errors).toString()).toBe('');
    expect(Buffer.concat(out).equals(await fs.readFile(path.join(source, 'kept.bin')))).toBe(true);
  });
});

describe('a store on S3 behind a faulty network', () => {
  let proxy: FaultProxy;

  beforeAll(async () => {
    proxy = await startFaultProxy(s3.endpoint);
  });

  afterAll(async () => {
    await proxy?.stop();
  });

  it('backs up and restores byte for byte through 503s, 500s and dropped connections', async () => {
    await s3.createBucket('faulty-bucket');
    const { kloset } = await sandbox();
    await configureStoreAlias(kloset, 'faulty', 's3://faulty-bucket/kloset', proxy.endpoint);
    expect((await kloset(['at', '@faulty', 'create'])).code).toBe(0);
    const source = path.join(work, 'faulty-source');
    await makeSource(source, 'faulty');
    await writeRandomFile(path.join(source, 'more.bin'), 20 * MiB);

    proxy.resetCounts();
    // A rule meets a path once at most: which requests a rule meets depends on how those in flight
    // interleave, and one whose retries were all met would fail past its attempts.
    proxy.addRule({ method: 'PUT', fault: 'slowdown', every: 4, perPath: 1 });
    proxy.addRule({ method: 'GET', fault: 'drop', every: 4, perPath: 1 });
    proxy.addRule({ method: 'HEAD', fault: 'internal', every: 3, perPath: 1 });
    proxy.addRule({ method: 'PUT', fault: 'drop', times: 2 });
    let started = Date.now();
    const backup = await kloset(['at', '@faulty', 'backup', source]);
    console.log(`backup through faults: ${Date.now() - started} ms, faults ${JSON.stringify(proxy.faults)} of ${JSON.stringify(proxy.requests)}`);
    expectNoStackTrace(backup);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    expect(proxy.faults.PUT ?? 0).toBeGreaterThanOrEqual(3);

    proxy.clearRules();
    // Once a path at most each, as above: a read takes four bodies cut short to fail.
    proxy.addRule({ method: 'GET', fault: 'slowdown', every: 6, perPath: 1 });
    proxy.addRule({ method: 'GET', fault: 'truncate', every: 7, perPath: 1 });
    proxy.addRule({ method: 'GET', fault: 'drop', times: 2 });
    const target = path.join(work, 'faulty-restored');
    proxy.resetCounts();
    started = Date.now();
    const restored = await kloset(['at', '@faulty', 'restore', '-to', target, snapshotIdOf(backup)]);
    console.log(`restore through faults: ${Date.now() - started} ms, faults ${JSON.stringify(proxy.faults)} of ${JSON.stringify(proxy.requests)}`);
    expectNoStackTrace(restored);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(proxy.faults.GET ?? 0).toBeGreaterThanOrEqual(2);
    proxy.clearRules();
    expect(await describeTree(target)).toEqual(await describeTree(source));
  });

  it('prunes a store on S3, and a prune refused its deletions leaves every snapshot whole', async () => {
    await s3.createBucket('prune-bucket');
    const { kloset } = await sandbox();
    await configureStoreAlias(kloset, 'pruned', 's3://prune-bucket/kloset', proxy.endpoint);
    expect((await kloset(['at', '@pruned', 'create'])).code).toBe(0);
    const source = path.join(work, 'prune-source');
    await makeSource(source, 'prune');
    await writeRandomFile(path.join(source, 'gone.bin'), 20 * MiB);
    const first = await kloset(['at', '@pruned', 'backup', source]);
    expect(first.code).toBe(0);
    await fs.rm(path.join(source, 'gone.bin'));
    expect((await kloset(['at', '@pruned', 'backup', source])).code).toBe(0);
    expect((await kloset(['at', '@pruned', 'rm', snapshotIdOf(first)])).code).toBe(0);
    const restoresWhole = async (name: string) => {
      const target = path.join(work, name);
      const restored = await kloset(['at', '@pruned', 'restore', '-to', target]);
      expect(restored.stderr).toBe('');
      expect(restored.code).toBe(0);
      expect(await describeTree(target)).toEqual(await describeTree(source));
      expect((await kloset(['at', '@pruned', 'check'])).stdout).toMatch(/no problems found/);
    };

    // The new index is written and the old deltas go, then every pack deletion is refused.
    proxy.addRule({ method: 'DELETE', path: /\/packs\//, fault: 'error', every: 1, status: 403, code: 'AccessDenied', message: 'Access Denied' });
    const refused = await kloset(['at', '@pruned', 'prune']);
    proxy.clearRules();
    expect(refused.code).toBe(1);
    expectOneLineError(refused);
    await restoresWhole('prune-restored-1');

    proxy.resetCounts();
    const pruned = await kloset(['at', '@pruned', 'prune']);
    expect(pruned.stderr).toBe('');
    expect(pruned.code).toBe(0);
    expect(pruned.stdout).toMatch(/removed \d+ packs? .*packs now/);
    expect(proxy.requests.DELETE ?? 0).toBeGreaterThan(0);
    await restoresWhole('prune-restored-2');
  });

  it('writes about one PUT per 16 MiB pack, not one per chunk', async () => {
    await s3.createBucket('counted-bucket');
    const { kloset } = await sandbox();
    await configureStoreAlias(kloset, 'counted', 's3://counted-bucket/kloset', proxy.endpoint);
    expect((await kloset(['at', '@counted', 'create', '--plaintext'])).code).toBe(0);
    const source = path.join(work, 'counted-source');
    await fs.mkdir(source);
    const size = 64 * MiB;
    await writeRandomFile(path.join(source, 'random.bin'), size);
    proxy.clearRules();
    proxy.resetCounts();
    const backup = await kloset(['at', '@counted', 'backup', source]);
    expect(backup.code).toBe(0);
    const puts = proxy.log.filter((r) => r.method === 'PUT');
    const packPuts = puts.filter((r) => /\/packs\//.test(r.url)).length;
    const perGiB = (n: number) => Math.round((n * 1024 * MiB) / size);
    console.log(
      `backup of ${size / MiB} MiB into S3: ${puts.length} PUTs (${packPuts} packs) = ${perGiB(puts.length)} PUTs/GiB, ` +
        `requests ${JSON.stringify(proxy.requests)}`,
    );
    // 64 MiB of incompressible data in 16 MiB packs: 4 or 5 packs, each one PUT.
    expect(packPuts).toBeGreaterThanOrEqual(4);
    expect(packPuts).toBeLessThanOrEqual(5);
    // Besides the packs: an index delta per pack, the merged index, the snapshot, CONFIG-free metadata and a lock.
    expect(puts.length).toBeLessThanOrEqual(2 * packPuts + 6);
    expect(proxy.requests.POST ?? 0).toBe(0); // no multipart for default-sized packs
  });

  it('says so when credentials that may not delete leave the lock of a backup behind, and still succeeds', async () => {
    await s3.createBucket('no-delete-bucket');
    const { kloset } = await sandbox();
    await configureStoreAlias(kloset, 'nodelete', 's3://no-delete-bucket/kloset', proxy.endpoint);
    expect((await kloset(['at', '@nodelete', 'create'])).code).toBe(0);
    const source = path.join(work, 'no-delete-source');
    await makeSource(source, 'no-delete');
    // A policy granting s3:PutObject and s3:GetObject but not s3:DeleteObject, as the AWS page's example does.
    proxy.clearRules();
    proxy.addRule({ method: 'DELETE', fault: 'error', status: 403, code: 'AccessDenied', message: 'Access Denied', every: 1 });
    try {
      const backup = await kloset(['at', '@nodelete', 'backup', source]);
      expect(backup.code).toBe(0);
      expectNoStackTrace(backup);
      expect(backup.stderr).toMatch(/^warning: cannot remove this command's lock from the store \([^\n]*access denied[^\n]*\): it holds back rm and prune until 'kloset unlock' removes it\n$/);
    } finally {
      proxy.clearRules();
    }
    const unlock = await kloset(['at', '@nodelete', 'unlock']);
    expect(unlock.code).toBe(0);
  }, 60_000);

  it('creates the snapshot of a backup that indexed its packs along the way, though those credentials cannot fold its deltas into one', async () => {
    await s3.createBucket('no-delete-large');
    const { kloset } = await sandbox();
    await configureStoreAlias(kloset, 'nodeletelarge', 's3://no-delete-large/kloset', proxy.endpoint);
    expect((await kloset(['at', '@nodeletelarge', 'create', '--plaintext'])).code).toBe(0);
    const source = path.join(work, 'no-delete-large-source');
    await fs.mkdir(source);
    // Four 16 MiB packs and more: a delta names the first four before the backup ends.
    await writeRandomFile(path.join(source, 'random.bin'), 72 * MiB);
    proxy.clearRules();
    proxy.resetCounts();
    proxy.addRule({ method: 'DELETE', fault: 'error', status: 403, code: 'AccessDenied', message: 'Access Denied', every: 1 });
    let backup: CliResult;
    try {
      backup = await kloset(['at', '@nodeletelarge', 'backup', source]);
    } finally {
      proxy.clearRules();
    }
    expectNoStackTrace(backup);
    expect(backup.stderr).toMatch(/^warning: cannot remove this command's lock from the store \([^\n]*access denied[^\n]*\): it holds back rm and prune until 'kloset unlock' removes it\n$/);
    expect(backup.code).toBe(0);
    expect(proxy.log.filter((r) => r.method === 'PUT' && /\/index\//.test(r.url)).length).toBeGreaterThanOrEqual(2);
    expect((await kloset(['at', '@nodeletelarge', 'unlock'])).code).toBe(0);
    const target = path.join(work, 'no-delete-large-restored');
    const restored = await kloset(['at', '@nodeletelarge', 'restore', '-to', target, snapshotIdOf(backup)]);
    expect(restored.stderr).toBe('');
    expect(restored.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
    // The delta the backup could not remove names what its last one names: prune folds them into one.
    const pruned = await kloset(['at', '@nodeletelarge', 'prune']);
    expect(pruned.code).toBe(0);
    expect((await kloset(['at', '@nodeletelarge', 'check'])).stdout).toMatch(/no problems found/);
  }, 120_000);

  it('says so when credentials that may not delete leave the lock of a prune or an index repair behind, and still succeeds', async () => {
    await s3.createBucket('no-delete-maintenance');
    const { kloset } = await sandbox();
    await configureStoreAlias(kloset, 'nodeletemt', 's3://no-delete-maintenance/kloset', proxy.endpoint);
    expect((await kloset(['at', '@nodeletemt', 'create'])).code).toBe(0);
    proxy.clearRules();
    proxy.addRule({ method: 'DELETE', path: /\/locks\//, fault: 'error', status: 403, code: 'AccessDenied', message: 'Access Denied', every: 1 });
    try {
      for (const command of [['prune'], ['repair', 'index']]) {
        const result = await kloset(['at', '@nodeletemt', ...command]);
        expect(result.code).toBe(0);
        expectNoStackTrace(result);
        expect(result.stderr).toMatch(/^warning: cannot remove this command's lock from the store/m);
      }
    } finally {
      proxy.clearRules();
    }
    expect((await kloset(['at', '@nodeletemt', 'unlock', '--remove-all'])).code).toBe(0);
  }, 60_000);

  it('says that passwd, with credentials that may not delete, changed the passphrase though its lock stays behind', async () => {
    await s3.createBucket('no-delete-passwd');
    const { kloset } = await sandbox({ KLOSET_NEW_PASSPHRASE: 'the new one' });
    await configureStoreAlias(kloset, 'nodeletepw', 's3://no-delete-passwd/kloset', proxy.endpoint);
    expect((await kloset(['at', '@nodeletepw', 'create'])).code).toBe(0);
    proxy.clearRules();
    proxy.addRule({ method: 'DELETE', fault: 'error', status: 403, code: 'AccessDenied', message: 'Access Denied', every: 1 });
    try {
      const passwd = await kloset(['at', '@nodeletepw', 'passwd']);
      expect(passwd.code).toBe(0);
      expectNoStackTrace(passwd);
      expect(passwd.stdout + passwd.stderr).toMatch(/passwd: the passphrase of .* is changed/);
      expect(passwd.stderr).toMatch(/^warning: cannot remove this command's lock from the store/m);
    } finally {
      proxy.clearRules();
    }
    expect((await kloset(['at', '@nodeletepw', 'unlock'], { env: { KLOSET_PASSPHRASE: 'the new one' } })).code).toBe(0);
  }, 60_000);

  it('aborts the multipart uploads of a restore into a bucket stopped with Ctrl-C, so none is left to be billed for', async () => {
    await s3.createBucket('interrupted-dest');
    const { kloset, home, env } = await sandbox();
    const store = path.join(home, 'store');
    const source = path.join(home, 'source');
    await fs.mkdir(source);
    await writeRandomFile(path.join(source, 'big.bin'), 40 * MiB);
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    for (const [key, value] of [['uri', 's3://interrupted-dest'], ['endpoint', proxy.endpoint], ['access_key', s3.accessKey], ['secret_access_key', s3.secretKey], ['use_tls', 'false']]) {
      if (key === 'uri') expect((await kloset(['config', 'dest', 'create', 'dest'])).code).toBe(0);
      expect((await kloset(['config', 'dest', 'set', 'dest', key, value])).code).toBe(0);
    }
    // Parts crawl, so the upload is surely under way when the signal comes.
    proxy.clearRules();
    proxy.resetCounts();
    proxy.addRule({ method: 'PUT', path: /uploadId=/, fault: 'delay', delayMs: 3000, every: 1 });
    const { child, done } = startKloset(['at', store, 'restore', '-to', '@dest'], { env });
    let exited = false;
    void done.then(() => (exited = true));
    while (!exited && !proxy.log.some((r) => r.method === 'PUT' && /uploadId=/.test(r.url))) await new Promise((r) => setTimeout(r, 20));
    expect(exited, 'the restore ended before its multipart upload began').toBe(false);
    child.kill('SIGINT');
    const result = await done;
    proxy.clearRules();
    expect(result.code).toBe(130);
    expectNoStackTrace(result);
    expect(result.stderr).toMatch(/^kloset: restore interrupted: 0 files restored to s3:\/\/interrupted-dest[^\n]*\n$/);
    const uploadId = /uploadId=([^&]+)/.exec(proxy.log.find((r) => r.method === 'PUT' && /uploadId=/.test(r.url))!.url)![1];
    expect(proxy.log.some((r) => r.method === 'DELETE' && r.url.includes(`uploadId=${uploadId}`))).toBe(true);
  }, 60_000);
});
