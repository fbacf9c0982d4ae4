import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, ftruncateSync, linkSync, openSync, promises as fs, rmSync, write, writeSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { childEnvironment } from '../../childenv.js';
import { KlosetError } from '../../errors.js';
import { exactForm } from '../../snapshot/names.js';
import { isBlockDevice, type Entry } from '../../snapshot/tree.js';
import { makeDirectories } from '../../storage/directories.js';
import type { Exporter } from '../../snapshot/exporter.js';
import { HOLE_MIN, allZero, applyMetadata, asDate, clearName, createFile, replacing, writeWholeFile, type WriteSettings } from './filewrite.js';
import { SmallFileWriter, type SmallFile } from './smallfiles.js';
import { hasDefaultAcl, withTextPath, writeXattrs } from './xattrs.js';

const execFileAsync = promisify(execFile);
const writeAsync = promisify(write);
/**
 * Files from this size on are written from the thread pool: a chunk of a
 * large file is worth the hop, and its copy into the page cache then runs
 * beside the main thread's work on small files.
 */
const THREADED_WRITE_MIN = 4 * 1024 * 1024;
/** Small files a restore writes on its own thread before it starts the thread that writes them (about 0.1 s to start). */
const FILES_BEFORE_THREAD = 16;

export interface FsExporterOptions {
  /**
   * Paths below the target ('/'-separated) that nothing may be written
   * into: the store's own, when a restore goes into a directory that holds it.
   */
  keepOut?: readonly string[];
  /**
   * Leave chunks of zeros as holes (restic's restore --sparse): a disk image
   * or a database file comes back taking the space it took. Off by default,
   * as in restic and rsync: a swap file or a preallocated file must not have holes.
   */
  sparse?: boolean;
}

/** Major and minor numbers of a Linux dev_t (glibc's gnu_dev_major and gnu_dev_minor). */
function deviceNumbers(rdev: number): [string, string] {
  const high = Math.floor(rdev / 2 ** 32);
  const low = rdev >>> 0;
  const major = ((low >>> 8) & 0xfff) | (high & ~0xfff);
  const minor = (low & 0xff) | (((low >>> 12) | (high << 20)) & ~0xff);
  return [String(major >>> 0), String(minor >>> 0)];
}

/** Node has no mkfifo or mknod: coreutils has both. Making a device needs root, as with tar. */
async function makeSpecial(at: string, entry: Entry): Promise<void> {
  const permissions = (entry.mode & 0o7777).toString(8);
  const [command, ...args] =
    entry.kind === 'fifo'
      ? ['mkfifo', '-m', permissions, at]
      : ['mknod', '-m', permissions, at, isBlockDevice(entry) ? 'b' : 'c', ...deviceNumbers(entry.rdev ?? 0)];
  try {
    await execFileAsync(command, args, { env: childEnvironment() });
  } catch (err) {
    const reason = ((err as { stderr?: string }).stderr ?? '').trim().split('\n').pop() || (err as Error).message;
    throw new KlosetError(`cannot create ${entry.kind === 'fifo' ? 'FIFO' : 'device'}: ${reason}`);
  }
}

/** Reads one entry, not the whole of a directory that may be large (a home directory). */
async function isEmptyDirectory(full: string): Promise<boolean> {
  const dir = await fs.opendir(exactForm(full) as string); // opendir takes bytes too, though its type says string
  try {
    return (await dir.read()) === null;
  } finally {
    await dir.close();
  }
}

/**
 * Restores into a local directory. Never follows a link it did not make:
 * directories are verified with lstat, files opened with O_NOFOLLOW, so a
 * symlink planted in the target cannot redirect a write outside it.
 */
export class FsExporter implements Exporter {
  readonly target: string;
  private readonly asRoot = process.getuid?.() === 0;
  /** Files opened and not yet complete. */
  private readonly writing = new Set<string>();
  private abandoned = false;
  /**
   * Whether the target takes the restored root's owner, mode and times: one
   * this restore made, or found empty. A directory already in use (the
   * current directory, /tmp) keeps its own.
   */
  private ownTarget = false;
  /**
   * Whether a directory the restore did not make itself (the target, its
   * parents, a directory already in it) has a default ACL: then what is
   * created below inherits ACLs, and each entry's must be made what the
   * snapshot says, none where it recorded none (as tar --acls does).
   */
  private inheritedAcls = false;
  private readonly smallFiles = new SmallFileWriter();
  /** Small files written here while the thread was not needed. */
  private writtenHere = 0;
  private readonly keepOut: readonly string[];

