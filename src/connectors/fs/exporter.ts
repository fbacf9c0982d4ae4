import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, ftruncateSync, linkSync, openSync, promises as fs, readFileSync, rmSync, write, writeSync } from 'node:fs';
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
/** Where Linux shows this process's descriptors: a path through one is looked up from the directory it holds. */
const DESCRIPTORS = `/proc/${process.pid}/fd`;
/** Linux's O_PATH (Node has no constant for it): a descriptor to look names up from, needing no right to read the directory. */
const O_PATH = 0o10000000;
/** A pinned directory in a system call's message, or the directory itself (`<n>/.`). */
const PINNED_PATH = new RegExp(`${DESCRIPTORS}/(\\d+)(?:/\\.(?=$|['"\\s]))?`, 'g');
const nothing = () => undefined;

let pinsAllowed: number | undefined;
/** A quarter of the soft limit on open files (Node raises it to the hard limit), at most 4096. */
function pinLimit(): number {
  if (pinsAllowed === undefined) {
    let limit = 1024;
    try {
      const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
      const soft = Number(line?.split(/\s{2,}/)[1]);
      if (Number.isFinite(soft) && soft > 0) limit = soft;
    } catch {
      // no /proc: no pinning either
    }
    pinsAllowed = Math.min(4096, Math.floor(limit / 4));
  }
  return pinsAllowed;
}

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
 * each directory it makes or finds is opened without following a link and
 * held open until it is finished, and every name in it is reached through
 * that descriptor (`/proc/<pid>/fd/<n>/<name>`, as openat would), so the
 * kernel looks up one name, never the directories above again. By a full
 * path, whoever can write one of them (another user's directory in a
 * target restored as root) could swap a directory for a symbolic link
 * between two calls and send a write outside the target. Files are opened
 * with O_NOFOLLOW, so a link in the place of a file is replaced, not
 * written through. Without /proc (another system), names are reached by
 * their full paths.
 */
export class FsExporter implements Exporter {
  readonly target: string;
  private readonly asRoot = process.getuid?.() === 0;
  /** Files opened and not yet complete, by the path they are reached by. */
  private readonly writing = new Set<string>();
  /** Descriptors of the directories made or found and not yet finished, by their path below the target. */
  private readonly pinned = new Map<string, number>();
  /** The full path of each pinned descriptor, for messages. */
  private readonly pinnedFull = new Map<number, string>();
  private readonly pinning = process.platform === 'linux' && existsSync(DESCRIPTORS);
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

  /**
   * Only '' names the target itself; every other path must be relative and lie below it, whatever its `..` segments.
   * `inside` is the path below the target, normalized ('' for the target).
   */
  private locate(rel: string): { full: string; inside: string } {
    // No name in a snapshot holds a '/', so only a forged one gives an absolute path: it names a place
    // outside the target, and is refused as one that climbs out is, never put below the target.
    if (path.isAbsolute(rel)) throw new KlosetError(`${rel}: refusing to write outside ${this.target}`);
    if (rel === '') return { full: this.target, inside: '' };
    const full = path.join(this.target, rel);
    const inside = path.relative(this.target, full);
    if (inside === '' || inside === '..' || inside.startsWith('..' + path.sep) || path.isAbsolute(inside)) {
      throw new KlosetError(`${full}: refusing to write outside ${this.target}`);
    }
    if (this.keepOut.some((place) => full === place || full.startsWith(place + path.sep))) {
      throw new KlosetError(`${full}: inside the store, left out: restored, it would replace the store's own files`);
    }
    return { full, inside };
  }

  /**
   * The path calls on `rel` go by: through the descriptor of its directory
   * when that is pinned, else (a file linked from a directory already
   * finished) through one opened for the call (walk). `release` closes what
   * was opened for it.
   */
  private reach(rel: string): { full: string; inside: string; at: string; release: () => void } {
    const { full, inside } = this.locate(rel);
    if (!this.pinning || inside === '') return { full, inside, at: full, release: nothing };
    const slash = inside.lastIndexOf('/');
    const parent = this.pinned.get(slash < 0 ? '' : inside.slice(0, slash));
    if (parent !== undefined) return { full, inside, at: `${DESCRIPTORS}/${parent}/${inside.slice(slash + 1)}`, release: nothing };
    return { full, inside, ...this.walk(full, inside) };
  }

