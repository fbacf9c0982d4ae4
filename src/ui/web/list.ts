/** The snapshot list: the store's totals, then every snapshot, sortable and filterable. */
import { api, type SnapshotSummary, type StoreTotals } from './client.js';
import { clear, h, icon } from './dom.js';
import { formatBytes, formatCount, formatDate, ratio, shortId } from './format.js';
import { href } from './nav.js';

type SortKey = 'time' | 'id' | 'source' | 'host' | 'size' | 'files' | 'tags';

const COLUMNS: { key: SortKey; label: string; num?: boolean }[] = [
  { key: 'time', label: 'Date' },
  { key: 'id', label: 'ID' },
  { key: 'source', label: 'Source' },
  { key: 'host', label: 'Host' },
  { key: 'size', label: 'Size', num: true },
  { key: 'files', label: 'Files', num: true },
  { key: 'tags', label: 'Tags' },
];

function sortValue(s: SnapshotSummary, key: SortKey): string | number {
  switch (key) {
    case 'time':
      return s.time;
    case 'id':
      return s.id;
    case 'tags':
      return s.tags.join(',');
    default:
      return s[key];
  }
}

/** The snapshot taken before `s` of the same source, to compare with. */
export function previousOf(all: SnapshotSummary[], s: SnapshotSummary): SnapshotSummary | undefined {
  return all
    .filter((o) => o.id !== s.id && o.importer === s.importer && o.origin === s.origin && o.source === s.source && o.time < s.time)
    .sort((x, y) => (x.time < y.time ? 1 : -1))[0];
}

function card(label: string, value: string, title?: string, small = false): HTMLElement {
  return h('div', { class: 'card', title }, h('div', { class: 'label' }, label), h('div', { class: small ? 'value small' : 'value' }, value));
}

function totals(store: StoreTotals): HTMLElement {
  return h(
    'section',
    { class: 'cards', 'data-testid': 'store-totals' },
    card('Snapshots', formatCount(store.snapshots)),
    card('Logical size', formatBytes(store.logical_size), `${formatCount(store.logical_size)} bytes in all snapshots`),
    card('Stored size', formatBytes(store.stored_size), `${formatCount(store.stored_size)} bytes in ${formatCount(store.packs)} packs`),
    card('Dedup ratio', ratio(store.dedup_ratio), 'logical size / unique data'),
    card('Compression', ratio(store.compression_ratio), 'unique data / stored size'),
    card('Encryption', store.encryption.split(',')[0], `${store.encryption}; ${store.compression}`, true),
  );
}

export async function renderList(main: HTMLElement): Promise<void> {
  const { store, snapshots } = await api.snapshots();
  let sortKey: SortKey = 'time';
  let descending = true;
  let filter = '';

  const tbody = h('tbody');
  const count = h('span', { class: 'count' });
  const headRow = h('tr');
  const filterInput = h('input', {
    type: 'search',
    placeholder: 'Filter by id, source, host or tag…',
    'aria-label': 'Filter snapshots',
    'data-testid': 'snapshot-filter',
    oninput: () => {
      filter = filterInput.value.trim().toLowerCase();
      draw();
    },
  });

  const sortBy = (key: SortKey) => {
    if (sortKey === key) descending = !descending;
    else {
      sortKey = key;
      descending = key === 'time' || key === 'size' || key === 'files';
    }
    draw();
    (headRow.querySelector(`[data-sort=${key}]`) as HTMLElement | null)?.focus();
  };

  const drawHead = () => {
    clear(
      headRow,
      COLUMNS.map((c) =>
        h(
          'th',
          {
            class: c.num ? 'sortable num' : 'sortable',
            'aria-sort': c.key === sortKey ? (descending ? 'descending' : 'ascending') : undefined,
            tabindex: 0,
            'data-sort': c.key,
            onclick: () => sortBy(c.key),
            onkeydown: (e: Event) => {
              const key = (e as KeyboardEvent).key;
              if (key === 'Enter' || key === ' ') {
                e.preventDefault();
                sortBy(c.key);
              }
            },
          },
          c.label,
        ),
      ),
      h('th', null, ''),
    );
  };

  const draw = () => {
    drawHead();
    const shown = snapshots
      .filter((s) => !filter || [s.id, s.source, s.host, s.user, s.origin, ...s.tags].some((v) => v.toLowerCase().includes(filter)))
      .sort((a, b) => {
        const x = sortValue(a, sortKey);
        const y = sortValue(b, sortKey);
        const order = x < y ? -1 : x > y ? 1 : a.time < b.time ? -1 : 1;
        return descending ? -order : order;
      });
    count.textContent = filter ? `${shown.length} of ${snapshots.length} snapshots` : `${snapshots.length} snapshots`;
    clear(
      tbody,
      shown.length === 0
        ? h('tr', null, h('td', { colspan: 8, class: 'empty' }, snapshots.length ? 'No snapshot matches the filter.' : 'The store has no snapshot yet.'))
        : shown.map((s) => {
            const browse = href({ view: 'browse', id: s.id, path: '/' });
            const previous = previousOf(snapshots, s);
            return h(
              'tr',
              { class: 'clickable', 'data-testid': 'snapshot-row', 'data-id': s.id, onclick: (e: Event) => {
                if (!(e.target as Element).closest('a')) location.hash = browse;
              } },
              h('td', null, formatDate(s.time, true)),
              h('td', null, h('a', { class: 'id', href: browse, title: s.id }, shortId(s.id))),
              h('td', { title: `${s.importer}: ${s.origin}` }, s.source),
              h('td', null, s.host),
              h('td', { class: 'num', title: `${formatCount(s.size)} bytes` }, formatBytes(s.size)),
              h('td', { class: 'num' }, formatCount(s.files)),
              h('td', null, s.tags.map((t) => h('span', { class: 'tag' }, t))),
              h('td', { class: 'num' }, previous ? h('a', { class: 'icon-link', href: href({ view: 'diff', a: previous.id, b: s.id }), title: `compare with ${shortId(previous.id)}` }, icon('compare'), 'Compare') : null),
            );
          }),
    );
  };

  clear(
    main,
    h('div', { class: 'page-head' }, h('h1', null, 'Snapshots')),
    totals(store),
    h('div', { class: 'toolbar' }, filterInput, count),
    h('div', { class: 'panel table-wrap' }, h('table', { class: 'grid', 'data-testid': 'snapshot-table' }, h('thead', null, headRow), tbody)),
  );
  draw();
}
