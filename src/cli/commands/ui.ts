import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Command } from 'commander';
import { childEnvironment } from '../../childenv.js';
import type { CliContext, Run } from '../context.js';
import { ABANDON_TIMEOUT_MS } from './snapshots.js';

interface UiFlags {
  addr: string;
  spawn: boolean;
}

/**
 * Opens the page in the desktop's browser, where there is one. The browser
 * gets a private file that redirects to the URL, not the URL itself: a
 * command line is visible to every user of the machine, the token must not be.
 */
async function openBrowser(url: string): Promise<(() => Promise<void>) | undefined> {
  const opener =
    process.platform === 'darwin' ? 'open' : process.platform === 'linux' && (process.env.DISPLAY || process.env.WAYLAND_DISPLAY) ? 'xdg-open' : undefined;
  if (!opener) return undefined;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kloset-ui-'));
  const file = path.join(dir, 'open.html');
  const target = url.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
  await fs.writeFile(
    file,
    `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${target}"><title>kloset</title><p><a href="${target}">Open the kloset viewer</a></p>\n`,
    { mode: 0o600 },
  );
  const child = spawn(opener, [file], { detached: true, stdio: 'ignore', env: childEnvironment() });
  child.on('error', () => undefined); // no opener installed: the URL is printed anyway
  child.unref();
  return () => fs.rm(dir, { recursive: true, force: true });
}

export function registerUiCommand(program: Command, context: () => CliContext, run: Run): void {
  program
    .command('ui')
    .description('browse, download and restore snapshots in a web page served on this machine')
    .option('--addr <host:port>', 'where to listen: a loopback address only', '127.0.0.1:0')
    .option('--no-spawn', 'do not open a browser')
    .action((flags: UiFlags) =>
      run(async () => {
        const ctx = context();
        // The server and its pages load for this command only.
        const { parseAddress, startUiServer } = await import('../../ui/server.js');
        const { host, port } = parseAddress(flags.addr);
        // Held while serving: a prune must not remove what a page may still read.
        const { repository, lock } = await ctx.lockedRepository('shared', 'the viewer', { reader: true });
        try {
          const server = await startUiServer({
            repository,
            aliases: ctx.aliases,
            host,
            port,
            log: (line) => ctx.err(`kloset: ui: ${line}`),
          });
          // Listening for Ctrl-C before the URL is out: whoever reads it may stop us at once.
          const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
          const stopped = new Promise<void>((resolve) => {
            const stop = () => {
              for (const signal of signals) process.off(signal, stop);
              resolve();
            };
            for (const signal of signals) process.on(signal, stop);
          });
          ctx.out(`kloset ui: serving ${repository.store.location} at ${server.url}`);
          ctx.info('press Ctrl-C to stop');
          const cleanup = flags.spawn ? await openBrowser(server.url).catch(() => undefined) : undefined;
          await stopped;
          await server.close();
          await cleanup?.();
          const running = server.runningRestores();
          if (running > 0) {
            // A second Ctrl-C stops the restores as it stops `kloset restore`: what is half written
            // is removed, not left looking whole. A third, with no handler left, ends the process at once.
            let interrupted: Promise<never> | undefined;
            const abort = () => {
              for (const signal of signals) process.off(signal, abort);
              const cleanUp = server
                .abandon()
                .then(() => lock?.release())
                .catch(() => undefined);
              interrupted = Promise.race([cleanUp, delay(ABANDON_TIMEOUT_MS)]).then(() => {
                ctx.err(`kloset ui: restore interrupted: ${running} restore${running > 1 ? 's' : ''} stopped; none is left half written`);
                return process.exit(130);
              });
            };
            for (const signal of signals) process.on(signal, abort);
            ctx.info(`kloset ui: waiting for ${running} restore${running > 1 ? 's' : ''} to finish (Ctrl-C again to abort)`);
            await server.settle();
            for (const signal of signals) process.off(signal, abort);
            // Abandoned restores end on their own: the process ends there, not as if they had finished.
            if (interrupted) await interrupted;
          }
          ctx.info('kloset ui: stopped');
        } finally {
          await ctx.release(lock);
        }
      }),
    );
}
