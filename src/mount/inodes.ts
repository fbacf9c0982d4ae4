import type { Entry } from '../snapshot/tree.js';

/** The root of the mount, as FUSE numbers it. */
export const ROOT_INODE = 1;

/** fuse-native passes an inode number in 32 bits, and 0xffffffff is FUSE's "unknown". */
const LAST_INODE = 0xfffffffe;

/**
 * Inode numbers for the mount, as `cp -a`, `rsync -H`, `tar`, `du`, `diff`
 * and `find` use them: each name has a number of its own, except the names
 * of a hard-linked file, which share one; and a number stays the same for as
 * long as the mount runs, however often the kernel forgets and looks the
 * name up again.
 *
 * A directory, when the first of its entries is looked up or listed, takes
 * a run of numbers, one per entry, and its entry at place i in name order
 * is the i-th of the run. What is kept is one pair of numbers per directory
 * so numbered, and one per hard-linked file: far less than a number per name.
 * A snapshot's names are numbered from where each lies, so the same tree in
 * two snapshots (or two directories alike in one) gives different numbers,
 * and `diff` compares their files rather than take them for one.
 *
 * The numbers are given out in the order the mount is walked, so they differ
 * from one mount to the next. Past 2^32 - 2 numbers they start again from the
 * first, and may then repeat those of the directories seen first.
 */
export class InodeNumbers {
  private next = ROOT_INODE + 1;
  /** For each directory numbered, by its own number: the number just before its first entry's. */
  private readonly runs = new Map<number, number>();
  /** Each hard-linked file's number (that of the name seen first), by snapshot, device and inode in the source. */
  private readonly linked = new Map<string, number>();
  /** The every-snapshot view's own names and the snapshots' roots, by a key of their own. */
  private readonly named = new Map<string, number>();

  private take(count: number): number {
    if (this.next + count > LAST_INODE) this.next = ROOT_INODE + 1;
    const first = this.next;
    this.next += Math.max(1, count);
    return first;
  }

  /** The number of a name that is no snapshot entry (by-date/…, latest) or of a snapshot's root, by `key`. */
  of(key: string): number {
    let number = this.named.get(key);
    if (number === undefined) this.named.set(key, (number = this.take(1)));
    return number;
  }

  /**
   * The number of `entry`, at `index` of the `count` entries of the
   * directory numbered `parent`, in the snapshot `snapshot` (any key of its own).
   */
  entry(parent: number, index: number, count: number, entry: Entry, snapshot: string): number {
    let before = this.runs.get(parent);
    if (before === undefined) this.runs.set(parent, (before = this.take(count) - 1));
    const own = before + 1 + index;
    // The source's inode tells the names of one file; without it (S3) each name is a file of its own.
    if (entry.kind === 'directory' || (entry.nlink ?? 1) < 2 || entry.ino === undefined) return own;
    const key = `${snapshot}:${entry.dev ?? 0}:${entry.ino}`;
    let shared = this.linked.get(key);
    if (shared === undefined) this.linked.set(key, (shared = own));
    return shared;
  }
}
