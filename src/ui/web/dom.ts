/**
 * Building the page from data without ever parsing data as markup: every
 * string becomes a text node or an attribute value, never innerHTML.
 */

export type Child = Node | string | number | null | undefined | false | Child[];
type Listener = (event: Event) => void;
export type Attrs = Record<string, string | number | boolean | undefined | null | Listener>;

function append(parent: Node, child: Child): void {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
    return;
  }
  parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
}

/** `h('a', { href, class }, 'text', otherNode)`; `on*` attributes must be functions. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) {
      if (typeof value !== 'function') throw new Error(`${key} must be a function`);
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') el.className = String(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function clear(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

const SVG = 'http://www.w3.org/2000/svg';

const ICONS: Record<string, string[]> = {
  dir: ['M3 6.5A1.5 1.5 0 0 1 4.5 5h4.2l1.8 2h9A1.5 1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z'],
  file: ['M6 3h8l4 4v14H6z', 'M14 3v4h4'],
  link: ['M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1', 'M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1'],
  other: ['M12 4a8 8 0 1 0 0 16a8 8 0 1 0 0-16z'],
  download: ['M12 4v11', 'M7 10l5 5 5-5', 'M5 20h14'],
  restore: ['M4 12a8 8 0 1 0 2.3-5.7', 'M4 4v4h4'],
  compare: ['M8 4v16', 'M16 4v16', 'M4 8h8', 'M12 16h8'],
  info: ['M12 4a8 8 0 1 0 0 16a8 8 0 1 0 0-16z', 'M12 11v5', 'M12 8h.01'],
  up: ['M12 19V5', 'M6 11l6-6 6 6'],
};

/** A small stroked icon, drawn with DOM calls. */
export function icon(name: keyof typeof ICONS | string, cls = ''): SVGSVGElement {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', `icon ${cls}`.trim());
  svg.setAttribute('aria-hidden', 'true');
  const filled = name === 'dir';
  for (const d of ICONS[name] ?? ICONS.other) {
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('d', d);
    path.setAttribute('fill', filled ? 'currentColor' : 'none');
    path.setAttribute('stroke', filled ? 'none' : 'currentColor');
    path.setAttribute('stroke-width', '1.8');
    path.setAttribute('stroke-linecap', 'round');
    path.setAttribute('stroke-linejoin', 'round');
    svg.appendChild(path);
  }
  return svg;
}

export function button(label: string, onclick: Listener, options: { icon?: string; primary?: boolean; title?: string } = {}): HTMLButtonElement {
  return h('button', { type: 'button', class: options.primary ? 'button primary' : 'button', title: options.title, onclick }, options.icon ? icon(options.icon) : null, label);
}

/** A link styled as a button; `download` asks the browser to save rather than navigate. */
export function linkButton(label: string, href: string, options: { icon?: string; download?: boolean; title?: string; testid?: string } = {}): HTMLAnchorElement {
  return h('a', { class: 'button', href, download: options.download ? '' : undefined, title: options.title, 'data-testid': options.testid }, options.icon ? icon(options.icon) : null, label);
}
