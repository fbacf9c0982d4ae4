/**
 * The alias commands: Plakar 1.0's generic `config <section> create|set|unset|rm
 * <name> ...` (so its documentation works verbatim) and the current
 * `store|source|destination add|set|unset|show|rm`. Listings mask secrets;
 * changes print nothing on success, like `git config`.
 */
import type { Command } from 'commander';
import { KlosetError, UsageError } from '../../errors.js';
import {
  ALIAS_ROLES,
  maskedValues,
  parseKeyValuePairs,
  type AliasConfig,
  type AliasEntry,
  type AliasRole,
} from '../../config/aliases.js';

type Output = (line: string) => void;

const CONFIG_ACTIONS = ['create', 'set', 'unset', 'rm'] as const;
type ConfigAction = (typeof CONFIG_ACTIONS)[number];

const CONFIG_HELP = `
Examples:
  kloset config                                   list every alias, secrets masked
  kloset config s3_src create s3_src
  kloset config s3_src set s3_src uri s3://bucket
  kloset config s3_src unset s3_src use_tls
  kloset config s3_src rm s3_src

Use an alias wherever a location goes, as @name.`;

export function registerConfigCommands(program: Command, getConfig: () => AliasConfig, out: Output): void {
  program
    .command('config')
    .description('list aliases, or create, set, unset and rm them in a section')
    .argument('[args...]', '<section> create|set|unset|rm <name> [<key> [<value>]]')
    .option('--json', 'list as JSON (secrets still masked)')
    // A value may start with '-' (a generated secret): it is a value, and never echoed as an unknown option.
    .allowUnknownOption()
    .addHelpText('after', CONFIG_HELP)
    .action(async (args: string[], options: { json?: boolean }) => {
      await runConfig(getConfig(), args, options.json === true, out);
    });

  for (const role of ALIAS_ROLES) registerRoleCommands(program, role, getConfig, out);
}

async function runConfig(config: AliasConfig, args: readonly string[], json: boolean, out: Output): Promise<void> {
  if (args.length <= 1) {
    printListing(await config.list(args[0]), json, out);
    return;
  }
  if (json) throw new UsageError('--json only applies to listing aliases');
  const [section, actionWord, name, ...rest] = args as [string, string, string | undefined, ...string[]];
  if (!(CONFIG_ACTIONS as readonly string[]).includes(actionWord)) {
    throw new UsageError(`unknown config action '${actionWord}': expected ${CONFIG_ACTIONS.join(', ')}`);
  }
  const action = actionWord as ConfigAction;
  if (name === undefined) throw new UsageError(`missing alias name: kloset config ${section} ${action} <name>`);
  const usage = `kloset config ${section} ${action} ${name}`;

  switch (action) {
    case 'create':
      expectNoMore(rest, usage);
      await config.create(section, name);
      return;
    case 'set': {
      // `set <name> key=value…`, as `store set` takes it: the pairs are parsed without repeating a value.
      // An alias not created yet is made: the documentation's own `config aws_src set aws_src uri …` works alone.
      if (rest[0]?.includes('=')) {
        await config.set(section, name, parseKeyValuePairs(rest), { create: true });
        return;
      }
      const [key, value, ...extra] = rest;
      if (key === undefined) throw new UsageError(`missing key and value: ${usage} <key> <value>`);
      if (value === undefined) throw new UsageError(`missing value for '${key}': ${usage} ${key} <value>`);
      // The extra words are not repeated: they are probably a secret with spaces in it.
      if (extra.length > 0) throw new UsageError(`too many arguments to set '${key}': quote a value that contains spaces`);
      await config.set(section, name, { [key]: value }, { create: true });
      return;
    }
    case 'unset':
      if (rest.length === 0) throw new UsageError(`missing key: ${usage} <key>...`);
      await config.unset(section, name, rest);
      return;
    case 'rm':
      expectNoMore(rest, usage);
      await config.remove(section, name);
      return;
  }
}

