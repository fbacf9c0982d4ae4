/**
 * The viewer's JSON API (documented in API.md beside this file). Every path
 * named by a request is looked up through the SnapshotReader, inside one
 * snapshot: nothing here opens a file on this machine's disk, except the
 * restore exporter writing to the destination the request names.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { maskValue, type AliasConfig } from '../config/aliases.js';
import { checkEntryName, type Exporter } from '../snapshot/exporter.js';
import { listedName } from '../snapshot/names.js';
import { FsExporter } from '../connectors/fs/exporter.js';
import { storeInDestination } from '../connectors/storeplaces.js';
import { IntegrityError, KlosetError } from '../errors.js';
import { isS3Location, withoutPassword } from '../storage/open.js';
import type { FileContent, SnapshotReader } from '../snapshot/reader.js';
import { snapshotSummary } from '../snapshot/header.js';
import { formatMode, type Entry, type Timespec } from '../snapshot/tree.js';
import type { SnapshotCatalog } from './catalog.js';
import { diffTrees } from '../snapshot/diff.js';
import {
  CONTENT_CSP,
  HttpError,
  PDF_CSP,
  contentDisposition,
  intParam,
  param,
  parseRange,
  readJson,
  sendJson,
  setSecurityHeaders,
  type ByteRange,
} from './http.js';
import type { DirectoryOrders } from './listing.js';
import { presentation } from './preview.js';
import type { RestoreJobs } from './restorejobs.js';
import { tarStream } from '../connectors/archive/tar.js';
import { zipStream } from '../connectors/archive/zip.js';

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 200;
export const DEFAULT_DIFF_ITEMS = 1000;
export const MAX_DIFF_ITEMS = 10000;

export interface ApiDependencies {
  catalog: SnapshotCatalog;
  orders: DirectoryOrders;
  jobs: RestoreJobs;
  aliases: Pick<AliasConfig, 'list' | 'resolveAlias'>;
}

// ---- JSON shapes --------------------------------------------------------------

function iso(t: Timespec | undefined): string | undefined {
  return t ? new Date(t.sec * 1000 + Math.floor(t.nsec / 1e6)).toISOString() : undefined;
}

function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** A row of a directory listing. */
export function listedEntry(dir: string, e: Entry) {
  return {
    name: e.name,
    path: joinPath(dir, e.name),
    type: e.kind,
    size: e.kind === 'directory' ? (e.summary?.size ?? 0) : e.size,
    mtime: iso(e.mtime),
    mode: formatMode(e.mode, e.kind),
    user: e.user ?? String(e.uid),
    group: e.group ?? String(e.gid),
    target: e.target,
    files: e.kind === 'directory' ? e.summary?.files : undefined,
    directories: e.kind === 'directory' ? e.summary?.directories : undefined,
  };
}

/**
 * A row of a directory page. A name no directory can hold ('..', 'a/b'), which only a forged
 * snapshot has, is given as ls gives it, quoted, in `name` and `path`, and marked: no path names
 * such an entry (one with '..' is refused, 'a/b' is b in a), so the page shows it without a link.
 */
function childEntry(dir: string, e: Entry) {
  if (checkEntryName(e.name) === undefined) return listedEntry(dir, e);
  return { ...listedEntry(dir, { ...e, name: listedName(e.name) }), invalid_name: true as const };
}

function xattrJson(name: string, value: Buffer) {
  const text = value.toString('utf8');
  const printable = Buffer.from(text, 'utf8').equals(value) && !/[\x00-\x08\x0e-\x1f\x7f]/.test(text);
  return { name, size: value.length, text: printable ? text : undefined, base64: value.toString('base64') };
}

// ---- helpers ------------------------------------------------------------------

/** `path` of the query as a canonical '/a/b'; '..' and NUL are refused, '.' and empty parts dropped. */
export function snapshotPath(url: URL): string {
  const raw = param(url, 'path') ?? '/';
  if (raw.includes('\0')) throw new HttpError(400, 'path may not contain NUL');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new HttpError(400, "path may not contain '..'");
  return '/' + parts.join('/');
}

async function lookup(reader: SnapshotReader, where: string): Promise<Entry> {
  try {
    return await reader.lookup(where);
  } catch (err) {
    if (err instanceof KlosetError && !(err instanceof IntegrityError)) throw new HttpError(404, err.message);
    throw err;
  }
}

