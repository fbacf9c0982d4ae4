/**
 * A streaming POSIX tar writer (ustar headers, pax extended headers where
 * ustar cannot hold a value): a directory of a snapshot leaves as a tar
 * stream, one file's chunks after another, never assembled in memory.
 *
 * A pax header ('x') precedes an entry whose path or link target is not
 * ASCII or does not fit the ustar fields, whose user or group name is not
 * ASCII or is longer than 32 bytes, whose size, uid or gid overflows
 * its octal field, whose mtime has nanoseconds, or that has extended
 * attributes (as GNU tar --xattrs --acls writes them). Symlinks, FIFOs and
 * devices are written; sockets and names that could not be extracted
 * safely ('..', '/' inside a name) are left out.
 */
import { checkEntryName } from '../../snapshot/exporter.js';
import { KlosetError } from '../../errors.js';
import { nameToBytes, shownName } from '../../snapshot/names.js';
import type { SnapshotReader } from '../../snapshot/reader.js';
import { isBlockDevice, type Entry } from '../../snapshot/tree.js';

const BLOCK = 512;
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

type TypeFlag = '0' | '2' | '3' | '4' | '5' | '6' | 'x';

interface HeaderFields {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: TypeFlag;
  linkname?: string;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer>;
  /** The path's bytes when they are not UTF-8: a pax record holds them as they are, as GNU tar writes them. */
  pathBytes?: Buffer;
  /** The same for a link target. */
  linkBytes?: Buffer;
}

const isAscii = (s: string) => /^[\x01-\x7f]*$/.test(s);
/**
 * A user or group name the ustar field holds whole. One cut to 32 bytes could name another
 * account to a reader that ignores pax: it goes in a pax record only, and such a reader takes the id.
 */
const fitsName = (s: string) => isAscii(s) && s.length <= 32;

function writeString(block: Buffer, offset: number, length: number, value: string): void {
  block.write(value, offset, length, 'utf8');
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  writeString(block, offset, length, Math.floor(value).toString(8).padStart(length - 1, '0') + '\0');
}

/** ustar's name/prefix split: prefix (≤155 bytes) '/' name (≤100 bytes), or undefined. */
function splitPath(path: string): { name: string; prefix: string } | undefined {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: '' };
  for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name !== '') return { name, prefix };
  }
  return undefined;
}

function ustarHeader(f: HeaderFields, split: { name: string; prefix: string }): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, 0, 100, split.name);
  writeOctal(block, 100, 8, f.mode & 0o7777);
  writeOctal(block, 108, 8, Math.min(f.uid, MAX_OCTAL_7));
  writeOctal(block, 116, 8, Math.min(f.gid, MAX_OCTAL_7));
  writeOctal(block, 124, 12, Math.min(f.size, MAX_OCTAL_11));
  writeOctal(block, 136, 12, Math.min(Math.max(0, f.mtime), MAX_OCTAL_11));
  block.fill(0x20, 148, 156); // checksum counted as spaces
  writeString(block, 156, 1, f.type);
  if (f.linkname) writeString(block, 157, 100, f.linkname);
  writeString(block, 257, 6, 'ustar\0');
  writeString(block, 263, 2, '00');
  if (f.uname && fitsName(f.uname)) writeString(block, 265, 32, f.uname);
  if (f.gname && fitsName(f.gname)) writeString(block, 297, 32, f.gname);
  writeOctal(block, 329, 8, f.devmajor ?? 0);
  writeOctal(block, 337, 8, f.devminor ?? 0);
  writeString(block, 345, 155, split.prefix);
  let sum = 0;
  for (const byte of block) sum += byte;
  writeString(block, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return block;
}

/** One pax record: "<length> <key>=<value>\n", the length counting itself; a value may be bytes (an attribute's). */
function paxRecord(key: string, value: string | Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), typeof value === 'string' ? Buffer.from(value, 'utf8') : value, NEWLINE]);
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length = String(length).length + body.length;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

const NEWLINE = Buffer.from('\n');
const ACL_KEYS: Record<string, string> = { 'system.posix_acl_access': 'SCHILY.acl.access', 'system.posix_acl_default': 'SCHILY.acl.default' };
const ACL_TAGS: Record<number, (id: number) => string> = {
  1: () => 'user::',
  2: (id) => `user:${id}:`,
  4: () => 'group::',
  8: (id) => `group:${id}:`,
  16: () => 'mask::',
  32: () => 'other::',
};

