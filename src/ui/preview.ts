/**
 * What a file is shown as, and the Content-Type it is served with. Only
 * types that cannot run in the page's origin are ever sent: markup (HTML,
 * SVG, XML) is served as text/plain, and anything unknown as an
 * application/octet-stream attachment.
 */
import type { FileContent } from '../snapshot/reader.js';
import type { Entry } from '../snapshot/tree.js';

export type PreviewKind = 'text' | 'image' | 'audio' | 'video' | 'pdf' | 'none';

export interface Presentation {
  preview: PreviewKind;
  /** The Content-Type the content endpoint sends. */
  contentType: string;
  /** Served inline (the browser may show it) or only as an attachment. */
  inline: boolean;
}

const TEXT_TYPE = 'text/plain; charset=utf-8';
const BINARY: Presentation = { preview: 'none', contentType: 'application/octet-stream', inline: false };
const TEXT: Presentation = { preview: 'text', contentType: TEXT_TYPE, inline: true };

const IMAGES: Record<string, string> = {
  png: 'image/png',
  apng: 'image/apng',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  jfif: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  bmp: 'image/bmp',
  ico: 'image/x-icon',
};

const AUDIO: Record<string, string> = {
  mp3: 'audio/mpeg',
  ogg: 'audio/ogg',
  oga: 'audio/ogg',
  opus: 'audio/ogg',
  wav: 'audio/wav',
  flac: 'audio/flac',
  m4a: 'audio/mp4',
  aac: 'audio/aac',
  weba: 'audio/webm',
};

const VIDEO: Record<string, string> = {
  mp4: 'video/mp4',
  m4v: 'video/mp4',
  webm: 'video/webm',
  ogv: 'video/ogg',
  mov: 'video/quicktime',
  mkv: 'video/x-matroska',
};

/** Extensions shown as text; markup among them (html, svg, xml) is text here, never rendered. */
const TEXT_EXTENSIONS = new Set(
  (
    'txt text md markdown rst adoc org csv tsv log json jsonl ndjson yaml yml toml ini cfg conf properties env ' +
    'xml xsl xhtml html htm svg css scss sass less js mjs cjs ts tsx jsx mts cts vue svelte ' +
    'py pyi rb go rs c h cc cpp cxx hpp hh java kt kts scala swift m mm cs fs vb php pl pm lua r jl dart ex exs erl hrl ' +
    'hs ml mli clj cljs el lisp scm sh bash zsh fish ps1 psm1 bat cmd sql graphql proto gradle cmake mk make ' +
    'dockerfile gitignore gitattributes editorconfig lock diff patch tex bib srt vtt sub po pot desktop service ' +
    'tf hcl nix zig nim v sv vhd asm s'
  ).split(' '),
);
const TEXT_NAMES = new Set(['makefile', 'dockerfile', 'readme', 'license', 'copying', 'authors', 'changelog', 'todo', 'gemfile', 'rakefile', 'procfile', 'vagrantfile']);

function extension(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

/** By name (or a recorded S3 content type); undefined when only the bytes can tell. */
export function presentationByName(name: string, recordedType?: string): Presentation | undefined {
  const ext = extension(name);
  if (ext === 'pdf') return { preview: 'pdf', contentType: 'application/pdf', inline: true };
  if (IMAGES[ext]) return { preview: 'image', contentType: IMAGES[ext], inline: true };
  if (AUDIO[ext]) return { preview: 'audio', contentType: AUDIO[ext], inline: true };
  if (VIDEO[ext]) return { preview: 'video', contentType: VIDEO[ext], inline: true };
  if (TEXT_EXTENSIONS.has(ext) || TEXT_NAMES.has(name.toLowerCase())) return TEXT;
  if (recordedType) return presentationByType(recordedType);
  return undefined;
}

/** An S3 object's recorded Content-Type, reduced to what is safe to serve. */
function presentationByType(recorded: string): Presentation | undefined {
  const type = recorded.split(';')[0].trim().toLowerCase();
  if (type === 'application/pdf') return { preview: 'pdf', contentType: type, inline: true };
  const image = Object.values(IMAGES).find((t) => t === type);
  if (image) return { preview: 'image', contentType: image, inline: true };
  // Markup whatever its top type says (`audio/x+xml`): a browser could render it.
  if (type.endsWith('+xml') || type.endsWith('+json')) return TEXT;
  if (/^audio\/[a-z0-9.+-]+$/.test(type)) return { preview: 'audio', contentType: type, inline: true };
  if (/^video\/[a-z0-9.+-]+$/.test(type)) return { preview: 'video', contentType: type, inline: true };
  if (type.startsWith('text/') || /^application\/(json|xml|javascript|x-sh|yaml|x-yaml|toml)$/.test(type)) {
    return TEXT;
  }
  return undefined;
}

/** Bytes sniffed: no NUL and valid UTF-8 (a character cut at the end of the sample is allowed). */
export function looksLikeText(sample: Buffer): boolean {
  if (sample.includes(0)) return false;
  let end = sample.length;
  // Drop a trailing partial UTF-8 sequence: up to 3 continuation bytes after a lead byte.
  for (let back = 1; back <= 4 && end - back >= 0; back++) {
    const byte = sample[end - back];
    if ((byte & 0xc0) === 0x80) continue;
    if (byte >= 0xc0) {
      const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      if (back < need) end -= back;
    }
    break;
  }
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(sample.subarray(0, end));
    return true;
  } catch {
    return false;
  }
}

export const SNIFF_BYTES = 8192;

/** The presentation of a file entry; reads its first bytes when the name does not tell. */
export async function presentation(entry: Entry, open: () => Promise<FileContent>): Promise<Presentation> {
  if (entry.kind !== 'file') return BINARY;
  const byName = presentationByName(entry.name, entry.meta?.['s3.content_type']);
  if (byName) return byName;
  if (entry.size === 0) return TEXT;
  const content = await open();
  return looksLikeText(await content.read(0, SNIFF_BYTES)) ? TEXT : BINARY;
}
