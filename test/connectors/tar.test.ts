/**
 * The tar writer's headers, read back by GNU tar: what ustar cannot hold
 * (long and non-ASCII paths and link targets, large ids, nanoseconds) goes
 * through pax records and comes back exact.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { tarHeader } from '../../src/connectors/archive/tar.js';

const run = promisify(execFile);
const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

let work: string;

beforeAll(async () => {
  work = await tempDir('kloset-ui-tar-');
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function extract(name: string, members: Buffer[]): Promise<string> {
  const file = path.join(work, `${name}.tar`);
  await fs.writeFile(file, Buffer.concat([...members, Buffer.alloc(1024)]));
  const dir = path.join(work, name);
  await fs.mkdir(dir);
  await run('tar', ['-xf', file, '-C', dir, '--numeric-owner']);
  return dir;
}

describe('tar headers', () => {
  it('carry a long non-ASCII path, nanoseconds and the content through pax', async () => {
    const deep = `${'répertoire-'.repeat(12)}/${'fichier-très-long-'.repeat(8)}.txt`;
    const data = Buffer.from('contenu\n');
    const dir = await extract('long', [
      tarHeader({ path: deep.split('/')[0] + '/', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, type: '5' }),
      tarHeader({ path: deep, mode: 0o640, uid: 0, gid: 0, size: data.length, mtime: 1_600_000_000, type: '0' }, 123_456_789),
      data,
      pad(data.length),
    ]);
    const file = path.join(dir, deep);
    expect(await fs.readFile(file, 'utf8')).toBe('contenu\n');
    const stat = await fs.stat(file, { bigint: true });
    expect(stat.mtimeNs).toBe(1_600_000_000_123_456_789n);
    expect(Number(stat.mode & 0o777n)).toBe(0o640);
  });

  it('carry a long symlink target and a path that only fits with the ustar prefix', async () => {
    const target = `${'t'.repeat(150)}/${'ü'.repeat(20)}`;
    const prefixed = `${'p'.repeat(120)}/${'n'.repeat(90)}`;
    const dir = await extract('links', [
      tarHeader({ path: 'link', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, type: '2', linkname: target }),
      tarHeader({ path: `${'p'.repeat(120)}/`, mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, type: '5' }),
      tarHeader({ path: prefixed, mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_600_000_000, type: '0' }),
    ]);
    expect(await fs.readlink(path.join(dir, 'link'))).toBe(target);
    expect((await fs.stat(path.join(dir, prefixed))).size).toBe(0);
  });

  it.skipIf(process.getuid?.() !== 0)('carry ids beyond the octal fields (extracted as root)', async () => {
    const dir = await extract('ids', [tarHeader({ path: 'owned', mode: 0o600, uid: 5_000_000, gid: 4_000_000, size: 0, mtime: 1_600_000_000, type: '0' })]);
    const stat = await fs.stat(path.join(dir, 'owned'));
    expect([stat.uid, stat.gid]).toEqual([5_000_000, 4_000_000]);
  });

  it('carry user and group names longer than the ustar fields whole, as GNU tar reads them', async () => {
    // A directory service's names (SSSD, winbind) often pass ustar's 32 bytes; ids alone would not find them on another machine.
    const user = 'firstname.lastname@ad.example.com';
    const group = 'domain-users@ad.example.com-long-tail';
    const exact = 'u'.repeat(32);
    const file = path.join(work, 'names.tar');
    await fs.writeFile(
      file,
      Buffer.concat([
        tarHeader({ path: 'long', mode: 0o644, uid: 1000, gid: 1000, size: 0, mtime: 1_600_000_000, type: '0', uname: user, gname: group }),
        tarHeader({ path: 'exact', mode: 0o644, uid: 1000, gid: 1000, size: 0, mtime: 1_600_000_000, type: '0', uname: exact, gname: 'g' }),
        Buffer.alloc(1024),
      ]),
    );
    const { stdout } = await run('tar', ['-tvf', file]);
    const owners = stdout.trim().split('\n').map((line) => line.split(/\s+/)[1]);
    expect(owners).toEqual([`${user}/${group}`, `${exact}/g`]);
  });

  it('have a valid checksum and the ustar magic', () => {
    const header = tarHeader({ path: 'a.txt', mode: 0o644, uid: 1000, gid: 1000, size: 5, mtime: 1_600_000_000, type: '0', uname: 'me', gname: 'us' });
    expect(header.length).toBe(512);
    expect(header.subarray(257, 263).toString()).toBe('ustar\0');
    const stored = parseInt(header.subarray(148, 154).toString(), 8);
    const copy = Buffer.from(header);
    copy.fill(0x20, 148, 156);
    expect(stored).toBe(copy.reduce((sum, b) => sum + b, 0));
  });
});
