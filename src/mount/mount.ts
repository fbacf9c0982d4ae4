import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import { promisify } from 'node:util';
import { childEnvironment } from '../childenv.js';
import { requireCjs } from '../cjs.js';
import { KlosetError } from '../errors.js';
import type { Repository } from '../kloset/repository.js';
import { shortId, type SnapshotHeader } from '../snapshot/header.js';
import { SnapshotReader } from '../snapshot/reader.js';
import { ChunkCache } from './chunkcache.js';
import { SnapshotFilesystem } from './filesystem.js';
import { Namespace } from './namespace.js';

/**
 * The cache size bounds the mount's caches together: an eighth of it (at
 * most 64 MiB) is left to directory metadata (resolved paths, and the
 * decoded directory pages that the readers of all snapshots share, 256 at
 * most), the rest holds chunks.
 */
function chunkBudget(cacheBytes: number): number {
  return cacheBytes - Math.min(64 * 1024 * 1024, Math.floor(cacheBytes / 8));
}

/**
 * What to show at the mount point: every snapshot, or one snapshot's path.
 * With `select`, snapshots made or removed while mounted come and go in the
 * every-snapshot view; `select` picks which of the store's are shown.
 */
export type MountTarget =
  | { snapshots: SnapshotHeader[]; select?: (all: SnapshotHeader[]) => SnapshotHeader[] }
  | { snapshot: SnapshotHeader; path: string };

export interface MountOptions {
  cacheBytes: number;
  allowOther?: boolean;
  debug?: boolean;
  log: (line: string) => void;
  /** Called just before the file system is mounted: from then on, a process that ends without unmounting leaves a dead mount point behind. */
  beforeMount?: () => void;
}

export interface MountedSnapshots {
  mountpoint: string;
  filesystem: SnapshotFilesystem;
  /** Resolves when the file system is no longer mounted, whoever unmounted it, and no file opened in it is still open. */
  gone: Promise<void>;
  unmount(): Promise<void>;
}

/** Whether `mountpoint` is listed in this process's mount table. */
async function isMounted(mountpoint: string): Promise<boolean> {
  const table = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // Field 5 is the mount point, with spaces and the like written as octal escapes.
  const escaped = mountpoint.replace(/[ \t\n\\]/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));
  return table.split('\n').some((line) => line.split(' ')[4] === escaped);
}

type Signal = (code: number, ...rest: unknown[]) => void;
type FuseInstance = { ops: Record<string, (...args: any[]) => void> };

/**
 * Extended attributes answered as the system calls define them. The binding
 * copies a value or name list into the caller's buffer whether it fits or
 * not, and libfuse turns the overlong answer into EIO; a caller whose buffer
 * is too small must get ERANGE, so that it asks again with a larger one (as
 * Python's os.getxattr and os.listxattr do, starting small). A size query
 * (an empty buffer) gets the exact size.
 */
function answerXattrsBySize(Fuse: { prototype: object }): void {
  const ERANGE = -os.constants.errno.ERANGE;
  const ENODATA = -os.constants.errno.ENODATA;
  const reply = (signal: Signal, room: Buffer, bytes: Buffer) => {
    if (room.length === 0) return signal(bytes.length, room.buffer);
    if (bytes.length > room.length) return signal(ERANGE, room.buffer);
    bytes.copy(room);
    signal(bytes.length, room.buffer);
  };
  Object.assign(Fuse.prototype, {
    _op_getxattr(this: FuseInstance, signal: Signal, path: string, name: string, room: Buffer, position: number) {
      this.ops.getxattr(path, name, position, (err: number, value: Buffer | null) => {
        if (err) return signal(err, room.buffer);
        if (!value) return signal(ENODATA, room.buffer);
        reply(signal, room, value);
      });
    },
    _op_listxattr(this: FuseInstance, signal: Signal, path: string, room: Buffer) {
      this.ops.listxattr(path, (err: number, names: string[]) => {
        if (err) return signal(err, room.buffer);
        reply(signal, room, Buffer.from(names.map((name) => `${name}\0`).join('')));
      });
    },
  });
}

/** This process's open descriptors of /dev/fuse: each is the connection of one of its mounts. */
async function fuseConnections(): Promise<Set<string>> {
  const fds = await fs.readdir('/proc/self/fd').catch(() => [] as string[]);
  const links = await Promise.all(fds.map((fd) => fs.readlink(`/proc/self/fd/${fd}`).then((to) => (to === '/dev/fuse' ? fd : ''), () => '')));
  return new Set(links.filter(Boolean));
}

/** The binding loads libfuse when imported: load it only to mount, and say what is missing. */
function loadFuse(): typeof import('fuse-native').default {
  try {
    const Fuse = requireCjs('fuse-native') as typeof import('fuse-native').default;
    answerXattrsBySize(Fuse);
    // The binding unmounts through a shell command line, where a mount point
    // holding `$(...)` or a backquote would run a command: call fusermount directly.
    Fuse.unmount = (mountpoint: string, done: (err: Error | null) => void) =>
      void execFile('fusermount', ['-uz', mountpoint], { env: childEnvironment() }, (err) => done(err));
    return Fuse;
  } catch (err) {
    throw new KlosetError(
      `cannot load FUSE (${(err as Error).message.split('\n')[0]}); install libfuse2 (Debian: apt-get install libfuse2 fuse3)`,
      { cause: err },
    );
  }
}

