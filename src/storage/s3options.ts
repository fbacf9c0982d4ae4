/**
 * The values an S3 alias's client settings take, read here without loading
 * the AWS SDK: the store reads them when it connects, and `config set`
 * checks them when they are typed, not when a backup at night first uses them.
 */
import { UsageError } from '../errors.js';

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

/** How each client setting is read; the other keys are free text (an endpoint, a region, credentials). */
const CLIENT_SETTINGS: Readonly<Record<string, (key: string, value: string) => unknown>> = {
  use_tls: parseBoolean,
  force_path_style: parseBoolean,
  timeout: parsePositive,
  max_attempts: parsePositive,
  max_connections: parsePositive,
  retry_mode: (_key, value) => parseRetryMode(value),
};

/** Throws the error the store would give on connecting if `value` is no value `key` takes. */
export function checkClientSetting(key: string, value: string): void {
  CLIENT_SETTINGS[key]?.(key, value);
}
