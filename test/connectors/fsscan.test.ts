// The byte count behind a backup's progress estimate: it must leave out what the backup leaves out.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadBuilt } from '../helpers/built.js';

const { FsImporter } = (await loadBuilt('connectors/fs/importer.js')) as typeof import('../../src/connectors/fs/importer.js');

let source: string;

beforeAll(() => {
  source = mkdtempSync(path.join(os.tmpdir(), 'kloset-scan-'));
  mkdirSync(path.join(source, 'logs'));
  mkdirSync(path.join(source, 'src'));
  writeFileSync(path.join(source, 'logs', 'big.log'), Buffer.alloc(300_000));
  writeFileSync(path.join(source, 'src', 'a.txt'), Buffer.alloc(1000));
  writeFileSync(path.join(source, 'src', 'b.txt'), Buffer.alloc(2000));
  writeFileSync(path.join(source, 'top.bin'), Buffer.alloc(100_000));
});
afterAll(() => rmSync(source, { recursive: true, force: true }));

it('counts the bytes of every file', async () => {
  expect(await new FsImporter(source).scan({})).toBe(403_000);
});

it('leaves out excluded paths and whole excluded directories', async () => {
  expect(await new FsImporter(source).scan({ skip: (p) => p === 'logs' || p === 'src/b.txt' })).toBe(101_000);
});

it('leaves out files over the size limit, as the backup does', async () => {
  expect(await new FsImporter(source).scan({ largerThan: 100_000 })).toBe(103_000);
  expect(await new FsImporter(source).scan({ largerThan: 99_999 })).toBe(3_000);
});

it('applies the size limit to a source that is one file', async () => {
  const file = path.join(source, 'logs', 'big.log');
  expect(await new FsImporter(file).scan({})).toBe(300_000);
  expect(await new FsImporter(file).scan({ largerThan: 1000 })).toBe(0);
});
