/**
 * A source that gives names as they are written, including names no
 * directory can hold ('.', '..', a name with a '/' or a NUL): what a
 * snapshot forged by someone holding the store's key may contain.
 */
import type { Importer, SourceEntry } from '../../src/snapshot/importer.js';

const MTIME = { sec: 1_700_000_000, nsec: 0 };

/** Files are strings, directories objects; every key is one name, whatever it holds. */
export type Tree = { [name: string]: string | Tree };

/** A forged source: `tree`, each directory's names in order, by the paths the backup asks for. */
export class ForgedImporter implements Importer {
  readonly type = 'fs';
  readonly origin = 'forged';
  readonly source = '/forged';
  private readonly byPath = new Map<string, string | Tree>();

  constructor(private readonly tree: Tree) {
    const walk = (dir: string, at: string | Tree) => {
      this.byPath.set(dir, at);
      if (typeof at !== 'string') for (const [name, value] of Object.entries(at)) walk(dir === '' ? name : `${dir}/${name}`, value);
    };
    walk('', tree);
  }

  private entry(name: string, value: string | Tree): SourceEntry {
    return typeof value === 'string'
      ? { name, kind: 'file', mode: 0o100644, uid: 0, gid: 0, size: Buffer.byteLength(value), mtime: MTIME }
      : { name, kind: 'directory', mode: 0o040755, uid: 0, gid: 0, size: 0, mtime: MTIME };
  }

  async rootEntry(): Promise<SourceEntry> {
    return this.entry('', this.tree);
  }

  async *children(dir: string): AsyncIterable<SourceEntry> {
    const tree = this.byPath.get(dir) as Tree;
    for (const name of Object.keys(tree).sort()) yield this.entry(name, tree[name]);
  }

  async *read(file: string): AsyncIterable<Buffer> {
    yield Buffer.from(this.byPath.get(file) as string);
  }

  async close(): Promise<void> {}
}
