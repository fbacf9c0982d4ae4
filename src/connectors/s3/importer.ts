import type { Readable } from 'node:stream';
import type { _Object, ListObjectsV2CommandOutput, S3Client } from '@aws-sdk/client-s3';
import { requireCjs } from '../../cjs.js';
import { KlosetError, UsageError } from '../../errors.js';
import type { Timespec } from '../../snapshot/tree.js';
import { contentRangeStart, errorName, nextPageToken } from '../../storage/s3.js';
import { objectGetter, sdkObjectGetter, type GetObject, type ObjectResponse } from '../../storage/s3requests.js';
import type { Importer, SkippedChild, SourceEntry } from '../../snapshot/importer.js';
import {
  checkBucket,
  connectorSettings,
  formatS3Uri,
  objectUri,
  s3Error,
  type S3ObjectLocation,
} from './client.js';
import { parseGlacierPolicy, type GlacierPolicy } from './glacier.js';
import { directoryName, keyForPath, prefixForPath } from './keys.js';
import { KeyHeap, ListingOrderError, orderListing, type ListedItem } from './listing.js';

const { HeadObjectCommand, ListObjectsV2Command } = requireCjs('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');

/** Storage classes whose objects must be restored before a GET can read them. */
const ARCHIVED_CLASSES = new Set(['GLACIER', 'DEEP_ARCHIVE']);
const FILE_MODE = 0o100644;
const DIRECTORY_MODE = 0o040755;
/** Attempts at one object's body when the connection breaks mid-way (each resumes with a ranged GET). */
const BODY_ATTEMPTS = 4;

export interface S3ImporterOptions {
  /** The endpoint in use (recorded as the snapshot's origin); undefined for AWS. */
  endpoint?: string;
  /**
   * Objects in GLACIER or DEEP_ARCHIVE that are not restored: 'skip' (default)
   * reports each and leaves it out (the backup ends partial, exit code 3);
   * 'fail' makes the backup fail, with no snapshot.
   */
  glacier?: GlacierPolicy;
  /** Keys per ListObjectsV2 page; S3's default and maximum is 1000. */
  pageSize?: number;
  /** Entries one directory's listing may hold back to put them in name order (see listing.ts). */
  window?: number;
  /**
   * First listing pages of directories the walk has not reached yet, asked
   * for ahead of it (in flight or waiting to be used); 0 lists each directory
   * only when the walk enters it.
   */
  listAhead?: number;
  /** Send every GET through the SDK's GetObjectCommand, even where objectGetter (storage/s3requests.ts) sends them itself. */
  sdkGets?: boolean;
}

/** Directories whose first page may be asked for ahead of the walk. */
const LIST_AHEAD = 8;
/** Directories remembered as candidates for listing ahead; more are listed when the walk reaches them. */
const LIST_AHEAD_CANDIDATES = 10_000;

/**
 * Where a directory comes in the walk: the backup visits a tree depth first,
 * each directory's entries in name order, so the walk order of two
 * directories is the byte order of their paths with each '/' read as a byte
 * below every character a name holds (NUL: names never hold one).
 */
function walkKey(path: string): Buffer {
  return Buffer.from(path.replaceAll('/', '\0'), 'utf8');
}

interface Candidate {
  key: Buffer;
  prefix: string;
}

/**
 * Lists directories ahead of the walk: the first page of the next `limit`
 * directories in walk order is asked for while the walk is still reading
 * the objects before them, so entering a directory does not wait for a
 * listing round trip (and the reads in flight do not drain meanwhile).
 * Entering a directory forgets whatever comes before it in walk order (a
 * directory excluded from the backup, say). Later pages of a directory are
 * fetched as before, one ahead of the merge.
 */
class ListAhead<Page> {
  private readonly heap = new KeyHeap<Candidate>();
  private readonly fetched = new Map<string, { key: Buffer; page: Promise<Page> }>();

  constructor(
    private readonly limit: number,
    private readonly fetch: (prefix: string) => Promise<Page>,
  ) {}

