import { isBlockDevice } from '../snapshot/tree.js';

// One definition of sizes for the terminal and the viewer's page, kept with the page's code because only its own folder is served to the browser.
export { formatBytes } from '../ui/web/format.js';

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function shortId(id: Buffer): string {
  return id.toString('hex').slice(0, 8);
}

/** ISO-like local time without milliseconds, as `ls` shows it. */
export function formatTime(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** `ls -l` style mode string from st_mode. */
export function formatMode(mode: number, kind: string): string {
  const type = isBlockDevice({ kind, mode }) ? 'b' : ({ directory: 'd', symlink: 'l', device: 'c', fifo: 'p', socket: 's', file: '-' }[kind] ?? '?');
  const bits = 'rwxrwxrwx';
  let out = type;
  for (let i = 0; i < 9; i++) out += mode & (1 << (8 - i)) ? bits[i] : '-';
  // Set-user-ID, set-group-ID and sticky bits over the execute bits, as ls -l shows them (s/S, s/S, t/T).
  const special = (at: number, bit: number, letter: string) => {
    if (!(mode & bit)) return;
    const executable = out[at] !== '-';
    out = out.slice(0, at) + (executable ? letter : letter.toUpperCase()) + out.slice(at + 1);
  };
  special(3, 0o4000, 's');
  special(6, 0o2000, 's');
  special(9, 0o1000, 't');
  return out;
}

/** "1 snapshot", "2 snapshots". */
export function plural(count: number, noun: string, nouns = `${noun}s`): string {
  return `${count} ${count === 1 ? noun : nouns}`;
}
