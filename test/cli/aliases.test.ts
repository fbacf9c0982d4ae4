import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KlosetError, UsageError } from '../../src/errors.js';
import {
  AliasConfig,
  defaultConfigDir,
  maskValue,
  parseKeyValuePairs,
  resolveLocation,
} from '../../src/config/aliases.js';
import { registerConfigCommands } from '../../src/cli/commands/config.js';
import { kloset as runKloset } from '../helpers/cli.js';

const AWS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

let tempRoot: string;
let configDir: string;
let workDir: string;

beforeEach(async () => {
  tempRoot = await mkdtemp(path.join(os.tmpdir(), 'kloset-aliases-'));
  // A directory that does not exist yet, as on a first run.
  configDir = path.join(tempRoot, 'config', 'kloset');
  workDir = path.join(tempRoot, 'work');
  await mkdir(workDir);
});

afterEach(async () => {
  await rm(tempRoot, { recursive: true, force: true });
});

function newConfig(): AliasConfig {
  return new AliasConfig(configDir, { cwd: workDir, homeDir: path.join(tempRoot, 'home') });
}

/** Runs `kloset ...args` against a fresh program and returns what it printed. */
async function kloset(...args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const program = new Command()
    .exitOverride()
    .configureOutput({ writeOut: (text) => lines.push(text), writeErr: () => {} });
  registerConfigCommands(program, newConfig, (line) => lines.push(line));
  await program.parseAsync(['node', 'kloset', ...args]);
  return lines;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

describe('defaultConfigDir', () => {
  it('is $XDG_CONFIG_HOME/kloset when XDG_CONFIG_HOME is set', () => {
    expect(defaultConfigDir({ XDG_CONFIG_HOME: '/xdg', HOME: '/home/u' })).toBe('/xdg/kloset');
  });

  it('is ~/.config/kloset when XDG_CONFIG_HOME is unset', () => {
    expect(defaultConfigDir({ HOME: '/home/u' })).toBe('/home/u/.config/kloset');
  });

  it('ignores a relative XDG_CONFIG_HOME, as the XDG spec requires', () => {
    expect(defaultConfigDir({ XDG_CONFIG_HOME: 'relative', HOME: '/home/u' })).toBe('/home/u/.config/kloset');
  });
});

describe('AliasConfig', () => {
  it('creates config.json readable only by its owner, in a directory only its owner can enter', async () => {
    await newConfig().create('store', 'mystore');
    expect((await stat(path.join(configDir, 'config.json'))).mode & 0o777).toBe(0o600);
    expect((await stat(configDir)).mode & 0o777).toBe(0o700);
  });

  it('leaves only config.json in the directory after a write', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '/backups' });
    await config.set('store', 'mystore', { passphrase: 'x' });
    expect(await readdir(configDir)).toEqual(['config.json']);
  });

  it('lists nothing before any alias is created', async () => {
    expect(await newConfig().list()).toEqual([]);
  });

  it('keeps aliases for the next process', async () => {
    await newConfig().add('store', 'mystore', { location: '/backups' });
    const reread = new AliasConfig(configDir);
    expect(await reread.get('store', 'mystore')).toEqual({ location: '/backups' });
  });

  it('refuses to create an alias that already exists in that section', async () => {
    const config = newConfig();
    await config.create('store', 'mystore');
    const err = await rejection(config.create('store', 'mystore'));
    expect(err).toBeInstanceOf(KlosetError);
    expect(err.message).toBe('alias store.mystore already exists');
  });

  it('allows the same name in two sections', async () => {
    const config = newConfig();
    await config.create('source', 'photos');
    await config.create('destination', 'photos');
    expect((await config.list()).map((entry) => `${entry.section}.${entry.name}`)).toEqual([
      'destination.photos',
      'source.photos',
    ]);
  });

  it('refuses to set, unset or rm an alias that does not exist', async () => {
    const config = newConfig();
    // One at a time: a promise created early would reject before anyone awaits it.
    for (const attempt of [
      () => config.set('store', 'nope', { location: '/x' }),
      () => config.unset('store', 'nope', ['location']),
      () => config.remove('store', 'nope'),
    ]) {
      const err = await rejection(attempt());
      expect(err).toBeInstanceOf(KlosetError);
      expect(err.message).toBe("unknown alias store.nope (see 'kloset config')");
    }
  });

  it('refuses to unset a key the alias does not have', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '/backups' });
    const err = await rejection(config.unset('store', 'mystore', ['passphrase']));
    expect(err.message).toBe("alias store.mystore has no key 'passphrase'");
  });

  it('removes a key with unset and an alias with remove', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '/backups', passphrase: 'p' });
    await config.unset('store', 'mystore', ['passphrase']);
    expect(await config.get('store', 'mystore')).toEqual({ location: '/backups' });
    await config.remove('store', 'mystore');
    expect(await config.get('store', 'mystore')).toBeUndefined();
  });

  it('rejects alias names that do not start with a letter or digit or contain other characters', async () => {
    const config = newConfig();
    for (const name of ['-x', '.hidden', 'a b', 'a/b', '']) {
      const err = await rejection(config.create('store', name));
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toMatch(/^invalid alias name/);
    }
  });

  it('accepts alias names with dots, dashes and underscores', async () => {
    await newConfig().create('store', 'my.store_2-b');
    expect(await newConfig().get('store', 'my.store_2-b')).toEqual({});
  });

  it('treats a name like an Object method as any other unknown alias', async () => {
    const err = await rejection(newConfig().resolveAlias('constructor', 'store'));
    expect(err.message).toBe("unknown alias @constructor (see 'kloset config')");
  });

  it('stores a relative location as an absolute path, resolved where it was set', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: './backups' });
    expect((await config.get('store', 'mystore'))!.location).toBe(path.join(workDir, 'backups'));
  });

  it('stores a relative uri as an absolute path too', async () => {
    const config = newConfig();
    await config.create('local', 'here');
    await config.set('local', 'here', { uri: 'data' });
    expect((await config.get('local', 'here'))!.uri).toBe(path.join(workDir, 'data'));
  });

  it('expands a leading ~ in a location to the home directory', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '~/backups' });
    expect((await config.get('store', 'mystore'))!.location).toBe(path.join(tempRoot, 'home', 'backups'));
  });

  it('keeps a scheme:// location exactly as given', async () => {
    const config = newConfig();
    await config.add('source', 'bucket', { location: 's3://your-source-bucket-name/prefix' });
    expect((await config.get('source', 'bucket'))!.location).toBe('s3://your-source-bucket-name/prefix');
  });

  it('does not touch relative-looking values of other keys', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '/b', passphrase: './not-a-path' });
    expect((await config.get('store', 'mystore'))!.passphrase).toBe('./not-a-path');
  });

  it('refuses a key no alias takes, naming the alias, the key it most likely meant and the keys there are; nothing is written', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '/backups' });
    for (const attempt of [
      () => config.set('store', 'mystore', { acess_key: 'AKIA', region: 'eu-west-3' }),
      () => config.set('store', 'mystore', { acess_key: 'AKIA' }, { create: true }),
    ]) {
      const err = await rejection(attempt());
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toBe(
        "alias store.mystore: unknown key 'acess_key' (did you mean 'access_key'?); an alias takes location, uri, type, passphrase, endpoint, region, access_key, secret_access_key, session_token, use_tls, storage_class, timeout, force_path_style, max_attempts, retry_mode, max_connections, glacier, glacier_objects",
      );
    }
    expect((await rejection(config.add('source', 'photos', { location: '/photos', cache: './cache' }))).message).toMatch(
      /^alias source\.photos: unknown key 'cache'; an alias takes location, /,
    );
    expect(await config.list()).toEqual([{ section: 'store', name: 'mystore', values: { location: '/backups' } }]);
  });

  it('refuses a value no use of the alias could take, through the real command line, naming the alias; nothing is written', async () => {
    const env = { XDG_CONFIG_HOME: path.join(tempRoot, 'values') };
    const saved = async () =>
      (JSON.parse(await readFile(path.join(env.XDG_CONFIG_HOME, 'kloset', 'config.json'), 'utf8')) as { aliases: Record<string, Record<string, Record<string, string>>> }).aliases;
    for (const [key, value] of [['type', 's3'], ['uri', 's3://bucket'], ['use_tls', 'true'], ['max_attempts', '12'], ['glacier', 'fail'], ['retry_mode', 'adaptive'], ['endpoint', 'minio.example:9000']]) {
      expect((await runKloset(['config', 's3_src', 'set', 's3_src', key, value], { env })).code).toBe(0);
    }
    const before = await saved();
    for (const [args, message] of [
      [['config', 's3_src', 'set', 's3_src', 'use_tls', 'maybe'], "alias s3_src.s3_src: use_tls must be true or false, not 'maybe'"],
      [['config', 's3_src', 'set', 's3_src', 'force_path_style', 'sometimes'], "alias s3_src.s3_src: force_path_style must be true or false, not 'sometimes'"],
      [['config', 's3_src', 'set', 's3_src', 'max_attempts', '0'], "alias s3_src.s3_src: max_attempts must be a positive integer, not '0'"],
      [['config', 's3_src', 'set', 's3_src', 'timeout', '30s'], "alias s3_src.s3_src: timeout must be a positive integer, not '30s'"],
      [['config', 's3_src', 'set', 's3_src', 'retry_mode', 'legacy'], "alias s3_src.s3_src: retry_mode must be 'standard' or 'adaptive', not 'legacy'"],
      [['config', 's3_src', 'set', 's3_src', 'glacier', 'restore'], "alias s3_src.s3_src: glacier must be 'skip' or 'fail', not 'restore'"],
      [['config', 's3_src', 'set', 's3_src', 'type', 'gcs'], "alias s3_src.s3_src: type 'gcs' is not one kloset knows (s3 or fs)"],
      [['source', 'add', 'other', 's3://other', 'max_connections=many'], "alias source.other: max_connections must be a positive integer, not 'many'"],
      [['config', 's3_src', 'set', 's3_src', 'endpoint', 'ftp://127.0.0.1:9000'], 'alias s3_src.s3_src: endpoint ftp://127.0.0.1:9000: expected http:// or https://'],
      [['config', 's3_src', 'set', 's3_src', 'endpoint', 'http://127.0.0.1:99999'], 'alias s3_src.s3_src: endpoint http://127.0.0.1:99999: not a valid URL'],
      [
        ['config', 's3_src', 'set', 's3_src', 'endpoint', `http://${AWS_KEY_ID}:${encodeURIComponent(AWS_SECRET)}@minio.example`],
        "alias s3_src.s3_src: http://****@minio.example: an endpoint holds no credentials: set access_key and secret_access_key (or use AWS's environment and files)",
      ],
    ] as const) {
      const result = await runKloset([...args], { env });
      expect([result.code, result.stdout, result.stderr], args.join(' ')).toEqual([2, '', `kloset: ${message}\n`]);
    }
    expect(await saved()).toEqual(before);
  });

  it('reports a config.json that is not valid JSON by its path', async () => {
    await mkdir(configDir, { recursive: true });
    await writeFile(path.join(configDir, 'config.json'), '{ "aliases": ');
    const err = await rejection(newConfig().list());
    expect(err).toBeInstanceOf(KlosetError);
    expect(err.message).toContain(path.join(configDir, 'config.json'));
    expect(err.message).toContain('is not valid JSON');
    expect(err.message).not.toContain('\n');
  });

  it('reports a config.json whose aliases are not key/value strings', async () => {
    await mkdir(configDir, { recursive: true });
    await writeFile(path.join(configDir, 'config.json'), JSON.stringify({ aliases: { store: { s: { port: 9 } } } }));
    const err = await rejection(newConfig().list());
    expect(err.message).toBe(
      `${path.join(configDir, 'config.json')} is not a valid kloset config: store.s.port should be a string`,
    );
  });

  it('keeps top-level settings it does not know when it rewrites config.json', async () => {
    await mkdir(configDir, { recursive: true });
    await writeFile(path.join(configDir, 'config.json'), JSON.stringify({ version: 1, theme: 'dark', aliases: {} }));
    await newConfig().create('store', 'mystore');
    const document = JSON.parse(await readFile(path.join(configDir, 'config.json'), 'utf8'));
    expect(document.theme).toBe('dark');
    expect(document.aliases).toEqual({ store: { mystore: {} } });
  });
});

