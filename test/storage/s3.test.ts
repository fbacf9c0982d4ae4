import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IntegrityError, KlosetError, NotFoundError, UsageError } from '../../src/errors.js';
import { LocalBlobStore } from '../../src/storage/local.js';
import { isEmptyStore, openBlobStore, prepareEmptyStore } from '../../src/storage/open.js';
import { nextPageToken, parseS3Location, S3BlobStore, s3OptionsFromConfig, serverOf, type S3StoreOptions } from '../../src/storage/s3.js';
import { endpointUrl } from '../../src/storage/s3options.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultproxy.js';
import { startS3Server, withEndpointOf, type S3Server } from '../helpers/s3server.js';

const MiB = 1024 * 1024;
let s3: S3Server;
let proxy: FaultProxy;
const stores: S3BlobStore[] = [];

beforeAll(async () => {
  s3 = await startS3Server();
  await s3.createBucket('blobs');
  proxy = await startFaultProxy(s3.endpoint);
});

afterAll(async () => {
  await Promise.all(stores.map((store) => store.close()));
  await proxy?.stop();
  await s3?.stop();
});

let counter = 0;
/** A store under a fresh prefix of the test bucket, straight to the server or through the fault proxy. */
function store(options: S3StoreOptions & { viaProxy?: boolean } = {}): S3BlobStore {
  const { viaProxy, ...rest } = options;
  const created = new S3BlobStore(`s3://blobs/t${++counter}/kloset`, {
    endpoint: viaProxy ? proxy.endpoint : s3.endpoint,
    accessKey: s3.accessKey,
    secretAccessKey: s3.secretKey,
    ...rest,
  });
  stores.push(created);
  return created;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

describe('S3 locations', () => {
  it('splits s3://bucket/prefix into a bucket and a key prefix', () => {
    expect(parseS3Location('s3://bucket')).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Location('s3://bucket/')).toEqual({ bucket: 'bucket', prefix: '' });
    expect(parseS3Location('s3://bucket/a/b')).toEqual({ bucket: 'bucket', prefix: 'a/b/' });
    expect(parseS3Location('s3://bucket/a/b/')).toEqual({ bucket: 'bucket', prefix: 'a/b/' });
    expect(() => parseS3Location('s3://')).toThrow(KlosetError);
  });

  it('takes the endpoint scheme from the endpoint, else from use_tls, and refuses the two when they disagree', () => {
    expect(endpointUrl('127.0.0.1:9000', false)).toBe('http://127.0.0.1:9000');
    expect(endpointUrl('minio.example:9000', undefined)).toBe('https://minio.example:9000');
    expect(endpointUrl('minio.example:9000', true)).toBe('https://minio.example:9000');
    expect(endpointUrl('http://127.0.0.1:9000/', undefined)).toBe('http://127.0.0.1:9000');
    expect(endpointUrl('http://127.0.0.1:9000', false)).toBe('http://127.0.0.1:9000');
    expect(endpointUrl('HTTPS://minio.example', true)).toBe('https://minio.example');
    expect(() => endpointUrl('https://127.0.0.1:9000', false)).toThrow(
      new UsageError('endpoint https://127.0.0.1:9000 is https but use_tls is false: change one of them'),
    );
    expect(() => endpointUrl('http://127.0.0.1:9000', true)).toThrow(
      new UsageError('endpoint http://127.0.0.1:9000 is http but use_tls is true: change one of them'),
    );
    expect(() => endpointUrl('ftp://127.0.0.1:9000', undefined)).toThrow(/expected http:\/\/ or https:\/\//);
  });

  it('names the server of an endpoint by its host and port, whatever the spelling, and AWS itself as aws', () => {
    expect(serverOf(undefined, undefined)).toBe('aws');
    expect(serverOf('HTTPS://MinIO.Example', undefined)).toBe('minio.example:443');
    expect(serverOf('minio.example', true)).toBe('minio.example:443');
    expect(serverOf('https://minio.example:443/', undefined)).toBe('minio.example:443');
    expect(serverOf('http://minio.example', undefined)).toBe('minio.example:80');
    expect(serverOf('127.0.0.1:9000', false)).toBe('127.0.0.1:9000');
    expect(serverOf('https://127.0.0.1:9000', undefined)).toBe('127.0.0.1:9000');
    expect(serverOf('https://gateway.example/s3/', undefined)).toBe('gateway.example:443/s3');
    const blobs = new S3BlobStore('s3://bucket/kloset', { endpoint: 'http://127.0.0.1:9000' });
    stores.push(blobs);
    expect(blobs.server).toBe('127.0.0.1:9000');
  });

  it("names the variable an endpoint came from when the alias's use_tls contradicts it", () => {
    const env = { KLOSET_S3_ENDPOINT: 'http://127.0.0.1:9000' };
    expect(() => s3OptionsFromConfig({ use_tls: 'true' }, env)).toThrow(
      new UsageError('KLOSET_S3_ENDPOINT http://127.0.0.1:9000 is http but use_tls is true: change one of them'),
    );
    expect(s3OptionsFromConfig({ use_tls: 'false' }, env)).toMatchObject({ endpoint: 'http://127.0.0.1:9000', useTls: false });
    expect(() => s3OptionsFromConfig({ use_tls: 'false', endpoint: 'https://minio.example' }, env)).toThrow(
      new UsageError('endpoint https://minio.example is https but use_tls is false: change one of them'),
    );
    expect(s3OptionsFromConfig({ use_tls: 'true' }, { AWS_ENDPOINT_URL: 'https://minio.example' }).endpoint).toBe('https://minio.example');
    expect(s3OptionsFromConfig({ use_tls: 'true', endpoint: 'minio.example:9000' }, env).endpoint).toBe('minio.example:9000');
  });

  it('opens a path as a local store and s3:// as an S3 store', async () => {
    expect(await openBlobStore('/tmp/some/where')).toBeInstanceOf(LocalBlobStore);
    const opened = await openBlobStore('s3://blobs/x', { endpoint: s3.endpoint, access_key: 'S3RVER', secret_access_key: 'S3RVER' });
    expect(opened).toBeInstanceOf(S3BlobStore);
    expect(opened.location).toBe('s3://blobs/x');
    await opened.close();
    await expect(openBlobStore('ftp://host/dir')).rejects.toThrow(/unsupported store location/);
  });

  it('takes the endpoint from KLOSET_S3_ENDPOINT when none is configured', async () => {
        // AWS_ACCESS_KEY_ID and friends come from process.env via the SDK chain: give them explicitly here.
    const withKeys = (await openBlobStore(
      's3://blobs/from-env',
      { access_key: s3.accessKey, secret_access_key: s3.secretKey },
      { KLOSET_S3_ENDPOINT: s3.endpoint, AWS_ENDPOINT_URL: 'http://127.0.0.1:1' },
    )) as S3BlobStore;
    stores.push(withKeys);
    await withKeys.put('k', Buffer.from('v'));
    expect((await withKeys.get('k')).toString()).toBe('v');
  });

  it("signs for the region of AWS_REGION or of the profile when an endpoint is given, else for us-east-1", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kloset-region-'));
    const configFile = path.join(dir, 'config');
    await writeFile(configFile, '[profile eu]\nregion = eu-west-3\n');
    const saved = { AWS_REGION: process.env.AWS_REGION, AWS_PROFILE: process.env.AWS_PROFILE, AWS_CONFIG_FILE: process.env.AWS_CONFIG_FILE };
    const regionsSigned = async (): Promise<string[]> => {
      proxy.resetCounts();
      const opened = store({ viaProxy: true });
      await opened.put('k', Buffer.from('v'));
      await opened.get('k');
      return proxy.log.map((request) => /Credential=[^/]+\/\d+\/([^/]+)\/s3\//.exec(request.authorization ?? '')?.[1] ?? 'unsigned');
    };
    try {
      delete process.env.AWS_PROFILE;
      process.env.AWS_CONFIG_FILE = configFile;
      process.env.AWS_REGION = 'ap-south-1';
      expect(await regionsSigned()).toEqual(['ap-south-1', 'ap-south-1']);
      delete process.env.AWS_REGION;
      process.env.AWS_PROFILE = 'eu';
      expect(await regionsSigned()).toEqual(['eu-west-3', 'eu-west-3']);
      delete process.env.AWS_PROFILE;
      expect(await regionsSigned()).toEqual(['us-east-1', 'us-east-1']);
      process.env.AWS_REGION = 'ap-south-1';
      const configured = store({ viaProxy: true, region: 'ca-central-1' });
      proxy.resetCounts();
      await configured.put('k', Buffer.from('v'));
      expect(proxy.log[0]!.authorization).toContain('/ca-central-1/s3/');
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('S3BlobStore', () => {
  it('puts, gets, stats and deletes blobs under its prefix', async () => {
    const blobs = store();
    const data = randomBytes(100_000);
    await blobs.put('packs/ab/ab12', data);
    expect((await blobs.get('packs/ab/ab12')).equals(data)).toBe(true);
    expect(await blobs.stat('packs/ab/ab12')).toBe(data.length);
    await blobs.put('packs/ab/ab12', Buffer.from('replaced'));
    expect((await blobs.get('packs/ab/ab12')).toString()).toBe('replaced');
    await blobs.delete('packs/ab/ab12');
    expect(await blobs.stat('packs/ab/ab12')).toBeUndefined();
    await blobs.delete('packs/ab/ab12'); // deleting again is not an error
  });

  it('stores an empty blob', async () => {
    const blobs = store();
    await blobs.put('empty', Buffer.alloc(0));
    expect(await blobs.stat('empty')).toBe(0);
    expect((await blobs.get('empty')).length).toBe(0);
  });

  it('maps a missing key to NotFoundError and undefined', async () => {
    const blobs = store();
    await expect(blobs.get('nothing/here')).rejects.toBeInstanceOf(NotFoundError);
    await expect(blobs.getRange('nothing/here', 0, 10)).rejects.toBeInstanceOf(NotFoundError);
    expect(await blobs.stat('nothing/here')).toBeUndefined();
  });

  it('reads exactly the requested bytes with one ranged GET each', async () => {
    const blobs = store();
    const data = randomBytes(1 * MiB + 17);
    await blobs.put('pack', data);
    const before = blobs.requests.GET;
    for (const [offset, length] of [
      [0, 1],
      [0, data.length],
      [12345, 54321],
      [data.length - 5, 5],
    ] as const) {
      const got = await blobs.getRange('pack', offset, length);
      expect(got.length).toBe(length);
      expect(got.equals(data.subarray(offset, offset + length))).toBe(true);
    }
    expect(blobs.requests.GET - before).toBe(4);
    expect((await blobs.getRange('pack', 100, 0)).length).toBe(0);
  });

  it('refuses, unread, a whole blob larger than the caller allows', async () => {
    const blobs = store();
    await blobs.put('large', Buffer.alloc(100 * 1024, 1));
    await expect(blobs.get('large', 64 * 1024)).rejects.toThrow(/large: too large \(102400 bytes, at most 65536 expected\)/);
    await expect(blobs.get('large', 64 * 1024)).rejects.toBeInstanceOf(IntegrityError);
    expect((await blobs.get('large', 100 * 1024)).length).toBe(100 * 1024);
  });

  it('reads blobs whose answers come chunked, without a Content-Length', async () => {
    const data = randomBytes(3 * MiB + 11);
    // In front of the server: its GET answers passed on with chunked transfer encoding, as some servers send them.
    const server = http.createServer((req, res) => {
      const upstream = http.request(new URL(req.url!, s3.endpoint), { method: req.method, headers: req.headers }, (answer) => {
        const headers = { ...answer.headers };
        delete headers['content-length'];
        res.writeHead(answer.statusCode!, { ...headers, 'transfer-encoding': 'chunked' });
        answer.pipe(res);
      });
      req.pipe(upstream);
    });
    await withEndpointOf(server, async (endpoint) => {
      const chunked = store({ endpoint });
      await chunked.put('chunked', data);
      expect((await chunked.get('chunked')).equals(data)).toBe(true);
      expect((await chunked.getRange('chunked', MiB + 5, MiB)).equals(data.subarray(MiB + 5, 2 * MiB + 5))).toBe(true);
      expect(chunked.requests.GET).toBe(2);
    });
  });

  it('fails a range beyond the end of the blob as truncated', async () => {
    const blobs = store();
    await blobs.put('short', Buffer.from('0123456789'));
    await expect(blobs.getRange('short', 5, 10)).rejects.toBeInstanceOf(IntegrityError);
    await expect(blobs.getRange('short', 20, 5)).rejects.toBeInstanceOf(IntegrityError);
  });

  it('writes a blob above the threshold as a multipart upload, read back byte-exact', async () => {
    const blobs = store({ multipartThreshold: 6 * MiB, partSize: 5 * MiB });
    const data = randomBytes(12 * MiB + 3);
    await blobs.put('packs/big', data);
    expect(blobs.requests.POST).toBeGreaterThanOrEqual(2); // initiate and complete
    expect(blobs.requests.PUT).toBe(3); // 5 + 5 + 2 MiB
    expect(await blobs.stat('packs/big')).toBe(data.length);
    expect((await blobs.get('packs/big')).equals(data)).toBe(true);
    expect((await blobs.getRange('packs/big', 5 * MiB - 10, 20)).equals(data.subarray(5 * MiB - 10, 5 * MiB + 10))).toBe(true);
  });

  it('writes a default-sized pack (16 MiB) with a single PUT', async () => {
    const blobs = store();
    await blobs.put('packs/p', randomBytes(16 * MiB + 1000));
    expect(blobs.requests).toMatchObject({ PUT: 1, POST: 0 });
  });

  it('writes packs with the configured storage class, and the small objects a store rewrites or deletes soon in STANDARD', async () => {
    const blobs = store({ storageClass: 'STANDARD_IA' });
    await blobs.put('packs/ab/cold', Buffer.from('x'));
    await blobs.put('locks/brief', Buffer.from('x'));
    await blobs.putIfAbsent('CONFIG', Buffer.from('x'));
    const classOf = async (key: string) =>
      (await s3.client().send(new HeadObjectCommand({ Bucket: 'blobs', Key: `${blobs.prefix}${key}` }))).StorageClass ?? 'STANDARD';
    expect(await classOf('packs/ab/cold')).toBe('STANDARD_IA');
    expect(await classOf('locks/brief')).toBe('STANDARD');
    expect(await classOf('CONFIG')).toBe('STANDARD');
  });

  it('refuses an archive storage class, whose objects a GET cannot read', () => {
    for (const storageClass of ['glacier', 'DEEP_ARCHIVE']) {
      expect(() => new S3BlobStore('s3://blobs/archived', s3OptionsFromConfig({ storage_class: storageClass }))).toThrow(/cannot be read until each is restored/);
    }
    expect(s3OptionsFromConfig({ storage_class: 'glacier_ir' }).storageClass).toBe('GLACIER_IR');
  });

  it('refuses, on AWS, a storage class that is none of S3\'s, naming it and the classes there are', () => {
    const error = (() => {
      try {
        s3OptionsFromConfig({ storage_class: 'bogus' }, {});
      } catch (err) {
        return err as Error;
      }
    })();
    expect(error).toBeInstanceOf(UsageError);
    expect(error!.message).toMatch(/^storage_class 'bogus' is not an S3 storage class: use one of (\w+, )+\w+$/);
    for (const storageClass of ['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'DEEP_ARCHIVE', 'GLACIER_IR', 'OUTPOSTS', 'EXPRESS_ONEZONE', 'SNOW']) {
      expect(error!.message).toContain(storageClass);
      expect(s3OptionsFromConfig({ storage_class: storageClass.toLowerCase() }, {}).storageClass).toBe(storageClass);
    }
  });

  it('leaves a storage class to a server of the user\'s, and names it when the server refuses it', async () => {
    // Such a server may have classes of its own (Ceph's placement targets); s3rver takes only some of S3's.
    const options = s3OptionsFromConfig({ storage_class: 'cold', endpoint: s3.endpoint, access_key: s3.accessKey, secret_access_key: s3.secretKey }, {});
    expect(options.storageClass).toBe('COLD');
    const blobs = store(options);
    await expect(blobs.put('packs/ab/p', Buffer.from('x'))).rejects.toThrow(/^s3:\/\/blobs: the server does not accept storage class COLD \(InvalidStorageClass\): AWS takes STANDARD, /);
  });

  it('putIfAbsent writes a free key once and never replaces it', async () => {
    const blobs = store();
    expect(await blobs.putIfAbsent('CONFIG', Buffer.from('first'))).toBe(true);
    expect(await blobs.putIfAbsent('CONFIG', Buffer.from('second'))).toBe(false);
    expect((await blobs.get('CONFIG')).toString()).toBe('first');
  });

  it('putIfAbsent raced by many writers keeps one whole value', async () => {
    // s3rver ignores If-None-Match on PUT, so only the HEAD guards it there: one whole value survives.
    const blobs = store();
    const values = Array.from({ length: 8 }, (_, i) => Buffer.from(`writer ${i}`));
    const results = await Promise.all(values.map((value) => blobs.putIfAbsent('lock', value)));
    expect(results.some(Boolean)).toBe(true);
    const kept = await blobs.get('lock');
    expect(values.some((value) => value.equals(kept))).toBe(true);
  });

  it('lists only the keys under a prefix, relative to the store', async () => {
    const blobs = store();
    const other = store();
    await blobs.put('index/a', Buffer.from('1'));
    await blobs.put('index/b', Buffer.from('22'));
    await blobs.put('packs/00/x', Buffer.from('333'));
    await other.put('index/c', Buffer.from('4444'));
    const index = (await collect(blobs.list('index/'))).sort((a, b) => a.key.localeCompare(b.key));
    expect(index).toEqual([
      { key: 'index/a', size: 1 },
      { key: 'index/b', size: 2 },
    ]);
    expect((await collect(blobs.list(''))).map((b) => b.key).sort()).toEqual(['index/a', 'index/b', 'packs/00/x']);
    expect(await collect(blobs.list('nothing/'))).toEqual([]);
  });

  it('streams a listing of more than 1000 keys page by page', async () => {
    const blobs = store();
    const keys = Array.from({ length: 1234 }, (_, i) => `index/${i.toString(16).padStart(8, '0')}`);
    for (let i = 0; i < keys.length; i += 64) {
      await Promise.all(keys.slice(i, i + 64).map((key) => blobs.put(key, Buffer.from(key))));
    }
    const before = blobs.requests.LIST;
    const iterator = blobs.list('index/')[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.done).toBe(false);
    expect(blobs.requests.LIST - before).toBe(1); // the first key came before the second page was asked for
    const seen = [first.value!.key];
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) seen.push(next.value.key);
    expect(blobs.requests.LIST - before).toBe(2);
    expect(seen.sort()).toEqual(keys);
  });

  it('reports emptiness of its prefix, and create refuses a prefix that holds anything', async () => {
    const blobs = store();
    expect(await isEmptyStore(blobs)).toBe(true);
    await prepareEmptyStore(blobs);
    await s3.client().send(new PutObjectCommand({ Bucket: 'blobs', Key: `${blobs.prefix}stray.txt`, Body: 'x' }));
    expect(await isEmptyStore(blobs)).toBe(false);
    await expect(prepareEmptyStore(blobs)).rejects.toThrow(/not empty/);
  });

  it('create makes a bucket that does not exist yet', async () => {
    const blobs = new S3BlobStore('s3://fresh-bucket/kloset', {
      endpoint: s3.endpoint,
      accessKey: s3.accessKey,
      secretAccessKey: s3.secretKey,
    });
    stores.push(blobs);
    await expect(blobs.put('x', Buffer.from('x'))).rejects.toThrow(/^s3:\/\/fresh-bucket: no such bucket$/);
    await prepareEmptyStore(blobs);
    await blobs.put('x', Buffer.from('x'));
    expect(await blobs.stat('x')).toBe(1);
  });
});

describe('S3BlobStore errors', () => {
  it('names the bucket in one line for a wrong access key', async () => {
    const blobs = store({ accessKey: 'NOT-THE-KEY', secretAccessKey: 'S3RVER' });
    const error = await blobs.get('CONFIG').catch((err: unknown) => err);
    expect(error).toBeInstanceOf(KlosetError);
    expect((error as Error).message).toMatch(/^s3:\/\/blobs: .*InvalidAccessKeyId/);
    expect((error as Error).message).not.toContain('\n');
  });

  // s3rver checks access key ids but not SigV4 signatures: the fault proxy gives the answers AWS would.
  it('names the bucket in one line for a wrong secret key', async () => {
    const blobs = store({ viaProxy: true });
    proxy.addRule({ method: 'PUT', fault: 'error', status: 403, code: 'SignatureDoesNotMatch', times: 1 });
    const error = await blobs.put('x', Buffer.from('x')).catch((err: unknown) => err);
    proxy.clearRules();
    expect(error).toBeInstanceOf(KlosetError);
    expect((error as Error).message).toMatch(/^s3:\/\/blobs: .*SignatureDoesNotMatch/);
    expect((error as Error).message).not.toContain('\n');
  });

  it('names a wrong access key at the HEAD that opens a store, and at the one that creates it, though their answers have no body to say it', async () => {
    const blobs = store({ accessKey: 'NOT-THE-KEY', secretAccessKey: 'S3RVER' });
    const wrongKey = 's3://blobs: the access key is not known to the server (InvalidAccessKeyId)';
    await expect(blobs.stat('CONFIG')).rejects.toThrow(new KlosetError(wrongKey));
    await expect(prepareEmptyStore(blobs)).rejects.toThrow(new KlosetError(wrongKey));
  });

  it('names a wrong secret key at the HEAD that opens a store', async () => {
    const blobs = store({ viaProxy: true });
    // What AWS answers: a bare 403 to the HEAD, and the reason to a listing, which has a body.
    proxy.addRule({ method: 'HEAD', fault: 'error', status: 403, code: 'SignatureDoesNotMatch', times: 1 });
    proxy.addRule({ method: 'GET', path: /list-type=2/, fault: 'error', status: 403, code: 'SignatureDoesNotMatch', times: 1 });
    const error = await blobs.stat('CONFIG').catch((err: unknown) => err);
    proxy.clearRules();
    expect(error).toEqual(new KlosetError('s3://blobs: the secret access key does not match the access key (SignatureDoesNotMatch)'));
  });

  it('names the bucket in one line when access is denied', async () => {
    const blobs = store({ viaProxy: true });
    proxy.addRule({ method: 'GET', fault: 'error', status: 403, code: 'AccessDenied', times: 2 });
    await expect(blobs.get('CONFIG')).rejects.toThrow(/^s3:\/\/blobs: access denied/);
    await expect(collect(blobs.list(''))).rejects.toThrow(/^s3:\/\/blobs: access denied/);
    proxy.addRule({ method: 'HEAD', fault: 'error', status: 403, code: 'AccessDenied', times: 1 });
    await expect(blobs.stat('CONFIG')).rejects.toThrow(/^s3:\/\/blobs: access denied/);
    proxy.clearRules();
  });

  it('names a missing bucket', async () => {
    const blobs = new S3BlobStore('s3://no-such-bucket/x', {
      endpoint: s3.endpoint,
      accessKey: s3.accessKey,
      secretAccessKey: s3.secretKey,
    });
    stores.push(blobs);
    await expect(collect(blobs.list(''))).rejects.toThrow(/^s3:\/\/no-such-bucket: no such bucket$/);
    await expect(blobs.get('CONFIG')).rejects.toThrow(/^s3:\/\/no-such-bucket: no such bucket$/);
  });

  it('says when the server cannot be reached, after its retries, and what to check', async () => {
    const refused = store({ endpoint: 'http://127.0.0.1:1', maxAttempts: 2 });
    await expect(refused.get('CONFIG')).rejects.toThrow(/^s3:\/\/blobs\/.*: cannot reach the S3 server \(ECONNREFUSED: nothing answers at 127\.0\.0\.1:1; check the endpoint\)$/);
    const unknown = store({ endpoint: 'http://no-such-host.invalid:9000', maxAttempts: 1 });
    await expect(unknown.get('CONFIG')).rejects.toThrow(/cannot reach the S3 server \((ENOTFOUND|EAI_AGAIN): no host named no-such-host\.invalid is known; check the endpoint\)$/);
    const tls = store({ endpoint: s3.endpoint.replace('http:', 'https:'), maxAttempts: 1 });
    await expect(tls.get('CONFIG')).rejects.toThrow(/the TLS handshake failed; if the endpoint speaks plain http, give it as http:\/\/ or set use_tls false\)$/);
  });

  it('says when the endpoint answers, but not as S3 does (a web server)', async () => {
    const server = http.createServer((request, response) => {
      request.resume();
      response.writeHead(501, { 'content-type': 'text/html' });
      response.end('<html><head><meta charset="utf-8"></head><body>Unsupported method</body></html>');
    });
    await withEndpointOf(server, async (endpoint) => {
      const other = store({ endpoint, maxAttempts: 1 });
      await expect(other.put('CONFIG', Buffer.from('x'))).rejects.toThrow(
        /^s3:\/\/blobs\/.*CONFIG: the endpoint answered HTTP 501 with something other than an S3 answer: is it an S3 server\?$/,
      );
    });
  });

  it('says when what answers at the endpoint does not speak HTTP', async () => {
    const server = net.createServer((socket) => {
      socket.on('error', () => undefined);
      socket.end('SSH-2.0-OpenSSH_9.6\r\n');
    });
    await withEndpointOf(server, async (endpoint) => {
      const other = store({ endpoint, maxAttempts: 1 });
      await expect(other.get('CONFIG')).rejects.toThrow(/^s3:\/\/blobs\/.*: cannot reach the S3 server \(what answers there does not speak HTTP; check the endpoint and its port\)$/);
    });
  });
});

describe('a listing page', () => {
  it('that says more keys follow must give a new token to them, or the listing fails', () => {
    expect(nextPageToken({ IsTruncated: false }, undefined, 'here')).toBeUndefined();
    expect(nextPageToken({ IsTruncated: true, NextContinuationToken: 'b' }, 'a', 'here')).toBe('b');
    // A partial listing of snapshots taken for whole would let prune delete what the others use.
    expect(() => nextPageToken({ IsTruncated: true }, undefined, 's3://b/p/snapshots/')).toThrow(
      /^s3:\/\/b\/p\/snapshots\/: the server's listing says it has more keys but gives no way to them$/,
    );
    expect(() => nextPageToken({ IsTruncated: true, NextContinuationToken: 'a' }, 'a', 'here')).toThrow(KlosetError);
  });
});

describe('S3BlobStore under injected faults', () => {
  it('retries PUTs answered 503 SlowDown', async () => {
    const blobs = store({ viaProxy: true });
    const data = randomBytes(300_000);
    proxy.resetCounts();
    proxy.failNext('PUT', 3, 'slowdown');
    await blobs.put('packs/slow', data);
    expect(proxy.faults.PUT).toBe(3);
    expect(blobs.requests.PUT).toBe(4);
    proxy.clearRules();
    expect((await blobs.get('packs/slow')).equals(data)).toBe(true);
  });

  it('retries GETs answered 500 InternalError and dropped connections, byte-exact', async () => {
    const blobs = store({ viaProxy: true });
    const data = randomBytes(2 * MiB);
    await blobs.put('pack', data);
    proxy.resetCounts();
    proxy.failNext('GET', 2, 'internal');
    proxy.addRule({ method: 'GET', fault: 'drop', every: 3 });
    for (let offset = 0; offset < data.length; offset += 256 * 1024) {
      const got = await blobs.getRange('pack', offset, 100_000);
      expect(got.equals(data.subarray(offset, offset + 100_000))).toBe(true);
    }
    proxy.clearRules();
    expect(proxy.faults.GET).toBeGreaterThanOrEqual(4);
  });

  it('gives up on a connection that goes silent, before or during the body, and asks again', async () => {
    const blobs = store({ viaProxy: true, idleTimeoutMs: 1000 });
    const data = randomBytes(1 * MiB);
    await blobs.put('pack', data);
    proxy.resetCounts();
    proxy.failNext('GET', 1, 'stall');
    expect((await blobs.get('pack')).equals(data)).toBe(true);
    proxy.failNext('GET', 1, 'stall-body');
    expect((await blobs.getRange('pack', 1000, 500_000)).equals(data.subarray(1000, 501_000))).toBe(true);
    proxy.failNext('PUT', 1, 'stall');
    await blobs.put('packs/after-a-stall', data);
    proxy.clearRules();
    expect(proxy.faults).toMatchObject({ GET: 2, PUT: 1 });
    expect((await blobs.get('packs/after-a-stall')).equals(data)).toBe(true);
  });

  it('fails in one line, after its attempts, against a server that never answers', async () => {
    const blobs = store({ viaProxy: true, idleTimeoutMs: 500, maxAttempts: 2 });
    proxy.addRule({ method: 'GET', fault: 'stall', every: 1 });
    try {
      await expect(blobs.get('CONFIG')).rejects.toThrow(/^s3:\/\/blobs\/.*CONFIG: .*(timed out|TimeoutError)/);
    } finally {
      proxy.clearRules();
    }
  });

  it('aborts a multipart upload whose completion fails, so that no part is left to be billed', async () => {
    const blobs = store({ viaProxy: true, multipartThreshold: 5 * MiB, partSize: 5 * MiB });
    proxy.resetCounts();
    proxy.addRule({ method: 'POST', path: /uploadId=/, fault: 'internal', every: 1 });
    try {
      await expect(blobs.put('packs/never', randomBytes(6 * MiB))).rejects.toThrow();
    } finally {
      proxy.clearRules();
    }
    expect(proxy.log.filter((r) => r.method === 'DELETE' && /uploadId=/.test(r.url))).toHaveLength(1);
    expect(await blobs.stat('packs/never')).toBeUndefined();
  });

  it('reads again a body that the connection cut short', async () => {
    const blobs = store({ viaProxy: true });
    const data = randomBytes(1 * MiB);
    await blobs.put('pack', data);
    proxy.resetCounts();
    proxy.failNext('GET', 2, 'truncate');
    expect((await blobs.get('pack')).equals(data)).toBe(true);
    proxy.failNext('GET', 1, 'truncate');
    expect((await blobs.getRange('pack', 1000, 500_000)).equals(data.subarray(1000, 501_000))).toBe(true);
    proxy.clearRules();
    expect(proxy.faults.GET).toBe(3);
  });

  it('retries a PUT whose answer was lost, and putIfAbsent still reports its own write', async () => {
    const blobs = store({ viaProxy: true });
    proxy.resetCounts();
    proxy.failNext('PUT', 1, 'drop-response');
    await blobs.put('a', Buffer.from('written once'));
    expect((await blobs.get('a')).toString()).toBe('written once');
    proxy.failNext('PUT', 1, 'drop-response');
    expect(await blobs.putIfAbsent('CONFIG', Buffer.from('mine'))).toBe(true);
    proxy.clearRules();
    expect((await blobs.get('CONFIG')).toString()).toBe('mine');
  });

  it('retries listings, HEADs and multipart parts under faults', async () => {
    const blobs = store({ viaProxy: true, multipartThreshold: 6 * MiB, partSize: 5 * MiB });
    const data = randomBytes(11 * MiB);
    proxy.resetCounts();
    proxy.addRule({ method: 'PUT', path: /uploadId=/, fault: 'slowdown', times: 2 });
    proxy.addRule({ method: 'POST', fault: 'internal', times: 1 });
    await blobs.put('packs/big', data);
    proxy.failNext('HEAD', 2, 'drop');
    expect(await blobs.stat('packs/big')).toBe(data.length);
    proxy.addRule({ method: 'GET', path: /list-type=2/, fault: 'slowdown', times: 2 });
    expect((await collect(blobs.list('packs/'))).map((b) => b.key)).toEqual(['packs/big']);
    proxy.clearRules();
    expect((await blobs.get('packs/big')).equals(data)).toBe(true);
    expect(proxy.faults).toMatchObject({ PUT: 2, POST: 1, HEAD: 2, GET: 2 });
  });

  it('survives slow responses', async () => {
    const blobs = store({ viaProxy: true });
    await blobs.put('k', Buffer.from('slow but sure'));
    proxy.addRule({ method: 'GET', fault: 'delay', delayMs: 300, times: 3 });
    const started = Date.now();
    const results = await Promise.all([blobs.get('k'), blobs.get('k'), blobs.get('k')]);
    proxy.clearRules();
    expect(results.map((r) => r.toString())).toEqual(['slow but sure', 'slow but sure', 'slow but sure']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });
});
