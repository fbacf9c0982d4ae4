/**
 * A snapshot as a file system: breadcrumbs, then the directory as a
 * virtual list. Only the rows in view exist in the page, and the entries
 * come from the API a page at a time, so a directory of 100,000 entries
 * scrolls like one of ten.
 */
import { ApiError, api, type ListedEntry, type SnapshotSummary } from './client.js';
import { clear, h, icon, linkButton, button } from './dom.js';
import { formatBytes, formatCount, formatDate, shortId } from './format.js';
import { entryHref, href } from './nav.js';
import { openRestoreDialog } from './restore.js';

const ROW = 34; // px, as --row in app.css
const PAGE = 200;
const OVERSCAN = 12;
/** Browsers cap an element's height (Chromium near 33.5 million px): past this, scrolling is scaled. */
const MAX_HEIGHT = 15_000_000;

export function typeIcon(type: string): SVGSVGElement {
  return type === 'directory' ? icon('dir', 'dir') : type === 'symlink' ? icon('link', 'link') : type === 'file' ? icon('file', 'file') : icon('other', 'file');
}

/** `snapshot / a / b`, each part a link but the last. */
export function breadcrumbs(id: string, path: string, lastIsFile = false): HTMLElement {
  const parts = path.split('/').filter(Boolean);
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'Path', 'data-testid': 'breadcrumbs' });
  const root = h('a', { href: href({ view: 'browse', id, path: '/' }), class: 'id', title: id }, shortId(id));
  nav.append(parts.length === 0 ? h('span', { class: 'current id' }, shortId(id)) : root);
  parts.forEach((part, i) => {
    nav.append(h('span', { class: 'sep' }, '/'));
    const target = '/' + parts.slice(0, i + 1).join('/');
    const last = i === parts.length - 1;
    nav.append(last ? h('span', { class: 'current' }, part) : h('a', { href: entryHref(id, target, last && lastIsFile ? 'file' : 'directory') }, part));
  });
  return nav;
}

export function snapshotLine(s: SnapshotSummary): HTMLElement {
  return h('div', { class: 'sub' }, `${formatDate(s.time, true)} · ${s.host} · ${s.source}`, s.tags.length ? ' · ' : '', s.tags.map((t) => h('span', { class: 'tag' }, t)));
}

/** A name no directory can hold (forged: '..', 'a/b'), shown quoted as the API gives it, and linked nowhere. */
export function unreachable(text: string): HTMLElement {
  return h('span', { class: 'invalid-name', title: 'a name no directory can hold: left out of restores and archives' }, text);
}

function row(id: string, e: ListedEntry | undefined, top: number): HTMLElement {
  const el = h('div', { class: e ? 'vrow' : 'vrow placeholder', 'data-testid': e ? 'entry-row' : undefined, 'data-name': e?.name });
  el.style.top = `${top}px`;
  if (!e) {
    el.append(h('div', { class: 'name' }, '…'));
    return el;
  }
  el.append(
    h(
      'div',
      { class: 'name' },
      typeIcon(e.type),
      e.invalid_name ? unreachable(e.name) : h('a', { href: entryHref(id, e.path, e.type), title: e.name }, e.name),
      e.type === 'symlink' && e.target !== undefined ? h('span', { class: 'target', title: e.target }, `→ ${e.target}`) : null,
    ),
    h('div', { class: 'num', title: `${formatCount(e.size)} bytes` }, formatBytes(e.size)),
    h('div', { class: 'when' }, formatDate(e.mtime)),
    h('div', { class: 'mode' }, e.mode),
  );
  return el;
}

/**
 * The rows in view of `total`, drawn from pages fetched on demand. Up to
 * MAX_HEIGHT the list is as tall as its rows; a longer one maps the scroll
 * position onto the rows proportionally, so its end stays reachable.
 */
class VirtualList {
  private readonly pages = new Map<number, ListedEntry[] | Promise<void>>();
  private frame = 0;

