/**
 * A blob store under a prefix of an S3 bucket (AWS, or any S3-compatible
 * server: MinIO, Ceph, a local test server). Each blob is one object, named by
 * its key below the prefix: `s3://bucket/kloset` holds `kloset/CONFIG`,
 * `kloset/packs/ab/ab12…`, and so on.
 *
 * Reads of a blob inside a pack are ranged GETs of exactly its bytes. Packs
 * above a threshold go up as multipart uploads. Transient failures (503
 * SlowDown, 500, connection resets, a body cut short) are retried with
 * exponential backoff and jitter; what cannot be retried becomes a one-line
 * KlosetError that names the bucket.
 */
import http from 'node:http';
import https from 'node:https';
import { finished, type Readable } from 'node:stream';
import { buffer as receiveWhole } from 'node:stream/consumers';
import type { BucketLocationConstraint, PutObjectCommandInput, S3ClientConfig, StorageClass } from '@aws-sdk/client-s3';
import { requireCjs } from '../cjs.js';
import { IntegrityError, KlosetError, NotFoundError, UsageError } from '../errors.js';
import type { BlobInfo, BlobStore } from './blobstore.js';
import { endpointUrl, readClientSettings, refuseUserInfo, type RetryMode } from './s3options.js';
import { objectGetter, type GetObject } from './s3requests.js';

const {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  StorageClass: STORAGE_CLASSES,
} = requireCjs('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
type S3Client = InstanceType<typeof S3Client>;
const { Upload } = requireCjs('@aws-sdk/lib-storage') as typeof import('@aws-sdk/lib-storage');
type Upload = InstanceType<typeof Upload>;
const { AdaptiveRetryStrategy, StandardRetryStrategy } = requireCjs('@smithy/core/retry') as typeof import('@smithy/core/retry');
const { loadConfig, NODE_REGION_CONFIG_FILE_OPTIONS, NODE_REGION_CONFIG_OPTIONS } = requireCjs('@smithy/core/config') as typeof import('@smithy/core/config');

/**
 * The SDK's standard retries with no retry quota. The SDK's strategy shares
 * one budget of 500 among every request of a client: a retry after a 503
 * SlowDown costs 5, after a 500 or a dropped connection 14, and only
 * successes give it back. With 32 requests in flight, a few seconds of
 * throttling (100 SlowDowns) or 36 dropped connections spend it, and from
 * then on every failed request fails at its first attempt whatever
 * max_attempts says: the S3 source dropped objects from the snapshot, the
 * store failed the backup. Each request keeps its own attempts and
 * exponential backoff with jitter, as in rclone and restic.
 */
function retryStrategyOf(maxAttempts: number, mode: RetryMode) {
  const standard = new StandardRetryStrategy(maxAttempts);
  // What a retry takes from the budget (private in the SDK's types): nothing. A test checks it still applies.
  (standard as unknown as { getCapacityCost: () => number }).getCapacityCost = () => 0;
  if (mode === 'standard') return standard;
  // The adaptive strategy adds a client-side rate limiter to a standard strategy of its own.
  const adaptive = new AdaptiveRetryStrategy(maxAttempts);
  (adaptive as unknown as { standardRetryStrategy: unknown }).standardRetryStrategy = standard;
  return adaptive;
}

/**
 * Runs a multipart upload to its end. lib-storage aborts the upload when a
 * part fails, not when its completion does: then its parts would stay in
 * the bucket, unseen and billed, so the upload is aborted here.
 */
export async function finishUpload(client: S3Client, upload: Upload, bucket: string, key: string): Promise<void> {
  try {
    await upload.done();
  } catch (err) {
    if (upload.uploadId) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: upload.uploadId })).catch(() => undefined);
    }
    throw err;
  }
}

// The SDK warns on stderr, once per process, that its releases after early
// 2027 need Node 22. This project pins a release that supports Node 20 (see
// package-lock.json), and a warning on every command would break the CLI's
// one-line output: turn it off unless the user asked for it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export const MiB = 1024 * 1024;
/** Blobs larger than this go up as multipart uploads; default packs (~16–20 MiB) stay single PUTs. */
export const DEFAULT_MULTIPART_THRESHOLD = 32 * MiB;
export const DEFAULT_PART_SIZE = 16 * MiB;
export const DEFAULT_MAX_ATTEMPTS = 8;
/** Silence on a connection after which a request fails and is retried (rclone's --timeout is 5 minutes; S3 answers in milliseconds). */
const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_SOCKETS = 32;
/** Attempts at reading a body that the connection cut short (the SDK's retries end when the headers arrive). */
const BODY_ATTEMPTS = 4;
const LIST_PAGE_SIZE = 1000;

