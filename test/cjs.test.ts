/**
 * Every package the code imports with ESM `import` has an ESM entry: an
 * import of a CommonJS package makes Node scan its source for export names
 * in every thread, about 0.1 s of CPU each for the larger ones. CommonJS
 * packages go through requireCjs (src/cjs.ts).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = path.resolve(import.meta.dirname, '../src');

async function sources(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')).map((e) => path.join(e.parentPath, e.name));
}

/** Bare package specifiers imported for their values (not `import type`, not node: built-ins, not relative paths). */
function valueImports(text: string): string[] {
  const found: string[] = [];
  const pattern = /^\s*import\s+(?!type\b)[^'";]*?from\s+'([^'.][^']*)'|(?<!typeof )\bimport\(\s*'([^'.][^']*)'\s*\)/gm;
  for (const match of text.matchAll(pattern)) {
    const specifier = match[1] ?? match[2];
    if (!specifier.startsWith('node:')) found.push(specifier);
  }
  return found;
}

async function isEsm(entry: string): Promise<boolean> {
  if (entry.endsWith('.mjs')) return true;
  if (entry.endsWith('.cjs')) return false;
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = await fs.readFile(path.join(dir, 'package.json'), 'utf8').catch(() => undefined);
    if (manifest !== undefined) return (JSON.parse(manifest) as { type?: string }).type === 'module';
  }
  return false;
}

describe('module loading', () => {
  it('imports only ESM packages; CommonJS ones go through requireCjs', async () => {
    const offenders: string[] = [];
    for (const file of await sources(SRC)) {
      for (const specifier of valueImports(await fs.readFile(file, 'utf8'))) {
        const entry = fileURLToPath(import.meta.resolve(specifier, pathToFileURL(file).href));
        if (!(await isEsm(entry))) offenders.push(`${path.relative(SRC, file)}: ${specifier}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('tells an ESM import from a CommonJS one', async () => {
    expect(valueImports("import { LRUCache } from 'lru-cache';\nimport type { X } from 'y';\nimport fs from 'node:fs';\nconst m = await import('fuse-native');")).toEqual([
      'lru-cache',
      'fuse-native',
    ]);
    const resolve = (specifier: string) => fileURLToPath(import.meta.resolve(specifier, pathToFileURL(path.join(SRC, 'cjs.ts')).href));
    expect(await isEsm(resolve('lru-cache'))).toBe(true);
    expect(await isEsm(resolve('@toondepauw/node-zstd'))).toBe(false);
  });
});
