/**
 * Several servers backing up into one store, as restic's --host handles
 * them: a backup is recorded under a host name of its choosing (a
 * container's own changes at every start), and -host selects each host's
 * snapshots for ls, restore, info and a keep policy.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { expectOneLineError, klosetWith } from '../helpers/fixtures.js';

interface Summary {
  id: string;
  host: string;
  origin: string;
  parent?: string;
}

let work: string;
let store: string;
let web: string;
let db: string;
let kloset: ReturnType<typeof klosetWith>;

async function listed(...args: string[]): Promise<Summary[]> {
  const result = await kloset(['at', store, 'ls', '--json', ...args]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as Summary[];
}

async function backup(...args: string[]): Promise<void> {
  const result = await kloset(['at', store, 'backup', ...args]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
}

beforeAll(async () => {
  work = await tempDir('kloset-hosts-');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  store = path.join(work, 'store');
  web = path.join(work, 'web');
  db = path.join(work, 'db');
  await fs.mkdir(web);
  await fs.mkdir(db);
  await fs.writeFile(path.join(web, 'index.html'), 'version 1\n');
  await fs.writeFile(path.join(db, 'dump.sql'), 'create table t;\n');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  await backup('-host', 'web1', web);
  await fs.writeFile(path.join(web, 'index.html'), 'version 2\n');
  await backup('-host', 'web1', web);
  await backup('-host', 'db1', db);
  await backup(db);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('backup -host', () => {
  it('records the snapshot under that host, and finds the previous one by it', async () => {
    const all = await listed();
    expect(all.map((s) => s.host)).toEqual(['web1', 'web1', 'db1', os.hostname()]);
    expect(all[1].parent).toBe(all[0].id);
    // The same directory under another name has no previous snapshot.
    expect(all[3].parent).toBeUndefined();
    expect(all[2].origin).toBe('db1');
  });

  it('refuses a name with a space or a slash, in one line', async () => {
    expectOneLineError(await kloset(['at', store, 'backup', '-host', 'a b', web]), /-host "a b": a host name, without spaces or slashes/);
  });
});

describe('-host', () => {
  it("selects a host's snapshots in ls, and any of several", async () => {
    expect((await listed('-host', 'web1')).map((s) => s.host)).toEqual(['web1', 'web1']);
    expect((await listed('-host', 'web1', '-host', 'db1')).map((s) => s.host)).toEqual(['web1', 'web1', 'db1']);
    expect(await listed('-host', 'nobody')).toEqual([]);
  });

  it("restores a host's latest snapshot, and info describes it", async () => {
    const target = path.join(work, 'restored-web1');
    const result = await kloset(['at', store, 'restore', '-host', 'web1', '-to', target]);
    expect(result.code).toBe(0);
    expect(await fs.readFile(path.join(target, 'index.html'), 'utf8')).toBe('version 2\n');
    const info = await kloset(['at', store, 'info', '--json', '-host', 'db1']);
    expect(JSON.parse(info.stdout)).toMatchObject({ host: 'db1' });
    expectOneLineError(await kloset(['at', store, 'restore', '-host', 'nobody', '-to', target]), 'kloset: no snapshot matches');
  });

  it("applies a keep policy to that host's snapshots only", async () => {
    const before = await listed();
    const result = await kloset(['at', store, 'rm', '-host', 'web1', '--keep-last', '1']);
    expect(result.code).toBe(0);
    const after = await listed();
    expect(after.map((s) => s.id)).toEqual([before[1].id, before[2].id, before[3].id]);
  });
});