export interface S3StoreOptions {
  /** `https://host:port`, `http://…` or a bare `host:port` (then `useTls` picks the scheme). */
  endpoint?: string;
  /** Where the endpoint was given, for messages: `endpoint` (an alias's key) unless an environment variable. */
  endpointSource?: string;
  /** Default: the SDK's (AWS_REGION, the profile), and us-east-1 when it has none and an endpoint is given. */
  region?: string;
  /** With `secretAccessKey`; when both are absent, the SDK's default credential chain applies. */
  accessKey?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Default true: https for the endpoint. */
  useTls?: boolean;
  /** Storage class of the packs the store writes (STANDARD_IA, GLACIER_IR, …); everything else stays STANDARD. */
  storageClass?: string;
  /** A request whose connection carries no byte for this long fails, and is retried. Default 60 s. */
  idleTimeoutMs?: number;
  /** Default: path style whenever an endpoint is given, as most S3-compatible servers need. */
  forcePathStyle?: boolean;
  maxAttempts?: number;
  /** 'standard' (default) or 'adaptive'; both back off exponentially with jitter. */
  retryMode?: RetryMode;
  maxSockets?: number;
  multipartThreshold?: number;
  partSize?: number;
}

/** HTTP requests sent, retries included, by kind. */
export interface S3RequestCounts {
  [kind: string]: number;
  GET: number;
  PUT: number;
  LIST: number;
  HEAD: number;
  DELETE: number;
  /** Multipart initiate/complete and multi-object delete. */
  POST: number;
}

export interface S3Location {
  bucket: string;
  /** Key prefix below which the store lives: '' or ending in '/'. */
  prefix: string;
}

const S3_URI = /^s3:\/\/([^/?#]+)(\/[^?#]*)?$/i;

/** `s3://bucket/some/prefix` → { bucket, prefix: 'some/prefix/' }. */
export function parseS3Location(location: string): S3Location {
  refuseUserInfo(location, 'an S3 location');
  const match = S3_URI.exec(location);
  if (!match) throw new UsageError(`${location}: not an S3 location (expected s3://bucket/prefix)`);
  const bucket = match[1]!;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,62}$/.test(bucket)) {
    throw new UsageError(`${location}: '${bucket}' is not a valid bucket name`);
  }
  const path = (match[2] ?? '').replace(/^\/+/, '');
  // Keys travel in the request's path: a server or proxy that resolves dot segments there (s3rver does)
  // would write the store's objects outside its prefix, where its listings never find them.
  if (path.split('/').some((segment) => segment === '.' || segment === '..')) {
    throw new UsageError(`${location}: a prefix with a '.' or '..' segment: name the prefix without it`);
  }
  const prefix = path === '' ? '' : path.endsWith('/') ? path : `${path}/`;
  return { bucket, prefix };
}

/**
 * The token of a listing's next page, or undefined after its last page. A
 * page that says more follow but gives no token, or the token it was asked
 * with, would end the listing early or never: a prune that took a partial
 * listing of snapshots for whole would delete what the others use.
 */
export function nextPageToken(page: { IsTruncated?: boolean; NextContinuationToken?: string }, asked: string | undefined, where: string): string | undefined {
  if (!page.IsTruncated) return undefined;
  const token = page.NextContinuationToken;
  if (!token || token === asked) throw new KlosetError(`${where}: the server's listing says it has more keys but gives no way to them`);
  return token;
}

/**
 * Why a request reached no S3 server, for a network error (a Node error
 * code), said so that the user knows what to change; undefined otherwise.
 */
