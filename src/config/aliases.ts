/**
 * Aliases: named locations for stores, sources and destinations, so that
 * `@name` can stand in for a path or URI (and the options that go with it,
 * such as credentials) on any command.
 *
 * They live in one file, `$XDG_CONFIG_HOME/kloset/config.json`:
 *
 *   { "version": 1,
 *     "aliases": { "<section>": { "<name>": { "<key>": "<value>", ... } } } }
 *
 * A section is a free word, as in Plakar 1.0's `config <section> create <name>`;
 * the `store`, `source` and `destination` command groups use the sections of
 * those names. Top-level fields other than these two are kept as found, so a
 * later kloset can add settings without this code dropping them.
 */
import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { failureText, KlosetError, systemReason, UsageError } from '../errors.js';
import { makeDirectories } from '../storage/directories.js';
import { parseGlacierPolicy } from '../connectors/s3/glacier.js';
import { isS3Location, withoutPassword } from '../storage/open.js';
import { checkClientSetting } from '../storage/s3options.js';

export const ALIAS_ROLES = ['store', 'source', 'destination'] as const;
/** What a location is used as; `resolveAlias` prefers the section of that name. */
export type AliasRole = (typeof ALIAS_ROLES)[number];

export interface ResolvedLocation {
  location: string;
  /** Every key of the alias, `location`/`uri` included. Empty for a plain argument. */
  options: Record<string, string>;
}

export interface AliasEntry {
  section: string;
  name: string;
  values: Record<string, string>;
}

export interface AliasConfigOptions {
  /** Directory relative locations are resolved against; `process.cwd()` at the time of the change if omitted. */
  cwd?: string;
  /** What a leading `~` in a location stands for; `os.homedir()` if omitted. */
  homeDir?: string;
  /** Told of keys an alias holds that do not apply to the role it is used as; they are ignored. */
  onWarning?: (message: string) => void;
}

export const CONFIG_FILE_NAME = 'config.json';
const CONFIG_FORMAT_VERSION = 1;
/** How long a change waits for another process's; a lock older than the stale age is taken for a dead process's. */
const CONFIG_LOCK_WAIT_MS = 10_000;
const STALE_CONFIG_LOCK_MS = 30_000;

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit";
const KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]*$/;
const KEY_RULE = "letters, digits, '_', '.' and '-', starting with a letter";

/** Keys whose value is where the alias points, in order of preference. */
const LOCATION_KEYS = ['location', 'uri'] as const;
const URI_SCHEME_PREFIX = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

/** The keys any alias may hold, and those an S3 location adds (README, "Amazon S3"). */
const COMMON_KEYS = ['location', 'uri', 'type', 'passphrase'];
const S3_KEYS = [
  'endpoint', 'region', 'access_key', 'secret_access_key', 'session_token', 'use_tls', 'storage_class', 'timeout',
  'force_path_style', 'max_attempts', 'retry_mode', 'max_connections', 'glacier', 'glacier_objects',
];
const ALL_KEYS = [...COMMON_KEYS, ...S3_KEYS];
/**
 * Keys only some roles read: a store's passphrase, the class of the objects
 * a store or a destination writes, what a source does with archived objects.
 * Every other key applies to whatever the alias is used as.
 */
const ROLES_OF_KEY: ReadonlyMap<string, readonly AliasRole[]> = new Map([
  ['passphrase', ['store']],
  ['storage_class', ['store', 'destination']],
  ['glacier', ['source']],
  ['glacier_objects', ['source']],
]);
/** `type` as Plakar's configurations write it, and the locations each stands for. */
const LOCATION_TYPES: Record<string, (location: string) => boolean> = {
  s3: isS3Location,
  fs: (location) => !URI_SCHEME_PREFIX.test(location) || /^(fs|file):\/\//i.test(location),
};