  /** Subdirectories the walk will enter (path: their parent's path in the tree). */
  want(path: string, prefix: string, segments: string[]): void {
    if (this.limit <= 0) return;
    for (const segment of segments) {
      if (this.heap.size >= LIST_AHEAD_CANDIDATES) break;
      const name = directoryName(segment);
      this.heap.push({ key: walkKey(path === '' ? name : `${path}/${name}`), prefix: `${prefix}${segment}/` });
    }
    this.pump();
  }

  /** The walk enters `path` (listed under `prefix`): its first page if asked for already. */
  take(path: string, prefix: string): Promise<Page> | undefined {
    if (this.limit <= 0) return undefined;
    const key = walkKey(path);
    const found = this.fetched.get(prefix);
    this.fetched.delete(prefix);
    for (const [other, entry] of this.fetched) if (Buffer.compare(entry.key, key) < 0) this.fetched.delete(other);
    while (this.heap.size > 0 && Buffer.compare(this.heap.peek()!.key, key) <= 0) this.heap.pop();
    this.pump();
    return found?.page;
  }

  clear(): void {
    this.heap.clear();
    this.fetched.clear();
  }

  private pump(): void {
    while (this.fetched.size < this.limit && this.heap.size > 0) {
      const next = this.heap.pop();
      if (this.fetched.has(next.prefix)) continue;
      const page = this.fetch(next.prefix);
      page.catch(() => undefined); // observed when taken; a page never taken must not be an unhandled rejection
      this.fetched.set(next.prefix, { key: next.key, page });
    }
  }
}

function timespec(date: Date | undefined): Timespec {
  const ms = date?.getTime() ?? 0;
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

function unquote(etag: string | undefined): string | undefined {
  return etag?.replace(/^"(.*)"$/, '$1');
}

function backoff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(2000, 100 * 2 ** attempt)));
}

/**
 * Undoes EncodingType=url on a listing page, where the server applied it (it
 * says so in the page; a server that ignores the parameter sends keys as
 * they are). Spaces come as '+', as in a form: botocore decodes the same way.
 */
export function decodeListing(page: ListObjectsV2CommandOutput): ListObjectsV2CommandOutput {
  if (page.EncodingType?.toLowerCase() !== 'url') return page;
  const decode = (text: string | undefined) => (text === undefined ? undefined : decodeURIComponent(text.replace(/\+/g, ' ')));
  return {
    ...page,
    EncodingType: undefined,
    Prefix: decode(page.Prefix),
    Contents: page.Contents?.map((object) => ({ ...object, Key: decode(object.Key) })),
    CommonPrefixes: page.CommonPrefixes?.map((common) => ({ ...common, Prefix: decode(common.Prefix) })),
  };
}

/**
 * A bucket, or a prefix of one, as a backup source. Prefixes are directories
 * and objects are files, named by the mapping of keys.ts (KEYS.md); every file
 * entry keeps its key verbatim in `meta['s3.key']`, with the object's ETag,
 * storage class, content headers and user metadata.
 */
export class S3Importer implements Importer {
  readonly type = 's3';
  /** Each GET costs a round trip before its first byte: keep many in flight. */
  readonly readConcurrency = 32;
  readonly origin: string;
  readonly source: string;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly endpoint: string | undefined;
  private readonly glacier: GlacierPolicy;
  private readonly pageSize: number;
  private readonly window: number;
  private readonly started = timespec(new Date());
  /** In 'fail' mode: the first archived object met; every listing then fails, up to the root. */
  private fatal: KlosetError | undefined;
  private readsInFlight = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly getObject: GetObject;
  private readonly ahead: ListAhead<ListObjectsV2CommandOutput>;

  constructor(
    private readonly client: S3Client,
    location: S3ObjectLocation,
    options: S3ImporterOptions = {},
  ) {
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    this.source = formatS3Uri(location);
    this.endpoint = options.endpoint;
    this.origin = options.endpoint ?? 'aws';
    this.glacier = options.glacier ?? 'skip';
    this.pageSize = options.pageSize ?? 1000;
    this.window = options.window ?? 2000;
    this.getObject = options.sdkGets ? sdkObjectGetter(client) : objectGetter(client);
    this.ahead = new ListAhead(options.listAhead ?? LIST_AHEAD, (prefix) => this.listPage(prefix, undefined));
  }

