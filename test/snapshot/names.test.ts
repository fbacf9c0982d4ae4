/**
 * Names are bytes: every byte string must come back from its in-memory
 * string unchanged, sort in byte order, and show the way Node itself
 * decodes a command line.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nameFromBytes, nameToBytes, exactForm, shownName } from '../../src/snapshot/names.js';
import { compareNames, decodePage, encodePage, type Entry } from '../../src/snapshot/tree.js';

/** Byte strings rich in the cases a decoder gets wrong: cut sequences, overlong forms, surrogates, bytes past U+10FFFF. */
function awkwardBytes(count: number): Buffer[] {
  const pieces = [
    [0xe9], [0xff], [0xc0, 0x80], [0xe2, 0x82], [0xe2, 0x82, 0xac], [0xed, 0xa0, 0x80], [0xed, 0x9f, 0xbf],
    [0xf4, 0x90, 0x80, 0x80], [0xf0, 0x9f, 0x98, 0x80], [0xf0, 0x9f, 0x98], [0xef, 0xbf, 0xbd], [0x61], [0x2e], [0x80],
  ];
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const parts: number[][] = [];
    const seed = randomBytes(8);
    for (const byte of seed) parts.push(byte % 3 === 0 ? [byte] : pieces[byte % pieces.length]);
    out.push(Buffer.from(parts.flat()));
  }
  return out;
}

describe('names as bytes', () => {
  it('come back byte for byte from their strings, and valid UTF-8 stays the plain string', () => {
    for (const bytes of [...awkwardBytes(2000), ...Array.from({ length: 500 }, () => randomBytes(1 + (randomBytes(1)[0] % 40)))]) {
      const name = nameFromBytes(bytes);
      expect(nameToBytes(name).equals(bytes)).toBe(true);
      if (Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes)) expect(name).toBe(bytes.toString('utf8'));
      else expect(name.isWellFormed()).toBe(false);
    }
  });

  it('escape each byte outside a valid sequence on its own', () => {
    expect(nameFromBytes(Buffer.from('caf\xe9', 'latin1'))).toBe('caf\udce9');
    expect(nameFromBytes(Buffer.from([0xe2, 0x82, 0x41]))).toBe('\udce2\udc82A');
    // An encoded surrogate is not UTF-8: it must not turn into the lone surrogate a name may hold.
    expect(nameFromBytes(Buffer.from([0xed, 0xb3, 0xa9]))).toBe('\udced\udcb3\udca9');
  });

  it('sort in the order of their bytes', () => {
    const all = awkwardBytes(300);
    const byBytes = [...all].sort(Buffer.compare).map((b) => b.toString('hex'));
    const byNames = all.map(nameFromBytes).sort(compareNames).map((n) => nameToBytes(n).toString('hex'));
    expect(byNames).toEqual(byBytes);
  });

  it('show as Node decodes them, and reach the file system as their bytes', () => {
    for (const bytes of awkwardBytes(300)) {
      const name = nameFromBytes(bytes);
      expect(shownName(name)).toBe(bytes.toString('utf8'));
      const at = exactForm(`/dir/${name}`);
      expect(Buffer.isBuffer(at) ? at.equals(Buffer.concat([Buffer.from('/dir/'), bytes])) : at === `/dir/${name}`).toBe(true);
    }
  });

  it('keep their bytes through a tree page: names and link targets', () => {
    const entry = (name: string, target?: string): Entry => ({
      name,
      kind: target === undefined ? 'file' : 'symlink',
      mode: 0o100644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: { sec: 1, nsec: 2 },
      ...(target === undefined ? {} : { target }),
    });
    const names = awkwardBytes(50).map(nameFromBytes).sort(compareNames);
    const page = names.map((name, i) => entry(name, i % 2 === 0 ? names[names.length - 1 - i] : undefined));
    const back = decodePage(encodePage(page));
    expect(back.map((e) => [e.name, e.target])).toEqual(page.map((e) => [e.name, e.target]));
  });
});
