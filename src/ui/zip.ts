/**
 * A directory of a snapshot as a zip stream, for the desktops that open zip
 * and not tar. yazl writes the archive (zip64 where sizes need it, UTF-8
 * names, Unix modes in the external attributes, data descriptors after each
 * member); files are stored, not deflated, as in the tar. Members are added
 * as the tree is walked, each file's content read only when its turn comes,
 * and the walk stays at most LOOKAHEAD members ahead of the output.
 *
 * Symlinks are members whose mode says so and whose content is the target,
 * as Info-ZIP writes them. FIFOs, devices and sockets have no place in zip
 * and are left out, as are names that could not be extracted safely.
 */
import { Readable } from 'node:stream';
import yazl from 'yazl';
import { checkEntryName } from '../connectors/exporter.js';
import { KlosetError } from '../errors.js';
import type { SnapshotReader } from '../snapshot/reader.js';
import type { Entry } from '../snapshot/tree.js';

const LOOKAHEAD = 64;
const S_IFLNK = 0o120000;

export interface ZipOptions {
  onSkip?: (path: string, reason: string) => void;
}

function mtimeOf(e: Entry): Date {
  return new Date(e.mtime.sec * 1000 + Math.floor(e.mtime.nsec / 1e6));
}

/** The zip's bytes, in order. A file found damaged on the way fails the iteration: the download must not look complete. */
export async function* zipStream(reader: SnapshotReader, entry: Entry, rootName: string, options: ZipOptions = {}): AsyncGenerator<Buffer> {
  const zip = new yazl.ZipFile();
  const output = zip.outputStream as unknown as Readable;
  let added = 0;
  let started = 0;
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

  const content = async function* (path: string, e: Entry): AsyncGenerator<Buffer> {
    let written = 0;
    for await (const data of (await reader.openFile(e)).stream()) {
      written += data.length;
      yield data;
    }
    if (written !== e.size) throw new KlosetError(`${path}: content is ${written} bytes, the entry says ${e.size}`);
  };

  const add = async (path: string, e: Entry): Promise<void> => {
    if (stopped) return;
    const mtime = mtimeOf(e);
    if (e.kind === 'directory') {
      zip.addEmptyDirectory(path, { mtime, mode: e.mode });
      for await (const child of reader.children(e)) {
        // yazl turns a backslash into a separator: such a name would land elsewhere.
        const problem = checkEntryName(child.name) ?? (child.name.includes('\\') ? 'a backslash in the name' : undefined);
        if (problem) options.onSkip?.(`${path}/${child.name}`, problem);
        else await add(`${path}/${child.name}`, child);
      }
    } else if (e.kind === 'file') {
      while (added - started >= LOOKAHEAD && !stopped) await new Promise<void>((resolve) => (wake = resolve));
      if (stopped) return;
      added++;
      zip.addReadStreamLazy(path, { size: e.size, mtime, mode: e.mode, compress: false }, (callback) => {
        started++;
        wake?.();
        const stream = Readable.from(content(path, e), { objectMode: false });
        stream.on('error', fail);
        callback(null, stream);
      });
    } else if (e.kind === 'symlink') {
      zip.addBuffer(Buffer.from(e.target ?? ''), path, { mtime, mode: S_IFLNK | 0o777, compress: false });
    } else {
      options.onSkip?.(path, `${e.kind} not representable in zip`);
    }
  };

  const filling = add(rootName, entry).then(
    () => (stopped ? undefined : zip.end()),
    (err: unknown) => fail(err),
  );
  try {
    for await (const data of output) yield data as Buffer;
  } finally {
    // Also when the client went away: the walk must not wait for a reader that is gone.
    stop();
    await filling;
  }
}
