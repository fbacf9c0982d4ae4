import type { SnapshotReader } from './reader.js';
import type { Entry } from './tree.js';

/**
 * Paths below a directory whose last component `match`es, relative to it,
 * in the order `ls -R` shows them; directories end with a slash.
 */
type Matches = string[];

/**
 * Finds entries by name across snapshots. A directory's tree id is a MAC
 * of its whole content, so the answer for an id is remembered: a subtree
 * that did not change between snapshots is read once for all of them.
 */
export class Locator {
  private readonly known = new Map<string, Matches>();

  constructor(private readonly match: (name: string) => boolean) {}

  /** Matching paths under `dir` (an entry of `reader`'s snapshot at `dirPath`), as absolute paths. */
  async *find(reader: SnapshotReader, dir: Entry, dirPath: string): AsyncGenerator<string> {
    const prefix = dirPath.endsWith('/') ? dirPath : `${dirPath}/`;
    for (const rel of await this.below(reader, dir)) yield prefix + rel;
  }

  private async below(reader: SnapshotReader, dir: Entry): Promise<Matches> {
    const key = dir.tree?.toString('latin1');
    const remembered = key === undefined ? undefined : this.known.get(key);
    if (remembered) return remembered;
    const found: Matches = [];
    for await (const child of reader.children(dir)) {
      const isDirectory = child.kind === 'directory';
      if (this.match(child.name)) found.push(isDirectory ? `${child.name}/` : child.name);
      if (isDirectory) for (const rel of await this.below(reader, child)) found.push(`${child.name}/${rel}`);
    }
    if (key !== undefined) this.known.set(key, found);
    return found;
  }
}
