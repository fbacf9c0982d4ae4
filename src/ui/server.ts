/**
 * The viewer's HTTP server: loopback only, every request behind the run's
 * token, security headers on every reply, the page and its scripts from
 * this process (nothing from a CDN), the JSON API under /api/.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AliasConfig } from '../config/aliases.js';
import { IntegrityError, KlosetError, UsageError } from '../errors.js';
import type { Repository } from '../kloset/repository.js';
import { UiApi } from './api.js';
import { loadAssets, type Asset } from './assets.js';
import { TokenGuard } from './auth.js';
import { SnapshotCatalog } from './catalog.js';
import { HttpError, sendHtml, sendJson, sendText, setSecurityHeaders } from './http.js';
import { DirectoryOrders } from './listing.js';
import { RestoreJobs } from './restorejobs.js';

export interface UiServerOptions {
  repository: Repository;
  aliases: Pick<AliasConfig, 'list' | 'resolveAlias'>;
  host?: string;
  port?: number;
  /** A fixed token (tests); random otherwise. */
  token?: string;
  /** Server-side errors, one line each. */
  log?: (line: string) => void;
}

export interface UiServer {
  /** The URL to open: it carries the token. */
  url: string;
  /** The same without the token. */
  origin: string;
  token: string;
  port: number;
  /** Restores still running. */
  runningRestores(): number;
  /** Stops serving; running restores go on (see `settle`). */
  close(): Promise<void>;
  /** Resolves when every running restore has ended. */
  settle(): Promise<void>;
  /** Stops the running restores, removing what they had half written. */
  abandon(): Promise<void>;
}

/** Loopback addresses only: the viewer serves decrypted backups. */
export function isLoopback(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127(\.\d{1,3}){3}$/.test(bare) || bare === '::ffff:127.0.0.1';
}

/** `127.0.0.1:8080`, `[::1]:0`, `localhost:8080`, `:8080` or `8080`. */
export function parseAddress(text: string): { host: string; port: number } {
  const match = /^(?:(\[[0-9a-fA-F:.]+\]|[^:[\]]*):)?(\d{1,5})$/.exec(text.trim());
  if (!match || Number(match[2]) > 65535) throw new UsageError(`invalid address ${JSON.stringify(text)} (expected host:port, such as 127.0.0.1:8080)`);
  const host = (match[1] || '127.0.0.1').replace(/^\[|\]$/g, '');
  if (!isLoopback(host)) {
    throw new UsageError(`refusing to listen on ${host}: the viewer serves decrypted backups and listens on loopback only (127.0.0.1, ::1, localhost)`);
  }
  return { host, port: Number(match[2]) };
}

/** Host headers that name the viewer: each name with the port, and alone on port 80, which browsers and curl leave out. */
export function acceptedHosts(names: string[], port: number): Set<string> {
  return new Set([...names.map((name) => `${name}:${port}`), ...(port === 80 ? names : [])].map((h) => h.toLowerCase()));
}

