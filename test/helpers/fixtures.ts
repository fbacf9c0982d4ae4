/**
 * What the CLI tests build on besides the CLI itself: generated source trees,
 * a comparison of two trees as a user would check them, store listings, and
 * the assertions every error test makes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { kloset, startKloset, tempDir, type CliResult } from './cli.js';

export { startKloset };

export const MiB = 1024 * 1024;

/** A file of `size` random bytes, written in 8 MiB blocks so a large file never sits in memory. */
export async function writeRandomFile(file: string, size: number, mark?: { at: number; bytes: Buffer }): Promise<void> {
  const handle = await fs.open(file, 'w');
  try {
    for (let done = 0; done < size; ) {
      const block = randomBytes(Math.min(8 * MiB, size - done));
      if (mark && mark.at >= done && mark.at + mark.bytes.length <= done + block.length) mark.bytes.copy(block, mark.at - done);
      await handle.write(block);
      done += block.length;
    }
  } finally {
    await handle.close();
  }
}

/** `kloset` with extra environment for every call: a private cache directory, another user's home. */
export function klosetWith(env: NodeJS.ProcessEnv) {
  return (args: string[], options: Parameters<typeof kloset>[1] = {}) =>
    kloset(args, { ...options, env: { ...env, ...(options.env ?? {}) } });
}

export interface TwoSnapshots {
  work: string;
  source: string;
  store: string;
  kloset: ReturnType<typeof klosetWith>;
  /** Short ids, oldest first. */
  first: string;
  second: string;
}

/**
 * A new store, in a new temporary directory, holding two snapshots of one
 * source: as `make` leaves it (backed up with `firstArgs`), then as
 * `change` leaves it.
 */
export async function storeWithTwoSnapshots(
  prefix: string,
  make: (source: string) => Promise<void>,
  change: (source: string) => Promise<void>,
  firstArgs: string[] = [],
): Promise<TwoSnapshots> {
  const work = await tempDir(prefix);
  const source = path.join(work, 'source');
  const store = path.join(work, 'store');
  const run = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(source);
  await make(source);
  expect((await run(['at', store, 'create'])).code).toBe(0);
  expect((await run(['at', store, 'backup', source, ...firstArgs])).code).toBe(0);
  await change(source);
  expect((await run(['at', store, 'backup', source])).code).toBe(0);
  const [first, second] = (JSON.parse((await run(['at', store, 'ls', '--json'])).stdout) as { id: string }[]).map((s) => s.id.slice(0, 8));
  return { work, source, store, kloset: run, first, second };
}

export interface TreeItem {
  kind: 'file' | 'directory' | 'symlink' | 'other';
  /** Permission bits (not for symlinks, whose mode Linux fixes at 0777). */
  mode?: number;
  /** Whole seconds, as the comparison is to the second. */
  mtime: number;
  size?: number;
  sha256?: string;
  target?: string;
}

/** Every entry under `root` (the root itself as '.'), by relative path, as lstat and the bytes show it. */
export async function describeTree(root: string): Promise<Record<string, TreeItem>> {
  const items: Record<string, TreeItem> = {};
  const visit = async (rel: string) => {
    const full = rel === '.' ? root : path.join(root, rel);
    const stat = await fs.lstat(full);
    const mtime = Math.floor(stat.mtimeMs / 1000);
    if (stat.isSymbolicLink()) {
      items[rel] = { kind: 'symlink', mtime, target: await fs.readlink(full) };
    } else if (stat.isDirectory()) {
      items[rel] = { kind: 'directory', mode: stat.mode & 0o7777, mtime };
      for (const name of await fs.readdir(full)) await visit(rel === '.' ? name : path.join(rel, name));
    } else if (stat.isFile()) {
      const sha256 = createHash('sha256').update(await fs.readFile(full)).digest('hex');
      items[rel] = { kind: 'file', mode: stat.mode & 0o7777, mtime, size: stat.size, sha256 };
    } else {
      items[rel] = { kind: 'other', mtime };
    }
  };
  await visit('.');
  return items;
}

