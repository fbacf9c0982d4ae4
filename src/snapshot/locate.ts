import { IntegrityError, NotFoundError } from '../errors.js';
import { listedName, shownName } from './names.js';
import type { SnapshotReader } from './reader.js';
import type { Entry } from './tree.js';

/** What a search needs of one directory: its children that match, and its subdirectories, in listing order. */
type Listing = { name: string; matched: boolean; directory?: Entry }[];

/**
 * Finds entries by name across snapshots. A directory's tree id is a MAC
 * of its whole content, so what a directory holds is remembered by id: a
 * subtree that did not change between snapshots is read from the store
 * once for all of them. Memory holds the matches and the directories, not
 * the other files.
 */
export class Locator {
  private readonly known = new Map<string, Listing>();

  /**
   * `onDamaged` is told of each directory that cannot be read (damaged, or its pack gone): the search
   * goes on without what it holds rather than stop, so the other directories and snapshots are still searched.
   */
  constructor(
    private readonly match: (name: string) => boolean,
    private readonly onDamaged?: (dirPath: string, err: Error) => void,
  ) {}

  /**
   * Matching paths under `dir`, an entry of `reader`'s snapshot at `dirPath`, in `ls -R` order; directories
   * end with a slash, and a name no directory can hold is quoted (listedName).
   */
  async *find(reader: SnapshotReader, dir: Entry, dirPath: string): AsyncGenerator<string> {
    const prefix = dirPath.endsWith('/') ? dirPath : `${dirPath}/`;
    let listing: Listing;
    try {
      listing = await this.listing(reader, dir);
    } catch (err) {
      if (!this.onDamaged || !(err instanceof IntegrityError || err instanceof NotFoundError)) throw err;
      this.onDamaged(dirPath, err);
      return;
    }
    for (const child of listing) {
      const name = listedName(child.name);
      if (child.matched) yield child.directory ? `${prefix}${name}/` : prefix + name;
      if (child.directory) yield* this.find(reader, child.directory, prefix + name);
    }
  }

  private async listing(reader: SnapshotReader, dir: Entry): Promise<Listing> {
    const key = dir.tree?.toString('latin1');
    const remembered = key === undefined ? undefined : this.known.get(key);
    if (remembered) return remembered;
    const listing: Listing = [];
    for await (const child of reader.children(dir)) {
      // A name that is not UTF-8 is typed as it is shown, with U+FFFD.
      const matched = this.match(child.name) || (!child.name.isWellFormed() && this.match(shownName(child.name)));
      if (matched || child.kind === 'directory') listing.push({ name: child.name, matched, directory: child.kind === 'directory' ? child : undefined });
    }
    if (key !== undefined) this.known.set(key, listing);
    return listing;
  }
}
