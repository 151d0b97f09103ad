// The text side's tokenizer: CLIP's lower-cased byte-level BPE. Loaded with CLIP's own merges file
// (bpe_simple_vocab_16e6.txt.gz) it gives CLIP's ids; loaded with a file from `filip tokenizer train`
// it gives the ids of a vocabulary learned from the shards' captions. Both are the same format.
//
// The vocabulary is laid out as CLIP's: the 256 byte-characters, the same 256 with "</w>" (end of word),
// one entry per merge in rank order, then <|startoftext|> and <|endoftext|>. So with CLIP's file
// [BOS] = 49406, [EOS] = 49407, and id 0 is "!": padding can never be told from a token id, and the
// mask must come from `lengths`.

import { promises as fs } from 'node:fs';
import * as zlib from 'node:zlib';
import { FilipError } from '../core/errors.js';
import { intOption, rejectUnknownKeys } from '../core/options.js';
import { cleanCaption } from './text-clean.js';

export const BOS_TOKEN = '<|startoftext|>';
export const EOS_TOKEN = '<|endoftext|>';
export const END_OF_WORD = '</w>';
/** Merges CLIP reads from its file: lines[1 : 49152 - 256 - 2 + 1], so a vocabulary of 49,408. */
export const CLIP_MAX_MERGES = 49152 - 256 - 2;
/** CLIP's text context: [BOS] + 75 tokens + [EOS]. */
export const CLIP_CONTEXT_LENGTH = 77;
/** First line of a merges file; CLIP skips the first line whatever it says. */
export const MERGES_HEADER = '#version: 0.2';

/**
 * CLIP's pre-tokenizer (applied to cleaned, lower-cased text): the special tokens, English
 * contractions, runs of letters, single digits, runs of anything else but spaces.
 * CLIP compiles it with IGNORECASE; `i` does the same here (the text is lower-cased first anyway).
 */
export const PRE_TOKENIZE_RE = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

// ---- GPT-2/CLIP byte-to-character table ----

/**
 * Each byte as a printable character, so that BPE symbols are strings without spaces or controls:
 * the printable Latin-1 bytes stand for themselves, the other 68 become U+0100.. in byte order.
 * Index = byte value. The vocabulary lists them in the table's own order (printable first).
 */
function buildByteTable(): { byteToChar: string[]; order: number[] } {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const byteToChar = new Array<string>(256);
  for (const b of printable) byteToChar[b] = String.fromCharCode(b);
  const order = [...printable];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (byteToChar[b] === undefined) {
      byteToChar[b] = String.fromCharCode(256 + n++);
      order.push(b);
    }
  }
  return { byteToChar, order };
}

const BYTE_TABLE = buildByteTable();
/** byte value -> its character. */
export const BYTE_TO_CHAR: readonly string[] = BYTE_TABLE.byteToChar;
const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));
/** The first 256 vocabulary entries, in CLIP's order ("!" first). */
export const BYTE_VOCAB: readonly string[] = BYTE_TABLE.order.map((b) => BYTE_TO_CHAR[b]!);

const utf8 = new TextEncoder();
const PRINTABLE_ASCII_RE = /^[\x21-\x7e]*$/;

/** A pre-token's UTF-8 bytes as byte-characters: the string BPE works on. */
export function toByteChars(token: string): string {
  // Printable ASCII bytes stand for themselves.
  if (PRINTABLE_ASCII_RE.test(token)) return token;
  let out = '';
  for (const b of utf8.encode(token)) out += BYTE_TO_CHAR[b];
  return out;
}

/** Cleaned, lower-cased text split into pre-tokens, exactly as CLIP splits it. */
export function preTokenize(text: string): string[] {
  return cleanCaption(text).match(PRE_TOKENIZE_RE) ?? [];
}

// ---- options ----

