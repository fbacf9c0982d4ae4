/** One entry: its metadata, a preview of its content, and what can be done with it. */
import { api, type FullEntry } from './client.js';
import { button, clear, h, linkButton } from './dom.js';
import { breadcrumbs, snapshotLine, typeIcon } from './browse.js';
import { formatBytes, formatCount, formatDate, plural } from './format.js';
import { href } from './nav.js';
import { openRestoreDialog } from './restore.js';

/** Bytes of a text file shown in its preview. */
export const TEXT_PREVIEW_BYTES = 256 * 1024;

function metaTable(rows: [string, string | number | undefined | Node][]): HTMLTableElement {
  return h(
    'table',
    null,
    h(
      'tbody',
      null,
      rows.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => h('tr', null, h('th', { scope: 'row' }, k), h('td', null, v instanceof Node ? v : String(v)))),
    ),
  );
}

function timeWithNs(iso: string | undefined, nsec?: number): string | undefined {
  if (!iso) return undefined;
  const base = formatDate(iso, true);
  return nsec ? `${base}.${String(nsec).padStart(9, '0')}` : base;
}

function details(e: FullEntry): HTMLElement {
  const rows: [string, string | number | undefined | Node][] = [
    ['Path', e.path],
    ['Type', e.type],
    ['Size', e.type === 'directory' ? `${formatBytes(e.size)} in ${plural(e.files ?? 0, 'file')}, ${plural(e.directories ?? 0, 'directory', 'directories')}` : `${formatBytes(e.size)} (${formatCount(e.size)} bytes)`],
    ['Mode', `${e.mode} (${e.mode_octal})`],
    ['Owner', `${e.user ?? e.uid} (${e.uid})`],
    ['Group', `${e.group ?? e.gid} (${e.gid})`],
    ['Modified', timeWithNs(e.mtime, e.mtime_nsec)],
    ['Changed', timeWithNs(e.ctime)],
    ['Accessed', timeWithNs(e.atime)],
    ['Link target', e.target],
    ['Inode', e.ino],
    ['Device', e.dev],
    ['Links', e.nlink],
    ['Rdev', e.type === 'device' ? e.rdev : undefined],
    ['Chunks', e.type === 'file' ? e.chunks : undefined],
    ['Served as', e.content_type],
  ];
  const meta = Object.entries(e.meta);
  return h(
    'section',
    { class: 'panel meta', 'data-testid': 'metadata' },
    h('h2', null, 'Details'),
    metaTable(rows),
    meta.length ? [h('h2', null, 'Recorded metadata'), metaTable(meta.map(([k, v]) => [k, v]))] : null,
    e.xattrs.length
      ? [h('h2', null, 'Extended attributes'), metaTable(e.xattrs.map((x) => [x.name, x.text !== undefined ? x.text : `base64: ${x.base64}`]))]
      : null,
  );
}

async function preview(e: FullEntry, signal: AbortSignal): Promise<HTMLElement> {
  const url = api.contentUrl(e.snapshot, e.path);
  const download = linkButton('Download', api.contentUrl(e.snapshot, e.path, true), { icon: 'download', download: true });
  const panel = h('section', { class: 'panel preview', 'data-testid': 'preview', 'data-kind': e.preview });
  const head = (text: string) => h('div', { class: 'preview-head' }, text);
  switch (e.preview) {
    case 'text': {
      const response = await fetch(url, { headers: { Range: `bytes=0-${TEXT_PREVIEW_BYTES - 1}` }, credentials: 'same-origin', signal });
      if (!response.ok && response.status !== 416) throw new Error(`preview: ${response.status} ${response.statusText}`);
      const text = response.status === 416 ? '' : new TextDecoder('utf-8').decode(await response.arrayBuffer());
      const note = e.size > TEXT_PREVIEW_BYTES ? `Text · first ${formatBytes(TEXT_PREVIEW_BYTES)} of ${formatBytes(e.size)}` : `Text · ${formatBytes(e.size)}`;
      panel.append(head(note), h('pre', { 'data-testid': 'text-preview' }, text));
      break;
    }
    case 'image':
      panel.append(head(`Image · ${e.content_type ?? ''}`), h('div', { class: 'media' }, h('img', { src: url, alt: e.name, 'data-testid': 'image-preview' })));
      break;
    case 'audio':
      panel.append(head(`Audio · ${e.content_type ?? ''}`), h('div', { class: 'media' }, h('audio', { src: url, controls: true, preload: 'metadata' })));
      break;
    case 'video':
      panel.append(head(`Video · ${e.content_type ?? ''}`), h('div', { class: 'media' }, h('video', { src: url, controls: true, preload: 'metadata' })));
      break;
    case 'pdf':
      panel.append(head('PDF'), h('iframe', { class: 'pdf', src: url, title: e.name }));
      break;
    default:
      panel.append(h('div', { class: 'nopreview' }, h('div', null, e.type === 'file' ? 'No preview for this kind of file.' : `A ${e.type} has no content to preview.`), e.type === 'file' ? download.cloneNode(true) : null));
  }
  return panel;
}

export async function renderFile(main: HTMLElement, id: string, path: string, signal: AbortSignal): Promise<void> {
  const e = await api.entry(id, path);
  const snapshot = await api.snapshot(e.snapshot);
  const isDir = e.type === 'directory';
  const actions = h('div', { class: 'actions' });
  if (isDir) {
    actions.append(
      linkButton('Browse', href({ view: 'browse', id: e.snapshot, path: e.path }), { icon: 'dir' }),
      linkButton('Download .tar', api.archiveUrl(e.snapshot, e.path), { icon: 'download', download: true }),
      linkButton('.zip', api.archiveUrl(e.snapshot, e.path, 'zip'), { download: true, title: 'as a zip archive' }),
    );
  } else if (e.type === 'file') {
    actions.append(linkButton('Download', api.contentUrl(e.snapshot, e.path, true), { icon: 'download', download: true, testid: 'download-file' }));
  }
  if (isDir || e.type === 'file' || e.type === 'symlink') actions.append(button('Restore…', () => openRestoreDialog(e.snapshot, e.path, e.type), { icon: 'restore' }));
  clear(
    main,
    h('div', { class: 'page-head' }, breadcrumbs(e.snapshot, e.path, !isDir), actions),
    snapshotLine(snapshot),
    h('div', { class: 'page-head' }, typeIcon(e.type), h('h1', { 'data-testid': 'entry-name' }, e.path === '/' ? 'snapshot root' : e.name)),
    h('div', { class: 'file-layout' }, isDir ? h('section', { class: 'panel preview' }, h('div', { class: 'nopreview' }, `${plural(e.files ?? 0, 'file')} in ${plural(e.directories ?? 0, 'directory', 'directories')}, ${formatBytes(e.size)}`)) : await preview(e, signal), details(e)),
  );
}
