// Learns BPE merges from the captions of filip-data shards, for `filip tokenizer train`. The text is
// cleaned and split exactly as the tokenizer does (tokenizer.ts), so every merge learned here is one
// the tokenizer can apply; the result is saved in CLIP's merges-file format.
//
// The trainer works on a table of distinct words and their counts, never on the corpus itself. Pair
// counts are kept up to date incrementally: merging (a, b) only touches the words that hold it (an
// index from each pair to its words), and only pairs next to the merged symbol change. The most
// frequent pair comes from a max-heap with lazy deletion: a popped entry whose count is stale is
// pushed back with its current count; pairs that gain occurrences (those with the new symbol) get a
// fresh entry. Ties go to the pair whose symbols were created first, so the same captions give the
// same merges whatever their order.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as zlib from 'node:zlib';
import { asyncBufferFromFile, parquetMetadataAsync } from 'hyparquet';
import { FilipError } from '../core/errors.js';
import { intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import { BACK_TRANSLATIONS_COLUMN } from '../shard/schema.js';
import { iterateShard } from '../shard/reader.js';
import { listShards, newCounters, openShard, type ShardInfo } from '../data/shards.js';
import { BOS_TOKEN, BYTE_VOCAB, END_OF_WORD, EOS_TOKEN, formatMerges, preTokenize, toByteChars } from './tokenizer.js';
import { makeDir } from '../core/make-dir.js';

/** Size of the byte-level base vocabulary: 256 byte-characters and the same with "</w>". */
export const BASE_VOCAB_SIZE = 512;
/** <|startoftext|> and <|endoftext|>. */
export const SPECIAL_TOKENS = 2;
/** The paper's (and CLIP's) vocabulary. */
export const DEFAULT_VOCAB_SIZE = 49408;
// Pair keys are left * 2^21 + right: exact in a double for up to 2 million symbols.
const KEY_SHIFT = 2 ** 21;
const MAX_VOCAB_SIZE = KEY_SHIFT - 1;

export interface TokenizerTrainOptions {
  /** Folder of shards (ingest, filter or shard output); every `*.parquet` under it is read, in path order. */
  readonly shards: string;
  /** Merges file to write; gzipped when the name ends in `.gz`. */
  readonly out: string;
  /** Vocabulary size to aim for: 512 byte symbols + merges + 2 specials. @default 49408 */
  readonly vocabSize?: number;
  /** A pair is merged only if it occurs at least this often; training stops earlier when none does. @default 2 */
  readonly minPairCount?: number;
  /** Called every `progressEvery` merges and once at the end. @default none */
  readonly onProgress?: (p: BpeTrainProgress) => void;
  /** Merges between two `onProgress` calls. @default 1000 */
  readonly progressEvery?: number;
  /** Called after each shard file is read, with its row count. @default none */
  readonly onShard?: (file: string, rows: number) => void;
}

export interface ResolvedTokenizerTrainOptions {
  readonly shards: string;
  readonly out: string;
  readonly vocabSize: number;
  readonly minPairCount: number;
  readonly onProgress: ((p: BpeTrainProgress) => void) | undefined;
  readonly progressEvery: number;
  readonly onShard: ((file: string, rows: number) => void) | undefined;
}

const TRAIN_DEFAULTS = {
  shards: undefined,
  out: undefined,
  vocabSize: DEFAULT_VOCAB_SIZE,
  minPairCount: 2,
  onProgress: undefined,
  progressEvery: 1000,
  onShard: undefined,
};

export function resolveTokenizerTrainOptions(input: TokenizerTrainOptions): ResolvedTokenizerTrainOptions {
  rejectUnknownKeys('tokenizer train', input, TRAIN_DEFAULTS);
  const o = { ...TRAIN_DEFAULTS, ...input };
  for (const name of ['onProgress', 'onShard'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'function') throw invalid(name, 'a function', o[name]);
  }
  return {
    shards: stringOption('shards', o.shards),
    out: stringOption('out', o.out),
    vocabSize: intOption('vocabSize', o.vocabSize, BASE_VOCAB_SIZE + SPECIAL_TOKENS, MAX_VOCAB_SIZE),
    minPairCount: intOption('minPairCount', o.minPairCount, 2),
    onProgress: o.onProgress,
    progressEvery: intOption('progressEvery', o.progressEvery, 1),
    onShard: o.onShard,
  };
}

export type BpeTrainOptions = Pick<ResolvedTokenizerTrainOptions, 'vocabSize' | 'minPairCount' | 'onProgress' | 'progressEvery'>;

export interface BpeTrainProgress {
  readonly merges: number;
  /** Merges wanted: vocabSize - 514. */
  readonly target: number;
  /** Count of the pair merged last. */
  readonly lastCount: number;
  readonly seconds: number;
}

export interface BpeTrainResult {
  /** Merges in rank order. */
  readonly merges: [string, string][];
  /** 512 + merges + 2: what the data supported, at most the size asked for. */
  readonly vocabSize: number;
  /** Why training ended: the size was reached, or no pair occurred `minPairCount` times any more. */
  readonly stoppedBy: 'vocab_size' | 'no_frequent_pair';
  readonly words: number;
  readonly seconds: number;
  readonly mergesPerSecond: number;
}

// ---- word counts ----

/** Counts of distinct pre-tokens (as byte-character strings), the trainer's only view of the text. */
export class WordCounts {
  readonly counts = new Map<string, number>();
  texts = 0;
  tokens = 0;

  /** Cleans and splits a text as the tokenizer does; the special-token strings are not words. */
  add(text: string): void {
    this.texts++;
    for (const token of preTokenize(text)) {
      if (token === BOS_TOKEN || token === EOS_TOKEN) continue;
      const word = toByteChars(token);
      this.counts.set(word, (this.counts.get(word) ?? 0) + 1);
      this.tokens++;
    }
  }
}

// ---- the trainer ----

/** A max-heap of (count, pair key): higher count first, then the smaller key. */
class PairHeap {
  private readonly counts: number[] = [];
  private readonly keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!;
    this.counts[i] = this.counts[j]!;
    this.counts[j] = c;
    const k = this.keys[i]!;
    this.keys[i] = this.keys[j]!;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  /** Removes the top; returns [count, key]. */
  pop(): [number, number] {
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lastCount = this.counts.pop()!;
    const lastKey = this.keys.pop()!;
    if (this.counts.length > 0) {
      this.counts[0] = lastCount;
      this.keys[0] = lastKey;
      let i = 0;
      const n = this.counts.length;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < n && this.above(l, best)) best = l;
        if (r < n && this.above(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/** Learns merges from word counts (keys are byte-character strings, as `WordCounts` makes them). */
export function trainBpe(counts: ReadonlyMap<string, number>, opts: BpeTrainOptions): BpeTrainResult {
  const started = performance.now();
  const target = opts.vocabSize - BASE_VOCAB_SIZE - SPECIAL_TOKENS;

  // Symbols are ids; a merge whose string already exists (made by another pair) reuses that id,
  // because the tokenizer, which works on strings, cannot tell the two apart either.
  const symbols: string[] = [...BYTE_VOCAB, ...BYTE_VOCAB.map((c) => c + END_OF_WORD)];
  const symbolId = new Map<string, number>(symbols.map((s, i) => [s, i]));
  const charId = new Map<string, number>(BYTE_VOCAB.map((c, i) => [c, i]));

  const words: number[][] = [];
  const freq: number[] = [];
  for (const [word, n] of counts) {
    const ids = Array.from(word, (c) => {
      const id = charId.get(c);
      if (id === undefined) throw new FilipError('FILIP_ERR_TOKENIZER', `word ${JSON.stringify(word)} holds a character that is not a byte-character`);
      return id;
    });
    if (ids.length === 0) continue;
    ids[ids.length - 1]! += BYTE_VOCAB.length; // the same byte with "</w>"
    words.push(ids);
    freq.push(n);
  }

  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, number[]>();
  const addWordToPair = (key: number, w: number): void => {
    const list = pairWords.get(key);
    if (list === undefined) pairWords.set(key, [w]);
    else if (list[list.length - 1] !== w) list.push(w);
  };
  const change = (key: number, by: number): void => {
    const n = (pairCount.get(key) ?? 0) + by;
    if (n === 0) pairCount.delete(key);
    else pairCount.set(key, n);
  };
  words.forEach((ids, w) => {
    for (let j = 0; j < ids.length - 1; j++) {
      const key = ids[j]! * KEY_SHIFT + ids[j + 1]!;
      change(key, freq[w]!);
      addWordToPair(key, w);
    }
  });
  const heap = new PairHeap();
  for (const [key, n] of pairCount) if (n >= opts.minPairCount) heap.push(n, key);

  const merges: [string, string][] = [];
  const seenAt = new Int32Array(words.length).fill(-1);
  let stoppedBy: BpeTrainResult['stoppedBy'] = 'no_frequent_pair';
  let lastCount = 0;
  const report = (): void =>
    opts.onProgress?.({ merges: merges.length, target, lastCount, seconds: (performance.now() - started) / 1000 });

  while (merges.length < target) {
    if (heap.size === 0) break;
    const [stored, key] = heap.pop();
    const current = pairCount.get(key) ?? 0;
    if (stored !== current) {
      if (current >= opts.minPairCount) heap.push(current, key);
      continue;
    }
    if (current < opts.minPairCount) break;

    const a = Math.floor(key / KEY_SHIFT);
    const b = key - a * KEY_SHIFT;
    const merged = symbols[a]! + symbols[b]!;
    let c = symbolId.get(merged);
    if (c === undefined) {
      c = symbols.length;
      symbols.push(merged);
      symbolId.set(merged, c);
    }
    const step = merges.length;
    merges.push([symbols[a]!, symbols[b]!]);
    lastCount = current;

    const grown = new Set<number>();
    for (const w of pairWords.get(key) ?? []) {
      if (seenAt[w] === step) continue;
      seenAt[w] = step;
      const ids = words[w]!;
      let holds = false;
      for (let j = 0; j < ids.length - 1; j++) {
        if (ids[j] === a && ids[j + 1] === b) {
          holds = true;
          break;
        }
      }
      if (!holds) continue; // a stale index entry: an earlier merge took the pair from this word
      const f = freq[w]!;
      for (let j = 0; j < ids.length - 1; j++) change(ids[j]! * KEY_SHIFT + ids[j + 1]!, -f);
      const next: number[] = [];
      for (let j = 0; j < ids.length; j++) {
        if (j < ids.length - 1 && ids[j] === a && ids[j + 1] === b) {
          next.push(c);
          j++;
        } else {
          next.push(ids[j]!);
        }
      }
      words[w] = next;
      for (let j = 0; j < next.length - 1; j++) {
        const k = next[j]! * KEY_SHIFT + next[j + 1]!;
        change(k, f);
        // Only pairs with the new symbol can have gained occurrences; the others already list this word.
        if (next[j] === c || next[j + 1] === c) {
          addWordToPair(k, w);
          grown.add(k);
        }
      }
    }
    pairWords.delete(key);
    for (const k of grown) {
      const n = pairCount.get(k) ?? 0;
      if (n >= opts.minPairCount) heap.push(n, k);
    }
    if (merges.length % opts.progressEvery === 0) report();
  }
  if (merges.length >= target) stoppedBy = 'vocab_size';
  report();
  const seconds = (performance.now() - started) / 1000;
  return {
    merges,
    vocabSize: BASE_VOCAB_SIZE + merges.length + SPECIAL_TOKENS,
    stoppedBy,
    words: words.length,
    seconds,
    mergesPerSecond: merges.length / Math.max(seconds, 1e-9),
  };
}

// ---- reading shards ----

/** Every `*.parquet` file under a folder (temporary `.NNNNN.parquet.tmp` files are not), in path order. */
export async function listShardFiles(dir: string): Promise<string[]> {
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) throw new FilipError('FILIP_ERR_NO_INPUT', 'not a folder of shards', { file: dir });
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries
    .filter((e) => e.isFile() && e.name.endsWith('.parquet') && !e.name.startsWith('.'))
    .map((e) => path.join(e.parentPath ?? e.path, e.name))
    .sort();
  if (files.length === 0) throw new FilipError('FILIP_ERR_NO_INPUT', 'no shards (.parquet files, or NNNNN.tar) in the folder', { file: dir });
  return files;
}

async function columnNames(file: string): Promise<Set<string>> {
  try {
    const metadata = await parquetMetadataAsync(await asyncBufferFromFile(file));
    return new Set(metadata.schema.slice(1).map((s) => s.name));
  } catch (err) {
    throw new FilipError('FILIP_ERR_SHARD', `cannot open the shard: ${(err as Error).message}`, { file }, { cause: err });
  }
}

/** The texts of one shard row: its caption, then the text of each back-translation. */
function rowTexts(row: Record<string, unknown>, file: string, index: number): string[] {
  const texts: string[] = [];
  if (typeof row.caption === 'string') texts.push(row.caption);
  const bt = row[BACK_TRANSLATIONS_COLUMN];
  if (typeof bt === 'string' && bt !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(bt);
    } catch (err) {
      throw new FilipError('FILIP_ERR_SHARD', 'back_translations is not JSON', { file, row: index, field: BACK_TRANSLATIONS_COLUMN }, { cause: err });
    }
    if (!Array.isArray(parsed)) throw new FilipError('FILIP_ERR_SHARD', 'back_translations is not a JSON array', { file, row: index, field: BACK_TRANSLATIONS_COLUMN });
    for (const item of parsed) {
      const text = (item as { text?: unknown } | null)?.text;
      if (typeof text === 'string') texts.push(text);
    }
  }
  return texts;
}

export interface ShardTextCounts {
  readonly counts: WordCounts;
  readonly files: number;
  readonly rows: number;
  /** Files that had a back_translations column. */
  readonly filesWithBackTranslations: number;
}

/** Word counts of every caption and back-translation in the shards under `dir` (Parquet, or WebDataset tar). */
export async function countShardWords(dir: string, onFile?: (file: string, rows: number) => void): Promise<ShardTextCounts> {
  const tar = await tarShardsOf(dir);
  if (tar) return countTarWords(tar, onFile);
  const files = await listShardFiles(dir);
  const counts = new WordCounts();
  let rows = 0;
  let withBt = 0;
  for (const file of files) {
    const names = await columnNames(file);
    if (!names.has('caption')) throw new FilipError('FILIP_ERR_MISSING_COLUMN', 'the shard has no caption column', { file, field: 'caption' });
    const columns = ['caption'];
    if (names.has(BACK_TRANSLATIONS_COLUMN)) {
      columns.push(BACK_TRANSLATIONS_COLUMN);
      withBt++;
    }
    let index = 0;
    for await (const row of iterateShard(file, { columns })) {
      for (const text of rowTexts(row, file, index)) counts.add(text);
      index++;
    }
    rows += index;
    onFile?.(file, index);
  }
  return { counts, files: files.length, rows, filesWithBackTranslations: withBt };
}

/** The folder's WebDataset shards when it holds NNNNN.tar files and no Parquet file; else undefined. */
async function tarShardsOf(dir: string): Promise<ShardInfo[] | undefined> {
  const names = await fs.readdir(dir).catch(() => undefined);
  if (!names || names.some((n) => n.endsWith('.parquet')) || !names.some((n) => /^\d{5,}\.tar$/.test(n))) return undefined;
  // Whatever the folder holds, finished or not, as for Parquet files: `filip train` checks that first.
  return (await listShards(dir, { partial: true })).filter((s) => s.format === 'tar');
}

async function countTarWords(shards: readonly ShardInfo[], onFile?: (file: string, rows: number) => void): Promise<ShardTextCounts> {
  const counts = new WordCounts();
  let rows = 0;
  let withBt = 0;
  for (const info of shards) {
    const reader = await openShard(info, new Set(['caption', 'backTranslations']), newCounters());
    let bt = false;
    for (let g = 0; g + 1 < reader.groupStarts.length; g++) {
      for (const s of await reader.read(reader.groupStarts[g]!, reader.groupStarts[g + 1]!)) {
        counts.add(s.caption ?? '');
        for (const t of s.backTranslations ?? []) counts.add(t.text);
        if ((s.backTranslations?.length ?? 0) > 0) bt = true;
      }
    }
    if (bt) withBt++;
    rows += reader.rows;
    onFile?.(info.file, reader.rows);
  }
  return { counts, files: shards.length, rows, filesWithBackTranslations: withBt };
}

// ---- the whole command ----

export interface TokenizerTrainSummary extends BpeTrainResult {
  readonly out: string;
  readonly files: number;
  readonly rows: number;
  readonly texts: number;
  readonly tokens: number;
  readonly filesWithBackTranslations: number;
  readonly requestedVocabSize: number;
}

/** Writes a merges file atomically (temporary name, then rename); gzipped if the name ends in `.gz`. */
export async function writeMergesFile(file: string, merges: readonly (readonly [string, string])[]): Promise<void> {
  const text = formatMerges(merges);
  const bytes = file.endsWith('.gz') ? zlib.gzipSync(Buffer.from(text, 'utf8'), { level: 9 }) : Buffer.from(text, 'utf8');
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  try {
    await makeDir(path.dirname(file), 'out');
    await fs.writeFile(tmp, bytes);
    await fs.rename(tmp, file);
  } catch (err) {
    // Cleanup may fail the same way (a file where the folder should be): the first error is the one to report.
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw new FilipError('FILIP_ERR_TOKENIZER', `cannot write the merges file: ${(err as Error).message}`, { file }, { cause: err });
  }
}

/** `filip tokenizer train`: read the shards' texts, learn merges, save them. */
export async function trainTokenizer(input: TokenizerTrainOptions): Promise<TokenizerTrainSummary> {
  const o = resolveTokenizerTrainOptions(input);
  const read = await countShardWords(o.shards, o.onShard);
  if (read.counts.tokens === 0) {
    throw new FilipError('FILIP_ERR_TOKENIZER', 'the shards hold no caption text to learn from', { file: o.shards });
  }
  const result = trainBpe(read.counts.counts, o);
  await writeMergesFile(o.out, result.merges);
  return {
    ...result,
    out: o.out,
    files: read.files,
    rows: read.rows,
    texts: read.counts.texts,
    tokens: read.counts.tokens,
    filesWithBackTranslations: read.filesWithBackTranslations,
    requestedVocabSize: o.vocabSize,
  };
}
