/**
 * The mapping between S3 keys and snapshot tree names (specified in KEYS.md).
 *
 * A key below the source's prefix is split on '/': every segment but the last
 * names a directory, the last names the object (a file entry). Each segment
 * becomes a valid entry name (never '', '.', '..', never a '/' or NUL), and
 * distinct segments become distinct names. An object whose segment is also a
 * directory in the same place (`a` beside `a/b`) gets OBJECT_SUFFIX.
 *
 * Ordinary segments keep their characters; only these change:
 *   NUL            → ESC '0'           (ESC is U+0001)
 *   ESC            → ESC '1'
 *   ''             → '％'              (U+FF05, FULLWIDTH PERCENT SIGN)
 *   '.'            → '％2E'
 *   '..'           → '％2E％2E'
 *   a segment whose encoding would end in '％' or equal a token above: + ESC
 *
 * The char escapes and the trailing ESC keep the byte order of ordinary
 * segments (see KEYS.md, "Order"); the three tokens sort after where their
 * keys are listed, which the importer's listing merge relies on.
 */

/** Starts the two-character escapes of NUL and ESC; alone at the end, marks a segment that only looks special. */
export const ESC = '\u0001';
/** The fullwidth percent sign: tokens for empty, '.' and '..' segments, and the suffix of a shadowed object. */
export const MARK = '\uFF05';
export const EMPTY_NAME = MARK;
export const DOT_NAME = `${MARK}2E`;
export const DOTDOT_NAME = `${MARK}2E${MARK}2E`;
/** Appended to the name of an object whose key is also a directory (`a` when `a/…` exists). */
export const OBJECT_SUFFIX = MARK;

const SPECIAL_SEGMENTS = new Map<string, string>([
  ['', EMPTY_NAME],
  ['.', DOT_NAME],
  ['..', DOTDOT_NAME],
]);
const SPECIAL_NAMES = new Map<string, string>([...SPECIAL_SEGMENTS].map(([segment, name]) => [name, segment]));

/**
 * The character escapes alone: order-preserving (a < b ⇔ escape(a) < escape(b)
 * in UTF-8 bytes) and prefix-preserving. The importer bounds its merge with it.
 */
export function escapeChars(segment: string): string {
  if (!segment.includes('\0') && !segment.includes(ESC)) return segment;
  let out = '';
  for (const ch of segment) out += ch === '\0' ? `${ESC}0` : ch === ESC ? `${ESC}1` : ch;
  return out;
}

function unescapeChars(text: string): string | undefined {
  if (!text.includes(ESC)) return text;
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch !== ESC) {
      out += ch;
      continue;
    }
    const next = text[++i];
    if (next === '0') out += '\0';
    else if (next === '1') out += ESC;
    else return undefined;
  }
  return out;
}

/** The entry name of a segment (as a directory, or as an object no directory shadows). */
export function segmentName(segment: string): string {
  if (segment.includes('/')) throw new Error(`segment ${JSON.stringify(segment)} holds a '/'`);
  const special = SPECIAL_SEGMENTS.get(segment);
  if (special !== undefined) return special;
  const escaped = escapeChars(segment);
  return escaped.endsWith(MARK) || SPECIAL_NAMES.has(escaped) ? escaped + ESC : escaped;
}

/** The name of a directory entry for keys that continue with `segment + '/'`. */
export function directoryName(segment: string): string {
  return segmentName(segment);
}

/** The name of the file entry for an object whose key ends with `segment`. */
export function objectName(segment: string, shadowed: boolean): string {
  const name = segmentName(segment);
  return shadowed ? name + OBJECT_SUFFIX : name;
}

/** The segment behind a directory entry's name, or undefined for a name the mapping never makes. */
export function parseDirectoryName(name: string): string | undefined {
  const special = SPECIAL_NAMES.get(name);
  if (special !== undefined) return special;
  if (name.endsWith(ESC)) {
    const segment = unescapeChars(name.slice(0, -1));
    // Only a segment that needed the mark has it: one encoding per segment.
    return segment !== undefined && segmentName(segment) === name ? segment : undefined;
  }
  if (name === '' || name.endsWith(MARK)) return undefined;
  const segment = unescapeChars(name);
  return segment !== undefined && segmentName(segment) === name ? segment : undefined;
}

/** The segment behind a file entry's name, and whether it carried OBJECT_SUFFIX. */
export function parseObjectName(name: string): { segment: string; shadowed: boolean } | undefined {
  if (name.endsWith(OBJECT_SUFFIX) && !SPECIAL_NAMES.has(name)) {
    const segment = parseDirectoryName(name.slice(0, -OBJECT_SUFFIX.length));
    return segment === undefined ? undefined : { segment, shadowed: true };
  }
  const segment = parseDirectoryName(name);
  return segment === undefined ? undefined : { segment, shadowed: false };
}

/** The key (relative to the source prefix) of the object at `path` ('/'-separated entry names). */
export function keyForPath(path: string): string | undefined {
  const names = path.split('/');
  const segments: string[] = [];
  for (let i = 0; i < names.length - 1; i++) {
    const segment = parseDirectoryName(names[i]);
    if (segment === undefined) return undefined;
    segments.push(segment);
  }
  const last = parseObjectName(names[names.length - 1]);
  if (last === undefined) return undefined;
  segments.push(last.segment);
  return segments.join('/');
}

/** The key prefix (relative to the source prefix) of the directory at `path`: '' for the root, else ending in '/'. */
export function prefixForPath(path: string): string | undefined {
  if (path === '') return '';
  let prefix = '';
  for (const name of path.split('/')) {
    const segment = parseDirectoryName(name);
    if (segment === undefined) return undefined;
    prefix += `${segment}/`;
  }
  return prefix;
}

/**
 * The tree path of every key of a set (keys relative to the source prefix).
 * Whether an object is shadowed depends on the other keys: `a` is, when some
 * key starts with `a/`. For tests and tools; the importer computes the same
 * names while it streams a listing.
 */
export function pathsForKeys(keys: Iterable<string>): Map<string, string> {
  const all = [...new Set(keys)];
  const directories = new Set<string>();
  for (const key of all) {
    let at = key.indexOf('/');
    while (at >= 0) {
      directories.add(key.slice(0, at));
      at = key.indexOf('/', at + 1);
    }
  }
  const paths = new Map<string, string>();
  for (const key of all) {
    const segments = key.split('/');
    const last = segments.pop()!;
    const names = segments.map(directoryName);
    names.push(objectName(last, directories.has(key)));
    paths.set(key, names.join('/'));
  }
  return paths;
}
