/**
 * The viewer in a real browser: Debian's chromium, headless, driven by
 * playwright-core. A person's path through it: the snapshot list, a
 * directory, previews of a text file and an image, a download, a diff.
 * Screenshots land in test-output/ui-*.png for a person to look at.
 */
import { execFile } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../helpers/cli.js';
import { HOSTILE, MANY, makeUiStore, sha256, startUi, type RunningUi, type UiStore } from './fixture.js';

const run = promisify(execFile);

const CHROMIUM = '/usr/bin/chromium';
const OUTPUT = path.join(ROOT, 'test-output');
const hasChromium = existsSync(CHROMIUM);

if (!hasChromium) {
  console.warn(`test/ui/browser.test.ts: skipped: ${CHROMIUM} is missing (scripts/setup.sh installs Debian's chromium)`);
}

describe.skipIf(!hasChromium)('the viewer in headless chromium', () => {
  let fixture: UiStore;
  let ui: RunningUi;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  const alerts: string[] = [];
  const pageErrors: string[] = [];

  /** Goes to a route of the page and waits until its view is drawn. */
  const go = async (hash: string) => {
    await page.goto(`${ui.origin}/${hash}`);
    await page.waitForFunction((h) => document.getElementById('main')?.dataset.route === h, hash);
  };
  const shot = (name: string) => page.screenshot({ path: path.join(OUTPUT, `ui-${name}.png`), fullPage: false });

  beforeAll(async () => {
    await fs.mkdir(OUTPUT, { recursive: true });
    fixture = await makeUiStore('kloset-ui-browser-');
    ui = await startUi(fixture.store, fixture.env);
    profile = await tempDir('kloset-ui-chromium-');
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      acceptDownloads: true,
      viewport: { width: 1280, height: 800 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('dialog', (dialog) => {
      alerts.push(dialog.message());
      void dialog.dismiss();
    });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  afterAll(async () => {
    await context?.close();
    await ui?.stop();
    if (profile) await fs.rm(profile, { recursive: true, force: true });
    if (fixture) await fs.rm(fixture.work, { recursive: true, force: true });
  });

  it('opens the snapshot list from the printed URL, which leaves the token behind', async () => {
    await page.goto(ui.url);
    await page.getByTestId('snapshot-row').first().waitFor();
    expect(new URL(page.url()).search).toBe('');
    expect(await page.getByTestId('snapshot-row').count()).toBe(2);
    // Newest first by default; the short id, the source and the tags are shown.
    const first = page.getByTestId('snapshot-row').first();
    expect(await first.getAttribute('data-id')).toBe(fixture.ids[1]);
    await expect.poll(() => first.textContent()).toContain(fixture.ids[1].slice(0, 8));
    expect(await first.textContent()).toContain('second');
    expect(await page.getByTestId('store-totals').textContent()).toMatch(/Dedup ratio\s*[\d.]+×/);
    await shot('list');
  });

  it('keeps its cookie from the other servers of this machine that the browser visits', async () => {
    await page.goto(ui.url);
    await page.getByTestId('snapshot-row').first().waitFor();
    const seen: (string | undefined)[] = [];
    const other = http.createServer((req, res) => {
      seen.push(req.headers.cookie);
      res.end('another local server');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const visitor = await context.newPage();
      await visitor.goto(`http://127.0.0.1:${(other.address() as AddressInfo).port}/`);
      await visitor.close();
    } finally {
      await new Promise((resolve) => {
        other.close(resolve);
        other.closeAllConnections(); // the browser keeps its connection open
      });
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.filter((cookie) => cookie?.includes('kloset_ui_'))).toEqual([]);
    expect((await context.cookies()).map((c) => c.domain)).toEqual([new URL(ui.origin).hostname]);
  });

  it('opens the snapshot list from the private file kloset ui hands the desktop, as a browser the file is given opens it', async () => {
    // A stand-in for xdg-open that names the file it was given, which `kloset ui` keeps until it stops.
    const bin = path.join(fixture.work, 'opener-bin');
    const given = path.join(fixture.work, 'opened-file');
    await fs.mkdir(bin, { recursive: true });
    await fs.writeFile(path.join(bin, 'xdg-open'), `#!/bin/sh\nprintf '%s' "$1" > ${given}.partial && mv ${given}.partial ${given}\n`, { mode: 0o755 });
    const spawned = await startUi(fixture.store, { ...fixture.env, DISPLAY: ':99', PATH: `${bin}:${process.env.PATH}` }, []);
    const opened = await context.newPage();
    try {
      await expect.poll(() => fs.readFile(given, 'utf8').catch(() => ''), { timeout: 10_000 }).toMatch(/open\.html$/);
      // The file's refresh starts the navigation: a cross-site start, as from a file or another site.
      await opened.goto(`file://${await fs.readFile(given, 'utf8')}`);
      await opened.waitForURL(`${spawned.origin}/`);
      await opened.getByTestId('snapshot-row').first().waitFor({ timeout: 10_000 });
      expect(await opened.getByTestId('snapshot-row').count()).toBe(2);
      expect(opened.url()).not.toContain(spawned.token);
    } finally {
      await opened.close();
      expect(await spawned.stop()).toMatchObject({ code: 0 });
    }
  });

  it('sorts and filters the list', async () => {
    await page.locator('th[data-sort=time]').click(); // now oldest first
    expect(await page.getByTestId('snapshot-row').first().getAttribute('data-id')).toBe(fixture.ids[0]);
    await page.getByTestId('snapshot-filter').fill('second');
    await expect.poll(() => page.getByTestId('snapshot-row').count()).toBe(1);
    expect(await page.getByTestId('snapshot-row').first().getAttribute('data-id')).toBe(fixture.ids[1]);
    await page.getByTestId('snapshot-filter').fill('');
  });

  it('browses into a snapshot, directories first, a hostile name shown as text', async () => {
    await page.locator(`[data-testid=snapshot-row][data-id="${fixture.ids[1]}"] a.id`).click();
    await page.getByTestId('entry-row').first().waitFor();
    const names = await page.getByTestId('entry-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name')));
    expect(names.slice(0, 3)).toEqual([expect.stringContaining('a-directory'), 'many', 'notes']);
    const hostile = page.locator('[data-testid=entry-row]').filter({ hasText: HOSTILE });
    expect(await hostile.count()).toBe(1);
    expect(await page.locator('main img').count()).toBe(0);
    expect(alerts).toEqual([]);
    await shot('browse');
    await page.locator('[data-testid=entry-row][data-name=notes] a').click();
    await page.waitForFunction(() => document.querySelector('[data-testid=breadcrumbs]')?.textContent?.includes('notes'));
    await page.locator('[data-testid=entry-row][data-name="page.html"]').waitFor();
    // readme.md went away before the second snapshot.
    expect(await page.getByTestId('entry-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-name')))).toEqual(['logo.svg', 'page.html']);
  });

  it('scrolls a directory of thousands of entries, fetching only the pages in view', async () => {
    await go(`#/s/${fixture.ids[1]}/browse?path=/many`);
    await page.locator('[data-testid=entry-row][data-name="d-one"]').waitFor();
    expect(await page.getByTestId('entry-count').textContent()).toContain(`${(MANY + 2).toLocaleString('en-US')} entries`);
    expect(await page.getByTestId('entry-row').count()).toBeLessThan(100);
    await page.getByTestId('entries').evaluate((el) => el.scrollTo(0, el.scrollHeight));
    const last = `f${String(MANY - 1).padStart(5, '0')}.txt`;
    await page.locator(`[data-testid=entry-row][data-name="${last}"]`).waitFor();
    await shot('large-directory');
  });

  it('previews a text file, showing markup as text', async () => {
    await go(`#/s/${fixture.ids[1]}/file?path=/notes/page.html`);
    const pre = page.getByTestId('text-preview');
    await pre.waitFor();
    expect(await pre.textContent()).toBe(await fs.readFile(path.join(fixture.source, 'notes/page.html'), 'utf8'));
    expect(await page.locator('main b').count()).toBe(0);
    expect(alerts).toEqual([]);
    await go(`#/s/${fixture.ids[0]}/file?path=/notes/readme.md`);
    await expect.poll(() => page.getByTestId('text-preview').textContent()).toContain('These are *notes*.');
    expect(await page.getByTestId('metadata').textContent()).toContain('/notes/readme.md');
    await shot('text-preview');
  });

  it('previews an image', async () => {
    await go(`#/s/${fixture.ids[1]}/file?path=/image.png`);
    const img = page.getByTestId('image-preview');
    await img.waitFor();
    await expect.poll(() => img.evaluate((el) => (el as HTMLImageElement).complete && (el as HTMLImageElement).naturalWidth)).toBe(320);
    await shot('image-preview');
  });

  it('shows the details of a file whose name is markup, as text', async () => {
    await go(`#/s/${fixture.ids[1]}/file?path=${encodeURIComponent('/' + HOSTILE)}`);
    await page.getByTestId('entry-name').waitFor();
    expect(await page.getByTestId('entry-name').textContent()).toBe(HOSTILE);
    expect(await page.locator('main img').count()).toBe(0);
    expect(alerts).toEqual([]);
  });

  it('downloads a file with its bytes intact', async () => {
    await go(`#/s/${fixture.ids[1]}/file?path=/big.bin`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-file').click()]);
    expect(download.suggestedFilename()).toBe('big.bin');
    const saved = await download.path();
    expect(sha256(await fs.readFile(saved))).toBe(sha256(await fs.readFile(path.join(fixture.source, 'big.bin'))));
  });

  it('downloads a directory as a zip that unzip extracts', async () => {
    await go(`#/s/${fixture.ids[0]}/browse?path=/notes`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-zip').click()]);
    expect(download.suggestedFilename()).toBe('notes.zip');
    const dir = path.join(fixture.work, 'unzipped-from-page');
    await run('unzip', ['-q', await download.path(), '-d', dir]);
    expect((await fs.readdir(path.join(dir, 'notes'))).sort()).toEqual(['logo.svg', 'page.html', 'readme.md']);
    expect(await fs.readFile(path.join(dir, 'notes/page.html'), 'utf8')).toBe(await fs.readFile(path.join(fixture.source, 'notes/page.html'), 'utf8'));
  });

  it('compares two snapshots', async () => {
    await go(`#/`);
    await page.locator(`[data-testid=snapshot-row][data-id="${fixture.ids[1]}"] a[title^="compare"]`).click();
    await page.getByTestId('diff-table').waitFor();
    const rows = await page.getByTestId('diff-row').evaluateAll((els) => els.map((e) => `${e.getAttribute('data-status')} ${e.getAttribute('data-path')}`));
    expect(rows.sort()).toEqual(['added /new.txt', 'changed /', 'changed /data.bin', 'changed /hello.txt', 'changed /notes', 'removed /notes/readme.md']);
    expect(await page.getByTestId('diff-summary').textContent()).toContain('+1 added');
    await shot('diff');
  });

  it('restores a directory from the page, showing the progress', async () => {
    const target = path.join(fixture.work, 'restored-from-page');
    await go(`#/s/${fixture.ids[0]}/browse?path=/notes`);
    await page.getByRole('button', { name: 'Restore…' }).click();
    await page.getByTestId('restore-path').fill(target);
    await page.getByRole('button', { name: 'Start restore' }).click();
    await expect.poll(() => page.getByTestId('restore-status').textContent(), { timeout: 20_000 }).toMatch(/^Restored 3 files/);
    await shot('restore');
    expect((await fs.readdir(target)).sort()).toEqual(['logo.svg', 'page.html', 'readme.md']);
    await page.getByRole('button', { name: 'Close' }).click();
  });

  it('raised no script error and no alert along the way', () => {
    expect(pageErrors).toEqual([]);
    expect(alerts).toEqual([]);
  });
});
