/**
 * A directory of a snapshot as a zip stream, for the desktops that open zip
 * and not tar. yazl writes the archive (zip64 where sizes need it, UTF-8
 * names, Unix modes in the external attributes, data descriptors after each
 * member); files are stored, not deflated, as in the tar. Members are added
 * as the tree is walked, each file's content read only when its turn comes,
 * and the walk stays a bounded number of members ahead of the output.
 *
 * Symlinks are members whose mode says so and whose content is the target,
 * as Info-ZIP writes them. FIFOs, devices and sockets have no place in zip
 * and are left out, as are names that could not be extracted safely.
 */
import { Readable } from 'node:stream';
import { requireCjs } from '../../cjs.js';
import { checkEntryName } from '../../snapshot/exporter.js';
import { KlosetError } from '../../errors.js';
import { memberPath, unreadableMember, type TarOptions } from './tar.js';
import { shownName } from '../../snapshot/names.js';
import type { SnapshotReader } from '../../snapshot/reader.js';
import type { Entry } from '../../snapshot/tree.js';

const yazl = requireCjs('yazl') as typeof import('yazl');

/** Files whose content is yet to be read, at most. */
const FILES_AHEAD = 64;
/**
 * Entries yazl holds and has not written out, at most, before a directory or
 * symlink is added: behind a file still being written (the client reading
 * slowly), yazl writes a run of them recursively once the file ends, a stack
 * frame each, and thousands overflowed the stack.
 */
const UNWRITTEN_AHEAD = 256;
/** yazl 3's state of an entry whose bytes are all written (Entry.FILE_DATA_DONE, which it does not export). */
const ENTRY_WRITTEN = 3;
const S_IFLNK = 0o120000;

export type ZipOptions = TarOptions;

/** zip times are unsigned: a time before 1970 (which tar keeps) becomes the epoch. */
function mtimeOf(e: Entry): Date {
  return new Date(Math.max(0, e.mtime.sec * 1000 + Math.floor(e.mtime.nsec / 1e6)));
}

/** A name zip tools take for a path (a backslash, a drive letter) is made plain. */
function plainRoot(name: string): string {
  return name.replace(/\\/g, '_').replace(/^([A-Za-z]):/, '$1_');
}

/**
 * The zip's bytes, in order, members named as tarStream names them. A file
 * found damaged on the way fails the iteration: the download must not look complete.
 */
export async function* zipStream(reader: SnapshotReader, entry: Entry, rootName: string, options: ZipOptions = {}): AsyncGenerator<Buffer> {
  const zip = new yazl.ZipFile();
  const output = zip.outputStream as unknown as Readable;
  let filesAdded = 0;
  let filesStarted = 0;
  // yazl's queue, read to bound what waits in it: the only measure of what it has written.
  const entries = (zip as unknown as { entries: { state: number }[] }).entries;
  let writtenOut = 0;
  const unwritten = () => {
    while (writtenOut < entries.length && entries[writtenOut].state >= ENTRY_WRITTEN) writtenOut++;
    return entries.length - writtenOut;
  };
  let reading: Readable | undefined;
  let wake: (() => void) | undefined;
  let stopped = false;
  const stop = () => {
    stopped = true;
    wake?.();
  };
  const fail = (err: unknown) => {
    stop();
    output.destroy(err instanceof Error ? err : new Error(String(err)));
  };
  zip.on('error', fail);
  const until = async (ready: () => boolean) => {
    while (!ready() && !stopped) await new Promise<void>((resolve) => (wake = resolve));
  };

  const content = async function* (path: string, e: Entry): AsyncGenerator<Buffer> {
    let written = 0;
    try {
      for await (const data of (await reader.openFile(e)).stream()) {
        written += data.length;
        yield data;
      }
    } catch (err) {
      throw unreadableMember(path, err);
    }
    if (written !== e.size) throw new KlosetError(`${path}: content is ${written} bytes, the entry says ${e.size}`);
    options.onFile?.(path, e.size);
  };

  /** A directory or symlink, once yazl has few enough entries left to write. */
  const addOther = async (write: () => void): Promise<void> => {
    await until(() => unwritten() < UNWRITTEN_AHEAD);
    if (!stopped) write();
  };

  const add = async (path: string, e: Entry): Promise<void> => {
    if (stopped) return;
    const mtime = mtimeOf(e);
    // A zip name is UTF-8: one that is not goes in as the viewer shows it. A member at the top named
    // as a drive (`c:notes`, `a:b`) is made plain as the root is: yazl refuses it as an absolute path.
    const name = plainRoot(shownName(path));
    if (e.kind === 'directory') {
      if (path !== '') await addOther(() => zip.addEmptyDirectory(name, { mtime, mode: e.mode }));
      for await (const child of reader.children(e)) {
        if (stopped) break;
        // yazl turns a backslash into a separator: such a name would land elsewhere.
        const problem = checkEntryName(child.name) ?? (child.name.includes('\\') ? 'a backslash in the name' : undefined);
        if (problem) options.onSkip?.(memberPath(path, child.name), problem, 'name');
        else await add(memberPath(path, child.name), child);
      }
    } else if (e.kind === 'file') {
      await until(() => filesAdded - filesStarted < FILES_AHEAD);
      if (stopped) return;
      filesAdded++;
      zip.addReadStreamLazy(name, { size: e.size, mtime, mode: e.mode, compress: false }, (callback) => {
        filesStarted++;
        const stream = Readable.from(content(path, e), { objectMode: false });
        reading = stream;
        stream.on('error', fail);
        stream.on('close', () => wake?.());
        wake?.();
        callback(null, stream);
      });
    } else if (e.kind === 'symlink') {
      const target = Buffer.from(shownName(e.target ?? ''));
      await addOther(() => zip.addBuffer(target, name, { mtime, mode: S_IFLNK | 0o777, compress: false }));
    } else {
      options.onSkip?.(path, `${e.kind} not representable in zip`, 'format');
    }
  };

  const filling = add(plainRoot(rootName), entry)
    .then(() => {
      if (!stopped) zip.end();
    })
    .catch(fail);
  try {
    for await (const data of output) {
      yield data as Buffer;
      // yazl writes as its output is read: what waits for it to catch up may go on.
      wake?.();
    }
  } finally {
    // Also when the client went away: the walk must not wait for a reader that is gone, nor a file stay open.
    stop();
    reading?.destroy();
    await filling;
  }
}
