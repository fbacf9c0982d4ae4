// Runs s3rver in its own process for the tests and the benchmark:
// node --openssl-legacy-provider test/helpers/s3rver-launcher.mjs <directory> [--count-requests] [--decode-aws-chunked].
// It listens on 127.0.0.1 at a port the kernel picks and prints one JSON line
// {"port": N} once it accepts connections. It stops on SIGTERM/SIGINT or when
// its parent closes stdin.
//
// With --count-requests it counts the requests it serves, per bucket: by
// kind (LIST is a GET on a bucket itself), by the first segment of the key
// below the prefix for PUT and GET (packs, index, ...), by error status, and
// the body bytes each way; GET /__requests answers the counts so far as JSON,
// and GET /__cpu the CPU seconds the server has used.
// Counting inside the server keeps the timed traffic free of any proxy in
// between.
//
// With --decode-aws-chunked, uploads sent with streaming signatures (bodies
// framed as aws-chunked, as restic's minio-go sends them over plain http)
// reach s3rver as plain bodies: s3rver 3.7 would store the framing with the
// data. s3rver does not check V4 signatures, so the rewritten headers pass.
//
// One listing fix: see listPrefixesOfPrefixesOnly below.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import S3rver from 's3rver';

const directory = process.argv[2];
if (!directory) {
  process.stderr.write('usage: s3rver-launcher.mjs <directory> [--count-requests]\n');
  process.exit(2);
}

const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true });
listPrefixesOfPrefixesOnly(server.store);
// Middleware put first, before s3rver's own: decoding, then counting, sees every request.
if (process.argv.includes('--count-requests')) server.middleware.unshift(countRequests());
if (process.argv.includes('--decode-aws-chunked')) server.middleware.unshift(decodeAwsChunked);

/**
 * s3rver 3.7 names a common prefix only for a key it meets, and it does not
 * walk below the level it lists: a prefix that holds only deeper prefixes
 * (`deep/` over `deep/only/x`) is left out of a delimited listing, where S3
 * lists it. On a listing of one page, such prefixes are added.
 */
function listPrefixesOfPrefixesOnly(store) {
  const list = store.listObjects.bind(store);
  const holdsObject = (dir) =>
    readdirSync(dir, { withFileTypes: true }).some(
      (e) => (e.isFile() && e.name.endsWith('._S3rver_object')) || (e.isDirectory() && holdsObject(path.join(dir, e.name))),
    );
  store.listObjects = async (bucket, options) => {
    const result = await list(bucket, options);
    const { delimiter = '', prefix = '', startAfter = '' } = options;
    if (delimiter !== '/' || startAfter || result.isTruncated || process.platform === 'win32') return result;
    const parent = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const dir = path.join(store.getBucketPath(bucket), parent);
    const found = new Set(result.commonPrefixes);
    let entries = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return result;
    }
    for (const entry of entries) {
      const candidate = `${parent}${entry.name}/`;
      if (entry.isDirectory() && candidate.startsWith(prefix) && !found.has(candidate) && holdsObject(path.join(dir, entry.name))) found.add(candidate);
    }
    result.commonPrefixes = [...found].sort();
    return result;
  };
}

