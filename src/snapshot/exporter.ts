import type { Entry } from './tree.js';

/**
 * A destination of a restore (a directory, a bucket). Paths are relative to
 * the destination's root, '/'-separated; each name has been checked by
 * checkEntryName, so none is empty, '.', '..' or holds a '/'.
 */
export interface Exporter {
  readonly target: string;
  /** Called before the directory's children. */
  createDirectory(path: string, entry: Entry): Promise<void>;
  writeFile(path: string, entry: Entry, content: AsyncIterable<Buffer>): Promise<void>;
  /**
   * Several files whose whole content is at hand, as writeFile would write
   * each; resolves with each one's failure (undefined when written). An
   * exporter that can do better than one at a time (a local directory, on a
   * thread of its own) has it; for the others, the restore calls writeFile.
   */
  writeFiles?(files: { path: string; entry: Entry; data: Buffer }[]): Promise<(Error | undefined)[]>;
  /**
   * Makes `path` another name of the file already restored at `existing`
   * (a hard link, as the source had it). An exporter without links leaves
   * it out, and the restore writes the content again.
   */
  linkFile?(existing: string, path: string, entry: Entry): Promise<void>;
  /** Symlinks, devices, FIFOs; an exporter may skip what it cannot represent. */
  createSpecial(path: string, entry: Entry): Promise<void>;
  /** Called after the directory's children, so their writes do not change its times. */
  finishDirectory(path: string, entry: Entry): Promise<void>;
  close(): Promise<void>;
  /**
   * The restore is being stopped: remove what is half written, so nothing
   * incomplete is left looking whole. From then on writeFile creates
   * nothing: the restore's tasks still running until the process exits
   * must not start files that would be cut short.
   */
  abandon?(): void | Promise<void>;
}

/** A name from a snapshot is data, not a path: refuse anything that would climb or nest. */
export function checkEntryName(name: string): string | undefined {
  if (name === '' || name === '.' || name === '..') return `invalid name ${JSON.stringify(name)}`;
  if (name.includes('/') || name.includes('\0')) return `invalid name ${JSON.stringify(name)}`;
  return undefined;
}
