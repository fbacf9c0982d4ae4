/**
 * A store alias that keeps the store's passphrase (its `passphrase` key, as
 * Plakar keeps one in a store's configuration): commands through the alias
 * need no other, a passphrase file still comes first, and the alias's
 * passphrase is never shown.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kloset as run, tempDir } from '../helpers/cli.js';

let work: string;

beforeAll(async () => {
  work = await tempDir('kloset-aliaspassphrase-');
  await fs.mkdir(path.join(work, 'source'));
  await fs.writeFile(path.join(work, 'source', 'note.txt'), 'kept with the alias passphrase\n');
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** No passphrase in the environment, and no terminal to ask on. */
const kloset = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(args, {
    env: {
      KLOSET_PASSPHRASE: undefined,
      PLAKAR_PASSPHRASE: undefined,
      XDG_CONFIG_HOME: path.join(work, 'config'),
      XDG_CACHE_HOME: path.join(work, 'cache'),
      ...env,
    },
  });

describe('a store alias with a passphrase', () => {
  it('opens the store with it, after a passphrase file and before the environment', async () => {
    const store = path.join(work, 'store');
    expect((await kloset(['store', 'add', 'secure', store, 'passphrase=the alias keeps it'])).code).toBe(0);
    const created = await kloset(['at', '@secure', 'create']);
    expect(created.code, created.stderr).toBe(0);
    const backup = await kloset(['at', '@secure', 'backup', path.join(work, 'source')]);
    expect(backup.code, backup.stderr).toBe(0);

    // The store is encrypted under that passphrase, and nothing else opens it.
    expect((await kloset(['at', store, 'ls'], { KLOSET_PASSPHRASE: 'the alias keeps it' })).code).toBe(0);
    const none = await kloset(['at', store, 'ls']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/a passphrase is needed/);
    // The alias's comes before the environment's; a passphrase file before both.
    expect((await kloset(['at', '@secure', 'ls'], { KLOSET_PASSPHRASE: 'not this one' })).code).toBe(0);
    const file = path.join(work, 'wrong-passphrase');
    await fs.writeFile(file, 'not this one either\n');
    const wrong = await kloset(['--passphrase-file', file, 'at', '@secure', 'ls']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/wrong passphrase/);

    const listing = await kloset(['config']);
    expect(listing.stdout).toContain('secure');
    expect(listing.stdout + listing.stderr).not.toContain('the alias keeps it');
  });

  it('opens the other store of a sync with its own', async () => {
    const here = path.join(work, 'here');
    const there = path.join(work, 'there');
    expect((await kloset(['at', here, 'create'], { KLOSET_PASSPHRASE: 'here' })).code).toBe(0);
    expect((await kloset(['at', here, 'backup', path.join(work, 'source')], { KLOSET_PASSPHRASE: 'here' })).code).toBe(0);
    expect((await kloset(['store', 'add', 'offsite', there, 'passphrase=there'])).code).toBe(0);
    expect((await kloset(['at', '@offsite', 'create'])).code).toBe(0);
    const sync = await kloset(['at', here, 'sync', 'to', '@offsite'], { KLOSET_PASSPHRASE: 'here' });
    expect(sync.code, sync.stderr).toBe(0);
    const ls = await kloset(['at', '@offsite', 'ls']);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toContain(path.join(work, 'source'));
  });
});