function countRequests() {
  const stats = {};
  const bump = (obj, k) => (obj[k] = (obj[k] ?? 0) + 1);
  return async (ctx, next) => {
    if (ctx.method === 'GET' && ctx.path === '/__requests') {
      ctx.type = 'application/json';
      ctx.body = JSON.stringify(stats);
      return;
    }
    if (ctx.method === 'GET' && ctx.path === '/__cpu') {
      // The server's own CPU time: what a step cost the server, apart from the client measured.
      const { user, system } = process.cpuUsage();
      ctx.type = 'application/json';
      ctx.body = JSON.stringify({ seconds: (user + system) / 1e6 });
      return;
    }
    const slash = ctx.path.indexOf('/', 1);
    const bucket = (slash < 0 ? ctx.path.slice(1) : ctx.path.slice(1, slash)) || '(service)';
    const key = slash < 0 ? '' : ctx.path.slice(slash + 1);
    const kind = ctx.method === 'GET' && key === '' ? 'LIST' : ctx.method;
    const r = (stats[bucket] ??= { kinds: {}, areas: {}, statuses: {}, bytesUp: 0, bytesDown: 0 });
    bump(r.kinds, kind);
    if (key && (kind === 'PUT' || kind === 'GET')) bump(r.areas, `${kind} ${key.split('/')[1] ?? key}`);
    r.bytesUp += Number(ctx.get('content-length')) || 0;
    try {
      await next();
    } finally {
      if (ctx.status >= 400) bump(r.statuses, ctx.status);
      if (kind === 'GET') r.bytesDown += ctx.length ?? 0;
    }
  };
}

async function decodeAwsChunked(ctx, next) {
  const headers = ctx.req.headers;
  if (!/^STREAMING-/.test(headers['x-amz-content-sha256'] ?? '')) return next();
  const decodedLength = headers['x-amz-decoded-content-length'];
  delete headers['content-length'];
  delete headers['transfer-encoding'];
  if (decodedLength != null) headers['content-length'] = decodedLength;
  delete headers['x-amz-decoded-content-length'];
  delete headers['x-amz-trailer'];
  headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  const encodings = String(headers['content-encoding'] ?? '').split(',').map((e) => e.trim()).filter((e) => e && e !== 'aws-chunked');
  if (encodings.length) headers['content-encoding'] = encodings.join(',');
  else delete headers['content-encoding'];
  // s3rver reads the body from ctx.req and the headers from the request, which keeps the original.
  const decoded = ctx.req.pipe(awsChunkedDecoder());
  ctx.req.on('error', (err) => decoded.destroy(err));
  decoded.headers = headers;
  ctx.req = decoded;
  return next();
}

/** aws-chunked framing: `<hex size>[;chunk-signature=...]\r\n<data>\r\n`, ..., a 0-size chunk, then trailers. */
function awsChunkedDecoder() {
  let pending = Buffer.alloc(0);
  let state = 'header'; // header, data, crlf (after a chunk's data), done
  let left = 0; // bytes of the current chunk's data still to pass on
  return new Transform({
    transform(input, encoding, callback) {
      pending = pending.length ? Buffer.concat([pending, input]) : input;
      while (state !== 'done') {
        if (state === 'header') {
          const eol = pending.indexOf('\r\n');
          if (eol < 0) break;
          const size = parseInt(pending.subarray(0, eol).toString('latin1').split(';')[0], 16);
          if (!Number.isInteger(size) || size < 0) return callback(new Error('aws-chunked body: bad chunk header'));
          pending = pending.subarray(eol + 2);
          state = size === 0 ? 'done' : 'data';
          left = size;
        } else if (state === 'data') {
          if (!pending.length) break;
          const n = Math.min(left, pending.length);
          this.push(pending.subarray(0, n));
          pending = pending.subarray(n);
          left -= n;
          if (left === 0) state = 'crlf';
        } else {
          if (pending.length < 2) break;
          pending = pending.subarray(2);
          state = 'header';
        }
      }
      if (state === 'done') pending = Buffer.alloc(0); // trailers: nothing s3rver needs
      callback();
    },
    flush(callback) {
      callback(state === 'done' ? null : new Error('aws-chunked body: ended inside a chunk'));
    },
  });
}
const address = await server.run();
// Node closes a connection idle for 5 s, while the SDK's agent keeps it for reuse: a test that sends a
// hundred requests after a pause got many reset at once, more retries than the SDK's retry quota allows.
server.httpServer.keepAliveTimeout = 10 * 60_000;
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.close(() => process.exit(0));
  // Keep-alive sockets can hold close() open: do not wait for them.
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// If the test runner dies without stopping us, our stdin closes: exit too.
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
