/**
 * The viewer over a damaged store: a file whose chunk fails its check is
 * refused as damaged, and the error answer carries no header of the content
 * it could not send.
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { kloset, latestSnapshotId, tempDir } from '../helpers/cli.js';
import { flipByte, writeRandomFile } from '../helpers/fixtures.js';
import { startUi, type RunningUi } from './fixture.js';

let work: string;
let ui: RunningUi;
let id: string;
const SIZE = 6 * 1024 * 1024;
const content = (headers: Record<string, string> = {}) => get(`/api/snapshots/${id}/content?path=${encodeURIComponent('/data.bin')}`, headers);

function get(target: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(target, ui.base), { headers: { Authorization: `Bearer ${ui.token}`, ...headers } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString('utf8')));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  work = await tempDir('kloset-ui-damaged-');
  const source = path.join(work, 'source');
  const store = path.join(work, 'store');
  const env = { XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') };
  await fs.mkdir(source);
  await writeRandomFile(path.join(source, 'data.bin'), SIZE);
  expect((await kloset(['at', store, 'create'], { env })).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source], { env })).code).toBe(0);
  id = await latestSnapshotId(store, env);
  // The file's last chunk is damaged; its first ones are whole.
  const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
  const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
  const repository = await openBuiltStore(store);
  const [header] = await listSnapshots(repository);
  const reader = new SnapshotReader(repository, header);
  const file = await reader.openFile(await reader.lookup('/data.bin'));
  expect(file.chunks.length).toBeGreaterThan(1);
  const location = (await repository.find(file.chunks[file.chunks.length - 1].id))!;
  await repository.store.close();
  const pack = location.packId.toString('hex');
  await flipByte(path.join(store, 'packs', pack.slice(0, 2), pack), () => location.offset + (location.length >> 1));
  ui = await startUi(store, env);
});

afterAll(async () => {
  await ui?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('a file with a damaged chunk in the viewer', () => {
  it('refuses a range in the damaged chunk with 500 and a message naming the damage, without the range headers', async () => {
    const reply = await content({ Range: 'bytes=-100' });
    expect(reply.status).toBe(500);
    expect(JSON.parse(reply.text).error).toMatch(/^damaged: /);
    expect(reply.headers['content-range']).toBeUndefined();
    expect(reply.headers['accept-ranges']).toBeUndefined();
    expect(Number(reply.headers['content-length'])).toBe(Buffer.byteLength(reply.text));
  });

  it('serves a range in its whole chunks', async () => {
    const reply = await content({ Range: 'bytes=0-99' });
    expect(reply.status).toBe(206);
    expect(reply.headers['content-range']).toBe(`bytes 0-99/${SIZE}`);
  });

  it('answers an unsatisfiable range with 416 and the size in Content-Range', async () => {
    const reply = await content({ Range: `bytes=${SIZE}-` });
    expect(reply.status).toBe(416);
    expect(reply.headers['content-range']).toBe(`bytes */${SIZE}`);
  });
});
