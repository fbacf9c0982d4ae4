import { promises as fs } from 'node:fs';
import path from 'node:path';
import { exactForm } from '../snapshot/names.js';

/**
 * `mkdir -p`: makes `dir` and the parents it lacks, and returns the first
 * directory it made (undefined when `dir` existed), as Node's recursive
 * mkdir does. That one reports a read-only file system as ENOENT, and never
 * returns under /proc, where mkdir fails with ENOENT below a directory that
 * exists; here each level is made in turn, and the error is the real one.
 * A path that is not UTF-8 text (a restore's target typed so) is made with
 * its bytes (exactForm).
 */
export async function makeDirectories(dir: string, mode = 0o777): Promise<string | undefined> {
  try {
    await fs.mkdir(exactForm(dir), { mode });
    return dir;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return existingDirectory(dir, err);
    const parent = path.dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw err;
    const first = await makeDirectories(parent, mode);
    try {
      await fs.mkdir(exactForm(dir), { mode });
    } catch (again) {
      if ((again as NodeJS.ErrnoException).code === 'EEXIST') return existingDirectory(dir, again, first);
      throw again;
    }
    return first ?? dir;
  }
}

async function existingDirectory(dir: string, err: unknown, first?: string): Promise<string | undefined> {
  if (!(await fs.stat(exactForm(dir))).isDirectory()) throw err;
  return first;
}
