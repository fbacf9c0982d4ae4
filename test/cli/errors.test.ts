/**
 * What a user sees when something is wrong: one line `kloset: <message>`
 * on stderr, the right exit code, and the store left as it was.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, latestSnapshotId, tempDir } from '../helpers/cli.js';
import { escapeRegExp, expectOneLineError, klosetWith, storeListing } from '../helpers/fixtures.js';

let work: string;
let cache: string;
let kloset: ReturnType<typeof klosetWith>;
/** A store with one snapshot of `source`: a.txt and sub/b.txt. */
let store: string;
let source: string;
let id: string;

beforeAll(async () => {
  work = await tempDir('kloset-errors-');
  cache = path.join(work, 'cache');
  kloset = klosetWith({ XDG_CACHE_HOME: cache });
  store = path.join(work, 'store');
  source = path.join(work, 'source');
  await fs.mkdir(path.join(source, 'sub'), { recursive: true });
  await fs.writeFile(path.join(source, 'a.txt'), 'a\n');
  await fs.writeFile(path.join(source, 'sub/b.txt'), 'b\n');
  expect((await kloset(['at', store, 'create'])).code).toBe(0);
  expect((await kloset(['at', store, 'backup', source])).code).toBe(0);
  id = await latestSnapshotId(store, { XDG_CACHE_HOME: cache });
});

afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('a wrong passphrase', () => {
  it('fails with exit 1 and one line saying the passphrase is wrong', async () => {
    const result = await kloset(['at', store, 'ls'], { env: { KLOSET_PASSPHRASE: 'not the passphrase' } });
    expect(result.code).toBe(1);
    expectOneLineError(result, /wrong passphrase/);
    expect(result.stdout).toBe('');
  });

  it('writes nothing to the store, even for a backup', async () => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'backup', source], { env: { KLOSET_PASSPHRASE: 'not the passphrase' } });
    expect(result.code).toBe(1);
    expectOneLineError(result, /wrong passphrase/);
    expect(await storeListing(store)).toEqual(before);
  });
});

describe('a source that is not a bucket', () => {
  it('names it in one line, exit 2, and leaves the store as it was, unlocked', async () => {
    const before = await storeListing(store);
    for (const bad of ['s3://', 's3://b/x']) {
      const result = await kloset(['at', store, 'backup', bad]);
      expect(result.code).toBe(2);
      expectOneLineError(result, new RegExp(escapeRegExp(bad)));
    }
    expect(await storeListing(store)).toEqual(before);
    expect(await fs.readdir(path.join(store, 'locks'))).toEqual([]);
  });
});

describe('a store location that is not a store', () => {
  it('names a missing store and suggests create, exit 1', async () => {
    const missing = path.join(work, 'no-such-store');
    const result = await kloset(['at', missing, 'ls']);
    expect(result.code).toBe(1);
    expectOneLineError(result, new RegExp(`${escapeRegExp(missing)}.*does not exist.*create`));
  });

  it('does not create a missing store on backup', async () => {
    const missing = path.join(work, 'still-no-store');
    const result = await kloset(['at', missing, 'backup', source]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /does not exist/);
    await expect(fs.access(missing)).rejects.toThrow();
  });

  it('refuses a directory that is not a store, exit 1, without suggesting a create that would be refused', async () => {
    const result = await kloset(['at', source, 'ls']);
    expect(result.code).toBe(1);
    expectOneLineError(result, `kloset: ${source}: not a kloset store (it holds files, but no CONFIG)`);
    expect((await kloset(['at', source, 'create'])).code).toBe(1);
  });

  it('refuses a store location that is a file', async () => {
    const file = path.join(source, 'a.txt');
    const result = await kloset(['at', file, 'ls']);
    expect(result.code).toBe(1);
    expectOneLineError(result, `kloset: ${file}: not a kloset store (not a directory)`);
    const odd = path.join(work, 'config-is-a-directory');
    await fs.mkdir(path.join(odd, 'CONFIG'), { recursive: true });
    expectOneLineError(await kloset(['at', odd, 'ls']), `kloset: ${odd}: not a kloset store (its CONFIG is a directory)`);
  });

  it("says what a failed system call was doing in words, not in Node's errno text", async () => {
    const loop = path.join(work, 'loop');
    await fs.symlink('loop', loop);
    const store = path.join(loop, 'store');
    const listed = await kloset(['at', store, 'ls']);
    expect(listed.code).toBe(1);
    expectOneLineError(listed, `kloset: cannot access ${store}/CONFIG: too many symbolic links encountered`);
    expectOneLineError(await kloset(['at', store, 'create']), `kloset: cannot read directory ${store}: too many symbolic links encountered`);
  });
});

