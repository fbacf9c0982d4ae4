/** Two snapshots compared: what was added, removed and changed between them. */
import { api, type DiffItem, type SnapshotSummary } from './client.js';
import { unreachable } from './browse.js';
import { button, clear, h } from './dom.js';
import { formatBytes, formatCount, formatDate, plural, shortId } from './format.js';
import { previousOf } from './list.js';
import { entryHref, href } from './nav.js';

function label(s: SnapshotSummary): string {
  return `${formatDate(s.time, true)} — ${shortId(s.id)} — ${s.source}${s.tags.length ? ` [${s.tags.join(',')}]` : ''}`;
}

function sideText(item: DiffItem, which: 'before' | 'after'): string {
  const side = item[which];
  if (!side) return '';
  return side.type === 'directory' ? `directory, ${plural(side.files ?? 0, 'file')}, ${formatBytes(side.size)}` : formatBytes(side.size);
}

export async function renderDiff(main: HTMLElement, route: { a?: string; b?: string; path?: string }): Promise<void> {
  const { snapshots } = await api.snapshots(); // newest first
  const find = (id?: string) => (id ? snapshots.find((s) => s.id.startsWith(id.toLowerCase())) : undefined);
  const b = find(route.b) ?? snapshots[0];
  const a = find(route.a) ?? (b ? (previousOf(snapshots, b) ?? snapshots.find((s) => s.id !== b.id)) : undefined);
  const options = (selected?: SnapshotSummary) => snapshots.map((s) => h('option', { value: s.id, selected: s.id === selected?.id }, label(s)));
  const selectA = h('select', { 'data-testid': 'diff-a', 'aria-label': 'Older snapshot' }, options(a));
  const selectB = h('select', { 'data-testid': 'diff-b', 'aria-label': 'Newer snapshot' }, options(b));
  const pathInput = h('input', { type: 'text', value: route.path ?? '/', 'aria-label': 'Path', placeholder: '/' });
  const results = h('div', { 'data-testid': 'diff-results' });
  const run = () => {
    location.hash = href({ view: 'diff', a: selectA.value, b: selectB.value, path: pathInput.value.trim() || '/' });
  };
  clear(
    main,
    h('div', { class: 'page-head' }, h('h1', null, 'Compare snapshots')),
    h(
      'form',
      { class: 'panel diff-form', onsubmit: (e: Event) => (e.preventDefault(), run()) },
      h('label', null, 'From (older)', selectA),
      h('label', null, 'To (newer)', selectB),
      h('label', null, 'Path', pathInput),
      button('Compare', run, { primary: true, icon: 'compare' }),
    ),
    results,
  );
  if (snapshots.length < 2) {
    results.append(h('p', { class: 'empty' }, 'Comparing needs two snapshots.'));
    return;
  }
  if (!route.b || !a || !b) return; // with only `b`, compare it with its predecessor
  results.append(h('p', { class: 'loading' }, 'Comparing…'));
  const diff = await api.diff(a.id, b.id, route.path ?? '/');
  const total = diff.counts.added + diff.counts.removed + diff.counts.changed;
  clear(
    results,
    h(
      'div',
      { class: 'summary-chips', 'data-testid': 'diff-summary' },
      h('span', { class: 'chip added' }, `+${formatCount(diff.counts.added)} added`),
      h('span', { class: 'chip removed' }, `−${formatCount(diff.counts.removed)} removed`),
      h('span', { class: 'chip changed' }, `~${formatCount(diff.counts.changed)} changed`),
      h('span', { class: 'sub' }, diff.truncated ? `showing the first ${formatCount(diff.items.length)} of ${formatCount(total)}` : ''),
    ),
    total === 0
      ? h('p', { class: 'empty' }, 'No differences.')
      : h(
          'div',
          { class: 'panel table-wrap' },
          h(
            'table',
            { class: 'grid', 'data-testid': 'diff-table' },
            h('thead', null, h('tr', null, h('th', null, 'Status'), h('th', null, 'Path'), h('th', { class: 'num' }, 'Before'), h('th', { class: 'num' }, 'After'), h('th', null, 'What changed'))),
            h(
              'tbody',
              null,
              diff.items.map((item) => {
                const side = item.status === 'removed' ? diff.a.id : diff.b.id;
                const type = (item.after ?? item.before)!.type;
                return h(
                  'tr',
                  { 'data-testid': 'diff-row', 'data-status': item.status, 'data-path': item.path },
                  h('td', null, h('span', { class: `badge ${item.status}` }, item.status)),
                  h('td', null, item.invalid_name ? unreachable(item.path) : h('a', { href: entryHref(side, item.path, type) }, item.path)),
                  h('td', { class: 'num' }, sideText(item, 'before')),
                  h('td', { class: 'num' }, sideText(item, 'after')),
                  h('td', { class: 'reasons' }, (item.reasons ?? []).join(', ')),
                );
              }),
            ),
          ),
        ),
  );
}
