import type { Stats } from 'node:fs';
import { open, realpath, rename, rm, stat } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Command } from 'commander';
import type { PicomatchOptions } from 'picomatch';
import { requireCjs } from '../../cjs.js';
import type { TarOptions } from '../../connectors/archive/tar.js';
import type { Exporter } from '../../snapshot/exporter.js';
import { isWithin, realLocation, storeInDestination, storeInSource } from '../../connectors/storeplaces.js';
import type { Importer } from '../../snapshot/importer.js';
import type { StreamImporter } from '../../connectors/stdin/importer.js';
import { ExitCode, KlosetError, UsageError, systemReason } from '../../errors.js';
import { TESTONLY_WEAK_KDF } from '../../kloset/keys.js';
import type { DiffItem } from '../../snapshot/diff.js';
import { LATEST, listSnapshots, resolveSnapshot, shortId, snapshotSummary, type SnapshotHeader } from '../../snapshot/header.js';
import { exactForm, listedName, nameFromBytes, shownName } from '../../snapshot/names.js';
import { SnapshotReader } from '../../snapshot/reader.js';
import type { RestoreOptions } from '../../snapshot/restore.js';
import { formatMode, type Entry } from '../../snapshot/tree.js';
import type { BlobStore } from '../../storage/blobstore.js';
import { LocalBlobStore } from '../../storage/local.js';
import { isS3Location, withoutPassword } from '../../storage/open.js';
import { resolveLocation } from '../../config/aliases.js';
import type { CliContext, Run } from '../context.js';
import { formatBytes, formatDuration, formatTime, plural } from '../format.js';
import { ProgressLine } from '../progress.js';
import { collect, filterFrom, parseSize, patternsWithFiles, positiveCount, withFilterOptions, type FilterFlags } from '../options.js';
import { filterSnapshots, findSnapshot, isEmptyFilter, parseSnapshotRef, parseTags } from '../snapshotref.js';

/** picomatch, loaded by the commands that match patterns. */
function glob(pattern: string, options: PicomatchOptions): (path: string) => boolean {
  return (requireCjs('picomatch') as typeof import('picomatch'))(pattern, options);
}

/** How long an interrupted restore waits for its clean-up (aborting uploads) before it exits anyway. */
export const ABANDON_TIMEOUT_MS = 5000;

function entryJson(e: Entry) {
  return {
    name: e.name,
    type: e.kind,
    mode: formatMode(e.mode, e.kind),
    uid: e.uid,
    user: e.user,
    group: e.group,
    gid: e.gid,
    size: e.kind === 'directory' ? (e.summary?.size ?? 0) : e.size,
    mtime: new Date(e.mtime.sec * 1000 + e.mtime.nsec / 1e6).toISOString(),
    target: e.target,
    meta: e.meta,
  };
}

/** Below this, a backup's fixed requests (index delta, snapshot, locks) swamp a rate per GiB. */
const PER_GIB_FROM = 64 * 2 ** 20;

/** "requests: 70 PUT, 3 GET, …", then PUTs per GiB or the bytes stored; empty for a local store. */
function requestLine(store: BlobStore, storedBytes = 0): string | undefined {
  if (!store.requests) return undefined;
  const counts = Object.entries(store.requests).filter(([, n]) => n > 0);
  if (counts.length === 0) return undefined;
  const puts = store.requests.PUT ?? 0;
  let stored = '';
  if (storedBytes >= PER_GIB_FROM) stored = `; ${Math.round(puts / (storedBytes / 2 ** 30))} PUT per GiB stored`;
  else if (storedBytes > 0) stored = `; ${formatBytes(storedBytes)} stored`;
  return `requests to ${store.location}: ${counts.map(([kind, n]) => `${n} ${kind}`).join(', ')}${stored}`;
}

/**
 * One difference, marked as restic's `diff` marks them: + added, - removed,
 * M content changed, T type changed, U metadata only; then the path
 * (directories with a slash) and what changed, or the totals of a
 * directory that came or went (restic lists everything below it instead).
 */
function diffLine(item: DiffItem): string {
  const entry = (item.after ?? item.before)!;
  const name = entry.type === 'directory' ? `${item.path.replace(/\/$/, '')}/` : item.path;
  const totals = entry.type === 'directory' ? `  (${plural(entry.files ?? 0, 'file')}, ${formatBytes(entry.size)})` : '';
  if (item.status !== 'changed') return `${diffMark(item)}  ${name}${totals}`;
  return `${diffMark(item)}  ${name}  (${(item.reasons ?? []).join(', ')})`;
}

function diffMark(item: DiffItem): '+' | '-' | 'T' | 'M' | 'U' {
  if (item.status === 'added') return '+';
  if (item.status === 'removed') return '-';
  const reasons = item.reasons ?? [];
  return reasons.includes('type') ? 'T' : reasons.some((r) => r === 'content' || r === 'size' || r === 'target') ? 'M' : 'U';
}

/** `glob`, refused when empty (`-exclude ''`, `-include /`): picomatch throws on it, and it could match nothing. */
function withSomethingToMatch(pattern: string, glob = pattern): string {
  if (glob === '') throw new UsageError(`pattern ${JSON.stringify(pattern)} names nothing to match`);
  return glob;
}

/**
 * Globs matched against a path relative to the top of the backup or
 * restore (a leading slash anchors there), or against its last name;
 * undefined without patterns.
 */