export interface BpeTokenizerOptions {
  /**
   * Most merges read from a merges file or list; later ones are ignored, as CLIP ignores everything
   * after its 48,894th merge. Raise it only for a file trained with a larger vocabulary.
   * @default 48894 (CLIP_MAX_MERGES)
   */
  readonly maxMerges?: number;
  /** Most words whose BPE result is kept in memory; the cache is emptied when full. @default 100000 */
  readonly cacheSize?: number;
}

export type ResolvedBpeTokenizerOptions = Required<BpeTokenizerOptions>;

const TOKENIZER_DEFAULTS: ResolvedBpeTokenizerOptions = { maxMerges: CLIP_MAX_MERGES, cacheSize: 100_000 };

export function resolveBpeTokenizerOptions(input: BpeTokenizerOptions = {}): ResolvedBpeTokenizerOptions {
  rejectUnknownKeys('tokenizer', input, TOKENIZER_DEFAULTS);
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const o = { ...TOKENIZER_DEFAULTS, ...given };
  return {
    maxMerges: intOption('maxMerges', o.maxMerges, 0),
    cacheSize: intOption('cacheSize', o.cacheSize, 0),
  };
}

/** What `toJSON()` writes, so a checkpoint can carry its tokenizer. */
export interface BpeTokenizerJSON {
  readonly format: 'filip-bpe';
  readonly version: 1;
  /** Merges in rank order, each "left right" as in a merges file. */
  readonly merges: string[];
}

export interface TokenizedBatch {
  /** B x contextLength token ids, row-major, padded with 0 (which is also a real token: use `lengths`). */
  readonly ids: Int32Array;
  /** Real tokens per row, [BOS] and [EOS] included: position t of row b is padding iff t >= lengths[b]. */
  readonly lengths: Int32Array;
  readonly batchSize: number;
  readonly contextLength: number;
}

// ---- the tokenizer ----

export class BpeTokenizer {
  /** Merges in rank order (rank = index). */
  readonly merges: readonly (readonly [string, string])[];
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly vocab: string[];
  private readonly encoder = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, number[]>();
  private readonly cacheSize: number;

  private constructor(merges: readonly (readonly [string, string])[], opts: ResolvedBpeTokenizerOptions) {
    this.merges = merges;
    this.cacheSize = opts.cacheSize;
    this.vocab = [...BYTE_VOCAB, ...BYTE_VOCAB.map((c) => c + END_OF_WORD)];
    merges.forEach(([a, b], rank) => {
      this.vocab.push(a + b);
      // A pair listed twice keeps its later rank, as in CLIP's dict(zip(merges, range(len(merges)))).
      this.ranks.set(`${a} ${b}`, rank);
    });
    this.vocab.push(BOS_TOKEN, EOS_TOKEN);
    // Later entries win, as in CLIP's dict(zip(vocab, range(len(vocab)))): a string made by two
    // different merges maps to the later id.
    this.vocab.forEach((s, id) => this.encoder.set(s, id));
    this.vocabSize = this.vocab.length;
    this.bosId = this.vocabSize - 2;
    this.eosId = this.vocabSize - 1;
  }

  /** A tokenizer from merges in rank order. Throws FILIP_ERR_TOKENIZER for a merge that cannot be. */
  static fromMerges(merges: readonly (readonly [string, string])[], opts: BpeTokenizerOptions = {}): BpeTokenizer {
    const o = resolveBpeTokenizerOptions(opts);
    const kept = merges.slice(0, o.maxMerges).map(([a, b]) => [a, b] as const);
    checkMerges(kept, (i) => ({ label: `merge ${i}`, where: { field: 'merges', row: i } }));
    return new BpeTokenizer(kept, o);
  }

