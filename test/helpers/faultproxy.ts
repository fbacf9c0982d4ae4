/**
 * An HTTP proxy on loopback in front of a test S3 server that injects faults
 * by rule, and counts the requests it sees by method.
 *
 *   const proxy = await startFaultProxy(s3.endpoint);
 *   proxy.failNext('PUT', 3, 'slowdown');          // the next 3 PUTs get 503 SlowDown
 *   proxy.failEvery('GET', 5, 'drop');             // every 5th GET: connection dropped
 *   proxy.addRule({ method: 'GET', fault: 'delay', delayMs: 500, times: 1 });
 *   const client = s3.client({ endpoint: proxy.endpoint, maxAttempts: 8 });
 *   ...
 *   expect(proxy.faults.PUT).toBe(3);
 *   expect(proxy.requests.PUT).toBeGreaterThan(3);
 *   await proxy.stop();
 *
 * Requests pass through unchanged, Host header included, so SigV4 signatures
 * made for the proxy's address still verify at the server behind it.
 *
 * Faults:
 * - `slowdown`: 503 with S3's SlowDown XML error body (request not forwarded)
 * - `internal`: 500 with S3's InternalError XML error body (not forwarded)
 * - `drop`: the client's socket is destroyed before anything is forwarded
 * - `drop-response`: forwarded (the server acts on it), then the socket is
 *   destroyed instead of answering: the client cannot know it succeeded
 * - `truncate`: forwarded; the status, headers and half the body are sent, then the socket is destroyed
 * - `delay`: forwarded after `delayMs` (default 1000), or once `until` has settled
 * - `stall`: the connection is accepted and then left silent (a hung server)
 * - `stall-body`: forwarded; the status, headers and half the body are sent, then nothing more
 * - `error`: any S3 error answer, `status` and `code` from the rule (e.g. 403
 *   AccessDenied, SignatureDoesNotMatch, which s3rver itself never checks)
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault = 'slowdown' | 'internal' | 'drop' | 'drop-response' | 'truncate' | 'delay' | 'stall' | 'stall-body' | 'error';

export interface FaultRule {
  /** HTTP method (GET, PUT, POST, HEAD, DELETE); any method when absent. */
  method?: string;
  /** Only requests whose path and query match (e.g. /list-type=2/ for listings, /uploadId=/ for multipart parts). */
  path?: RegExp;
  fault: Fault;
  /** Fault the next `times` matching requests, then stop. */
  times?: number;
  /** Fault every `every`-th matching request (the every-th, 2·every-th, ...). */
  every?: number;
  /**
   * Fault at most this many requests of any one path (its query left out). With `every` and many
   * requests in flight, which of them a rule meets depends on how they interleave: without a bound,
   * one object's retries could all be met, more than its attempts allow.
   */
  perPath?: number;
  /** For `delay`. */
  delayMs?: number;
  /** For `delay`: forward once this has settled rather than after a time, for what the test must do first whatever the load. */
  until?: Promise<unknown>;
  /** For `error`: HTTP status (default 400), S3 error code (default InvalidRequest) and message. */
  status?: number;
  code?: string;
  message?: string;
}

export interface ProxiedRequest {
  method: string;
  url: string;
  /** The Authorization header, whose credential scope names the region a request was signed for. */
  authorization?: string;
  fault?: Fault;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  readonly port: number;
  /** Every request received, by method, faulted ones included. */
  readonly requests: Record<string, number>;
  /** Faults injected, by method. */
  readonly faults: Record<string, number>;
  /** Every request in order of arrival. */
  readonly log: ProxiedRequest[];
  addRule(rule: FaultRule): void;
  /** Shorthand: fault the next `count` requests of `method`. */
  failNext(method: string, count: number, fault: Fault): void;
  /** Shorthand: fault every `n`-th request of `method`. */
  failEvery(method: string, n: number, fault: Fault): void;
  clearRules(): void;
  /** Zeroes `requests`, `faults` and `log`. */
  resetCounts(): void;
  stop(): Promise<void>;
}

interface ActiveRule extends FaultRule {
  seen: number;
  fired: number;
  firedByPath: Map<string, number>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const rules: ActiveRule[] = [];
  const requests: Record<string, number> = {};
  const faults: Record<string, number> = {};
  const log: ProxiedRequest[] = [];

