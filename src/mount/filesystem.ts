import { constants } from 'node:fs';
import os from 'node:os';
import { listedName, shownName } from '../snapshot/names.js';
import { isBlockDevice } from '../snapshot/tree.js';
import { ChunkCache } from './chunkcache.js';
import { FileReader } from './filereader.js';
import type { Namespace, Node } from './namespace.js';

type Cb = (code: number, ...values: unknown[]) => void;

/** FUSE answers errors as negated errno values. */
const errno = os.constants.errno;
const E = {
  ENOENT: -errno.ENOENT,
  EIO: -errno.EIO,
  EROFS: -errno.EROFS,
  EINVAL: -errno.EINVAL,
  ENOTDIR: -errno.ENOTDIR,
  EISDIR: -errno.EISDIR,
  EBADF: -errno.EBADF,
  EACCES: -errno.EACCES,
};

const TYPE_BITS = { file: 0o100000, directory: 0o040000, symlink: 0o120000, device: 0o020000, fifo: 0o010000, socket: 0o140000 };
const S_IFBLK = 0o060000;

/** File type bits: a device keeps the block or character type the source recorded in its mode. */
function typeBits(kind: keyof typeof TYPE_BITS, mode: number): number {
  return isBlockDevice({ kind, mode }) ? S_IFBLK : TYPE_BITS[kind];
}
const XATTR_META_PREFIX = 'user.';
/** Names a log line gives of those left out of one directory. */
const LEFT_OUT_NAMED = 10;

/** The binding passes times as unsigned milliseconds: a time before 1970 would wrap to the far future, so it shows as the epoch. */
function toDate(t: { sec: number; nsec: number }): Date {
  return new Date(Math.max(0, t.sec * 1000 + Math.floor(t.nsec / 1e6)));
}

export interface FilesystemStats {
  reads: number;
  readBytes: number;
  errors: number;
}

/**
 * The FUSE operations of a read-only snapshot file system. Every write
 * operation answers EROFS; a failed read answers EIO for that file and logs
 * why, and the mount stays up.
 */
export class SnapshotFilesystem {
  private readonly handles = new Map<number, { path: string; reader: FileReader }>();
  private nextHandle = 1;
  /** Directories whose names no directory can hold were logged, so that each is logged once, not at every listing. */
  private readonly leftOutLogged = new Set<string>();
  readonly stats: FilesystemStats = { reads: 0, readBytes: 0, errors: 0 };

  constructor(
    private readonly namespace: Namespace,
    readonly cache: ChunkCache,
    private readonly log: (line: string) => void,
    private readonly totals: { bytes: number; files: number },
  ) {}

  private fail(path: string, err: unknown, cb: Cb): void {
    this.stats.errors++;
    this.log(`${path}: ${err instanceof Error ? err.message : String(err)}`);
    cb(E.EIO);
  }

  private attributes(node: Node) {
    if (node.type === 'virtual') {
      // As any directory: itself, its '.', and the '..' of each directory in it (`find -links`, `stat`).
      let subdirectories = 0;
      for (const child of node.children.values()) {
        if (child.type === 'virtual' || (child.type === 'entry' && child.entry.kind === 'directory')) subdirectories++;
      }
      return { ino: node.ino, mode: 0o040555, size: 4096, nlink: 2 + subdirectories, uid: 0, gid: 0, mtime: node.time, atime: node.time, ctime: node.time };
    }
    if (node.type === 'link') {
      return { ino: node.ino, mode: 0o120777, size: node.target.length, nlink: 1, uid: 0, gid: 0, mtime: node.time, atime: node.time, ctime: node.time };
    }
    const e = node.entry;
    const mtime = toDate(e.mtime);
    const size = e.kind === 'file' ? e.size : e.kind === 'symlink' ? Buffer.byteLength(shownName(e.target ?? '')) : e.kind === 'directory' ? 4096 : 0;
    return {
      ino: node.ino,
      mode: (e.mode & 0o7777) | typeBits(e.kind, e.mode),
      size,
      // As in the source (`ls -l`, `stat`, `find -links`): a file with hard links shows how many names it has,
      // a directory 2 and one more for each directory in it. A source that records none (S3) gives 2 and 1.
      nlink: Math.max(e.kind === 'directory' ? 2 : 1, e.nlink ?? 0),
      uid: e.uid,
      gid: e.gid,
      rdev: e.rdev ?? 0,
      blocks: Math.ceil(size / 512),
      mtime,
      atime: e.atime ? toDate(e.atime) : mtime,
      ctime: e.ctime ? toDate(e.ctime) : mtime,
    };
  }

  private withNode(path: string, cb: Cb, work: (node: Node) => void | Promise<void>): void {
    this.namespace.lookup(path).then(
      async (node) => {
        if (!node) return cb(E.ENOENT);
        try {
          await work(node);
        } catch (err) {
          this.fail(path, err, cb);
        }
      },
      (err) => this.fail(path, err, cb),
    );
  }

  private readonlyOp = (...args: unknown[]) => (args[args.length - 1] as Cb)(E.EROFS);