/** Gathers small pieces (tar headers, small files) into writes of about `size` bytes. */
export async function* coalesce(pieces: AsyncIterable<Buffer>, size = 64 * 1024): AsyncGenerator<Buffer> {
  let held: Buffer[] = [];
  let length = 0;
  for await (const piece of pieces) {
    if (piece.length >= size && length === 0) {
      yield piece;
      continue;
    }
    held.push(piece);
    length += piece.length;
    if (length >= size) {
      yield Buffer.concat(held, length);
      held = [];
      length = 0;
    }
  }
  if (length > 0) yield Buffer.concat(held, length);
}

/**
 * Sends a body stream; the first piece is read before the status goes out,
 * so an error there is still an error response. A later error cuts the
 * connection: a truncated download must not look complete.
 */
async function sendStream(res: ServerResponse, status: number, body: AsyncGenerator<Buffer>): Promise<void> {
  const first = await body.next();
  res.statusCode = status;
  async function* rest(): AsyncGenerator<Buffer> {
    if (!first.done) yield first.value;
    yield* body;
  }
  try {
    await pipeline(Readable.from(rest(), { objectMode: false }), res);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') return; // the client went away
    res.destroy();
    throw Object.assign(err as Error, { responseStarted: true });
  }
}

// ---- the API --------------------------------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, match: RegExpExecArray) => Promise<void>;

export class UiApi {
  private readonly routes: { method: string[]; pattern: RegExp; handler: Handler }[];

  constructor(private readonly deps: ApiDependencies) {
    this.routes = [
      // HEAD where the answer is JSON: Node sends the headers of GET and leaves the body out.
      { method: ['GET', 'HEAD'], pattern: /^\/api\/snapshots$/, handler: this.snapshots.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/snapshots\/([^/]+)$/, handler: this.snapshot.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/snapshots\/([^/]+)\/tree$/, handler: this.tree.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/snapshots\/([^/]+)\/entry$/, handler: this.entry.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/snapshots\/([^/]+)\/content$/, handler: this.content.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/snapshots\/([^/]+)\/archive$/, handler: this.archive.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/diff$/, handler: this.diff.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/destinations$/, handler: this.destinations.bind(this) },
      { method: ['POST'], pattern: /^\/api\/restore$/, handler: this.startRestore.bind(this) },
      { method: ['GET', 'HEAD'], pattern: /^\/api\/restore\/([^/]+)$/, handler: this.restoreJob.bind(this) },
    ];
  }

