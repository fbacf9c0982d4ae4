/** The viewer's front end: a router over the fragment, one view at a time. */
import { api } from './client.js';
import { clear, h } from './dom.js';
import { renderBrowse } from './browse.js';
import { renderDiff } from './compare.js';
import { renderFile } from './file.js';
import { renderList } from './list.js';
import { parseRoute } from './nav.js';

let current: AbortController | undefined;

async function route(): Promise<void> {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const main = document.getElementById('main')!;
  const where = parseRoute(location.hash);
  for (const link of document.querySelectorAll<HTMLAnchorElement>('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === (where.view === 'diff' ? 'diff' : 'list'));
  }
  main.setAttribute('aria-busy', 'true');
  main.removeAttribute('data-route');
  try {
    switch (where.view) {
      case 'list':
        await renderList(main);
        break;
      case 'browse':
        await renderBrowse(main, where.id, where.path, controller.signal);
        break;
      case 'file':
        await renderFile(main, where.id, where.path, controller.signal);
        break;
      case 'diff':
        await renderDiff(main, where);
        break;
    }
    if (controller.signal.aborted) return;
    document.title = `kloset · ${where.view === 'list' ? 'snapshots' : where.view === 'diff' ? 'compare' : where.path}`;
    main.dataset.route = location.hash || '#/'; // the view of this address is complete
  } catch (err) {
    if (controller.signal.aborted) return;
    clear(main, h('div', { class: 'error-box', role: 'alert', 'data-testid': 'error' }, (err as Error).message), h('p', null, h('a', { href: '#/' }, 'Back to the snapshots')));
    main.dataset.route = location.hash || '#/';
  } finally {
    if (current === controller) main.removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', () => void route());
void route();
void api.snapshots().then(
  ({ store }) => {
    document.getElementById('store-location')!.textContent = store.location;
  },
  () => undefined,
);
