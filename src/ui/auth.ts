/**
 * The viewer's door: a random token made for each run. The printed URL
 * carries it once (`?token=`); the server answers with an HttpOnly,
 * SameSite=Strict cookie and the browser sends that from then on. Scripts
 * and tools may send `Authorization: Bearer <token>` instead.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export type Admission = 'cookie' | 'query' | 'bearer' | 'denied';

export class TokenGuard {
  readonly token: string;
  /** One cookie per port: two viewers on one host do not overwrite each other's. */
  readonly cookieName: string;
  private readonly expected: Buffer;

  constructor(port: number, token: string = randomBytes(24).toString('base64url')) {
    this.token = token;
    this.cookieName = `kloset_ui_${port}`;
    this.expected = Buffer.from(token, 'utf8');
  }

  private matches(candidate: string | undefined): boolean {
    if (candidate === undefined) return false;
    const given = Buffer.from(candidate, 'utf8');
    return given.length === this.expected.length && timingSafeEqual(given, this.expected);
  }

  /** How the request proved it knows the token, or 'denied'. */
  admit(req: IncomingMessage, url: URL): Admission {
    const queryTokens = url.searchParams.getAll('token');
    if (queryTokens.length === 1 && this.matches(queryTokens[0])) return 'query';
    const auth = req.headers.authorization;
    if (auth && /^Bearer /i.test(auth) && this.matches(auth.slice(7).trim())) return 'bearer';
    // Every cookie of the name: a page of another local server can set one of its own for the same host
    // (cookies do not keep ports apart), and the browser may send that one first.
    if (readCookies(req.headers.cookie, this.cookieName).some((value) => this.matches(value))) return 'cookie';
    return 'denied';
  }

  setCookie(): string {
    return `${this.cookieName}=${this.token}; Path=/; HttpOnly; SameSite=Strict`;
  }
}

/** The values of every cookie named `name`, in the order sent. */
export function readCookies(header: string | undefined, name: string): string[] {
  if (!header) return [];
  const values: string[] = [];
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq >= 0 && part.slice(0, eq).trim() === name) values.push(part.slice(eq + 1).trim());
  }
  return values;
}
