import { joinPath } from './importer.js';
import { IntegrityError, NotFoundError } from '../errors.js';
import { packKey } from '../kloset/packfile.js';
import type { Repository } from '../kloset/repository.js';
import { BlobType } from '../kloset/sealing.js';
import { verifyBlob } from '../kloset/verify.js';
import type { SnapshotHeader } from './header.js';
import { decodeChunkList, decodeDirectory, decodePage, follows, OUT_OF_ORDER, type Entry } from './tree.js';

export interface DamagedPath {
  snapshot: SnapshotHeader;
  path: string;
  reason: string;
}

/**
 * Decides whether a blob is sound. `damaged` comes from a full pack scan;
 * without it, each blob is fetched with a ranged read and verified once.
 */
export class BlobJudge {
  private readonly verdicts = new Map<string, Promise<boolean>>();

  constructor(
    private readonly repository: Repository,
    private readonly damaged?: Set<string>,
  ) {}

  get checked(): number {
    return this.verdicts.size;
  }

  sound(id: Buffer): Promise<boolean> {
    const key = id.toString('latin1');
    let verdict = this.verdicts.get(key);
    if (!verdict) {
      verdict = this.judge(id, key);
      this.verdicts.set(key, verdict);
    }
    return verdict;
  }

  private async judge(id: Buffer, key: string): Promise<boolean> {
    const location = await this.repository.find(id);
    if (!location) return false;
    if (this.damaged) return !this.damaged.has(key);
    let sealed: Buffer;
    try {
      sealed = await this.repository.store.getRange(packKey(location.packId), location.offset, location.length);
    } catch (err) {
      // A pack gone or cut short is damage; a store that cannot be reached says nothing about the blob.
      if (err instanceof IntegrityError || err instanceof NotFoundError) return false;
      throw err;
    }
    try {
      await verifyBlob(this.repository, id, location, sealed);
      return true;
    } catch {
      return false;
    }
  }
}

/** Walks a snapshot's tree and names every file or directory that cannot be read back whole. */
export async function verifySnapshot(
  repository: Repository,
  snapshot: SnapshotHeader,
  judge: BlobJudge,
  onDamage: (damage: DamagedPath) => void,
): Promise<void> {
  const report = (path: string, reason: string) => onDamage({ snapshot, path: '/' + path, reason });
  /**
   * A directory, page or chunk list read to go on walking. Its pack may not have been read whole (a
   * --read-data-subset or --no-read-data check): then this read is what finds it damaged or gone, which
   * is reported as such, and the walk goes on with the rest.
   */
  const read = async <T>(id: Buffer, type: BlobType, decode: (data: Buffer) => T): Promise<T | undefined> => {
    try {
      return decode(await repository.getBlob(id, type));
    } catch (err) {
      if (err instanceof IntegrityError || err instanceof NotFoundError) return undefined;
      throw err;
    }
  };

  const checkFile = async (path: string, entry: Entry) => {
    const content = entry.content;
    if (!content) return;
    let chunks;
    if ('chunks' in content) chunks = content.chunks;
    else {
      const list = (await judge.sound(content.list)) ? await read(content.list, BlobType.content, decodeChunkList) : undefined;
      if (!list) return report(path, 'chunk list damaged or missing');
      chunks = list;
    }
    const verdicts = await Promise.all(chunks.map((c) => judge.sound(c.id)));
    const bad = verdicts.filter((ok) => !ok).length;
    if (bad) report(path, `${bad} of ${chunks.length} chunks damaged or missing`);
  };

  const walk = async (path: string, dir: Entry): Promise<void> => {
    const node = dir.tree && (await judge.sound(dir.tree)) ? await read(dir.tree, BlobType.tree, decodeDirectory) : undefined;
    if (!node) return report(path, 'directory damaged or missing');
    const pages: Entry[][] = [];
    if ('entries' in node) pages.push(node.entries);
    else {
      for (const page of node.pages) {
        const entries = (await judge.sound(page.id)) ? await read(page.id, BlobType.treePage, decodePage) : undefined;
        if (!entries) {
          report(path, `directory page from ${JSON.stringify(page.first)} damaged`);
          continue;
        }
        // Each page is in order (decodePage); the next must begin after it ends, as a reader requires.
        const last = pages.at(-1)?.at(-1)?.name;
        if (last !== undefined && entries.length > 0 && !follows(last, entries[0]!.name)) report(path, OUT_OF_ORDER);
        pages.push(entries);
      }
    }
    for (const entries of pages) {
      await Promise.all(entries.filter((e) => e.kind === 'file').map((e) => checkFile(joinPath(path, e.name), e)));
      for (const e of entries) if (e.kind === 'directory') await walk(joinPath(path, e.name), e);
    }
  };

  await walk('', snapshot.root);
}
