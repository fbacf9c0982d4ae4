import { Readable } from 'node:stream';
import type { PutObjectCommandInput, S3Client, StorageClass } from '@aws-sdk/client-s3';
import { requireCjs } from '../../cjs.js';
import { KlosetError, UsageError } from '../../errors.js';
import type { Entry } from '../../snapshot/tree.js';
import { errorName, finishUpload, refusedStorageClass } from '../../storage/s3.js';
import { objectPutter, sdkObjectPutter, type PutObject } from '../../storage/s3requests.js';
import type { Exporter } from '../../snapshot/exporter.js';
import {
  checkBucket,
  connectorSettings,
  formatS3Uri,
  objectUri,
  s3Error,
  type S3ObjectLocation,
} from './client.js';

const { AbortMultipartUploadCommand } = requireCjs('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
const { Upload } = requireCjs('@aws-sdk/lib-storage') as typeof import('@aws-sdk/lib-storage');
const { lookup: lookupType } = requireCjs('mime-types') as typeof import('mime-types');
type Upload = InstanceType<typeof Upload>;

const MiB = 1024 * 1024;
/** Objects up to this size go up in one PUT (held in memory while they are assembled); larger ones in parts. */
export const SINGLE_PUT_LIMIT = 8 * MiB;
/** Part size of multipart uploads: S3's minimum is 5 MiB. */
export const PART_SIZE = 8 * MiB;
/** Parts of one object uploading at once; the restore runs several objects at once too. */
const PARTS_IN_FLIGHT = 2;

/** S3 takes at most this many parts in one multipart upload. */
const MAX_PARTS = 10_000;

/**
 * The part size for an object of `size` bytes: `preferred`, or larger, in
 * whole MiB, for an object that would need more than S3's 10,000 parts
 * (over 78 GiB at 8 MiB), as the aws CLI grows its parts.
 */
export function partSizeFor(size: number, preferred: number): number {
  const needed = Math.ceil(size / MAX_PARTS);
  return needed <= preferred ? preferred : Math.ceil(needed / MiB) * MiB;
}

export interface S3ExporterOptions {
  /** The endpoint in use, for messages; undefined for AWS. */
  endpoint?: string;
  /** Keys below the destination's prefix, and what lies below them, that nothing may be written to: the store's, when it lies there. */
  keepOut?: readonly string[];
  singlePutLimit?: number;
  partSize?: number;
  /** Send every single PUT through the SDK's PutObjectCommand, even where objectPutter (storage/s3requests.ts) sends them itself. */
  sdkPuts?: boolean;
  /** The class every object is written in (`storage_class`), as rclone's and `aws s3 cp --storage-class`; else the bucket's default. */
  storageClass?: string;
}

/** The object headers a file entry recorded (S3Importer's `s3.*` meta), as PutObject fields. */
export function objectHeaders(meta: Readonly<Record<string, string>> | undefined): Partial<PutObjectCommandInput> {
  if (!meta) return {};
  const headers: Partial<PutObjectCommandInput> = {};
  if (meta['s3.content_type']) headers.ContentType = meta['s3.content_type'];
  if (meta['s3.cache_control']) headers.CacheControl = meta['s3.cache_control'];
  if (meta['s3.content_encoding']) headers.ContentEncoding = meta['s3.content_encoding'];
  if (meta['s3.content_disposition']) headers.ContentDisposition = meta['s3.content_disposition'];
  if (meta['s3.content_language']) headers.ContentLanguage = meta['s3.content_language'];
  if (meta['s3.website_redirect_location']) headers.WebsiteRedirectLocation = meta['s3.website_redirect_location'];
  // As S3 kept it: Expires need not be a date (`0` means already expired, and Date reads it as the year 2000).
  // The SDK writes a string header as given, its type notwithstanding.
  if (meta['s3.expires']) headers.Expires = meta['s3.expires'] as unknown as Date;
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(meta)) {
    if (name.startsWith('s3.meta.')) metadata[name.slice('s3.meta.'.length)] = value;
  }
  if (Object.keys(metadata).length > 0) headers.Metadata = metadata;
  return headers;
}

/**
 * Restores into a bucket, or below a prefix of one. A file backed up from S3
 * goes back under its original key (`meta['s3.key']`, verbatim) below the
 * destination prefix, with its content headers and user metadata; any other
 * file goes to the prefix plus its path in the restore. Directories need no
 * objects (a zero-byte "folder" object was recorded as a file and comes back
 * as one); symlinks and devices have no S3 form and are left out, each named.
 */
export class S3Exporter implements Exporter {
  readonly target: string;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly endpoint: string | undefined;
  private readonly singlePutLimit: number;
  private readonly partSize: number;
  private readonly putObject: PutObject;
  private readonly keepOut: readonly string[];
  private readonly storageClass: StorageClass | undefined;
  /** Multipart uploads under way, with their keys. */
  private readonly uploads = new Map<Upload, string>();
  private abandoned = false;