export function cannotReach(err: unknown, detail: string): string | undefined {
  const { code, hostname, address, port } = (err ?? {}) as NodeJS.ErrnoException & { hostname?: string; address?: string; port?: number };
  // The SDK could not read the answer as S3's XML: a web server, or another service's error page.
  if (/Deserialization error/.test(detail)) {
    const status = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
    return `the endpoint answered${status ? ` HTTP ${status}` : ''} with something other than an S3 answer: is it an S3 server?`;
  }
  // Node's HTTP parser refused the answer (HPE_INVALID_CONSTANT and the like): another service, or no S3 server, at that port.
  if (code?.startsWith('HPE_')) return 'cannot reach the S3 server (what answers there does not speak HTTP; check the endpoint and its port)';
  if (!code || !/^E[A-Z_]+$/.test(code)) return undefined;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return `cannot reach the S3 server (${code}: no host named ${hostname ?? 'so'} is known; check the endpoint)`;
  }
  if (code === 'EPROTO' || /wrong version number|ssl|tls/i.test(detail)) {
    return `cannot reach the S3 server (${code}: the TLS handshake failed; if the endpoint speaks plain http, give it as http:// or set use_tls false)`;
  }
  if (code === 'ECONNREFUSED' && address) return `cannot reach the S3 server (${code}: nothing answers at ${address}:${port}; check the endpoint)`;
  return `cannot reach the S3 server (${code}${detail && !detail.includes(code) ? `: ${detail}` : ''})`;
}

/** Classes whose objects a GET cannot read until a restore request thaws them. */
const ARCHIVE_CLASSES = new Set(['GLACIER', 'DEEP_ARCHIVE']);
/**
 * The storage classes AWS takes: the common ones first, from hot to cold,
 * then any other the SDK knows. (The SDK lists them alphabetically, which
 * would put DEEP_ARCHIVE first in a message.)
 */
export const S3_STORAGE_CLASSES: readonly string[] = [
  ...new Set([
    'STANDARD', 'INTELLIGENT_TIERING', 'STANDARD_IA', 'ONEZONE_IA', 'GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE',
    'REDUCED_REDUNDANCY', 'EXPRESS_ONEZONE', 'OUTPOSTS', 'SNOW',
    ...Object.values(STORAGE_CLASSES),
  ]),
];

/**
 * `storage_class`, upper case. On AWS a class it does not know is refused
 * here: a backup would find out only at its first pack, a restore at every
 * object it writes. A server of the user's may define classes of its own
 * (Ceph's placement targets, Google Cloud Storage's NEARLINE): there, the
 * server says, and the error names the class (see `refusedStorageClass`).
 */
export function parseStorageClass(text: string, endpoint: string | undefined): string {
  const storageClass = text.trim().toUpperCase();
  if (endpoint === undefined && !S3_STORAGE_CLASSES.includes(storageClass)) {
    throw new UsageError(`storage_class '${text}' is not an S3 storage class: use one of ${S3_STORAGE_CLASSES.join(', ')}`);
  }
  return storageClass;
}

/** What to say when the server refuses `storageClass` (InvalidStorageClass). */
export function refusedStorageClass(storageClass: string | undefined): string {
  const which = storageClass === undefined ? 'the storage class' : `storage class ${storageClass}`;
  return `the server does not accept ${which} (InvalidStorageClass): AWS takes ${S3_STORAGE_CLASSES.join(', ')}; another server may take fewer, or others of its own`;
}

function storageClassOf(text: string): string {
  const storageClass = text.toUpperCase();
  if (ARCHIVE_CLASSES.has(storageClass)) {
    throw new UsageError(
      `storage_class ${storageClass}: its objects cannot be read until each is restored, so neither a restore nor a prune could read the store; GLACIER_IR, STANDARD_IA or ONEZONE_IA can`,
    );
  }
  return storageClass;
}

/**
 * Store options from an alias's keys (`endpoint`, `region`, `access_key`,
 * `secret_access_key`, `session_token`, `use_tls`, `storage_class`, …) and the
 * environment (`KLOSET_S3_ENDPOINT`, else `AWS_ENDPOINT_URL`, when no endpoint is configured).
 */