/**
 * A mount point left by a killed process answers every call with ENOTCONN.
 * Clear it with a lazy unmount, and say how if that is not possible.
 */
async function prepareMountpoint(mountpoint: string): Promise<void> {
  try {
    const stat = await fs.stat(mountpoint);
    if (!stat.isDirectory()) throw new KlosetError(`${mountpoint}: mount point is not a directory`);
    if ((await fs.readdir(mountpoint)).length > 0) throw new KlosetError(`${mountpoint}: mount point is not empty`);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KlosetError(`${mountpoint}: mount point does not exist`);
    if (code !== 'ENOTCONN') throw err;
  }
  try {
    await promisify(execFile)('fusermount', ['-uz', mountpoint], { env: childEnvironment() });
  } catch {
    throw new KlosetError(
      `${mountpoint}: left mounted by a process that is gone; clear it with 'fusermount -uz ${mountpoint}' (or 'umount -l ${mountpoint}' as root)`,
    );
  }
}

export async function mountSnapshots(
  repository: Repository,
  mountpoint: string,
  target: MountTarget,
  options: MountOptions,
): Promise<MountedSnapshots> {
  await prepareMountpoint(mountpoint);
  // The mount table lists the real path: the one given may go through a symlink.
  mountpoint = await fs.realpath(mountpoint);
  let namespace: Namespace;
  let totals: { bytes: number; files: number };
  const withAttributes = (headers: SnapshotHeader[]) => headers.some((h) => h.stats.withAttributes !== 0); // unknown counts as some
  let attributesShown: boolean;
  if ('snapshots' in target) {
    attributesShown = withAttributes(target.snapshots);
    namespace = Namespace.ofSnapshots(repository, target.snapshots, target.select, (header) => {
      if (!attributesShown && withAttributes([header])) {
        options.log(`snapshot ${shortId(header.id)}: its extended attributes are not shown, as this mount started without any; mount it again to see them`);
      }
    });
    totals = target.snapshots.reduce((t, h) => ({ bytes: t.bytes + h.stats.size, files: t.files + h.stats.files }), { bytes: 0, files: 0 });
  } else {
    const reader = new SnapshotReader(repository, target.snapshot);
    const entry = await reader.lookup(target.path);
    if (entry.kind !== 'directory') throw new KlosetError(`${target.path}: not a directory; mount a snapshot or a directory in it`);
    namespace = Namespace.ofEntry(reader, entry);
    attributesShown = withAttributes([target.snapshot]);
    totals = { bytes: target.snapshot.stats.size, files: target.snapshot.stats.files };
  }
  const Fuse = loadFuse();
  const cache = new ChunkCache(repository, chunkBudget(options.cacheBytes));
  const filesystem = new SnapshotFilesystem(namespace, cache, options.log, totals);
  const fuse = new Fuse(mountpoint, filesystem.operations(attributesShown), {
    fsname: 'kloset',
    // The binding has no read-only flag; it joins its options with commas,
    // so `ro` rides along: the mount table then says read-only, `test -w`
    // says no, and the kernel refuses writes before they reach us. So does
    // `use_ino`: the inode numbers are ours (see InodeNumbers), not libfuse's.
    subtype: 'kloset,ro,use_ino',
    allowOther: options.allowOther,
    // Other users reach the files only as their modes allow (the kernel checks them), as restic mount does.
    defaultPermissions: options.allowOther,
    debug: options.debug,
    // Snapshots never change: let the kernel keep pages and attributes.
    kernelCache: true,
    attrTimeout: 3600,
    entryTimeout: 3600,
    maxRead: 1024 * 1024,
    // A storage outage answers EIO after the store's own retries, never hangs a reader.
    timeout: 120_000,
  });
  const connectionsBefore = await fuseConnections();
  options.beforeMount?.();
  await new Promise<void>((resolve, reject) =>
    fuse.mount((err) => (err ? reject(new KlosetError(`${mountpoint}: cannot mount: ${err.message}`, { cause: err })) : resolve())),
  );
  const connection = [...(await fuseConnections())].filter((fd) => !connectionsBefore.has(fd));
  const gone = new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      void Promise.all([isMounted(mountpoint), fuseConnections()]).then(([mounted, connections]) => {
        // A lazy unmount (`fusermount -uz`, `umount -l`) takes the mount out of the table at once, but
        // files open in it stay readable, as on any file system, until the last is closed and the
        // kernel ends the connection.
        if (mounted || connection.some((fd) => connections.has(fd))) return;
        clearInterval(timer);
        resolve();
      });
    }, 1000);
    timer.unref();
  });
  let unmounted: Promise<void> | undefined;
  return {
    mountpoint,
    filesystem,
    gone,
    unmount: () => {
      unmounted ??= new Promise<void>((resolve, reject) =>
        fuse.unmount((err) => {
          if (!err) return resolve();
          // Already unmounted from outside: that is what was wanted.
          void isMounted(mountpoint).then((still) =>
            still ? reject(new KlosetError(`${mountpoint}: cannot unmount: ${err.message.split('\n')[0]}`)) : resolve(),
          );
        }),
      );
      // A failed attempt may be made again.
      unmounted.catch(() => (unmounted = undefined));
      return unmounted;
    },
  };
}