function pathMatcher(patterns: string[]): ((rel: string) => boolean) | undefined {
  if (patterns.length === 0) return undefined;
  const matchers = patterns.map((p) => ({ match: glob(withSomethingToMatch(p, p.replace(/^\/+/, '')), { dot: true }), anchored: p.startsWith('/') }));
  // A name that is not UTF-8 is typed as it is shown, with U+FFFD (see shownName).
  const matches = (rel: string) => matchers.some(({ match, anchored }) => match(rel) || (!anchored && match(path.posix.basename(rel))));
  return (rel) => matches(rel) || (!rel.isWellFormed() && matches(shownName(rel)));
}

interface BackupFlags {
  stdin?: boolean;
  stdinFromCommand?: boolean;
  stdinFilename: string;
  host?: string;
  tag?: string[];
  exclude?: string[];
  excludeFile?: string[];
  excludeCaches?: boolean;
  excludeLargerThan?: string;
  parent: boolean;
  oneFileSystem?: boolean;
}

/** The source of a backup of a stream (-stdin, -stdin-from-command), or undefined for a directory or a bucket. */
async function streamImporter(paths: string[], opts: BackupFlags): Promise<StreamImporter | undefined> {
  if (opts.stdin && opts.stdinFromCommand) throw new UsageError('-stdin and -stdin-from-command: choose one');
  if (!opts.stdin && !opts.stdinFromCommand) {
    if (opts.stdinFilename !== 'stdin') throw new UsageError('-stdin-filename names what -stdin or -stdin-from-command reads');
    return undefined;
  }
  const flag = opts.stdin ? '-stdin' : '-stdin-from-command';
  const directoryOnly = (
    [
      [opts.oneFileSystem, '-one-file-system'],
      [opts.excludeCaches, '-exclude-caches'],
      [opts.exclude || opts.excludeFile, '-exclude'],
      [opts.excludeLargerThan, '-exclude-larger-than'],
    ] as const
  ).find(([given]) => given)?.[1];
  if (directoryOnly) throw new UsageError(`${directoryOnly} applies to a directory, not to ${flag}`);
  if (opts.stdin) {
    if (paths.length > 0) throw new UsageError(`-stdin backs up standard input: no path (${paths[0]})`);
    if (process.stdin.isTTY) throw new UsageError('-stdin: standard input is a terminal: pipe the data to back up into kloset');
  } else if (paths.length === 0) {
    throw new UsageError('-stdin-from-command: give the command after --, as in: kloset backup -stdin-from-command -- pg_dump mydb');
  } else {
    // The command runs in the current directory. One deleted since is refused, as for a relative path: the
    // backup's threads move the process to / (threads.ts), where the command would read and write instead.
    try {
      process.cwd();
    } catch (err) {
      throw new KlosetError(`-stdin-from-command: ${systemReason(err)}`);
    }
  }
  const { StreamImporter, streamFileNameProblem } = await import('../../connectors/stdin/importer.js');
  const problem = streamFileNameProblem(opts.stdinFilename);
  if (problem) throw new UsageError(`-stdin-filename: ${problem}`);
  return new StreamImporter(opts.stdinFilename, opts.stdin ? undefined : paths, opts.host);
}

/**
 * Standard output as the end of a pipeline, without handing stdout itself to
 * it: on a failure pipeline destroys its streams with the error, and stdout
 * destroyed so would report a damaged pack or a Ctrl-C as its own write
 * failing (main.ts) and exit there, before the command says what happened
 * and releases its lock. A reader that went away still ends the process as
 * SIGPIPE would (main.ts).
 */
function toStandardOutput(): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      process.stdout.write(chunk, (err) => {
        // The reader is gone: main.ts ends the process as SIGPIPE would, once it has released the locks.
        if ((err as NodeJS.ErrnoException | null | undefined)?.code === 'EPIPE') return;
        callback(err ?? undefined);
      });
    },
  });
}

/** Where an archive goes, opened before it is written. */
interface ArchiveOutput {
  sink: NodeJS.WritableStream;
  /** Puts the archive under its name, once it is whole. */
  commit(): Promise<void>;
  /** Removes what a failure left half written; the name keeps what it held. */
  discard(): Promise<void>;
}

/**
 * An archive's output: standard output (no `output`), a device or a pipe
 * written in place (a tape, a FIFO, /dev/stdout), as tar writes them, or a
 * file written beside its name and renamed once whole, so that an archive
 * cut short is never left under that name. A new file has mode 0600, since
 * it holds whatever the snapshot holds; one replaced (through a symbolic
 * link that names it) keeps its mode and owner, as tar -cf over it keeps them.
 * A name typed with bytes that are not UTF-8 is written with those bytes (exactForm).
 */
async function openArchiveOutput(output: string | undefined, existing: Stats | undefined): Promise<ArchiveOutput> {
  const nothing = async () => undefined;
  if (output === undefined) return { sink: toStandardOutput(), commit: nothing, discard: nothing };
  const cannotWrite = (err: unknown) => Promise.reject(archiveWriteError(output, err));
  if (existing && !existing.isFile()) {
    const file = await open(exactForm(output), 'w').catch(cannotWrite);
    return { sink: file.createWriteStream(), commit: nothing, discard: nothing };
  }
  const final = existing ? nameFromBytes(await realpath(exactForm(output), { encoding: 'buffer' })) : output;
  const partial = exactForm(path.join(path.dirname(final), `.${path.basename(final)}.${process.pid}.partial`));
  const file = await open(partial, 'wx', 0o600).catch(cannotWrite);
  try {
    if (existing) {
      await file.chmod(existing.mode & 0o7777);
      if (process.getuid?.() === 0) await file.chown(existing.uid, existing.gid);
    }
  } catch (err) {
    await file.close();
    await rm(partial, { force: true });
    throw err;
  }
  return {
    sink: file.createWriteStream(),
    commit: () => rename(partial, exactForm(final)),
    discard: () => rm(partial, { force: true }),
  };
}

