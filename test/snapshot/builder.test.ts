/**
 * The backup builder over a streamed source (the way an S3 bucket is read):
 * how many downloads it keeps going, and that what it stores reads back.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Importer, SourceEntry } from '../../src/snapshot/importer.js';
import { loadBuilt, openLocalStore } from '../helpers/built.js';

const { backup } = (await loadBuilt('snapshot/builder.js')) as typeof import('../../src/snapshot/builder.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
type Repository = import('../../src/kloset/repository.js').Repository;

const MTIME = { sec: 1_700_000_000, nsec: 0 };
const MiB = 1024 * 1024;

/** Files held in memory, streamed in 64 KiB pieces as a download delivers them; it logs when each read starts and ends. */
class StreamedImporter implements Importer {
  readonly type = 'memory';
  readonly origin = 'test';
  readonly source = 'memory:';
  readonly events: string[] = [];

  constructor(
    private readonly files: Map<string, Buffer>,
    readonly readConcurrency: number,
  ) {}

  async rootEntry(): Promise<SourceEntry> {
    return { name: '', kind: 'directory', mode: 0o040755, uid: 0, gid: 0, size: 0, mtime: MTIME };
  }

  async *children(): AsyncIterable<SourceEntry> {
    for (const [name, bytes] of [...this.files].sort(([a], [b]) => (a < b ? -1 : 1))) {
      yield { name, kind: 'file', mode: 0o100644, uid: 0, gid: 0, size: bytes.length, mtime: MTIME };
    }
  }

  async *read(name: string): AsyncIterable<Buffer> {
    this.events.push(`read ${name}`);
    const bytes = this.files.get(name)!;
    for (let at = 0; at < bytes.length; at += 64 * 1024) yield Buffer.from(bytes.subarray(at, at + 64 * 1024));
    this.events.push(`read ${name} done`);
  }

  async close(): Promise<void> {}
}

describe('the backup builder', () => {
  let dir: string;
  let repository: Repository;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kloset-builder-'));
    repository = await Repository.create(await openLocalStore(path.join(dir, 'store')), { passphrase: null });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('starts the next download once a file is read, while that file is still being chunked', async () => {
    // 24 MiB is three times what the pool takes from one stream before the source must wait:
    // the last 8 MiB are still being chunked when the read ends.
    const files = new Map([
      ['a-large.txt', Buffer.from(randomBytes(12 * MiB).toString('hex'))],
      ['b-small.bin', randomBytes(100_000)],
    ]);
    const importer = new StreamedImporter(files, 1);
    const header = await backup(repository, importer, {
      onProgress: ({ files: done }) => importer.events.push(`${done} chunked`),
    });
    // One read slot: the second file's download waits for the first read, not for its chunking.
    expect(importer.events.indexOf('read b-small.bin')).toBeGreaterThan(importer.events.indexOf('read a-large.txt done'));
    expect(importer.events.indexOf('read b-small.bin')).toBeLessThan(importer.events.indexOf('1 chunked'));

    const reader = new SnapshotReader(repository, header);
    for await (const entry of reader.children(reader.root)) {
      const content = await reader.openFile(entry);
      const parts: Buffer[] = [];
      for await (const part of content.stream()) parts.push(part);
      expect(Buffer.concat(parts).equals(files.get(entry.name)!)).toBe(true);
    }
  });
});
