/**
 * The values an S3 alias's client settings take, read here without loading
 * the AWS SDK: the store reads them when it connects, and `config set`
 * checks them when they are typed, not when a backup at night first uses them.
 */
import { UsageError } from '../errors.js';
import { userInfo } from './open.js';
import type { S3StoreOptions } from './s3.js';

export type RetryMode = 'standard' | 'adaptive';

export function parseBoolean(key: string, value: string): boolean {
  const lower = value.trim().toLowerCase();
  if (['true', 'yes', '1', 'on'].includes(lower)) return true;
  if (['false', 'no', '0', 'off'].includes(lower)) return false;
  throw new UsageError(`${key} must be true or false, not '${value}'`);
}

export function parsePositive(key: string, value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw new UsageError(`${key} must be a positive integer, not '${value}'`);
  return number;
}

export function parseRetryMode(value: string): RetryMode {
  if (value !== 'standard' && value !== 'adaptive') throw new UsageError(`retry_mode must be 'standard' or 'adaptive', not '${value}'`);
  return value;
}

/**
 * An S3 location or endpoint names no credentials: `s3://id:secret@bucket`
 * is refused without being repeated, so the secret reaches no terminal or log.
 */
export function refuseUserInfo(text: string, what: string): void {
  const info = userInfo(text);
  if (!info) return;
  throw new UsageError(
    `${text.slice(0, info.start)}****@${text.slice(info.at + 1)}: ${what} holds no credentials: set access_key and secret_access_key (or use AWS's environment and files)`,
  );
}

/** The endpoint as a URL, its scheme from `use_tls` when the endpoint has none. */
export function endpointUrl(endpoint: string, useTls: boolean | undefined, source = 'endpoint'): string {
  refuseUserInfo(endpoint.includes('://') ? endpoint : `http://${endpoint}`, 'an endpoint');
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(endpoint);
  const given = match?.[1]!.toLowerCase();
  if (given !== undefined && given !== 'http' && given !== 'https') throw new UsageError(`endpoint ${endpoint}: expected http:// or https://`);
  // Either one would be taken over the other at the TLS handshake, far from the cause.
  if (given !== undefined && useTls !== undefined && (given === 'https') !== useTls) {
    throw new UsageError(`${source} ${endpoint} is ${given} but use_tls is ${useTls}: change one of them`);
  }
  const scheme = given ?? (useTls === false ? 'http' : 'https');
  const rest = (match ? match[2]! : endpoint).replace(/\/+$/, '');
  // A port out of range or a missing host would otherwise fail each request, as a server that cannot be reached.
  if (!URL.canParse(`${scheme}://${rest}`)) throw new UsageError(`${source} ${endpoint}: not a valid URL`);
  return `${scheme}://${rest}`;
}

/**
 * How each client setting is read into the store's options, the one way
 * both the store and `config set` read it; the keys not here are free text
 * (a region, credentials) or need the rest of the alias (`endpoint`, whose
 * scheme must agree with `use_tls`; `storage_class`, free on a server of the
 * user's own).
 */
const CLIENT_SETTINGS: Readonly<Record<string, (options: S3StoreOptions, value: string) => void>> = {
  use_tls: (options, value) => (options.useTls = parseBoolean('use_tls', value)),
  force_path_style: (options, value) => (options.forcePathStyle = parseBoolean('force_path_style', value)),
  timeout: (options, value) => (options.idleTimeoutMs = parsePositive('timeout', value) * 1000),
  max_attempts: (options, value) => (options.maxAttempts = parsePositive('max_attempts', value)),
  max_connections: (options, value) => (options.maxSockets = parsePositive('max_connections', value)),
  retry_mode: (options, value) => (options.retryMode = parseRetryMode(value)),
};

/** Sets the client settings the alias's keys give. */
export function readClientSettings(config: Readonly<Record<string, string>>, options: S3StoreOptions): void {
  for (const [key, read] of Object.entries(CLIENT_SETTINGS)) {
    const value = config[key];
    if (value !== undefined) read(options, value);
  }
}

/** Throws the error the store would give on connecting if `value` is no value `key` takes. */
export function checkClientSetting(key: string, value: string): void {
  // Whether it contradicts use_tls is said where both are known, when the alias is used.
  if (key === 'endpoint') endpointUrl(value, undefined);
  else CLIENT_SETTINGS[key]?.({}, value);
}
