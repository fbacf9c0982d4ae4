import { joinPath } from './importer.js';
import { IntegrityError, NotFoundError } from '../errors.js';
import { packKey } from '../kloset/packfile.js';
import type { Repository } from '../kloset/repository.js';
import { BlobType } from '../kloset/sealing.js';
import { verifyBlob } from '../kloset/verify.js';
import type { SnapshotHeader } from './header.js';
import { Slots } from './slots.js';
import { decodeChunkList, decodeDirectory, decodePage, follows, OUT_OF_ORDER, type Entry } from './tree.js';

export interface DamagedPath {
  snapshot: SnapshotHeader;
  path: string;
  reason: string;
}

/** Enough to keep a store on S3 busy; each read holds one blob, up to a chunk's maximum size. */
const READS_AT_ONCE = 16;

/**
 * Decides whether a blob is sound. `damaged` comes from a full pack scan;
 * without it, each blob is fetched with a ranged read and verified once.
 */
export class BlobJudge {
  private readonly verdicts = new Map<string, Promise<boolean>>();
  /**
   * What a directory tree holds that is damaged, by tree id, relative to it: a tree id is a MAC of
   * its whole content, so a subtree that a long series of snapshots shares is walked once for all.
   */
  readonly subtrees = new Map<string, Promise<Damage[]>>();
  /** The same for the pages of large directories, by page id (undefined: the page does not open). */
  readonly pages = new Map<string, Promise<WalkedPage | undefined>>();
  /**
   * Ranged reads at once: a page of files, or a large file's chunks, asks for all its blobs together,
   * and reading them all at once held hundreds of megabytes of chunks in memory.
   */
  private readonly reads = new Slots(READS_AT_ONCE);

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
    const release = await this.reads.acquire();
    try {
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
    } finally {
      release();
    }
  }
}

/** Damage below a directory: the path relative to it ('' for the directory itself), and why. */
interface Damage {
  path: string;
  reason: string;
}

/** A directory page walked: its first and last names, to check the order of the pages around it, and the damage below it. */
interface WalkedPage {
  first?: string;
  last?: string;
  damage: Damage[];
}

/** Walks a snapshot's tree and names every file or directory that cannot be read back whole. */
export async function verifySnapshot(
  repository: Repository,
  snapshot: SnapshotHeader,
  judge: BlobJudge,
  onDamage: (damage: DamagedPath) => void,
): Promise<void> {
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

  const checkFile = async (path: string, entry: Entry, report: (path: string, reason: string) => void) => {
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

  const walk = (dir: Entry): Promise<Damage[]> => {
    const key = dir.tree?.toString('latin1');
    const known = key === undefined ? undefined : judge.subtrees.get(key);
    if (known) return known;
    const walked = walkTree(dir);
    if (key !== undefined) judge.subtrees.set(key, walked);
    return walked;
  };

  const walkTree = async (dir: Entry): Promise<Damage[]> => {
    const node = dir.tree && (await judge.sound(dir.tree)) ? await read(dir.tree, BlobType.tree, decodeDirectory) : undefined;
    if (!node) return [{ path: '', reason: 'directory damaged or missing' }];
    if ('entries' in node) return walkEntries(node.entries);
    // The directory's own damage first, then what its entries hold, page by page.
    const own: Damage[] = [];
    const below: Damage[] = [];
    let last: string | undefined;
    for (const page of node.pages) {
      const walked = await walkPage(page.id);
      if (!walked) {
        own.push({ path: '', reason: `directory page from ${JSON.stringify(page.first)} damaged` });
        continue;
      }
      // Each page is in order (decodePage); the next must begin after it ends, as a reader requires.
      if (last !== undefined && walked.first !== undefined && !follows(last, walked.first)) own.push({ path: '', reason: OUT_OF_ORDER });
      last = walked.last ?? last;
      below.push(...walked.damage);
    }
    return [...own, ...below];
  };

  /** A page, as a tree: one that a long series of snapshots shares, in directories that differ elsewhere, is walked once. */
  const walkPage = (id: Buffer): Promise<WalkedPage | undefined> => {
    const key = id.toString('latin1');
    const known = judge.pages.get(key);
    if (known) return known;
    const walked = (async () => {
      const entries = (await judge.sound(id)) ? await read(id, BlobType.treePage, decodePage) : undefined;
      if (!entries) return undefined;
      return { first: entries[0]?.name, last: entries.at(-1)?.name, damage: await walkEntries(entries) };
    })();
    judge.pages.set(key, walked);
    return walked;
  };

  const walkEntries = async (entries: Entry[]): Promise<Damage[]> => {
    const found: Damage[] = [];
    const report = (path: string, reason: string) => void found.push({ path, reason });
    await Promise.all(entries.filter((e) => e.kind === 'file').map((e) => checkFile(e.name, e, report)));
    for (const e of entries) {
      if (e.kind !== 'directory') continue;
      for (const below of await walk(e)) report(below.path === '' ? e.name : joinPath(e.name, below.path), below.reason);
    }
    return found;
  };

  for (const damage of await walk(snapshot.root)) onDamage({ snapshot, path: '/' + damage.path, reason: damage.reason });
}
