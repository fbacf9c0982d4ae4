// Runs s3rver in its own process for the tests: node --openssl-legacy-provider
// test/helpers/s3rver-launcher.mjs <directory>. It listens on 127.0.0.1 at a
// port the kernel picks and prints one JSON line {"port": N} once it accepts
// connections. It stops on SIGTERM/SIGINT or when its parent closes stdin.
import S3rver from 's3rver';

const directory = process.argv[2];
if (!directory) {
  process.stderr.write('usage: s3rver-launcher.mjs <directory>\n');
  process.exit(2);
}

const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true });
const address = await server.run();
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
