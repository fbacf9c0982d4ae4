/**
 * POSIX ACLs are extended attributes (system.posix_acl_access and, on
 * directories, system.posix_acl_default). A restore into a directory with a
 * default ACL must not leave the restored entries with the ACLs they
 * inherit there: each gets the ACLs the snapshot recorded, and none where
 * it recorded none, as tar --acls and rsync -A make them.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { getAttributeSync, setAttributeSync } from '@napi-rs/xattr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/cli.js';
import { klosetWith, posixAcl as acl } from '../helpers/fixtures.js';

const ACCESS = 'system.posix_acl_access';
const DEFAULT = 'system.posix_acl_default';

let work: string;
let source: string;
let store: string;
let kloset: ReturnType<typeof klosetWith>;

beforeAll(async () => {
  work = await tempDir('kloset-acls-');
  source = path.join(work, 'source');
  store = path.join(work, 'store');
  await fs.mkdir(path.join(source, 'private'), { recursive: true });
  await fs.mkdir(path.join(source, 'shared'));
  await fs.writeFile(path.join(source, 'private', 'payroll.txt'), 'for the owner and the group only\n');
  await fs.chmod(path.join(source, 'private', 'payroll.txt'), 0o640);
  await fs.writeFile(path.join(source, 'shared', 'notes.txt'), 'user 4242 may write\n');
  setAttributeSync(path.join(source, 'shared', 'notes.txt'), ACCESS, acl(4242, 6));
  setAttributeSync(path.join(source, 'shared'), DEFAULT, acl(4242, 7));
  kloset = klosetWith({ XDG_CACHE_HOME: path.join(work, 'cache') });
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
}, 60_000);

afterAll(() => fs.rm(work, { recursive: true, force: true }));

describe('a restore into a directory with a default ACL', () => {
  it('leaves each entry with the ACLs it had, not those of the target', async () => {
    const parent = path.join(work, 'inheriting');
    await fs.mkdir(parent);
    // Whatever is created below grants user 1717 everything.
    setAttributeSync(parent, DEFAULT, acl(1717, 7));
    const target = path.join(parent, 'restored');
    const result = await kloset(['at', store, 'restore', '-to', target]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const attribute = (rel: string, name: string) => getAttributeSync(path.join(target, rel), name);
    // None recorded, none restored: user 1717 cannot read the payroll.
    expect(attribute('private/payroll.txt', ACCESS)).toBeNull();
    expect(attribute('private', ACCESS)).toBeNull();
    expect(attribute('private', DEFAULT)).toBeNull();
    expect(attribute('', DEFAULT)).toBeNull();
    expect((await fs.stat(path.join(target, 'private', 'payroll.txt'))).mode & 0o777).toBe(0o640);
    // Recorded ones come back as they were.
    expect(attribute('shared/notes.txt', ACCESS)?.equals(acl(4242, 6))).toBe(true);
    expect(attribute('shared', DEFAULT)?.equals(acl(4242, 7))).toBe(true);
  }, 60_000);
});