describe('create', () => {
  it('refuses a non-empty directory and leaves its files untouched', async () => {
    const dir = path.join(work, 'busy');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'precious.txt'), 'keep me\n');
    const before = await storeListing(dir);
    const result = await kloset(['at', dir, 'create']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /not empty/);
    expect(await storeListing(dir)).toEqual(before);
    expect(await fs.readFile(path.join(dir, 'precious.txt'), 'utf8')).toBe('keep me\n');
  });

  it("takes a directory where a killed create left only its half-written CONFIG, and removes it; with anything else there, refuses", async () => {
    const dir = path.join(work, 'killed-create');
    await fs.mkdir(dir);
    await fs.writeFile(path.join(dir, 'CONFIG.tmp-0123456789ab'), '{"v":1,');
    await fs.writeFile(path.join(dir, 'precious.txt'), 'keep me\n');
    const refused = await kloset(['at', dir, 'create']);
    expectOneLineError(refused, /not empty/);
    expect((await fs.readdir(dir)).sort()).toEqual(['CONFIG.tmp-0123456789ab', 'precious.txt']);
    await fs.rm(path.join(dir, 'precious.txt'));
    const created = await kloset(['at', dir, 'create']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(await fs.readdir(dir)).not.toContain('CONFIG.tmp-0123456789ab');
    expect((await kloset(['at', dir, 'ls'])).code).toBe(0);
  });

  it('refuses to create a store over an existing store', async () => {
    const before = await storeListing(store);
    const result = await kloset(['at', store, 'create']);
    expect(result.code).toBe(1);
    expectOneLineError(result);
    expect(await storeListing(store)).toEqual(before);
  });
});

describe('snapshot ids', () => {
  it('says no snapshot has an unknown id, exit 1', async () => {
    const unknown = id.startsWith('f') ? '00000000' : 'ffffffff';
    const result = await kloset(['at', store, 'ls', unknown]);
    expect(result.code).toBe(1);
    expectOneLineError(result, new RegExp(`no snapshot.*${unknown}`));
  });

  it('refuses an id that is not hexadecimal', async () => {
    const result = await kloset(['at', store, 'restore', '-to', path.join(work, 'never'), 'xyz']);
    expect(result.code).toBe(1);
    expectOneLineError(result, /invalid snapshot id/);
  });

  it('says a prefix is ambiguous and lists the candidates, exit 1', async () => {
    const ambiguous = path.join(work, 'ambiguous-store');
    expect((await kloset(['at', ambiguous, 'create'])).code).toBe(0);
    const seen = new Map<string, string>();
    let shared: [string, string] | undefined;
    // Back up until two ids share their first hex digit: at most 17 snapshots, usually about 5.
    while (!shared) {
      const backup = await kloset(['at', ambiguous, 'backup', source]);
      expect(backup.code).toBe(0);
      const newest = /created snapshot ([0-9a-f]{8})/.exec(backup.stdout)![1];
      const other = seen.get(newest[0]);
      if (other) shared = [other, newest];
      seen.set(newest[0], newest);
    }
    const result = await kloset(['at', ambiguous, 'ls', shared[0][0]]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /ambiguous/);
    expect(result.stderr).toContain(shared[0]);
    expect(result.stderr).toContain(shared[1]);
  });
});

