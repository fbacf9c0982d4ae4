/**
 * The viewer's API over forged snapshots that hold names no directory can
 * (a directory '..', a file '.', a name with a '/'): listings and diffs
 * give them quoted, as ls does, and marked, never as a path that climbs
 * to another directory or names another entry; and no request reaches
 * them or anything above the snapshot.
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalStore } from '../helpers/built.js';
import { tempDir } from '../helpers/cli.js';
import { ForgedImporter, type Tree } from '../helpers/forged.js';
import { builtLibrary, storeWithSnapshot } from '../helpers/mount.js';
import { startUi, type RunningUi } from './fixture.js';

const FIRST: Tree = {
  '.': 'a file named dot\n',
  '..': { 'escaped.txt': 'above the snapshot\n' },
  'plain.txt': 'plain\n',
  sub: { '..': { 'planted.txt': 'planted through sub/..\n' }, 'kept.txt': 'kept\n' },
  // One name, in the root: not an entry of sub.
  'sub/forged.txt': 'not in sub\n',
};

const SECOND: Tree = {
  ...FIRST,
  '..': { 'added.txt': 'new\n', 'escaped.txt': 'changed above\n' },
  'plain.txt': 'plain, changed\n',
};

let work: string;
let ui: RunningUi;
let first: string;
let second: string;

function get(target: string): Promise<{ status: number; json: () => any }> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(target, ui.base), { headers: { Authorization: `Bearer ${ui.token}` } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        resolve({ status: res.statusCode!, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const q = (p: string) => encodeURIComponent(p);

/** True when `p`, split as the API splits a path, has a part that climbs or stays ('..', '.') or an empty one. */
const climbs = (p: string) => p.split('/').slice(1).some((part) => part === '..' || part === '.' || part === '');

beforeAll(async () => {
  work = await tempDir('kloset-ui-forged-');
  const store = path.join(work, 'store');
  await storeWithSnapshot(store, new ForgedImporter(FIRST));
  const lib = await builtLibrary();
  const repository = await lib.Repository.open(await openLocalStore(store), async () => 'unused');
  await lib.backup(repository, new ForgedImporter(SECOND));
  ui = await startUi(store, { XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') });
  const { snapshots } = (await get('/api/snapshots')).json() as { snapshots: { id: string }[] };
  [second, first] = snapshots.map((s) => s.id);
}, 60_000);

afterAll(async () => {
  const result = await ui?.stop();
  expect(result?.stderr).toBe('');
  if (work) await fs.rm(work, { recursive: true, force: true });
});

describe('names no directory can hold, in the viewer', () => {
  it('are listed quoted and marked, with paths that neither climb nor name another entry', async () => {
    const root = (await get(`/api/snapshots/${first}/tree?path=/`)).json();
    const rows = (root.entries as { name: string; path: string; invalid_name?: boolean }[]).map((e) => [e.name, e.path, e.invalid_name ?? false]);
    expect(rows).toEqual([
      ['".."', '/".."', true],
      ['sub', '/sub', false],
      ['"."', '/"."', true],
      ['plain.txt', '/plain.txt', false],
      ['"sub/forged.txt"', '/"sub/forged.txt"', true],
    ]);
    const sub = (await get(`/api/snapshots/${first}/tree?path=/sub`)).json();
    expect((sub.entries as { path: string; invalid_name?: boolean }[]).map((e) => [e.path, e.invalid_name ?? false])).toEqual([
      ['/sub/".."', true],
      ['/sub/kept.txt', false],
    ]);
    for (const { path: p } of [...root.entries, ...sub.entries] as { path: string }[]) expect(climbs(p), p).toBe(false);
    // Each path given finds nothing: neither an entry of sub nor the snapshot's root.
    for (const p of ['/".."', '/"."', '/"sub/forged.txt"', '/sub/".."']) expect((await get(`/api/snapshots/${first}/entry?path=${q(p)}`)).status, p).toBe(404);
  });

  it('cannot be reached by a path that names them as they are', async () => {
    for (const p of ['/..', '/../escaped.txt', '/sub/../planted.txt']) expect((await get(`/api/snapshots/${first}/tree?path=${q(p)}`)).status, p).toBe(400);
    // '.' and a '/' are taken as a path's own: the root, and an entry of sub, which has no forged.txt.
    expect((await get(`/api/snapshots/${first}/entry?path=${q('/.')}`)).json().path).toBe('/');
    expect((await get(`/api/snapshots/${first}/entry?path=${q('/sub/forged.txt')}`)).status).toBe(404);
    expect((await get(`/api/snapshots/${first}/entry?path=${q('/sub/kept.txt')}`)).json().size).toBe('kept\n'.length);
  });

  it('are given quoted and marked by a diff, with the entries below them', async () => {
    const diff = (await get(`/api/diff?a=${first}&b=${second}`)).json();
    const items = (diff.items as { path: string; status: string; invalid_name?: boolean }[]).map((i) => [i.status, i.path, i.invalid_name ?? false]);
    expect(items).toEqual([
      ['added', '/".."/added.txt', true],
      ['changed', '/".."/escaped.txt', true],
      ['changed', '/plain.txt', false],
    ]);
  });
});