export function s3OptionsFromConfig(
  config: Readonly<Record<string, string>>,
  env: NodeJS.ProcessEnv = process.env,
): S3StoreOptions {
  const options: S3StoreOptions = {};
  const fromEnv = ['KLOSET_S3_ENDPOINT', 'AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL'].find((name) => env[name]);
  const endpoint = config.endpoint || (fromEnv && env[fromEnv]);
  if (endpoint) {
    options.endpoint = endpoint;
    if (!config.endpoint) options.endpointSource = fromEnv;
  }
  if (config.region) options.region = config.region;
  if (config.access_key) options.accessKey = config.access_key;
  if (config.secret_access_key) options.secretAccessKey = config.secret_access_key;
  if (config.session_token) options.sessionToken = config.session_token;
  readClientSettings(config, options);
  // Said now, with where each came from: the page's `use_tls true` beside a local server's http:// endpoint.
  if (options.endpoint) endpointUrl(options.endpoint, options.useTls, options.endpointSource);
  // Archive classes are checked by the store: a destination may write them, which only a store cannot read back.
  if (config.storage_class) options.storageClass = parseStorageClass(config.storage_class, options.endpoint);
  return options;
}

/**
 * The server an endpoint names: its host, port (the scheme's default made
 * explicit) and any path, the host in lower case; `aws` for AWS itself,
 * whose bucket names are one namespace whatever the region. The scheme is
 * left out: `http://` and `https://` at one host and port reach one server.
 */
