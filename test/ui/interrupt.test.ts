/**
 * `kloset ui` stopped while restores started from the page still run: the
 * first Ctrl-C waits for them, a second one stops them as Ctrl-C stops
 * `kloset restore`, leaving no file half written.
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kloset, tempDir, type CliResult } from '../helpers/cli.js';
import { MiB, expectNoStackTrace, writeRandomFile } from '../helpers/fixtures.js';
import { startUi } from './fixture.js';

const FILES = 8;
const FILE_SIZE = 24 * MiB;

let work: string;
let source: string;
let store: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  work = await tempDir('kloset-ui-interrupt-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  env = { XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') };
  await fs.mkdir(source);
  for (let i = 0; i < FILES; i++) await writeRandomFile(path.join(source, `part-${i}.bin`), FILE_SIZE);
  expect((await kloset(['at', store, 'create'], { env })).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source], { env })).code).toBe(0);
}, 120_000);

afterAll(async () => {
  if (work) await fs.rm(work, { recursive: true, force: true });
});

function post(base: string, token: string, body: object): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/api/restore`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('kloset ui stopped twice while a restore runs', () => {
  let target: string;
  let result: CliResult;

  beforeAll(async () => {
    target = path.join(work, 'target');
    const ui = await startUi(store, env);
    const snapshot = JSON.parse((await kloset(['at', store, 'ls', '--json'], { env })).stdout)[0].id as string;
    expect(await post(ui.base, ui.token, { snapshot, path: '/', destination: target })).toBe(202);
    let exited = false;
    void ui.done.then(() => (exited = true));
    while (!exited && (await fs.readdir(target).catch(() => [])).length === 0) await sleep(5);
    ui.signal('SIGINT');
    // The second Ctrl-C once the first is heard: the server says it waits for the restore.
    while (!exited && !/waiting for 1 restore/.test(ui.output())) await sleep(5);
    expect(exited, 'the restore finished before it could be interrupted').toBe(false);
    ui.signal('SIGINT');
    result = await ui.done;
  }, 120_000);

  it('exits with 130 and says so in one line', () => {
    expectNoStackTrace(result);
    expect(result.code).toBe(130);
    expect(result.stderr).toMatch(/^kloset ui: restore interrupted: [^\n]*none is left half written\n$/);
  });

  it('leaves no file half written: every file there is whole', async () => {
    for (const name of await fs.readdir(target)) {
      const bytes = await fs.readFile(path.join(target, name));
      expect(bytes.equals(await fs.readFile(path.join(source, name))), name).toBe(true);
    }
  }, 60_000);

  it('releases its lock', async () => {
    expect(await fs.readdir(path.join(store, 'locks'))).toEqual([]);
  });
});
