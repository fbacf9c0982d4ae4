import { describe, expect, it } from 'vitest';
import { S3Client } from '@aws-sdk/client-s3';
import { HttpRequest } from '@smithy/core/protocols';
import type { AwsCredentialIdentity } from '@smithy/types';
import { RequestSigner } from '../../src/storage/sigv4.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const region = 'eu-west-3';
const endpoint = 'http://127.0.0.1:9000';

interface Case {
  what: string;
  method: 'GET' | 'PUT';
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

const cases: Case[] = [
  { what: 'a GET', method: 'GET', path: '/bucket/plain.txt', headers: { host: '127.0.0.1:9000' } },
  {
    what: 'a ranged GET of a key with encoded characters',
    method: 'GET',
    path: '/bucket/a%20b/%E2%9C%93/%2A%28x%29',
    headers: { host: '127.0.0.1:9000', range: 'bytes=1048576-', 'if-match': '"9b2cf535f27731c974343645a3985328"' },
  },
  {
    what: 'a PUT with content headers, user metadata and blanks to fold',
    method: 'PUT',
    path: '/bucket/prefix/object.json',
    headers: {
      host: '127.0.0.1:9000',
      'content-type': 'application/json',
      'content-length': '17',
      'cache-control': 'max-age=60',
      'content-encoding': 'gzip',
      'content-disposition': 'attachment; filename="x.json"',
      expires: 'Thu, 01 Jan 2037 00:00:00 GMT',
      'x-amz-storage-class': 'STANDARD_IA',
      'x-amz-meta-origin': '  two   spaces\tand a tab ',
      'x-amz-meta-empty': '',
    },
    body: Buffer.from('{"a": [1, 2, 3]}\n'),
  },
  { what: 'a PUT of an empty object', method: 'PUT', path: '/bucket/empty', headers: { host: '127.0.0.1:9000', 'content-length': '0' }, body: Buffer.alloc(0) },
];

/** The signature the SDK's own signer (the client's, as its commands use it) gives the same request. */
async function sdkSigned(credentials: AwsCredentialIdentity, c: Case, date: Date): Promise<Record<string, string>> {
  const client = new S3Client({ region, endpoint, forcePathStyle: true, credentials });
  const config = client.config as unknown as { signer: (scheme: unknown) => Promise<{ sign(request: unknown, options: unknown): Promise<{ headers: Record<string, string> }> }> };
  const signer = await config.signer({ name: 'sigv4', signingName: 's3', signingRegion: region, properties: {} });
  const request = new HttpRequest({ protocol: 'http:', hostname: '127.0.0.1', port: 9000, method: c.method, path: c.path, query: {}, headers: { ...c.headers }, body: c.body });
  const signed = await signer.sign(request, { signingDate: date, signingRegion: region, signingService: 's3' });
  client.destroy();
  return signed.headers;
}

async function ownSigned(signer: RequestSigner, c: Case, date: Date): Promise<Record<string, string>> {
  const headers = { ...c.headers };
  await signer.sign(c.method, c.path, headers, c.body, date);
  return headers;
}

const SIGNED = ['authorization', 'x-amz-date', 'x-amz-content-sha256', 'x-amz-security-token'];
const pick = (headers: Record<string, string>) => Object.fromEntries(SIGNED.filter((name) => headers[name] !== undefined).map((name) => [name, headers[name]]));

describe('the signer of direct S3 requests', () => {
  it("signs GETs and PUTs as the SDK's own signer does, across days and a change of credentials", async () => {
    let credentials: AwsCredentialIdentity = { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' };
    const signer = new RequestSigner(async () => credentials, region);
    const days = [new Date('2026-11-29T23:59:59.999Z'), new Date('2026-11-30T00:00:00.001Z')];
    let compared = 0;
    for (const next of [undefined, { accessKeyId: 'ASIAEXAMPLE', secretAccessKey: 'another secret', sessionToken: 'FwoGZXIvYXdzE//token==' }]) {
      if (next) credentials = next;
      for (const date of days) {
        for (const c of cases) {
          const own = pick(await ownSigned(signer, c, date));
          expect(own, `${c.what} at ${date.toISOString()}`).toEqual(pick(await sdkSigned(credentials, c, date)));
          expect(own.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=\S+, SignedHeaders=\S+, Signature=[0-9a-f]{64}$/);
          compared++;
        }
      }
    }
    expect(compared).toBe(2 * days.length * cases.length);
  });

  it('leaves the headers a proxy or the HTTP stack may change unsigned, and signs the rest', async () => {
    const signer = new RequestSigner(async () => ({ accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret' }), region);
    const headers = { ...cases[2].headers };
    await signer.sign('PUT', cases[2].path, headers, cases[2].body, new Date('2026-11-29T12:00:00Z'));
    const list = /SignedHeaders=(\S+),/.exec(headers.authorization)![1].split(';');
    expect(list).toEqual([...list].sort());
    expect(list).toContain('host');
    expect(list).toContain('x-amz-meta-origin');
    expect(list).toContain('content-length');
    expect(list).not.toContain('cache-control');
  });
});