  /**
   * Reads a merges file in CLIP's format (plain or gzipped, told by its first bytes): a header line,
   * then one merge per line, "left right". Errors name the file and the line.
   */
  static async fromMergesFile(path: string, opts: BpeTokenizerOptions = {}): Promise<BpeTokenizer> {
    const o = resolveBpeTokenizerOptions(opts);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(path);
    } catch (err) {
      throw new FilipError('FILIP_ERR_TOKENIZER', `cannot read the merges file: ${(err as Error).message}`, { file: path }, { cause: err });
    }
    if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
      try {
        bytes = zlib.gunzipSync(bytes);
      } catch (err) {
        throw new FilipError('FILIP_ERR_TOKENIZER', `the merges file is not valid gzip: ${(err as Error).message}`, { file: path }, { cause: err });
      }
    }
    const merges = parseMerges(decodeUtf8(bytes, path), path, o.maxMerges);
    checkMerges(merges, (i) => ({ label: `line ${i + 2}`, where: { file: path, row: i + 2 } }));
    return new BpeTokenizer(merges, o);
  }

  /** The tokenizer a checkpoint carried (see `toJSON`). */
  static fromJSON(json: unknown, opts: BpeTokenizerOptions = {}): BpeTokenizer {
    const j = json as Partial<BpeTokenizerJSON> | null;
    if (j === null || typeof j !== 'object' || j.format !== 'filip-bpe' || j.version !== 1 || !Array.isArray(j.merges)) {
      throw new FilipError('FILIP_ERR_TOKENIZER', 'not a filip-bpe tokenizer (expected {format: "filip-bpe", version: 1, merges: [...]})', { field: 'tokenizer' });
    }
    const merges = j.merges.map((line, i) => {
      const pair = typeof line === 'string' ? splitMergeLine(line) : undefined;
      if (pair === undefined) {
        throw new FilipError('FILIP_ERR_TOKENIZER', `merge ${i} is not "left right": ${JSON.stringify(line)}`, { field: 'tokenizer.merges', row: i });
      }
      return pair;
    });
    return BpeTokenizer.fromMerges(merges, { maxMerges: merges.length, ...opts });
  }

  toJSON(): BpeTokenizerJSON {
    return { format: 'filip-bpe', version: 1, merges: this.merges.map(([a, b]) => `${a} ${b}`) };
  }

  /** The vocabulary entry of an id ("a</w>", "<|endoftext|>", ...). */
  idToToken(id: number): string | undefined {
    return this.vocab[id];
  }

  /** Token ids of a text, without [BOS]/[EOS]. The text is cleaned and lower-cased as CLIP does. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const token of preTokenize(text)) {
      for (const id of this.encodeWord(token)) ids.push(id);
    }
    return ids;
  }

  /** Text of token ids: byte-characters back to UTF-8 ("</w>" becomes a space; bad bytes become U+FFFD). */
  decode(ids: Iterable<number>): string {
    let symbols = '';
    for (const id of ids) {
      const s = this.vocab[id];
      if (s === undefined) throw new FilipError('FILIP_ERR_TOKENIZER', `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      symbols += s;
    }
    const bytes: number[] = [];
    for (const c of symbols) {
      const b = CHAR_TO_BYTE.get(c);
      // Every vocabulary character is a byte-character; the specials are plain ASCII.
      if (b !== undefined) bytes.push(b);
    }
    return new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replaceAll(END_OF_WORD, ' ');
  }

  /**
   * A batch for the text encoder: each row is [BOS] + tokens + [EOS], cut to `contextLength` with
   * [EOS] kept as the last token, padded with 0. `lengths` says where each row's padding starts.
   */
  tokenize(texts: readonly string[], contextLength: number = CLIP_CONTEXT_LENGTH): TokenizedBatch {
    // Rows of ids are allocated whole: a bound keeps a typo (1e12) an option error, not a crash.
    const L = intOption('contextLength', contextLength, 2, 1 << 20);
    const ids = new Int32Array(texts.length * L);
    const lengths = new Int32Array(texts.length);
    texts.forEach((text, row) => {
      const tokens = this.encode(text);
      const n = Math.min(tokens.length, L - 2);
      const base = row * L;
      ids[base] = this.bosId;
      for (let t = 0; t < n; t++) ids[base + 1 + t] = tokens[t]!;
      ids[base + 1 + n] = this.eosId;
      lengths[row] = n + 2;
    });
    return { ids, lengths, batchSize: texts.length, contextLength: L };
  }

  private encodeWord(token: string): number[] {
    const cached = this.cache.get(token);
    if (cached !== undefined) return cached;
    let ids: number[];
    if (token === BOS_TOKEN) ids = [this.bosId];
    else if (token === EOS_TOKEN) ids = [this.eosId];
    else ids = this.bpe(toByteChars(token)).map((s) => this.encoder.get(s)!);
    if (this.cache.size >= this.cacheSize) this.cache.clear();
    if (this.cacheSize > 0) this.cache.set(token, ids);
    return ids;
  }

  /** CLIP's bpe(): repeatedly merge the lowest-ranked adjacent pair, every occurrence left to right. */
  private bpe(chars: string): string[] {
    let word = Array.from(chars);
    word[word.length - 1] += END_OF_WORD;
    while (word.length > 1) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.ranks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < best) {
          best = rank;
          first = word[i]!;
          second = word[i + 1]!;
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          next.push(first + second);
          i++;
        } else {
          next.push(word[i]!);
        }
      }
      word = next;
    }
    return word;
  }
}

// ---- merges files ----

const LINE_SPLIT_RE = /\s+/u;

/** "left right" -> [left, right]; undefined unless exactly two non-empty parts (CLIP splits on whitespace). */
function splitMergeLine(line: string): [string, string] | undefined {
  const parts = line.trim().split(LINE_SPLIT_RE);
  return parts.length === 2 && parts[0] !== '' && parts[1] !== '' ? [parts[0]!, parts[1]!] : undefined;
}

function decodeUtf8(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new FilipError('FILIP_ERR_TOKENIZER', 'the merges file is not UTF-8 text', { file: path }, { cause: err });
  }
}

function parseMerges(text: string, path: string, maxMerges: number): [string, string][] {
  const lines = text.split('\n');
  if (lines[0] === undefined || !lines[0].startsWith('#')) {
    throw new FilipError('FILIP_ERR_TOKENIZER', `line 1: expected a header line starting with "#" (such as "${MERGES_HEADER}"), got ${JSON.stringify(lines[0]?.slice(0, 40))}`, { file: path, row: 1 });
  }
  // A final newline leaves one empty string; anything after it is an error like any other bad line.
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  const merges: [string, string][] = [];
  for (let i = 1; i < lines.length && merges.length < maxMerges; i++) {
    const line = lines[i]!.replace(/\r$/, '');
    const pair = splitMergeLine(line);
    if (pair === undefined) {
      throw new FilipError('FILIP_ERR_TOKENIZER', `line ${i + 1}: expected a merge "left right", got ${JSON.stringify(line.slice(0, 80))}`, { file: path, row: i + 1 });
    }
    merges.push(pair);
  }
  return merges;
}

/**
 * Every symbol of a merge must be spelled in byte-characters (the 256 characters of BYTE_TO_CHAR; the
 * "</w>" mark is made of them too). A file in another alphabet (a SentencePiece or WordPiece vocabulary,
 * text in the wrong encoding) fails here instead of giving meaningless ids. Merges are not required to
 * build on earlier ones: CLIP does not require it either.
 */
function checkMerges(
  merges: readonly (readonly [string, string])[],
  locate: (i: number) => { label: string; where: { file?: string; row: number; field?: string } },
): void {
  merges.forEach(([a, b], i) => {
    for (const part of [a, b]) {
      for (const ch of part) {
        if (!CHAR_TO_BYTE.has(ch)) {
          const { label, where } = locate(i);
          const code = `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
          throw new FilipError('FILIP_ERR_TOKENIZER', `${label}: "${a} ${b}" has the character ${code}, which is not a byte-character of a CLIP/GPT-2 merges file`, where);
        }
      }
    }
  });
}

/** A merges file's text: the header, then one "left right" per line. */
export function formatMerges(merges: readonly (readonly [string, string])[], header = MERGES_HEADER): string {
  let out = `${header}\n`;
  for (const [a, b] of merges) out += `${a} ${b}\n`;
  return out;
}
