/**
 * GETs and PUTs of single objects, for the store and the connectors alike.
 * For a client of a configured endpoint with path-style addressing (every
 * S3-compatible server, and the tests), a request is built here, signed
 * with the client's credentials (sigv4.ts) and sent through its HTTP
 * handler (same sockets, timeouts and retry strategy as its other calls):
 * the SDK's per-request middleware costs about 1.5 ms of CPU per request,
 * more than everything else done with a small object or a chunk. Other clients
 * (AWS itself: virtual-hosted buckets, region redirects, FIPS, dual-stack)
 * go through the SDK's commands.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { PutObjectCommandInput, S3Client } from '@aws-sdk/client-s3';
import type { HttpHandler, HttpResponse } from '@smithy/core/protocols';
import type { AwsCredentialIdentity, Provider, RetryErrorType, RetryStrategyV2, SdkError } from '@smithy/types';
import { requireCjs } from '../cjs.js';
import { KlosetError } from '../errors.js';
import { RequestSigner } from './sigv4.js';

const { GetObjectCommand, PutObjectCommand } = requireCjs('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');
const { extendedEncodeURIComponent, HttpRequest } = requireCjs('@smithy/core/protocols') as typeof import('@smithy/core/protocols');
type HttpRequest = InstanceType<typeof HttpRequest>;
const { getRetryAfterHint, isClockSkewError, isServerError, isThrottlingError, isTransientError } = requireCjs(
  '@smithy/core/retry',
) as typeof import('@smithy/core/retry');

/** What a GetObject answer carries for the S3 source (the headers it records) and the store (the range). */
export interface ObjectResponse {
  body: Readable | undefined;
  etag?: string;
  contentLength?: number;
  contentRange?: string;
  lastModified?: Date;
  storageClass?: string;
  restore?: string;
  contentType?: string;
  cacheControl?: string;
  contentEncoding?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  /** The Expires header as S3 sent it. */
  expires?: string;
  websiteRedirectLocation?: string;
  versionId?: string;
  /** User metadata: `x-amz-meta-<name>` headers by lower-case name. */
  metadata: Record<string, string>;
}

export interface GetObjectOptions {
  /** A Range header (`bytes=N-`). */
  range?: string;
  /** An If-Match header (a quoted ETag). */
  ifMatch?: string;
}

/** One object's GET, retried like any SDK call; errors look like the SDK's (name, Code, $metadata.httpStatusCode). */
export type GetObject = (bucket: string, key: string, options?: GetObjectOptions) => Promise<ObjectResponse>;

/**
 * Told of each request sent past the SDK's middleware, retries included,
 * for a counter the client's middleware keeps of the others.
 */
export type SentRequest = (method: 'GET' | 'PUT') => void;

/** A GET of one object through `client`: built and signed here where the client allows it (see above), else GetObjectCommand. */
export function objectGetter(client: S3Client, sent?: SentRequest): GetObject {
  const direct = DirectRequests.of(client, sent);
  if (direct) return (bucket, key, options) => direct.get(bucket, key, options);
  return sdkObjectGetter(client);
}

/** What a restore sends for one object small enough for a single PUT. */
export type PutObjectInput = Omit<PutObjectCommandInput, 'Body' | 'Bucket' | 'Key'> & { Bucket: string; Key: string; Body: Buffer };
export type PutObject = (input: PutObjectInput) => Promise<void>;

/** The PUT counterpart of objectGetter, on the same terms. */
export function objectPutter(client: S3Client, sent?: SentRequest): PutObject {
  const direct = DirectRequests.of(client, sent);
  if (direct) return (input) => direct.put(input);
  return sdkObjectPutter(client);
}

/** A PUT of one object through the SDK's PutObjectCommand. */
export function sdkObjectPutter(client: S3Client): PutObject {
  return async (input) => {
    await client.send(new PutObjectCommand({ ...input, ContentLength: input.Body.length }));
  };
}

