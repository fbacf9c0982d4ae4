import { closeSync, constants, fstatSync, lstatSync, openSync, promises as fs, readSync, readlinkSync, realpathSync, type BigIntStats } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KlosetError } from '../../errors.js';
import { nameFromBytes, exactForm } from '../../snapshot/names.js';
import { compareNames, type EntryKind, type Timespec } from '../../snapshot/tree.js';
import type { Importer, ScanOptions, SkippedChild, SourceEntry } from '../../snapshot/importer.js';
import { Accounts } from './accounts.js';
import { readXattrs, textPathOf } from './xattrs.js';

/** Reads of large files come in blocks of this size; each block is handed to a chunk worker whole. */
const READ_BLOCK = 1024 * 1024;
const GROWTH_PROBE = 64 * 1024;
/** Files whose size the progress scan asks for at once. */
const SCAN_SLICE = 256;

const CACHE_TAG = 'CACHEDIR.TAG';
const CACHE_TAG_SIGNATURE = Buffer.from('Signature: 8a477f597d28d172789f06886806bc55');

/**
 * Seconds rounded down, so that nsec is never negative, as in a timespec: a
 * time before 1970 is whole seconds before it plus a positive fraction.
 * atime is not recorded: it changes on every read and would make every backup's trees new.
 */
function timespec(ns: bigint): Timespec {
  const second = 1_000_000_000n;
  const sec = ns < 0n ? -((-ns + second - 1n) / second) : ns / second;
  return { sec: Number(sec), nsec: Number(ns - sec * second) };
}

function kindOf(stat: BigIntStats): EntryKind | undefined {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'directory';
  if (stat.isSymbolicLink()) return 'symlink';
  if (stat.isBlockDevice() || stat.isCharacterDevice()) return 'device';
  if (stat.isFIFO()) return 'fifo';
  if (stat.isSocket()) return 'socket';
  return undefined;
}

const accounts = new Accounts();

/**
 * Extended attributes of an entry the binding, which takes paths as
 * strings, cannot reach by a text path (textPathOf: a file or a link whose
 * own name is not UTF-8) cannot be read. `textless` counts such entries, so
 * that the backup says so at its end (FsImporter.notes).
 */
function xattrsOf(fullPath: string, textless: { count: number }): Record<string, Buffer> | undefined {
  const reached = textPathOf(fullPath);
  if (reached === undefined) {
    textless.count++;
    return undefined;
  }
  try {
    return readXattrs(reached.path);
  } finally {
    reached.close();
  }
}

/**
 * One entry's metadata, read with synchronous calls on purpose: lstat,
 * llistxattr and readlink are answered from the kernel's caches in
 * microseconds, far less than a thread-pool round trip each, and the walk
 * is what keeps the chunk workers fed.
 */
function statEntry(fullPath: string, name: string, fileXattrs: boolean, textless: { count: number }): SourceEntry {
  const stat = lstatSync(exactForm(fullPath), { bigint: true });
  const kind = kindOf(stat);
  if (!kind) throw new KlosetError(`${fullPath}: unsupported file type`);
  const entry: SourceEntry = {
    name,
    kind,
    mode: Number(stat.mode),
    uid: Number(stat.uid),
    gid: Number(stat.gid),
    user: accounts.user(Number(stat.uid)),
    group: accounts.group(Number(stat.gid)),
    size: kind === 'file' ? Number(stat.size) : 0,
    mtime: timespec(stat.mtimeNs),
    ctime: timespec(stat.ctimeNs),
    ino: Number(stat.ino),
    dev: Number(stat.dev),
    nlink: Number(stat.nlink),
  };
  if (kind === 'device') entry.rdev = Number(stat.rdev);
  if (kind === 'symlink') entry.target = nameFromBytes(readlinkSync(exactForm(fullPath), { encoding: 'buffer' }));
  // Symlinks, FIFOs and devices have attributes too (an SELinux label, a trusted.* mark), read without
  // following the link; a socket is not restored, so neither are its.
  if (kind === 'file' ? fileXattrs : kind !== 'socket') {
    const xattrs = xattrsOf(fullPath, textless);
    if (xattrs) entry.xattrs = xattrs;
  }
  return entry;
}