  /** From a location and an alias's keys (see client.ts), plus `glacier` (or `glacier_objects`): skip | fail. */
  static fromConfig(uri: string, options: Readonly<Record<string, string>> = {}, env: NodeJS.ProcessEnv = process.env): S3Importer {
    const glacier = parseGlacierPolicy(options.glacier ?? options.glacier_objects, options.glacier !== undefined ? 'glacier' : 'glacier_objects');
    const settings = connectorSettings(uri, options, env);
    return new S3Importer(settings.client, settings.location, { endpoint: settings.endpoint, glacier });
  }

  async rootEntry(): Promise<SourceEntry> {
    await checkBucket(this.client, this.bucket, this.endpoint, 'needed');
    // S3 has no directories: a prefix with nothing under it is most likely mistyped, or names an object.
    // As a missing directory fails a backup, and rclone's "directory not found", it is no empty snapshot.
    if (this.prefix !== '' && !(await this.probe(this.prefix))) {
      const key = this.prefix.slice(0, -1);
      const isObject = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })).then(
        () => true,
        () => false,
      );
      throw new KlosetError(
        isObject
          ? `${objectUri(this.bucket, key)}: an object, not a prefix: back up the prefix that holds it`
          : `${objectUri(this.bucket, this.prefix)}: no object under this prefix: nothing to back up`,
      );
    }
    return this.directoryEntry('', this.prefix);
  }

  private directoryEntry(name: string, prefix: string): SourceEntry {
    return {
      name,
      kind: 'directory',
      mode: DIRECTORY_MODE,
      uid: 0,
      gid: 0,
      size: 0,
      // A prefix has no time of its own: the backup's.
      mtime: this.started,
      meta: { 's3.prefix': prefix },
    };
  }

  private fileEntry(name: string, object: _Object): SourceEntry {
    const meta: Record<string, string> = { 's3.key': object.Key! };
    const etag = unquote(object.ETag);
    if (etag) meta['s3.etag'] = etag;
    if (object.StorageClass) meta['s3.storage_class'] = object.StorageClass;
    return {
      name,
      kind: 'file',
      mode: FILE_MODE,
      uid: 0,
      gid: 0,
      size: object.Size ?? 0,
      mtime: timespec(object.LastModified),
      // S3 has no ctime: size, LastModified and the ETag (in meta) decide whether an object changed.
      meta,
    };
  }

  private async listPage(prefix: string, token: string | undefined): Promise<ListObjectsV2CommandOutput> {
    // Keys come URL-encoded, as the AWS CLI asks for them: XML cannot carry a
    // carriage return or most control characters, and its parsers change them.
    return decodeListing(
      await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', MaxKeys: this.pageSize, ContinuationToken: token, EncodingType: 'url' }),
      ),
    );
  }

  /**
   * Listing pages of one level (the directory at `path` in the tree), the
   * next page fetched while the current one is merged, the first one perhaps
   * fetched ahead of the walk (ListAhead).
   */
  private async *pages(path: string, prefix: string, unlisted: Error[]): AsyncGenerator<ListedItem<_Object | undefined>[]> {
    let next: Promise<ListObjectsV2CommandOutput> | undefined = this.ahead.take(path, prefix) ?? this.listPage(prefix, undefined);
    let asked: string | undefined;
    while (next) {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await next;
      } catch (err) {
        throw s3Error(err, objectUri(this.bucket, prefix));
      }
      const token = nextPageToken(page, asked, objectUri(this.bucket, prefix));
      asked = token;
      next = token ? this.listPage(prefix, token) : undefined;
      next?.catch(() => undefined); // observed when awaited; a break before then must not leave it unhandled
      const items: ListedItem<_Object | undefined>[] = [];
      for (const object of page.Contents ?? []) {
        const key = object.Key;
        if (key === '' || key === undefined) {
          // No S3 key is empty: the listing lost this one's characters (a server that does not encode keys).
          unlisted.push(new KlosetError(`${objectUri(this.bucket, prefix)}: the listing gave a key whose characters it lost: not backed up`));
          continue;
        }
        if (!key.startsWith(prefix)) continue;
        const segment = key.slice(prefix.length);
        if (segment.includes('/')) throw new KlosetError(`${objectUri(this.bucket, prefix)}: the server ignored the listing's delimiter`);
        items.push({ segment, directory: false, data: object });
      }
      for (const common of page.CommonPrefixes ?? []) {
        const p = common.Prefix;
        if (p === undefined || !p.startsWith(prefix) || !p.endsWith('/') || p.length <= prefix.length) continue;
        items.push({ segment: p.slice(prefix.length, -1), directory: true, data: undefined });
      }
      this.ahead.want(
        path,
        prefix,
        items.filter((item) => item.directory).map((item) => item.segment),
      );
      yield items;
    }
  }

  private async probe(prefix: string): Promise<boolean> {
    try {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: 1 }));
      return (page.KeyCount ?? page.Contents?.length ?? 0) > 0;
    } catch (err) {
      throw s3Error(err, objectUri(this.bucket, prefix));
    }
  }

  async *children(path: string): AsyncIterable<SourceEntry | SkippedChild> {
    const relative = prefixForPath(path);
    if (relative === undefined) throw new KlosetError(`${this.source}: ${JSON.stringify(path)} is not a directory of this bucket`);
    const prefix = this.prefix + relative;
    const unlisted: Error[] = [];
    const ordered = orderListing(this.pages(path, prefix, unlisted), (segment) => this.probe(`${prefix}${segment}/`), this.window);
    try {
      for await (const item of ordered) {
        if (this.fatal) throw this.fatal;
        if (item.directory) {
          yield this.directoryEntry(item.name, `${prefix}${item.segment}/`);
          continue;
        }
        const object = item.data!;
        if (this.glacier === 'fail') await this.refuseArchived(object);
        yield this.fileEntry(item.name, object);
      }
    } catch (err) {
      if (err instanceof ListingOrderError) throw new KlosetError(`${objectUri(this.bucket, prefix)}: ${err.message}`);
      throw err;
    }
    for (const error of unlisted) yield { name: '""', skipped: error };
    if (path === '' && this.glacier === 'fail') {
      // The last files may still be reading: a read that finds an archived object must still fail the backup.
      await this.readsIdle();
    }
    if (this.fatal) throw this.fatal;
  }

  /** 'fail' mode: an object listed as archived stops the backup unless a HEAD shows it restored. */
  private async refuseArchived(object: _Object): Promise<void> {
    if (!object.StorageClass || !ARCHIVED_CLASSES.has(object.StorageClass)) return;
    const key = object.Key!;
    let restored = false;
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      restored = /ongoing-request="false"/.test(head.Restore ?? '');
    } catch (err) {
      throw s3Error(err, objectUri(this.bucket, key));
    }
    if (!restored) throw this.archived(key, object.StorageClass);
  }

  private archived(key: string, storageClass: string): KlosetError {
    const error = new KlosetError(`${objectUri(this.bucket, key)}: object is in ${storageClass} and not restored`);
    if (this.glacier === 'fail') this.fatal ??= error;
    return error;
  }

  private readsIdle(): Promise<void> {
    if (this.readsInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * The object's bytes, streamed from one GET (several objects are read at
   * once: the builder keeps several files in flight). The GET's headers are
   * written into `entry.meta`, which the builder stores after the read (it
   * copies the SourceEntry when the content is chunked, and the meta object
   * with it), so no HEAD per object is needed. A body cut short is resumed
   * with a ranged GET of the same ETag.
   */
  async *read(path: string, entry: SourceEntry): AsyncIterable<Buffer> {
    const key = entry.meta?.['s3.key'] ?? this.prefix + (keyForPath(path) ?? path);
    const where = objectUri(this.bucket, key);
    this.readsInFlight++;
    let body: Readable | undefined;
    try {
      let offset = 0;
      let total: number | undefined;
      let etag: string | undefined;
      for (let attempt = 1; ; attempt++) {
        let response: ObjectResponse;
        try {
          response = await this.getObject(this.bucket, key, offset > 0 ? { range: `bytes=${offset}-`, ifMatch: etag } : {});
        } catch (err) {
          if (errorName(err) === 'InvalidObjectState') throw this.archived(key, entry.meta?.['s3.storage_class'] ?? 'GLACIER');
          if (errorName(err) === 'PreconditionFailed') throw new KlosetError(`${where}: changed while it was read`, { cause: err });
          throw s3Error(err, where);
        }
        body = response.body;
        let skip = 0;
        if (offset === 0) {
          this.checkReadable(key, response);
          this.recordHeaders(entry, response);
          etag = response.etag;
          total = response.contentLength;
        } else {
          // Some servers answer a ranged GET whatever its If-Match says (s3rver does): its bytes may be another version's.
          if (etag !== undefined && response.etag !== undefined && unquote(response.etag) !== unquote(etag)) {
            throw new KlosetError(`${where}: changed while it was read`);
          }
          const start = contentRangeStart(response.contentRange);
          if (start === undefined || start > offset) throw new KlosetError(`${where}: the server answered another range`);
          skip = offset - start;
        }
        try {
          for await (const chunk of body ?? []) {
            let data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
            if (skip > 0) {
              const dropped = Math.min(skip, data.length);
              skip -= dropped;
              data = data.subarray(dropped);
              if (data.length === 0) continue;
            }
            offset += data.length;
            yield data;
          }
          if (total !== undefined && offset < total) throw new KlosetError(`${where}: the server sent ${offset} bytes of ${total}`);
          return;
        } catch (err) {
          body?.destroy();
          if (attempt >= BODY_ATTEMPTS || total === undefined) throw s3Error(err, where);
          await backoff(attempt);
        }
      }
    } finally {
      body?.destroy();
      if (--this.readsInFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  /** An archived object answers a GET with InvalidObjectState on AWS; some servers send the bytes with the class. */
  private checkReadable(key: string, response: ObjectResponse): void {
    const storageClass = response.storageClass;
    if (!storageClass || !ARCHIVED_CLASSES.has(storageClass)) return;
    if (/ongoing-request="false"/.test(response.restore ?? '')) return;
    response.body?.destroy();
    throw this.archived(key, storageClass);
  }

  private recordHeaders(entry: SourceEntry, response: ObjectResponse): void {
    // Mutated in place: the builder stores this very meta object (see read()).
    const meta = (entry.meta ??= {});
    const listedEtag = meta['s3.etag'];
    const listedMtime = entry.mtime;
    const set = (name: string, value: string | undefined) => {
      if (value !== undefined && value !== '') meta[name] = value;
    };
    set('s3.etag', unquote(response.etag));
    set('s3.storage_class', response.storageClass);
    set('s3.content_type', response.contentType);
    set('s3.cache_control', response.cacheControl);
    set('s3.content_encoding', response.contentEncoding);
    set('s3.content_disposition', response.contentDisposition);
    set('s3.content_language', response.contentLanguage);
    set('s3.expires', response.expires);
    set('s3.website_redirect_location', response.websiteRedirectLocation);
    set('s3.version_id', response.versionId);
    for (const [name, value] of Object.entries(response.metadata)) meta[`s3.meta.${name}`] = value;
    if (response.lastModified) {
      // Last-Modified is an HTTP date, whole seconds; a listing may give milliseconds (MinIO, Ceph RGW).
      // The object listed (same ETag, same second) keeps the listing's time: the next backup compares
      // its listing with it, and a time cut to the second would make every object look changed.
      const modified = timespec(response.lastModified);
      if (unquote(response.etag) !== listedEtag || modified.sec !== listedMtime.sec) entry.mtime = modified;
    }
    if (response.contentLength !== undefined) entry.size = response.contentLength;
  }

  async close(): Promise<void> {
    this.ahead.clear();
    this.client.destroy();
  }
}