// The access key id is not a secret in AWS's model, but it identifies an
// account, and masking it costs the user nothing: the last 4 characters are
// enough to tell two keys apart.
const SECRET_KEY_PATTERN = /secret|password|passphrase|token|session|access_key/i;
/**
 * An access key id names a key rather than opening anything: its last 4 characters are shown, as `aws
 * configure list` shows them, so that two aliases' keys can be told apart. A short one would give most of itself away.
 */
const KEY_ID_PATTERN = /^access_key(_id)?$/i;
const SHORTEST_KEY_ID_WITH_VISIBLE_TAIL = 12;

/** `$XDG_CONFIG_HOME/kloset`, else `~/.config/kloset`. */
export function defaultConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdgConfigHome = env.XDG_CONFIG_HOME;
  // The XDG base directory spec says a relative value is invalid and must be ignored.
  const configHome =
    xdgConfigHome && path.isAbsolute(xdgConfigHome)
      ? xdgConfigHome
      : path.join(env.HOME || os.homedir(), '.config');
  return path.join(configHome, 'kloset');
}

export function isSecretKey(key: string): boolean {
  return SECRET_KEY_PATTERN.test(key);
}

/** The value as it may be printed: secrets as `****`, an access key id as `****` and its last 4 characters. */
export function maskValue(key: string, value: string): string {
  if (isSecretKey(key)) {
    return KEY_ID_PATTERN.test(key) && value.length >= SHORTEST_KEY_ID_WITH_VISIBLE_TAIL ? `****${value.slice(-4)}` : '****';
  }
  // A password can also hide in a URI's user info (s3://id:secret@host/bucket).
  return withoutPassword(value);
}

export function maskedValues(values: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([key, value]) => [key, maskValue(key, value)]));
}

export function assertAliasName(name: string): void {
  if (!NAME_PATTERN.test(name)) throw new UsageError(`invalid alias name '${name}': use ${NAME_RULE}`);
}

export function assertSectionName(section: string): void {
  if (!NAME_PATTERN.test(section)) throw new UsageError(`invalid section name '${section}': use ${NAME_RULE}`);
}

export function assertKey(key: string): void {
  if (KEY_PATTERN.test(key)) return;
  // `secret_access_key=…` given where a key alone goes: what follows '=' is most likely a secret.
  const equals = key.indexOf('=');
  throw new UsageError(`invalid key '${equals < 0 ? key : `${key.slice(0, equals)}=…`}': use ${KEY_RULE}`);
}

/**
 * Parses `key=value` arguments (the value may itself contain `=`). A later
 * duplicate key wins. Error messages never repeat a value, which may be a secret.
 */
export function parseKeyValuePairs(args: readonly string[]): Record<string, string> {
  const values: Record<string, string> = {};
  args.forEach((arg, index) => {
    const equals = arg.indexOf('=');
    if (equals < 0) {
      // A bare word is most likely a key missing its value, and safe to repeat;
      // anything else might be a secret pasted without its key.
      const shown = KEY_PATTERN.test(arg) ? `'${arg}'` : `#${index + 1}`;
      throw new UsageError(`malformed option ${shown}: expected key=value`);
    }
    const key = arg.slice(0, equals);
    assertKey(key);
    values[key] = arg.slice(equals + 1);
  });
  return values;
}

/**
 * Returns `arg` unchanged unless it is `@name`, in which case the alias gives
 * the location and its options. (A local directory whose name starts with `@`
 * can still be reached as `./@dir`.)
 */
export async function resolveLocation(
  arg: string,
  role: AliasRole,
  config: Pick<AliasConfig, 'resolveAlias'>,
): Promise<ResolvedLocation> {
  // An unset variable (`at "$STORE"`, `-to "$DIR"`) must not stand for the current directory.
  if (arg === '') throw new UsageError(`empty ${role} location`);
  if (!arg.startsWith('@')) {
    refuseMistypedS3(arg);
    return { location: arg, options: {} };
  }
  return config.resolveAlias(arg, role);
}

/**
 * `s3:/bucket`, or restic's `s3:host/bucket`: meant for S3, and taken for a
 * local path it would put a store, a restore or a backup's source in a
 * directory named `s3:`, without a word. (Such a directory is still `./s3:…`.)
 */