/** Flips one byte of `file` in place, the middle one unless `at` picks another from the size: a failing disk, or a tamperer. */
export async function flipByte(file: string, at: (size: number) => number = (size) => size >> 1): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    const position = at((await handle.stat()).size);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, position);
    byte[0] ^= 0xff;
    await handle.write(byte, 0, 1, position);
  } finally {
    await handle.close();
  }
}

const UNDEFINED_ID = 0xffffffff;

/** A POSIX ACL in the kernel's xattr form (system.posix_acl_access): version 2, then (tag, permissions, id) per entry. */
export function posixAcl(namedUser: number, permissions: number): Buffer {
  const entries: [number, number, number][] = [
    [0x01, 7, UNDEFINED_ID], // owner
    [0x02, permissions, namedUser], // a named user
    [0x04, 5, UNDEFINED_ID], // owning group
    [0x10, 7, UNDEFINED_ID], // mask
    [0x20, 5, UNDEFINED_ID], // others
  ];
  const out = Buffer.alloc(4 + 8 * entries.length);
  out.writeUInt32LE(2, 0);
  entries.forEach(([tag, perm, id], i) => {
    out.writeUInt16LE(tag, 4 + 8 * i);
    out.writeUInt16LE(perm, 6 + 8 * i);
    out.writeUInt32LE(id, 8 + 8 * i);
  });
  return out;
}

/** SHA-256 of a file, for comparing large files without printing them on failure. */
export async function sha256File(file: string): Promise<string> {
  return createHash('sha256').update(await fs.readFile(file)).digest('hex');
}

/** Every file under a store with its size: two equal listings mean nothing was written. */
export async function storeListing(store: string): Promise<string[]> {
  const lines: string[] = [];
  const visit = async (dir: string) => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        lines.push(`${path.relative(store, full)}/`);
        await visit(full);
      } else {
        lines.push(`${path.relative(store, full)} ${(await fs.stat(full)).size}`);
      }
    }
  };
  await visit(store);
  return lines.sort();
}

/** Total bytes of the files in a store. */
export async function storeSize(store: string): Promise<number> {
  return (await storeListing(store))
    .filter((line) => !line.endsWith('/'))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
}

/** The store's finished packs (no temporary files), with their sizes. */
export async function packFiles(store: string): Promise<{ file: string; id: string; size: number }[]> {
  const packs: { file: string; id: string; size: number }[] = [];
  let dirs: string[];
  try {
    dirs = await fs.readdir(path.join(store, 'packs'));
  } catch {
    return packs;
  }
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await fs.readdir(path.join(store, 'packs', dir));
    } catch {
      continue;
    }
    for (const name of names) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const file = path.join(store, 'packs', dir, name);
      try {
        packs.push({ file, id: name, size: (await fs.stat(file)).size });
      } catch {
        // renamed or removed while we looked
      }
    }
  }
  return packs;
}

/** '3.00 MiB' → bytes, as format.ts writes sizes. */
export function parseBytes(text: string): number {
  const match = /^([\d.]+) (B|KiB|MiB|GiB|TiB)$/.exec(text.trim());
  if (!match) throw new Error(`not a size: ${text}`);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  return Number(match[1]) * 1024 ** units.indexOf(match[2]);
}

/** The "(N added to the store)" figure of a backup summary, in bytes. */
export function addedToStore(stdout: string): number {
  const match = /\(([\d.]+ [KMGT]?i?B) added to the store\)/.exec(stdout);
  if (!match) throw new Error(`no "added to the store" in: ${stdout}`);
  return parseBytes(match[1]);
}

/** The contract for every failure: exactly one line `kloset: <message>`, no stack trace. */
export function expectOneLineError(result: CliResult, message?: RegExp | string): void {
  expect(result.stderr, 'a stack trace').not.toMatch(/^\s+at /m);
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  expect(lines, `stderr: ${result.stderr}`).toHaveLength(1);
  expect(lines[0]).toMatch(/^kloset: \S/);
  if (message !== undefined) expect(lines[0]).toMatch(message);
}

/** No stack trace anywhere in the output: warnings and errors are for users. */
export function expectNoStackTrace(result: CliResult): void {
  expect(result.stderr + result.stdout).not.toMatch(/^\s+at .+[:(]/m);
}

export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
