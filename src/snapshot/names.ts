import { isUtf8 } from 'node:buffer';
import { checkEntryName } from './exporter.js';

declare global {
  // ES2024, in Node 20 but not in the ES2022 library this project compiles against.
  interface String {
    isWellFormed(): boolean;
    toWellFormed(): string;
  }
}

/**
 * Names and symlink targets are bytes on Linux, and most but not all are
 * UTF-8 (a Latin-1 name from an old archive or a Samba share is not). In
 * memory each is a string: valid UTF-8 decodes as usual, and every byte
 * that is not part of a valid sequence becomes the lone surrogate
 * U+DC80..U+DCFF, as Python's "surrogateescape" does. Valid UTF-8 never
 * decodes to a lone surrogate, so the mapping is one to one and a name comes
 * back byte for byte, while paths are still joined and split as strings.
 * Only at the edges do the bytes matter: the file system and the tree's
 * wire form (exactForm), and the order of names (compareNames in tree.ts).
 */

const ESCAPE_BASE = 0xdc00;

/** Length of the valid UTF-8 sequence at `at` (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF), or 0. */
function sequenceLength(bytes: Uint8Array, at: number): number {
  const lead = bytes[at];
  if (lead < 0x80) return 1;
  const follows = (i: number, low = 0x80, high = 0xbf) => at + i < bytes.length && bytes[at + i] >= low && bytes[at + i] <= high;
  if (lead >= 0xc2 && lead <= 0xdf) return follows(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    const second = lead === 0xe0 ? follows(1, 0xa0) : lead === 0xed ? follows(1, 0x80, 0x9f) : follows(1);
    return second && follows(2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const second = lead === 0xf0 ? follows(1, 0x90) : lead === 0xf4 ? follows(1, 0x80, 0x8f) : follows(1);
    return second && follows(2) && follows(3) ? 4 : 0;
  }
  return 0;
}

/** A name's bytes as the string that stands for them (see above). */
export function nameFromBytes(bytes: Uint8Array): string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isUtf8(buffer)) return buffer.toString('utf8');
  let text = '';
  let run = 0;
  for (let at = 0; at < buffer.length; ) {
    const length = sequenceLength(buffer, at);
    if (length > 0) {
      at += length;
      continue;
    }
    text += buffer.toString('utf8', run, at) + String.fromCharCode(ESCAPE_BASE + buffer[at]);
    run = ++at;
  }
  return text + buffer.toString('utf8', run);
}

/** The bytes a name stands for: the inverse of nameFromBytes. */
export function nameToBytes(name: string): Buffer {
  if (name.isWellFormed()) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let run = 0;
  for (let at = 0; at < name.length; at++) {
    const unit = name.charCodeAt(at);
    if (unit >= 0xd800 && unit <= 0xdbff && at + 1 < name.length) {
      const next = name.charCodeAt(at + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        at++; // a pair: one character
        continue;
      }
    }
    if (unit < 0xdc80 || unit > 0xdcff) continue; // other lone surrogates cannot come from a name; UTF-8 makes them U+FFFD
    parts.push(Buffer.from(name.slice(run, at), 'utf8'), Buffer.of(unit - ESCAPE_BASE));
    run = at + 1;
  }
  parts.push(Buffer.from(name.slice(run), 'utf8'));
  return Buffer.concat(parts);
}

/**
 * A name or path as the file system calls and the tree's wire form take it:
 * the string itself, or its exact bytes when it is not UTF-8 text.
 */
export function exactForm(path: string): string | Buffer {
  return path.isWellFormed() ? path : nameToBytes(path);
}

/**
 * A name for people and for text protocols (terminal, JSON, FUSE): what is
 * not UTF-8 shows as U+FFFD, decoded the way Node decodes process.argv and
 * fuse-native the names the kernel sends, so the name typed back or looked
 * up through a mount is this same string; SnapshotReader.lookup accepts it.
 */
export function shownName(name: string): string {
  return name.isWellFormed() ? name : nameToBytes(name).toString('utf8');
}

/**
 * A name as a listing gives it (ls, locate), alone or in a path: itself,
 * or, for one no directory can hold ('', '.', '..', a '/' or a NUL in it,
 * which only a forged snapshot has), in double quotes with JSON's escapes,
 * as the warnings of restore and archive name it: `".."/escaped.txt` or
 * `"a/b"`, never a path that climbs out or goes down.
 */
export function listedName(name: string): string {
  return checkEntryName(name) === undefined ? name : JSON.stringify(name);
}
