/**
 * A restore into a place that holds the store it reads from: a local store
 * in a directory of the target, a store on S3 below the destination's
 * prefix. Restored files named as the store's own (a CONFIG, an index/…)
 * would replace them; they are left out with a warning, and the rest is
 * restored.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { latestSnapshotId, tempDir } from '../helpers/cli.js';
import { expectNoStackTrace, expectOneLineError, klosetWith, storeListing } from '../helpers/fixtures.js';
import { startS3Server, type S3Server } from '../helpers/s3server.js';

let work: string;
const env = () => ({ KLOSET_PASSPHRASE: 'store in target', XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') });

beforeAll(async () => {
  work = await tempDir('kloset-storeintarget-');
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** A tree whose `store/` directory holds files named as a store's. */
async function treeNamingTheStore(root: string): Promise<void> {
  await fs.mkdir(path.join(root, 'store', 'index'), { recursive: true });
  await fs.writeFile(path.join(root, 'store', 'CONFIG'), 'not the store configuration\n');
  await fs.writeFile(path.join(root, 'store', 'index', 'delta'), 'not an index delta\n');
  await fs.mkdir(path.join(root, 'docs'));
  await fs.writeFile(path.join(root, 'docs', 'kept.txt'), 'restored beside the store\n');
  await fs.writeFile(path.join(root, 'top.txt'), 'restored too\n');
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('a local store inside the restore target', () => {
  it('keeps its files as they were, restores the rest, and says what it left out (exit 3)', async () => {
    const kloset = klosetWith(env());
    const source = path.join(work, 'local-source');
    await treeNamingTheStore(source);
    const target = path.join(work, 'local-target');
    const store = path.join(target, 'store');
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const id = await latestSnapshotId(store, env());
    const link = path.join(work, 'link-to-target');
    await fs.symlink(target, link);

    for (const to of [target, link]) {
      const before = await storeListing(store);
      const config = sha(await fs.readFile(path.join(store, 'CONFIG')));
      const result = await kloset(['at', store, 'restore', '-to', to, id]);
      expectNoStackTrace(result);
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/store: .*inside the store, left out/);
      expect(sha(await fs.readFile(path.join(store, 'CONFIG')))).toBe(config);
      expect((await storeListing(store)).filter((l) => !l.startsWith('locks/'))).toEqual(before.filter((l) => !l.startsWith('locks/')));
      expect(await fs.readFile(path.join(target, 'docs', 'kept.txt'), 'utf8')).toBe('restored beside the store\n');
      expect(await fs.readFile(path.join(target, 'top.txt'), 'utf8')).toBe('restored too\n');
      // The store still opens and reads.
      const check = await kloset(['at', store, 'check']);
      expect(check.code, check.stderr).toBe(0);
      await fs.rm(path.join(target, 'docs'), { recursive: true });
      await fs.rm(path.join(target, 'top.txt'));
    }
  });
});