  /**
   * With `withAttributes` false (no snapshot shown has any extended attribute
   * or metadata), getxattr is left out: the kernel then stops asking after
   * the first, and answers itself. `ls -l` asks for one or two per entry
   * (its ACLs), each a round trip to this thread of about 90 µs: most of a
   * cold `ls -lR` and nearly all of a warm one. listxattr stays, and lists
   * nothing, so that tar, rsync and getfattr see a file without attributes
   * rather than a file system without them.
   */
  operations(withAttributes: boolean): Record<string, (...args: any[]) => void> {
    const ops: Record<string, (...args: any[]) => void> = {
      getattr: (path: string, cb: Cb) => this.withNode(path, cb, (node) => cb(0, this.attributes(node))),
      readdir: (path: string, cb: Cb) =>
        this.withNode(path, cb, async (node) => {
          if (node.type === 'link' || (node.type === 'entry' && node.entry.kind !== 'directory')) return cb(E.ENOTDIR);
          // The kernel does not add these for FUSE: without them `ls -a` shows an empty directory as nothing at all.
          const slash = path.lastIndexOf('/');
          const parent = path === '/' ? node : ((await this.namespace.lookup(slash <= 0 ? '/' : path.slice(0, slash))) ?? node);
          const children = await this.namespace.list(path, node, (names) => this.logLeftOut(path, names));
          // With each name its attributes: the inode number `ls -i` and os.scandir() show without a stat of their own,
          // and the type that spares `find` one.
          cb(
            0,
            ['.', '..', ...children.map(([name]) => name)],
            [node, parent, ...children.map(([, child]) => child)].map((n) => this.attributes(n)),
          );
        }),
      // Without an answer here the kernel takes every access() call as granted: `test -x` and
      // `find -executable` would call every file executable. Writing is refused by the kernel
      // already (the mount is read-only); reading follows open, which checks no owner.
      access: (path: string, mode: number, cb: Cb) =>
        this.withNode(path, cb, (node) => {
          const { mode: fileMode } = this.attributes(node);
          const isDirectory = (fileMode & 0o170000) === TYPE_BITS.directory;
          // As the kernel checks a file before running it, root included: some execute bit must be set.
          if (mode & constants.X_OK && !isDirectory && (fileMode & 0o111) === 0) return cb(E.EACCES);
          cb(0);
        }),
      readlink: (path: string, cb: Cb) =>
        this.withNode(path, cb, (node) => {
          if (node.type === 'link') return cb(0, node.target);
          if (node.type === 'entry' && node.entry.kind === 'symlink') return cb(0, shownName(node.entry.target ?? ''));
          cb(E.EINVAL);
        }),
      open: (path: string, flags: number, cb: Cb) =>
        this.withNode(path, cb, async (node) => {
          if ((flags & 3) !== constants.O_RDONLY || flags & constants.O_TRUNC) return cb(E.EROFS);
          if (node.type !== 'entry' || node.entry.kind !== 'file') return cb(E.EISDIR);
          const content = await node.reader.openFile(node.entry);
          const handle = this.nextHandle++;
          this.handles.set(handle, { path, reader: new FileReader(content, this.cache) });
          cb(0, handle);
        }),
      read: (path: string, fd: number, buffer: Buffer, length: number, position: number, cb: Cb) => {
        const open = this.handles.get(fd);
        if (!open) return cb(E.EBADF);
        open.reader.readInto(buffer, position, length).then(
          (bytes) => {
            this.stats.reads++;
            this.stats.readBytes += bytes;
            cb(bytes);
          },
          (err) => this.fail(path, err, cb),
        );
      },
      release: (path: string, fd: number, cb: Cb) => {
        this.handles.delete(fd);
        cb(0);
      },
      statfs: (path: string, cb: Cb) =>
        cb(0, {
          bsize: 4096,
          frsize: 4096,
          blocks: Math.ceil(this.totals.bytes / 4096),
          bfree: 0,
          bavail: 0,
          files: this.totals.files,
          ffree: 0,
          favail: 0,
          fsid: 0x6b6c7374,
          flag: 1, // ST_RDONLY
          namemax: 255,
        }),
      getxattr: (path: string, name: string, position: number, cb: Cb) =>
        this.withNode(path, cb, (node) => cb(0, this.xattrs(node).get(name) ?? null)),
      listxattr: (path: string, cb: Cb) => this.withNode(path, cb, (node) => cb(0, [...this.xattrs(node).keys()])),
      truncate: this.readonlyOp,
      ftruncate: this.readonlyOp,
      chown: this.readonlyOp,
      chmod: this.readonlyOp,
      mknod: this.readonlyOp,
      setxattr: this.readonlyOp,
      removexattr: this.readonlyOp,
      write: this.readonlyOp,
      create: this.readonlyOp,
      utimens: this.readonlyOp,
      unlink: this.readonlyOp,
      rename: this.readonlyOp,
      link: this.readonlyOp,
      symlink: this.readonlyOp,
      mkdir: this.readonlyOp,
      rmdir: this.readonlyOp,
    };
    if (!withAttributes) {
      delete ops.getxattr;
      ops.listxattr = (path: string, cb: Cb) => this.withNode(path, cb, () => cb(0, []));
    }
    return ops;
  }

  /** One line for a directory of a forged snapshot, as restore warns of each such name it leaves out. */
  private logLeftOut(path: string, names: string[]): void {
    if (this.leftOutLogged.has(path)) return;
    this.leftOutLogged.add(path);
    const shown = names.slice(0, LEFT_OUT_NAMED).map(listedName).join(', ');
    const more = names.length > LEFT_OUT_NAMED ? ` and ${names.length - LEFT_OUT_NAMED} more` : '';
    this.log(`${path}: ${names.length === 1 ? 'invalid name' : 'invalid names'} ${shown}${more}, left out`);
  }

  /** The entry's own extended attributes, then its metadata map as user.<key>. */
  private xattrs(node: Node): Map<string, Buffer> {
    const out = new Map<string, Buffer>();
    if (node.type !== 'entry') return out;
    for (const [name, value] of Object.entries(node.entry.xattrs ?? {})) out.set(name, value);
    for (const [key, value] of Object.entries(node.entry.meta ?? {})) out.set(XATTR_META_PREFIX + key, Buffer.from(value));
    return out;
  }
}