  constructor(
    private readonly client: S3Client,
    location: S3ObjectLocation,
    options: S3ExporterOptions = {},
  ) {
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    this.target = formatS3Uri(location);
    // Every key would carry the segment (see writeFile): one refusal here rather than a warning per file.
    if (location.prefix.split('/').some((segment) => segment === '.' || segment === '..')) {
      throw new UsageError(`${this.target}: a prefix with a '.' or '..' segment: name the prefix without it`);
    }
    this.endpoint = options.endpoint;
    this.singlePutLimit = options.singlePutLimit ?? SINGLE_PUT_LIMIT;
    this.partSize = Math.max(5 * MiB, options.partSize ?? PART_SIZE);
    this.putObject = options.sdkPuts ? sdkObjectPutter(client) : objectPutter(client);
    this.keepOut = (options.keepOut ?? []).map((place) => this.prefix + place);
    this.storageClass = options.storageClass as StorageClass | undefined;
  }

  static fromConfig(
    uri: string,
    options: Readonly<Record<string, string>> = {},
    env: NodeJS.ProcessEnv = process.env,
    exporterOptions: S3ExporterOptions = {},
  ): S3Exporter {
    const settings = connectorSettings(uri, options, env);
    return new S3Exporter(settings.client, settings.location, { endpoint: settings.endpoint, storageClass: settings.storageClass, ...exporterOptions });
  }

  /** The key a file goes to. */
  keyFor(path: string, entry: Entry): string {
    const original = entry.meta?.['s3.key'];
    return this.prefix + (typeof original === 'string' && original !== '' ? original : path);
  }

  async createDirectory(path: string, _entry: Entry): Promise<void> {
    if (path !== '') return;
    await checkBucket(this.client, this.bucket, this.endpoint, 'optional');
  }

  async writeFile(path: string, entry: Entry, content: AsyncIterable<Buffer>): Promise<void> {
    const key = this.keyFor(path, entry);
    const where = objectUri(this.bucket, key);
    // A key is UTF-8 text: a file name that is not would reach S3 changed, under another object's key perhaps.
    if (!key.isWellFormed()) throw new KlosetError(`${where}: the name is not UTF-8 text, which an S3 key must be: not written`);
    // A key goes into the request's path: a server or proxy that resolves `..` there (s3rver does) would
    // write outside the destination's prefix, into another bucket even, with path-style addressing.
    if (key.split('/').some((segment) => segment === '.' || segment === '..')) {
      throw new KlosetError(`${where}: a key with a '.' or '..' segment could be written elsewhere by a server that resolves it: not written`);
    }
    if (this.keepOut.some((place) => key === place || key.startsWith(`${place}/`))) {
      throw new KlosetError(`${where}: inside the store, left out: restored, it would replace the store's own objects`);
    }
    const input: PutObjectCommandInput = { Bucket: this.bucket, Key: key, ...objectHeaders(entry.meta), ...(this.storageClass ? { StorageClass: this.storageClass } : {}) };
    // A file that was no S3 object has no content type of its own: guessed from its name, as the aws CLI and rclone do.
    if (typeof entry.meta?.['s3.key'] !== 'string') {
      const guessed = lookupType(entry.name);
      if (guessed) input.ContentType = guessed;
    }
    // Nothing new starts once stopping: a multipart upload begun now would outlive abandon()'s aborts, its parts billed.
    if (this.abandoned) throw new KlosetError(`${where}: not written, the restore is stopping`);
    try {
      if (entry.size <= this.singlePutLimit) {
        const blocks: Buffer[] = [];
        let length = 0;
        for await (const block of content) {
          blocks.push(block);
          length += block.length;
        }
        const body = blocks.length === 1 ? blocks[0] : Buffer.concat(blocks, length);
        await this.putObject({ ...input, Bucket: this.bucket, Key: key, Body: body });
        return;
      }
      const upload = new Upload({
        client: this.client,
        params: { ...input, Body: Readable.from(content, { objectMode: false }) },
        partSize: partSizeFor(entry.size, this.partSize),
        queueSize: PARTS_IN_FLIGHT,
        leavePartsOnError: false,
      });
      this.uploads.set(upload, key);
      try {
        await finishUpload(this.client, upload, this.bucket, key);
      } finally {
        this.uploads.delete(upload);
      }
    } catch (err) {
      if (errorName(err) === 'InvalidStorageClass') throw new KlosetError(`${where}: ${refusedStorageClass(this.storageClass)}`, { cause: err });
      throw s3Error(err, where);
    }
  }

  /** Symlinks, devices, FIFOs, sockets: S3 has no form for them, and each is named as left out. */
  async createSpecial(path: string, entry: Entry): Promise<void> {
    const what = entry.kind === 'symlink' ? 'a symbolic link' : `a ${entry.kind}`;
    throw new KlosetError(`${objectUri(this.bucket, this.keyFor(path, entry))}: ${what} has no S3 form: not written`);
  }

  async finishDirectory(): Promise<void> {}

  /**
   * Aborts the multipart uploads under way. S3 keeps the parts of an
   * unfinished upload, invisible and billed, until it is aborted; the
   * library's own abort waits for the parts in flight, so each is aborted
   * here at once by its id.
   */
  async abandon(): Promise<void> {
    this.abandoned = true;
    await Promise.allSettled(
      [...this.uploads].map(async ([upload, key]) => {
        void upload.abort();
        if (upload.uploadId) await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: upload.uploadId }));
      }),
    );
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
