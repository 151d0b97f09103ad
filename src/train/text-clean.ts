// CLIP's caption cleaning, in JavaScript: the text every tokenizer id depends on. CLIP runs
//   whitespace_clean(basic_clean(text)).lower()
// where basic_clean = ftfy.fix_text, then Python's html.unescape twice, then strip; and whitespace_clean
// collapses runs of whitespace to one space and strips. Python's html.unescape is replicated exactly
// (same HTML5 table, same numeric-reference rules). ftfy.fix_text is approximated by its simple,
// deterministic fixes (see `fixText`); its mojibake repair, a statistical guess, is not replicated.

import { HTML5_ENTITIES } from './tokenizer-entities.js';

// ---- Python's html.unescape ----

/** Numeric references the HTML5 spec maps to something other than their code point (Windows-1252 for 0x80-0x9F). */
const INVALID_CHARREFS: ReadonlyMap<number, string> = new Map([
  [0x00, '\ufffd'], [0x0d, '\r'], [0x80, '\u20ac'], [0x81, '\x81'], [0x82, '\u201a'], [0x83, '\u0192'],
  [0x84, '\u201e'], [0x85, '\u2026'], [0x86, '\u2020'], [0x87, '\u2021'], [0x88, '\u02c6'], [0x89, '\u2030'],
  [0x8a, '\u0160'], [0x8b, '\u2039'], [0x8c, '\u0152'], [0x8d, '\x8d'], [0x8e, '\u017d'], [0x8f, '\x8f'],
  [0x90, '\x90'], [0x91, '\u2018'], [0x92, '\u2019'], [0x93, '\u201c'], [0x94, '\u201d'], [0x95, '\u2022'],
  [0x96, '\u2013'], [0x97, '\u2014'], [0x98, '\u02dc'], [0x99, '\u2122'], [0x9a, '\u0161'], [0x9b, '\u203a'],
  [0x9c, '\u0153'], [0x9d, '\x9d'], [0x9e, '\u017e'], [0x9f, '\u0178'],
]);

/** Code points a numeric reference may not produce: Python drops them (returns ''). */
function isInvalidCodepoint(n: number): boolean {
  return (
    (n >= 0x01 && n <= 0x08) ||
    n === 0x0b ||
    (n >= 0x0e && n <= 0x1f) ||
    (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) ||
    (n & 0xfffe) === 0xfffe // U+xFFFE and U+xFFFF of every plane
  );
}

function entity(name: string): string | undefined {
  return Object.hasOwn(HTML5_ENTITIES, name) ? HTML5_ENTITIES[name] : undefined;
}

// The same alternatives as Python's html._charref, matched by code point.
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function replaceCharref(_match: string, ref: string): string {
  if (ref[0] === '#') {
    const hex = ref[1] === 'x' || ref[1] === 'X';
    const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
    const num = parseInt(digits, hex ? 16 : 10); // a huge number parses to >0x10FFFF or Infinity: U+FFFD below
    const special = INVALID_CHARREFS.get(num);
    if (special !== undefined) return special;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
    if (isInvalidCodepoint(num)) return '';
    return String.fromCodePoint(num);
  }
  const whole = entity(ref);
  if (whole !== undefined) return whole;
  // The longest known prefix wins ("&ampx" -> "&x"); only the legacy names without ";" can be prefixes.
  const chars = Array.from(ref);
  for (let n = chars.length - 1; n > 1; n--) {
    const prefix = chars.slice(0, n).join('');
    const hit = entity(prefix);
    if (hit !== undefined) return hit + chars.slice(n).join('');
  }
  return `&${ref}`;
}

