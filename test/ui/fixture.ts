/**
 * What the viewer tests share: a source tree with every kind of content the
 * viewer treats differently, a store with two snapshots of it made by the
 * real CLI, and `kloset ui` running on loopback.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { setAttributeSync } from '@napi-rs/xattr';
import { expect } from 'vitest';
import { kloset, startKloset, tempDir, type CliResult } from '../helpers/cli.js';

export const HOSTILE = '<img src=x onerror=alert(1)>';
export const UNICODE = 'café ☕ "quoted" \\ été.txt';
/** A path longer than ustar's 100-byte name field: the tar writer needs pax or its prefix field. */
export const LONG_DIR = 'a-directory-with-a-rather-long-name-to-go-past-the-ustar-limits';
export const LONG_FILE = `${'long-file-name-'.repeat(6)}.txt`;
export const MANY = 2500;
export const PAST = new Date('2022-05-06T07:08:09Z');

/** A deterministic pseudo-random buffer (xorshift), so the same test data every run. */
export function pseudoRandom(size: number, seed = 0x9e3779b9): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i <= size - 4 ? i : size - 4);
  }
  return out;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Buffer): number {
  let c = 0xffffffff;
  for (const byte of data) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A small RGB PNG: a gradient with a diagonal band, so a screenshot shows it was decoded. */
export function makePng(width = 320, height = 180): Buffer {
  const rows: Buffer[] = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) {
      const band = Math.abs(x - y * (width / height)) < 10;
      row[1 + x * 3] = band ? 255 : Math.round((x / width) * 255);
      row[2 + x * 3] = band ? 255 : Math.round((y / height) * 200);
      row[3 + x * 3] = band ? 255 : 180;
    }
    rows.push(row);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(Buffer.concat(rows))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * /
 *   hello.txt                 text (changed in the second snapshot)
 *   README                    text without an extension
 *   data.bin                  binary without an extension (mtime changed in the second snapshot)
 *   big.bin                   5 MiB, several chunks
 *   image.png                 a real PNG
 *   doc.pdf, clip.mp4, song.mp3
 *   <img src=x onerror=alert(1)>
 *   café ☕ "quoted" \ été.txt
 *   link -> hello.txt
 *   notes/ readme.md (removed in the second), page.html, logo.svg
 *   many/ 2500 files f00000.txt… and directories d-one/, zz-last/ (unchanged)
 *   <LONG_DIR>/<LONG_FILE>
 */
export async function makeSource(root: string): Promise<{ xattrs: boolean }> {
  await fs.mkdir(path.join(root, 'notes'), { recursive: true });
  await fs.mkdir(path.join(root, 'many/d-one'), { recursive: true });
  await fs.mkdir(path.join(root, 'many/zz-last'), { recursive: true });
  await fs.mkdir(path.join(root, LONG_DIR));
  await fs.writeFile(path.join(root, 'hello.txt'), 'hello, kloset\nsecond line\n');
  await fs.writeFile(path.join(root, 'README'), 'A text file without an extension.\n');
  await fs.writeFile(path.join(root, 'data.bin'), Buffer.from([0, 1, 2, 3, 0, 255, 254, 0, 10, 13]));
  await fs.writeFile(path.join(root, 'big.bin'), pseudoRandom(5 * 1024 * 1024 + 123));
  await fs.writeFile(path.join(root, 'image.png'), makePng());
  await fs.writeFile(path.join(root, 'doc.pdf'), '%PDF-1.4\n% not a real document\n');
  await fs.writeFile(path.join(root, 'clip.mp4'), pseudoRandom(2048, 7));
  await fs.writeFile(path.join(root, 'song.mp3'), pseudoRandom(1024, 9));
  await fs.writeFile(path.join(root, HOSTILE), 'hostile name, harmless content\n');
  await fs.writeFile(path.join(root, UNICODE), 'unicode name\n');
  await fs.symlink('hello.txt', path.join(root, 'link'));
  await fs.writeFile(path.join(root, 'notes/readme.md'), '# Notes\n\nThese are *notes*.\n'.repeat(20));
  await fs.writeFile(path.join(root, 'notes/page.html'), '<html><body><script>alert(1)</script><b>bold</b></body></html>\n');
  await fs.writeFile(path.join(root, 'notes/logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>\n');
  await fs.writeFile(path.join(root, LONG_DIR, LONG_FILE), 'deep and long\n');
  for (let i = 0; i < MANY; i++) await fs.writeFile(path.join(root, 'many', `f${String(i).padStart(5, '0')}.txt`), `file ${i}\n`);
  await fs.writeFile(path.join(root, 'many/d-one/inside.txt'), 'inside\n');
  let xattrs = true;
  try {
    setAttributeSync(path.join(root, 'hello.txt'), 'user.kloset.note', Buffer.from('greeting'));
  } catch {
    xattrs = false; // a file system without user attributes
  }
  for (const rel of ['hello.txt', 'README', 'data.bin', 'image.png', 'notes/readme.md']) await fs.utimes(path.join(root, rel), PAST, PAST);
  return { xattrs };
}

/** Changes between the two snapshots. */
export async function changeSource(root: string): Promise<void> {
  await fs.writeFile(path.join(root, 'hello.txt'), 'hello again, kloset: changed\n');
  await fs.utimes(path.join(root, 'hello.txt'), PAST, new Date('2023-01-01T00:00:00Z'));
  await fs.rm(path.join(root, 'notes/readme.md'));
  await fs.writeFile(path.join(root, 'new.txt'), 'added later\n');
  await fs.utimes(path.join(root, 'data.bin'), PAST, new Date('2024-02-03T04:05:06Z'));
}

export interface RunningUi {
  /** The printed URL, with the token. */
  url: string;
  /** Its origin, the viewer's name of its own under .localhost: what a browser opens. */
  origin: string;
  /** The same server by its numeric address, for clients that do not resolve .localhost names as browsers do. */
  base: string;
  token: string;
  /** Sends Ctrl-C (SIGINT) and waits for the end. */
  stop(): Promise<CliResult>;
  /** Sends a signal without waiting. */
  signal(signal: NodeJS.Signals): void;
  /** What it printed so far. */
  output(): string;
  done: Promise<CliResult>;
}

/** `kloset at <store> ui --no-spawn` (or other arguments), until the URL is printed. */
export async function startUi(store: string, env: NodeJS.ProcessEnv, args: string[] = ['--no-spawn']): Promise<RunningUi> {
  const { child, done } = startKloset(['at', store, 'ui', ...args], { env });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kloset ui printed no URL: ${out}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const match = /(http:\/\/[a-z0-9.-]+:\d+\/\?token=[A-Za-z0-9_-]+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void done.then((r) => reject(new Error(`kloset ui exited ${r.code}: ${r.stderr}`)));
  });
  const parsed = new URL(url);
  return {
    url,
    origin: parsed.origin,
    base: `http://127.0.0.1:${parsed.port}`,
    token: parsed.searchParams.get('token')!,
    stop: async () => {
      child.kill('SIGINT');
      return done;
    },
    signal: (signal) => void child.kill(signal),
    output: () => out,
    done,
  };
}

export interface UiStore {
  work: string;
  source: string;
  store: string;
  env: NodeJS.ProcessEnv;
  /** Full ids, oldest first. */
  ids: [string, string];
  xattrs: boolean;
}

/** A store with two snapshots of the source (before and after changeSource). */
export async function makeUiStore(prefix: string): Promise<UiStore> {
  const work = await tempDir(prefix);
  const source = path.join(work, 'source');
  const store = path.join(work, 'store');
  const env = { XDG_CACHE_HOME: path.join(work, 'cache'), XDG_CONFIG_HOME: path.join(work, 'config') };
  await fs.mkdir(source);
  const { xattrs } = await makeSource(source);
  const run = async (args: string[]) => {
    const result = await kloset(args, { env });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    return result;
  };
  await run(['at', store, 'create']);
  await run(['at', store, 'backup', source, '--tag', 'first']);
  await changeSource(source);
  await run(['at', store, 'backup', source, '--tag', 'second']);
  const list = JSON.parse((await run(['at', store, 'ls', '--json'])).stdout) as { id: string }[];
  return { work, source, store, env, ids: [list[0].id, list[1].id], xattrs };
}