/** A POSIX ACL as the kernel keeps it (version 2, then tag, permissions and id per entry) in acl_to_text's long form. */
function aclText(acl: Buffer): string | undefined {
  if (acl.length < 4 || acl.readUInt32LE(0) !== 2 || (acl.length - 4) % 8 !== 0) return undefined;
  let text = '';
  for (let at = 4; at < acl.length; at += 8) {
    const tag = ACL_TAGS[acl.readUInt16LE(at)];
    if (!tag) return undefined;
    const perm = acl.readUInt16LE(at + 2);
    text += `${tag(acl.readUInt32LE(at + 4))}${perm & 4 ? 'r' : '-'}${perm & 2 ? 'w' : '-'}${perm & 1 ? 'x' : '-'}\n`;
  }
  return text;
}

/**
 * Extended attributes as GNU tar --xattrs writes them, each as SCHILY.xattr.<name> with its bytes, and
 * ACLs also as text (SCHILY.acl.access, .default) for tar --acls and star.
 */
function xattrRecords(xattrs: Record<string, Buffer>): Buffer[] {
  const records: Buffer[] = [];
  for (const [name, value] of Object.entries(xattrs)) {
    const acl = ACL_KEYS[name] !== undefined ? aclText(value) : undefined;
    if (acl !== undefined) records.push(paxRecord(ACL_KEYS[name], acl));
    // As GNU tar: '%' and '=' in the name percent-encoded, or the record's key would end at that '='.
    records.push(paxRecord(`SCHILY.xattr.${name.replace(/%/g, '%25').replace(/=/g, '%3D')}`, value));
  }
  return records;
}

function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return rest === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - rest);
}

/** The header blocks of one member: a pax header first when ustar cannot hold it all. */
export function tarHeader(f: HeaderFields, mtimeNsec = 0): Buffer {
  const records: Buffer[] = [];
  let split = isAscii(f.path) && !f.pathBytes ? splitPath(f.path) : undefined;
  if (!split) {
    records.push(paxRecord('path', f.pathBytes ?? f.path));
    split = { name: asciiStub(f.path, 100), prefix: '' };
  }
  let linkname = f.linkname;
  if (linkname !== undefined && (!isAscii(linkname) || Buffer.byteLength(linkname) > 100 || f.linkBytes)) {
    records.push(paxRecord('linkpath', f.linkBytes ?? linkname));
    linkname = asciiStub(linkname, 100);
  }
  if (f.size > MAX_OCTAL_11) records.push(paxRecord('size', String(f.size)));
  if (f.uid > MAX_OCTAL_7) records.push(paxRecord('uid', String(f.uid)));
  if (f.gid > MAX_OCTAL_7) records.push(paxRecord('gid', String(f.gid)));
  if (f.uname && !fitsName(f.uname)) records.push(paxRecord('uname', f.uname));
  if (f.gname && !fitsName(f.gname)) records.push(paxRecord('gname', f.gname));
  if (mtimeNsec > 0 || f.mtime < 0 || f.mtime > MAX_OCTAL_11) {
    const sign = f.mtime < 0 && mtimeNsec > 0 ? '-' : '';
    const sec = f.mtime < 0 && mtimeNsec > 0 ? -(f.mtime + 1) : f.mtime;
    const nsec = f.mtime < 0 && mtimeNsec > 0 ? 1e9 - mtimeNsec : mtimeNsec;
    records.push(paxRecord('mtime', `${sign}${sec}${nsec ? '.' + String(nsec).padStart(9, '0') : ''}`));
  }
  if (f.xattrs) records.push(...xattrRecords(f.xattrs));
  const main = ustarHeader({ ...f, linkname }, split);
  if (records.length === 0) return main;
  const pax = Buffer.concat(records);
  const paxName = asciiStub(`PaxHeaders/${f.path.split('/').filter(Boolean).pop() ?? 'entry'}`, 100);
  const paxHeader = ustarHeader({ path: paxName, mode: 0o644, uid: 0, gid: 0, size: pax.length, mtime: Math.max(0, f.mtime), type: 'x' }, { name: paxName, prefix: '' });
  return Buffer.concat([paxHeader, pax, padding(pax.length), main]);
}

/** A printable ASCII stand-in for a name, for readers that ignore pax headers. */
function asciiStub(value: string, max: number): string {
  let out = value.replace(/[^\x20-\x7e]/g, '_');
  while (Buffer.byteLength(out) > max) out = out.slice(Math.floor(out.length / 2) + 1);
  return out;
}

/**
 * Names that are not UTF-8 go in the ustar fields as the viewer shows them
 * (shownName), and byte for byte in the pax record, as GNU tar and Go's
 * archive/tar (restic dump) write them: the name extracted is the name backed up.
 */