/** Python's `html.unescape`: HTML5 named and numeric character references, with the same edge cases. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF_RE, replaceCharref);
}

// ---- ftfy.fix_text, its deterministic parts ----

// ftfy decodes only ";"-terminated entities, and also their all-caps forms ("&NTILDE;" -> "Ñ") where
// the capitalised name is not itself an entity.
const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;
let ftfyEntities: Map<string, string> | undefined;

function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities !== undefined) return ftfyEntities;
  const table = new Map<string, string>();
  for (const [name, value] of Object.entries(HTML5_ENTITIES)) {
    if (!name.endsWith(';')) continue;
    table.set(`&${name}`, value);
    if (name === name.toLowerCase()) {
      const upper = `&${name.toUpperCase()}`;
      if (htmlUnescape(upper) === upper) table.set(upper, value.toUpperCase());
    }
  }
  ftfyEntities = table;
  return table;
}

function ftfyUnescape(text: string): string {
  if (!text.includes('&')) return text;
  const table = ftfyEntityTable();
  return text.replace(FTFY_ENTITY_RE, (m) => {
    const named = table.get(m);
    if (named !== undefined) return named;
    if (m.startsWith('&#')) {
      const out = htmlUnescape(m);
      return out.includes(';') ? m : out;
    }
    return m;
  });
}

// C1 controls are almost always Windows-1252 bytes decoded as Latin-1: ftfy reads them as Windows-1252
// ("sloppy": the five bytes that code page leaves undefined stay as they are).
const C1_RE = /[\x80-\x9f]/g;
function fixC1Controls(text: string): string {
  return text.replace(C1_RE, (c) => {
    const mapped = INVALID_CHARREFS.get(c.charCodeAt(0));
    return mapped ?? c;
  });
}

const LIGATURES: ReadonlyMap<string, string> = new Map([
  ['Ĳ', 'IJ'], ['ĳ', 'ij'], ['ŉ', 'ʼn'], ['Ǳ', 'DZ'], ['ǲ', 'Dz'], ['ǳ', 'dz'], ['Ǆ', 'DŽ'], ['ǅ', 'Dž'],
  ['ǆ', 'dž'], ['Ǉ', 'LJ'], ['ǈ', 'Lj'], ['ǉ', 'lj'], ['Ǌ', 'NJ'], ['ǋ', 'Nj'], ['ǌ', 'nj'],
  ['ﬀ', 'ff'], ['ﬁ', 'fi'], ['ﬂ', 'fl'], ['ﬃ', 'ffi'], ['ﬄ', 'ffl'], ['ﬅ', 'ſt'], ['ﬆ', 'st'],
]);
const LIGATURE_RE = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');

// Full-width and half-width forms become their ordinary forms (NFKC of just those), and the
// ideographic space a plain space.
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;
function fixWidth(text: string): string {
  return text.replace(WIDTH_RE, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
}

const SINGLE_QUOTE_RE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE_RE = /[\u201c-\u201f]/g;
const LINE_BREAK_RE = /\r\n|[\r\u2028\u2029\u0085]/g;
const TERMINAL_ESCAPE_RE = /\x1b\[((?:\d|;)*)([a-zA-Z])/g;
// Controls ftfy strips: C0 but tab, LF, FF and CR; DEL; deprecated format characters; the BOM;
// interlinear annotation marks.
const CONTROL_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
// Lone surrogates become U+FFFD, as ftfy's fix_surrogates leaves them (paired ones are already one character here).
const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

// Tab, LF and printable ASCII but "&": text that every fix below leaves as it is.
const PLAIN_ASCII_RE = /^[\t\n\x20-\x25\x27-\x7e]*$/;

/**
 * An approximation of `ftfy.fix_text` (ftfy 6 defaults): HTML entities (only when the text has no
 * "<", as ftfy's "auto"), C1 controls read as Windows-1252, Latin ligatures split, full-width forms
 * narrowed, curly quotes straightened, line breaks unified, lone surrogates replaced, terminal escapes
 * and stray control characters removed, NFC; repeated until nothing changes, as ftfy does.
 *
 * Not replicated: ftfy's mojibake repair (`fix_encoding`: re-decoding text that was decoded with the
 * wrong code page, such as "Ã©" for "é", and its related byte-level fixes). It is a heuristic over
 * character statistics; text that needs it tokenizes differently here than in CLIP.
 */
export function fixText(text: string): string {
  // Most captions are plain printable ASCII without "&": no fix changes them.
  if (PLAIN_ASCII_RE.test(text)) return text;
  const unescape = !text.includes('<');
  for (let round = 0; round < 16; round++) {
    const before = text;
    if (unescape) text = ftfyUnescape(text);
    text = fixC1Controls(text);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES.get(c) ?? c);
    text = fixWidth(text);
    text = text.replace(SINGLE_QUOTE_RE, "'").replace(DOUBLE_QUOTE_RE, '"');
    text = text.replace(LINE_BREAK_RE, '\n');
    text = text.replace(LONE_SURROGATE_RE, '\ufffd');
    text = text.replace(TERMINAL_ESCAPE_RE, '');
    text = text.replace(CONTROL_RE, '');
    text = text.normalize('NFC');
    if (text === before) break;
  }
  return text;
}

// ---- whitespace, as Python's str.isspace() sees it ----

const PY_SPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACE_RUN_RE = new RegExp(`[${PY_SPACE}]+`, 'g');
const PY_STRIP_RE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** Python's `str.strip()` (JavaScript's `trim` also strips U+FEFF and misses U+0085 and U+001C-U+001F). */
export function pyStrip(text: string): string {
  return text.replace(PY_STRIP_RE, '');
}

/** CLIP's basic_clean: ftfy, html.unescape twice, strip. */
export function basicClean(text: string): string {
  return pyStrip(htmlUnescape(htmlUnescape(fixText(text))));
}

/** CLIP's whitespace_clean: every whitespace run becomes one space, then strip. */
export function whitespaceClean(text: string): string {
  return pyStrip(text.replace(PY_SPACE_RUN_RE, ' '));
}

/** The text CLIP's tokenizer splits: `whitespace_clean(basic_clean(text)).lower()`. */
export function cleanCaption(text: string): string {
  return whitespaceClean(basicClean(text)).toLowerCase();
}