describe('a snapshot id beside selection flags', () => {
  it.each([
    [['restore', '-to', '<work>/never', '-tag', 'no-such-tag', '<id>']],
    [['ls', '-tag', 'x', '<id>:/sub']],
    [['ls', '-before', '2000-01-01', '<id>:/sub']],
  ])('is refused in one line, exit 2, instead of ignoring the flags: %j', async (args) => {
    const result = await kloset(['at', store, ...args.map((a) => a.replace('<work>', work).replace('<id>', id.slice(0, 8)))]);
    expect(result.code).toBe(2);
    expectOneLineError(result, /a snapshot id or selection flags \(-tag, -host, -before, -since, -latest\), not both/);
    await expect(fs.stat(path.join(work, 'never'))).rejects.toThrow(/ENOENT/);
  });
});

describe('paths in a snapshot', () => {
  it('says a path is not in the snapshot, for ls, cat and restore', async () => {
    for (const args of [
      ['ls', `${id}:/no/such/file`],
      ['cat', `${id}:/no/such/file`],
      ['restore', '-to', path.join(work, 'never'), `${id}:/no/such/file`],
    ]) {
      const result = await kloset(['at', store, ...args]);
      expect(result.code, args[0]).toBe(1);
      expectOneLineError(result, /\/no.*: no such file or directory/);
    }
  });

  it('cat names a file it cannot print and prints the others, as cat(1) does, exit 1', async () => {
    const result = await kloset(['at', store, 'cat', `${id}:/a.txt`, `${id}:/nope.txt`, `${id}:/sub/b.txt`]);
    expect(result.stdout).toBe('a\nb\n');
    expect(result.code).toBe(1);
    expectOneLineError(result, /\/nope\.txt/);
  });

  it("resolves '..' by the path, as the shell's cd does, never above the root", async () => {
    const up = await kloset(['at', store, 'cat', `${id}:/sub/../a.txt`, `${id}:/../../sub/b.txt`]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toBe('a\nb\n');
    const listed = await kloset(['at', store, 'ls', `${id}:/sub/..`]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/a\.txt/);
    expect(listed.stdout).toMatch(/sub\//);
    // As for ls(1): a name that is missing, or not a directory, cannot be gone through.
    const missing = await kloset(['at', store, 'ls', `${id}:/nope/..`]);
    expect(missing.code).toBe(1);
    expectOneLineError(missing, /\/nope: no such file or directory/);
    const file = await kloset(['at', store, 'ls', `${id}:/a.txt/..`]);
    expect(file.code).toBe(1);
    expectOneLineError(file, /\/a\.txt: not a directory/);
  });

  it('takes a trailing slash after a file for a directory asked for, as open(2) does', async () => {
    for (const args of [
      ['ls', `${id}:/a.txt/`],
      ['cat', `${id}:/sub/b.txt/`],
      ['restore', '-to', path.join(work, 'never'), `${id}:/a.txt/`],
    ]) {
      const result = await kloset(['at', store, ...args]);
      expect(result.code, args[0]).toBe(1);
      expectOneLineError(result, /\/(a|sub\/b)\.txt\/: not a directory/);
      expect(result.stdout).toBe('');
    }
    const directory = await kloset(['at', store, 'ls', `${id}:/sub/`]);
    expect(directory.code, directory.stderr).toBe(0);
    expect(directory.stdout).toMatch(/b\.txt/);
  });

  it("cat takes ':/path' for the latest snapshot's file, as ls does, and refuses a bare name", async () => {
    const latest = await kloset(['at', store, 'cat', ':/a.txt']);
    expect(latest.code, latest.stderr).toBe(0);
    expect(latest.stdout).toBe('a\n');
    const bare = await kloset(['at', store, 'cat', 'a.txt']);
    expect(bare.code).toBe(2);
    expectOneLineError(bare, 'kloset: cat needs snapshot:/path, got "a.txt"');
  });

  it('refuses to cat a directory', async () => {
    const result = await kloset(['at', store, 'cat', `${id}:/sub`]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /\/sub: not a regular file/);
    expect(result.stdout).toBe('');
  });
});

describe('usage errors', () => {
  it('an unknown command is a usage error, exit 2', async () => {
    const result = await kloset(['at', store, 'frobnicate']);
    expect(result.code).toBe(2);
    expectOneLineError(result, /frobnicate/);
  });

  it.each([[['help', 'frobnicate']], [['store', 'help', 'frobnicate']]])('help on an unknown command says so in one line, exit 2: %j', async (args) => {
    const result = await kloset(args);
    expect(result.code).toBe(2);
    expectOneLineError(result, "kloset: unknown command 'frobnicate'");
    expect(result.stdout).toBe('');
  });

  it('a missing argument is a usage error, exit 2', async () => {
    const result = await kloset(['at', store, 'cat']);
    expect(result.code).toBe(2);
    expectOneLineError(result, /missing.*argument/);
  });

  it('a missing option value is a usage error, exit 2', async () => {
    const result = await kloset(['at', store, 'restore', '-to']);
    expect(result.code).toBe(2);
    expectOneLineError(result, /--to/);
  });

  it.each(['0', '-5', 'abc', '1.5'])('restore --concurrency %s is a usage error, exit 2, and restores nothing', async (value) => {
    const target = path.join(work, `concurrency-${value}`);
    const result = await kloset(['at', store, 'restore', '-to', target, '--concurrency', value, id]);
    expect(result.code).toBe(2);
    expectOneLineError(result, /--concurrency <n>.*expected a whole number of at least 1/);
    await expect(fs.stat(target)).rejects.toThrow(/ENOENT/);
  });

  it('takes every long option with one dash as well as two', async () => {
    const diff = await kloset(['at', store, 'diff', '-metadata', id, id]);
    expect(diff.stderr).toBe('');
    expect(diff.code).toBe(0);
    const help = await kloset(['ls', '-help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: kloset ls /);
  });

  it("restore -to - is refused, exit 2, rather than make a directory named '-'", async () => {
    const cwd = path.join(work, 'dash-cwd');
    await fs.mkdir(cwd);
    const result = await kloset(['at', store, 'restore', '-to', '-', id], { cwd });
    expect(result.code).toBe(2);
    expectOneLineError(result, /restore writes files, not a stream: 'kloset archive -output -'/);
    expect(await fs.readdir(cwd)).toEqual([]);
  });

  it('version prints the version, as -V and --version do', async () => {
    const version = await kloset(['version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect((await kloset(['--version'])).stdout).toBe(version.stdout);
  });

  it("'at' without a store is a usage error, exit 2", async () => {
    const result = await kloset(['at']);
    expect(result.code).toBe(2);
    expectOneLineError(result, /at/);
  });
});

describe('no passphrase', () => {
  const noPassphrase = { KLOSET_PASSPHRASE: undefined, PLAKAR_PASSPHRASE: undefined };

  it('without a terminal, says how to give one, exit 1', async () => {
    const result = await kloset(['at', store, 'ls'], { env: noPassphrase });
    expect(result.code).toBe(1);
    expectOneLineError(result, /passphrase.*KLOSET_PASSPHRASE/);
  });

  it('names a passphrase file that cannot be read, and why, in one line', async () => {
    const missing = path.join(work, 'no-such-passphrase.txt');
    const result = await kloset(['at', store, '--passphrase-file', missing, 'ls'], { env: noPassphrase });
    expect(result.code).toBe(1);
    expectOneLineError(result, new RegExp(`cannot read passphrase file ${escapeRegExp(missing)}: no such file or directory$`));
  });

  it('reads the passphrase from --passphrase-file instead, written before or after `at <store>`', async () => {
    const file = path.join(work, 'passphrase.txt');
    await fs.writeFile(file, 'test passphrase\n', { mode: 0o600 });
    for (const args of [
      ['at', store, '--passphrase-file', file, 'ls'],
      ['--passphrase-file', file, 'at', store, 'ls'],
      ['-passphrase-file', file, 'at', store, 'ls'],
    ]) {
      const result = await kloset(args, { env: noPassphrase });
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(id.slice(0, 8));
    }
  });
});

describe('credentials written into an S3 location or endpoint', () => {
  const SECRET = 'SuperSecretKey123';
  it.each([
    [['at', `s3://AKIAEXAMPLE:${SECRET}@127.0.0.1:9/bucket`, 'ls'], {}],
    [['at', '<store>', 'backup', `s3://AKIAEXAMPLE:${SECRET}@bucket/prefix`], {}],
    [['at', '<store>', 'restore', '-to', `s3://AKIAEXAMPLE:${SECRET}@bucket`, '<id>'], {}],
    [['at', 's3://bucket/kloset', 'ls'], { KLOSET_S3_ENDPOINT: `http://AKIAEXAMPLE:${SECRET}@127.0.0.1:9` }],
    // AWS secret keys often hold a '/', which few think to percent-encode: the user info still ends at the '@'.
    [['at', `s3://AKIAEXAMPLE:Super/${SECRET}@bucket/prefix`, 'ls'], {}],
    [['at', '<store>', 'restore', '-to', `s3://AKIAEXAMPLE:${SECRET}/x@bucket`, '<id>'], {}],
    [['at', 's3://bucket/kloset', 'ls'], { KLOSET_S3_ENDPOINT: `http://AKIAEXAMPLE:Super/${SECRET}@127.0.0.1:9` }],
  ])('are refused in one line that does not repeat them: %j', async (args, env) => {
    const result = await kloset(
      args.map((arg) => arg.replace('<store>', store).replace('<id>', id)),
      { env: { ...env, AWS_EC2_METADATA_DISABLED: 'true' } },
    );
    expect(result.code).toBe(2);
    expectOneLineError(result, /\/\/\*\*\*\*@.*holds no credentials: set access_key and secret_access_key/);
    expect(result.stderr + result.stdout).not.toMatch(/AKIAEXAMPLE|SuperSecret/);
  });
});

describe('an S3 endpoint that is not a URL', () => {
  it.each(['http://127.0.0.1:99999', 'http://127.0.0.1:port', 'http://', '127.0.0.1:70000'])(
    'is a usage error in one line, before any request: %s',
    async (endpoint) => {
      const env = { KLOSET_S3_ENDPOINT: endpoint, AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b', AWS_REGION: 'us-east-1' };
      const result = await kloset(['at', 's3://bucket/kloset', 'ls'], { env });
      expect(result.code).toBe(2);
      expectOneLineError(result, `kloset: KLOSET_S3_ENDPOINT ${endpoint}: not a valid URL`);
    },
  );
});

describe('a password in a location that is neither a directory nor a bucket', () => {
  // As `kloset config` and `store show` mask it: an error must not print what a listing hides.
  it.each([
    [['source', 'add', 'nas', 'sftp://backup:hunter2@nas/data'], ['at', '<store>', 'backup', '@nas'], 'sftp://backup:****@nas/data: unsupported source'],
    [['destination', 'add', 'nas', 'sftp://backup:hunter2@nas/restored'], ['at', '<store>', 'restore', '-to', '@nas', '<id>'], 'sftp://backup:****@nas/restored: unsupported destination'],
    [['store', 'add', 'nas', 'sftp://backup:hunter2@nas/store'], ['at', '@nas', 'ls'], 'sftp://backup:****@nas/store: unsupported store location'],
    [['store', 'add', 'other', 'sftp://backup:hunter2@nas/store'], ['at', '<store>', 'sync', 'to', '@other'], 'sftp://backup:****@nas/store: unsupported store location'],
    [[], ['at', 'sftp://backup:hunter2@nas/store', 'ls'], 'sftp://backup:****@nas/store: unsupported store location'],
    // A password with a '/' or an '@' its owner did not percent-encode is a password still.
    [[], ['at', 'sftp://backup:hun/ter/hunter2@nas/store', 'ls'], 'sftp://backup:****@nas/store: unsupported store location'],
    [[], ['at', 'sftp://backup:hun@ter@hunter2@nas/store', 'ls'], 'sftp://backup:****@nas/store: unsupported store location'],
    [['destination', 'add', 'slashed', 'sftp://backup:hunter2/x@nas/restored'], ['at', '<store>', 'restore', '-to', '@slashed', '<id>'], 'sftp://backup:****@nas/restored: unsupported destination'],
  ])('is masked in the error: %j then %j', async (alias, args, message) => {
    const env = { XDG_CONFIG_HOME: path.join(work, 'config-with-password') };
    if (alias.length) expect((await kloset(alias, { env })).code).toBe(0);
    const result = await kloset(args.map((arg) => arg.replace('<store>', store).replace('<id>', id)), { env });
    expect(result.code).toBe(1);
    expectOneLineError(result, `kloset: ${message}`);
    expect(result.stderr + result.stdout).not.toContain('hunter2');
  });

  it.each(['sftp://backup:hun/ter/hunter2@nas/restored', 'sftp://backup:hun@ter@hunter2@nas/restored', 's3://AKIAEXAMPLE:wJalr/hunter2@bucket/restored'])(
    'is masked where kloset config lists it: %s',
    async (location) => {
      const env = { XDG_CONFIG_HOME: path.join(work, 'config-listed-password') };
      expect((await kloset(['config', 'destination', 'create', 'nas'], { env })).code).toBe(0);
      try {
        expect((await kloset(['config', 'destination', 'set', 'nas', `location=${location}`], { env })).code).toBe(0);
        for (const args of [['config'], ['config', '--json'], ['destination', 'show', 'nas']]) {
          const result = await kloset(args, { env });
          expect(result.code, args.join(' ')).toBe(0);
          expect(result.stdout, args.join(' ')).toMatch(/:\*\*\*\*@/);
          expect(result.stdout + result.stderr, args.join(' ')).not.toContain('hunter2');
        }
      } finally {
        await kloset(['config', 'destination', 'rm', 'nas'], { env });
      }
    },
  );
});

describe('an empty passphrase', () => {
  it('is refused for a new store, from a file or from the environment, and nothing is created', async () => {
    const empty = path.join(work, 'empty-passphrase');
    await fs.writeFile(empty, '\n');
    const fresh = path.join(work, 'never-created');
    const fromFile = await kloset(['at', fresh, '--passphrase-file', empty, 'create'], { env: { KLOSET_PASSPHRASE: undefined } });
    expect(fromFile.code).toBe(1);
    expectOneLineError(fromFile, `kloset: passphrase file ${empty} is empty`);
    const fromEnv = await kloset(['at', fresh, 'create'], { env: { KLOSET_PASSPHRASE: '' } });
    expect(fromEnv.code).toBe(1);
    expectOneLineError(fromEnv, 'kloset: KLOSET_PASSPHRASE is empty');
    await expect(fs.stat(path.join(fresh, 'CONFIG'))).rejects.toThrow(/ENOENT/);
    const open = await kloset(['at', store, '--passphrase-file', empty, 'ls'], { env: { KLOSET_PASSPHRASE: undefined } });
    expectOneLineError(open, `kloset: passphrase file ${empty} is empty`);
  });
});

describe('a reader that stops reading', () => {
  it('ends cat and ls quietly with the status of SIGPIPE, as coreutils do', async () => {
    const bigSource = path.join(work, 'big-source');
    await fs.mkdir(bigSource, { recursive: true });
    // Far more than a pipe holds, so the writes are still going when `head` exits.
    await fs.writeFile(path.join(bigSource, 'big.txt'), 'line of text\n'.repeat(400_000));
    for (let i = 0; i < 3000; i++) await fs.writeFile(path.join(bigSource, `f${i}`), '');
    expect((await kloset(['at', store, 'backup', bigSource])).code).toBe(0);
    const bigId = await latestSnapshotId(store, { XDG_CACHE_HOME: cache });
    for (const command of [`cat ${bigId}:/big.txt`, `ls ${bigId}:/`]) {
      const result = spawnSync('bash', ['-c', `set -o pipefail; '${BIN}' at '${store}' ${command} | head -c 1 >/dev/null`], {
        env: { ...process.env, KLOSET_PASSPHRASE: 'test passphrase', XDG_CACHE_HOME: cache },
        encoding: 'utf8',
      });
      expect(result.stderr, command).toBe('');
      expect(result.status, command).toBe(141);
    }
  });
});

describe('output that cannot be written', () => {
  it('says so in one line and fails when the disk is full', async () => {
    const full = await fs.open('/dev/full', 'w');
    try {
      const result = spawnSync(BIN, ['at', store, 'cat', `${id}:/a.txt`], {
        stdio: ['ignore', full.fd, 'pipe'],
        env: { ...process.env, KLOSET_PASSPHRASE: 'test passphrase', XDG_CACHE_HOME: cache },
        encoding: 'utf8',
      });
      expect(result.status).toBe(1);
      expect(result.stderr).toBe('kloset: cannot write the output: no space left on device\n');
    } finally {
      await full.close();
    }
  });
});

describe('a directory that cannot be made', () => {
  it('is named with the real reason on a read-only file system, for create and restore', async () => {
    const readOnly = path.join(work, 'read-only');
    await fs.mkdir(readOnly);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro', 'tmpfs', readOnly]).status).toBe(0);
    try {
      const create = await kloset(['at', path.join(readOnly, 'store'), 'create']);
      expect(create.code).toBe(1);
      expectOneLineError(create, `kloset: cannot create directory ${path.join(readOnly, 'store')}: read-only file system`);
      const restore = await kloset(['at', store, 'restore', '-to', path.join(readOnly, 'out'), id]);
      expect(restore.code).toBe(1);
      expectOneLineError(restore, `kloset: cannot restore there: cannot create directory ${path.join(readOnly, 'out')}: read-only file system`);
    } finally {
      spawnSync('umount', [readOnly]);
    }
  });

  it('ends in one line under /proc, where a recursive mkdir never returns', async () => {
    const create = await kloset(['at', '/proc/kloset-no-such-dir/store', 'create']);
    expect(create.code).toBe(1);
    expectOneLineError(create, 'kloset: cannot create directory /proc/kloset-no-such-dir: no such file or directory');
    const restore = await kloset(['at', store, 'restore', '-to', '/proc/kloset-no-such-dir/out', id]);
    expectOneLineError(restore, 'kloset: cannot restore there: cannot create directory /proc/kloset-no-such-dir: no such file or directory');
    // The alias file and the index cache make their directories the same way.
    const alias = await kloset(['store', 'add', 'here', store], { env: { XDG_CONFIG_HOME: '/proc/kloset-no-such-dir' } });
    expectOneLineError(alias, 'kloset: cannot write /proc/kloset-no-such-dir/kloset/config.json: cannot create directory /proc/kloset-no-such-dir: no such file or directory');
    const cached = await kloset(['at', store, 'ls'], { env: { XDG_CACHE_HOME: '/proc/kloset-no-such-dir' } });
    expect(cached.stderr).toBe('');
    expect(cached.code).toBe(0);
  });
});

describe('a restore into the store', () => {
  it('is refused in one line, exit 2, and the store is left as it was', async () => {
    const before = await storeListing(store);
    const link = path.join(work, 'link-to-store');
    await fs.symlink(store, link);
    for (const target of [store, path.join(store, 'restored'), path.join(link, 'through-a-link')]) {
      const result = await kloset(['at', store, 'restore', '-to', target, id]);
      expect(result.code).toBe(2);
      expectOneLineError(result, `kloset: ${target}: inside the store ${store}: restore somewhere else`);
    }
    expect((await storeListing(store)).filter((l) => !l.startsWith('locks/'))).toEqual(before.filter((l) => !l.startsWith('locks/')));
  });
});

describe('a restore target that cannot be a directory', () => {
  it('fails in one line, exit 1, for a whole snapshot and for one file, and leaves the file alone', async () => {
    const file = path.join(work, 'target-is-a-file');
    await fs.writeFile(file, 'keep me\n');
    for (const what of [id, `${id}:/a.txt`]) {
      const result = await kloset(['at', store, 'restore', '-to', file, what]);
      expect(result.code, what).toBe(1);
      expectOneLineError(result, new RegExp(`cannot restore there: ${escapeRegExp(file)}: exists and is not a directory`));
    }
    expect(await fs.readFile(file, 'utf8')).toBe('keep me\n');
  });
});

describe('a CONFIG that asks for harm', () => {
  it.each([
    ['a storeId that climbs out of the cache directory', (c: Record<string, any>) => (c.storeId = '../../../elsewhere'), 'storeId'],
    ['a key derivation of 4 TiB', (c: Record<string, any>) => (c.encryption.kdf.memoryKiB = 2 ** 32 - 1), 'encryption.kdf'],
    ['a key derivation of four billion passes', (c: Record<string, any>) => (c.encryption.kdf.iterations = 2 ** 32 - 1), 'encryption.kdf'],
    ['no key derivation at all', (c: Record<string, any>) => (c.encryption.kdf = null), 'encryption.kdf'],
    ['chunks of a terabyte', (c: Record<string, any>) => (c.chunking.maxSize = 2 ** 40), 'chunking'],
  ])('is refused at once, in one line, before the passphrase is used: %s', async (_name, tamper, field) => {
    const copy = path.join(work, `tampered-${field}-${Math.random().toString(36).slice(2, 8)}`);
    await fs.cp(store, copy, { recursive: true });
    const config = JSON.parse(await fs.readFile(path.join(copy, 'CONFIG'), 'utf8')) as Record<string, any>;
    tamper(config);
    await fs.writeFile(path.join(copy, 'CONFIG'), JSON.stringify(config));
    const result = await kloset(['at', copy, 'ls']);
    expect(result.code).toBe(1);
    expectOneLineError(result, `kloset: ${copy}: not a kloset store (its CONFIG is malformed: ${field})`);
  });
});

describe('an encrypted store whose CONFIG was replaced by a plaintext one', () => {
  it('is refused in one line, and nothing is written to it', async () => {
    const swapped = path.join(work, 'swapped-store');
    expect((await kloset(['at', swapped, 'create'])).code).toBe(0);
    expect((await kloset(['at', swapped, 'backup', source])).code).toBe(0);
    // What someone able to write the store could do: a plaintext store of their own, its CONFIG put in place.
    const theirs = path.join(work, 'their-plaintext-store');
    expect((await klosetWith({ XDG_CACHE_HOME: path.join(work, 'elsewhere-cache') })(['at', theirs, 'create', '-plaintext'])).code).toBe(0);
    await fs.copyFile(path.join(theirs, 'CONFIG'), path.join(swapped, 'CONFIG'));
    for (const dir of ['index', 'snapshots']) await fs.rename(path.join(swapped, dir), path.join(work, `moved-${dir}`));
    const before = await storeListing(swapped);
    const result = await kloset(['at', swapped, 'backup', source]);
    expect(result.code).toBe(1);
    expectOneLineError(result, /this store was encrypted when this machine last used it, and its CONFIG now says it is not: refusing/);
    expect(await storeListing(swapped)).toEqual(before);
  });

  it('is not refused once re-created plaintext here by the user', async () => {
    const recreated = path.join(work, 'recreated-store');
    expect((await kloset(['at', recreated, 'create'])).code).toBe(0);
    await fs.rm(recreated, { recursive: true });
    expect((await kloset(['at', recreated, 'create', '-plaintext'])).code).toBe(0);
    const backup = await kloset(['at', recreated, 'backup', source]);
    expect(backup.stderr).toBe('');
    expect(backup.code).toBe(0);
  });
});