  private get settings(): WriteSettings {
    return { asRoot: this.asRoot, inheritedAcls: this.inheritedAcls, sparse: this.options.sparse === true };
  }

  constructor(
    target: string,
    private readonly options: FsExporterOptions = {},
  ) {
    this.target = path.resolve(target);
    this.keepOut = (options.keepOut ?? []).map((place) => path.join(this.target, place));
  }

  /** Only '' names the target itself; every other path must be relative and lie below it, whatever its `..` segments. */
  private full(rel: string): string {
    // No name in a snapshot holds a '/', so only a forged one gives an absolute path: it names a place
    // outside the target, and is refused as one that climbs out is, never put below the target.
    if (path.isAbsolute(rel)) throw new KlosetError(`${rel}: refusing to write outside ${this.target}`);
    const full = rel === '' ? this.target : path.join(this.target, rel);
    const inside = path.relative(this.target, full);
    if (rel !== '' && (inside === '' || inside === '..' || inside.startsWith('..' + path.sep) || path.isAbsolute(inside))) {
      throw new KlosetError(`${full}: refusing to write outside ${this.target}`);
    }
    if (this.keepOut.some((place) => full === place || full.startsWith(place + path.sep))) {
      throw new KlosetError(`${full}: inside the store, left out: restored, it would replace the store's own files`);
    }
    return full;
  }