  /**
   * Opens the directories of `inside` name by name from the nearest pinned
   * one, following no link, each closed once the next is open.
   */
  private walk(full: string, inside: string): { at: string; release: () => void } {
    const segments = inside.split('/');
    const name = segments.pop()!;
    let depth = segments.length;
    while (depth > 0 && !this.pinned.has(segments.slice(0, depth).join('/'))) depth--;
    const from = this.pinned.get(segments.slice(0, depth).join('/'));
    if (from === undefined) return { at: full, release: nothing };
    let fd = from;
    let opened: number | undefined;
    const release = () => {
      if (opened !== undefined) closeSync(opened);
      opened = undefined;
    };
    try {
      for (let at = depth; at < segments.length; at++) {
        const next = openSync(exactForm(`${DESCRIPTORS}/${fd}/${segments[at]}`), O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW);
        release();
        opened = fd = next;
        this.pinnedFull.set(fd, path.join(this.target, ...segments.slice(0, at + 1)));
      }
    } catch (err) {
      this.shown(err);
      release();
      throw err;
    }
    return { at: `${DESCRIPTORS}/${fd}/${name}`, release };
  }

  /**
   * Holds a directory just made or checked open until it is finished (see
   * the class). Past a quarter of the descriptors the process may open (a
   * tree deeper than that, or the limit of a container), it is not held:
   * what is written in it goes through walk(), as safe and slower, and the
   * store's packs, the threads and the files written still find descriptors.
   */
  private pin(inside: string, full: string, at: string): void {
    if (!this.pinning || (inside !== '' && this.pinned.size >= pinLimit())) return;
    // The target itself is the user's to name, a symbolic link to a directory included.
    const fd = openSync(exactForm(at), O_PATH | constants.O_DIRECTORY | (inside === '' ? 0 : constants.O_NOFOLLOW));
    const before = this.pinned.get(inside);
    if (before !== undefined) closeSync(before);
    this.pinned.set(inside, fd);
    this.pinnedFull.set(fd, full);
  }

  /** Runs `use` on where `rel` is reached (reach), a failure named by its full path, and closes what was opened for it. */
  private async within<T>(rel: string, use: (place: { full: string; inside: string; at: string }) => T | Promise<T>): Promise<T> {
    const place = this.reach(rel);
    try {
      return await use(place);
    } catch (err) {
      throw this.shown(err);
    } finally {
      place.release();
    }
  }

  /** A failure names the entry by its full path, not by the descriptor it was reached through. */
  private shown<T>(err: T): T {
    if (!this.pinning || !(err instanceof Error)) return err;
    const named = (text: string) => text.replace(PINNED_PATH, (match, fd: string) => this.pinnedFull.get(Number(fd)) ?? match);
    err.message = named(err.message);
    const withPath = err as NodeJS.ErrnoException & { dest?: string };
    if (typeof withPath.path === 'string') withPath.path = named(withPath.path);
    if (typeof withPath.dest === 'string') withPath.dest = named(withPath.dest);
    return err;
  }

  async createDirectory(rel: string, _entry: Entry): Promise<void> {
    return this.within(rel, async ({ full, inside, at }) => {
      // The target itself may need its parents; below it, each level is made (and checked) in turn.
      if (rel === '') {
        const made = await makeDirectories(full, 0o700).catch((err: NodeJS.ErrnoException) => {
          throw err.code === 'EEXIST' ? new KlosetError(`${full}: exists and is not a directory`) : err;
        });
        this.ownTarget = made !== undefined || (await isEmptyDirectory(full));
        // Made or found: either way it may hold a default ACL, its own or its parent's.
        if (hasDefaultAcl(full)) this.inheritedAcls = true;
      } else await this.makeDirectory(at);
      this.pin(inside, full, at);
    });
  }