/** A GET of one object through the SDK's GetObjectCommand. */
export function sdkObjectGetter(client: S3Client): GetObject {
  return async (bucket, key, options = {}) => {
    const response = await client.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        ...(options.range !== undefined ? { Range: options.range } : {}),
        ...(options.ifMatch !== undefined ? { IfMatch: options.ifMatch } : {}),
      }),
    );
    return {
      body: response.Body as Readable | undefined,
      etag: response.ETag,
      contentLength: response.ContentLength,
      contentRange: response.ContentRange,
      lastModified: response.LastModified,
      storageClass: response.StorageClass,
      restore: response.Restore,
      contentType: response.ContentType,
      cacheControl: response.CacheControl,
      contentEncoding: response.ContentEncoding,
      contentDisposition: response.ContentDisposition,
      contentLanguage: response.ContentLanguage,
      expires: response.ExpiresString ?? response.Expires?.toUTCString(),
      websiteRedirectLocation: response.WebsiteRedirectLocation,
      versionId: response.VersionId,
      metadata: response.Metadata ?? {},
    };
  };
}

/** Clock skew beyond which a signature-refused answer makes the client adopt the server's clock. */
const CLOCK_SKEW_MS = 5 * 60 * 1000;
/** Bytes of an error answer read for its code and message. */
const ERROR_BODY_LIMIT = 64 * 1024;

/** How the SDK's retry middleware classifies a failed attempt for the retry strategy (its getRetryErrorType). */
function retryErrorType(err: SdkError): RetryErrorType {
  if (isThrottlingError(err)) return 'THROTTLING';
  if (isTransientError(err)) return 'TRANSIENT';
  if (isServerError(err)) return 'SERVER_ERROR';
  return 'CLIENT_ERROR';
}

/** The S3 client's resolved configuration, as far as a GET needs it. */
interface ClientConfig {
  isCustomEndpoint?: boolean;
  forcePathStyle?: boolean;
  useAccelerateEndpoint?: boolean;
  bucketEndpoint?: boolean;
  endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string }>;
  region: Provider<string>;
  /** The client's credentials, as its own signer asks for them at each request (refreshed when they expire). */
  credentials?: () => Promise<AwsCredentialIdentity>;
  retryStrategy?: () => Promise<unknown>;
  requestHandler?: unknown;
  systemClockOffset?: number;
}

interface Setup {
  protocol: string;
  hostname: string;
  port?: number;
  host: string;
  basePath: string;
  signer: RequestSigner;
  retry: RetryStrategyV2;
}

