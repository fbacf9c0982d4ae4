/**
 * The viewer's HTTP API, against `kloset ui` running on loopback over a
 * store made with the CLI: the token, the security headers, listings,
 * metadata, content with ranges, archives, diffs and restores.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kloset } from '../helpers/cli.js';
import { HOSTILE, LONG_DIR, LONG_FILE, MANY, UNICODE, makeUiStore, sha256, startUi, type RunningUi, type UiStore } from './fixture.js';

const run = promisify(execFile);

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json: <T = any>() => T;
}

let fixture: UiStore;
let ui: RunningUi;

function request(target: string, options: { method?: string; headers?: Record<string, string>; body?: string; auth?: boolean } = {}): Promise<Reply> {
  const url = new URL(target, ui.base);
  const headers: Record<string, string> = { ...(options.auth === false ? {} : { Authorization: `Bearer ${ui.token}` }), ...options.headers };
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(parts);
        const text = body.toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, body, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const get = (target: string, headers: Record<string, string> = {}) => request(target, { headers });
const snap = (n: 0 | 1) => `/api/snapshots/${fixture.ids[n]}`;
const q = (p: string) => encodeURIComponent(p);
const sourceFile = (rel: string) => fs.readFile(path.join(fixture.source, rel));

beforeAll(async () => {
  fixture = await makeUiStore('kloset-ui-api-');
  ui = await startUi(fixture.store, fixture.env);
});

afterAll(async () => {
  const result = await ui?.stop();
  // Ctrl-C stops the server cleanly, and no request made it log a server-side error.
  expect(result?.code).toBe(0);
  expect(result?.stderr).toBe('');
  expect(result?.stdout).toMatch(/kloset ui: stopped\n$/);
  if (fixture) await fs.rm(fixture.work, { recursive: true, force: true });
});

describe('the token', () => {
  it('is required on every request, pages, scripts and API alike', async () => {
    for (const target of ['/', '/assets/app.js', '/api/snapshots', `${snap(0)}/content?path=/hello.txt`]) {
      const reply = await request(target, { auth: false });
      expect(reply.status, target).toBe(401);
      expect(reply.headers['www-authenticate'], target).toBe('Bearer realm="kloset"');
      expect(reply.text).not.toContain('hello');
    }
  });

  it('is refused when wrong, in the query, a cookie or a bearer header', async () => {
    const wrong = `${ui.token.slice(0, -1)}${ui.token.endsWith('A') ? 'B' : 'A'}`;
    expect((await request(`/api/snapshots?token=${wrong}`, { auth: false })).status).toBe(401);
    expect((await request('/api/snapshots', { auth: false, headers: { Cookie: `kloset_ui_${new URL(ui.base).port}=${wrong}` } })).status).toBe(401);
    expect((await request('/api/snapshots', { auth: false, headers: { Authorization: `Bearer ${wrong}` } })).status).toBe(401);
    expect((await request('/api/snapshots', { auth: false, headers: { Authorization: 'Bearer ' } })).status).toBe(401);
  });

  it('in the printed URL is exchanged for an HttpOnly SameSite=Strict cookie and dropped from the address', async () => {
    // As a browser sends it: to the printed address, a name of this viewer's own.
    const host = { Host: new URL(ui.url).host };
    expect(new URL(ui.url).hostname).toMatch(/^kloset-[0-9a-f]{16}\.localhost$/);
    const first = await request(new URL(ui.url).pathname + new URL(ui.url).search, { auth: false, headers: host });
    // A page that refreshes itself to the address without the token (see the browser's test of the private redirect file).
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toMatch(/^text\/html/);
    expect(first.text).toContain('<meta http-equiv="refresh" content="0;url=/">');
    expect(first.text).not.toContain(ui.token);
    const cookie = first.headers['set-cookie']![0];
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const pair = cookie.split(';')[0];
    const page = await request('/', { auth: false, headers: { ...host, Cookie: pair } });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect((await request('/api/snapshots', { auth: false, headers: { ...host, Cookie: `other=1; ${pair}` } })).status).toBe(200);
    // A cookie of the same name set by another local server, sent first, does not lock the user out.
    const decoy = `${pair.slice(0, pair.indexOf('='))}=decoy`;
    expect((await request('/api/snapshots', { auth: false, headers: { ...host, Cookie: `${decoy}; ${pair}` } })).status).toBe(200);
    expect((await request('/api/snapshots', { auth: false, headers: { ...host, Cookie: decoy } })).status).toBe(401);
  });

  it('sends the browser on to a path of this server only, whatever dot segments the URL holds', async () => {
    const token = new URL(ui.url).searchParams.get('token')!;
    const base = new URL(ui.base);
    // Sent as written, as `curl --path-as-is` does: a URL object would resolve the dot segments first.
    const location = await new Promise<string | undefined>((resolve, reject) => {
      const req = http.request({ host: base.hostname, port: base.port, path: `/a/..//attacker.example/x?token=${token}` }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(res.statusCode === 200 ? /http-equiv="refresh" content="0;url=([^"]*)"/.exec(body)?.[1] : `status ${res.statusCode}`));
      });
      req.on('error', reject);
      req.end();
    });
    expect(location).toBe('/attacker.example/x');
  });

  it('answers a request target no URL parser takes with 400, logging nothing', async () => {
    const base = new URL(ui.base);
    // As a page of any site can send it: fetch('http://127.0.0.1:PORT//[').
    const reply = await new Promise<{ status?: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: base.hostname, port: base.port, path: '//[' }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(reply.status).toBe(400);
    expect(reply.body).toMatch(/malformed/);
    // The server's stderr stays empty: afterAll checks it.
  });

  it('does not make a request from another host name (DNS rebinding) acceptable', async () => {
    const reply = await get('/api/snapshots', { Host: `attacker.example:${new URL(ui.base).port}` });
    expect(reply.status).toBe(403);
  });

  it('refuses API requests a browser says come from another site or another port of this one', async () => {
    const archive = `${snap(0)}/archive?path=${q('/')}&format=tar`;
    for (const site of ['same-site', 'cross-site']) {
      const reply = await get(archive, { 'Sec-Fetch-Site': site });
      expect(reply.status, site).toBe(403);
    }
    expect((await get(`/api/diff?a=${fixture.ids[0]}&b=${fixture.ids[1]}`, { 'Sec-Fetch-Site': 'same-site' })).status).toBe(403);
    // The viewer's own pages, and the printed address opened from a terminal.
    for (const site of ['same-origin', 'none']) expect((await get(archive, { 'Sec-Fetch-Site': site })).status, site).toBe(200);
  });

  it('does not let another origin post a restore', async () => {
    const reply = await request('/api/restore', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Origin: 'http://attacker.example' },
      body: JSON.stringify({ snapshot: fixture.ids[0], path: '/hello.txt', destination: path.join(fixture.work, 'nope') }),
    });
    expect(reply.status).toBe(403);
    await expect(fs.stat(path.join(fixture.work, 'nope'))).rejects.toThrow();
  });
});

describe('the server', () => {
  it('refuses to listen on an address other than loopback', async () => {
    const result = await kloset(['at', fixture.store, 'ui', '--no-spawn', '--addr', '0.0.0.0:0'], { env: fixture.env });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/loopback only/);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('prints a name of its own when told to listen on localhost, so other local servers do not get its cookie', async () => {
    const named = await startUi(fixture.store, fixture.env, ['--no-spawn', '--addr', 'localhost:0']);
    try {
      expect(new URL(named.url).hostname).toMatch(/^kloset-[0-9a-f]{16}\.localhost$/);
      // Served under that name, reached where localhost leads.
      const status = await new Promise<number | undefined>((resolve, reject) => {
        const req = http.get(
          { host: 'localhost', port: new URL(named.url).port, path: '/api/snapshots', headers: { Host: new URL(named.url).host, Authorization: `Bearer ${named.token}` } },
          (res) => {
            res.resume();
            resolve(res.statusCode);
          },
        );
        req.on('error', reject);
      });
      expect(status).toBe(200);
    } finally {
      expect(await named.stop()).toMatchObject({ code: 0 });
    }
  });

  it('opens a browser through a private redirect file, keeping the token off command lines', async () => {
    const bin = path.join(fixture.work, 'fake-bin');
    const log = path.join(fixture.work, 'xdg-open.log');
    await fs.mkdir(bin, { recursive: true });
    await fs.writeFile(path.join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s\\n' "$@" > ${log}.args\ncat "$1" > ${log}.file\nstat -c %a "$1" > ${log}.mode\n`, { mode: 0o755 });
    const spawned = await startUi(fixture.store, { ...fixture.env, DISPLAY: ':99', PATH: `${bin}:${process.env.PATH}` }, []);
    try {
      await expect.poll(() => fs.readFile(`${log}.mode`, 'utf8').catch(() => ''), { timeout: 10_000 }).toBe('600\n');
      const args = await fs.readFile(`${log}.args`, 'utf8');
      expect(args).not.toContain(spawned.token);
      expect(args.trim()).toMatch(/open\.html$/);
      expect(await fs.readFile(`${log}.file`, 'utf8')).toContain(`url=${spawned.url}`);
    } finally {
      expect(await spawned.stop()).toMatchObject({ code: 0 });
    }
  });

  it('holds a shared lock while it serves: prune is refused, a second viewer is not, and each releases its own', async () => {
    const locks = () => fs.readdir(path.join(fixture.store, 'locks'));
    expect(await locks()).toHaveLength(1);
    const refused = await kloset(['at', fixture.store, 'prune', '-n'], { env: fixture.env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^kloset: store is in use by the viewer \(pid \d+ on .* since .*\): try again once it has ended\n$/);
    const second = await startUi(fixture.store, fixture.env);
    expect(await locks()).toHaveLength(2);
    expect(await second.stop()).toMatchObject({ code: 0 });
    expect(await locks()).toHaveLength(1);
  });

  it('sends a content security policy without inline script, nosniff and no referrer', async () => {
    const page = await get('/');
    const csp = page.headers['content-security-policy'] as string;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    // Every script of the page is a file of this server.
    const scripts = [...page.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/src="\/assets\/[a-z]+\.js"/);
      expect(body.trim()).toBe('');
    }
    expect(page.text).not.toMatch(/https?:\/\//); // nothing from a CDN
    const script = await get('/assets/app.js');
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toMatch(/^text\/javascript/);
  });

  it('answers unknown paths with 404 and wrong methods with 405', async () => {
    expect((await get('/api/nothing')).status).toBe(404);
    expect((await get('/assets/../../package.json')).status).toBe(404);
    expect((await get('/etc/passwd')).status).toBe(404);
    const wrong = await request('/api/snapshots', { method: 'DELETE' });
    expect(wrong.status).toBe(405);
  });

  it('answers HEAD on what answers JSON with the headers of GET and no body', async () => {
    const full = await get('/api/snapshots');
    const head = await request('/api/snapshots', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers['content-type']).toBe(full.headers['content-type']);
    expect(head.headers['content-length']).toBe(full.headers['content-length']);
    expect(head.body.length).toBe(0);
  });
});

describe('GET /api/snapshots', () => {
  it('lists the snapshots newest first with the store totals of kloset info', async () => {
    const reply = await get('/api/snapshots');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toMatch(/^application\/json/);
    const { store, snapshots } = reply.json();
    expect(snapshots.map((s: { id: string }) => s.id)).toEqual([fixture.ids[1], fixture.ids[0]]);
    expect(snapshots[0]).toMatchObject({ source: fixture.source, tags: ['second'], short_id: fixture.ids[1].slice(0, 8) });
    expect(snapshots[1].files).toBeGreaterThan(MANY);
    const info = JSON.parse((await kloset(['at', fixture.store, 'info', '--json'], { env: fixture.env })).stdout);
    for (const key of ['snapshots', 'logical_size', 'unique_size', 'stored_size', 'dedup_ratio', 'compression_ratio', 'blobs', 'packs']) {
      expect(store[key], key).toBe(info[key]);
    }
    expect(store.dedup_ratio).toBeGreaterThan(1.5); // the second snapshot shares almost everything
  });
});

describe('GET /api/snapshots/:id/tree', () => {
  it('lists a directory with directories first, then by name', async () => {
    const reply = await get(`${snap(1)}/tree?path=/`);
    const page = reply.json();
    const names = page.entries.map((e: { name: string }) => e.name);
    expect(names.slice(0, 3)).toEqual([LONG_DIR, 'many', 'notes']);
    const files = names.slice(3);
    expect(files).toEqual([...files].sort((a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    expect(files).toContain(HOSTILE);
    expect(page.total).toBe(names.length);
    const link = page.entries.find((e: { name: string }) => e.name === 'link');
    expect(link).toMatchObject({ type: 'symlink', target: 'hello.txt', path: '/link' });
  });

  it('pages a large directory by offset and limit, directories first across pages', async () => {
    const total = MANY + 2;
    const seen: string[] = [];
    for (let offset = 0; offset < total; offset += 700) {
      const page = (await get(`${snap(1)}/tree?path=/many&offset=${offset}&limit=700`)).json();
      expect(page.total).toBe(total);
      seen.push(...page.entries.map((e: { name: string }) => e.name));
    }
    expect(seen).toHaveLength(total);
    expect(seen.slice(0, 2)).toEqual(['d-one', 'zz-last']);
    expect(seen[2]).toBe('f00000.txt');
    expect(seen[total - 1]).toBe(`f${String(MANY - 1).padStart(5, '0')}.txt`);
    expect(new Set(seen).size).toBe(total);
    const capped = (await get(`${snap(1)}/tree?path=/many&limit=5000`)).json();
    expect(capped.entries).toHaveLength(1000);
    const beyond = (await get(`${snap(1)}/tree?path=/many&offset=9999`)).json();
    expect(beyond.entries).toEqual([]);
  });

  it('refuses a file, a missing directory and malformed parameters', async () => {
    expect((await get(`${snap(1)}/tree?path=/hello.txt`)).status).toBe(400);
    expect((await get(`${snap(1)}/tree?path=/missing`)).status).toBe(404);
    expect((await get(`${snap(1)}/tree?path=/&offset=-1`)).status).toBe(400);
    expect((await get(`/api/snapshots/nothex/tree`)).status).toBe(400);
    expect((await get(`/api/snapshots/${'0'.repeat(64)}/tree`)).status).toBe(404);
  });

  it('finds a snapshot by a short id prefix', async () => {
    const page = (await get(`/api/snapshots/${fixture.ids[0].slice(0, 8)}/tree?path=/notes`)).json();
    expect(page.entries.map((e: { name: string }) => e.name)).toEqual(['logo.svg', 'page.html', 'readme.md']);
    expect(page.snapshot).toBe(fixture.ids[0]);
  });
});

describe('names from a snapshot', () => {
  it('are data in JSON: intact when parsed, no markup in the raw body', async () => {
    const reply = await get(`${snap(1)}/tree?path=/`);
    expect(reply.text).not.toContain('<img');
    expect(reply.text).toContain('\\u003cimg src=x onerror=alert(1)\\u003e');
    expect(reply.json().entries.map((e: { name: string }) => e.name)).toContain(HOSTILE);
    const entry = await get(`${snap(1)}/entry?path=${q('/' + HOSTILE)}`);
    expect(entry.json().name).toBe(HOSTILE);
    expect(entry.text).not.toContain('<');
  });

  it('are quoted safely in Content-Disposition, with the UTF-8 name in filename*', async () => {
    const hostile = await get(`${snap(1)}/content?path=${q('/' + HOSTILE)}&download=1`);
    expect(hostile.headers['content-disposition']).toBe(
      `attachment; filename="<img src=x onerror=alert(1)>"; filename*=UTF-8''%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E`,
    );
    const unicode = await get(`${snap(1)}/content?path=${q('/' + UNICODE)}&download=1`);
    const disposition = unicode.headers['content-disposition'] as string;
    expect(disposition).toMatch(/^attachment; filename="caf_ _ _quoted_ _ _t_.txt"; filename\*=UTF-8''/);
    expect(decodeURIComponent(disposition.split("UTF-8''")[1])).toBe(UNICODE);
    expect(unicode.body.toString()).toBe('unicode name\n');
  });
});

describe('paths', () => {
  it('never leave the snapshot, whatever their dots and encodings', async () => {
    const attempts = [
      '../../../../etc/passwd',
      '/notes/../../etc/passwd',
      '/..',
      '..%2f..%2fetc%2fpasswd',
      '%2e%2e/%2e%2e/etc/passwd',
      '/notes/%2E%2E/hello.txt',
    ];
    for (const attempt of attempts) {
      for (const api of ['content', 'entry', 'tree', 'archive']) {
        // As the query value, '..' is refused outright.
        const raw = await get(`${snap(1)}/${api}?path=${attempt}`);
        expect(raw.status, `${api} ${attempt}`).toBe(400);
        expect(raw.text).not.toContain('root:');
        // Encoded once more, the dots and slashes are literal characters of a name no snapshot has.
        const literal = await get(`${snap(1)}/${api}?path=${q(attempt)}`);
        expect([400, 404], `${api} ${q(attempt)}`).toContain(literal.status);
        expect(literal.text).not.toContain('root:');
      }
    }
  });

  it('that exist on this machine but not in the snapshot are not found', async () => {
    for (const p of ['/etc/passwd', fixture.source + '/hello.txt', '/proc/self/environ']) {
      const reply = await get(`${snap(1)}/content?path=${q(p)}`);
      expect(reply.status).toBe(404);
      expect(reply.json().error).toMatch(/no such file or directory/);
    }
    expect((await get(`${snap(1)}/content?path=${q('/hello.txt\0')}`)).status).toBe(400);
    expect((await get(`${snap(1)}/content?path=/a&path=/b`)).status).toBe(400);
  });
});

describe('GET /api/snapshots/:id/entry', () => {
  it('gives every recorded field of a file, with its extended attributes', async () => {
    const entry = (await get(`${snap(0)}/entry?path=/hello.txt`)).json();
    const stat = await fs.lstat(path.join(fixture.source, 'README'));
    expect(entry).toMatchObject({
      name: 'hello.txt',
      path: '/hello.txt',
      type: 'file',
      size: 'hello, kloset\nsecond line\n'.length,
      uid: stat.uid,
      gid: stat.gid,
      mtime: '2022-05-06T07:08:09.000Z',
      preview: 'text',
      content_type: 'text/plain; charset=utf-8',
      chunks: 1,
    });
    expect(entry.mode_octal).toMatch(/^0[0-7]{3}$/);
    expect(typeof entry.ino).toBe('number');
    if (fixture.xattrs) expect(entry.xattrs).toEqual([{ name: 'user.kloset.note', size: 8, text: 'greeting', base64: Buffer.from('greeting').toString('base64') }]);
  });

  it('gives a directory its totals and the root its own entry', async () => {
    const many = (await get(`${snap(0)}/entry?path=/many`)).json();
    expect(many).toMatchObject({ type: 'directory', files: MANY + 1, directories: 2 });
    const root = (await get(`${snap(0)}/entry?path=/`)).json();
    expect(root).toMatchObject({ type: 'directory', path: '/' });
  });

  it('tells how each kind of file is previewed', async () => {
    const kinds: Record<string, string> = {
      '/hello.txt': 'text',
      '/README': 'text',
      '/notes/page.html': 'text',
      '/notes/logo.svg': 'text',
      '/image.png': 'image',
      '/doc.pdf': 'pdf',
      '/clip.mp4': 'video',
      '/song.mp3': 'audio',
      '/data.bin': 'none',
      '/big.bin': 'none',
    };
    for (const [p, kind] of Object.entries(kinds)) expect((await get(`${snap(1)}/entry?path=${q(p)}`)).json().preview, p).toBe(kind);
  });
});

describe('GET /api/snapshots/:id/content', () => {
  it('serves a whole file byte for byte, with Accept-Ranges', async () => {
    const reply = await get(`${snap(1)}/content?path=/big.bin`);
    expect(reply.status).toBe(200);
    expect(reply.headers['accept-ranges']).toBe('bytes');
    expect(reply.headers['content-type']).toBe('application/octet-stream');
    expect(reply.headers['content-disposition']).toMatch(/^attachment;/);
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(sha256(reply.body)).toBe(sha256(await sourceFile('big.bin')));
  });

  it('serves ranges byte-exact, across chunk boundaries, from the end and to the end', async () => {
    const data = await sourceFile('big.bin');
    const size = data.length;
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      ['bytes=100-199', 100, 199],
      ['bytes=1000000-3999999', 1000000, 3999999], // spans several chunks
      [`bytes=${size - 10}-`, size - 10, size - 1],
      ['bytes=-7', size - 7, size - 1],
      [`bytes=5000000-${size + 1000}`, 5000000, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const reply = await get(`${snap(1)}/content?path=/big.bin`, { Range: range });
      expect(reply.status, range).toBe(206);
      expect(reply.headers['content-range']).toBe(`bytes ${start}-${end}/${size}`);
      expect(Number(reply.headers['content-length'])).toBe(end - start + 1);
      expect(reply.body.equals(data.subarray(start, end + 1)), range).toBe(true);
    }
  });

  it('serves several ranges at once as multipart/byteranges', async () => {
    const data = await sourceFile('big.bin');
    const reply = await get(`${snap(1)}/content?path=/big.bin`, { Range: 'bytes=0-9, 2000000-2000099,-5' });
    expect(reply.status).toBe(206);
    const boundary = /boundary=(\S+)/.exec(reply.headers['content-type'] as string)![1];
    expect(Number(reply.headers['content-length'])).toBe(reply.body.length);
    const parts: { range: string; body: Buffer }[] = [];
    let at = reply.body.indexOf(`--${boundary}\r\n`);
    while (at >= 0) {
      const headEnd = reply.body.indexOf('\r\n\r\n', at);
      const head = reply.body.subarray(at, headEnd).toString();
      const next = reply.body.indexOf(`\r\n--${boundary}`, headEnd);
      parts.push({ range: /Content-Range: (.*)/.exec(head)![1].trim(), body: reply.body.subarray(headEnd + 4, next) });
      at = reply.body.indexOf(`--${boundary}\r\n`, next + 2);
    }
    expect(parts.map((p) => p.range)).toEqual([`bytes 0-9/${data.length}`, `bytes 2000000-2000099/${data.length}`, `bytes ${data.length - 5}-${data.length - 1}/${data.length}`]);
    expect(parts[0].body.equals(data.subarray(0, 10))).toBe(true);
    expect(parts[1].body.equals(data.subarray(2000000, 2000100))).toBe(true);
    expect(parts[2].body.equals(data.subarray(data.length - 5))).toBe(true);
    expect(reply.text.endsWith(`\r\n--${boundary}--\r\n`)).toBe(true);
  });

  it('answers an unsatisfiable range with 416, and ignores a stale If-Range', async () => {
    const size = (await sourceFile('hello.txt')).length;
    const beyond = await get(`${snap(1)}/content?path=/hello.txt`, { Range: `bytes=${size}-` });
    expect(beyond.status).toBe(416);
    expect(beyond.headers['content-range']).toBe(`bytes */${size}`);
    const stale = await get(`${snap(1)}/content?path=/hello.txt`, { Range: 'bytes=0-1', 'If-Range': '"not-the-etag"' });
    expect(stale.status).toBe(200);
    expect(stale.body.equals(await sourceFile('hello.txt'))).toBe(true);
    const etag = stale.headers.etag as string;
    const fresh = await get(`${snap(1)}/content?path=/hello.txt`, { Range: 'bytes=0-1', 'If-Range': etag });
    expect(fresh.status).toBe(206);
    expect(fresh.text).toBe('he');
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const reply = await request(`${snap(1)}/content?path=/big.bin`, { method: 'HEAD', headers: { Range: 'bytes=10-19' } });
    expect(reply.status).toBe(206);
    expect(reply.headers['content-length']).toBe('10');
    expect(reply.body.length).toBe(0);
  });

  it('never serves markup from a snapshot as something a browser runs', async () => {
    const types: Record<string, [string, RegExp]> = {
      '/notes/page.html': ['text/plain; charset=utf-8', /^inline/],
      '/notes/logo.svg': ['text/plain; charset=utf-8', /^inline/],
      '/README': ['text/plain; charset=utf-8', /^inline/],
      '/image.png': ['image/png', /^inline/],
      '/doc.pdf': ['application/pdf', /^inline/],
      '/clip.mp4': ['video/mp4', /^inline/],
      '/song.mp3': ['audio/mpeg', /^inline/],
      '/data.bin': ['application/octet-stream', /^attachment/],
    };
    for (const [p, [type, disposition]] of Object.entries(types)) {
      const reply = await get(`${snap(1)}/content?path=${q(p)}`);
      expect(reply.headers['content-type'], p).toBe(type);
      expect(reply.headers['content-disposition'], p).toMatch(disposition);
      expect(reply.headers['x-content-type-options']).toBe('nosniff');
      expect(reply.headers['content-security-policy'], p).toMatch(p.endsWith('.pdf') ? /default-src 'none'/ : /sandbox/);
    }
    const html = await get(`${snap(1)}/content?path=/notes/page.html`);
    expect(html.text).toBe(await fs.readFile(path.join(fixture.source, 'notes/page.html'), 'utf8'));
  });

  it('refuses a directory', async () => {
    expect((await get(`${snap(1)}/content?path=/notes`)).status).toBe(400);
  });
});

describe('GET /api/snapshots/:id/archive', () => {
  async function extract(target: string, name: string): Promise<string> {
    const reply = await get(target);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/x-tar');
    expect(reply.headers['content-disposition']).toMatch(/^attachment; filename="[^"]+\.tar"/);
    const dir = path.join(fixture.work, `extract-${name}`);
    await fs.mkdir(dir);
    const file = path.join(fixture.work, `${name}.tar`);
    await fs.writeFile(file, reply.body);
    await run('tar', ['-xf', file, '-C', dir]);
    return dir;
  }

  /** The extracted tree equals the source: names, bytes, modes, mtimes to the second, link targets. Returns its file count. */
  /** `seconds`: the archive's time resolution (unzip sets the 2-second DOS time; yazl puts the exact time in the central directory only). */
  async function expectSame(extracted: string, source: string, leftOut: string[] = [], seconds = 1): Promise<number> {
    const names = (await fs.readdir(source)).filter((name) => !leftOut.includes(name)).sort();
    expect((await fs.readdir(extracted)).sort()).toEqual(names);
    const counts = await Promise.all(
      names.map(async (name) => {
        const a = path.join(source, name);
        const b = path.join(extracted, name);
        const [stat, other] = await Promise.all([fs.lstat(a), fs.lstat(b)]);
        if (stat.isDirectory()) {
          expect(other.isDirectory()).toBe(true);
          return expectSame(b, a, [], seconds);
        }
        if (stat.isSymbolicLink()) {
          expect(await fs.readlink(b)).toBe(await fs.readlink(a));
          return 0;
        }
        const [x, y] = await Promise.all([fs.readFile(a), fs.readFile(b)]);
        expect(y.equals(x), name).toBe(true);
        expect(other.mode & 0o777).toBe(stat.mode & 0o777);
        expect(Math.floor(other.mtimeMs / 1000 / seconds)).toBe(Math.floor(stat.mtimeMs / 1000 / seconds));
        return 1;
      }),
    );
    return counts.reduce((sum, n) => sum + n, 0);
  }

  it('streams a whole snapshot as a tar that extracts to the source, byte for byte', async () => {
    const dir = await extract(`${snap(1)}/archive?path=/`, 'all');
    const root = path.join(dir, `snapshot-${fixture.ids[1].slice(0, 8)}`);
    const files = await expectSame(root, fixture.source);
    expect(files).toBeGreaterThan(MANY);
    // Names ustar cannot hold went through pax headers.
    expect(await fs.readFile(path.join(root, LONG_DIR, LONG_FILE), 'utf8')).toBe('deep and long\n');
    expect(await fs.readFile(path.join(root, HOSTILE), 'utf8')).toBe('hostile name, harmless content\n');
    expect(await fs.readFile(path.join(root, UNICODE), 'utf8')).toBe('unicode name\n');
  });

  it('streams a whole snapshot as a zip that unzip extracts to the source, leaving out the name with a backslash', async () => {
    const reply = await get(`${snap(1)}/archive?path=/&format=zip`);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/zip');
    expect(reply.headers['content-disposition']).toMatch(/^attachment; filename="snapshot-[0-9a-f]{8}\.zip"/);
    const file = path.join(fixture.work, 'all.zip');
    const dir = path.join(fixture.work, 'extract-zip');
    await fs.writeFile(file, reply.body);
    await run('unzip', ['-q', file, '-d', dir]);
    const root = path.join(dir, `snapshot-${fixture.ids[1].slice(0, 8)}`);
    // yazl would turn its backslash into a directory separator.
    expect(UNICODE).toContain('\\');
    const files = await expectSame(root, fixture.source, [UNICODE], 2);
    expect(files).toBeGreaterThan(MANY);
    expect(await fs.readFile(path.join(root, LONG_DIR, LONG_FILE), 'utf8')).toBe('deep and long\n');
    expect(await fs.readFile(path.join(root, HOSTILE), 'utf8')).toBe('hostile name, harmless content\n');
  });

  it('refuses an archive format other than tar and zip', async () => {
    const reply = await get(`${snap(1)}/archive?path=/&format=rar`);
    expect(reply.status).toBe(400);
    expect(reply.json().error).toMatch(/format is tar or zip/);
  });

  it('answers HEAD with the headers of GET and no body, and the errors of GET', async () => {
    for (const format of ['tar', 'zip']) {
      const target = `${snap(0)}/archive?path=/notes&format=${format}`;
      const head = await request(target, { method: 'HEAD' });
      expect(head.status, format).toBe(200);
      expect(head.body.length).toBe(0);
      const full = await get(target);
      expect(full.status).toBe(200);
      for (const name of ['content-type', 'content-disposition', 'cache-control']) expect(head.headers[name], name).toBe(full.headers[name]);
    }
    expect((await request(`${snap(0)}/archive?path=/missing`, { method: 'HEAD' })).status).toBe(404);
    expect((await request(`${snap(0)}/archive?path=/&format=rar`, { method: 'HEAD' })).status).toBe(400);
  });

  it('streams a subdirectory under its own name', async () => {
    const dir = await extract(`${snap(0)}/archive?path=/notes`, 'notes');
    expect((await fs.readdir(dir))).toEqual(['notes']);
    expect((await fs.readdir(path.join(dir, 'notes'))).sort()).toEqual(['logo.svg', 'page.html', 'readme.md']);
    expect(await fs.readFile(path.join(dir, 'notes/page.html'), 'utf8')).toBe(await fs.readFile(path.join(fixture.source, 'notes/page.html'), 'utf8'));
  });
});

describe('GET /api/diff', () => {
  it('names the added, removed and changed files, and skips unchanged subtrees', async () => {
    const reply = await get(`/api/diff?a=${fixture.ids[0]}&b=${fixture.ids[1]}`);
    expect(reply.status).toBe(200);
    const diff = reply.json();
    const byPath = Object.fromEntries(diff.items.map((i: { path: string }) => [i.path, i]));
    // A directory whose entries changed has a new mtime of its own: listed, as restic's diff --metadata does.
    expect(Object.keys(byPath).sort()).toEqual(['/', '/data.bin', '/hello.txt', '/new.txt', '/notes', '/notes/readme.md']);
    expect(byPath['/notes']).toMatchObject({ status: 'changed', reasons: ['mtime'], before: { type: 'directory' }, after: { type: 'directory' } });
    expect(byPath['/new.txt']).toMatchObject({ status: 'added', after: { type: 'file', size: 'added later\n'.length } });
    expect(byPath['/notes/readme.md']).toMatchObject({ status: 'removed', before: { type: 'file' } });
    expect(byPath['/hello.txt'].status).toBe('changed');
    expect(byPath['/hello.txt'].reasons).toEqual(expect.arrayContaining(['size', 'content', 'mtime']));
    expect(byPath['/data.bin']).toMatchObject({ status: 'changed', reasons: ['mtime'] });
    expect(diff.counts).toEqual({ added: 1, removed: 1, changed: 4 });
    expect(diff.truncated).toBe(false);
  });

  it('compares the other way round, a subtree only, and caps the items', async () => {
    const reverse = (await get(`/api/diff?a=${fixture.ids[1]}&b=${fixture.ids[0]}`)).json();
    expect(reverse.counts).toEqual({ added: 1, removed: 1, changed: 4 });
    const notes = (await get(`/api/diff?a=${fixture.ids[0]}&b=${fixture.ids[1]}&path=/notes`)).json();
    expect(notes.items.map((i: { path: string }) => i.path)).toEqual(['/notes', '/notes/readme.md']);
    const capped = (await get(`/api/diff?a=${fixture.ids[0]}&b=${fixture.ids[1]}&limit=1`)).json();
    expect(capped.items).toHaveLength(1);
    expect(capped.truncated).toBe(true);
    expect(capped.counts).toEqual({ added: 1, removed: 1, changed: 4 });
    const same = (await get(`/api/diff?a=${fixture.ids[1]}&b=${fixture.ids[1]}`)).json();
    expect(same.items).toEqual([]);
  });

  it('needs both snapshots', async () => {
    expect((await get(`/api/diff?a=${fixture.ids[0]}`)).status).toBe(400);
  });
});

describe('POST /api/restore', () => {
  async function restoreTo(body: object): Promise<any> {
    const reply = await request('/api/restore', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    expect(reply.status, reply.text).toBe(202);
    let job = reply.json();
    expect(reply.headers.location).toBe(`/api/restore/${job.id}`);
    const deadline = Date.now() + 20_000;
    while (job.state === 'running' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      job = (await get(`/api/restore/${job.id}`)).json();
    }
    return job;
  }

  it('restores a subtree into a local directory and reports its progress', async () => {
    const target = path.join(fixture.work, 'restored-notes');
    const job = await restoreTo({ snapshot: fixture.ids[0], path: '/notes', destination: target });
    expect(job).toMatchObject({ state: 'done', files: 3, errors: 0, total_files: 3, target });
    expect(job.bytes).toBe(job.total_bytes);
    expect((await fs.readdir(target)).sort()).toEqual(['logo.svg', 'page.html', 'readme.md']);
    expect(await fs.readFile(path.join(target, 'page.html'), 'utf8')).toBe(await fs.readFile(path.join(fixture.source, 'notes/page.html'), 'utf8'));
  });

  it('restores one file to a destination alias', async () => {
    const target = path.join(fixture.work, 'alias-target');
    const added = await kloset(['destination', 'add', 'uitest', target], { env: fixture.env });
    expect(added.code).toBe(0);
    const listed = (await get('/api/destinations')).json();
    expect(listed.destinations).toEqual([{ name: '@uitest', location: target }]);
    const job = await restoreTo({ snapshot: fixture.ids[1].slice(0, 10), path: '/big.bin', destination: '@uitest' });
    expect(job).toMatchObject({ state: 'done', files: 1, destination: '@uitest', target });
    expect(sha256(await fs.readFile(path.join(target, 'big.bin')))).toBe(sha256(await sourceFile('big.bin')));
  });

  it('refuses a relative destination, an unknown alias, a bad path and a bad body', async () => {
    const post = (body: unknown, type = 'application/json') =>
      request('/api/restore', { method: 'POST', headers: { 'Content-Type': type }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    expect((await post({ snapshot: fixture.ids[0], path: '/notes', destination: 'relative/dir' })).status).toBe(400);
    expect((await post({ snapshot: fixture.ids[0], path: '/notes', destination: '/' })).status).toBe(400);
    const unknown = await post({ snapshot: fixture.ids[0], path: '/notes', destination: '@nosuchalias' });
    expect(unknown.status).toBe(400);
    expect(unknown.json().error).toMatch(/unknown alias/);
    expect((await post({ snapshot: fixture.ids[0], path: '/../etc', destination: path.join(fixture.work, 'x') })).status).toBe(400);
    expect((await post({ snapshot: fixture.ids[0], path: '/missing', destination: path.join(fixture.work, 'x') })).status).toBe(404);
    expect((await post('{not json')).status).toBe(400);
    expect((await post({ snapshot: fixture.ids[0] }, 'text/plain')).status).toBe(415);
    expect((await get('/api/restore/0000')).status).toBe(404);
  });

  it('refuses a destination inside the store, by its path or through a link, and leaves the store as it was', async () => {
    const listing = async () => (await fs.readdir(fixture.store, { recursive: true })).filter((f) => !f.startsWith('locks')).sort();
    const before = await listing();
    const link = path.join(fixture.work, 'link-to-store');
    await fs.symlink(fixture.store, link);
    for (const destination of [fixture.store, path.join(fixture.store, 'restored'), path.join(link, 'restored')]) {
      const reply = await request('/api/restore', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ snapshot: fixture.ids[0], path: '/notes', destination }),
      });
      expect(reply.status, destination).toBe(400);
      expect(reply.json().error).toBe(`${destination}: inside the store ${fixture.store}: restore somewhere else`);
    }
    await new Promise((r) => setTimeout(r, 300)); // a job wrongly started would have written by now
    expect(await listing()).toEqual(before);
  });
});

describe('GET /api/destinations', () => {
  it('masks the password a destination alias holds in its location', async () => {
    const location = 's3://backup-id:uri-password-here@minio:9000/restores';
    expect((await kloset(['destination', 'add', 'withpassword', location], { env: fixture.env })).code).toBe(0);
    try {
      const reply = await get('/api/destinations');
      expect(reply.status).toBe(200);
      expect(reply.text).not.toContain('uri-password-here');
      expect(reply.json().destinations).toContainEqual({ name: '@withpassword', location: 's3://backup-id:****@minio:9000/restores' });
    } finally {
      expect((await kloset(['destination', 'rm', 'withpassword'], { env: fixture.env })).code).toBe(0);
    }
  });

  it("masks a password that holds a '/' or an '@' as it was typed, not percent-encoded", async () => {
    const locations = { slashed: 's3://backup-id:wJalr/uri-password-here@minio:9000/restores', at: 'sftp://me:p@ss-uri-password-here@nas/restores' };
    for (const [name, location] of Object.entries(locations)) expect((await kloset(['destination', 'add', name, location], { env: fixture.env })).code).toBe(0);
    try {
      const reply = await get('/api/destinations');
      expect(reply.status).toBe(200);
      expect(reply.text).not.toContain('uri-password-here');
      expect(reply.json().destinations).toContainEqual({ name: '@slashed', location: 's3://backup-id:****@minio:9000/restores' });
      expect(reply.json().destinations).toContainEqual({ name: '@at', location: 'sftp://me:****@nas/restores' });
    } finally {
      for (const name of Object.keys(locations)) expect((await kloset(['destination', 'rm', name], { env: fixture.env })).code).toBe(0);
    }
  });
});