function archiveWriteError(output: string | undefined, err: unknown): KlosetError {
  return new KlosetError(`cannot write ${output ?? 'the output'}: ${systemReason(err)}`, { cause: err });
}

/** The formats of `archive`, as Plakar names them, with the file name ending each is known by. */
const ARCHIVE_FORMATS: Record<'tar' | 'tarball' | 'zip', { ending: string; aliases: string[] }> = {
  tar: { ending: '.tar', aliases: [] },
  tarball: { ending: '.tar.gz', aliases: ['tar.gz', 'tgz'] },
  zip: { ending: '.zip', aliases: [] },
};
type ArchiveFormat = keyof typeof ARCHIVE_FORMATS;

/** -format as given, else the one the output's name ends with (as `tar -a`), else tar. */
function archiveFormat(flag: string | undefined, output: string | undefined): ArchiveFormat {
  const formats = Object.entries(ARCHIVE_FORMATS) as [ArchiveFormat, { ending: string; aliases: string[] }][];
  if (flag !== undefined) {
    const wanted = flag.toLowerCase();
    const found = formats.find(([name, f]) => name === wanted || f.aliases.includes(wanted));
    if (!found) throw new UsageError(`-format ${flag}: the formats are tar, tarball (tar.gz) and zip`);
    return found[0];
  }
  const name = (output ?? '').toLowerCase();
  if (name.endsWith('.tgz')) return 'tarball';
  return formats.find(([, f]) => name.endsWith(f.ending))?.[0] ?? 'tar';
}

interface ArchiveFlags {
  format?: string;
  output?: string;
  rebase?: boolean;
  tag?: string[];
  host?: string[];
}

interface RestoreFlags {
  to?: string;
  sparse?: boolean;
  tag?: string[];
  host?: string[];
  concurrency?: number;
  include?: string[];
  exclude?: string[];
  includeFile?: string[];
  excludeFile?: string[];
}

/**
 * restore's -include (what matches, and the directories leading to it) or
 * -exclude (all but what matches); `matched` tells afterwards whether an
 * -include found anything.
 */
function restoreSelection(include: string[], exclude: string[]): { select?: RestoreOptions['select']; matched: () => boolean } {
  if (include.length && exclude.length) throw new UsageError('restore takes -include or -exclude, not both');
  let matched = false;
  const included = pathMatcher(include);
  if (included) {
    const select: RestoreOptions['select'] = (rel, entry) => {
      if (!included(rel)) return entry.kind === 'directory' ? 'search' : 'skip';
      matched = true;
      return 'take';
    };
    return { select, matched: () => matched };
  }
  const excluded = pathMatcher(exclude);
  if (excluded) return { select: (rel, entry) => (excluded(rel) ? 'skip' : entry.kind === 'directory' ? 'enter' : 'take'), matched: () => true };
  return { matched: () => true };
}

/** One snapshot as `ls` lists it: time, short id, size, source, tags. */
export function snapshotLine(h: SnapshotHeader): string {
  return `${formatTime(h.time)}  ${shortId(h.id)}  ${formatBytes(h.stats.size).padStart(10)}  ${h.source}${h.tags.length ? `  [${h.tags.join(',')}]` : ''}`;
}

function entryLine(e: Entry): string {
  const size = e.kind === 'directory' ? (e.summary?.size ?? 0) : e.size;
  const when = formatTime(new Date(e.mtime.sec * 1000));
  const name = e.kind === 'symlink' ? `${e.name} -> ${e.target}` : e.kind === 'directory' ? `${e.name}/` : e.name;
  return `${formatMode(e.mode, e.kind)} ${(e.user ?? String(e.uid)).padEnd(8)} ${(e.group ?? String(e.gid)).padEnd(8)} ${formatBytes(size).padStart(10)} ${when} ${name}`;
}

