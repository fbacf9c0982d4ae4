/**
 * A file replaced by a rename between the walk's lstat and the chunk
 * worker's open (an editor's save, a package manager's install): what the
 * snapshot records about the file must be the file whose bytes it holds.
 */
import { chmodSync, chownSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceEntry, SkippedChild } from '../../src/snapshot/importer.js';
import { loadBuilt, openLocalStore } from '../helpers/built.js';

const { backup } = (await loadBuilt('snapshot/builder.js')) as typeof import('../../src/snapshot/builder.js');
const { SnapshotReader } = (await loadBuilt('snapshot/reader.js')) as typeof import('../../src/snapshot/reader.js');
const { Repository } = (await loadBuilt('kloset/repository.js')) as typeof import('../../src/kloset/repository.js');
const { FsImporter } = (await loadBuilt('connectors/fs/importer.js')) as typeof import('../../src/connectors/fs/importer.js');
type Repository = import('../../src/kloset/repository.js').Repository;

describe('a file replaced by a rename while the backup runs', () => {
  let dir: string;
  let repository: Repository;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'kloset-replaced-'));
    repository = await Repository.create(await openLocalStore(path.join(dir, 'store')), { passphrase: null });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('records the mode, owner and inode of the file it read, not of the one the walk listed', async () => {
    const source = path.join(dir, 'source');
    const file = path.join(source, 'key');
    const replacement = path.join(dir, 'key.new');
    await import('node:fs/promises').then((fs) => fs.mkdir(source));
    writeFileSync(file, 'placeholder');
    chmodSync(file, 0o644);
    writeFileSync(replacement, 'the private key');
    chmodSync(replacement, 0o600);
    const root = process.getuid?.() === 0;
    if (root) chownSync(file, 4321, 4321);
    const replaced = statSync(replacement);

    /** Lists the directory as it is, then puts the replacement in place before any file is opened. */
    class SwappingImporter extends FsImporter {
      override async *children(rel: string): AsyncIterable<SourceEntry | SkippedChild> {
        yield* super.children(rel);
        // The builder asks for the next child right after it handed the last one to the chunk pool,
        // before the pool's jobs leave for the workers.
        if (rel === '') renameSync(replacement, file);
      }
    }

    const header = await backup(repository, new SwappingImporter(source));
    const reader = new SnapshotReader(repository, header);
    const entries = [];
    for await (const entry of reader.children(reader.root)) entries.push(entry);
    expect(entries.map((e) => e.name)).toEqual(['key']);
    const [entry] = entries;
    const content = await reader.openFile(entry);
    const bytes = [];
    for await (const chunk of content.stream()) bytes.push(chunk);
    expect(Buffer.concat(bytes).toString()).toBe('the private key');
    // The metadata goes with those bytes: a restore must not make the key world-readable, or another user's.
    expect(entry.mode & 0o777).toBe(0o600);
    expect(entry.ino).toBe(replaced.ino);
    expect(entry.size).toBe('the private key'.length);
    if (root) expect([entry.uid, entry.gid]).toEqual([replaced.uid, replaced.gid]);
  });
});
