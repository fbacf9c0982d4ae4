import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { KlosetError } from '../../errors.js';
import type { Entry, Timespec } from '../../snapshot/tree.js';
import type { Exporter } from '../exporter.js';
import { writeXattrs } from './xattrs.js';

const asDate = (t: Timespec) => t.sec + t.nsec / 1e9;

/**
 * Restores into a local directory. Never follows a link it did not make:
 * directories are verified with lstat, files opened with O_NOFOLLOW, so a
 * symlink planted in the target cannot redirect a write outside it.
 */
export class FsExporter implements Exporter {
  readonly target: string;
  private readonly asRoot = process.getuid?.() === 0;

  constructor(target: string) {
    this.target = path.resolve(target);
  }

  private full(rel: string): string {
    const full = rel === '' ? this.target : path.join(this.target, rel);
    if (full !== this.target && !full.startsWith(this.target + path.sep)) {
      throw new KlosetError(`${rel}: refusing to write outside ${this.target}`);
    }
    return full;
  }

  async createDirectory(rel: string): Promise<void> {
    const full = this.full(rel);
    try {
      // The target itself may need its parents; below it, each level is made (and checked) in turn.
      if (rel === '') await fs.mkdir(full, { recursive: true, mode: 0o700 });
      else await fs.mkdir(full, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const stat = await fs.lstat(full);
      if (!stat.isDirectory()) throw new KlosetError(`${full}: exists and is not a directory`);
    }
  }

  async writeFile(rel: string, entry: Entry, content: AsyncIterable<Buffer>): Promise<void> {
    const full = this.full(rel);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
    const handle = await fs.open(full, flags, 0o600);
    try {
      for await (const data of content) await handle.write(data);
    } catch (err) {
      await handle.close();
      await fs.rm(full, { force: true }); // no half-restored file left looking whole
      throw err;
    }
    await handle.close();
    await this.applyMetadata(full, entry);
  }

  async createSpecial(rel: string, entry: Entry): Promise<void> {
    const full = this.full(rel);
    if (entry.kind === 'symlink' && entry.target !== undefined) {
      await fs.rm(full, { force: true });
      await fs.symlink(entry.target, full);
      if (this.asRoot) await fs.lchown(full, entry.uid, entry.gid).catch(() => undefined);
      await fs.lutimes(full, asDate(entry.atime ?? entry.mtime), asDate(entry.mtime)).catch(() => undefined);
    }
    // Devices, FIFOs and sockets are recorded in the snapshot but not recreated.
  }

  async finishDirectory(rel: string, entry: Entry): Promise<void> {
    await this.applyMetadata(this.full(rel), entry);
  }

  private async applyMetadata(full: string, entry: Entry): Promise<void> {
    if (entry.xattrs) writeXattrs(full, entry.xattrs);
    if (this.asRoot) await fs.chown(full, entry.uid, entry.gid).catch(() => undefined);
    await fs.chmod(full, entry.mode & 0o7777);
    await fs.utimes(full, asDate(entry.atime ?? entry.mtime), asDate(entry.mtime));
  }

  async close(): Promise<void> {}
}
