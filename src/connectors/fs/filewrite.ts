import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  ftruncateSync,
  futimesSync,
  openSync,
  rmdirSync,
  rmSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { KlosetError } from '../../errors.js';
import { exactForm } from '../../snapshot/names.js';
import type { Entry, Timespec } from '../../snapshot/tree.js';
import { ACCESS_ACL, DEFAULT_ACL, removeXattrs, withTextPath, writeXattrs } from './xattrs.js';

/**
 * The system calls that put one restored entry on disk, shared by the
 * exporter and the thread it hands batches of small files to. All are
 * synchronous: each is one cheap call, where a thread-pool round trip apiece
 * would dominate a restore of small files.
 */

/** What a restored entry's own metadata is made from. */
export type EntryMetadata = Pick<Entry, 'kind' | 'mode' | 'uid' | 'gid' | 'atime' | 'mtime' | 'xattrs'>;

/** How the target is written, the same for every entry of a restore. */
export interface WriteSettings {
  /** Owners are given back only by root, as tar does. */
  asRoot: boolean;
  /** The target's default ACL is inherited by what is created: each entry's ACLs are made what the snapshot says. */
  inheritedAcls: boolean;
  /** Chunks of zeros are left as holes. */
  sparse: boolean;
}

/**
 * Seconds, for utimes. Node takes a negative number for "now", so a time
 * before 1970 goes as the same number in text, which it passes on as it is.
 */
export const asDate = (t: Timespec): number | string => {
  const seconds = t.sec + t.nsec / 1e9;
  return seconds < 0 ? String(seconds) : seconds;
};

/** Compared against, a slice at a time: zero runs come as chunks of up to the chunker's maximum. */
const ZEROS = Buffer.alloc(64 * 1024);
/** A file system block: a shorter run of zeros saves nothing as a hole. */
export const HOLE_MIN = 4096;

export function allZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const end = Math.min(data.length, at + ZEROS.length);
    if (data.compare(ZEROS, 0, end - at, at, end) !== 0) return false;
  }
  return true;
}

/**
 * Removes what holds a name the restore is to write: anything but a
 * directory, or an empty directory, as tar does. A directory with entries
 * is kept, and the failure says so.
 */
export function clearName(full: string): void {
  try {
    return unlinkSync(exactForm(full));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'EISDIR') throw err;
  }
  try {
    rmdirSync(exactForm(full));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new KlosetError(`${full}: a directory that is not empty is in the way`, { cause: err });
    throw err;
  }
}

/**
 * Makes a new name with `make`, which fails with EEXIST if the name is
 * held: whatever held it (a hard link to a file outside the target, a
 * FIFO, a symlink, an empty directory) is then removed, not written or
 * linked through, as tar does.
 */
export function replacing<T>(full: string, make: () => T): T {
  try {
    return make();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  clearName(full);
  return make();
}

/** A new file, never one reached through a symlink, readable by nobody else until its mode is set. */
export function createFile(full: string): number {
  return replacing(full, () => openSync(exactForm(full), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600));
}

/** An owner the target cannot give (an id missing on a file system that checks) is not a reason to fail the file. */
function tryOwner(change: () => void): void {
  try {
    change();
  } catch {
    // keep the restoring user's ownership
  }
}

/** Owner, mode, times and attributes, on the open descriptor for a file. */
export function applyMetadata(full: string, entry: EntryMetadata, settings: WriteSettings, fd?: number): void {
  const atime = asDate(entry.atime ?? entry.mtime);
  const mtime = asDate(entry.mtime);
  // Owner first: a change of owner clears file capabilities (security.capability), which come back with the attributes.
  const at = exactForm(full);
  if (settings.asRoot) tryOwner(() => (fd !== undefined ? fchownSync(fd, entry.uid, entry.gid) : chownSync(at, entry.uid, entry.gid)));
  // The attribute binding takes text paths (withTextPath); a backup records none for an entry it cannot
  // reach so (FsImporter), so none is lost here.
  if (entry.xattrs || settings.inheritedAcls) {
    withTextPath(full, (textPath) => {
      if (entry.xattrs) writeXattrs(textPath, entry.xattrs);
      // ACLs inherited from a default ACL in the target, which the source did not have: removed before
      // the mode is set, so the entry grants no more than it did (a named user of the target's default ACL).
      if (settings.inheritedAcls) {
        const inherited = entry.kind === 'directory' ? [ACCESS_ACL, DEFAULT_ACL] : [ACCESS_ACL];
        removeXattrs(textPath, inherited.filter((name) => !entry.xattrs?.[name]));
      }
    });
  }
  if (fd !== undefined) {
    fchmodSync(fd, entry.mode & 0o7777);
    futimesSync(fd, atime, mtime);
    return;
  }
  chmodSync(at, entry.mode & 0o7777);
  utimesSync(at, atime, mtime);
}

/** A file whose whole content is at hand: a failed write leaves no file. */
export function writeWholeFile(full: string, entry: EntryMetadata, data: Buffer, settings: WriteSettings): void {
  const fd = createFile(full);
  try {
    if (settings.sparse && data.length >= HOLE_MIN && allZero(data)) ftruncateSync(fd, data.length);
    else for (let written = 0; written < data.length; ) written += writeSync(fd, data, written, data.length - written, written);
  } catch (err) {
    closeSync(fd);
    rmSync(exactForm(full), { force: true }); // no half-restored file left looking whole
    throw err;
  }
  try {
    applyMetadata(full, entry, settings, fd);
  } finally {
    closeSync(fd);
  }
}