function memberFields(exactPath: string, e: Entry): HeaderFields | undefined {
  const path = shownName(exactPath);
  const bytes = (name: string) => (name.isWellFormed() ? undefined : nameToBytes(name));
  const pathBytes = bytes(exactPath);
  const base = { path, pathBytes, mode: e.mode, uid: e.uid, gid: e.gid, size: 0, mtime: e.mtime.sec, uname: e.user, gname: e.group, xattrs: e.xattrs };
  switch (e.kind) {
    case 'directory':
      return {
        ...base,
        path: path.endsWith('/') ? path : `${path}/`,
        pathBytes: pathBytes && Buffer.concat([pathBytes, Buffer.from('/')]),
        type: '5',
      };
    case 'file':
      return { ...base, size: e.size, type: '0' };
    case 'symlink':
      return { ...base, type: '2', linkname: shownName(e.target ?? ''), linkBytes: bytes(e.target ?? '') };
    case 'fifo':
      return { ...base, type: '6' };
    case 'device': {
      const rdev = e.rdev ?? 0;
      return {
        ...base,
        type: isBlockDevice(e) ? '4' : '3',
        devmajor: Math.floor(rdev / 256) & 0xfff,
        devminor: (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00),
      };
    }
    default:
      return undefined; // sockets have no tar form
  }
}

/** Why a member is left out: the format has no form for it (a socket), or its name could not be extracted safely. */
export type SkipCause = 'format' | 'name';

export interface TarOptions {
  /** Members left out (sockets, unsafe names), with why. */
  onSkip?: (path: string, reason: string, cause: SkipCause) => void;
  /** Each file whose content is written whole. */
  onFile?: (path: string, size: number) => void;
}

/** A file whose content could not be read, named: the store's error names only a blob and a pack. */
export function unreadableMember(path: string, err: unknown): unknown {
  return err instanceof KlosetError ? new KlosetError(`${shownName(path)}: ${err.message}`, { exitCode: err.exitCode, cause: err }) : err;
}

/** A member's path below its directory's; the root named '' has no member of its own. */
export function memberPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** Files up to this size are fetched ahead of their turn, up to LOOKAHEAD of them per directory. */
const SMALL_FILE = 256 * 1024;
const LOOKAHEAD = 16;

/**
 * The tar stream of `entry` (a directory and all below it, or one file),
 * its members named below `rootName`; a directory given the root name ''
 * has no member of its own, and its children are named from the top. Small files coming next in a
 * directory are fetched while earlier ones are written, so a directory of
 * many small files does not wait for one read per file in turn (a round
 * trip each on a remote store). A file whose content cannot be read ends
 * the stream with the error, so a damaged archive never looks whole.
 */
export async function* tarStream(reader: SnapshotReader, entry: Entry, rootName: string, options: TarOptions = {}): AsyncGenerator<Buffer> {
  const fetchSmall = (e: Entry): Promise<Buffer> | undefined => {
    if (e.kind !== 'file' || e.size > SMALL_FILE || checkEntryName(e.name)) return undefined;
    const fetching = reader.openFile(e).then((content) => content.read(0, content.size));
    fetching.catch(() => undefined); // awaited in its turn
    return fetching;
  };

  async function* member(path: string, e: Entry, prefetched?: Promise<Buffer>): AsyncGenerator<Buffer> {
    const fields = path === '' && e.kind === 'directory' ? undefined : memberFields(path, e);
    if (!fields && path !== '') {
      options.onSkip?.(path, `${e.kind} not representable in tar`, 'format');
      return;
    }
    if (e.kind === 'file' && fields) {
      let written = 0;
      try {
        const parts: AsyncIterable<Buffer> | Buffer[] = prefetched ? [await prefetched] : (await reader.openFile(e)).stream();
        yield tarHeader(fields, e.mtime.nsec);
        for await (const data of parts) {
          written += data.length;
          yield data;
        }
      } catch (err) {
        throw unreadableMember(path, err);
      }
      if (written !== e.size) throw new KlosetError(`${path}: content is ${written} bytes, the entry says ${e.size}`);
      const pad = padding(e.size);
      if (pad.length) yield pad;
      options.onFile?.(path, e.size);
      return;
    }
    if (fields) yield tarHeader(fields, e.mtime.nsec);
    if (e.kind !== 'directory') return;
    const children = reader.children(e)[Symbol.asyncIterator]();
    const queue: { child: Entry; prefetched?: Promise<Buffer> }[] = [];
    let exhausted = false;
    for (;;) {
      while (!exhausted && queue.length < LOOKAHEAD) {
        const next = await children.next();
        if (next.done) exhausted = true;
        else queue.push({ child: next.value, prefetched: fetchSmall(next.value) });
      }
      const item = queue.shift();
      if (!item) break;
      const childPath = memberPath(path, item.child.name);
      const problem = checkEntryName(item.child.name);
      if (problem) {
        options.onSkip?.(childPath, problem, 'name');
        continue;
      }
      yield* member(childPath, item.child, item.prefetched);
    }
  }
  yield* member(rootName, entry);
  yield Buffer.alloc(BLOCK * 2);
}