/**
 * The local file system as a backup source; never follows symbolic links.
 * A single file as the source gives a snapshot whose root holds that file.
 */
export class FsImporter implements Importer {
  readonly type = 'fs';
  /** The machine's name, or the one the backup is recorded under (backup -host). */
  readonly origin: string;
  readonly source: string;
  /** The directory snapshot paths are relative to: the source, or a single file's parent. */
  private base: string;
  /** The source was given as `link/`: a symbolic link there stands for the directory it names, as for tar and rsync. */
  private readonly throughLink: boolean;
  private singleFile: string | undefined;
  /** With `oneFileSystem`: the source's device; a directory on another one is kept, empty. */
  private rootDevice: number | undefined;
  private readonly textless = { count: 0 };

  constructor(
    root: string,
    private readonly options: { oneFileSystem?: boolean; excludeCaches?: boolean; host?: string } = {},
  ) {
    this.origin = options.host ?? os.hostname();
    this.source = path.resolve(root);
    this.base = this.source;
    this.throughLink = root.length > 1 && root.endsWith('/');
  }

  /** A mount point below the source, with -one-file-system: recorded, not entered, as restic and tar do. */
  private otherFileSystem(dir: string): boolean {
    if (this.rootDevice === undefined) return false;
    try {
      return Number(lstatSync(exactForm(dir)).dev) !== this.rootDevice;
    } catch {
      return false; // gone or unreadable: reading it says so, where it is reported
    }
  }

