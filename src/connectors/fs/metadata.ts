import { chmodSync, chownSync, fchmodSync, fchownSync, futimesSync, utimesSync } from 'node:fs';
import type { Entry, Timespec } from '../../snapshot/tree.js';
import { writeXattrs } from './xattrs.js';

/** What a restored file or directory gets back: plain data, so it can go to a writer thread. */
export interface RestoredMetadata {
  mode: number;
  uid: number;
  gid: number;
  atime: number;
  mtime: number;
  xattrs?: [string, Uint8Array][];
}

const seconds = (t: Timespec) => t.sec + t.nsec / 1e9;

export function restoredMetadata(entry: Entry): RestoredMetadata {
  return {
    mode: entry.mode & 0o7777,
    uid: entry.uid,
    gid: entry.gid,
    atime: seconds(entry.atime ?? entry.mtime),
    mtime: seconds(entry.mtime),
    // Copies of their own: a view would take its whole backing buffer along to the thread.
    ...(entry.xattrs ? { xattrs: Object.entries(entry.xattrs).map(([name, value]) => [name, new Uint8Array(value)]) } : {}),
  };
}

/** An owner the target cannot give (an id missing on a file system that checks) is not a reason to fail the file. */
function tryOwner(change: () => void): void {
  try {
    change();
  } catch {
    // keep the restoring user's ownership
  }
}

/**
 * Attributes, owner (when restoring as root), mode and times, with
 * synchronous calls, on the open descriptor when there is one: each is one
 * cheap system call, where a thread-pool round trip apiece would dominate a
 * restore of small files.
 */
export function applyMetadata(path: string, meta: RestoredMetadata, asRoot: boolean, fd?: number): void {
  if (meta.xattrs) writeXattrs(path, Object.fromEntries(meta.xattrs.map(([name, value]) => [name, Buffer.from(value)])));
  if (fd !== undefined) {
    if (asRoot) tryOwner(() => fchownSync(fd, meta.uid, meta.gid));
    fchmodSync(fd, meta.mode);
    futimesSync(fd, meta.atime, meta.mtime);
    return;
  }
  if (asRoot) tryOwner(() => chownSync(path, meta.uid, meta.gid));
  chmodSync(path, meta.mode);
  utimesSync(path, meta.atime, meta.mtime);
}
