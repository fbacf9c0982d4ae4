import { formatBytes, formatDuration, plural } from './format.js';

/**
 * A one-line progress display on stderr, redrawn at most every 250 ms, shown
 * only when stderr is a terminal: logs and pipes get just the final summary.
 */
export class ProgressLine {
  private readonly started = Date.now();
  private last = 0;
  private shown = false;
  private readonly enabled: boolean;

  constructor(
    private readonly verb: string,
    private totalBytes?: number,
    /** What `files` counts. */
    private readonly unit = 'files',
    enabled = process.stderr.isTTY === true,
  ) {
    this.enabled = enabled;
  }

  /** Whether a line is drawn at all: estimates that cost work are worth making only then. */
  get shownOnTerminal(): boolean {
    return this.enabled;
  }

  /** The total, once known (a scan that finished), for the percentage and ETA. */
  setTotal(bytes: number): void {
    this.totalBytes = bytes;
  }

  update(state: { files: number; bytes: number; errors: number }): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 250) return;
    this.last = now;
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const rate = state.bytes / seconds;
    let line = `${this.verb}: ${state.files} ${this.unit}, ${formatBytes(state.bytes)}, ${formatBytes(rate)}/s`;
    // An estimate the work has outgrown (files grew, the scan is still running) shows no ETA.
    if (this.totalBytes && rate > 0 && state.bytes <= this.totalBytes) {
      const percent = Math.min(100, (100 * state.bytes) / this.totalBytes);
      const eta = ((this.totalBytes - state.bytes) / rate) * 1000;
      line += `, ${percent.toFixed(0)}%, ETA ${formatDuration(Math.max(0, Math.round(eta)))}`;
    }
    if (state.errors) line += `, ${plural(state.errors, 'error')}`;
    process.stderr.write(`\r\x1b[K${line}`);
    this.shown = true;
  }

  /** A step of work measured in steps, not bytes (prune: marking, repacking, deleting). */
  note(step: string): void {
    if (!this.enabled) return;
    process.stderr.write(`\r\x1b[K${this.verb}: ${step}`);
    this.shown = true;
  }

  /** Clears the line so the summary or a warning starts on a clean line. */
  clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
