import { requireCjs } from '../../cjs.js';

const { getAttributeSync, listAttributesSync, setAttributeSync } = requireCjs('@napi-rs/xattr') as typeof import('@napi-rs/xattr');

/**
 * Extended attributes, read and written with the l*xattr calls (never
 * through a symlink). Synchronous on purpose: listxattr on a file without
 * attributes is one cheap syscall, far cheaper than a thread-pool round trip.
 */

/** Codes meaning "this file system or namespace has no attributes for us". */
const UNSUPPORTED = new Set(['ENOTSUP', 'EOPNOTSUPP', 'ENODATA', 'EPERM', 'EACCES']);

function code(err: unknown): string | undefined {
  const e = err as { code?: string; message?: string };
  if (e.code) return e.code;
  return /Operation not supported|No data available|Permission denied|Operation not permitted/.exec(e.message ?? '')
    ? 'ENOTSUP'
    : undefined;
}

export function readXattrs(path: string): Record<string, Buffer> | undefined {
  let names: string[];
  try {
    names = listAttributesSync(path);
  } catch (err) {
    if (UNSUPPORTED.has(code(err) ?? '')) return undefined;
    throw err;
  }
  if (names.length === 0) return undefined;
  const xattrs: Record<string, Buffer> = {};
  for (const name of names) {
    try {
      const value = getAttributeSync(path, name);
      if (value) xattrs[name] = Buffer.from(value);
    } catch (err) {
      if (!UNSUPPORTED.has(code(err) ?? '')) throw err;
    }
  }
  return Object.keys(xattrs).length > 0 ? xattrs : undefined;
}

/** Attributes the target cannot hold (another file system, a privileged namespace) are left out. */
export function writeXattrs(path: string, xattrs: Record<string, Buffer>): void {
  for (const [name, value] of Object.entries(xattrs)) {
    try {
      setAttributeSync(path, name, value);
    } catch (err) {
      if (!UNSUPPORTED.has(code(err) ?? '')) throw err;
    }
  }
}
