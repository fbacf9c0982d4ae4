/**
 * The page the server sends: its HTML and CSS are here, its scripts are the
 * front end's TypeScript (src/ui/web/) as tsc compiled it beside this file.
 * Nothing is fetched from elsewhere at run time: the machine may be offline.
 */
import { promises as fs } from 'node:fs';

export interface Asset {
  type: string;
  body: Buffer;
}

const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>kloset</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/app.css">
<script type="module" src="/assets/app.js"></script>
</head>
<body>
<header class="topbar">
  <a class="brand" href="#/"><span class="brand-mark" aria-hidden="true"></span>kloset</a>
  <nav class="topnav">
    <a href="#/" data-nav="list">Snapshots</a>
    <a href="#/diff" data-nav="diff">Compare</a>
  </nav>
  <span class="store-location" id="store-location"></span>
</header>
<main id="main"><p class="loading">Loading…</p></main>
<dialog id="dialog"></dialog>
<noscript><p class="notice">The viewer needs JavaScript.</p></noscript>
</body>
</html>
`;

const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#2457c5"/><path d="M8 9h16v4H8zm0 6h16v4H8zm0 6h16v4H8z" fill="#fff" opacity=".9"/></svg>
`;

const APP_CSS = `
:root {
  --bg: #f5f6f8;
  --panel: #ffffff;
  --text: #1d2330;
  --muted: #687385;
  --line: #e2e5ea;
  --line-strong: #cfd4dc;
  --accent: #2457c5;
  --accent-soft: #e8effc;
  --top: #18202e;
  --added: #1a7f37;
  --added-bg: #e6f4ea;
  --removed: #c62828;
  --removed-bg: #fdecec;
  --changed: #9a6700;
  --changed-bg: #fff4d6;
  --row: 34px;
  --radius: 8px;
  font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", Roboto, sans-serif;
  font-size: 14px;
  color: var(--text);
  background: var(--bg);
}
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body { display: flex; flex-direction: column; min-height: 100vh; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }

.topbar { display: flex; align-items: center; gap: 24px; padding: 0 20px; height: 52px; background: var(--top); color: #fff; flex: none; }
.brand { display: flex; align-items: center; gap: 10px; color: #fff; font-weight: 650; font-size: 17px; letter-spacing: .2px; }
.brand:hover { text-decoration: none; }
.brand-mark { width: 22px; height: 22px; border-radius: 6px; background: linear-gradient(180deg, #4c82f0 0 30%, transparent 30% 37%, #3a6fe0 37% 63%, transparent 63% 70%, #2457c5 70%); }
.topnav { display: flex; gap: 4px; }
.topnav a { color: #c9d2e3; padding: 6px 12px; border-radius: 6px; }
.topnav a:hover { background: rgba(255,255,255,.08); text-decoration: none; color: #fff; }
.topnav a.active { background: rgba(255,255,255,.14); color: #fff; }
.store-location { margin-left: auto; color: #9aa6bb; font-size: 12.5px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 45vw; }

main { flex: 1; display: flex; flex-direction: column; padding: 20px 24px; gap: 16px; min-height: 0; transition: opacity .15s; }
main[aria-busy=true] { opacity: .55; }
.loading, .empty { color: var(--muted); }
.notice { padding: 12px 16px; background: var(--changed-bg); border-radius: var(--radius); }
.error-box { padding: 12px 16px; background: var(--removed-bg); color: var(--removed); border-radius: var(--radius); }

h1 { font-size: 20px; margin: 0; font-weight: 650; }
h2 { font-size: 15px; margin: 0 0 10px; font-weight: 650; }
.page-head { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.page-head .actions { margin-left: auto; display: flex; gap: 8px; flex-wrap: wrap; }
.sub { color: var(--muted); }

.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .5px; }
.card .value { font-size: 20px; font-weight: 600; margin-top: 4px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.card .value.small { font-size: 14px; font-weight: 500; }

.panel { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); }
.toolbar { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.toolbar .count { color: var(--muted); margin-left: auto; }
input[type=search], input[type=text], select {
  font: inherit; padding: 7px 10px; border: 1px solid var(--line-strong); border-radius: 6px; background: #fff; color: var(--text); min-width: 0;
}
input[type=search] { width: 340px; max-width: 100%; }
input:focus, select:focus, button:focus-visible, a:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }

.button { display: inline-flex; align-items: center; gap: 6px; font: inherit; padding: 7px 12px; border-radius: 6px; border: 1px solid var(--line-strong); background: #fff; color: var(--text); cursor: pointer; white-space: nowrap; }
.button:hover { background: #f0f2f5; text-decoration: none; }
.button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
.button.primary:hover { background: #1d4aae; }
.button:disabled { opacity: .55; cursor: default; }
.button svg { width: 15px; height: 15px; }

table.grid { width: 100%; border-collapse: collapse; }
table.grid th, table.grid td { text-align: left; padding: 8px 12px; border-bottom: 1px solid var(--line); vertical-align: middle; }
table.grid th { font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .4px; background: #fafbfc; position: sticky; top: 0; }
table.grid th.sortable { cursor: pointer; user-select: none; }
table.grid th.sortable:hover { color: var(--text); }
table.grid th[aria-sort=ascending]::after { content: " \\25B2"; font-size: 9px; }
table.grid th[aria-sort=descending]::after { content: " \\25BC"; font-size: 9px; }
table.grid tbody tr:hover { background: #f7f9fc; }
table.grid tbody tr.clickable { cursor: pointer; }
table.grid td.num, table.grid th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.grid tr:last-child td { border-bottom: none; }
.table-wrap { overflow: auto; }
.icon-link { display: inline-flex; align-items: center; gap: 4px; }
.icon-link .icon { width: 15px; height: 15px; }

.tag { display: inline-block; padding: 1px 8px; margin: 1px 4px 1px 0; border-radius: 10px; background: var(--accent-soft); color: var(--accent); font-size: 12px; }
.id { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; }

.crumbs { display: flex; align-items: center; flex-wrap: wrap; gap: 2px; font-size: 15px; }
.crumbs a, .crumbs span { padding: 2px 4px; border-radius: 4px; }
.crumbs .sep { color: var(--muted); padding: 0 2px; }
.crumbs .current { font-weight: 600; }

.vlist { flex: 1; min-height: 240px; display: flex; flex-direction: column; overflow: hidden; }
.vhead, .vrow { display: grid; grid-template-columns: minmax(200px, 1fr) 110px 170px 110px; align-items: center; gap: 12px; padding: 0 14px; }
.vhead { height: 36px; font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .4px; border-bottom: 1px solid var(--line); background: #fafbfc; border-radius: var(--radius) var(--radius) 0 0; flex: none; }
.vscroll { flex: 1; overflow-y: auto; position: relative; }
.vspacer { position: relative; width: 100%; }
.vrow { position: absolute; left: 0; right: 0; height: var(--row); border-bottom: 1px solid #eef0f3; }
.vrow:hover { background: #f5f8fd; }
.vrow .name { display: flex; align-items: center; gap: 8px; min-width: 0; }
.vrow .name a, .vrow .name span.label { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; color: var(--text); }
.vrow .name a:hover { color: var(--accent); }
.vrow .target { color: var(--muted); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.invalid-name { color: var(--muted); font-style: italic; }
.vrow .num { text-align: right; font-variant-numeric: tabular-nums; color: #3c4556; }
.vrow .when, .vrow .mode { color: var(--muted); font-variant-numeric: tabular-nums; }
.vrow .mode { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.vrow.placeholder .name { color: var(--line-strong); }
.vhead .num { text-align: right; }
.icon { width: 18px; height: 18px; flex: none; }
.icon.dir { color: #d29922; }
.icon.file { color: #7d8799; }
.icon.link { color: #8250df; }
.status-line { color: var(--muted); font-size: 12.5px; padding: 6px 14px; border-top: 1px solid var(--line); flex: none; }

.file-layout { display: grid; grid-template-columns: minmax(0, 1fr) 380px; gap: 16px; align-items: start; }
@media (max-width: 960px) { .file-layout { grid-template-columns: 1fr; } }
.preview { padding: 0; overflow: hidden; }
.preview-head { display: flex; align-items: center; gap: 8px; padding: 10px 14px; border-bottom: 1px solid var(--line); color: var(--muted); font-size: 12.5px; }
.preview pre { margin: 0; padding: 14px; max-height: 70vh; overflow: auto; white-space: pre-wrap; word-break: break-word; background: #fbfcfd; line-height: 1.5; }
.preview .media { padding: 16px; display: flex; justify-content: center; background: repeating-conic-gradient(#f1f3f6 0 25%, #fff 0 50%) 0 0 / 20px 20px; }
.preview .media img { max-width: 100%; max-height: 70vh; image-rendering: auto; box-shadow: 0 1px 4px rgba(0,0,0,.12); }
.preview .media video { max-width: 100%; max-height: 70vh; background: #000; }
.preview .media audio { width: 100%; }
.preview iframe.pdf { width: 100%; height: 75vh; border: 0; display: block; }
.preview .nopreview { padding: 40px 16px; text-align: center; color: var(--muted); }
.preview .nopreview .button { margin-top: 12px; }
.meta { padding: 4px 0; }
.meta h2 { padding: 10px 14px 0; }
.meta table { width: 100%; border-collapse: collapse; table-layout: fixed; }
.meta th, .meta td { text-align: left; padding: 6px 14px; border-bottom: 1px solid #eef0f3; vertical-align: top; font-size: 13px; }
.meta th { width: 120px; color: var(--muted); font-weight: 500; }
.meta td { word-break: break-all; }
.meta tr:last-child th, .meta tr:last-child td { border-bottom: none; }

.diff-form { display: flex; gap: 10px; flex-wrap: wrap; align-items: end; padding: 14px; }
.diff-form label { display: flex; flex-direction: column; gap: 4px; font-size: 12px; color: var(--muted); }
.diff-form select { min-width: 320px; max-width: 100%; }
.summary-chips { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; }
.chip { padding: 3px 10px; border-radius: 12px; font-weight: 600; font-size: 12.5px; }
.chip.added, .badge.added { background: var(--added-bg); color: var(--added); }
.chip.removed, .badge.removed { background: var(--removed-bg); color: var(--removed); }
.chip.changed, .badge.changed { background: var(--changed-bg); color: var(--changed); }
.badge { display: inline-block; min-width: 70px; text-align: center; padding: 2px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.reasons { color: var(--muted); font-size: 12.5px; }

dialog { border: none; border-radius: 10px; padding: 0; width: min(560px, 92vw); box-shadow: 0 12px 40px rgba(0,0,0,.25); }
dialog::backdrop { background: rgba(15, 20, 30, .45); }
.dialog-body { padding: 18px 20px; display: flex; flex-direction: column; gap: 12px; }
.dialog-body h2 { font-size: 17px; margin: 0; }
.dialog-body label { display: flex; flex-direction: column; gap: 4px; font-size: 12.5px; color: var(--muted); }
.dialog-actions { display: flex; justify-content: flex-end; gap: 8px; padding: 12px 20px; border-top: 1px solid var(--line); background: #fafbfc; border-radius: 0 0 10px 10px; }
progress { width: 100%; height: 10px; accent-color: var(--accent); }
.progress-text { color: var(--muted); font-size: 12.5px; }
.warnings { max-height: 140px; overflow: auto; font-size: 12px; color: var(--removed); margin: 0; padding-left: 18px; }
.hidden { display: none !important; }
`;

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Every asset by URL path: the page, its stylesheet and icon, and each compiled front-end module. */
export async function loadAssets(): Promise<Map<string, Asset>> {
  const assets = new Map<string, Asset>([
    ['/index.html', { type: TYPES['.html'], body: Buffer.from(INDEX_HTML) }],
    ['/assets/app.css', { type: TYPES['.css'], body: Buffer.from(APP_CSS) }],
    ['/assets/favicon.svg', { type: TYPES['.svg'], body: Buffer.from(FAVICON) }],
  ]);
  const webDir = new URL('./web/', import.meta.url);
  let names: string[];
  try {
    names = await fs.readdir(webDir);
  } catch {
    names = [];
  }
  for (const name of names.filter((n) => /^[a-z][a-z0-9-]*\.js$/.test(n))) {
    assets.set(`/assets/${name}`, { type: TYPES['.js'], body: await fs.readFile(new URL(name, webDir)) });
  }
  if (!assets.has('/assets/app.js')) {
    throw new Error(`the viewer's scripts are missing from ${webDir.pathname}: build with 'npm run build'`);
  }
  return assets;
}