  const chooseFault = (method: string, url: string): ActiveRule | undefined => {
    let chosen: ActiveRule | undefined;
    for (const rule of rules) {
      if (rule.method !== undefined && rule.method.toUpperCase() !== method) continue;
      if (rule.path !== undefined && !rule.path.test(url)) continue;
      rule.seen += 1;
      if (chosen) continue; // every matching rule counts the request; the first that fires wins
      const where = url.split('?')[0];
      if (rule.perPath !== undefined && (rule.firedByPath.get(where) ?? 0) >= rule.perPath) continue;
      if (rule.times !== undefined && rule.fired < rule.times) chosen = rule;
      else if (rule.every !== undefined && rule.seen % rule.every === 0) chosen = rule;
      if (chosen === rule) {
        rule.fired += 1;
        rule.firedByPath.set(where, (rule.firedByPath.get(where) ?? 0) + 1);
      }
    }
    return chosen;
  };

  const forward = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    onResponse?: (upstreamRes: http.IncomingMessage) => boolean,
  ) => {
    const upstreamReq = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent,
      },
      (upstreamRes) => {
        if (onResponse && !onResponse(upstreamRes)) return;
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    upstreamReq.on('error', () => res.destroy());
    req.pipe(upstreamReq);
  };

  /** Forwards, then sends the status, the headers and half the body, and calls `then` (which ends the answer, or leaves it hanging). */
  const forwardHalf = (req: http.IncomingMessage, res: http.ServerResponse, then: () => void) =>
    forward(req, res, (upstreamRes) => {
      const length = Number(upstreamRes.headers['content-length'] ?? 0);
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      const chunks: Buffer[] = [];
      upstreamRes.on('data', (chunk: Buffer) => chunks.push(chunk));
      upstreamRes.on('end', () => {
        const body = Buffer.concat(chunks);
        res.write(body.subarray(0, Math.floor((length || body.length) / 2)), then);
      });
      return false;
    });

  const server = http.createServer((req, res) => {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = req.url ?? '/';
    requests[method] = (requests[method] ?? 0) + 1;
    const rule = chooseFault(method, url);
    const authorization = req.headers.authorization;
    log.push({ method, url, ...(authorization ? { authorization } : {}), ...(rule ? { fault: rule.fault } : {}) });
    if (!rule) return forward(req, res);
    faults[method] = (faults[method] ?? 0) + 1;
    switch (rule.fault) {
      case 'slowdown':
        return answerError(req, res, 503, 'SlowDown', 'Please reduce your request rate.');
      case 'internal':
        return answerError(req, res, 500, 'InternalError', 'We encountered an internal error. Please try again.');
      case 'drop':
        req.socket.destroy();
        return;
      case 'drop-response':
        return forward(req, res, (upstreamRes) => {
          upstreamRes.resume();
          upstreamRes.on('end', () => req.socket.destroy());
          return false;
        });
      case 'truncate':
        return forwardHalf(req, res, () => req.socket.destroy());
      case 'delay':
        if (rule.until) void rule.until.then(() => forward(req, res), () => forward(req, res));
        else setTimeout(() => forward(req, res), rule.delayMs ?? 1000);
        return;
      case 'stall':
        req.resume(); // read what is sent, answer nothing
        return;
      case 'stall-body':
        return forwardHalf(req, res, () => undefined);
      case 'error':
        return answerError(req, res, rule.status ?? 400, rule.code ?? 'InvalidRequest', rule.message ?? 'Injected by the fault proxy.');
    }
  });
  server.keepAliveTimeout = 5000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    requests,
    faults,
    log,
    addRule(rule) {
      if (rule.times === undefined && rule.every === undefined) throw new Error('a fault rule needs times or every');
      rules.push({ ...rule, seen: 0, fired: 0, firedByPath: new Map() });
    },
    failNext(method, count, fault) {
      proxy.addRule({ method, fault, times: count });
    },
    failEvery(method, n, fault) {
      proxy.addRule({ method, fault, every: n });
    },
    clearRules() {
      rules.length = 0;
    },
    resetCounts() {
      for (const key of Object.keys(requests)) delete requests[key];
      for (const key of Object.keys(faults)) delete faults[key];
      log.length = 0;
    },
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      agent.destroy();
    },
  };
  return proxy;
}

/** S3's error answer; the request body is read first so the client sees the answer, not a reset. */
function answerError(req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string) {
  const body =
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<Error><Code>${code}</Code><Message>${message}</Message>` +
    `<RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>`;
  req.resume();
  req.on('end', () => {
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}