function expectNoMore(rest: readonly string[], usage: string): void {
  if (rest.length > 0) throw new UsageError(`too many arguments: ${usage}`);
}

function registerRoleCommands(program: Command, role: AliasRole, getConfig: () => AliasConfig, out: Output): void {
  const group = program.command(role).description(`name ${role} locations, to use as @name`);

  group
    .command('add')
    .description(`name a ${role} location, with options such as credentials`)
    .argument('<name>', 'alias name')
    .argument('<location>', 'path or URI')
    .argument('[key=value...]', 'options')
    .allowUnknownOption()
    .action(async (name: string, location: string, pairs: string[]) => {
      const values = parseKeyValuePairs(pairs);
      if (Object.hasOwn(values, 'location')) {
        throw new UsageError(`location given twice: as an argument and as location=...`);
      }
      await getConfig().add(role, name, { location, ...values });
    });

  group
    .command('set')
    .description(`set options of a ${role} alias`)
    .argument('<name>', 'alias name')
    .argument('<key=value...>', 'options')
    .allowUnknownOption()
    .action(async (name: string, pairs: string[]) => {
      await getConfig().set(role, name, parseKeyValuePairs(pairs));
    });

  group
    .command('unset')
    .description(`remove options of a ${role} alias`)
    .argument('<name>', 'alias name')
    .argument('<key...>', 'option keys')
    .action(async (name: string, keys: string[]) => {
      await getConfig().unset(role, name, keys);
    });

  group
    .command('show')
    .description(`show ${role} aliases, secrets masked`)
    .argument('[name]', 'alias name; all if omitted')
    .option('--json', 'print as JSON (secrets still masked)')
    .action(async (name: string | undefined, options: { json?: boolean }) => {
      const config = getConfig();
      let entries: AliasEntry[];
      if (name === undefined) {
        entries = await config.list(role);
      } else {
        const values = await config.get(role, name);
        if (values === undefined) throw new KlosetError(`unknown alias ${role}.${name} (see 'kloset ${role} show')`);
        entries = [{ section: role, name, values }];
      }
      printAliases(entries, options.json === true, out);
    });

  group
    .command('rm')
    .description(`remove a ${role} alias`)
    .argument('<name>', 'alias name')
    .action(async (name: string) => {
      await getConfig().remove(role, name);
    });
}

/** `config`: one line per alias, `section.name key=value ...`, or JSON section → name → values. */
function printListing(entries: readonly AliasEntry[], json: boolean, out: Output): void {
  if (json) {
    const bySection = new Map<string, [string, Record<string, string>][]>();
    for (const entry of entries) {
      const names = bySection.get(entry.section) ?? [];
      names.push([entry.name, maskedValues(entry.values)]);
      bySection.set(entry.section, names);
    }
    const document = Object.fromEntries([...bySection].map(([section, names]) => [section, Object.fromEntries(names)]));
    out(JSON.stringify(document, null, 2));
    return;
  }
  for (const entry of entries) {
    const pairs = Object.entries(maskedValues(entry.values)).map(([key, value]) => `${key}=${quoteIfNeeded(value)}`);
    out([`${entry.section}.${entry.name}`, ...pairs].join(' '));
  }
}

/** `show`: a `name:` block of indented `key: value` lines per alias, or JSON name → values. */
function printAliases(entries: readonly AliasEntry[], json: boolean, out: Output): void {
  if (json) {
    out(JSON.stringify(Object.fromEntries(entries.map((entry) => [entry.name, maskedValues(entry.values)])), null, 2));
    return;
  }
  for (const entry of entries) {
    out(`${entry.name}:`);
    for (const [key, value] of Object.entries(maskedValues(entry.values))) out(`  ${key}: ${value}`);
  }
}

/** Keeps `key=value` listings splittable on spaces when a value is empty or has spaces or quotes. */
function quoteIfNeeded(value: string): string {
  return value === '' || /[\s"'\\]/.test(value) ? JSON.stringify(value) : value;
}