function header(headers: IncomingHttpHeaders | Record<string, string>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Path-style GETs and PUTs signed with the client's credentials and sent through its HTTP handler. */
class DirectRequests {
  private setup: Promise<Setup> | undefined;

  private constructor(
    private readonly config: ClientConfig,
    private readonly handler: HttpHandler,
    private readonly sent: SentRequest | undefined,
  ) {}

  static of(client: S3Client, sent?: SentRequest): DirectRequests | undefined {
    const config = client.config as unknown as ClientConfig;
    const handler = config.requestHandler as Partial<HttpHandler> | undefined;
    if (
      config.isCustomEndpoint !== true ||
      config.forcePathStyle !== true ||
      config.useAccelerateEndpoint === true ||
      config.bucketEndpoint === true ||
      typeof config.endpoint !== 'function' ||
      typeof config.credentials !== 'function' ||
      typeof config.retryStrategy !== 'function' ||
      typeof handler?.handle !== 'function' ||
      handler.constructor?.name !== 'NodeHttpHandler'
    ) {
      return undefined;
    }
    return new DirectRequests(config, handler as HttpHandler, sent);
  }

  private async resolve(): Promise<Setup> {
    const endpoint = await this.config.endpoint!();
    const region = await this.config.region();
    // It asks the client's credential provider at each request, so refreshed credentials are used.
    const signer = new RequestSigner(this.config.credentials!, region);
    const retry = (await this.config.retryStrategy!()) as Partial<RetryStrategyV2>;
    if (typeof retry.acquireInitialRetryToken !== 'function' || typeof retry.refreshRetryTokenForRetry !== 'function') {
      throw new KlosetError('the S3 client has a retry strategy of an older kind');
    }
    const defaultPort = endpoint.protocol === 'https:' ? 443 : 80;
    const port = endpoint.port !== undefined && endpoint.port !== defaultPort ? endpoint.port : undefined;
    return {
      protocol: endpoint.protocol,
      hostname: endpoint.hostname,
      port: endpoint.port,
      host: port === undefined ? endpoint.hostname : `${endpoint.hostname}:${port}`,
      basePath: (endpoint.path ?? '/').replace(/\/+$/, ''),
      signer,
      retry: retry as RetryStrategyV2,
    };
  }

  async get(bucket: string, key: string, options: GetObjectOptions = {}): Promise<ObjectResponse> {
    return this.withRetries(bucket, key, (setup, path) => this.attempt(setup, path, options));
  }

  /**
   * A PUT of one object from a buffer, with the headers PutObjectCommand
   * would send for the same input (content headers, Expires as an HTTP
   * date, user metadata as x-amz-meta-*); the signer hashes the body into
   * x-amz-content-sha256, which S3 checks.
   */
  async put(input: PutObjectInput): Promise<void> {
    const headers: Record<string, string> = { 'content-type': input.ContentType ?? 'application/octet-stream', 'content-length': String(input.Body.length) };
    if (input.CacheControl !== undefined) headers['cache-control'] = input.CacheControl;
    if (input.ContentEncoding !== undefined) headers['content-encoding'] = input.ContentEncoding;
    if (input.ContentDisposition !== undefined) headers['content-disposition'] = input.ContentDisposition;
    if (input.ContentLanguage !== undefined) headers['content-language'] = input.ContentLanguage;
    if (input.Expires !== undefined) headers.expires = input.Expires instanceof Date ? input.Expires.toUTCString() : String(input.Expires);
    if (input.WebsiteRedirectLocation !== undefined) headers['x-amz-website-redirect-location'] = input.WebsiteRedirectLocation;
    if (input.StorageClass !== undefined) headers['x-amz-storage-class'] = input.StorageClass;
    for (const [name, value] of Object.entries(input.Metadata ?? {})) headers[`x-amz-meta-${name}`] = value;
    await this.withRetries(input.Bucket, input.Key, async (setup, path) => {
      const request = new HttpRequest({
        protocol: setup.protocol,
        hostname: setup.hostname,
        port: setup.port,
        method: 'PUT',
        path,
        query: {},
        headers: { host: setup.host, ...headers },
        body: input.Body,
      });
      this.sent?.('PUT');
      const { response } = await this.handler.handle(await this.sign(setup, request, input.Body));
      const body = response.body as Readable | undefined;
      if (response.statusCode < 200 || response.statusCode >= 300) throw await this.error(response, body);
      body?.resume(); // the socket goes back to the pool once the answer is read
    });
  }

  private async sign(setup: Setup, request: HttpRequest, body?: Buffer): Promise<HttpRequest> {
    await setup.signer.sign(request.method, request.path, request.headers, body, new Date(Date.now() + (this.config.systemClockOffset ?? 0)));
    return request;
  }

  private async withRetries<T>(bucket: string, key: string, attempt: (setup: Setup, path: string) => Promise<T>): Promise<T> {
    const setup = await (this.setup ??= this.resolve().catch((err) => {
      this.setup = undefined;
      throw err;
    }));
    // As the SDK serializes an object's path: the key is a greedy label, each segment encoded.
    const path = `${setup.basePath}/${extendedEncodeURIComponent(bucket)}/${key.split('/').map(extendedEncodeURIComponent).join('/')}`;
    let token = await setup.retry.acquireInitialRetryToken('s3');
    for (;;) {
      try {
        const response = await attempt(setup, path);
        setup.retry.recordSuccess(token);
        return response;
      } catch (err) {
        const retryAfterHint = (err as { $retryAfter?: Date }).$retryAfter;
        try {
          token = await setup.retry.refreshRetryTokenForRetry(token, { errorType: retryErrorType(err as SdkError), ...(retryAfterHint ? { retryAfterHint } : {}) });
        } catch {
          throw err;
        }
      }
    }
  }

  private async attempt(setup: Setup, path: string, options: GetObjectOptions): Promise<ObjectResponse> {
    const headers: Record<string, string> = { host: setup.host };
    if (options.range !== undefined) headers.range = options.range;
    if (options.ifMatch !== undefined) headers['if-match'] = options.ifMatch;
    const request = new HttpRequest({ protocol: setup.protocol, hostname: setup.hostname, port: setup.port, method: 'GET', path, query: {}, headers });
    this.sent?.('GET');
    const { response } = await this.handler.handle(await this.sign(setup, request));
    const body = response.body as Readable | undefined;
    const h = response.headers;
    if (response.statusCode < 200 || response.statusCode >= 300) throw await this.error(response, body);
    const metadata: Record<string, string> = {};
    for (const name of Object.keys(h)) {
      if (name.startsWith('x-amz-meta-')) metadata[name.slice('x-amz-meta-'.length)] = header(h, name)!;
    }
    const length = header(h, 'content-length');
    const modified = header(h, 'last-modified');
    const lastModified = modified === undefined ? undefined : new Date(modified);
    return {
      body,
      etag: header(h, 'etag'),
      contentLength: length === undefined || !/^\d+$/.test(length.trim()) ? undefined : Number(length),
      contentRange: header(h, 'content-range'),
      lastModified: lastModified && !Number.isNaN(lastModified.getTime()) ? lastModified : undefined,
      storageClass: header(h, 'x-amz-storage-class'),
      restore: header(h, 'x-amz-restore'),
      contentType: header(h, 'content-type'),
      cacheControl: header(h, 'cache-control'),
      contentEncoding: header(h, 'content-encoding'),
      contentDisposition: header(h, 'content-disposition'),
      contentLanguage: header(h, 'content-language'),
      expires: header(h, 'expires'),
      websiteRedirectLocation: header(h, 'x-amz-website-redirect-location'),
      versionId: header(h, 'x-amz-version-id'),
      metadata,
    };
  }

  /** An error answer as the SDK would throw it: name and Code from the XML body, the status in $metadata. */
  private async error(response: HttpResponse, body: Readable | undefined): Promise<Error> {
    const status = response.statusCode;
    let text = '';
    if (body) {
      try {
        for await (const data of body) {
          if (text.length < ERROR_BODY_LIMIT) text += Buffer.isBuffer(data) ? data.toString('utf8') : String(data);
        }
      } catch {
        // a cut error body: the status still tells
      }
    }
    const tag = (name: string) => {
      const match = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(text);
      return match ? unescapeXml(match[1]) : undefined;
    };
    const code = tag('Code') ?? (status === 404 ? 'NotFound' : status === 403 ? 'Forbidden' : status === 412 ? 'PreconditionFailed' : undefined);
    const message = tag('Message') ?? (code ?? `HTTP ${status}`);
    const metadata: { httpStatusCode: number; requestId?: string; clockSkewCorrected?: true } = { httpStatusCode: status };
    const requestId = header(response.headers, 'x-amz-request-id');
    if (requestId) metadata.requestId = requestId;
    const error = Object.assign(new Error(message), { name: code ?? 'Error', $fault: status >= 500 ? 'server' : 'client', $metadata: metadata });
    if (code) Object.assign(error, { Code: code });
    const serverDate = header(response.headers, 'date');
    if (serverDate && isClockSkewError(error as SdkError)) {
      // As the SDK's signer does: adopt the server's clock, and the retry goes through.
      const server = Date.parse(serverDate);
      const offset = this.config.systemClockOffset ?? 0;
      if (!Number.isNaN(server) && Math.abs(server - (Date.now() + offset)) >= CLOCK_SKEW_MS) {
        this.config.systemClockOffset = server - Date.now();
        metadata.clockSkewCorrected = true;
      }
    }
    const retryAfter = getRetryAfterHint(response);
    if (retryAfter) Object.assign(error, { $retryAfter: retryAfter });
    return error;
  }
}

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (entity, name: string) => {
    switch (name) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
    }
    const point = name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
    return point <= 0x10ffff ? String.fromCodePoint(point) : entity;
  });
}
