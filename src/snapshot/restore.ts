import { checkEntryName, type Exporter } from '../connectors/exporter.js';
import { joinPath } from '../connectors/importer.js';
import type { SnapshotReader } from './reader.js';
import type { Entry } from './tree.js';

export interface RestoreOptions {
  onWarning?: (path: string, message: string) => void;
  onProgress?: (progress: { files: number; bytes: number; errors: number }) => void;
  /** Files written at once. */
  concurrency?: number;
}

export interface RestoreResult {
  files: number;
  directories: number;
  bytes: number;
  errors: number;
}

/**
 * Restores `entry` (a directory's contents, or one file) into the exporter.
 * A file that cannot be read (a damaged chunk) is reported and skipped; the
 * rest is restored.
 */
export async function restore(
  reader: SnapshotReader,
  entry: Entry,
  sourcePath: string,
  exporter: Exporter,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  const result: RestoreResult = { files: 0, directories: 0, bytes: 0, errors: 0 };
  const limit = options.concurrency ?? 8;
  const running = new Set<Promise<void>>();
  const shown = (rel: string) => '/' + [sourcePath.replace(/^\/+|\/+$/g, ''), rel].filter(Boolean).join('/');
  const fail = (rel: string, err: unknown) => {
    result.errors++;
    options.onWarning?.(shown(rel), err instanceof Error ? err.message : String(err));
    options.onProgress?.({ files: result.files, bytes: result.bytes, errors: result.errors });
  };

  const restoreFile = async (rel: string, file: Entry) => {
    try {
      const content = await reader.openFile(file);
      await exporter.writeFile(rel, file, content.stream());
      result.files++;
      result.bytes += file.size;
      options.onProgress?.({ files: result.files, bytes: result.bytes, errors: result.errors });
    } catch (err) {
      fail(rel, err);
    }
  };

  const schedule = async (task: Promise<void>) => {
    running.add(task);
    void task.finally(() => running.delete(task));
    while (running.size >= limit) await Promise.race(running);
  };

  const walk = async (rel: string, dir: Entry): Promise<void> => {
    try {
      await exporter.createDirectory(rel, dir);
    } catch (err) {
      fail(rel, err);
      return;
    }
    const pendingHere = new Set<Promise<void>>();
    try {
      for await (const child of reader.children(dir)) {
        const problem = checkEntryName(child.name);
        if (problem) {
          fail(rel, new Error(problem));
          continue;
        }
        const childRel = joinPath(rel, child.name);
        if (child.kind === 'directory') await walk(childRel, child);
        else if (child.kind === 'file') {
          const task = restoreFile(childRel, child);
          pendingHere.add(task);
          await schedule(task);
        } else {
          await exporter.createSpecial(childRel, child).catch((err) => fail(childRel, err));
        }
      }
    } catch (err) {
      fail(rel, err);
    }
    await Promise.all(pendingHere);
    result.directories++;
    await exporter.finishDirectory(rel, dir).catch((err) => fail(rel, err));
  };

  if (entry.kind === 'directory') await walk('', entry);
  else if (entry.kind === 'file') {
    const problem = checkEntryName(entry.name);
    if (problem) fail('', new Error(problem));
    else {
      await exporter.createDirectory('', entry).catch(() => undefined);
      await restoreFile(entry.name, entry);
    }
  } else await exporter.createSpecial(entry.name, entry);
  await Promise.all(running);
  return result;
}