export async function startUiServer(options: UiServerOptions): Promise<UiServer> {
  const host = options.host ?? '127.0.0.1';
  if (!isLoopback(host)) throw new UsageError(`refusing to listen on ${host}: loopback only`);
  const log = options.log ?? (() => undefined);
  const assets = await loadAssets();
  const catalog = new SnapshotCatalog(options.repository, log);
  const jobs = new RestoreJobs();
  const api = new UiApi({ catalog, orders: new DirectoryOrders(), jobs, aliases: options.aliases });
  let guard: TokenGuard | undefined;
  let allowedHosts = new Set<string>();

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch((err) => {
      log(`${req.method} ${req.url?.split('?')[0]}: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent) sendText(res, 500, 'internal error');
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    setSecurityHeaders(res);
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://viewer.invalid');
    } catch {
      // A target no URL parser takes (`//[`): any page can send one, it is no server error.
      return sendText(res, 400, 'malformed request target');
    }
    try {
      // A page of another site that resolves its own name to 127.0.0.1 (DNS rebinding) sends its own Host.
      if (!allowedHosts.has((req.headers.host ?? '').toLowerCase())) throw new HttpError(403, 'unexpected Host header');
      const admission = guard!.admit(req, url);
      if (admission === 'denied') {
        // RFC 6750's challenge: scripts and tools may send the token as a bearer token.
        res.setHeader('WWW-Authenticate', 'Bearer realm="kloset"');
        throw new HttpError(401, 'this page needs the token of the URL that `kloset ui` printed; open that URL again');
      }
      if (admission === 'query') {
        res.setHeader('Set-Cookie', guard!.setCookie());
        if (req.method === 'GET' && !url.pathname.startsWith('/api/')) {
          // Drop the token from the address bar and the history.
          url.searchParams.delete('token');
          // One leading slash: a path such as //host would send the browser to another site.
          const next = ('/' + url.pathname.replace(/^\/+/, '') + url.search).replace(/&/g, '&amp;').replace(/"/g, '&quot;');
          // A page that refreshes itself, not a 303: a redirect goes on with the navigation as it began, and
          // one begun by a file (the private file `kloset ui` opens) or another site is cross-site, so the
          // browser would withhold the SameSite=Strict cookie just set and the page would answer 401.
          // The refresh is a navigation of this page's own, which the cookie goes with.
          return sendHtml(res, 200, `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${next}"><title>kloset</title><p><a href="${next}">Open the kloset viewer</a></p>\n`);
        }
      }
      // Under the numeric address, a page on another port of 127.0.0.1 is of the same site and gets the
      // cookie: it must not make the viewer build archives or diffs for it. Browsers say where a request
      // comes from; the viewer's own pages are same-origin, the printed URL typed or clicked is 'none'.
      const site = req.headers['sec-fetch-site'];
      if (url.pathname.startsWith('/api/') && (site === 'cross-site' || site === 'same-site')) throw new HttpError(403, 'cross-origin request refused');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        const origin = req.headers.origin;
        if (origin !== undefined && origin !== `http://${req.headers.host}`) throw new HttpError(403, 'cross-origin request refused');
      }
      if (url.pathname.startsWith('/api/')) return await api.handle(req, res, url);
      return serveAsset(req, res, url, assets);
    } catch (err) {
      if (res.headersSent || (err as { responseStarted?: boolean }).responseStarted) {
        res.destroy();
        if (!(err instanceof HttpError)) log(`${req.method} ${url.pathname}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      const [status, message] =
        err instanceof HttpError
          ? [err.status, err.message]
          : err instanceof IntegrityError
            ? [500, `damaged: ${err.message}`]
            : err instanceof KlosetError
              ? [400, err.message]
              : [500, 'internal error'];
      // The headers of the content that was not sent; a 416 keeps the Content-Range that gives the size.
      for (const name of ['Content-Disposition', 'Content-Length', 'ETag', 'Accept-Ranges']) res.removeHeader(name);
      if (status !== 416) res.removeHeader('Content-Range');
      if (!(err instanceof HttpError) && status === 500) log(`${req.method} ${url.pathname}: ${(err as Error).message}`);
      if (url.pathname.startsWith('/api/')) sendJson(res, status, { error: message });
      else sendText(res, status, message);
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new KlosetError(`${host}:${options.port ?? 0} is already in use`) : err),
    );
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  guard = new TokenGuard(port, options.token);
  const listenedHost = host.includes(':') ? `[${host}]` : host;
  // Browsers send a host's cookies to all its ports: under 127.0.0.1 (or localhost,
  // or ::1) the viewer's cookie would go to any other local server the browser
  // visits. The printed address is a name of this run's own under .localhost, which
  // browsers resolve to 127.0.0.1 and ::1 by themselves (RFC 6761), and its cookie
  // goes nowhere else. Another 127.x address keeps its number: no name reaches it.
  const ownName = ['127.0.0.1', '::1', 'localhost'].includes(host.replace(/^\[|\]$/g, '').toLowerCase());
  const shownHost = ownName ? `kloset-${randomBytes(8).toString('hex')}.localhost` : listenedHost;
  allowedHosts = acceptedHosts([shownHost, listenedHost, '127.0.0.1', 'localhost', '[::1]'], port);
  const origin = `http://${shownHost}:${port}`;
  return {
    url: `${origin}/?token=${guard.token}`,
    origin,
    token: guard.token,
    port,
    runningRestores: () => jobs.running,
    settle: () => jobs.settle(),
    abandon: () => jobs.abandon(),
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function serveAsset(req: IncomingMessage, res: ServerResponse, url: URL, assets: Map<string, Asset>): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    throw new HttpError(405, `${req.method} not allowed here`);
  }
  const asset = assets.get(url.pathname === '/' ? '/index.html' : url.pathname);
  if (!asset) throw new HttpError(404, 'not found');
  res.statusCode = 200;
  res.setHeader('Content-Type', asset.type);
  res.setHeader('Content-Length', asset.body.length);
  res.setHeader('Cache-Control', 'no-cache');
  res.end(req.method === 'HEAD' ? undefined : asset.body);
}
