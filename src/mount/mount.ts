import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import Fuse from 'fuse-native';
import { KlosetError } from '../errors.js';
import type { Repository } from '../kloset/repository.js';
import type { SnapshotHeader } from '../snapshot/header.js';
import { SnapshotReader } from '../snapshot/reader.js';
import { ChunkCache } from './chunkcache.js';
import { SnapshotFilesystem } from './filesystem.js';
import { Namespace } from './namespace.js';

export const DEFAULT_CACHE_BYTES = 512 * 1024 * 1024;

/** What to show at the mount point: every snapshot, or one snapshot's path. */
export type MountTarget = { snapshots: SnapshotHeader[] } | { snapshot: SnapshotHeader; path: string };

export interface MountOptions {
  cacheBytes?: number;
  allowOther?: boolean;
  debug?: boolean;
  log: (line: string) => void;
}

export interface MountedSnapshots {
  mountpoint: string;
  filesystem: SnapshotFilesystem;
  unmount(): Promise<void>;
}

/**
 * A mount point left by a killed process answers every call with ENOTCONN.
 * Clear it with a lazy unmount, and say how if that is not possible.
 */
async function prepareMountpoint(mountpoint: string): Promise<void> {
  try {
    const stat = await fs.stat(mountpoint);
    if (!stat.isDirectory()) throw new KlosetError(`${mountpoint}: mount point is not a directory`);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new KlosetError(`${mountpoint}: mount point does not exist`);
    if (code !== 'ENOTCONN') throw err;
  }
  try {
    await promisify(execFile)('fusermount', ['-uz', mountpoint]);
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
  let namespace: Namespace;
  let totals: { bytes: number; files: number };
  if ('snapshots' in target) {
    namespace = Namespace.ofSnapshots(repository, target.snapshots);
    totals = target.snapshots.reduce((t, h) => ({ bytes: t.bytes + h.stats.size, files: t.files + h.stats.files }), { bytes: 0, files: 0 });
  } else {
    const reader = new SnapshotReader(repository, target.snapshot);
    namespace = Namespace.ofEntry(reader, await reader.lookup(target.path));
    totals = { bytes: target.snapshot.stats.size, files: target.snapshot.stats.files };
  }
  const cache = new ChunkCache(repository, options.cacheBytes ?? DEFAULT_CACHE_BYTES);
  const filesystem = new SnapshotFilesystem(namespace, cache, options.log, totals);
  const fuse = new Fuse(mountpoint, filesystem.operations(), {
    fsname: 'kloset',
    subtype: 'kloset',
    allowOther: options.allowOther,
    debug: options.debug,
    // Snapshots never change: let the kernel keep pages and attributes.
    kernelCache: true,
    attrTimeout: 3600,
    entryTimeout: 3600,
    maxRead: 1024 * 1024,
    // A storage outage answers EIO after the store's own retries, never hangs a reader.
    timeout: 120_000,
  });
  await new Promise<void>((resolve, reject) =>
    fuse.mount((err) => (err ? reject(new KlosetError(`${mountpoint}: cannot mount: ${err.message}`, { cause: err })) : resolve())),
  );
  let unmounted: Promise<void> | undefined;
  return {
    mountpoint,
    filesystem,
    unmount: () =>
      (unmounted ??= new Promise<void>((resolve, reject) =>
        fuse.unmount((err) => (err ? reject(new KlosetError(`${mountpoint}: cannot unmount: ${err.message}`)) : resolve())),
      )),
  };
}