  /**
   * With `excludeCaches`: whether `dir` holds a CACHEDIR.TAG, a regular file
   * that starts with the signature of the Cache Directory Tagging
   * Specification (bford.info/cachedir), as tar, restic and borg read it.
   */
  private cacheDirectory(dir: string, names: string[]): boolean {
    if (!this.options.excludeCaches || !names.includes(CACHE_TAG)) return false;
    let fd: number | undefined;
    try {
      fd = openSync(exactForm(path.join(dir, CACHE_TAG)), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      if (!fstatSync(fd).isFile()) return false;
      const head = Buffer.alloc(CACHE_TAG_SIGNATURE.length);
      return readSync(fd, head, 0, head.length, 0) === head.length && head.equals(CACHE_TAG_SIGNATURE);
    } catch {
      return false;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  private full(rel: string): string {
    return rel === '' ? this.base : path.join(this.base, rel);
  }

  localPath(rel: string): string | Buffer {
    return exactForm(this.full(rel));
  }

  xattrs(rel: string): Record<string, Buffer> | undefined {
    return xattrsOf(this.full(rel), this.textless);
  }

  stat(rel: string, name: string): SourceEntry | undefined {
    try {
      return statEntry(this.full(rel), name, false, this.textless);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  notes(): string[] {
    const { count } = this.textless;
    if (count === 0) return [];
    const entries = count === 1 ? '1 entry whose name is not UTF-8 text was' : `${count} entries whose names are not UTF-8 text were`;
    return [`${entries} backed up without extended attributes, which kloset reads by text path only`];
  }

  async rootEntry(): Promise<SourceEntry> {
    let entry: SourceEntry;
    try {
      if (this.throughLink && lstatSync(exactForm(this.source)).isSymbolicLink()) {
        // As bytes, by the C library's realpath: the directory named may not be UTF-8, and Node's own
        // realpathSync resolves links as decoded text, which then names no directory.
        const target = nameFromBytes(realpathSync.native(exactForm(this.source), { encoding: 'buffer' }));
        if (!lstatSync(exactForm(target)).isDirectory()) throw new KlosetError(`${this.source}/: not a directory`);
        this.base = target;
      }
      entry = statEntry(this.base, '', true, this.textless);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new KlosetError(`${this.source}: no such file or directory`);
      if (code === 'EACCES') throw new KlosetError(`${this.source}: permission denied`);
      throw err;
    }
    if (this.options.oneFileSystem) this.rootDevice = entry.dev;
    if (entry.kind === 'directory') return entry;
    if (entry.kind !== 'file') throw new KlosetError(`${this.source}: not a directory or a regular file`);
    this.singleFile = path.basename(this.source);
    this.base = path.dirname(this.source);
    return { ...statEntry(this.base, '', true, this.textless), name: '' };
  }

  /**
   * Files come without their extended attributes: a file that has not
   * changed since the parent snapshot (same size, times, inode) keeps the
   * attributes recorded then, since setting one changes the ctime; the
   * others are read with xattrs(). That is one listxattr less per unchanged
   * file, a good part of an unchanged re-backup.
   */
  async *children(rel: string): AsyncIterable<SourceEntry | SkippedChild> {
    if (this.singleFile !== undefined && rel === '') {
      yield statEntry(this.full(this.singleFile), this.singleFile, false, this.textless);
      return;
    }
    const dir = this.full(rel);
    if (this.otherFileSystem(dir)) return;
    let names = (await fs.readdir(exactForm(dir), { encoding: 'buffer' })).map(nameFromBytes);
    if (this.cacheDirectory(dir, names)) names = [CACHE_TAG];
    names.sort(compareNames);
    for (const name of names) {
      let entry: SourceEntry;
      try {
        entry = statEntry(path.join(dir, name), name, false, this.textless);
      } catch (err) {
        // Removed between readdir and lstat: a live file system does that.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        yield { name, skipped: err as Error };
        continue;
      }
      yield entry;
    }
  }

  async *read(rel: string, entry: SourceEntry): AsyncIterable<Buffer> {
    const handle = await fs.open(exactForm(this.full(rel)), 'r');
    try {
      let position = 0;
      for (;;) {
        // Read what stat announced; past that, probe with a small block in case the file grew.
        const remaining = entry.size - position;
        const want = remaining > 0 ? Math.min(READ_BLOCK, remaining) : GROWTH_PROBE;
        // A fresh buffer per block: it is transferred to a worker thread, not copied.
        const block = Buffer.allocUnsafeSlow(want);
        const { bytesRead } = await handle.read(block, 0, want, position);
        if (bytesRead === 0) break;
        position += bytesRead;
        yield bytesRead === want ? block : block.subarray(0, bytesRead);
      }
    } finally {
      await handle.close();
    }
  }

  /**
   * Bytes in the files under the source, for the progress line's estimate:
   * a second walk through the thread pool (readdir and lstat only), so it
   * runs beside the backup's own walk without holding it up.
   */
  async scan({ skip, largerThan = Infinity, signal }: ScanOptions): Promise<number> {
    const counted = (size: number) => (size > largerThan ? 0 : size);
    // Not this.singleFile: the scan starts beside the backup, before the backup has looked at its root.
    const top = await fs.stat(exactForm(this.source));
    if (!top.isDirectory()) return top.isFile() ? counted(top.size) : 0;
    let bytes = 0;
    const walk = async (rel: string): Promise<void> => {
      signal?.throwIfAborted();
      let entries;
      try {
        entries = await fs.readdir(exactForm(this.full(rel)), { withFileTypes: true, encoding: 'buffer' });
      } catch {
        return; // the backup itself reports what it cannot read
      }
      const files: string[] = [];
      if (this.cacheDirectory(this.full(rel), entries.map((entry) => nameFromBytes(entry.name)))) {
        entries = entries.filter((entry) => nameFromBytes(entry.name) === CACHE_TAG);
      }
      for (const entry of entries) {
        const name = nameFromBytes(entry.name);
        const childRel = rel === '' ? name : `${rel}/${name}`;
        if (skip?.(childRel)) continue;
        if (entry.isDirectory() && !this.otherFileSystem(this.full(childRel))) await walk(childRel);
        else if (entry.isFile()) files.push(childRel);
      }
      // A slice at a time: a directory of a million files must not become a million pending calls.
      for (let at = 0; at < files.length; at += SCAN_SLICE) {
        signal?.throwIfAborted();
        const sizes = await Promise.all(files.slice(at, at + SCAN_SLICE).map((file) => fs.lstat(exactForm(this.full(file))).then((stat) => stat.size, () => 0)));
        for (const size of sizes) bytes += counted(size);
      }
    };
    await walk('');
    return bytes;
  }

  async close(): Promise<void> {}
}
