/** The page's routes, kept in the URL's fragment: `#/`, `#/s/<id>/browse?path=`, `#/s/<id>/file?path=`, `#/diff?a=&b=`. */

export type Route =
  | { view: 'list' }
  | { view: 'browse'; id: string; path: string }
  | { view: 'file'; id: string; path: string }
  | { view: 'diff'; a?: string; b?: string; path?: string };

export function parseRoute(hash: string): Route {
  const text = hash.replace(/^#/, '') || '/';
  const [where, query = ''] = text.split('?', 2);
  const params = new URLSearchParams(query);
  const parts = where.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  if (parts[0] === 's' && parts[1]) {
    const path = params.get('path') || '/';
    return parts[2] === 'file' ? { view: 'file', id: parts[1], path } : { view: 'browse', id: parts[1], path };
  }
  if (parts[0] === 'diff') {
    return { view: 'diff', a: params.get('a') ?? undefined, b: params.get('b') ?? undefined, path: params.get('path') ?? undefined };
  }
  return { view: 'list' };
}

const query = (params: Record<string, string | undefined>) => {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : '';
};

export function href(route: Route): string {
  switch (route.view) {
    case 'list':
      return '#/';
    case 'browse':
      return `#/s/${encodeURIComponent(route.id)}/browse${query({ path: route.path === '/' ? undefined : route.path })}`;
    case 'file':
      return `#/s/${encodeURIComponent(route.id)}/file${query({ path: route.path })}`;
    case 'diff':
      return `#/diff${query({ a: route.a, b: route.b, path: route.path })}`;
  }
}

/** The route that shows an entry: a directory is browsed, anything else shown with its details. */
export function entryHref(id: string, path: string, type: string): string {
  return href(type === 'directory' ? { view: 'browse', id, path } : { view: 'file', id, path });
}

export function parentPath(path: string): string {
  const parts = path.split('/').filter(Boolean);
  parts.pop();
  return '/' + parts.join('/');
}