export function serverOf(endpoint: string | undefined, useTls: boolean | undefined): string {
  if (endpoint === undefined) return 'aws';
  const url = new URL(endpointUrl(endpoint, useTls));
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return `${url.hostname}:${port}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * The SDK's logger: silent, as its default one, but for the one warning the
 * user can act on. Without a logger of ours, its credential chain warns with
 * console.warn, in nine lines, when AWS_PROFILE and AWS_ACCESS_KEY_ID/
 * AWS_SECRET_ACCESS_KEY are all set; that becomes one line like kloset's own.
 * Its other warnings stay unsaid: the default logger drops most (an Expires
 * header that is no date, which the S3 source keeps as it is), and kloset
 * gives it no cause for the rest (a body of unknown length).
 */
const SDK_LOGGER = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  error: () => undefined,
  warn: (message: unknown) => {
    if (!/Multiple credential sources detected/.test(String(message))) return;
    process.stderr.write('warning: AWS_PROFILE and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are all set: the profile is used; unset one or the other\n');
  },
};

/**
 * The SDK client for a store or a connector: path style with an endpoint,
 * retries with backoff, enough sockets for parallel requests, and checksums
 * only where S3 requires them (the SDK's newer default, aws-chunked uploads
 * with checksum trailers, is not understood by many S3-compatible servers).
 */
export function createS3Client(options: S3StoreOptions = {}): S3Client {
  const config: S3ClientConfig = {
    maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    retryMode: options.retryMode ?? 'standard',
    retryStrategy: retryStrategyOf(options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS, options.retryMode ?? 'standard'),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    followRegionRedirects: true,
    logger: SDK_LOGGER,
    requestHandler: {
      httpAgent: new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? DEFAULT_MAX_SOCKETS }),
      httpsAgent: new https.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? DEFAULT_MAX_SOCKETS }),
      connectionTimeout: 10_000,
      // Idle time on the socket, headers or body, before the request fails and is retried: a server
      // that accepts and then says nothing must not hold a command forever. (requestTimeout only logs.)
      socketTimeout: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    },
  };
  if (options.endpoint) {
    config.endpoint = endpointUrl(options.endpoint, options.useTls, options.endpointSource);
    config.forcePathStyle = options.forcePathStyle ?? true;
  } else if (options.forcePathStyle !== undefined) {
    config.forcePathStyle = options.forcePathStyle;
  }
  if (options.region) config.region = options.region;
  else if (options.endpoint) {
    // The SDK's own region (AWS_REGION, the profile's), as the aws CLI takes it with --endpoint-url:
    // a server set up for another region refuses a signature for us-east-1, which is only the fallback.
    const chain = loadConfig(NODE_REGION_CONFIG_OPTIONS, NODE_REGION_CONFIG_FILE_OPTIONS);
    config.region = () => chain().catch(() => 'us-east-1');
  }
  if (options.accessKey !== undefined || options.secretAccessKey !== undefined) {
    if (!options.accessKey || !options.secretAccessKey) {
      throw new UsageError('access_key and secret_access_key go together: set both, or neither to use the AWS credential chain');
    }
    config.credentials = {
      accessKeyId: options.accessKey,
      secretAccessKey: options.secretAccessKey,
      ...(options.sessionToken ? { sessionToken: options.sessionToken } : {}),
    };
  }
  return new S3Client(config);
}

function emptyCounts(): S3RequestCounts {
  return { GET: 0, PUT: 0, LIST: 0, HEAD: 0, DELETE: 0, POST: 0 };
}

/** Counts every HTTP attempt (inside the retry loop) by kind. */
function countRequests(client: S3Client, counts: S3RequestCounts): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { method?: string; query?: Record<string, unknown> } | undefined;
      const method = request?.method?.toUpperCase();
      if (method === 'GET') {
        if (request?.query && 'list-type' in request.query) counts.LIST += 1;
        else counts.GET += 1;
      } else if (method === 'PUT' || method === 'HEAD' || method === 'DELETE' || method === 'POST') {
        counts[method] += 1;
      }
      return next(args);
    },
    { step: 'deserialize', name: 'klosetRequestCounter', override: true },
  );
}

export class S3BlobStore implements BlobStore {
  readonly location: string;
  /** Uploads are latency-bound: several packs in flight keep the link busy. */
  readonly writeConcurrency = 4;
  readonly server: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  /** HTTP requests sent so far, retries included. */
  readonly requests: S3RequestCounts = emptyCounts();
  private readonly getObject: GetObject;
  private readonly storageClass: StorageClass | undefined;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly region: string | undefined;
  private readonly endpoint: string | undefined;
  /** Whether the server honours `If-None-Match: *` on PUT; undefined until a PUT tells. */
  private conditionalPuts: boolean | undefined;

  constructor(location: string, options: S3StoreOptions = {}) {
    const { bucket, prefix } = parseS3Location(location);
    const storageClass = options.storageClass === undefined ? undefined : storageClassOf(options.storageClass);
    this.bucket = bucket;
    this.prefix = prefix;
    this.location = `s3://${bucket}${prefix === '' ? '' : `/${prefix.slice(0, -1)}`}`;
    this.client = createS3Client(options);
    this.server = serverOf(options.endpoint, options.useTls);
    countRequests(this.client, this.requests);
    this.getObject = objectGetter(this.client, (method) => (this.requests[method] += 1));
    this.storageClass = storageClass as StorageClass | undefined;
    this.multipartThreshold = options.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD;
    this.partSize = Math.max(5 * MiB, options.partSize ?? DEFAULT_PART_SIZE);
    this.region = options.region;
    this.endpoint = options.endpoint;
  }

  private objectKey(key: string): string {
    if (key === '' || key.startsWith('/') || key.split('/').some((part) => part === '' || part === '.' || part === '..')) {
      throw new KlosetError(`invalid blob key ${JSON.stringify(key)}`);
    }
    return this.prefix + key;
  }

  async get(key: string, maxBytes?: number): Promise<Buffer> {
    const objectKey = this.objectKey(key);
    return this.readBody(key, async () => {
      const response = await this.call(key, () => this.getObject(this.bucket, objectKey));
      if (maxBytes !== undefined && (response.contentLength ?? 0) > maxBytes) {
        response.body?.destroy();
        throw new IntegrityError(`${key}: too large (${response.contentLength} bytes, at most ${maxBytes} expected)`);
      }
      return { body: response.body, length: response.contentLength };
    });
  }

  async getRange(key: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const objectKey = this.objectKey(key);
    if (length === 0) {
      // An empty range cannot be asked for; the blob must still exist and be long enough.
      const size = await this.stat(key);
      if (size === undefined) throw new NotFoundError(`${key}: not found`);
      if (size < offset) throw new IntegrityError(`${this.location}: ${key}: truncated (wanted 0 bytes at ${offset}, blob has ${size})`);
      return Buffer.alloc(0);
    }
    let start: number | undefined;
    let data = await this.readBody(key, async () => {
      try {
        const response = await this.getObject(this.bucket, objectKey, { range: `bytes=${offset}-${offset + length - 1}` });
        // HTTP lets a server ignore Range and send the whole blob, and s3rver sends
        // more than asked for `bytes=0-0`: take the bytes from where the answer starts.
        start = contentRangeStart(response.contentRange);
        return { body: response.body, length: response.contentLength };
      } catch (err) {
        if (errorName(err) === 'InvalidRange' || statusOf(err) === 416) {
          throw new IntegrityError(`${this.location}: ${key}: truncated (wanted ${length} bytes at ${offset}, the blob is shorter)`);
        }
        throw this.mapError(err, key);
      }
    }, into);
    if (data.length !== length || start !== offset) {
      if (start === undefined || start > offset) {
        throw new IntegrityError(`${key}: asked for ${length} bytes at ${offset}, the server answered another range`);
      }
      data = data.subarray(offset - start, offset - start + length);
    }
    if (data.length !== length) {
      throw new IntegrityError(`${this.location}: ${key}: truncated (wanted ${length} bytes at ${offset}, got ${data.length})`);
    }
    return data;
  }

  /**
   * Reads a response body whole, into `into` when the body is as long. A
   * body cut short by the connection is asked for again: the SDK's own
   * retries end once the headers have arrived.
   */
  private async readBody(
    key: string,
    request: () => Promise<{ body: Readable | undefined; length: number | undefined }>,
    into?: Buffer,
  ): Promise<Buffer> {
    for (let attempt = 1; ; attempt++) {
      const { body, length } = await request();
      try {
        const data = !body
          ? Buffer.alloc(0)
          : length !== undefined
            ? await receiveInto(body, into?.length === length ? into : Buffer.allocUnsafe(length))
            : await receiveWhole(body);
        if (length === undefined || data.length === length) return data;
        if (attempt >= BODY_ATTEMPTS) {
          throw new IntegrityError(`${key}: the server sent ${data.length} bytes of ${length}`);
        }
      } catch (err) {
        if (err instanceof KlosetError || attempt >= BODY_ATTEMPTS) throw this.mapError(err, key);
      }
      await backoff(attempt);
    }
  }

  async put(key: string, data: Buffer): Promise<void> {
    const objectKey = this.objectKey(key);
    const input: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: objectKey,
      Body: data,
      // Packs only: small objects in an infrequent-access class are billed for 128 KiB and 30 days, and a lock lives minutes.
      ...(this.storageClass && key.startsWith('packs/') ? { StorageClass: this.storageClass } : {}),
    };
    if (data.length <= this.multipartThreshold) {
      await this.call(key, () => this.client.send(new PutObjectCommand({ ...input, ContentLength: data.length })));
      return;
    }
    // S3 makes a completed multipart upload visible at once, whole: readers never see a part.
    const upload = new Upload({
      client: this.client,
      params: input,
      partSize: this.partSize,
      queueSize: 4,
      leavePartsOnError: false,
    });
    try {
      await finishUpload(this.client, upload, this.bucket, objectKey);
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  /**
   * HEAD first, so that a server which ignores `If-None-Match` (s3rver does)
   * still does not see an existing blob replaced; then a conditional PUT,
   * which on AWS S3 makes the create atomic against a concurrent writer.
   */
  async putIfAbsent(key: string, data: Buffer): Promise<boolean> {
    const objectKey = this.objectKey(key);
    if ((await this.stat(key)) !== undefined) return false;
    const input: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: objectKey,
      Body: data,
      ContentLength: data.length,
    };
    if (this.conditionalPuts === false) {
      await this.call(key, () => this.client.send(new PutObjectCommand(input)));
      return true;
    }
    try {
      await this.client.send(new PutObjectCommand({ ...input, IfNoneMatch: '*' }));
      this.conditionalPuts = true;
      return true;
    } catch (err) {
      const status = statusOf(err);
      if (errorName(err) === 'PreconditionFailed' || status === 412 || status === 409) {
        this.conditionalPuts = true;
        // A retried PUT whose first attempt went through also ends here: the blob is then ours.
        return this.sameContent(key, data).catch(() => false);
      }
      const message = String((err as Error | undefined)?.message ?? '');
      const rejected = status === 501 || errorName(err) === 'NotImplemented';
      if (rejected || (status === 400 && /if-none-match|conditional/i.test(message))) {
        // This server does not take the header: HEAD-then-PUT from now on.
        this.conditionalPuts = false;
        await this.call(key, () => this.client.send(new PutObjectCommand(input)));
        return true;
      }
      throw this.mapError(err, key);
    }
  }

  private async sameContent(key: string, data: Buffer): Promise<boolean> {
    const existing = await this.get(key);
    return existing.equals(data);
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    let token: string | undefined;
    do {
      const page = await this.call(prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            MaxKeys: LIST_PAGE_SIZE,
            ContinuationToken: token,
          }),
        ),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(this.prefix)) continue;
        const key = object.Key.slice(this.prefix.length);
        if (key === '') continue;
        yield { key, size: object.Size ?? 0 };
      }
      token = nextPageToken(page, token, `${this.location}/${prefix}`);
    } while (token);
  }

  async delete(key: string): Promise<void> {
    try {
      await this.call(key, () =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) })),
      );
    } catch (err) {
      if (err instanceof NotFoundError) return;
      throw err;
    }
  }

  async stat(key: string): Promise<number | undefined> {
    const objectKey = this.objectKey(key);
    let response;
    try {
      response = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
    } catch (err) {
      const mapped = await this.headFailure(err, key);
      if (mapped instanceof NotFoundError) return undefined;
      throw mapped;
    }
    return response.ContentLength ?? 0;
  }

  /**
   * A HEAD's failure for the user. Opening a store starts with one (CONFIG's), and so does create
   * (the bucket's): a wrong key must be named there, not taken for a policy's refusal.
   */
  private async headFailure(err: unknown, key: string): Promise<Error> {
    if (statusOf(err) === 403) {
      const refusal = await listingRefusal(this.client, this.bucket, this.prefix);
      if (refusal !== undefined) return this.mapError(refusal, key);
    }
    return this.mapError(err, key);
  }

  /** Nothing under the store's prefix but, perhaps, the empty "folder" object the AWS console makes for it (one LIST). */
  async isEmpty(): Promise<boolean> {
    const page = await this.call('', () =>
      this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix, MaxKeys: 2 })),
    );
    return (page.Contents ?? []).every((object) => object.Key === this.prefix && (object.Size ?? 0) === 0);
  }

  /** For create: makes the bucket when it does not exist yet. */
  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (statusOf(err) !== 404 && errorName(err) !== 'NotFound' && errorName(err) !== 'NoSuchBucket') {
        throw await this.headFailure(err, '');
      }
    }
    const region = this.region ?? (await this.client.config.region());
    const constraint = region && region !== 'us-east-1' ? (region as BucketLocationConstraint) : undefined;
    try {
      await this.client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          ...(constraint ? { CreateBucketConfiguration: { LocationConstraint: constraint } } : {}),
        }),
      );
    } catch (err) {
      const name = errorName(err);
      if (name !== 'BucketAlreadyOwnedByYou') throw this.mapError(err, '');
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Runs one SDK call (retried by the SDK), turning its failure into a user-facing error. */
  private async call<T>(key: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw this.mapError(err, key);
    }
  }

  /** A bucket request answered 404 with nothing to say more: at an endpoint of the user's, it may be no S3 server at all. */
  private noSuchBucket(): string {
    return this.endpoint ? `no such bucket at ${this.endpoint} (or that is not an S3 server)` : 'no such bucket';
  }

  /** One line for the user, naming the bucket; the SDK's error is kept as the cause. */
  mapError(err: unknown, key: string): Error {
    if (err instanceof KlosetError) return err;
    const name = errorName(err);
    const status = statusOf(err);
    const where = key === '' ? this.location : `${this.location}/${key}`;
    const bucket = `s3://${this.bucket}`;
    const detail = oneLine(err instanceof Error ? err.message : String(err));
    const credentials = credentialsProblem(err);
    if (credentials) return new KlosetError(`${bucket}: ${credentials}`, { cause: err });
    switch (name) {
      case 'NoSuchBucket':
        return new KlosetError(`${bucket}: no such bucket`, { cause: err });
      case 'NoSuchKey':
      case 'NotFound':
        // A request on the bucket itself (its listing, a HEAD) that finds nothing: the bucket, or the endpoint, is not there.
        if (key === '') return new KlosetError(`${bucket}: ${this.noSuchBucket()}`, { cause: err });
        return new NotFoundError(`${key}: not found`);
      case 'AccessDenied':
      case 'Forbidden':
      case 'AllAccessDisabled':
        return new KlosetError(`${bucket}: access denied (check the credentials and the bucket's policy)`, { cause: err });
      case 'InvalidStorageClass':
        return new KlosetError(`${bucket}: ${refusedStorageClass(this.storageClass)}`, { cause: err });
    }
    if (/region is missing/i.test(detail)) {
      return new KlosetError(`${bucket}: no region configured (set region, or AWS_REGION)`, { cause: err });
    }
    if (status === 404) {
      // A HEAD has no body to tell a missing key from a missing bucket.
      return key === '' ? new KlosetError(`${bucket}: ${this.noSuchBucket()}`, { cause: err }) : new NotFoundError(`${key}: not found`);
    }
    if (status === 403) {
      return new KlosetError(`${bucket}: access denied (check the credentials and the bucket's policy)`, { cause: err });
    }
    const unreachable = cannotReach(err, detail);
    if (unreachable) return new KlosetError(`${where}: ${unreachable}`, { cause: err });
    const label = name && name !== 'Error' && !detail.includes(name) ? `${name}: ` : '';
    return new KlosetError(`${where}: ${label}${detail || `HTTP ${status ?? 'error'}`}`, { cause: err });
  }
}

