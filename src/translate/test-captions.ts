// Seeded, web-like English captions for translation tests and benchmarks: short noun phrases and
// clauses without a final full stop (as alt texts usually are), many of them ending in a word that a
// translator would like to move (an adjective, a determiner, a preposition), which is exactly where a
// batch that is not kept apart merges or reorders captions. `repeatFraction` of them repeat an earlier
// caption, for cache measurements.

import { mulberry32 } from '../core/random.js';

const DETERMINERS = ['a', 'the', 'my', 'two', 'three', 'some', 'this', 'our'];
const ADJECTIVES = ['big', 'small', 'red', 'old', 'new', 'white', 'black', 'happy', 'green', 'beautiful', 'wooden', 'empty'];
const NOUNS = [
  'dog', 'cat', 'house', 'car', 'woman', 'man', 'child', 'tree', 'river', 'bridge', 'city', 'garden',
  'table', 'horse', 'bird', 'mountain', 'beach', 'street', 'kitchen', 'boat', 'train', 'flower', 'book', 'church',
];
const VERBS = ['running', 'sleeping', 'sitting', 'standing', 'walking', 'playing', 'waiting', 'eating'];
const PLACES = ['on the beach', 'in the garden', 'near a house', 'under a tree', 'in the city', 'at night', 'in winter', 'by the river'];
const TAILS = ['a big', 'the old', 'of the', 'with a', 'and the', 'very', 'in front of', 'my'];

export interface TestCaptionOptions {
  /** Seed of the mulberry32 stream. @default 1 */
  readonly seed?: number;
  /** Share of captions that copy an earlier one (0 to 1). @default 0 */
  readonly repeatFraction?: number;
}

/** `n` captions, the same for the same seed; none ends in punctuation. */
export function makeTestCaptions(n: number, { seed = 1, repeatFraction = 0 }: TestCaptionOptions = {}): string[] {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    if (out.length > 0 && rand() < repeatFraction) {
      out.push(out[Math.floor(rand() * out.length)]!);
      continue;
    }
    const noun = `${pick(DETERMINERS)} ${rand() < 0.6 ? `${pick(ADJECTIVES)} ` : ''}${pick(NOUNS)}`;
    const shape = Math.floor(rand() * 5);
    let caption: string;
    if (shape === 0) caption = `${noun} ${pick(VERBS)} ${pick(PLACES)}`;
    else if (shape === 1) caption = `${noun} and ${pick(DETERMINERS)} ${pick(NOUNS)} ${pick(PLACES)}`;
    else if (shape === 2) caption = `${noun} ${pick(TAILS)}`; // ends mid-phrase
    else if (shape === 3) caption = `${pick(ADJECTIVES)}`; // a lone adjective: the next line's noun would take it
    else caption = `${noun} of ${pick(DETERMINERS)} ${pick(NOUNS)}`;
    out.push(caption);
  }
  return out;
}