  /** Answers an /api/ request; throws HttpError for the caller to turn into a reply. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    let allowed: string[] | undefined;
    for (const route of this.routes) {
      const match = route.pattern.exec(url.pathname);
      if (!match) continue;
      if (route.method.includes(req.method ?? '')) return route.handler(req, res, url, match);
      allowed = route.method;
    }
    if (allowed) {
      res.setHeader('Allow', allowed.join(', '));
      throw new HttpError(405, `${req.method} not allowed here`);
    }
    throw new HttpError(404, `no such API: ${url.pathname}`);
  }

  private async snapshots(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    const headers = await this.deps.catalog.list();
    sendJson(res, 200, {
      store: this.deps.catalog.storeTotals(headers),
      snapshots: headers.map(snapshotSummary).reverse(),
    });
  }

  private async snapshot(_req: IncomingMessage, res: ServerResponse, _url: URL, match: RegExpExecArray): Promise<void> {
    const reader = await this.deps.catalog.reader(match[1]);
    sendJson(res, 200, { ...snapshotSummary(reader.header), root: listedEntry('/', { ...reader.root, name: '' }) });
  }

  private async tree(_req: IncomingMessage, res: ServerResponse, url: URL, match: RegExpExecArray): Promise<void> {
    const reader = await this.deps.catalog.reader(match[1]);
    const where = snapshotPath(url);
    const offset = intParam(url, 'offset', 0, Number.MAX_SAFE_INTEGER);
    const limit = intParam(url, 'limit', DEFAULT_PAGE, MAX_PAGE);
    const dir = await lookup(reader, where);
    if (dir.kind !== 'directory') throw new HttpError(400, `${where}: not a directory`);
    const page = await this.deps.orders.page(reader, dir, offset, limit);
    sendJson(res, 200, {
      snapshot: reader.header.id.toString('hex'),
      path: where,
      total: page.total,
      offset,
      limit,
      order: 'directories-first',
      entries: page.entries.map((e) => childEntry(where, e)),
    });
  }

  private async entry(_req: IncomingMessage, res: ServerResponse, url: URL, match: RegExpExecArray): Promise<void> {
    const reader = await this.deps.catalog.reader(match[1]);
    const where = snapshotPath(url);
    const e = await lookup(reader, where);
    const name = where === '/' ? '' : e.name;
    let content: FileContent | undefined;
    const open = async () => (content ??= await reader.openFile(e));
    const shown = await presentation(e, open);
    sendJson(res, 200, {
      snapshot: reader.header.id.toString('hex'),
      ...listedEntry(path.posix.dirname(where), { ...e, name }),
      path: where,
      mode_bits: e.mode,
      mode_octal: (e.mode & 0o7777).toString(8).padStart(4, '0'),
      uid: e.uid,
      gid: e.gid,
      user: e.user,
      group: e.group,
      mtime_nsec: e.mtime.nsec,
      ctime: iso(e.ctime),
      atime: iso(e.atime),
      ino: e.ino,
      dev: e.dev,
      nlink: e.nlink,
      rdev: e.rdev,
      chunks: e.content ? ('chunks' in e.content ? e.content.chunks.length : e.content.count) : 0,
      xattrs: Object.entries(e.xattrs ?? {}).map(([key, value]) => xattrJson(key, value)),
      meta: e.meta ?? {},
      preview: shown.preview,
      content_type: e.kind === 'file' ? shown.contentType : undefined,
    });
  }

  private async content(req: IncomingMessage, res: ServerResponse, url: URL, match: RegExpExecArray): Promise<void> {
    const reader = await this.deps.catalog.reader(match[1]);
    const where = snapshotPath(url);
    const e = await lookup(reader, where);
    if (e.kind !== 'file') throw new HttpError(400, `${where}: not a regular file`);
    const content = await reader.openFile(e);
    const shown = await presentation(e, async () => content);
    const download = param(url, 'download') === '1';
    const etag = `"${createHash('sha256')
      .update(String(content.size))
      .update(Buffer.concat(content.chunks.map((c) => c.id)))
      .digest('base64url')
      .slice(0, 27)}"`;
    setSecurityHeaders(res, shown.preview === 'pdf' ? PDF_CSP : CONTENT_CSP);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('ETag', etag);
    // Decrypted bytes: the browser keeps no copy in its profile once the viewer is gone, as for JSON and archives.
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Disposition', contentDisposition(download || !shown.inline ? 'attachment' : 'inline', e.name));
    const size = content.size;
    const ifRange = req.headers['if-range'];
    const ranges = ifRange !== undefined && ifRange !== etag ? undefined : parseRange(req.headers.range, size);
    const head = req.method === 'HEAD';

    if (ranges === 'unsatisfiable') {
      res.setHeader('Content-Range', `bytes */${size}`);
      throw new HttpError(416, `range not satisfiable (the file has ${size} bytes)`);
    }
    if (!ranges) {
      res.setHeader('Content-Type', shown.contentType);
      res.setHeader('Content-Length', size);
      if (req.headers['if-none-match'] === etag) {
        res.statusCode = 304;
        res.removeHeader('Content-Length');
        return void res.end();
      }
      if (head) return void res.end();
      return sendStream(res, 200, content.stream());
    }
    if (ranges.length === 1) {
      const { start, end } = ranges[0];
      res.setHeader('Content-Type', shown.contentType);
      res.setHeader('Content-Range', `bytes ${start}-${end}/${size}`);
      res.setHeader('Content-Length', end - start + 1);
      if (head) {
        res.statusCode = 206;
        return void res.end();
      }
      return sendStream(res, 206, content.stream({ start, end: end + 1 }));
    }
    const boundary = `kloset-${randomBytes(12).toString('hex')}`;
    const partHead = (r: ByteRange, i: number) =>
      Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${shown.contentType}\r\nContent-Range: bytes ${r.start}-${r.end}/${size}\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const length = ranges.reduce((sum, r, i) => sum + partHead(r, i).length + r.end - r.start + 1, tail.length);
    res.setHeader('Content-Type', `multipart/byteranges; boundary=${boundary}`);
    res.setHeader('Content-Length', length);
    if (head) {
      res.statusCode = 206;
      return void res.end();
    }
    const list = ranges;
    async function* parts(): AsyncGenerator<Buffer> {
      for (const [i, r] of list.entries()) {
        yield partHead(r, i);
        yield* content.stream({ start: r.start, end: r.end + 1 });
      }
      yield tail;
    }
    return sendStream(res, 206, parts());
  }

  private async archive(req: IncomingMessage, res: ServerResponse, url: URL, match: RegExpExecArray): Promise<void> {
    const reader = await this.deps.catalog.reader(match[1]);
    const where = snapshotPath(url);
    const e = await lookup(reader, where);
    const format = url.searchParams.get('format') ?? 'tar';
    if (format !== 'tar' && format !== 'zip') throw new HttpError(400, 'format is tar or zip');
    const root = where === '/' ? `snapshot-${reader.header.id.toString('hex').slice(0, 8)}` : e.name;
    res.setHeader('Content-Type', format === 'zip' ? 'application/zip' : 'application/x-tar');
    res.setHeader('Content-Disposition', contentDisposition('attachment', `${root}.${format}`));
    res.setHeader('Cache-Control', 'no-store');
    // A download manager asks with HEAD before it fetches: the archive's headers, without reading the snapshot for a body no one receives.
    if (req.method === 'HEAD') {
      res.statusCode = 200;
      return void res.end();
    }
    await sendStream(res, 200, coalesce(format === 'zip' ? zipStream(reader, e, root) : tarStream(reader, e, root)));
  }

  private async diff(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const a = param(url, 'a');
    const b = param(url, 'b');
    if (!a || !b) throw new HttpError(400, 'diff needs two snapshots: ?a=<id>&b=<id>');
    const [readerA, readerB] = await Promise.all([this.deps.catalog.reader(a), this.deps.catalog.reader(b)]);
    const where = snapshotPath(url);
    const [rootA, rootB] = await Promise.all([lookup(readerA, where), lookup(readerB, where)]);
    const limit = intParam(url, 'limit', DEFAULT_DIFF_ITEMS, MAX_DIFF_ITEMS);
    const abort = new AbortController();
    const onClose = () => abort.abort();
    res.on('close', onClose);
    try {
      const result = await diffTrees(readerA, rootA, readerB, rootB, where, { limit, signal: abort.signal });
      sendJson(res, 200, {
        a: snapshotSummary(readerA.header),
        b: snapshotSummary(readerB.header),
        path: where,
        limit,
        ...result,
      });
    } finally {
      res.off('close', onClose);
    }
  }

  private async destinations(_req: IncomingMessage, res: ServerResponse): Promise<void> {
    const aliases = await this.deps.aliases.list('destination');
    sendJson(res, 200, {
      destinations: aliases.map((a) => {
        const location = a.values.location ?? a.values.uri ?? '';
        return { name: `@${a.name}`, location: maskValue('location', location) };
      }),
    });
  }

  private async exporterFor(destination: string): Promise<Exporter> {
    let location = destination;
    let options: Record<string, string> = {};
    if (destination.startsWith('@')) {
      try {
        ({ location, options } = await this.deps.aliases.resolveAlias(destination, 'destination'));
      } catch (err) {
        if (err instanceof KlosetError) throw new HttpError(400, err.message);
        throw err;
      }
    }
    if (isS3Location(location)) {
      const { S3Exporter } = await import('../connectors/s3/exporter.js');
      return S3Exporter.fromConfig(location, options, process.env, { keepOut: await this.keepOutOfStore(location) });
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) throw new HttpError(400, `${withoutPassword(location)}: unsupported destination`);
    if (!path.isAbsolute(location)) throw new HttpError(400, 'a local destination must be an absolute path (or an @alias)');
    if (path.resolve(location) === path.parse(location).root) throw new HttpError(400, 'refusing to restore into the root directory');
    return new FsExporter(location, { keepOut: await this.keepOutOfStore(location) });
  }

  /** As `kloset restore`: nothing restored may replace the store's own files. */
  private async keepOutOfStore(location: string): Promise<string[] | undefined> {
    try {
      return await storeInDestination(this.deps.catalog.repository.store, location);
    } catch (err) {
      if (err instanceof KlosetError) throw new HttpError(400, err.message);
      throw err;
    }
  }

  private async startRestore(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = (await readJson(req)) as Record<string, unknown> | null;
    const field = (name: string) => {
      const value = body?.[name];
      if (typeof value !== 'string' || value === '') throw new HttpError(400, `restore needs "${name}" (a string)`);
      // A lone surrogate (a name as ls --json escapes it) is no path: names are asked for as the viewer shows them.
      if (!value.isWellFormed()) throw new HttpError(400, `"${name}" is not well-formed text: give names with U+FFFD, as the viewer shows them`);
      return value;
    };
    const reader = await this.deps.catalog.reader(field('snapshot'));
    const where = snapshotPath(new URL(`http://x/?path=${encodeURIComponent(field('path'))}`));
    const destination = field('destination');
    const e = await lookup(reader, where);
    const exporter = await this.exporterFor(destination);
    const job = this.deps.jobs.start(reader, e, where, destination, exporter);
    res.setHeader('Location', `/api/restore/${job.id}`);
    sendJson(res, 202, job);
  }

  private async restoreJob(_req: IncomingMessage, res: ServerResponse, _url: URL, match: RegExpExecArray): Promise<void> {
    const job = this.deps.jobs.get(match[1]);
    if (!job) throw new HttpError(404, `no restore job ${match[1]}`);
    sendJson(res, 200, job);
  }
}
