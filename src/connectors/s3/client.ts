/**
 * What the S3 source and destination share: their location (`s3://bucket/prefix`),
 * their settings (an alias's keys), the SDK client (built by the storage
 * connector's createS3Client, so stores and connectors talk to S3 alike) and
 * one-line messages for S3's errors.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { requireCjs } from '../../cjs.js';
import { KlosetError, UsageError } from '../../errors.js';
import { cannotReach, createS3Client, credentialsProblem, errorName, listingRefusal, s3OptionsFromConfig, statusOf } from '../../storage/s3.js';
import { refuseUserInfo } from '../../storage/s3options.js';

const { HeadBucketCommand } = requireCjs('@aws-sdk/client-s3') as typeof import('@aws-sdk/client-s3');

export interface S3ObjectLocation {
  bucket: string;
  /** Taken verbatim from the URI ('' or ending in '/'): `s3://b//x` is the prefix `/x/`. */
  prefix: string;
}

const URI = /^s3:\/\/([^/?#]+)(?:\/(.*))?$/is;

/** `s3://bucket/some/prefix` → { bucket, prefix: 'some/prefix/' }; `s3://bucket` → prefix ''. */
export function parseS3Uri(uri: string): S3ObjectLocation {
  refuseUserInfo(uri, 'an S3 location');
  const match = URI.exec(uri);
  if (!match) throw new UsageError(`${uri}: not an S3 location (expected s3://bucket/prefix)`);
  const bucket = match[1];
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/.test(bucket)) throw new UsageError(`${uri}: '${bucket}' is not a valid bucket name`);
  const rest = match[2] ?? '';
  return { bucket, prefix: rest === '' || rest.endsWith('/') ? rest : `${rest}/` };
}

/** `s3://bucket` or `s3://bucket/prefix` (without the prefix's last '/'), as the user names a source or destination. */
export function formatS3Uri(location: S3ObjectLocation): string {
  return location.prefix === '' ? `s3://${location.bucket}` : `s3://${location.bucket}/${location.prefix.slice(0, -1)}`;
}

/** `s3://bucket/full/key`, naming one object in messages. */
export function objectUri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

export interface S3ConnectorSettings {
  location: S3ObjectLocation;
  client: S3Client;
  /** The endpoint in use, or undefined for AWS itself. */
  endpoint: string | undefined;
  /** `storage_class`, upper case: the class a destination writes its objects in. */
  storageClass: string | undefined;
}

/**
 * Settings from an alias's keys: `endpoint`, `region`, `access_key`,
 * `secret_access_key`, `use_tls` (default true), and without keys the SDK's
 * default credential chain; without `endpoint`, KLOSET_S3_ENDPOINT or
 * AWS_ENDPOINT_URL.
 */
export function connectorSettings(
  uri: string,
  options: Readonly<Record<string, string>> = {},
  env: NodeJS.ProcessEnv = process.env,
): S3ConnectorSettings {
  const location = parseS3Uri(uri);
  const clientOptions = s3OptionsFromConfig(options, env);
  return { location, client: createS3Client(clientOptions), endpoint: clientOptions.endpoint, storageClass: clientOptions.storageClass };
}

/**
 * A HEAD of the bucket answered 404. It has no body to name the error: at an
 * endpoint of the user's, that may be no S3 server at all.
 */
export function noSuchBucket(bucket: string, endpoint: string | undefined, err: unknown): KlosetError {
  const elsewhere = endpoint && errorName(err) !== 'NoSuchBucket' ? ` at ${endpoint} (or that is not an S3 server)` : '';
  return new KlosetError(`s3://${bucket}: no such bucket${elsewhere}`, { cause: err });
}

/**
 * Checks once, at the start, that the bucket is there and that the
 * credentials are good: a missing bucket is then one error, not one per
 * object. A 403 to the HEAD has no body to say why, and HeadBucket needs
 * s3:ListBucket, which writing objects does not: a listing is asked for the
 * reason. A source needs that listing (`listing: 'needed'`), so its refusal
 * is fatal; for a destination an AccessDenied there is left to each PUT.
 */
export async function checkBucket(client: S3Client, bucket: string, endpoint: string | undefined, listing: 'needed' | 'optional'): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if (errorName(err) === 'NotFound' || errorName(err) === 'NoSuchBucket') throw noSuchBucket(bucket, endpoint, err);
    if (statusOf(err) !== 403) throw s3Error(err, `s3://${bucket}`);
    const refusal = await listingRefusal(client, bucket);
    if (refusal === undefined || (listing === 'optional' && errorName(refusal) === 'AccessDenied')) return;
    throw s3Error(refusal, `s3://${bucket}`);
  }
}

/**
 * One line for the user naming the object or bucket (`where`), with an errno-like
 * `code` where one fits, so the backup reports it as "permission denied" or
 * "vanished during backup". The SDK's error is kept as the cause.
 */
export function s3Error(err: unknown, where: string): KlosetError {
  if (err instanceof KlosetError) return err;
  const name = errorName(err);
  const status = statusOf(err);
  const detail = (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
  const make = (message: string, code?: string) => Object.assign(new KlosetError(`${where}: ${message}`, { cause: err }), code ? { code } : {});
  const credentials = credentialsProblem(err);
  if (credentials) return make(credentials);
  switch (name) {
    case 'NoSuchBucket':
      return make('no such bucket');
    case 'NoSuchKey':
    case 'NotFound':
      return make('no such object', 'ENOENT');
    case 'AccessDenied':
    case 'Forbidden':
    case 'AllAccessDisabled':
      return make('access denied', 'EACCES');
    case 'ObjectLockConfigurationNotFoundError':
    case 'InvalidRequest':
      if (/object lock|retention|legal hold/i.test(detail)) return make(`refused by Object Lock: ${detail}`, 'EPERM');
  }
  if (/object lock|retention|legal hold/i.test(detail)) return make(`refused by Object Lock: ${detail}`, 'EPERM');
  if (/region is missing/i.test(detail)) return make('no region configured (set region, or AWS_REGION)');
  if (status === 404) return make('not found', 'ENOENT');
  if (status === 403) return make('access denied', 'EACCES');
  const unreachable = cannotReach(err, detail);
  if (unreachable) return make(unreachable);
  const label = name && name !== 'Error' && !detail.includes(name) ? `${name}: ` : '';
  return make(`${label}${detail || `HTTP ${status ?? 'error'}`}`);
}
