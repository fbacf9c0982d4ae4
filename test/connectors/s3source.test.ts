/**
 * The S3 source against what other servers and a busy bucket do, each on a
 * real S3 server (s3rver on loopback); where a server s3rver does not
 * imitate matters (MinIO's listing times), a proxy in front of it rewrites
 * the answer as that server would send it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Repository } from '../../src/kloset/repository.js';
import { loadBuilt, openLocalStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/faultproxy.js';
import { startS3Server, type S3Server } from '../helpers/s3server.js';

const { parseS3Uri } = (await loadBuilt('connectors/s3/client.js')) as typeof import('../../src/connectors/s3/client.js');
const { S3Importer } = (await loadBuilt('connectors/s3/importer.js')) as typeof import('../../src/connectors/s3/importer.js');
const { Repository: RepositoryClass } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { backup } = (await loadBuilt('snapshot/builder.js')) as typeof import('../../src/snapshot/builder.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
const { BlobType } = (await loadBuilt('kloset/sealing.js')) as typeof import('../../src/kloset/sealing.js');

let s3: S3Server;
let client: S3Client;

async function newRepository(): Promise<Repository> {
  return RepositoryClass.create(await openLocalStore(await tempDir('kloset-s3review-')), { passphrase: null });
}

interface RewritingProxy {
  endpoint: string;
  /** GETs of objects (not listings) forwarded so far. */
  objectGets: number;
  stop(): Promise<void>;
}

