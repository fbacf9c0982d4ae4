/**
 * The local store makes what it writes durable, not only atomic: a file
 * renamed into place, and a directory made for it, reach the disk with
 * their directory, or a power failure could keep a snapshot header and lose
 * the pack it needs. Watched with strace on a real backup.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, tempDir } from '../helpers/cli.js';
import { MiB, klosetWith, writeRandomFile } from '../helpers/fixtures.js';

const run = promisify(execFile);
let work: string;

/**
 * strace's lines with each call that another thread's call cut in two (`... <unfinished ...>`, later
 * `<... openat resumed>) = 5`) joined into one line where it began: which calls of the threads overlap
 * is a matter of timing, and a directory's openat cut so would not be seen.
 */
function joinResumed(lines: string[]): string[] {
  const joined: string[] = [];
  const unfinished = new Map<string, number>();
  for (const line of lines) {
    const begun = /^(\d+) (.*) <unfinished \.\.\.>$/.exec(line);
    const resumed = /^(\d+) <\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (begun) {
      unfinished.set(begun[1], joined.length);
      joined.push(`${begun[1]} ${begun[2]}`);
    } else if (resumed && unfinished.has(resumed[1])) {
      joined[unfinished.get(resumed[1])!] += resumed[2].replace(/\s+= /, ' = ');
      unfinished.delete(resumed[1]);
    } else {
      joined.push(line);
    }
  }
  return joined;
}

beforeAll(async () => {
  work = await tempDir('kloset-local-store-');
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('the local store', () => {
  it('syncs the directory of every file it renames into place or removes, and the parents of directories it makes', async () => {
    const store = path.join(work, 'store');
    const source = path.join(work, 'source');
    await fs.mkdir(source);
    await writeRandomFile(path.join(source, 'data.bin'), 3 * MiB);
    const env = { XDG_CACHE_HOME: path.join(work, 'cache') };
    expect((await klosetWith(env)(['at', store, 'create'])).code).toBe(0);
    const trace = path.join(work, 'trace');
    await run('strace', ['-f', '-qq', '-e', 'trace=openat,fsync,rename,unlink,mkdir', '-o', trace, BIN, 'at', store, 'backup', source], {
      env: { ...process.env, ...env, KLOSET_PASSPHRASE: 'test passphrase' },
    });
    const lines = joinResumed((await fs.readFile(trace, 'utf8')).split('\n'));
    /** Directories synced after line `from`: an openat of the directory, then an fsync of the descriptor it gave. */
    const syncedAfter = (from: number, dir: string): boolean => {
      for (let i = from + 1; i < lines.length; i++) {
        const opened = new RegExp(`openat\\(AT_FDCWD, "${dir}", [^)]*O_DIRECTORY[^)]*\\) = (\\d+)`).exec(lines[i]);
        if (!opened) continue;
        if (lines.slice(i + 1).some((line) => line.includes(`fsync(${opened[1]})`))) return true;
      }
      return false;
    };
    const changes: { line: number; dir: string; what: string }[] = [];
    lines.forEach((line, i) => {
      const renamed = /rename\("[^"]*", "([^"]+)"\) = 0/.exec(line);
      if (renamed?.[1].startsWith(store)) changes.push({ line: i, dir: path.dirname(renamed[1]), what: `rename to ${renamed[1]}` });
      const removed = /unlink\("([^"]+)"\) = 0/.exec(line);
      if (removed?.[1].startsWith(store) && !/\.tmp-/.test(removed[1])) changes.push({ line: i, dir: path.dirname(removed[1]), what: `unlink of ${removed[1]}` });
      const made = /mkdir\("([^"]+)", \d+\) = 0/.exec(line);
      if (made?.[1].startsWith(store)) changes.push({ line: i, dir: path.dirname(made[1]), what: `mkdir of ${made[1]}` });
    });
    expect(changes.filter((c) => c.what.includes('/packs/')).length).toBeGreaterThan(0);
    expect(changes.filter((c) => c.what.startsWith('mkdir')).length).toBeGreaterThan(0);
    expect(changes.filter((c) => !syncedAfter(c.line, c.dir)).map((c) => c.what)).toEqual([]);
  });
});
