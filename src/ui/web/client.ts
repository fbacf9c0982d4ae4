/** The viewer's JSON API as the page calls it (see src/ui/API.md). */

// The server's own declarations, for the types both sides share: type-only imports, gone from the page's script.
import type { SnapshotSummary } from '../../snapshot/header.js';
import type { DiffItem, DiffSide } from '../../snapshot/diff.js';
import type { StoreTotals } from '../catalog.js';
import type { RestoreJob } from '../restorejobs.js';

export type { DiffItem, DiffSide, RestoreJob, SnapshotSummary, StoreTotals };

export type EntryType = 'file' | 'directory' | 'symlink' | 'device' | 'fifo' | 'socket';

export interface ListedEntry {
  name: string;
  path: string;
  type: EntryType;
  size: number;
  mtime?: string;
  mode: string;
  user: string;
  group: string;
  target?: string;
  files?: number;
  directories?: number;
  /** A name no directory can hold, quoted in `name` and `path`: no path names the entry. */
  invalid_name?: true;
}

export interface FullEntry extends ListedEntry {
  snapshot: string;
  mode_octal: string;
  uid: number;
  gid: number;
  mtime_nsec: number;
  ctime?: string;
  atime?: string;
  ino?: number;
  dev?: number;
  nlink?: number;
  rdev?: number;
  chunks: number;
  xattrs: { name: string; size: number; text?: string; base64: string }[];
  meta: Record<string, string>;
  preview: 'text' | 'image' | 'audio' | 'video' | 'pdf' | 'none';
  content_type?: string;
}

export interface TreePage {
  snapshot: string;
  path: string;
  total: number;
  offset: number;
  limit: number;
  entries: ListedEntry[];
}

export interface DiffResult {
  a: SnapshotSummary;
  b: SnapshotSummary;
  path: string;
  counts: { added: number; removed: number; changed: number };
  items: DiffItem[];
  truncated: boolean;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function check(response: Response): Promise<Response> {
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.json()) as { error?: string };
    if (body.error) message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(response.status, message);
}

export async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const response = await check(await fetch(url, { signal, credentials: 'same-origin' }));
  return (await response.json()) as T;
}

export async function postJson<T>(url: string, body: unknown): Promise<T> {
  const response = await check(
    await fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) }),
  );
  return (await response.json()) as T;
}

const q = (params: Record<string, string | number | undefined>) =>
  Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`)
    .join('&');

const snap = (id: string) => `/api/snapshots/${encodeURIComponent(id)}`;

export const api = {
  snapshots: () => getJson<{ store: StoreTotals; snapshots: SnapshotSummary[] }>('/api/snapshots'),
  snapshot: (id: string) => getJson<SnapshotSummary & { root: ListedEntry }>(snap(id)),
  tree: (id: string, path: string, offset: number, limit: number, signal?: AbortSignal) =>
    getJson<TreePage>(`${snap(id)}/tree?${q({ path, offset, limit })}`, signal),
  entry: (id: string, path: string) => getJson<FullEntry>(`${snap(id)}/entry?${q({ path })}`),
  contentUrl: (id: string, path: string, download = false) => `${snap(id)}/content?${q({ path, download: download ? 1 : undefined })}`,
  archiveUrl: (id: string, path: string, format: 'tar' | 'zip' = 'tar') => `${snap(id)}/archive?${q({ path, format: format === 'zip' ? 'zip' : undefined })}`,
  diff: (a: string, b: string, path: string) => getJson<DiffResult>(`/api/diff?${q({ a, b, path })}`),
  destinations: () => getJson<{ destinations: { name: string; location: string }[] }>('/api/destinations'),
  restore: (snapshot: string, path: string, destination: string) => postJson<RestoreJob>('/api/restore', { snapshot, path, destination }),
  job: (id: string) => getJson<RestoreJob>(`/api/restore/${encodeURIComponent(id)}`),
};