  async createDirectory(rel: string, _entry: Entry): Promise<void> {
    const full = this.full(rel);
    try {
      // The target itself may need its parents; below it, each level is made (and checked) in turn.
      if (rel === '') {
        this.ownTarget = (await makeDirectories(full, 0o700)) !== undefined || (await isEmptyDirectory(full));
        // Made or found: either way it may hold a default ACL, its own or its parent's.
        if (hasDefaultAcl(full)) this.inheritedAcls = true;
      } else await fs.mkdir(exactForm(full), { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const stat = await fs.lstat(exactForm(full));
      if (!stat.isDirectory()) {
        if (rel === '') throw new KlosetError(`${full}: exists and is not a directory`);
        // Below the target, a file or a symlink where the snapshot has a directory is replaced, never followed, as tar does.
        clearName(full);
        await fs.mkdir(exactForm(full), { mode: 0o700 });
        return;
      }
      if (hasDefaultAcl(full)) this.inheritedAcls = true;
    }
  }

  /**
   * Opens, writes and closes with direct calls: on a tree of small files a
   * thread-pool round trip per open, write and close would cost more than the
   * writes, which only copy into the page cache.
   */
  async writeFile(rel: string, entry: Entry, content: AsyncIterable<Buffer>): Promise<void> {
    const full = this.full(rel);
    if (this.abandoned) throw new KlosetError(`${full}: not written, the restore is stopping`);
    const fd = createFile(full);
    this.writing.add(full);
    try {
      const threaded = entry.size >= THREADED_WRITE_MIN;
      let position = 0;
      let hole = false;
      for await (const data of content) {
        if (this.options.sparse && data.length >= HOLE_MIN && allZero(data)) {
          position += data.length;
          hole = true;
          continue;
        }
        for (let written = 0; written < data.length; ) {
          const length = data.length - written;
          const n = threaded ? (await writeAsync(fd, data, written, length, position)).bytesWritten : writeSync(fd, data, written, length, position);
          written += n;
          position += n;
        }
        hole = false;
      }
      // A hole at the end has no write to give the file its length.
      if (hole) ftruncateSync(fd, position);
    } catch (err) {
      closeSync(fd);
      this.writing.delete(full);
      rmSync(exactForm(full), { force: true }); // no half-restored file left looking whole
      throw err;
    }
    try {
      applyMetadata(full, entry, this.settings, fd);
    } finally {
      closeSync(fd);
      this.writing.delete(full);
    }
  }

  async linkFile(existing: string, rel: string, _entry: Entry): Promise<void> {
    const from = this.full(existing);
    const full = this.full(rel);
    if (this.abandoned) throw new KlosetError(`${full}: not written, the restore is stopping`);
    replacing(full, () => linkSync(exactForm(from), exactForm(full)));
  }

  /**
   * Files whose whole content is at hand, written by a thread of their own
   * (SmallFileWriter). One with extended attributes is written here: their
   * values do not cross to the thread as the buffers they are. So are the
   * first few files of a restore: the thread takes longer to start than a
   * restore of a few small files takes to write them.
   */
  async writeFiles(files: { path: string; entry: Entry; data: Buffer }[]): Promise<(Error | undefined)[]> {
    if (this.abandoned) throw new KlosetError('not written, the restore is stopping');
    const here = !this.smallFiles.running && this.writtenHere + files.length <= FILES_BEFORE_THREAD;
    if (here) this.writtenHere += files.length;
    const failures: (Error | undefined)[] = files.map(() => undefined);
    const batch: SmallFile[] = [];
    const positions: number[] = [];
    files.forEach(({ path: rel, entry, data }, k) => {
      try {
        const full = this.full(rel);
        if (here || entry.xattrs) return writeWholeFile(full, entry, data, this.settings);
        const { kind, mode, uid, gid, atime, mtime } = entry;
        batch.push({ rel, full, metadata: { kind, mode, uid, gid, atime, mtime }, data });
        positions.push(k);
      } catch (err) {
        failures[k] = err as Error;
      }
    });
    if (batch.length > 0) {
      (await this.smallFiles.write(this.settings, batch)).forEach((failure, k) => {
        if (failure) failures[positions[k]] = Object.assign(new Error(failure.message), failure.code ? { code: failure.code } : {});
      });
    }
    return failures;
  }

  async abandon(): Promise<void> {
    this.abandoned = true;
    // First what is in hand here: the wait for the thread may be cut short (a stalled disk, a second Ctrl-C).
    for (const full of this.writing) rmSync(exactForm(full), { force: true });
    this.writing.clear();
    await this.smallFiles.stop();
  }

  async createSpecial(rel: string, entry: Entry): Promise<void> {
    const full = this.full(rel);
    if (entry.kind === 'symlink' && entry.target !== undefined) {
      const at = exactForm(full);
      clearName(full);
      await fs.symlink(exactForm(entry.target), at);
      if (this.asRoot) await fs.lchown(at, entry.uid, entry.gid).catch(() => undefined);
      // Set on the link itself (lsetxattr), as they were read from it.
      if (entry.xattrs) withTextPath(full, (textPath) => writeXattrs(textPath, entry.xattrs!));
      await fs.lutimes(at, asDate(entry.atime ?? entry.mtime), asDate(entry.mtime)).catch(() => undefined);
      return;
    }
    if (entry.kind === 'fifo' || entry.kind === 'device') {
      const at = exactForm(full);
      clearName(full);
      if (typeof at === 'string') await makeSpecial(full, entry);
      else {
        // mkfifo and mknod take their path as text: a name that is not is made under a temporary
        // one in its own directory, reached through the directory's descriptor, then renamed.
        const dir = await fs.open(exactForm(path.dirname(full)), constants.O_RDONLY | constants.O_DIRECTORY);
        const temporary = `/proc/${process.pid}/fd/${dir.fd}/.kloset-${randomBytes(8).toString('hex')}`;
        try {
          await makeSpecial(temporary, entry);
          await fs.rename(temporary, at);
        } catch (err) {
          await fs.rm(temporary, { force: true });
          throw err;
        } finally {
          await dir.close();
        }
      }
      applyMetadata(full, entry, this.settings);
    }
    // Sockets belong to the process that listened on them: recorded, not recreated (as tar and restic do).
  }

  /**
   * Owner, mode and times through a descriptor of the directory itself: by its path, they would
   * follow a symbolic link that whoever can write its parent put there meanwhile (a restore as
   * root into a directory of another user's), and give a file outside the target away.
   */
  async finishDirectory(rel: string, entry: Entry): Promise<void> {
    if (rel === '' && !this.ownTarget) return;
    const full = this.full(rel);
    let fd: number;
    try {
      // The target itself is the user's to name, a symbolic link to a directory included (as createDirectory took it).
      const noFollow = rel === '' ? 0 : constants.O_NOFOLLOW;
      fd = openSync(exactForm(full), constants.O_RDONLY | constants.O_DIRECTORY | noFollow);
    } catch (err) {
      // A directory the restoring user may search but not read: nothing else reaches it by path.
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
      return applyMetadata(full, entry, this.settings);
    }
    try {
      applyMetadata(full, entry, this.settings, fd);
    } finally {
      closeSync(fd);
    }
  }

  async close(): Promise<void> {
    await this.smallFiles.close();
  }
}
