/**
 * HTTP plumbing the viewer's routes share: typed errors that become status
 * codes, JSON and text replies with the security headers, RFC 6266
 * Content-Disposition, and RFC 9110 byte ranges.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { shownName } from '../snapshot/names.js';

/** An error with the status it answers with; its message is shown to the user. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The page's policy: our own scripts and styles only, no inline script, no framing by others. */
export const PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "media-src 'self'",
  "frame-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * Bytes from a snapshot, shown in the page's origin: nothing in them runs.
 * `sandbox` gives an opened HTML or SVG file a unique origin even if a browser
 * ignored its text/plain type; PDF keeps no sandbox, as Chromium's viewer
 * refuses to render inside one.
 */
export const CONTENT_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox";
export const PDF_CSP = "default-src 'none'; object-src 'self'; frame-ancestors 'self'";

export function setSecurityHeaders(res: ServerResponse, csp = PAGE_CSP): void {
  res.setHeader('Content-Security-Policy', csp);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('X-Frame-Options', csp === PAGE_CSP ? 'DENY' : 'SAMEORIGIN');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
}

/**
 * JSON with `<`, `>` and `&` written as \u escapes: the parsed value is
 * unchanged, and no byte sequence in it can be read as markup.
 */
export function jsonText(value: unknown): string {
  // Names that are not UTF-8 go out as shownName gives them, the form lookups take back.
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'string' ? shownName(v) : v)).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(jsonText(value), 'utf8');
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', body.length);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

export function sendHtml(res: ServerResponse, status: number, html: string): void {
  const body = Buffer.from(html, 'utf8');
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Content-Length', body.length);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

export function sendText(res: ServerResponse, status: number, text: string): void {
  const body = Buffer.from(text.endsWith('\n') ? text : `${text}\n`, 'utf8');
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Content-Length', body.length);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

/** Reads a JSON request body of at most `limit` bytes. */
export async function readJson(req: IncomingMessage, limit = 64 * 1024): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json(\s*;|$)/i.test(type)) throw new HttpError(415, 'expected a JSON body (Content-Type: application/json)');
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > limit) throw new HttpError(413, 'request body too large');
    parts.push(part);
  }
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

/** RFC 8187 encoding of a parameter value: UTF-8, percent-encoded beyond attr-char. */
function encodeExtValue(value: string): string {
  return encodeURIComponent(value).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * `attachment; filename="ascii"; filename*=UTF-8''utf8` (RFC 6266): the
 * quoted fallback keeps printable ASCII only, without quotes or backslashes.
 */
export function contentDisposition(kind: 'inline' | 'attachment', name: string): string {
  const filename = shownName(name); // encodeURIComponent refuses the lone surrogates of a name that is not UTF-8
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_') || 'download';
  return `${kind}; filename="${fallback}"; filename*=UTF-8''${encodeExtValue(filename)}`;
}

/** An inclusive byte range. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Most ranges honoured in one request; more (a probe, or an abuse) get the whole content. */
export const MAX_RANGES = 16;

/**
 * A Range header against a representation of `size` bytes (RFC 9110 §14):
 * undefined to serve the whole content (no header, a unit other than bytes,
 * a malformed or oversized set), 'unsatisfiable' for 416, else the ranges.
 */
export function parseRange(header: string | undefined, size: number): ByteRange[] | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!match) return undefined;
  const specs = match[1].split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (specs.length === 0 || specs.length > MAX_RANGES) return undefined;
  const ranges: ByteRange[] = [];
  for (const spec of specs) {
    const m = /^(\d*)-(\d*)$/.exec(spec);
    if (!m || (m[1] === '' && m[2] === '')) return undefined;
    if (m[1] === '') {
      const suffix = Number(m[2]);
      if (suffix > 0 && size > 0) ranges.push({ start: Math.max(0, size - suffix), end: size - 1 });
      continue;
    }
    const start = Number(m[1]);
    const last = m[2] === '' ? Infinity : Number(m[2]);
    if (last < start) return undefined;
    if (start < size) ranges.push({ start, end: Math.min(last, size - 1) });
  }
  return ranges.length === 0 ? 'unsatisfiable' : ranges;
}

/** Splits a query string parameter that must appear at most once. */
export function param(url: URL, name: string): string | undefined {
  const values = url.searchParams.getAll(name);
  if (values.length > 1) throw new HttpError(400, `parameter ${name} given more than once`);
  return values[0];
}

export function intParam(url: URL, name: string, fallback: number, max: number): number {
  const text = param(url, name);
  if (text === undefined || text === '') return fallback;
  if (!/^\d{1,15}$/.test(text)) throw new HttpError(400, `parameter ${name} must be a non-negative integer`);
  return Math.min(Number(text), max);
}
