import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsExporter } from '../../src/connectors/fs/exporter.js';
import type { Entry } from '../../src/snapshot/tree.js';
import { tempDir } from '../helpers/cli.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('kloset-fsexporter-');
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

const now = { sec: 1_700_000_000, nsec: 0 };
const directory: Entry = { name: '', kind: 'directory', mode: 0o040755, uid: process.getuid!(), gid: process.getgid!(), size: 0, mtime: now };
const file = (name: string, size: number): Entry => ({ name, kind: 'file', mode: 0o100644, uid: process.getuid!(), gid: process.getgid!(), size, mtime: now });

async function* once(data: Buffer): AsyncIterable<Buffer> {
  yield data;
}

describe('a restore into a directory that is stopped', () => {
  it('loses the file being written, and starts no other', async () => {
    const target = path.join(work, 'stopped');
    const exporter = new FsExporter(target);
    await exporter.createDirectory('', directory);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const cut = exporter.writeFile(
      'cut.bin',
      file('cut.bin', 8),
      (async function* () {
        yield Buffer.from('half');
        await gate;
        yield Buffer.from('rest');
      })(),
    );
    while (!(await fs.stat(path.join(target, 'cut.bin')).then((s) => s.size === 4, () => false))) await new Promise((r) => setTimeout(r, 5));

    exporter.abandon();
    // What the restore's other tasks still do until the process exits.
    await expect(exporter.writeFile('late.bin', file('late.bin', 4), once(Buffer.from('late')))).rejects.toThrow(/late\.bin: not written, the restore is stopping/);
    release();
    await cut;
    expect(await fs.readdir(target)).toEqual([]);
  });
});