export function registerSnapshotCommands(program: Command, context: () => CliContext, run: Run): void {
  program
    .command('create')
    .description('create a new store (encrypted unless -plaintext)')
    .option('--plaintext', 'no encryption: blobs are still compressed, and MACed against damage (not tampering)')
    .option('--no-encryption', 'same as --plaintext')
    .action((opts: { plaintext?: boolean; encryption?: boolean }) =>
      run(async () => {
        const ctx = context();
        const plaintext = opts.plaintext === true || opts.encryption === false;
        const store = await ctx.emptyBlobStore();
        const passphrase = plaintext ? null : await ctx.passphrase(true);
        const { Repository } = await import('../../kloset/repository.js');
        const kdf = process.env.KLOSET_TESTONLY_WEAKEN_KDF === '1' ? TESTONLY_WEAK_KDF : undefined;
        const repository = await Repository.create(store, { passphrase, kdf });
        ctx.info(`created ${plaintext ? 'plaintext' : 'encrypted'} store ${repository.config.storeId.slice(0, 8)} at ${store.location}`);
      }),
    );

  program
    .command('backup')
    .description('snapshot a directory, a bucket, or a stream')
    .argument('[path...]', 'directory, @source alias, or - for standard input (default: "."); with -stdin-from-command, the command and its arguments, after --')
    .option('--stdin', 'back up standard input, as one file (a dump piped in)')
    .option('--stdin-from-command', 'run the command given after -- and back up its output, as one file; a command that fails fails the backup')
    .option('--stdin-filename <name>', 'the name of that file in the snapshot', 'stdin')
    .option('--host <name>', "the host to record the snapshot under, and to find the previous one by (default: this machine's name)")
    .option('--tag <tags>', 'comma-separated tags', collect)
    .option('--exclude <pattern>', 'glob of paths to leave out (repeatable)', collect)
    .option('--exclude-file <file>', 'leave out the paths matching the patterns of a file, one per line (# comments; repeatable)', collect)
    .option('--exclude-caches', 'leave out the content of directories marked by a CACHEDIR.TAG file (the directory and the tag are kept)')
    .option('--exclude-larger-than <size>', 'leave out files larger than this (512K, 100M, 2G: powers of 1024)')
    .option('--no-parent', 'read every file, even unchanged ones')
    .option('-x, --one-file-system', 'do not cross into other file systems: a mount point is kept as an empty directory')
    .action((paths: string[], opts: BackupFlags) =>
      run(async () => {
        const ctx = context();
        if (opts.host !== undefined && !/^[^\s/]+$/.test(opts.host)) throw new UsageError(`-host ${JSON.stringify(opts.host)}: a host name, without spaces or slashes`);
        // A snapshot's host and tags are text, shown and matched as typed: bytes that are not UTF-8 would be neither.
        const notText = [opts.host ?? '', ...(opts.tag ?? [])].find((value) => !value.isWellFormed());
        if (notText !== undefined) throw new UsageError(`${notText}: not UTF-8 text: a host name or a tag is text`);
        // `-` for standard input, as rustic and most Unix tools read it (a directory of that name is ./-).
        if (paths.length === 1 && paths[0] === '-' && !opts.stdinFromCommand) [paths, opts] = [[], { ...opts, stdin: true }];
        const stream = await streamImporter(paths, opts);
        if (opts.stdin && ctx.options.passphraseFile === '-') throw new UsageError('-stdin and --passphrase-file -: standard input cannot carry both');
        if (!stream && paths.length > 1) throw new UsageError(`back up one directory or bucket at a time, not ${paths.length}`);
        const { location, options: sourceOptions } = stream
          ? { location: '', options: {} }
          : await resolveLocation(paths[0] ?? '.', 'source', ctx.aliases);
        const fromS3 = isS3Location(location);
        if (!fromS3 && /^[a-z][a-z0-9+.-]*:\/\//i.test(location)) throw new KlosetError(`${withoutPassword(location)}: unsupported source`);
        if (fromS3 && opts.oneFileSystem) throw new UsageError('-one-file-system applies to a local directory, not to a bucket');
        if (fromS3 && opts.excludeCaches) throw new UsageError('-exclude-caches applies to a local directory, not to a bucket');
        const excludePath = pathMatcher(patternsWithFiles(opts.exclude, opts.excludeFile));
        const largest = opts.excludeLargerThan === undefined ? undefined : parseSize(opts.excludeLargerThan);
        const local = fromS3 || stream ? undefined : new (await import('../../connectors/fs/importer.js')).FsImporter(location, { oneFileSystem: opts.oneFileSystem, excludeCaches: opts.excludeCaches, host: opts.host });
        // The S3 connector's modules load while the store opens, whose key derivation runs on the thread pool.
        const connector = fromS3 ? import('../../connectors/s3/importer.js') : undefined;
        connector?.catch(() => undefined); // awaited below, once the store is open
        const { repository, lock } = await ctx.lockedRepository('shared', 'a backup');
        let importer: Importer;
        let exclude: ((rel: string) => boolean) | undefined = excludePath;
        let excludeAndSay = exclude;
        try {
          importer = stream ?? local ?? (await connector!).S3Importer.fromConfig(location, sourceOptions);
          // A store read into itself would take in again, at every backup, the packs the backup before wrote:
          // it is left out, as tar leaves out the archive it writes.
          const leaveOut = stream ? undefined : await storeInSource(repository.store, location);
          if (leaveOut) {
            exclude = (p) => leaveOut.includes(p) || (excludePath?.(p) ?? false);
            // Said where the walk meets it: not when an -exclude or -x already kept the walk away.
            excludeAndSay = (p) => {
              if (excludePath?.(p)) return true;
              if (!leaveOut.includes(p)) return false;
              progress.clear();
              ctx.warn(`/${p}: the store itself, left out`);
              return true;
            };
          }
        } catch (err) {
          await ctx.release(lock);
          throw err;
        }
        // Chosen under the lock: a prune cannot have removed what the parent refers to. By host too, as
        // restic chooses it: a bucket's origin is its endpoint, the same for every host that backs it up.
        const host = opts.host ?? os.hostname();
        const parent = opts.parent
          ? await listSnapshots(repository, ctx.onDamagedSnapshot).then(
              (headers) =>
                headers.filter((h) => h.importer === importer.type && h.origin === importer.origin && h.source === importer.source && h.host === host).pop(),
              async (err: unknown) => {
                await ctx.release(lock);
                throw err;
              },
            )
          : undefined;
        const controller = new AbortController();
        const onSignal = () => controller.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        // The previous snapshot's size is the first estimate; a scan of the source, when it has one, replaces it.
        const progress = new ProgressLine('backup', parent?.root.summary?.size);
        const scanning = new AbortController();
        if (progress.shownOnTerminal && importer.scan) {
          importer.scan({ skip: exclude, largerThan: largest, signal: scanning.signal }).then(
            (bytes) => progress.setTotal(bytes),
            () => undefined,
          );
        }
        try {
          const { backup } = await import('../../snapshot/builder.js');
          const header = await backup(repository, importer, {
            tags: parseTags(opts.tag),
            host: opts.host,
            exclude: largest === undefined ? excludeAndSay : (p, entry) => (entry.kind === 'file' && entry.size > largest) || (excludeAndSay?.(p) ?? false),
            parent,
            signal: controller.signal,
            beforeCommit: async () => lock?.check(),
            onProgress: (p) => progress.update(p),
            onWarning: (p, message) => {
              progress.clear();
              ctx.warn(`${p}: ${message}`);
            },
          });
          progress.clear();
          const s = header.stats;
          ctx.info(
            `created snapshot ${shortId(header.id)} of ${importer.source}: ${plural(s.files, 'file')}, ${plural(s.directories, 'directory', 'directories')}, ` +
              `${formatBytes(s.size)} (${formatBytes(s.storedBytes)} added to the store) in ${formatDuration(s.durationMs)}` +
              (s.errors ? `, ${plural(s.errors, 'error')}` : ''),
          );
          for (const note of importer.notes?.() ?? []) ctx.warn(note);
          const requests = requestLine(repository.store, s.storedBytes);
          if (requests) ctx.info(requests);
          return s.errors ? ExitCode.PARTIAL : ExitCode.OK;
        } catch (err) {
          progress.clear();
          if (controller.signal.aborted) throw new KlosetError('backup interrupted: no snapshot was created', { exitCode: 130 });
          // A system call failed mid-way (a full disk, a network store gone): the header is written
          // last, so say that no part of a snapshot is in the store.
          const failed = err as NodeJS.ErrnoException;
          const code = failed.code ?? (failed.cause as NodeJS.ErrnoException | undefined)?.code;
          if ((code && /^E[A-Z0-9]+$/.test(code)) || stream) {
            const exitCode = err instanceof KlosetError ? err.exitCode : undefined;
            throw new KlosetError(`${failed.message}; the backup stopped and created no snapshot`, { cause: err, exitCode });
          }
          throw err;
        } finally {
          scanning.abort();
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await importer.close();
          await ctx.release(lock);
        }
      }),
    );

  withFilterOptions(
    program
      .command('ls')
      .description('list snapshots, or the content of a directory in a snapshot')
      .argument('[snapshot]', 'snapshot id prefix or latest, optionally with :/path (no id: the newest of those selected)'),
  )
    .option('--json', 'JSON output')
    .option('-R, --recursive', 'list subdirectories too')
    .option('-0, --null', 'names alone, each ended by NUL instead of a newline and given exactly (for xargs -0)')
    .action((arg: string | undefined, opts: FilterFlags & { json?: boolean; recursive?: boolean; null?: boolean }) =>
      run(async () => {
        const ctx = context();
        const filter = filterFrom(opts);
        if (opts.null && opts.json) throw new UsageError('-0 and --json: choose one');
        if (opts.null && !arg) throw new UsageError('-0 lists the names in a snapshot: give one (latest, an id, with :/path)');
        const repository = await ctx.repository();
        if (!arg) {
          const headers = filterSnapshots(await listSnapshots(repository, ctx.onDamagedSnapshot), filter);
          if (opts.json) {
            ctx.out(JSON.stringify(headers.map(snapshotSummary), null, 2));
            return;
          }
          for (const h of headers) ctx.out(snapshotLine(h));
          return;
        }
        const ref = parseSnapshotRef(arg);
        const header = await findSnapshot(repository, ref, filter, ctx.onDamagedSnapshot);
        const reader = new SnapshotReader(repository, header);
        const entry = await reader.lookup(ref.path);
        const rows: ReturnType<typeof entryJson>[] = [];
        // A name no directory can hold (a forged snapshot's '..') is quoted in every form, so that it never reads as a path.
        const emit = (e: Entry, prefix: string) => {
          const name = prefix + listedName(e.name);
          if (opts.json) rows.push({ ...entryJson(e), name });
          else if (opts.null) ctx.outNul(name);
          else ctx.out(entryLine({ ...e, name }));
        };
        const walk = async (dir: Entry, prefix: string): Promise<void> => {
          for await (const child of reader.children(dir)) {
            emit(child, prefix);
            if (opts.recursive && child.kind === 'directory') await walk(child, `${prefix}${listedName(child.name)}/`);
          }
        };
        if (entry.kind === 'directory') await walk(entry, '');
        else emit(entry, '');
        if (opts.json) ctx.out(JSON.stringify(rows, null, 2));
      }),
    );

  program
    .command('cat')
    .description('print files from a snapshot')
    .argument('<file...>', 'snapshot:/path/to/file')
    .action((args: string[]) =>
      run(async () => {
        const ctx = context();
        const refs = args.map((arg) => {
          const ref = parseSnapshotRef(arg);
          // A bare name could be a snapshot or a file: only the colon says which is meant. ':/path' is the latest's, as for ls.
          if (!arg.includes(':')) throw new UsageError(`cat needs snapshot:/path, got ${JSON.stringify(arg)}`);
          return ref.id === '' ? { ...ref, id: LATEST } : ref;
        });
        const repository = await ctx.repository();
        // As cat(1): a file that cannot be printed is named, and the others are still printed.
        let failed = false;
        for (const ref of refs) {
          try {
            const reader = new SnapshotReader(repository, await resolveSnapshot(repository, ref.id, ctx.onDamagedSnapshot));
            const entry = await reader.lookup(ref.path);
            if (entry.kind !== 'file') throw new KlosetError(`${ref.path}: not a regular file`);
            const content = await reader.openFile(entry);
            for await (const data of content.stream()) {
              if (!process.stdout.write(data)) await new Promise((r) => process.stdout.once('drain', r));
            }
          } catch (err) {
            if (!(err instanceof KlosetError) || refs.length === 1) throw err;
            ctx.err(`kloset: ${err.message}`);
            failed = true;
          }
        }
        return failed ? ExitCode.FAILURE : ExitCode.OK;
      }),
    );

  program
    .command('diff')
    .description('what changed between two snapshots, or between a directory or file in each')
    .argument('<from>', 'snapshot id prefix, optionally with :/path')
    .argument('<to>', 'snapshot id prefix, optionally with :/path (default: the same path as <from>)')
    .option('--json', 'JSON output: both snapshots, the counts and every item, metadata-only changes included')
    .option('--metadata', 'also list entries whose mode, owner or times changed but not their content (U)')
    .action((fromArg: string, toArg: string, opts: { json?: boolean; metadata?: boolean }) =>
      run(async () => {
        const ctx = context();
        const repository = await ctx.repository();
        const from = parseSnapshotRef(fromArg);
        const to = parseSnapshotRef(toArg);
        if (from.id === '' || to.id === '') throw new UsageError('diff needs two snapshot ids');
        const [readerA, readerB] = await Promise.all(
          [from, to].map(async (ref) => new SnapshotReader(repository, await resolveSnapshot(repository, ref.id, ctx.onDamagedSnapshot))),
        );
        // Items are named from the path as resolved, not as typed: `/d/`, `d` or `/d/old/..` all show as /d/…,
        // and the second snapshot, given no path, is compared at that path (its /d/old may be gone).
        const names: string[] = [];
        const rootA = await readerA.lookup(from.path, names);
        const base = '/' + names.join('/');
        const rootB = await readerB.lookup(toArg.includes(':') ? to.path : base);
        // As restic's diff: metadata-only changes are listed on request. JSON has every item, marked by its reasons.
        const counts = { added: 0, removed: 0, changed: 0 };
        const items: DiffItem[] = [];
        const { diffTrees } = await import('../../snapshot/diff.js');
        await diffTrees(readerA, rootA, readerB, rootB, base, {
          limit: 0,
          onItem: (item) => {
            if (opts.json) items.push(item);
            else if (!opts.metadata && diffMark(item) === 'U') return;
            else ctx.out(diffLine(item));
            counts[item.status]++;
          },
        });
        if (opts.json) {
          ctx.out(JSON.stringify({ a: snapshotSummary(readerA.header), b: snapshotSummary(readerB.header), path: base, counts, items }, null, 2));
          return;
        }
        ctx.info(
          `diff ${shortId(readerA.header.id)}..${shortId(readerB.header.id)}: ${counts.added} added, ${counts.removed} removed, ${counts.changed} changed`,
        );
      }),
    );

  withFilterOptions(
    program
      .command('locate')
      .alias('find')
      .description('find files and directories by name in every snapshot, or in those selected')
      .argument('<pattern...>', "shell patterns matched against names: '*.conf', 'report-202?.pdf'"),
  )
    .option('--snapshot <id>', 'search this snapshot only')
    .option('-0, --null', 'end each path with NUL instead of a newline, its names given exactly (for xargs -0)')
    .action((patterns: string[], opts: FilterFlags & { snapshot?: string; null?: boolean }) =>
      run(async () => {
        const ctx = context();
        for (const pattern of patterns) {
          if (pattern.includes('/')) throw new UsageError(`${JSON.stringify(pattern)}: patterns match names, not paths`);
        }
        const matchers = patterns.map((pattern) => glob(withSomethingToMatch(pattern), { dot: true }));
        const filter = filterFrom(opts);
        if (opts.snapshot === '') throw new UsageError('-snapshot "" names no snapshot');
        if (opts.snapshot && !isEmptyFilter(filter)) throw new UsageError('locate takes -snapshot or selection flags (-tag, -host, -before, -since, -latest), not both');
        const repository = await ctx.repository();
        const headers = opts.snapshot
          ? [await resolveSnapshot(repository, opts.snapshot, ctx.onDamagedSnapshot)]
          : filterSnapshots(await listSnapshots(repository, ctx.onDamagedSnapshot), filter);
        let current: SnapshotHeader | undefined;
        let damaged = 0;
        // A directory that cannot be read is named and searched no further; the rest still is, and the exit code says partial.
        const { Locator } = await import('../../snapshot/locate.js');
        const locator = new Locator(
          (name) => matchers.some((m) => m(name)),
          (dirPath, err) => {
            damaged++;
            ctx.err(`damaged: snapshot ${shortId(current!.id)}: ${dirPath}: directory cannot be read, not searched: ${err.message}`);
          },
        );
        let found = 0;
        for (const header of headers) {
          current = header;
          for await (const match of locator.find(new SnapshotReader(repository, header), header.root, '/')) {
            (opts.null ? ctx.outNul : ctx.out)(`${shortId(header.id)}:${match}`);
            found++;
          }
        }
        if (damaged) return ExitCode.PARTIAL;
        // As locate(1) and grep: nothing found is status 1, without a message.
        return found ? ExitCode.OK : ExitCode.FAILURE;
      }),
    );

  program
    .command('archive')
    .description('write a snapshot, or a path in it, as one tar, tar.gz or zip archive')
    .argument('[snapshot]', 'snapshot id prefix or latest, optionally with :/path (default: the latest)')
    .option('--format <type>', 'tar, tarball (tar.gz) or zip (default: from the output name, else tar)')
    .option('--output <file>', 'the archive to write, or - for standard output (default: kloset-<id>.<format> here)')
    .option('--rebase', 'name members from the path archived down, not by their whole path in the snapshot')
    .option('--tag <tags>', 'with no snapshot given: the latest with these tags', collect)
    .option('--host <name>', 'with no snapshot given: the latest taken on this host', collect)
    .action((arg: string | undefined, opts: ArchiveFlags) =>
      run(async () => {
        const ctx = context();
        const format = archiveFormat(opts.format, opts.output);
        const toStdout = opts.output === '-';
        // As gzip and zstd: compressed bytes on a terminal are of no use to anyone.
        if (toStdout && process.stdout.isTTY) throw new UsageError('refusing to write an archive to a terminal: give -output FILE, or redirect the output');
        // With the archive on standard output, the summary goes with the warnings.
        const say = (line: string) => (toStdout ? !ctx.options.quiet && ctx.err(line) : ctx.info(line));
        const { repository, lock } = await ctx.lockedRepository('shared', 'an archive', { reader: true });
        let destination: ArchiveOutput | undefined;
        try {
          const ref = parseSnapshotRef(arg);
          const header = await findSnapshot(repository, ref, filterFrom(opts), ctx.onDamagedSnapshot);
          const reader = new SnapshotReader(repository, header);
          // Members are named by the path as it is in the snapshot, not as typed: a name typed with U+FFFD
          // for bytes that are not UTF-8 is the name backed up, byte for byte.
          const names: string[] = [];
          const entry = await reader.lookup(ref.path, names);
          const inSnapshot = names.join('/');
          const rootName = !opts.rebase ? inSnapshot : entry.kind === 'directory' ? '' : entry.name;
          const output = toStdout ? undefined : path.resolve(opts.output ?? `kloset-${shortId(header.id)}${ARCHIVE_FORMATS[format].ending}`);
          const existing = output ? await stat(exactForm(output)).catch(() => undefined) : undefined;
          if (existing && opts.output === undefined) {
            throw new UsageError(`${path.basename(output!)} exists: give -output to replace it or to write elsewhere`);
          }
          if (output && repository.store instanceof LocalBlobStore && isWithin(await realLocation(output), await realLocation(repository.store.root))) {
            throw new UsageError(`${output}: inside the store ${repository.store.root}: write the archive somewhere else`);
          }
          if (existing?.isDirectory()) throw new UsageError(`${output}: is a directory`);
          // As open(2) takes it: a name ending in '/' (or '.', '..') names a directory, never a file to create or replace.
          if (output && /(^|\/)(\.\.?)?$/.test(opts.output!)) throw new UsageError(`${opts.output}: names a directory, not the archive to write`);

          const progress = new ProgressLine('archive', entry.kind === 'directory' ? entry.summary?.size : entry.size);
          const started = Date.now();
          const done = { files: 0, bytes: 0, errors: 0 };
          let lost = 0;
          const options: TarOptions = {
            onFile: (_, size) => {
              done.files++;
              done.bytes += size;
              progress.update(done);
            },
            onSkip: (member, reason, cause) => {
              progress.clear();
              ctx.warn(`${member}: ${reason}, left out`);
              if (cause === 'name') lost++;
            },
          };
          const members =
            format === 'zip'
              ? (await import('../../connectors/archive/zip.js')).zipStream(reader, entry, rootName, options)
              : (await import('../../connectors/archive/tar.js')).tarStream(reader, entry, rootName, options);
          const stages: (NodeJS.ReadableStream | NodeJS.WritableStream)[] = [Readable.from(members, { objectMode: false })];
          if (format === 'tarball') stages.push(createGzip());
          destination = await openArchiveOutput(output, existing);
          stages.push(destination.sink);
          const abort = new AbortController();
          const onSignal = () => abort.abort();
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          try {
            await pipeline(stages, { signal: abort.signal });
            await destination.commit();
            destination = undefined;
          } catch (err) {
            if (abort.signal.aborted) {
              throw new KlosetError(`archive interrupted: ${output ? `${output} was not written` : 'the output is cut short'}`, { exitCode: 130 });
            }
            // Reading the store fails as a KlosetError; a system error is the output's (a full disk).
            if (!(err instanceof KlosetError) && typeof (err as NodeJS.ErrnoException).code === 'string') throw archiveWriteError(output, err);
            throw err;
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
            progress.clear();
          }
          say(
            `archived ${plural(done.files, 'file')}, ${formatBytes(done.bytes)} from snapshot ${shortId(header.id)}:${ref.path} ` +
              `to ${output ?? 'standard output'} (${format}) in ${formatDuration(Date.now() - started)}`,
          );
          return lost ? ExitCode.PARTIAL : ExitCode.OK;
        } finally {
          await destination?.discard().catch(() => undefined);
          await ctx.release(lock);
        }
      }),
    );

  program
    .command('restore')
    .description('restore a snapshot, or a path in it, into a directory')
    .argument('[snapshot]', 'snapshot id prefix or latest, optionally with :/path (default: the latest)')
    .option('--to <directory>', 'where to restore (default: the current directory)')
    .option('--tag <tags>', 'with no snapshot given: the latest with these tags', collect)
    .option('--host <name>', 'with no snapshot given: the latest taken on this host', collect)
    .option('--concurrency <n>', 'files restored at once', positiveCount)
    .option('--sparse', 'leave runs of zeros as holes, as they were in a sparse file (a disk image)')
    .option('--include <pattern>', 'restore only what matches, with the directories leading to it (repeatable)', collect)
    .option('--exclude <pattern>', 'leave out what matches, a directory with all it holds (repeatable)', collect)
    .option('--include-file <file>', 'the patterns of a file, one per line, as -include (# comments; repeatable)', collect)
    .option('--exclude-file <file>', 'the patterns of a file, one per line, as -exclude (# comments; repeatable)', collect)
    .action((arg: string | undefined, opts: RestoreFlags) =>
      run(async () => {
        const ctx = context();
        const include = patternsWithFiles(opts.include, opts.includeFile);
        const selection = restoreSelection(include, patternsWithFiles(opts.exclude, opts.excludeFile));
        // As for tar and cp, `-` would stand for standard output: a directory of that name is no one's intent.
        if (opts.to === '-') throw new UsageError("restore writes files, not a stream: 'kloset archive -output -' writes a snapshot to standard output (or use -to ./- for a directory named '-')");
        const { location, options: destinationOptions } = await resolveLocation(opts.to ?? '.', 'destination', ctx.aliases);
        const toS3 = isS3Location(location);
        if (!toS3 && /^[a-z][a-z0-9+.-]*:\/\//i.test(location)) throw new KlosetError(`${withoutPassword(location)}: unsupported destination`);
        const { repository, lock } = await ctx.lockedRepository('shared', 'a restore', { reader: true });
        try {
          const keepOut = await storeInDestination(repository.store, location);
          const ref = parseSnapshotRef(arg);
          const header = await findSnapshot(repository, ref, filterFrom(opts), ctx.onDamagedSnapshot);
          const reader = new SnapshotReader(repository, header);
          // What is left out is named by its path as resolved, not as typed (`/d/sub/..` is /d).
          const names: string[] = [];
          const entry = await reader.lookup(ref.path, names);
          const exporter: Exporter = toS3
            ? (await import('../../connectors/s3/exporter.js')).S3Exporter.fromConfig(location, destinationOptions, process.env, { keepOut })
            : new (await import('../../connectors/fs/exporter.js')).FsExporter(location, { sparse: opts.sparse, keepOut });
          const total = entry.kind === 'directory' ? entry.summary?.size : entry.size;
          const progress = new ProgressLine('restore', total);
          const started = Date.now();
          let restored = 0;
          // Reading never changes the store, so a stop can be immediate: only what is half written goes.
          // A second signal during the clean-up ends the process at once (the handlers run once).
          let interrupted = false;
          const onSignal = () => {
            interrupted = true;
            progress.clear();
            const cleanUp = Promise.resolve()
              .then(() => exporter.abandon?.())
              .then(() => lock?.release())
              .catch(() => undefined);
            void Promise.race([cleanUp, delay(ABANDON_TIMEOUT_MS)]).then(() => {
              ctx.err(`kloset: restore interrupted: ${plural(restored, 'file')} restored to ${exporter.target}; none is left half written`);
              process.exit(130);
            });
          };
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          const { restore } = await import('../../snapshot/restore.js');
          const result = await restore(reader, entry, '/' + names.join('/'), exporter, {
            concurrency: opts.concurrency,
            select: selection.select,
            onProgress: (p) => {
              restored = p.files;
              progress.update(p);
            },
            onWarning: (p, message) => {
              if (interrupted) return; // the files cut short by the stop itself
              progress.clear();
              ctx.warn(`${p}: ${message}`);
            },
          }).finally(() => {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
            return exporter.close();
          });
          progress.clear();
          if (!selection.matched()) ctx.warn(`-include: nothing in ${shortId(header.id)}:${ref.path} matches ${include.join(', ')}`);
          ctx.info(
            `restored ${plural(result.files, 'file')}, ${formatBytes(result.bytes)} from snapshot ${shortId(header.id)} to ${exporter.target} in ${formatDuration(Date.now() - started)}` +
              (result.errors ? `, ${plural(result.errors, 'error')}` : ''),
          );
          const requests = requestLine(repository.store);
          if (requests) ctx.info(requests);
          return result.errors ? ExitCode.PARTIAL : ExitCode.OK;
        } finally {
          await ctx.release(lock);
        }
      }),
    );
}
