/**
 * A real S3 server for the tests: s3rver, run as a child process on loopback.
 *
 *   const s3 = await startS3Server();          // in beforeAll
 *   await s3.createBucket('source');
 *   const client = s3.client();                // an S3Client for it (path style, test keys)
 *   await kloset([...], { env: { ...s3.env() } });  // CLI children reach it through the SDK's env chain
 *   await s3.stop();                           // in afterAll: kills the server, removes its directory
 *
 * Why a child process: s3rver's ListObjectsV2 continuation tokens use DES,
 * which Node's OpenSSL 3 only has with `--openssl-legacy-provider`, a flag the
 * test worker itself does not run with. The child listens on 127.0.0.1 at a
 * port the kernel picks (no race on a "free" port), in a fresh temp directory,
 * and `startS3Server` resolves only once it accepts connections.
 *
 * s3rver checks SigV4 signatures with its fixed credentials S3RVER/S3RVER, so a
 * client with other keys gets InvalidAccessKeyId / SignatureDoesNotMatch. It
 * stores objects as files, so keys with empty segments (`a//b`, `/a`) or
 * segments over 255 bytes cannot be stored there.
 *
 * Clients made here use `requestChecksumCalculation: 'WHEN_REQUIRED'`: the
 * SDK's default flexible checksums (aws-chunked trailers) are not understood by
 * s3rver. Product code that talks to s3rver needs the same setting (S3BlobStore
 * sets it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { klosetWith } from './fixtures.js';

// The SDK's warning that its releases after early 2027 need Node 22 (see src/storage/s3.ts).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const LAUNCHER = path.join(import.meta.dirname, 's3rver-launcher.mjs');
const START_TIMEOUT_MS = 20_000;

export const S3RVER_ACCESS_KEY = 'S3RVER';
export const S3RVER_SECRET_KEY = 'S3RVER';
export const S3RVER_REGION = 'us-east-1';

export interface S3ClientOptions {
  /** Another endpoint than the server's own, e.g. a FaultProxy's in front of it. */
  endpoint?: string;
  /** Other credentials, e.g. wrong ones for an error test. */
  accessKey?: string;
  secretKey?: string;
  /** SDK attempts per request; the SDK default (3) unless given. */
  maxAttempts?: number;
}

export interface S3Server {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  /** Where s3rver keeps its buckets (removed by stop()). */
  readonly directory: string;
  /** A new S3Client for this server (path-style, test credentials, checksums only when required). */
  client(options?: S3ClientOptions): S3Client;
  /** Creates a bucket; creating one that exists is not an error. */
  createBucket(name: string): Promise<void>;
  /**
   * Environment for a CLI child process so that `s3://...` locations reach this
   * server through the SDK's default chain: AWS_ACCESS_KEY_ID,
   * AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL and KLOSET_S3_ENDPOINT.
   */
  env(options?: { endpoint?: string }): Record<string, string>;
  /** Kills the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** The SDK client settings every test client and the product share for s3rver. */
export function s3ClientConfig(endpoint: string, options: S3ClientOptions = {}): S3ClientConfig {
  return {
    endpoint,
    region: S3RVER_REGION,
    forcePathStyle: true,
    credentials: {
      accessKeyId: options.accessKey ?? S3RVER_ACCESS_KEY,
      secretAccessKey: options.secretKey ?? S3RVER_SECRET_KEY,
    },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
  };
}

export async function startS3Server(): Promise<S3Server> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'kloset-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', LAUNCHER, directory], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let port: number;
  try {
    port = await readPort(child);
    await waitForConnection('127.0.0.1', port);
  } catch (err) {
    child.kill('SIGKILL');
    await fs.rm(directory, { recursive: true, force: true });
    throw err;
  }
  const host = '127.0.0.1';
  const endpoint = `http://${host}:${port}`;
  const clients: S3Client[] = [];
  let stopped: Promise<void> | undefined;

  const server: S3Server = {
    endpoint,
    host,
    port,
    accessKey: S3RVER_ACCESS_KEY,
    secretKey: S3RVER_SECRET_KEY,
    region: S3RVER_REGION,
    directory,
    client(options = {}) {
      const client = new S3Client(s3ClientConfig(options.endpoint ?? endpoint, options));
      clients.push(client);
      return client;
    },
    async createBucket(name) {
      const client = server.client();
      try {
        await client.send(new CreateBucketCommand({ Bucket: name }));
      } catch (err) {
        const code = (err as { name?: string }).name;
        if (code !== 'BucketAlreadyOwnedByYou' && code !== 'BucketAlreadyExists') throw err;
      }
    },
    env(options = {}) {
      const url = options.endpoint ?? endpoint;
      return {
        AWS_ACCESS_KEY_ID: S3RVER_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY: S3RVER_SECRET_KEY,
        AWS_REGION: S3RVER_REGION,
        AWS_ENDPOINT_URL: url,
        KLOSET_S3_ENDPOINT: url,
      };
    },
    stop() {
      stopped ??= (async () => {
        for (const client of clients) client.destroy();
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exited;
          clearTimeout(timer);
        }
        await fs.rm(directory, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
  return server;
}

/** The launcher's first stdout line is {"port": N}; anything on stderr before that is the reason it failed. */
function readPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`s3rver did not start within ${START_TIMEOUT_MS} ms: ${err}`)), START_TIMEOUT_MS);
    const fail = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString('utf8');
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const newline = out.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      try {
        resolve((JSON.parse(out.slice(0, newline)) as { port: number }).port);
      } catch (error) {
        reject(new Error(`s3rver launcher printed ${JSON.stringify(out)}: ${String(error)}`));
      }
    });
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`s3rver exited (${code ?? signal}) before listening: ${err}`)));
  });
}

async function waitForConnection(host: string, port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`s3rver at ${host}:${port} does not accept connections`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Runs `use` with the address of `server` (an HTTP server, or a bare TCP one)
 * listening on loopback: an endpoint where something other than S3 answers.
 */
export async function withEndpointOf<T>(server: net.Server, use: (endpoint: string) => Promise<T>): Promise<T> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await use(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  } finally {
    server.close();
  }
}

let sandboxes = 0;
/**
 * A CLI with its own XDG_CONFIG_HOME and XDG_CACHE_HOME below `work`, so
 * aliases and caches do not leak between tests, and none of the AWS settings
 * of the machine it runs on.
 */
export async function s3Sandbox(work: string, extraEnv: NodeJS.ProcessEnv = {}) {
  const home = path.join(work, `sandbox-${++sandboxes}`);
  await fs.mkdir(home, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    XDG_CONFIG_HOME: path.join(home, 'config'),
    XDG_CACHE_HOME: path.join(home, 'cache'),
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: path.join(home, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(home, 'no-aws-credentials'),
    ...extraEnv,
  };
  return { home, env, kloset: klosetWith(env) };
}