describe('a store on S3 below the restore destination', () => {
  let s3: S3Server;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startS3Server();
    client = s3.client();
    await s3.createBucket('holds-a-store');
  });
  afterAll(async () => {
    client?.destroy();
    await s3?.stop();
  });

  it('keeps its objects as they were when the bucket above it is the destination, and refuses a destination inside it', async () => {
    const kloset = klosetWith({ ...env(), ...s3.env() });
    const source = path.join(work, 's3-source');
    await treeNamingTheStore(source);
    const store = 's3://holds-a-store/store';
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    const backup = await kloset(['at', store, 'backup', source]);
    expect(backup.code, backup.stderr).toBe(0);
    const config = async () => sha(Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: 'holds-a-store', Key: 'store/CONFIG' }))).Body!.transformToByteArray()));
    const before = await config();

    const result = await kloset(['at', store, 'restore', '-to', 's3://holds-a-store']);
    expectNoStackTrace(result);
    expect(result.code, result.stderr).toBe(3);
    expect(result.stderr).toMatch(/s3:\/\/holds-a-store\/store\/CONFIG: inside the store, left out/);
    expect(await config()).toBe(before);
    const kept = await client.send(new GetObjectCommand({ Bucket: 'holds-a-store', Key: 'docs/kept.txt' }));
    expect(await kept.Body!.transformToString()).toBe('restored beside the store\n');
    expect((await kloset(['at', store, 'check'])).code).toBe(0);

    const inside = await kloset(['at', store, 'restore', '-to', 's3://holds-a-store/store/restored']);
    expect(inside.code).toBe(2);
    expectOneLineError(inside, `kloset: s3://holds-a-store/store/restored: inside the store ${store}: restore somewhere else`);
  });

  it("leaves a store at the top of its bucket its own names, and lets a restore go to another prefix of that bucket", async () => {
    const kloset = klosetWith({ ...env(), ...s3.env() });
    await s3.createBucket('store-on-top');
    const source = path.join(work, 's3-top-source');
    await fs.mkdir(path.join(source, 'packs'), { recursive: true });
    await fs.writeFile(path.join(source, 'CONFIG'), 'not the store configuration\n');
    await fs.writeFile(path.join(source, 'packs', 'not-a-pack'), 'not a pack\n');
    await fs.mkdir(path.join(source, 'docs'));
    await fs.writeFile(path.join(source, 'docs', 'kept.txt'), 'restored beside the store\n');
    const store = 's3://store-on-top';
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const config = async () => sha(Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: 'store-on-top', Key: 'CONFIG' }))).Body!.transformToByteArray()));
    const before = await config();

    const elsewhere = await kloset(['at', store, 'restore', '-to', 's3://store-on-top/restored']);
    expect(elsewhere.code, elsewhere.stderr).toBe(0);
    const copy = await client.send(new GetObjectCommand({ Bucket: 'store-on-top', Key: 'restored/CONFIG' }));
    expect(await copy.Body!.transformToString()).toBe('not the store configuration\n');

    const top = await kloset(['at', store, 'restore', '-to', store]);
    expect(top.code, top.stderr).toBe(3);
    expect(top.stderr).toMatch(/s3:\/\/store-on-top\/CONFIG: inside the store, left out/);
    expect(top.stderr).toMatch(/s3:\/\/store-on-top\/packs\/not-a-pack: inside the store, left out/);
    expect(await config()).toBe(before);
    const kept = await client.send(new GetObjectCommand({ Bucket: 'store-on-top', Key: 'docs/kept.txt' }));
    expect(await kept.Body!.transformToString()).toBe('restored beside the store\n');

    const inside = await kloset(['at', store, 'restore', '-to', 's3://store-on-top/packs/restored']);
    expect(inside.code).toBe(2);
    expectOneLineError(inside, `kloset: s3://store-on-top/packs/restored: inside the store ${store}: restore somewhere else`);
    expect((await kloset(['at', store, 'check'])).code).toBe(0);
  });

  it("knows the store's bucket when the destination spells the server's address another way", async () => {
    const kloset = klosetWith({ ...env(), ...s3.env() });
    await s3.createBucket('spelled-apart');
    const source = path.join(work, 's3-spelled-source');
    await treeNamingTheStore(source);
    const store = 's3://spelled-apart/store';
    expect((await kloset(['at', store, 'create'])).code).toBe(0);
    expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
    const config = async () => sha(Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: 'spelled-apart', Key: 'store/CONFIG' }))).Body!.transformToByteArray()));
    const before = await config();
    const { host, port } = new URL(s3.endpoint);
    const spellings = [`${s3.endpoint}/`, `HTTP://${host.toUpperCase()}`, `http://localhost:${port}`];
    for (const [n, endpoint] of spellings.entries()) {
      expect((await kloset(['destination', 'add', `spelled${n}`, 's3://spelled-apart', `endpoint=${endpoint}`])).code).toBe(0);
      const result = await kloset(['at', store, 'restore', '-to', `@spelled${n}`]);
      expectNoStackTrace(result);
      expect(result.code, `${endpoint}: ${result.stderr}`).toBe(3);
      expect(result.stderr).toMatch(/s3:\/\/spelled-apart\/store\/CONFIG: inside the store, left out/);
      expect(await config()).toBe(before);
    }
    expect((await kloset(['at', store, 'check'])).code).toBe(0);
  });
});