  constructor(
    private readonly scroller: HTMLElement,
    private readonly spacer: HTMLElement,
    private readonly total: number,
    private readonly fetchPage: (index: number) => Promise<ListedEntry[]>,
    private readonly draw: (entry: ListedEntry | undefined, top: number) => HTMLElement,
    private readonly signal: AbortSignal,
    first: ListedEntry[],
  ) {
    this.pages.set(0, first);
    spacer.style.height = `${Math.min(total * ROW, MAX_HEIGHT)}px`;
    scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
    const onResize = () => this.schedule();
    window.addEventListener('resize', onResize);
    signal.addEventListener('abort', () => window.removeEventListener('resize', onResize));
    this.update();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.update();
    });
  }

  private update(): void {
    if (this.signal.aborted) return;
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const content = this.total * ROW;
    const shown = Math.min(content, MAX_HEIGHT);
    const scale = shown > height ? Math.max(1, (content - height) / (shown - height)) : 1;
    const virtualTop = top * scale;
    const first = Math.max(0, Math.floor(virtualTop / ROW) - OVERSCAN);
    const last = Math.min(this.total - 1, Math.ceil((virtualTop + height) / ROW) + OVERSCAN);
    const rows: HTMLElement[] = [];
    for (let i = first; i <= last; i++) {
      const page = this.pages.get(Math.floor(i / PAGE));
      rows.push(this.draw(Array.isArray(page) ? page[i % PAGE] : undefined, top + i * ROW - virtualTop));
    }
    this.spacer.replaceChildren(...rows);
    for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p++) {
      if (this.pages.has(p)) continue;
      this.pages.set(
        p,
        this.fetchPage(p).then(
          (entries) => {
            this.pages.set(p, entries);
            this.schedule();
          },
          () => {
            this.pages.delete(p);
          },
        ),
      );
    }
  }
}

export async function renderBrowse(main: HTMLElement, id: string, path: string, signal: AbortSignal): Promise<void> {
  let first;
  try {
    first = await api.tree(id, path, 0, PAGE, signal);
  } catch (err) {
    // A path that names a file: show the file.
    if (err instanceof ApiError && err.status === 400 && /not a directory/.test(err.message)) {
      location.replace(href({ view: 'file', id, path }));
      return;
    }
    throw err;
  }
  const snapshot = await api.snapshot(first.snapshot);
  const full = snapshot.id;
  const scroller = h('div', { class: 'vscroll', 'data-testid': 'entries' });
  const spacer = h('div', { class: 'vspacer' });
  scroller.append(spacer);
  const name = path === '/' ? `snapshot ${shortId(full)}` : path.split('/').filter(Boolean).pop()!;
  clear(
    main,
    h(
      'div',
      { class: 'page-head' },
      breadcrumbs(full, path),
      h(
        'div',
        { class: 'actions' },
        linkButton('Details', href({ view: 'file', id: full, path }), { icon: 'info' }),
        linkButton('Download .tar', api.archiveUrl(full, path), { icon: 'download', download: true, title: `${name} as a tar archive`, testid: 'download-archive' }),
        linkButton('.zip', api.archiveUrl(full, path, 'zip'), { download: true, title: `${name} as a zip archive`, testid: 'download-zip' }),
        button('Restore…', () => openRestoreDialog(full, path, 'directory'), { icon: 'restore' }),
        linkButton('Compare', href({ view: 'diff', b: full }), { icon: 'compare' }),
      ),
    ),
    snapshotLine(snapshot),
    h(
      'section',
      { class: 'panel vlist' },
      h('div', { class: 'vhead' }, h('div', null, 'Name'), h('div', { class: 'num' }, 'Size'), h('div', null, 'Modified'), h('div', null, 'Mode')),
      scroller,
      h(
        'div',
        { class: 'status-line', 'data-testid': 'entry-count' },
        first.total === 0 ? 'Empty directory' : `${formatCount(first.total)} ${first.total === 1 ? 'entry' : 'entries'} · directories first, then by name`,
      ),
    ),
  );
  new VirtualList(scroller, spacer, first.total, async (page) => (await api.tree(full, path, page * PAGE, PAGE, signal)).entries, (e, top) => row(full, e, top), signal, first.entries);
}
