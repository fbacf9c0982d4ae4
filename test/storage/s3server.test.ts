import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startS3Server, type S3Server } from '../helpers/s3server.js';

describe('the s3rver test harness', () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3Server();
  });
  afterAll(async () => {
    await s3?.stop();
  });

  it('serves objects over loopback with the test credentials', async () => {
    await s3.createBucket('harness');
    await s3.createBucket('harness'); // again: not an error
    const client = s3.client();
    await client.send(new PutObjectCommand({ Bucket: 'harness', Key: 'a/b.txt', Body: 'hello', ContentType: 'text/plain' }));
    const got = await client.send(new GetObjectCommand({ Bucket: 'harness', Key: 'a/b.txt' }));
    expect(await got.Body!.transformToString()).toBe('hello');
    expect(got.ContentType).toBe('text/plain');
    expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('pages listings with continuation tokens', async () => {
    const client = s3.client();
    await s3.createBucket('paged');
    for (let i = 0; i < 5; i++) {
      await client.send(new PutObjectCommand({ Bucket: 'paged', Key: `k${i}`, Body: String(i) }));
    }
    const first = await client.send(new ListObjectsV2Command({ Bucket: 'paged', MaxKeys: 2 }));
    expect(first.IsTruncated).toBe(true);
    const second = await client.send(
      new ListObjectsV2Command({ Bucket: 'paged', MaxKeys: 2, ContinuationToken: first.NextContinuationToken }),
    );
    expect(second.Contents?.map((o) => o.Key)).toEqual(['k2', 'k3']);
  });
});
