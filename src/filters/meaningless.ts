// FILIP's `meaningless_text` rule as a pure predicate: a caption that carries no description of its
// image (a file name, a camera or CMS default, a URL, a hash, only numbers or punctuation, HTML left
// over from scraping). Precision comes first: a real caption that merely contains such a word ("a
// photo of a dog", "2019 Ford Mustang GT", "Canon EOS 5D Mark IV") must pass, so every rule looks at
// the WHOLE caption, never at a word inside it. Text in any script with letters passes here; whether
// it is English is the language rule's business.

import { normalizeCaption } from '../pipeline/dedupe.js';

/** Sub-rules of `meaningless_text`. Value = one-line description (docs, reject-log detail). */
export const MEANINGLESS_RULES = {
  empty: 'empty, or only whitespace and invisible characters',
  html: 'only HTML tags, entities or a truncated tag (e.g. `<img src=...>`, `&nbsp;`, `<p></p>`)',
  url: 'a URL, a path with a host, or a data: URI',
  uuid: 'a UUID/GUID, with or without a file extension',
  hash: 'a hex digest or a long random token, with or without a file extension',
  file_name: 'a camera or app file name (`DSC_0123.JPG`, `IMG_20190101_123456`, `Screenshot 2020-...`), or a file name whose stem says nothing',
  camera_default: 'a camera or CMS default (`untitled`, `image`, `no description`, `featured image`, `photo 3`...)',
  numbers_only: 'only digits, with punctuation, symbols or a size such as `300x250`',
  punctuation_only: 'no letters and no digits: punctuation, symbols or emoji only',
} as const;

export type MeaninglessRule = keyof typeof MEANINGLESS_RULES;
export const MEANINGLESS_RULE_CODES = Object.keys(MEANINGLESS_RULES) as MeaninglessRule[];

/** True if the caption carries no description (see {@link meaninglessReason} for which rule fires). */
export function isMeaningless(text: string): boolean {
  return meaninglessReason(text) !== undefined;
}

/**
 * The sub-rule that makes `text` meaningless, or `undefined` for a caption that may describe its image.
 * Pure and total: any string, including lone surrogates and megabytes of text, gives an answer.
 */