function refuseMistypedS3(location: string): void {
  if (/^s3:(?!\/\/)/i.test(location)) {
    throw new UsageError(`${location}: an S3 location is written s3://bucket/prefix (a local path of that name: ./${location})`);
  }
}

// Maps rather than plain objects: names like `constructor` are valid aliases
// and must not find Object.prototype's members.
type AliasValues = Map<string, string>;
type AliasTable = Map<string, Map<string, AliasValues>>;

interface ConfigDocument {
  aliases: AliasTable;
  otherFields: Record<string, unknown>;
}

export class AliasConfig {
  readonly configDir: string;
  readonly configFile: string;
  private readonly cwd: string | undefined;
  private readonly homeDir: string | undefined;
  private readonly onWarning: ((message: string) => void) | undefined;

  constructor(configDir: string = defaultConfigDir(), options: AliasConfigOptions = {}) {
    this.configDir = configDir;
    this.configFile = path.join(configDir, CONFIG_FILE_NAME);
    this.cwd = options.cwd;
    this.homeDir = options.homeDir;
    this.onWarning = options.onWarning;
  }

  /** All aliases, or those of one section, sorted by section then name; values unmasked. */
  async list(section?: string): Promise<AliasEntry[]> {
    const { aliases } = await this.read();
    const entries: AliasEntry[] = [];
    for (const [sectionName, names] of aliases) {
      if (section !== undefined && sectionName !== section) continue;
      for (const [name, values] of names) {
        entries.push({ section: sectionName, name, values: sortedRecord(values) });
      }
    }
    return entries.sort((a, b) => compare(a.section, b.section) || compare(a.name, b.name));
  }

  /** The alias's values, unmasked, or undefined if there is no such alias. */
  async get(section: string, name: string): Promise<Record<string, string> | undefined> {
    const { aliases } = await this.read();
    const values = aliases.get(section)?.get(name);
    return values && sortedRecord(values);
  }

  async create(section: string, name: string): Promise<void> {
    await this.add(section, name, {});
  }

  /** Creates an alias with its values in one write; fails if the section already has it. */
  async add(section: string, name: string, values: Readonly<Record<string, string>>): Promise<void> {
    assertSectionName(section);
    assertAliasName(name);
    const normalized = this.normalizeValues(`${section}.${name}`, values);
    await this.update((document) => {
      let names = document.aliases.get(section);
      if (names?.has(name)) throw new KlosetError(`alias ${section}.${name} already exists`);
      if (!names) {
        names = new Map();
        document.aliases.set(section, names);
      }
      names.set(name, new Map(Object.entries(normalized)));
    });
  }

  /** With `create`, an alias that does not exist yet is made, as `aws configure set` makes a profile. */
  async set(section: string, name: string, values: Readonly<Record<string, string>>, options: { create?: boolean } = {}): Promise<void> {
    if (options.create) {
      assertSectionName(section);
      assertAliasName(name);
    }
    const normalized = this.normalizeValues(`${section}.${name}`, values);
    await this.update((document) => {
      if (options.create && !document.aliases.get(section)?.has(name)) {
        if (!document.aliases.has(section)) document.aliases.set(section, new Map());
        document.aliases.get(section)!.set(name, new Map());
      }
      const aliasValues = this.existing(document, section, name);
      for (const [key, value] of Object.entries(normalized)) aliasValues.set(key, value);
    });
  }

  async unset(section: string, name: string, keys: readonly string[]): Promise<void> {
    for (const key of keys) assertKey(key);
    await this.update((document) => {
      const aliasValues = this.existing(document, section, name);
      // Like `git config --unset`, a key that is not there is an error: it is most often a typo.
      for (const key of keys) {
        if (!aliasValues.has(key)) throw new KlosetError(`alias ${section}.${name} has no key '${key}'`);
      }
      for (const key of keys) aliasValues.delete(key);
    });
  }