/**
 * Why the SDK's credential chain found nothing, naming what the environment
 * already sets: a user told to set AWS_PROFILE who has set it would look elsewhere.
 */
export function noCredentials(env: NodeJS.ProcessEnv = process.env): string {
  const fix = 'or set access_key and secret_access_key';
  if (env.AWS_PROFILE) return `no AWS credentials found for the profile '${env.AWS_PROFILE}' that AWS_PROFILE names (check ~/.aws/credentials and ~/.aws/config, ${fix})`;
  if (env.AWS_ACCESS_KEY_ID && !env.AWS_SECRET_ACCESS_KEY) return `no AWS credentials found: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY (set both, ${fix})`;
  if (env.AWS_SECRET_ACCESS_KEY && !env.AWS_ACCESS_KEY_ID) return `no AWS credentials found: AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID (set both, ${fix})`;
  return 'no AWS credentials found (set access_key and secret_access_key, or AWS_ACCESS_KEY_ID, AWS_PROFILE)';
}

/**
 * What an S3 error says of the credentials, in the words the store and the
 * connectors share; undefined for an error of another kind.
 */
export function credentialsProblem(err: unknown): string | undefined {
  switch (errorName(err)) {
    case 'InvalidAccessKeyId':
      return 'the access key is not known to the server (InvalidAccessKeyId)';
    case 'SignatureDoesNotMatch':
      return 'the secret access key does not match the access key (SignatureDoesNotMatch)';
    case 'ExpiredToken':
    case 'TokenRefreshRequired':
      return 'the credentials have expired';
    case 'CredentialsProviderError':
      return noCredentials();
  }
  return undefined;
}