export function meaninglessReason(text: string): MeaninglessRule | undefined {
  let s = text.replace(INVISIBLE, ' ').trim();
  if (s.length === 0) return 'empty';
  // Past this length a caption is prose or a data: URI: only linear tests run, which also keeps every
  // regular expression below on short input (none can go quadratic on a megabyte of `<!--`).
  if (s.length > MAX_TEXT_LENGTH) {
    if (isUrl(s)) return 'url'; // data: URIs run to megabytes
    if (LETTER.test(s)) return undefined;
    return DIGIT.test(s) ? 'numbers_only' : 'punctuation_only';
  }

  if (HTML_HINT.test(s)) {
    s = stripHtml(s);
    if (!LETTER_OR_DIGIT.test(s)) return 'html';
  }
  s = unquote(s);
  if (s.length === 0) return 'punctuation_only';
  if (isUrl(s)) return 'url';
  if (!LETTER.test(s)) return DIGIT.test(s) ? 'numbers_only' : 'punctuation_only';
  // A long caption is prose, not a name, a default or a token: only the rules above apply to it.
  if (s.length > MAX_NAME_LENGTH) return undefined;

  const ext = FILE_EXTENSION.exec(s);
  const stem = (ext ? s.slice(0, ext.index) : s).trim();
  if (UUID.test(stem)) return 'uuid';
  if (isHash(stem)) return 'hash';
  if (PIXEL_SIZE.test(s)) return 'numbers_only';

  if (ext) {
    // A file name: meaningless when its stem is one token (a slug, a camera name, a path) or, with
    // spaces, when the stem itself says nothing ("img 0.jpg", "image (3).png"). "Sunset over the
    // lake.jpg" keeps its words and passes.
    return !/\s/.test(stem) || stemSaysNothing(stem) ? 'file_name' : undefined;
  }
  if (PATH_LIKE.test(s)) return 'file_name';

  const kind = classifyTokens(s);
  if (kind !== undefined) return kind;
  if (s.length <= MAX_PHRASE_LENGTH && DEFAULT_PHRASES.has(normalizeCaption(s))) return 'camera_default';
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Character classes and cheap shape tests

/** Zero-width and other format characters, and the BOM: they hide an empty caption. */
const INVISIBLE = /[\p{Cf}\p{Cc}\u2028\u2029]+/gu;
const LETTER = /\p{L}/u;
const DIGIT = /\p{N}/u;
const LETTER_OR_DIGIT = /[\p{L}\p{N}]/u;
/** Longer than any file name, hash or default phrase worth catching. */
const MAX_NAME_LENGTH = 300;
/** Longer than any caption that is only HTML or a URL in practice. */
const MAX_TEXT_LENGTH = 4000;

const HTML_HINT = /<\/?[a-z!]|&(?:#\d{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,30});/i;
const HTML_TAG = /<(?:!--[\s\S]*?--|\/?[a-z][a-z0-9-]*(?:\s[^<>]*)?\/?)>/gi;
/** A tag cut off by a length limit: `<img src="http://...` at the end of the text. */
const HTML_TRUNCATED_TAG = /<\/?[a-z][a-z0-9-]*(?:\s[^<>]*)?$/i;
const HTML_ENTITY = /&(?:#(\d{1,7})|#x([0-9a-f]{1,6})|([a-z][a-z0-9]{1,30}));/gi;
const NAMED_ENTITIES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
  ndash: '-',
  mdash: '-',
  hellip: '...',
  copy: '©',
  reg: '®',
  trade: '™',
};

function stripHtml(text: string): string {
  let out = text;
  // Twice: scraped alt text is often escaped once more (`&lt;br&gt;`), and decoding reveals the tags.
  for (let round = 0; round < 2; round++) {
    out = out
      .replace(HTML_TAG, ' ')
      .replace(HTML_TRUNCATED_TAG, ' ')
      .replace(HTML_ENTITY, (_m, dec: string | undefined, hex: string | undefined, name: string | undefined) => {
        if (name !== undefined) return NAMED_ENTITIES[name.toLowerCase()] ?? ' ';
        const code = dec !== undefined ? Number(dec) : Number.parseInt(hex!, 16);
        const ok = code > 0x20 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff);
        return ok ? String.fromCodePoint(code) : ' ';
      });
    if (!HTML_HINT.test(out)) break;
  }
  return out.replace(INVISIBLE, ' ').trim();
}

const WRAPPER = /[\s"'`“”‘’«»()[\]{}<>]/u;

/** Strips quotes and brackets that wrap the whole caption: `"IMG_0001.jpg"`, `[image]`. */
function unquote(text: string): string {
  if (!WRAPPER.test(text[0]!) && !WRAPPER.test(text[text.length - 1]!)) return text;
  return text.replace(/^[\s"'`“”‘’«»()[\]{}<>]+|[\s"'`“”‘’«»()[\]{}<>]+$/gu, '');
}

const URL_SCHEME = /^(?:https?|ftp|file|s3|gs|blob):\/\/?\S+$/i;
const URL_WWW_OR_PROTOCOL_RELATIVE = /^(?:www\d?\.|\/\/)[a-z0-9-]+(?:\.[a-z0-9-]+)+\S*$/i;
/** `example.com/path...`: a host with a dot-separated TLD, then a slash. A bare `Booking.com` is a name. */
const URL_HOST_PATH = /^[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,24}(?::\d+)?\/\S*$/i;
const DATA_URI = /^data:[a-z]+\/[a-z0-9.+-]+[;,]/i;

function isUrl(text: string): boolean {
  if (!text.includes('/') && !/^www/i.test(text)) return false;
  // Several URLs separated by spaces are still nothing but URLs.
  const parts = text.split(/\s+/);
  if (parts.length > 8) return false;
  return parts.every(
    (p) => URL_SCHEME.test(p) || URL_WWW_OR_PROTOCOL_RELATIVE.test(p) || URL_HOST_PATH.test(p) || DATA_URI.test(p),
  );
}

/** Extensions of images, video, documents and web pages: what a scraped file name ends with. */
const FILE_EXTENSION =
  /\.(?:jpe?g|jfif|jpe|png|gif|webp|bmp|tiff?|heic|heif|avif|svg|ico|raw|cr2|cr3|nef|arw|orf|rw2|dng|psd|mp4|mov|avi|mkv|webm|m4v|3gp|pdf|docx?|pptx?|html?|php|aspx?)(?:[?#]\S*)?$/i;
/** One token that starts like a path: `/uploads/2019/05/dog`, `C:\Users\me\photo`, `./img/a`. */
const PATH_LIKE = /^(?:[a-z]:[\\/]|\.{0,2}[\\/]|~[\\/])\S*$/i;

const UUID = /^\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?$/i;
const HEX_DIGEST = /^(?:(?:md5|sha1|sha256|sha512)[:=_-])?([0-9a-f]{16,})$/i;
const TOKEN = /^[A-Za-z0-9+/=_-]{20,}=*$/;

/** A hex digest (16+ hex digits, some of them letters), or a long random base64/base62 token. */
function isHash(text: string): boolean {
  const hex = HEX_DIGEST.exec(text);
  if (hex) return /[a-f]/i.test(hex[1]!) && /\d/.test(hex[1]!);
  if (!TOKEN.test(text)) return false;
  // Random tokens switch between upper case, lower case and digits at about 2 of 3 characters; a
  // slug of words ("Samsung-Galaxy-S21-Ultra", "MyHolidayPhoto2019") at most once or twice a word.
  let switches = 0;
  let digits = 0;
  let prev = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const cls = c >= 48 && c <= 57 ? 1 : c >= 65 && c <= 90 ? 2 : c >= 97 && c <= 122 ? 3 : 0;
    if (cls === 1) digits++;
    if (cls !== 0 && prev !== 0 && cls !== prev) switches++;
    prev = cls;
  }
  return digits >= 3 && switches / text.length > 0.45;
}

/** `300x250`, `1920 × 1080 px`: an ad or thumbnail size, not a description. */
const PIXEL_SIZE = /^\d{1,5}\s*[x×*]\s*\d{1,5}\s*(?:px|pixels?)?$/i;

// ---------------------------------------------------------------------------------------------
// Token rules: camera file names without an extension, and default words with numbers

/** Prefixes of camera, phone and app file names; a token is such a name when digits follow. */
const CAMERA_PREFIXES = new Set([
  'img', 'image', 'dsc', 'dscn', 'dscf', 'dcim', 'mvi', 'mov', 'vid', 'video', 'pict', 'cimg', 'sam', 'dji',
  'gopr', 'gp', 'gh', 'gx', 'pxl', 'pano', 'imag', 'hpim', 'sdc', 'kif', 'mg', 'p', 'pa', 'pb', 'pc', 'wp',
  'pic', 'photo', 'foto', 'screenshot', 'scan', 'capture', 'snapshot', 'frame', 'pexels', 'unsplash',
  'pixabay', 'fb', 'received', 'signal', 'whatsapp', 'mmexport', 'wechat', 'snapchat', 'picsart',
]);
/** Prefixes that are also words or names ("Sam 2019", "GP 100"): only with `_`, `-` or glued digits. */
const AMBIGUOUS_PREFIXES = new Set(['sam', 'gp', 'gh', 'gx', 'mg', 'p', 'pa', 'pb', 'pc', 'wp', 'kif', 'sdc', 'mov', 'frame', 'scan']);
/** Parts of a camera/app file name that come with the numbers: `IMG_1234-edited`, `IMG-20190101-WA0001`. */
const CAMERA_PART =
  /^(?:wa\d+|hdr|burst\d*|cover|portrait|edit|edited|copy|final|mp|lrg|sm|lg|large|small|medium|thumb|scaled|resized|min|web|hd|raw|orig|original|img|jpg|at|am|pm|compressed|crop|cropped|v\d+|[a-z]?\d+[a-z]?|\d+x\d+|[0-9a-f]{8,}|\d+(?:st|nd|rd|th))$/;

/** Words of camera and CMS defaults: a caption of only these and numbers says nothing. */
const DEFAULT_WORDS = new Set([
  'img', 'image', 'images', 'photo', 'photos', 'photograph', 'picture', 'pictures', 'pic', 'pics', 'foto',
  'untitled', 'unnamed', 'unknown', 'thumbnail', 'thumb', 'screenshot', 'screen', 'shot', 'snapshot', 'scan',
  'scanned', 'capture', 'file', 'attachment', 'upload', 'uploaded', 'design', 'copy', 'final', 'edited',
  'edit', 'new', 'my', 'the', 'a', 'an', 'of', 'no', 'nr', 'number', 'num', 'and', 'version', 'v', 'default',
  'placeholder', 'sample', 'test', 'at', 'am', 'pm', 'jpg', 'jpeg', 'png', 'gif', 'webp', 'featured', 'feature',
  'main', 'gallery', 'slide', 'slider', 'banner', 'hero', 'header', 'cover', 'preview', 'full', 'size', 'large',
  'small', 'medium', 'original', 'resized', 'scaled', 'alt', 'text', 'tag', 'caption', 'description', 'title',
  'item', 'product', 'frame', 'page', 'part', 'fig', 'figure', 'plate', 'ohne', 'titel', 'sans', 'titre', 'sin',
  'título', 'titulo', 'senza', 'titolo', 'imagen', 'bild', 'immagine', 'imagem',
]);
/** Default words that make a default on their own or with fillers ("the image", "untitled design"). */
const STRONG_DEFAULT_WORDS = new Set([
  'img', 'image', 'images', 'photo', 'photos', 'photograph', 'picture', 'pictures', 'pic', 'pics', 'foto',
  'untitled', 'unnamed', 'thumbnail', 'screenshot', 'snapshot', 'placeholder', 'jpg', 'jpeg', 'png', 'gif',
  'webp', 'imagen', 'bild', 'immagine', 'imagem', 'attachment', 'titel', 'titre', 'título', 'titulo', 'titolo',
]);
/** Words that make a default only with a number: "Fig. 3", "Slide 12", "Scan 001" (but "Fig" is a fruit). */
const NUMBERED_DEFAULT_WORDS = new Set(['fig', 'figure', 'slide', 'scan', 'frame', 'plate', 'thumb', 'file', 'test', 'sample', 'item']);
/** Numbers, ordinals, sizes and Roman numerals up to 39 (a longer run of i, v, x would be words). */
const NUMBERISH = /^(?:\d+|x{0,3}(?:ix|iv|v?i{0,3})|\d+(?:st|nd|rd|th)|\d+x\d+)$/;
const ASCII = /^[\x20-\x7e]*$/;
const GLUED = /^([a-z]{1,10})(\d+)([a-z]{0,2})$/;
const TOKEN_SPLIT = /[\s_.,:;()[\]{}#/\\|+~=*!?"'`“”‘’-]+/u;

/**
 * Reads the caption as tokens. `file_name` for a camera or app name (`DSC0123`, `P1010123`,
 * `IMG_20190101_123456`, `Screenshot 2020-01-01 at 10.00.00`); `camera_default` when the caption is
 * only default words and numbers (`photo 3`, `Untitled-1`, `image1`, `Fig. 2`, `the image`).
 */
function classifyTokens(text: string): MeaninglessRule | undefined {
  const lower = (ASCII.test(text) ? text : text.normalize('NFKC')).toLowerCase();
  const tokens = lower.split(TOKEN_SPLIT).filter((t) => t.length > 0);
  if (tokens.length === 0 || tokens.length > 12) return undefined;

  if (isCameraName(lower, tokens)) return 'file_name';

  // A time or date in words of numbers: `12:30 PM`, `3rd`... (a caption of numbers with no default word).
  if (tokens.every((t) => NUMBERISH.test(t) || t === 'am' || t === 'pm') && tokens.some((t) => /\d/.test(t))) {
    return 'numbers_only';
  }
  let strong = false;
  let numbered = false;
  let number = false;
  for (const t of tokens) {
    if (t.length > 0 && NUMBERISH.test(t)) {
      number = true;
      continue;
    }
    let word = t;
    const glued = GLUED.exec(t);
    if (glued && glued[3] === '' && (STRONG_DEFAULT_WORDS.has(glued[1]!) || NUMBERED_DEFAULT_WORDS.has(glued[1]!))) {
      word = glued[1]!; // `image1`, `photo02`, `slide3`
      number = true;
    }
    if (!DEFAULT_WORDS.has(word)) return undefined;
    if (STRONG_DEFAULT_WORDS.has(word)) strong = true;
    if (NUMBERED_DEFAULT_WORDS.has(word)) numbered = true;
  }
  return strong || (numbered && number) ? 'camera_default' : undefined;
}

function isCameraName(lower: string, tokens: readonly string[]): boolean {
  const first = tokens[0]!;
  // `dsc0123`, `p1010123`, `gopr0042`, `gh010042`: a prefix glued to 4+ digits, then the usual parts.
  const glued = GLUED.exec(first);
  if (glued && CAMERA_PREFIXES.has(glued[1]!) && glued[2]!.length >= 4) {
    // A one-letter prefix (Panasonic and Olympus `P1010123`) comes with exactly 7 digits.
    if (glued[1]!.length === 1 && glued[2]!.length !== 7) return false;
    return tokens.slice(1).every((t) => CAMERA_PART.test(t));
  }
  // `img 20190101 123456`, `screenshot 2020-01-01 at 10.00.00`, `Screen Shot ...`, `WhatsApp Image ...`,
  // `FB_IMG_1569...`.
  let i: number;
  if (first === 'screen' && (tokens[1] === 'shot' || tokens[1] === 'recording')) i = 2;
  else if (CAMERA_PREFIXES.has(first)) {
    if (AMBIGUOUS_PREFIXES.has(first) && !new RegExp(`^_?${first}[_-]`).test(lower.trimStart())) return false;
    i = 1;
  } else return false;
  if (i < tokens.length && /^(?:img|image|video|vid|photo)$/.test(tokens[i]!)) i++;
  const rest = tokens.slice(i);
  // The numbers must look like a counter or a date: 3+ digits in the first one.
  if (rest.length === 0 || !/^[a-z]?\d{3,}/.test(rest[0]!)) return false;
  // Screenshots carry the app name at the end: `Screenshot_20200101-123456_Chrome`.
  const screenshot = first === 'screenshot' || first === 'screen';
  return rest.every((t, k) => CAMERA_PART.test(t) || (screenshot && k === rest.length - 1 && /^[a-z]{2,20}$/.test(t)));
}

/** The stem of a file name with spaces in it ("img 0", "image (3)", "Untitled design (12)"). */
function stemSaysNothing(stem: string): boolean {
  if (!LETTER.test(stem)) return true;
  if (UUID.test(stem) || isHash(stem)) return true;
  if (classifyTokens(stem) !== undefined) return true;
  return DEFAULT_PHRASES.has(normalizeCaption(stem));
}

// ---------------------------------------------------------------------------------------------
// Whole-caption defaults, compared after normalizeCaption (case, whitespace and punctuation folded)

const DEFAULT_PHRASE_LIST = [
  // empty values leaking from code and databases
  'null', 'undefined', 'none', 'nan', 'nil', 'n a', 'na', 'tbd', 'tba', 'todo', 'false', 'true', 'object object',
  'empty', 'blank', 'missing', 'unknown', 'unnamed', 'no name', 'noname', 'no title', 'no caption',
  // camera, editor and CMS defaults
  'untitled', 'untitled image', 'untitled photo', 'untitled design', 'untitled picture', 'untitled document',
  'image', 'images', 'img', 'photo', 'photos', 'photograph', 'picture', 'pictures', 'pic', 'pics', 'foto',
  'thumbnail', 'thumb', 'placeholder', 'default', 'default image', 'image placeholder', 'placeholder image',
  'no description', 'no description available', 'description', 'image description', 'no image',
  'no image available', 'no photo', 'no photo available', 'image not found', 'image not available',
  'image unavailable', 'photo not available', 'image coming soon', 'coming soon', 'photo coming soon',
  'alt', 'alt text', 'alt tag', 'alt image', 'image alt', 'image alt text', 'alternative text', 'alt attribute',
  'featured image', 'feature image', 'featured', 'hero image', 'header image', 'banner', 'banner image',
  'cover image', 'cover photo', 'main image', 'product image', 'product photo', 'gallery image', 'slide',
  'slider', 'slideshow', 'slider image', 'preview', 'image preview', 'full size', 'full size image',
  'view full size', 'original image', 'large image', 'small image', 'image title', 'title', 'caption',
  'image caption', 'insert caption', 'add caption', 'add a caption', 'caption here', 'type caption here',
  'write a caption', 'enter image description here', 'insert image here', 'your image here', 'image here',
  'photo here', 'add image', 'upload image', 'uploaded image', 'attachment', 'file', 'screenshot', 'screen shot',
  'scan', 'snapshot', 'new image', 'new photo', 'my photo', 'my picture', 'test', 'test image', 'sample image',
  'example image', 'dummy image', 'logo', 'icon', 'user avatar', 'profile picture',
  'profile photo', 'profile image', 'default avatar', 'gravatar', 'spacer', 'tracking pixel',
  'transparent', 'loading', 'lazy', 'lazy load', 'click here', 'click to enlarge',
  'click to zoom', 'enlarge', 'zoom', 'view larger', 'view larger image', 'see larger image', 'read more',
  'more', 'here', 'link', 'button', 'ad', 'advert', 'advertisement', 'sponsored', 'stock photo', 'stock image',
  'royalty free image', 'free image', 'image source', 'source', 'photo credit', 'credit', 'via', 'copyright',
  'all rights reserved', 'shutterstock', 'getty images', 'istock', 'adobe stock', 'alamy', 'depositphotos',
  'dreamstime', 'unsplash', 'pixabay', 'pexels', 'lorem ipsum', 'lorem ipsum dolor sit amet', 'jpg', 'jpeg',
  'png', 'gif', 'webp', 'image jpg', 'image png', 'photo jpg', 'img jpg', 'download', 'maxresdefault',
  'hqdefault', 'mqdefault', 'sddefault', 'insert caption here', 'image credit', 'photo by', 'image by',
  // the same defaults in other Latin-script languages
  'sans titre', 'ohne titel', 'sin título', 'sin titulo', 'senza titolo', 'sem título', 'sem titulo', 'imagen',
  'bild', 'immagine', 'imagem', 'afbeelding', 'zdjęcie', 'obrazek', 'kein bild', 'sin imagen', 'pas d image',
];
const DEFAULT_PHRASES: ReadonlySet<string> = new Set(DEFAULT_PHRASE_LIST.map((p) => normalizeCaption(p)));
/** Longer captions cannot normalise to a default phrase unless padded with punctuation; skip the work. */
const MAX_PHRASE_LENGTH = 3 * Math.max(...DEFAULT_PHRASE_LIST.map((p) => p.length));
