/**
 * Extended attributes belong to symlinks, FIFOs and device nodes as much as
 * to files (an SELinux label on every one of them, trusted.* marks): a
 * backup reads them from the entry itself, never through a link, and a
 * restore puts them back on it. trusted.* needs root, as mknod does.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith } from '../helpers/fixtures.js';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-specialxattrs-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(source);
  await fs.writeFile(path.join(source, 'plain.txt'), 'the link points here\n');
  await fs.symlink('plain.txt', path.join(source, 'link'));
  execFileSync('mkfifo', [path.join(source, 'queue')]);
  execFileSync('mknod', [path.join(source, 'null-like'), 'c', '1', '3']);
  // The binding sets attributes with lsetxattr: on the link itself, not on plain.txt.
  setAttributeSync(path.join(source, 'link'), 'trusted.kloset.mark', 'on the link');
  setAttributeSync(path.join(source, 'queue'), 'trusted.kloset.mark', 'on the FIFO');
  setAttributeSync(path.join(source, 'null-like'), 'trusted.kloset.mark', 'on the device');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
}, 60_000);

afterAll(() => fs.rm(work, { recursive: true, force: true }));

describe('the extended attributes of symlinks, FIFOs and devices', () => {
  it('come back from a restore on the entries that had them', async () => {
    const backup = await kloset(['at', store, 'backup', source]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
    const target = path.join(work, 'restored');
    const restore = await kloset(['at', store, 'restore', '-to', target]);
    expect(restore.stderr).toBe('');
    expect(restore.code).toBe(0);
    const mark = (name: string) => getAttributeSync(path.join(target, name), 'trusted.kloset.mark')?.toString();
    expect(mark('link')).toBe('on the link');
    expect(mark('queue')).toBe('on the FIFO');
    expect(mark('null-like')).toBe('on the device');
    // Not followed either way: the file the link points to has none.
    expect(mark('plain.txt')).toBeUndefined();
  }, 60_000);
});
