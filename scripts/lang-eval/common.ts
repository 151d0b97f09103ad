// What build.ts and eval.ts agree on: where the labelled set lives, how words are counted, and the
// length buckets that the English-filter targets are reported on.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
/** Deterministic PRNG (mulberry32) for seeded sampling. */
export { mulberry32 as prng } from '../../src/core/random.js';

export const CACHE_DIR = resolve('.cache/lang-eval');

/** Splits of the labelled set: `dev` is for tuning by eye, `test` is what the targets are checked on. */
export const SPLITS = { dev: 'for tuning (25% of source items)', test: 'for reporting (75% of source items)' } as const;
export type Split = keyof typeof SPLITS;

export const BUCKETS = [
  { name: '2-3', min: 2, max: 3 },
  { name: '4-6', min: 4, max: 6 },
  { name: '7-10', min: 7, max: 10 },
  { name: '11-15', min: 11, max: 15 },
] as const;
export type BucketName = (typeof BUCKETS)[number]['name'];

const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\p{Script=Thai}]/u;
const HAS_LETTER = /\p{L}/u;
let segmenter: Intl.Segmenter | undefined;

/**
 * Words in a text: whitespace-separated tokens with a letter in them; for scripts written without
 * spaces (Chinese, Japanese, Thai) the word-like segments of Intl.Segmenter instead.
 */
export function countWords(text: string): number {
  if (CJK.test(text)) {
    segmenter ??= new Intl.Segmenter('und', { granularity: 'word' });
    let n = 0;
    for (const s of segmenter.segment(text)) if (s.isWordLike) n++;
    return n;
  }
  let n = 0;
  for (const token of text.split(/\s+/)) if (HAS_LETTER.test(token)) n++;
  return n;
}

export function bucketOf(words: number): BucketName | undefined {
  for (const b of BUCKETS) if (words >= b.min && words <= b.max) return b.name;
  return undefined;
}

export interface Labelled {
  readonly lang: string;
  readonly text: string;
}

export function splitPath(split: Split): string {
  return resolve(CACHE_DIR, `${split}.tsv`);
}

/** Reads `lang<TAB>text` lines (no header). */
export function readLabelled(path: string): Labelled[] {
  const out: Labelled[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.length === 0) continue;
    const tab = line.indexOf('\t');
    if (tab < 0) continue;
    out.push({ lang: line.slice(0, tab), text: line.slice(tab + 1) });
  }
  return out;
}


export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** FNV-1a 32-bit: a stable hash for assigning source items to splits. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
