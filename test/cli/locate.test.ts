/** `locate` (also `find`) names the snapshots and paths where files of a given name are. */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBuilt, openBuiltStore } from '../helpers/built.js';
import { expectOneLineError, flipByte, storeWithTwoSnapshots, type TwoSnapshots } from '../helpers/fixtures.js';

let work: string;
let store: string;
let kloset: TwoSnapshots['kloset'];
let first: string;
let second: string;

beforeAll(async () => {
  ({ work, store, kloset, first, second } = await storeWithTwoSnapshots(
    'kloset-locate-',
    async (source) => {
      await fs.mkdir(path.join(source, 'etc/nginx/sites'), { recursive: true });
      await fs.mkdir(path.join(source, 'home/.config'), { recursive: true });
      await fs.writeFile(path.join(source, 'etc/nginx/nginx.conf'), 'events {}\n');
      await fs.writeFile(path.join(source, 'etc/nginx/sites/default.conf'), 'server {}\n');
      await fs.writeFile(path.join(source, 'etc/hosts'), '127.0.0.1 localhost\n');
      await fs.writeFile(path.join(source, 'home/.config/app.conf'), 'x=1\n');
      await fs.writeFile(path.join(source, 'home/report-2025.pdf'), '%PDF\n');
    },
    async (source) => {
      await fs.rm(path.join(source, 'home/report-2025.pdf'));
      await fs.writeFile(path.join(source, 'home/report-2026.pdf'), '%PDF-1.7\n');
      await fs.mkdir(path.join(source, 'etc/conf.d'));
    },
    ['-tag', 'before'],
  ));
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('locate', () => {
  // The second snapshot's unchanged subtrees (etc/nginx, home/.config) are answered from what the first one's search found.
  it('prints snapshot:path for every name that matches, dot files and directories included', async () => {
    const result = await kloset(['at', store, 'locate', '*.conf', 'conf.d']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.split('\n')).toEqual([
      `${first}:/etc/nginx/nginx.conf`,
      `${first}:/etc/nginx/sites/default.conf`,
      `${first}:/home/.config/app.conf`,
      `${second}:/etc/conf.d/`,
      `${second}:/etc/nginx/nginx.conf`,
      `${second}:/etc/nginx/sites/default.conf`,
      `${second}:/home/.config/app.conf`,
      '',
    ]);
  });

  it('tells which snapshot still has a file that is gone, and takes find as its name too', async () => {
    const result = await kloset(['at', store, 'find', 'report-202?.pdf']);
    expect(result.stdout).toBe(`${first}:/home/report-2025.pdf\n${second}:/home/report-2026.pdf\n`);
  });

  it('searches one snapshot with -snapshot, or those the selection flags name', async () => {
    expect((await kloset(['at', store, 'locate', '-snapshot', second, 'report-*'])).stdout).toBe(`${second}:/home/report-2026.pdf\n`);
    expect((await kloset(['at', store, 'locate', '-tag', 'before', 'report-*'])).stdout).toBe(`${first}:/home/report-2025.pdf\n`);
    expect((await kloset(['at', store, 'locate', '-latest', 'hosts'])).stdout).toBe(`${second}:/etc/hosts\n`);
  });

  it('reads an unchanged subtree from the store once for all the snapshots that share it', async () => {
    const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
    const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
    const { Locator } = (await loadBuilt('snapshot/locate.js')) as typeof import('../../src/snapshot/locate.js');
    const repository = await openBuiltStore(store);
    const headers = await listSnapshots(repository);
    const locator = new Locator((name) => name.endsWith('.conf'));
    const listed: string[][] = [];
    for (const header of headers) {
      const reader = new SnapshotReader(repository, header);
      const children = reader.children.bind(reader);
      const dirs: string[] = [];
      reader.children = (dir) => {
        dirs.push(dir.name);
        return children(dir);
      };
      const found: string[] = [];
      for await (const path of locator.find(reader, header.root, '/')) found.push(path);
      listed.push(dirs.sort());
      // What a fresh search, with nothing remembered, finds in this snapshot.
      const fresh: string[] = [];
      for await (const path of new Locator((name) => name.endsWith('.conf')).find(new SnapshotReader(repository, header), header.root, '/')) fresh.push(path);
      expect(found).toEqual(fresh);
      expect(found).toHaveLength(3);
    }
    // The second snapshot changed the root, etc (conf.d) and home (the report): nginx, sites and .config are not read again.
    expect(listed).toEqual([['', '.config', 'etc', 'home', 'nginx', 'sites'], ['', 'conf.d', 'etc', 'home']]);
  });

  it('exits 1 without a word when nothing matches, as locate(1) does', async () => {
    const result = await kloset(['at', store, 'locate', '*.docx']);
    expect(result).toMatchObject({ code: 1, stdout: '', stderr: '' });
  });

  it('refuses a path for a pattern, in one line', async () => {
    const result = await kloset(['at', store, 'locate', 'etc/*.conf']);
    expectOneLineError(result, /"etc\/\*\.conf": patterns match names, not paths/);
    expect(result.code).toBe(2);
  });
});

describe('locate in a store with a damaged directory', () => {
  it('names the directory it cannot read, still searches every other one and every snapshot, and exits partial', async () => {
    const damaged = await storeWithTwoSnapshots(
      'kloset-locate-damaged-',
      async (source) => {
        await fs.mkdir(path.join(source, 'a'));
        await fs.mkdir(path.join(source, 'b'));
        await fs.writeFile(path.join(source, 'a/x.conf'), 'x\n');
        await fs.writeFile(path.join(source, 'b/y.conf'), 'y\n');
      },
      async (source) => {
        await fs.writeFile(path.join(source, 'b/z.conf'), 'z\n');
      },
    );
    try {
      const { listSnapshots } = (await loadBuilt('snapshot/header.js')) as typeof import('../../src/snapshot/header.js');
      const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
      const repository = await openBuiltStore(damaged.store);
      const [header] = await listSnapshots(repository);
      // Directory a is the same in both snapshots: one blob, damaged for both.
      const tree = (await new SnapshotReader(repository, header).lookup('/a')).tree!;
      const location = (await repository.find(tree))!;
      await repository.store.close();
      const id = location.packId.toString('hex');
      await flipByte(path.join(damaged.store, 'packs', id.slice(0, 2), id), () => location.offset + (location.length >> 1));

      const result = await damaged.kloset(['at', damaged.store, 'locate', '*.conf']);
      expect(result.stdout).toBe(`${damaged.first}:/b/y.conf\n${damaged.second}:/b/y.conf\n${damaged.second}:/b/z.conf\n`);
      const lines = result.stderr.trim().split('\n');
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatch(new RegExp(`^damaged: snapshot ${damaged.first}: /a: directory cannot be read, not searched: .*authentication failed`));
      expect(lines[1]).toMatch(new RegExp(`^damaged: snapshot ${damaged.second}: /a: directory cannot be read`));
      expect(result.code).toBe(3);
    } finally {
      await fs.rm(damaged.work, { recursive: true, force: true });
    }
  });
});