/** A proxy in front of s3rver that passes everything on, and gives listing bodies to `rewrite`. */
async function startRewritingProxy(target: string, rewrite: (listing: string) => string): Promise<RewritingProxy> {
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true });
  const proxy: RewritingProxy = { endpoint: '', objectGets: 0, stop: async () => undefined };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const isListing = req.method === 'GET' && url.pathname.split('/').filter(Boolean).length === 1;
    if (req.method === 'GET' && !isListing) proxy.objectGets++;
    const forwarded = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent }, (answer) => {
      if (!isListing) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => chunks.push(chunk));
      answer.on('end', () => {
        const body = Buffer.from(rewrite(Buffer.concat(chunks).toString('utf8')), 'utf8');
        res.writeHead(answer.statusCode ?? 502, { ...answer.headers, 'content-length': String(body.length) });
        res.end(body);
      });
    });
    forwarded.on('error', () => res.destroy());
    req.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  proxy.stop = () =>
    new Promise<void>((resolve) => {
      agent.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return proxy;
}

beforeAll(async () => {
  s3 = await startS3Server();
  client = s3.client();
}, 120_000);

afterAll(async () => {
  await s3?.stop();
});

describe('a server whose listings give LastModified in milliseconds (MinIO, Ceph RGW)', () => {
  it('does not download unchanged objects again: the recorded time is the listing’s, not the GET’s whole second', async () => {
    await s3.createBucket('millis');
    for (const key of ['a.txt', 'b/c.txt', 'b/d.txt']) await client.send(new PutObjectCommand({ Bucket: 'millis', Key: key, Body: `body of ${key}` }));
    // s3rver lists whole seconds; MinIO and RGW list the milliseconds of the write, while Last-Modified has seconds only.
    const proxy = await startRewritingProxy(s3.endpoint, (listing) => listing.replace(/\.000Z<\/LastModified>/g, '.383Z</LastModified>'));
    try {
      const source = () => new S3Importer(s3.client({ endpoint: proxy.endpoint }), parseS3Uri('s3://millis'), { endpoint: proxy.endpoint });
      const repository = await newRepository();
      const first = await backup(repository, source());
      expect(proxy.objectGets).toBe(3);
      const entry = await new SnapshotReader(repository, first).lookup('/b/c.txt');
      expect(entry.mtime.nsec).toBe(383_000_000);

      proxy.objectGets = 0;
      const second = await backup(repository, source(), { parent: first });
      expect(proxy.objectGets).toBe(0);
      expect(second.stats.files).toBe(3);
    } finally {
      await proxy.stop();
    }
  });
});

describe('a burst of 503 SlowDown and 500 answers to GETs', () => {
  it('is retried for every object, as max_attempts says, and no object is left out of the snapshot', async () => {
    await s3.createBucket('throttled');
    const keys = Array.from({ length: 120 }, (_, i) => `obj-${String(i).padStart(4, '0')}.txt`);
    await Promise.all(keys.map((key) => client.send(new PutObjectCommand({ Bucket: 'throttled', Key: key, Body: `body of ${key}` }))));
    const proxy = await startFaultProxy(s3.endpoint);
    try {
      // Every object is answered twice SlowDown and once InternalError before its body: each keeps
      // at least 10 of the SDK's shared retry budget of 500 that its success does not give back,
      // so that budget would run out a third of the way through; and no object comes near its 8
      // attempts, whichever order the retries of the objects in flight come in.
      for (const key of keys) {
        const path = new RegExp(`/throttled/${key}$`);
        proxy.addRule({ method: 'GET', path, fault: 'slowdown', times: 2 });
        proxy.addRule({ method: 'GET', path, fault: 'internal', times: 1 });
      }
      const source = S3Importer.fromConfig('s3://throttled', {
        endpoint: proxy.endpoint,
        use_tls: 'false',
        access_key: s3.accessKey,
        secret_access_key: s3.secretKey,
      });
      const repository = await newRepository();
      const warnings: string[] = [];
      const header = await backup(repository, source, { onWarning: (p, m) => warnings.push(`${p}: ${m}`) });
      expect(proxy.faults.GET).toBe(3 * keys.length);
      expect(warnings).toEqual([]);
      expect(header.stats.errors).toBe(0);
      expect(header.stats.files).toBe(keys.length);
    } finally {
      await proxy.stop();
    }
  }, 120_000);
});

describe('a prefix of many objects side by side (a flat bucket)', () => {
  it('is written out a page of entries at a time while it is listed, not held whole until its listing ends', async () => {
    const count = 2600;
    await s3.createBucket('flat');
    const keys = Array.from({ length: count }, (_, i) => `log-${String(i).padStart(5, '0')}.txt`);
    for (let i = 0; i < keys.length; i += 100) {
      await Promise.all(keys.slice(i, i + 100).map((key) => client.send(new PutObjectCommand({ Bucket: 'flat', Key: key, Body: key }))));
    }
    const repository = await newRepository();
    // How far the listing was when each directory page was stored.
    let listed = 0;
    const pagesAt: number[] = [];
    const newWriter = repository.newWriter.bind(repository);
    repository.newWriter = () => {
      const writer = newWriter();
      const put = writer.put.bind(writer);
      writer.put = (type, data) => {
        if (type === BlobType.treePage) pagesAt.push(listed);
        return put(type, data);
      };
      return writer;
    };
    const source = () => {
      const importer = new S3Importer(s3.client(), parseS3Uri('s3://flat'), { endpoint: s3.endpoint });
      const children = importer.children.bind(importer);
      importer.children = async function* (path: string) {
        for await (const child of children(path)) {
          listed++;
          yield child;
        }
      };
      return importer;
    };
    const first = await backup(repository, source());
    expect(first.stats.files).toBe(count);
    expect(pagesAt.length).toBe(3);
    expect(pagesAt[0]).toBeLessThan(count);

    listed = 0;
    pagesAt.length = 0;
    const second = await backup(repository, source(), { parent: first });
    expect(second.stats.files).toBe(count);
    expect(pagesAt[0]).toBeLessThan(count);
    const reader = new SnapshotReader(repository, second);
    const entry = await reader.lookup('/log-01234.txt');
    expect(entry.meta?.['s3.key']).toBe('log-01234.txt');
    const chunks: Buffer[] = [];
    for await (const data of (await reader.openFile(entry)).stream()) chunks.push(data);
    expect(Buffer.concat(chunks).toString()).toBe('log-01234.txt');
  }, 120_000);
});
