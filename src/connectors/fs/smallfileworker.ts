import { parentPort, workerData } from 'node:worker_threads';
import { writeWholeFile } from './filewrite.js';
import type { SmallFileBatch, SmallFileFailure } from './smallfiles.js';

/** Set by the exporter when the restore stops: no file is started after it. */
const stopping = new Int32Array(workerData.stopping as SharedArrayBuffer);

parentPort!.on('message', (batch: SmallFileBatch) => {
  const failures = batch.files.map((file): SmallFileFailure | null => {
    if (Atomics.load(stopping, 0) !== 0) return { message: `${file.rel}: not written, the restore is stopping` };
    try {
      writeWholeFile(file.at, file.metadata, Buffer.from(batch.data, file.offset, file.length), batch.settings);
      return null;
    } catch (err) {
      return { message: err instanceof Error ? err.message : String(err), code: (err as NodeJS.ErrnoException).code };
    }
  });
  parentPort!.postMessage({ id: batch.id, failures });
});