/**
 * Why a HEAD was answered 403. Its answer has no body to tell a wrong access
 * key or secret from a policy's refusal; a listing's has, and is asked for.
 * Resolves to the listing's error, or to undefined when the listing is
 * allowed (then a policy refused the HEAD alone).
 */
export async function listingRefusal(client: S3Client, bucket: string, prefix = ''): Promise<unknown> {
  try {
    await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: 1 }));
    return undefined;
  } catch (err) {
    return err;
  }
}

export function errorName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { name?: unknown; Code?: unknown };
  if (typeof e.Code === 'string') return e.Code;
  return typeof e.name === 'string' ? e.name : undefined;
}

export function statusOf(err: unknown): number | undefined {
  const metadata = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata;
  return metadata?.httpStatusCode;
}

/** `bytes 100-199/1000` → 100; 0 when absent (a 200 carries the whole blob); undefined when unreadable. */
export function contentRangeStart(contentRange: string | undefined): number | undefined {
  if (contentRange === undefined) return 0;
  const match = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(contentRange.trim());
  return match ? Number(match[1]) : undefined;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** Full jitter: a random wait up to 100 ms · 2^attempt, at most 5 s. */
function backoff(attempt: number): Promise<void> {
  const cap = Math.min(5000, 100 * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * cap));
}

/**
 * Reads a response body of known length straight into `data`, a buffer of
 * that length. Collecting the socket's pieces and joining them, as the SDK's
 * transformToByteArray does, copies every byte twice more and leaves the
 * garbage collector two more buffers of the body's size. A body cut short
 * comes back short, and the caller asks again.
 */
function receiveInto(body: Readable, data: Buffer): Promise<Buffer> {
  const length = data.length;
  let received = 0;
  return new Promise((resolve, reject) => {
    body.on('data', (piece: Buffer) => {
      received += piece.copy(data, received);
    });
    // finished() also reports a connection closed before the end, which emits no 'end'.
    finished(body, (err) => (err ? reject(err) : resolve(received === length ? data : data.subarray(0, received))));
  });
}