  private async makeDirectory(at: string): Promise<void> {
    try {
      await fs.mkdir(exactForm(at), { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const stat = await fs.lstat(exactForm(at));
      if (!stat.isDirectory()) {
        // A file or a symlink where the snapshot has a directory is replaced, never followed, as tar does.
        clearName(at);
        await fs.mkdir(exactForm(at), { mode: 0o700 });
        return;
      }
      if (hasDefaultAcl(at)) this.inheritedAcls = true;
    }
  }

  /**
   * Opens, writes and closes with direct calls: on a tree of small files a
   * thread-pool round trip per open, write and close would cost more than the
   * writes, which only copy into the page cache.
   */
  async writeFile(rel: string, entry: Entry, content: AsyncIterable<Buffer>): Promise<void> {
    return this.within(rel, ({ full, at }) => {
      if (this.abandoned) throw new KlosetError(`${full}: not written, the restore is stopping`);
      return this.writeContent(at, entry, content);
    });
  }

  private async writeContent(at: string, entry: Entry, content: AsyncIterable<Buffer>): Promise<void> {
    const fd = createFile(at);
    this.writing.add(at);
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
      this.writing.delete(at);
      rmSync(exactForm(at), { force: true }); // no half-restored file left looking whole
      throw err;
    }
    try {
      applyMetadata(at, entry, this.settings, fd);
    } finally {
      closeSync(fd);
      this.writing.delete(at);
    }
  }

  async linkFile(existing: string, rel: string, _entry: Entry): Promise<void> {
    return this.within(existing, (from) =>
      this.within(rel, ({ full, at }) => {
        if (this.abandoned) throw new KlosetError(`${full}: not written, the restore is stopping`);
        replacing(at, () => linkSync(exactForm(from.at), exactForm(at)));
      }),
    );
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
        const { at, release } = this.reach(rel);
        // One whose directory is reached by a walk (not pinned) is written here and its descriptor closed at once:
        // a batch must not hold a descriptor for each of its files.
        if (here || entry.xattrs || release !== nothing) {
          try {
            return writeWholeFile(at, entry, data, this.settings);
          } finally {
            release();
          }
        }
        const { kind, mode, uid, gid, atime, mtime } = entry;
        batch.push({ rel, at, metadata: { kind, mode, uid, gid, atime, mtime }, data });
        positions.push(k);
      } catch (err) {
        failures[k] = this.shown(err as Error);
      }
    });
    if (batch.length > 0) {
      (await this.smallFiles.write(this.settings, batch)).forEach((failure, k) => {
        if (failure) failures[positions[k]] = this.shown(Object.assign(new Error(failure.message), failure.code ? { code: failure.code } : {}));
      });
    }
    return failures;
  }

  async abandon(): Promise<void> {
    this.abandoned = true;
    // First what is in hand here: the wait for the thread may be cut short (a stalled disk, a second Ctrl-C).
    for (const at of this.writing) rmSync(exactForm(at), { force: true });
    this.writing.clear();
    await this.smallFiles.stop();
  }

  async createSpecial(rel: string, entry: Entry): Promise<void> {
    return this.within(rel, ({ at }) => this.makeSpecialEntry(at, entry));
  }

  private async makeSpecialEntry(at: string, entry: Entry): Promise<void> {
    if (entry.kind === 'symlink' && entry.target !== undefined) {
      const name = exactForm(at);
      clearName(at);
      await fs.symlink(exactForm(entry.target), name);
      if (this.asRoot) await fs.lchown(name, entry.uid, entry.gid).catch(() => undefined);
      // Set on the link itself (lsetxattr), as they were read from it.
      if (entry.xattrs) withTextPath(at, (textPath) => writeXattrs(textPath, entry.xattrs!));
      await fs.lutimes(name, asDate(entry.atime ?? entry.mtime), asDate(entry.mtime)).catch(() => undefined);
      return;
    }
    if (entry.kind === 'fifo' || entry.kind === 'device') {
      const name = exactForm(at);
      clearName(at);
      if (typeof name === 'string') await makeSpecial(at, entry);
      else {
        // mkfifo and mknod take their path as text: a name that is not is made under a temporary
        // one in its own directory, reached through the directory's descriptor, then renamed.
        const dir = await fs.open(exactForm(path.dirname(at)), constants.O_RDONLY | constants.O_DIRECTORY);
        const temporary = `/proc/${process.pid}/fd/${dir.fd}/.kloset-${randomBytes(8).toString('hex')}`;
        try {
          await makeSpecial(temporary, entry);
          await fs.rename(temporary, name);
        } catch (err) {
          await fs.rm(temporary, { force: true });
          throw err;
        } finally {
          await dir.close();
        }
      }
      applyMetadata(at, entry, this.settings);
    }
    // Sockets belong to the process that listened on them: recorded, not recreated (as tar and restic do).
  }

  /**
   * Owner, mode and times through the directory the restore made or found
   * (pinned), or else through a descriptor of it opened without following a
   * link: by its path, they would follow a symbolic link that whoever can
   * write its parent put there meanwhile (a restore as root into a
   * directory of another user's), and give a directory outside the target away.
   */
  async finishDirectory(rel: string, entry: Entry): Promise<void> {
    const { inside } = this.locate(rel);
    const pinned = this.pinned.get(inside);
    this.pinned.delete(inside);
    try {
      if (rel === '' && !this.ownTarget) return;
      await this.within(rel, ({ at }) =>
        pinned !== undefined ? applyMetadata(`${DESCRIPTORS}/${pinned}/.`, entry, this.settings) : this.finishUnpinned(rel, at, entry),
      );
    } finally {
      if (pinned !== undefined) closeSync(pinned);
    }
  }

  private finishUnpinned(rel: string, at: string, entry: Entry): void {
    let fd: number;
    try {
      // The target itself is the user's to name, a symbolic link to a directory included (as createDirectory took it).
      const noFollow = rel === '' ? 0 : constants.O_NOFOLLOW;
      fd = openSync(exactForm(at), constants.O_RDONLY | constants.O_DIRECTORY | noFollow);
    } catch (err) {
      // A directory the restoring user may search but not read: nothing else reaches it by path.
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
      return applyMetadata(at, entry, this.settings);
    }
    try {
      applyMetadata(at, entry, this.settings, fd);
    } finally {
      closeSync(fd);
    }
  }

  async close(): Promise<void> {
    for (const fd of this.pinned.values()) closeSync(fd);
    this.pinned.clear();
    this.pinnedFull.clear();
    await this.smallFiles.close();
  }
}
