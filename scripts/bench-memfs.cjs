#!/usr/bin/env node
// A trivial in-memory FUSE file system for the mount benchmark's ceiling:
// one directory holding one read-only file, served by the same binding as
// `kloset mount` (fuse-native from node_modules), reads answered by copying
// from a preallocated buffer (a 64 MiB pattern repeated up to the file size).
//
//   node scripts/bench-memfs.cjs <mountpoint> <size-bytes> [--kernel-cache]
//
// Prints "mounted" on stdout when the file system is up; SIGTERM or SIGINT
// unmounts and exits. The FUSE options match kloset's mount (max_read 1 MiB,
// long attribute/entry timeouts); --kernel-cache adds kernel_cache, as kloset
// uses, so a re-read is served from the page cache.
'use strict';

const path = require('node:path');
const Fuse = require(path.join(__dirname, '..', 'node_modules', 'fuse-native'));

const [mountpoint, sizeArg, ...rest] = process.argv.slice(2);
if (!mountpoint || !sizeArg) {
  console.error('usage: bench-memfs.cjs <mountpoint> <size-bytes> [--kernel-cache]');
  process.exit(2);
}
const SIZE = Number(sizeArg);
const kernelCache = rest.includes('--kernel-cache');
const FILE = '/big.bin';
const PATTERN = Buffer.allocUnsafe(Math.min(64 * 1024 * 1024, SIZE));
for (let i = 0; i < PATTERN.length; i += 4) PATTERN.writeUInt32LE((Math.imul(i, 2654435761) >>> 0), i);
const now = new Date();
const stat = (mode, size) => ({ mode, size, nlink: mode & 0o040000 ? 2 : 1, uid: 0, gid: 0, mtime: now, atime: now, ctime: now });

const ops = {
  getattr(p, cb) {
    if (p === '/') return cb(0, stat(0o040555, 4096));
    if (p === FILE) return cb(0, stat(0o100444, SIZE));
    cb(Fuse.ENOENT);
  },
  readdir(p, cb) {
    if (p === '/') return cb(0, [FILE.slice(1)]);
    cb(Fuse.ENOENT);
  },
  open(p, flags, cb) {
    if (p !== FILE) return cb(Fuse.ENOENT);
    cb(0, 1);
  },
  release(p, fd, cb) {
    cb(0);
  },
  read(p, fd, buf, len, pos, cb) {
    if (pos >= SIZE) return cb(0);
    const n = Math.min(len, SIZE - pos);
    let done = 0;
    while (done < n) {
      const at = (pos + done) % PATTERN.length;
      done += PATTERN.copy(buf, done, at, Math.min(PATTERN.length, at + n - done));
    }
    cb(n);
  },
  statfs(p, cb) {
    cb(0, { bsize: 4096, frsize: 4096, blocks: Math.ceil(SIZE / 4096), bfree: 0, bavail: 0, files: 1, ffree: 0, favail: 0, fsid: 1, flag: 1, namemax: 255 });
  },
};

const fuse = new Fuse(mountpoint, ops, {
  fsname: 'benchmemfs',
  subtype: 'benchmemfs',
  kernelCache,
  attrTimeout: 3600,
  entryTimeout: 3600,
  maxRead: 1024 * 1024,
});

fuse.mount((err) => {
  if (err) {
    console.error(`bench-memfs: cannot mount ${mountpoint}: ${err.message}`);
    process.exit(1);
  }
  process.stdout.write(`mounted ${SIZE} bytes at ${mountpoint}${kernelCache ? ' (kernel_cache)' : ''}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  fuse.unmount((err) => {
    if (err) console.error(`bench-memfs: unmount: ${err.message}`);
    process.exit(err ? 1 : 0);
  });
  setTimeout(() => process.exit(1), 10_000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('SIGHUP', stop);
