import { closeSync, constants, openSync } from 'node:fs';
import path from 'node:path';
import { requireCjs } from '../../cjs.js';
import { nameToBytes } from '../../snapshot/names.js';

const { getAttributeSync, listAttributesSync, removeAttributeSync, setAttributeSync } = requireCjs('@napi-rs/xattr') as typeof import('@napi-rs/xattr');

/**
 * Extended attributes, read and written with the l*xattr calls (never
 * through a symlink). Synchronous on purpose: listxattr on a file without
 * attributes is one cheap syscall, far cheaper than a thread-pool round trip.
 */

/** A text path to an entry, and what to release once the calls on it are done. */
export interface TextPath {
  path: string;
  close(): void;
}

/**
 * The binding takes paths as text. A path that is not UTF-8 text (see
 * names.ts) is reached through a descriptor held open until close():
 * `/proc/self/fd/<n>/<name>` with <n> its directory, when its own name is
 * text (an entry below a source, a target or a directory named in
 * Latin-1), else `/proc/self/fd/<n>/.` with <n> itself, when it is a
 * directory. The l* calls take that last step without following a
 * symbolic link, as they take a plain path. Undefined when neither serves
 * (a file or a link whose own name is not text), or the directory cannot
 * be opened.
 */
export function textPathOf(full: string): TextPath | undefined {
  if (full.isWellFormed()) return { path: full, close: () => undefined };
  const name = path.basename(full);
  const [directory, last] = name.isWellFormed() ? [path.dirname(full), name] : [full, '.'];
  let fd: number;
  try {
    // Itself only when it is a directory: a link is not followed, and a FIFO neither opened nor waited on.
    const itself = last === '.' ? constants.O_NOFOLLOW | constants.O_NONBLOCK : 0;
    fd = openSync(nameToBytes(directory), constants.O_RDONLY | constants.O_DIRECTORY | itself);
  } catch {
    return undefined;
  }
  return { path: `/proc/self/fd/${fd}/${last}`, close: () => closeSync(fd) };
}

/** `use` given a text path to `full` (textPathOf); undefined, and `use` not called, when there is none. */
export function withTextPath<T>(full: string, use: (textPath: string) => T): T | undefined {
  const reached = textPathOf(full);
  if (reached === undefined) return undefined;
  try {
    return use(reached.path);
  } finally {
    reached.close();
  }
}

/** Codes meaning "this file system or namespace has no attributes for us". */
const UNSUPPORTED = new Set(['ENOTSUP', 'EOPNOTSUPP', 'ENODATA', 'EPERM', 'EACCES']);

/** The binding's errors carry the code GenericFailure: what failed is in the message ("... (os error 95)"). */
function code(err: unknown): string | undefined {
  const e = err as { code?: string; message?: string };
  if (e.code && e.code !== 'GenericFailure') return e.code;
  if (/No such file or directory/.test(e.message ?? '')) return 'ENOENT';
  return /Operation not supported|No data available|Permission denied|Operation not permitted/.exec(e.message ?? '')
    ? 'ENOTSUP'
    : e.code;
}

/**
 * A failure of the binding with the code of the system call's: an entry removed since it was
 * listed is then told as by any other call (a backup says it vanished), not as "(os error 2)".
 */
function withCode(err: unknown): unknown {
  return code(err) === 'ENOENT' ? Object.assign(err as Error, { code: 'ENOENT' }) : err;
}

export function readXattrs(path: string): Record<string, Buffer> | undefined {
  let names: string[];
  try {
    names = listAttributesSync(path);
  } catch (err) {
    if (UNSUPPORTED.has(code(err) ?? '')) return undefined;
    throw withCode(err);
  }
  if (names.length === 0) return undefined;
  const xattrs: Record<string, Buffer> = {};
  for (const name of names) {
    try {
      const value = getAttributeSync(path, name);
      if (value) xattrs[name] = Buffer.from(value);
    } catch (err) {
      if (!UNSUPPORTED.has(code(err) ?? '')) throw withCode(err);
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

/** POSIX ACLs as the kernel keeps them: attributes of the system namespace. */
export const ACCESS_ACL = 'system.posix_acl_access';
export const DEFAULT_ACL = 'system.posix_acl_default';

/** Whether a directory has a default ACL, which what is created in it inherits. */
export function hasDefaultAcl(full: string): boolean {
  return (
    withTextPath(full, (at) => {
      try {
        return getAttributeSync(at, DEFAULT_ACL) !== null;
      } catch {
        return false;
      }
    }) ?? false
  );
}

/** Removes attributes, each only if present: those a restored entry inherited and its source did not have. */
export function removeXattrs(path: string, names: string[]): void {
  for (const name of names) {
    try {
      removeAttributeSync(path, name);
    } catch {
      // absent (ENODATA), or a file system without ACLs: nothing inherited to remove
    }
  }
}