  async remove(section: string, name: string): Promise<void> {
    await this.update((document) => {
      this.existing(document, section, name);
      const names = document.aliases.get(section)!;
      names.delete(name);
      if (names.size === 0) document.aliases.delete(section);
    });
  }

  /**
   * Finds the alias `name` (with or without its `@`) in any section, preferring
   * the section named like `role`, then the others in alphabetical order.
   */
  async resolveAlias(name: string, role: AliasRole): Promise<ResolvedLocation> {
    const bareName = name.startsWith('@') ? name.slice(1) : name;
    if (!NAME_PATTERN.test(bareName)) {
      throw new UsageError(`'@${bareName}' is not a valid alias name: use ${NAME_RULE}`);
    }
    const { aliases } = await this.read();
    const sections = [...aliases.keys()].filter((section) => aliases.get(section)!.has(bareName)).sort(compare);
    if (sections.length === 0) throw new KlosetError(`unknown alias @${bareName} (see 'kloset config')`);
    // Picked by the alphabet, a `remote` alias would stand for the store of the same name in `repository`:
    // a command that removes would then work on the wrong store.
    if (!sections.includes(role) && sections.length > 1) {
      throw new UsageError(
        `alias @${bareName} is in several sections (${sections.join(', ')}): rename all but one, or put the ${role}'s in section ${role}`,
      );
    }
    const section = sections.includes(role) ? role : sections[0]!;
    const values = aliases.get(section)!.get(bareName)!;
    const location = LOCATION_KEYS.map((key) => values.get(key)).find((value) => value);
    if (location === undefined) {
      throw new KlosetError(
        `alias @${bareName} has no location: set one with 'kloset config ${section} set ${bareName} location <path-or-uri>'`,
      );
    }
    // Taking one of two places by a preference the user never sees would back up, or restore into, the other's.
    const [byLocation, byUri] = LOCATION_KEYS.map((key) => values.get(key));
    if (byLocation && byUri && byLocation !== byUri) {
      throw new UsageError(
        `alias @${bareName} has both location ${withoutPassword(byLocation)} and uri ${withoutPassword(byUri)}: unset one with 'kloset config ${section} unset ${bareName} uri' (or location)`,
      );
    }
    assertKnownKeys(`@${bareName}`, location, values);
    const ignored = [...values.keys()].filter((key) => ROLES_OF_KEY.get(key)?.includes(role) === false).sort(compare);
    if (ignored.length > 0) {
      this.onWarning?.(`alias @${bareName}: ${ignored.join(', ')} ${ignored.length === 1 ? 'does' : 'do'} not apply to a ${role}: ignored`);
    }
    return { location, options: sortedRecord(values) };
  }

  private existing(document: ConfigDocument, section: string, name: string): AliasValues {
    const values = document.aliases.get(section)?.get(name);
    if (!values) throw new KlosetError(`unknown alias ${section}.${name} (see 'kloset config')`);
    return values;
  }

  /**
   * Validates keys and makes local locations absolute: later commands run from other directories.
   * A key no location reads is refused now, not when the alias is first used, perhaps by a backup at night.
   */
  private normalizeValues(alias: string, values: Readonly<Record<string, string>>): Record<string, string> {
    const normalized: Record<string, string> = {};
    for (const key of Object.keys(values)) {
      assertKey(key);
      if (!ALL_KEYS.includes(key)) throw new UsageError(`alias ${alias}: ${unknownKey(key, ALL_KEYS)}; an alias takes ${ALL_KEYS.join(', ')}`);
    }
    for (const [key, value] of Object.entries(values)) {
      inAlias(alias, () => checkValue(key, value));
      normalized[key] = (LOCATION_KEYS as readonly string[]).includes(key) ? this.absoluteLocation(key, value) : value;
    }
    return normalized;
  }

