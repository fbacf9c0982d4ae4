/**
 * passwd rewraps the master key: afterwards only the new passphrase opens
 * the store and every snapshot reads as before; a refused change leaves
 * CONFIG byte for byte as it was.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { describeTree, expectOneLineError, klosetWith } from '../helpers/fixtures.js';

let work: string;
let store: string;
let source: string;
let kloset: ReturnType<typeof klosetWith>;
const config = () => fs.readFile(path.join(store, 'CONFIG'));

beforeAll(async () => {
  work = await tempDir('kloset-passwd-');
  store = path.join(work, 'store');
  source = path.join(work, 'source');
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  await fs.mkdir(path.join(source, 'sub'), { recursive: true });
  await fs.writeFile(path.join(source, 'a.txt'), 'alpha\n'.repeat(1000));
  await fs.writeFile(path.join(source, 'sub/b.bin'), Buffer.alloc(300_000, 7));
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('passwd', () => {
  it('changes the passphrase: the old one is refused, the new one restores every byte', async () => {
    const before = JSON.parse((await config()).toString()) as { storeId: string; encryption: { wrappedKey: string; kdf: { salt: string } } };
    const result = await kloset(['at', store, 'passwd'], { env: { KLOSET_NEW_PASSPHRASE: 'second passphrase' } });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^passwd: the passphrase of .* is changed\nthe master key is the same: a copy of the old CONFIG .* still opens with the old passphrase\n$/);
    const after = JSON.parse((await config()).toString()) as typeof before;
    expect(after.storeId).toBe(before.storeId);
    expect(after.encryption.kdf.salt).not.toBe(before.encryption.kdf.salt);
    expect(after.encryption.wrappedKey).not.toBe(before.encryption.wrappedKey);

    expectOneLineError(await kloset(['at', store, 'ls']), 'kloset: wrong passphrase');
    const env = { KLOSET_PASSPHRASE: 'second passphrase' };
    const target = path.join(work, 'restored');
    const restored = await kloset(['at', store, 'restore', '-to', target], { env });
    expect(restored.code).toBe(0);
    expect(await describeTree(target)).toEqual(await describeTree(source));
    expect((await kloset(['at', store, 'check'], { env })).stdout).toMatch(/no problems found/);
    // Backups go on into the same store, deduplicated against what was there.
    const again = await kloset(['at', store, 'backup', source], { env });
    expect(again.stdout).toMatch(/\(0 B added to the store\)/);
  });

  it('takes the new passphrase from a file, and the current one from --passphrase-file', async () => {
    const current = path.join(work, 'current');
    const next = path.join(work, 'next');
    await fs.writeFile(current, 'second passphrase\n');
    await fs.writeFile(next, 'third passphrase\n');
    const result = await kloset(['at', store, '--passphrase-file', current, 'passwd', '-new-passphrase-file', next]);
    expect(result.code).toBe(0);
    expect((await kloset(['at', store, 'ls'], { env: { KLOSET_PASSPHRASE: 'third passphrase' } })).code).toBe(0);
  });

  it.each([
    ['a wrong current passphrase', { KLOSET_PASSPHRASE: 'not it', KLOSET_NEW_PASSPHRASE: 'x' }, [], /^kloset: wrong passphrase$/],
    ['no new passphrase and no terminal', { KLOSET_PASSPHRASE: 'third passphrase' }, [], /a new passphrase is needed: set KLOSET_NEW_PASSPHRASE/],
    ['an empty new passphrase', { KLOSET_PASSPHRASE: 'third passphrase', KLOSET_NEW_PASSPHRASE: '' }, [], /^kloset: KLOSET_NEW_PASSPHRASE is empty$/],
    ['an unreadable new passphrase file', { KLOSET_PASSPHRASE: 'third passphrase' }, ['--new-passphrase-file', '/nonexistent/next'], /cannot read new passphrase file \/nonexistent\/next: no such file or directory/],
  ])('refuses %s in one line and leaves CONFIG as it was', async (_what, env, args, message) => {
    const before = await config();
    const result = await kloset(['at', store, 'passwd', ...args], { env });
    expectOneLineError(result, message);
    expect(result.code).toBe(1);
    expect((await config()).equals(before)).toBe(true);
  });

  it('runs alone: of two at once, at most one changes the passphrase and says so, and the store opens with it', async () => {
    for (let round = 0; round < 4; round++) {
      const shared = path.join(work, `shared-${round}`);
      expect((await kloset(['at', shared, 'create'])).code).toBe(0);
      const [alpha, beta] = await Promise.all(
        ['alpha', 'beta'].map((next) => kloset(['at', shared, 'passwd'], { env: { KLOSET_NEW_PASSPHRASE: `${next} ${round}` } })),
      );
      const succeeded = [alpha, beta].flatMap((result, i) => (result.code === 0 ? [`${['alpha', 'beta'][i]} ${round}`] : []));
      // Both reporting success was the fault: one of the two passphrases then did not open the store. Both may
      // step back, each having seen the other's lock (as two restic commands that lock at once do): nothing changed then.
      expect(succeeded.length, `${alpha.stderr} ${beta.stderr}`).toBeLessThanOrEqual(1);
      const opened = await kloset(['at', shared, 'ls'], succeeded.length === 1 ? { env: { KLOSET_PASSPHRASE: succeeded[0] } } : {});
      expect(opened.code, opened.stderr).toBe(0);
      for (const refused of [alpha, beta].filter((result) => result.code !== 0)) {
        expectOneLineError(refused, /store is in use by a passphrase change|wrong passphrase/);
      }
    }
    // Four rounds of five commands, each deriving keys: near a minute on a loaded machine.
  }, 120_000);

  it('refuses a plaintext store, which has no passphrase', async () => {
    const plain = path.join(work, 'plain');
    expect((await kloset(['at', plain, 'create', '-plaintext'])).code).toBe(0);
    const result = await kloset(['at', plain, 'passwd'], { env: { KLOSET_NEW_PASSPHRASE: 'x' } });
    expectOneLineError(result, /the store is not encrypted, so it has no passphrase/);
  });
});