describe('resolveAlias', () => {
  it('returns the location and every key of the alias', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '/backups', passphrase: 'p' });
    expect(await config.resolveAlias('@mystore', 'store')).toEqual({
      location: '/backups',
      options: { location: '/backups', passphrase: 'p' },
    });
  });

  it('prefers the section named like the role when several sections hold the name', async () => {
    const config = newConfig();
    await config.add('source', 'photos', { location: '/home/photos' });
    await config.add('destination', 'photos', { location: '/restore/photos' });
    expect((await config.resolveAlias('photos', 'destination')).location).toBe('/restore/photos');
    expect((await config.resolveAlias('photos', 'source')).location).toBe('/home/photos');
  });

  it('refuses a name that other sections hold several times, rather than pick one by the alphabet', async () => {
    const config = newConfig();
    // As Plakar 1.0 named them: a store under `repository`, what is backed up under `remote`.
    await config.add('repository', 'nas', { location: '/mnt/nas/kloset' });
    await config.add('remote', 'nas', { location: '/mnt/nas/home' });
    const err = await rejection(config.resolveAlias('@nas', 'store'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe("alias @nas is in several sections (remote, repository): rename all but one, or put the store's in section store");
  });

  it('finds an alias in any other section, using its uri when it has no location', async () => {
    const config = newConfig();
    await config.create('s3_src', 's3_src');
    await config.set('s3_src', 's3_src', { type: 's3', uri: 's3://your-source-bucket-name' });
    expect(await config.resolveAlias('s3_src', 'source')).toEqual({
      location: 's3://your-source-bucket-name',
      options: { type: 's3', uri: 's3://your-source-bucket-name' },
    });
  });

  it('refuses an alias whose location and uri name two places, rather than pick one unseen', async () => {
    const config = newConfig();
    await config.add('s3_src', 's3_src', { type: 's3', uri: 's3://photos/2024' });
    await config.set('s3_src', 's3_src', { location: 's3://photos/2023' });
    const err = await rejection(config.resolveAlias('@s3_src', 'source'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(
      "alias @s3_src has both location s3://photos/2023 and uri s3://photos/2024: unset one with 'kloset config s3_src unset s3_src uri' (or location)",
    );
    await config.set('s3_src', 's3_src', { location: 's3://photos/2024' });
    expect((await config.resolveAlias('@s3_src', 'source')).location).toBe('s3://photos/2024');
  });

  it('refuses a key its location does not use, naming the key it most likely meant', async () => {
    const config = newConfig();
    // Written by hand, or by another kloset: `set` would have refused the typo.
    await mkdir(configDir, { recursive: true });
    await writeFile(
      path.join(configDir, 'config.json'),
      JSON.stringify({ aliases: { s3_store: { s3_store: { location: 's3://bucket/kloset', regoin: 'eu-west-3', use_tls: 'true' } } } }),
    );
    const err = await rejection(config.resolveAlias('@s3_store', 'store'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/^alias @s3_store: unknown key 'regoin' \(did you mean 'region'\?\); an S3 location takes location, uri, type, passphrase, endpoint, region, /);
    await config.unset('s3_store', 's3_store', ['regoin']);
    await config.set('s3_store', 's3_store', { storage_class: 'STANDARD_IA', glacier_objects: 'fail', region: 'eu-west-3' });
    expect((await config.resolveAlias('@s3_store', 'store')).location).toBe('s3://bucket/kloset');
    // An S3 key on a local location does nothing: as much a mistake as a typo.
    await config.add('store', 'local', { location: '/backups', region: 'eu-west-3' });
    expect((await rejection(config.resolveAlias('@local', 'store'))).message).toBe(
      "alias @local: unknown key 'region'; a local location takes location, uri, type, passphrase",
    );
  });

  it('refuses a type that does not fit the location, or that it does not know', async () => {
    const config = newConfig();
    await config.add('source', 'src', { type: 's3', uri: '/home/photos' });
    expect((await rejection(config.resolveAlias('@src', 'source'))).message).toBe('alias @src: type s3 does not fit its location /home/photos');
    expect((await rejection(config.set('source', 'src', { type: 'sftp' }))).message).toBe("alias source.src: type 'sftp' is not one kloset knows (s3 or fs)");
    // A file written by hand holds what set refuses: the alias is refused where it is used.
    await writeFile(path.join(configDir, 'config.json'), JSON.stringify({ version: 1, aliases: { source: { src: { type: 'sftp', uri: '/home/photos' } } } }));
    expect((await rejection(config.resolveAlias('@src', 'source'))).message).toBe("alias @src: type 'sftp' is not one kloset knows (s3 or fs)");
    await config.set('source', 'src', { type: 'fs' });
    expect((await config.resolveAlias('@src', 'source')).location).toBe('/home/photos');
    await config.set('source', 'src', { type: 'S3', uri: 's3://photos' });
    expect((await config.resolveAlias('@src', 'source')).location).toBe('s3://photos');
  });

  it('names, in one warning, the keys that do not apply to the role it is used as', async () => {
    const warnings: string[] = [];
    const config = new AliasConfig(configDir, { onWarning: (message) => warnings.push(message) });
    await config.add('source', 'photos', { location: 's3://photos', storage_class: 'STANDARD_IA', passphrase: 'p', glacier_objects: 'fail' });
    expect((await config.resolveAlias('@photos', 'source')).location).toBe('s3://photos');
    expect(warnings).toEqual(['alias @photos: passphrase, storage_class do not apply to a source: ignored']);
    warnings.length = 0;
    await config.resolveAlias('@photos', 'destination');
    expect(warnings).toEqual(['alias @photos: glacier_objects, passphrase do not apply to a destination: ignored']);
    warnings.length = 0;
    await config.resolveAlias('@photos', 'store');
    expect(warnings).toEqual(['alias @photos: glacier_objects does not apply to a store: ignored']);
  });

  it('fails with a pointer to kloset config for an unknown alias', async () => {
    const err = await rejection(newConfig().resolveAlias('@nope', 'store'));
    expect(err).toBeInstanceOf(KlosetError);
    expect(err.message).toBe("unknown alias @nope (see 'kloset config')");
  });

  it('fails with the command to fix it for an alias with no location or uri', async () => {
    const config = newConfig();
    await config.create('store', 'empty');
    const err = await rejection(config.resolveAlias('empty', 'store'));
    expect(err).toBeInstanceOf(KlosetError);
    expect(err.message).toBe(
      "alias @empty has no location: set one with 'kloset config store set empty location <path-or-uri>'",
    );
  });
});

describe('resolveLocation', () => {
  it("refuses s3:/bucket and restic's s3:host/bucket, rather than take them for a local directory named s3:", async () => {
    for (const typo of ['s3:/backups/kloset', 'S3:backups', 's3:s3.amazonaws.com/backups', 's3:']) {
      const err = await rejection(resolveLocation(typo, 'store', newConfig()));
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toBe(`${typo}: an S3 location is written s3://bucket/prefix (a local path of that name: ./${typo})`);
    }
    expect((await resolveLocation('./s3:/backups', 'destination', newConfig())).location).toBe('./s3:/backups');
    const config = newConfig();
    await config.create('store', 'typo');
    expect((await rejection(config.set('store', 'typo', { location: 's3:/backups/kloset' }))).message).toMatch(/^s3:\/backups\/kloset: an S3 location is written s3:\/\/bucket\/prefix/);
    // Through the real command line: nothing is made in the current directory.
    const env = { XDG_CONFIG_HOME: path.join(tempRoot, 'config'), XDG_CACHE_HOME: path.join(tempRoot, 'cache'), KLOSET_PASSPHRASE: 'pw' };
    const created = await runKloset(['at', 's3:/backups/kloset', 'create'], { env, cwd: workDir });
    expect(created.code).toBe(2);
    expect(created.stderr).toBe('kloset: s3:/backups/kloset: an S3 location is written s3://bucket/prefix (a local path of that name: ./s3:/backups/kloset)\n');
    expect(await readdir(workDir)).toEqual([]);
  });

  it('returns a plain argument unchanged without reading the config', async () => {
    const unreadable = {
      resolveAlias: () => {
        throw new Error('must not be called');
      },
    };
    expect(await resolveLocation('./backups', 'store', unreadable)).toEqual({ location: './backups', options: {} });
  });

  it('resolves an @name argument through the aliases', async () => {
    const config = newConfig();
    await config.add('store', 'mystore', { location: '/backups' });
    expect(await resolveLocation('@mystore', 'store', config)).toEqual({
      location: '/backups',
      options: { location: '/backups' },
    });
  });
});

describe('masking', () => {
  it('shows a secret as **** alone, however long', () => {
    expect(maskValue('secret_access_key', AWS_SECRET)).toBe('****');
    expect(maskValue('passphrase', 'hunter2')).toBe('****');
    expect(maskValue('passphrase', 'correct horse battery staple')).toBe('****');
  });

  it('shows an access key id as **** and its last 4 characters, as aws configure list does, unless it is short', () => {
    expect(maskValue('access_key', 'AKIAIOSFODNN7EXAMPLE')).toBe('****MPLE');
    expect(maskValue('access_key', 'S3RVER')).toBe('****');
  });

  it('masks the password in a URI', () => {
    expect(maskValue('location', 's3://id:topsecret@minio:9000/bucket')).toBe('s3://id:****@minio:9000/bucket');
  });

  it('shows other keys in full', () => {
    expect(maskValue('location', '/backups')).toBe('/backups');
  });
});

describe('parseKeyValuePairs', () => {
  it('splits at the first =', () => {
    expect(parseKeyValuePairs(['token=a=b', 'use_tls=true'])).toEqual({ token: 'a=b', use_tls: 'true' });
  });

  it('names a bare key that is missing its value', () => {
    expect(() => parseKeyValuePairs(['use_tls'])).toThrow(new UsageError("malformed option 'use_tls': expected key=value"));
  });

  it('does not repeat an argument that may be a secret', () => {
    expect(() => parseKeyValuePairs(['a=1', 'wJalr/XUtn+FEMI'])).toThrow(
      new UsageError('malformed option #2: expected key=value'),
    );
  });

  it('rejects an empty key', () => {
    expect(() => parseKeyValuePairs(['=value'])).toThrow(UsageError);
  });
});

describe('kloset config (Plakar 1.0 form)', () => {
  it('accepts the documentation lines verbatim and lists them with secrets masked', async () => {
    const documented = [
      'config s3_src create s3_src',
      'config s3_src set s3_src type s3',
      'config s3_src set s3_src uri s3://your-source-bucket-name',
      `config s3_src set s3_src access_key ${AWS_KEY_ID}`,
      `config s3_src set s3_src secret_access_key ${AWS_SECRET}`,
      'config s3_src set s3_src use_tls true',
      'config store create mystore',
      'config store set mystore location ./backups',
    ];
    for (const line of documented) await kloset(...line.split(' '));
    expect(await kloset('config')).toEqual([
      's3_src.s3_src access_key=****MPLE secret_access_key=**** type=s3 uri=s3://your-source-bucket-name use_tls=true',
      `store.mystore location=${path.join(workDir, 'backups')}`,
    ]);
  });

  it('prints nothing when a change succeeds', async () => {
    expect(await kloset('config', 'nas', 'create', 'nas')).toEqual([]);
    expect(await kloset('config', 'nas', 'set', 'nas', 'location', '/mnt/nas')).toEqual([]);
    expect(await kloset('config', 'nas', 'unset', 'nas', 'location')).toEqual([]);
    expect(await kloset('config', 'nas', 'rm', 'nas')).toEqual([]);
    expect(await kloset('config')).toEqual([]);
  });

  it('lists one section when given only its name', async () => {
    await kloset('store', 'add', 'a', '/a');
    await kloset('source', 'add', 'b', '/b');
    expect(await kloset('config', 'source')).toEqual(['source.b location=/b']);
  });

  it('lists as JSON with --json, secrets still masked', async () => {
    await kloset('store', 'add', 'mystore', '/backups', 'passphrase=correct-horse-battery');
    const [json] = await kloset('config', '--json');
    expect(JSON.parse(json!)).toEqual({ store: { mystore: { location: '/backups', passphrase: '****' } } });
  });

  it('quotes listed values that contain spaces', async () => {
    await kloset('store', 'add', 'mystore', '/my backups');
    expect(await kloset('config')).toEqual(['store.mystore location="/my backups"']);
  });

  it('fails with the expected form when set has no value', async () => {
    await kloset('config', 's3_src', 'create', 's3_src');
    const err = await rejection(kloset('config', 's3_src', 'set', 's3_src', 'use_tls'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe("missing value for 'use_tls': kloset config s3_src set s3_src use_tls <value>");
  });

  it('fails on an unknown action, naming the valid ones', async () => {
    const err = await rejection(kloset('config', 's3_src', 'add', 's3_src'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe("unknown config action 'add': expected create, set, unset, rm");
  });

  it('fails when create is given an alias that exists in that section', async () => {
    await kloset('config', 'store', 'create', 'mystore');
    const err = await rejection(kloset('config', 'store', 'create', 'mystore'));
    expect(err.message).toBe('alias store.mystore already exists');
  });

  it('creates an alias that set names before any create, as aws configure set makes a profile', async () => {
    // The Plakar S3 page's region lines, as written, with nothing before them.
    await kloset('config', 'aws_src', 'set', 'aws_src', 'uri', 's3://mybucket');
    await kloset('config', 'aws_src', 'set', 'aws_src', 'region', 'us-west-2');
    expect(await newConfig().get('aws_src', 'aws_src')).toEqual({ uri: 's3://mybucket', region: 'us-west-2' });
    // Names are checked as create checks them.
    const err = await rejection(kloset('config', 'store', 'set', 'bad/name', 'location', '/x'));
    expect(err).toBeInstanceOf(KlosetError);
  });

  it('accepts a value starting with -, with or without --, and never echoes it as an unknown option', async () => {
    await kloset('config', 'store', 'create', 'mystore');
    await kloset('config', 'store', 'set', 'mystore', 'passphrase', '--', '-starts-with-dash');
    expect((await newConfig().get('store', 'mystore'))!.passphrase).toBe('-starts-with-dash');
    await kloset('config', 'store', 'set', 'mystore', 'secret_access_key', '-MySecretPass99');
    expect((await newConfig().get('store', 'mystore'))!.secret_access_key).toBe('-MySecretPass99');
    const err = await rejection(kloset('store', 'add', 'other', '/x', '-PastedSecret'));
    expect(err.message).toBe('malformed option #1: expected key=value');
  });

  it("stores a value that looks like one of the program's own options, through the real command line", async () => {
    // -V, -h and --quiet belong to the program: left to it, a generated passphrase starting with -V printed
    // the version and stored nothing, with status 0.
    const env = { XDG_CONFIG_HOME: path.join(tempRoot, 'program-options') };
    expect((await runKloset(['config', 'store', 'create', 'mystore'], { env })).code).toBe(0);
    for (const value of ['-Vq8#kLm2', '-h', '--help', '--version', '-quiet', '--verbose', '-passphrase-file']) {
      const result = await runKloset(['config', 'store', 'set', 'mystore', 'passphrase', value], { env });
      expect([result.code, result.stdout, result.stderr], value).toEqual([0, '', '']);
      const saved = JSON.parse(await readFile(path.join(env.XDG_CONFIG_HOME, 'kloset', 'config.json'), 'utf8')) as { aliases: { store: { mystore: Record<string, string> } } };
      expect(saved.aliases.store.mystore.passphrase).toBe(value);
    }
  });
});

describe('kloset store|source|destination', () => {
  it('adds an alias with its location and options', async () => {
    await kloset('source', 'add', 'bucket', 's3://src', `access_key=${AWS_KEY_ID}`, 'use_tls=false');
    expect(await newConfig().get('source', 'bucket')).toEqual({
      access_key: AWS_KEY_ID,
      location: 's3://src',
      use_tls: 'false',
    });
  });

  it('shows one alias as a name: block with secrets masked', async () => {
    await kloset('store', 'add', 'mystore', '/backups', 'passphrase=correct-horse-battery');
    expect(await kloset('store', 'show', 'mystore')).toEqual([
      'mystore:',
      '  location: /backups',
      '  passphrase: ****',
    ]);
  });

  it('shows every alias of its section when no name is given', async () => {
    await kloset('destination', 'add', 'b', '/b');
    await kloset('destination', 'add', 'a', '/a');
    await kloset('store', 'add', 'c', '/c');
    expect(await kloset('destination', 'show')).toEqual(['a:', '  location: /a', 'b:', '  location: /b']);
  });

  it('shows as JSON with --json', async () => {
    await kloset('store', 'add', 'mystore', '/backups');
    const [json] = await kloset('store', 'show', 'mystore', '--json');
    expect(JSON.parse(json!)).toEqual({ mystore: { location: '/backups' } });
  });

  it('sets, unsets and removes, printing nothing', async () => {
    expect(await kloset('store', 'add', 'mystore', '/backups')).toEqual([]);
    expect(await kloset('store', 'set', 'mystore', 'passphrase=p', 'location=/elsewhere')).toEqual([]);
    expect(await newConfig().get('store', 'mystore')).toEqual({ location: '/elsewhere', passphrase: 'p' });
    expect(await kloset('store', 'unset', 'mystore', 'passphrase')).toEqual([]);
    expect(await newConfig().get('store', 'mystore')).toEqual({ location: '/elsewhere' });
    expect(await kloset('store', 'rm', 'mystore')).toEqual([]);
    expect(await newConfig().get('store', 'mystore')).toBeUndefined();
  });

  it('stores a relative location given to add as an absolute path', async () => {
    await kloset('store', 'add', 'mystore', 'backups');
    expect((await newConfig().get('store', 'mystore'))!.location).toBe(path.join(workDir, 'backups'));
  });

  it('rejects a malformed key=value', async () => {
    await kloset('store', 'add', 'mystore', '/backups');
    const err = await rejection(kloset('store', 'set', 'mystore', 'passphrase'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe("malformed option 'passphrase': expected key=value");
  });

  it('rejects a location given both as an argument and as location=', async () => {
    const err = await rejection(kloset('store', 'add', 'mystore', '/a', 'location=/b'));
    expect(err).toBeInstanceOf(UsageError);
  });

  it('fails to show an alias that does not exist', async () => {
    const err = await rejection(kloset('store', 'show', 'nope'));
    expect(err).toBeInstanceOf(KlosetError);
    expect(err.message).toBe("unknown alias store.nope (see 'kloset store show')");
  });

  it('writes the alias where @name resolves it for the same role', async () => {
    await kloset('destination', 'add', 'restore', '/restore');
    expect((await resolveLocation('@restore', 'destination', newConfig())).location).toBe('/restore');
  });
});

describe('secrets', () => {
  it('never appear in any listing, text or JSON', async () => {
    const secrets = {
      secret_access_key: AWS_SECRET,
      passphrase: 'correct horse battery staple',
      session_token: 'FwoGZXIvYXdzEFAaDGV4YW1wbGVzZXNzaW9u',
    };
    await kloset(
      'source',
      'add',
      'bucket',
      's3://id:uri-password-here@minio/src',
      ...Object.entries(secrets).map(([key, value]) => `${key}=${value}`),
    );
    // A key kloset does not take, written by hand: listed, and masked if its name says it is a secret.
    const file = path.join(configDir, 'config.json');
    const document = JSON.parse(await readFile(file, 'utf8')) as { aliases: { source: { bucket: Record<string, string> } } };
    document.aliases.source.bucket.password = 'hunter2';
    await writeFile(file, JSON.stringify(document));
    Object.assign(secrets, { password: 'hunter2' });
    const outputs = [
      ...(await kloset('config')),
      ...(await kloset('config', '--json')),
      ...(await kloset('config', 'source')),
      ...(await kloset('source', 'show')),
      ...(await kloset('source', 'show', 'bucket')),
      ...(await kloset('source', 'show', 'bucket', '--json')),
    ].join('\n');
    for (const secret of [...Object.values(secrets), 'uri-password-here']) expect(outputs).not.toContain(secret);
    expect(outputs).toContain('bucket');
  });

  it('given as key=value to config set are stored, as store set takes them, and never repeated', async () => {
    await kloset('config', 'store', 'create', 'mystore');
    const printed = await kloset('config', 'store', 'set', 'mystore', `secret_access_key=${AWS_SECRET}`, 'use_tls=false');
    expect(printed).toEqual([]);
    expect(await newConfig().get('store', 'mystore')).toEqual({ secret_access_key: AWS_SECRET, use_tls: 'false' });
  });

  it('are not repeated in the error for an unset given key=value', async () => {
    await kloset('store', 'add', 'mystore', '/x', `secret_access_key=${AWS_SECRET}`);
    for (const args of [
      ['config', 'store', 'unset', 'mystore', `secret_access_key=${AWS_SECRET}`],
      ['store', 'unset', 'mystore', `secret_access_key=${AWS_SECRET}`],
    ]) {
      const err = await rejection(kloset(...args));
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toBe("invalid key 'secret_access_key=…': use letters, digits, '_', '.' and '-', starting with a letter");
    }
    expect((await newConfig().get('store', 'mystore'))!.secret_access_key).toBe(AWS_SECRET);
  });

  it('are not repeated in the error for a set with too many words', async () => {
    await kloset('config', 'store', 'create', 'mystore');
    const err = await rejection(kloset('config', 'store', 'set', 'mystore', 'passphrase', 'two', 'words'));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).not.toMatch(/two|words/);
  });
});

describe('changes made at once by several processes', () => {
  it('all land: each reads and writes the file under a lock', async () => {
    const env = { XDG_CONFIG_HOME: path.join(tempRoot, 'parallel') };
    expect((await runKloset(['store', 'add', 'base', '/tmp/base'], { env })).code).toBe(0);
    const keys = ['access_key', 'endpoint', 'max_attempts', 'region', 'secret_access_key', 'session_token', 'timeout', 'use_tls'];
    const valueOf = (key: string, i: number) => (key === 'use_tls' ? 'true' : key === 'max_attempts' || key === 'timeout' ? String(i + 1) : `v${i}`);
    const results = await Promise.all(keys.map((key, i) => runKloset(['store', 'set', 'base', `${key}=${valueOf(key, i)}`], { env })));
    for (const result of results) expect(result.code).toBe(0);
    const saved = JSON.parse(await readFile(path.join(env.XDG_CONFIG_HOME, 'kloset', 'config.json'), 'utf8')) as { aliases: { store: { base: Record<string, string> } } };
    expect(Object.keys(saved.aliases.store.base).sort()).toEqual([...keys, 'location'].sort());
    expect(await readdir(path.join(env.XDG_CONFIG_HOME, 'kloset'))).toEqual(['config.json']);
  });

  it('take over a lock left by a process that died holding it', async () => {
    const env = { XDG_CONFIG_HOME: path.join(tempRoot, 'stale') };
    const lock = path.join(env.XDG_CONFIG_HOME, 'kloset', '.config.json.lock');
    await mkdir(path.dirname(lock), { recursive: true });
    await writeFile(lock, '');
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    const result = await runKloset(['store', 'add', 'after', '/tmp/after'], { env });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    await expect(stat(lock)).rejects.toThrow(/ENOENT/);
  });
});