  private absoluteLocation(key: string, value: string): string {
    if (value === '') throw new UsageError(`${key} cannot be empty`);
    refuseMistypedS3(value);
    if (URI_SCHEME_PREFIX.test(value)) return value;
    const homeDir = this.homeDir ?? os.homedir();
    const expanded = value === '~' ? homeDir : value.startsWith('~/') ? path.join(homeDir, value.slice(2)) : value;
    return path.resolve(this.cwd ?? process.cwd(), expanded);
  }

  /**
   * Reads, changes and writes the file under a lock file beside it: two
   * `config set` run at once (a provisioning script) must both land, not
   * the later one over the earlier one's read.
   */
  private async update(change: (document: ConfigDocument) => void): Promise<void> {
    const lockFile = path.join(this.configDir, `.${CONFIG_FILE_NAME}.lock`);
    try {
      await makeDirectories(this.configDir, 0o700);
      // The file holds credentials: its directory is the user's alone even if it existed before.
      await chmod(this.configDir, 0o700);
    } catch (err) {
      throw new KlosetError(`cannot write ${this.configFile}: ${failureText(err)}`, { cause: err });
    }
    for (const started = Date.now(); ; ) {
      try {
        await (await open(lockFile, 'wx', 0o600)).close();
        break;
      } catch (err) {
        if (errorCode(err) !== 'EEXIST') throw new KlosetError(`cannot write ${this.configFile}: ${failureText(err)}`, { cause: err });
      }
      // A lock older than any update takes was left by a process that died holding it.
      const age = await stat(lockFile).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > STALE_CONFIG_LOCK_MS) await rm(lockFile, { force: true });
      else if (Date.now() - started > CONFIG_LOCK_WAIT_MS) {
        throw new KlosetError(`${this.configFile} is being changed by another kloset (${lockFile} exists): try again`);
      } else await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 40));
    }
    try {
      const document = await this.read();
      change(document);
      await this.write(document);
    } finally {
      await rm(lockFile, { force: true });
    }
  }

  private async read(): Promise<ConfigDocument> {
    let text: string;
    try {
      text = await readFile(this.configFile, 'utf8');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return { aliases: new Map(), otherFields: {} };
      throw new KlosetError(`cannot read ${this.configFile}: ${systemReason(err)}`, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new KlosetError(`${this.configFile} is not valid JSON (${failureText(err)}); fix or remove it`, {
        cause: err,
      });
    }
    return decodeDocument(parsed, this.configFile);
  }

  /** Writes a temporary file beside the config, syncs it and renames it over, so a crash leaves the old or the new file. */
  private async write(document: ConfigDocument): Promise<void> {
    const text = `${JSON.stringify(encodeDocument(document), null, 2)}\n`;
    const tempFile = path.join(
      this.configDir,
      `.${CONFIG_FILE_NAME}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
    );
    try {
      const handle = await open(tempFile, 'wx', 0o600);
      try {
        await handle.chmod(0o600); // the umask may have narrowed the mode given to open
        await handle.writeFile(text, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tempFile, this.configFile);
    } catch (err) {
      await rm(tempFile, { force: true }).catch(() => {});
      throw new KlosetError(`cannot write ${this.configFile}: ${failureText(err)}`, { cause: err });
    }
    await syncDirectory(this.configDir);
  }
}

/**
 * A key the location does not use is refused rather than ignored: `regoin` or
 * `storage_clas` would otherwise leave the default in force without a word.
 */
function assertKnownKeys(alias: string, location: string, values: AliasValues): void {
  const s3 = LOCATION_TYPES.s3!(location);
  const known = s3 ? ALL_KEYS : COMMON_KEYS;
  for (const key of values.keys()) {
    if (known.includes(key)) continue;
    throw new UsageError(`alias ${alias}: ${unknownKey(key, known)}; ${s3 ? 'an S3 location takes' : 'a local location takes'} ${known.join(', ')}`);
  }
  const type = values.get('type');
  if (type === undefined) return;
  const fits = inAlias(alias, () => locationTypeCheck(type));
  if (!fits(location)) {
    throw new UsageError(`alias ${alias}: type ${type} does not fit its location ${withoutPassword(location)}`);
  }
}

/** The check's answer; its usage error names the alias. */
function inAlias<T>(alias: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`alias ${alias}: ${err.message}`);
    throw err;
  }
}

/** A value no use of the alias could take is refused when it is set, as an unknown key is. */
function checkValue(key: string, value: string): void {
  if (key === 'glacier' || key === 'glacier_objects') parseGlacierPolicy(value, key);
  else if (key === 'type') locationTypeCheck(value);
  else checkClientSetting(key, value);
}

/** Whether a location fits the alias's `type`. */
function locationTypeCheck(type: string): (location: string) => boolean {
  const fits = LOCATION_TYPES[type.toLowerCase()];
  if (!fits) throw new UsageError(`type '${type}' is not one kloset knows (${Object.keys(LOCATION_TYPES).join(' or ')})`);
  return fits;
}

/** `unknown key 'regoin' (did you mean 'region'?)`. */
function unknownKey(key: string, known: readonly string[]): string {
  const near = known.find((candidate) => editDistance(candidate, key) <= 2);
  return `unknown key '${key}'${near ? ` (did you mean '${near}'?)` : ''}`;
}

/** Levenshtein distance, for suggesting the key a typo meant. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

function decodeDocument(parsed: unknown, configFile: string): ConfigDocument {
  const invalid = (what: string) => new KlosetError(`${configFile} is not a valid kloset config: ${what}`);
  if (!isPlainObject(parsed)) throw invalid('expected a JSON object');
  const { version, aliases: rawAliases, ...otherFields } = parsed;
  if (version !== undefined && (typeof version !== 'number' || version > CONFIG_FORMAT_VERSION)) {
    throw invalid(`unsupported version ${JSON.stringify(version)} (this kloset reads version ${CONFIG_FORMAT_VERSION})`);
  }
  const aliases: AliasTable = new Map();
  if (rawAliases === undefined) return { aliases, otherFields };
  if (!isPlainObject(rawAliases)) throw invalid('"aliases" should be an object of sections');
  for (const [section, rawNames] of Object.entries(rawAliases)) {
    if (!isPlainObject(rawNames)) throw invalid(`section "${section}" should be an object of aliases`);
    const names = new Map<string, AliasValues>();
    for (const [name, rawValues] of Object.entries(rawNames)) {
      if (!isPlainObject(rawValues)) throw invalid(`alias ${section}.${name} should be an object of key/value strings`);
      const values: AliasValues = new Map();
      for (const [key, value] of Object.entries(rawValues)) {
        if (typeof value !== 'string') throw invalid(`${section}.${name}.${key} should be a string`);
        values.set(key, value);
      }
      names.set(name, values);
    }
    aliases.set(section, names);
  }
  return { aliases, otherFields };
}

function encodeDocument(document: ConfigDocument): Record<string, unknown> {
  // fromEntries defines own properties, so a hand-written "__proto__" stays data.
  const aliases = Object.fromEntries(
    [...document.aliases.entries()]
      .sort(([a], [b]) => compare(a, b))
      .map(([section, names]) => [
        section,
        Object.fromEntries(
          [...names.entries()].sort(([a], [b]) => compare(a, b)).map(([name, values]) => [name, sortedRecord(values)]),
        ),
      ]),
  );
  return { ...document.otherFields, version: CONFIG_FORMAT_VERSION, aliases };
}

/** Makes the rename durable; some platforms cannot open a directory for syncing, and then the rename is all we get. */
async function syncDirectory(directory: string): Promise<void> {
  try {
    const handle = await open(directory, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort, see above
  }
}

function sortedRecord(values: AliasValues): Record<string, string> {
  return Object.fromEntries([...values.entries()].sort(([a], [b]) => compare(a, b)));
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function errorCode(err: unknown): string | undefined {
  const code = isPlainObject(err) ? err.code : undefined;
  return typeof code === 'string' ? code : undefined;
}
