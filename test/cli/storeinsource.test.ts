/**
 * A backup of a bucket that holds the store it writes to: the store's
 * prefix (or, for a store at the top of its bucket, the store's own names)
 * is left out with a warning, as a local store inside the source is, so
 * that no backup takes in the packs of the one before. A source inside the
 * store is refused.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { expectNoStackTrace, expectOneLineError, klosetWith } from '../helpers/fixtures.js';
import { startS3Server, type S3Server } from '../helpers/s3server.js';

let work: string;
let s3: S3Server;
let client: S3Client;

beforeAll(async () => {
  work = await tempDir('kloset-storeinsource-');
  s3 = await startS3Server();
  client = s3.client();
});
afterAll(async () => {
  client?.destroy();
  await s3?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

const kloset = () =>
  klosetWith({ KLOSET_PASSPHRASE: 'store in source', XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config'), ...s3.env() });

async function put(bucket: string, key: string, body: string): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** Names at the top of the newest snapshot, and the size it says it added. */
async function topNames(store: string): Promise<string[]> {
  const ls = await kloset()(['at', store, 'ls', 'latest:/']);
  expect(ls.code, ls.stderr).toBe(0);
  return ls.stdout.trim().split('\n').map((line) => line.split(/\s+/).pop()!.replace(/\/$/, ''));
}

describe('a bucket holding the store backed up into it', () => {
  it('leaves out the store below a prefix, backup after backup, and refuses a source inside it', async () => {
    const run = kloset();
    await s3.createBucket('with-store');
    await put('with-store', 'data/a.txt', 'the data');
    await put('with-store', 'top.txt', 'more data');
    const store = 's3://with-store/backups';
    expect((await run(['at', store, 'create'])).code).toBe(0);
    for (let round = 0; round < 2; round++) {
      const backup = await run(['at', store, 'backup', 's3://with-store']);
      expectNoStackTrace(backup);
      expect(backup.code, backup.stderr).toBe(0);
      expect(backup.stderr).toMatch(/^warning: \/backups: the store itself, left out$/m);
      expect((await topNames(store)).sort()).toEqual(['data', 'top.txt']);
    }
    const inside = await run(['at', store, 'backup', 's3://with-store/backups/packs']);
    expect(inside.code).toBe(2);
    expectOneLineError(inside, `kloset: s3://with-store/backups/packs: inside the store ${store}: back up something else`);
  });

  it('finds the store by the prefix it writes to, however its location is spelled', async () => {
    const run = kloset();
    await s3.createBucket('spelled-store');
    await put('spelled-store', 'kept.txt', 'the data');
    // The store takes the slashes that lead its prefix for none: it lives at 'backups/'.
    const store = 's3://spelled-store//backups';
    expect((await run(['at', store, 'create'])).code).toBe(0);
    const backup = await run(['at', store, 'backup', 's3://spelled-store']);
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stderr).toMatch(/^warning: \/backups: the store itself, left out$/m);
    expect(await topNames(store)).toEqual(['kept.txt']);
  });

  it("leaves out a store's own names when the store is the top of the bucket", async () => {
    const run = kloset();
    await s3.createBucket('store-on-top');
    const store = 's3://store-on-top';
    expect((await run(['at', store, 'create'])).code).toBe(0);
    await put('store-on-top', 'photos/cat.jpg', 'not really a cat');
    const backup = await run(['at', store, 'backup', store]);
    expect(backup.code, backup.stderr).toBe(0);
    expect(await topNames(store)).toEqual(['photos']);
    // A prefix of the bucket that is none of the store's is backed up as any other.
    const photos = await run(['at', store, 'backup', 's3://store-on-top/photos']);
    expect(photos.code, photos.stderr).toBe(0);
    expect(photos.stderr).not.toMatch(/left out/);
  });
});
