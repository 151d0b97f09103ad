// Corpus-wide caption counts for repeated_text: exact against a plain Map (normalisation included),
// the documented count() semantics for each keepAbove, flat memory over 2 million adds, temp files
// removed, and bad options rejected with FILIP_ERR_INVALID_OPTION.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FilipError } from '../src/core/errors.js';
import { CaptionCounter, type CaptionCounterOptions, type CaptionCounts } from '../src/filters/caption-counts.js';
import { normalizeCaption } from '../src/pipeline/dedupe.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'filip-caption-counts-'));
after(() => rmSync(root, { recursive: true, force: true }));
let folders = 0;
const freshDir = () => path.join(root, `run-${folders++}`);

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['dog', 'cat', 'red', 'car', 'beach', 'sunset', 'house', 'tree', 'woman', 'man', 'city', 'night', 'old', 'blue'];

/** Spellings that normalise alike: case, punctuation and spacing differ. */
function variant(base: string, random: () => number): string {
  switch (Math.floor(random() * 4)) {
    case 0:
      return base;
    case 1:
      return `${base[0]!.toUpperCase()}${base.slice(1)}.`;
    case 2:
      return `  ${base.toUpperCase().replace(/ /g, '  ')}!`;
    default:
      return `${base.replace(/ /g, ', ')}...`;
  }
}

/**
 * About `target` captions: most occur once; some groups occur exactly 2, 5, 10, 11 or 50 times (the
 * boundaries around FILIP's N = 10), a few thousands of times; spelled in normalisation-equivalent
 * variants and shuffled.
 */
function skewedCorpus(target: number, seed: number): string[] {
  const random = prng(seed);
  const out: string[] = [];
  const groups: [number, number][] = [
    [2, 2000], [5, 1000], [10, 800], [11, 800], [50, 200], [1000, 5], [5000, 2],
  ];
  let id = 0;
  for (const [times, howMany] of groups) {
    for (let g = 0; g < howMany && out.length < target; g++) {
      const base = `a ${WORDS[id % WORDS.length]} ${WORDS[(id * 7) % WORDS.length]} number ${id}`;
      id++;
      for (let k = 0; k < times; k++) out.push(variant(base, random));
    }
  }
  while (out.length < target) out.push(variant(`a unique caption ${id++} of a ${WORDS[id % WORDS.length]}`, random));
  out.push('A dog.', 'a dog', 'A  DOG!', ''); // the brief's example, and the empty caption
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function reference(corpus: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const c of corpus) {
    const k = normalizeCaption(c);
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

async function countAll(corpus: readonly string[], options: Omit<CaptionCounterOptions, 'dir'>): Promise<CaptionCounts> {
  const counter = new CaptionCounter({ dir: freshDir(), ...options });
  for (const c of corpus) await counter.add(c);
  return counter.finish();
}

test('exact counts against a Map on 200,000 skewed captions, normalisation-equivalent variants together', async () => {
  const corpus = skewedCorpus(200_000, 1);
  const ref = reference(corpus);
  const counts = await countAll(corpus, { buckets: 64, memoryRows: 8192 });
  try {
    assert.equal(counts.total, corpus.length);
    assert.equal(counts.distinct, ref.size);
    assert.equal(counts.keepAbove, 1);
    assert.equal(counts.kept, [...ref.values()].filter((n) => n > 1).length);
    assert.equal(counts.bytes, counts.kept * 12);
    for (const [key, n] of ref) assert.equal(counts.count(key), Math.max(n, 1), `count of ${JSON.stringify(key)}`);
    // Any spelling finds the same count.
    assert.equal(counts.count('A dog.'), 3);
    assert.equal(counts.count('a, DOG'), 3);
    const tenTimes = [...ref].find(([, n]) => n === 10)![0];
    const elevenTimes = [...ref].find(([, n]) => n === 11)![0];
    assert.equal(counts.count(`${tenTimes.toUpperCase()}!!`), 10);
    assert.equal(counts.count(elevenTimes), 11);
    assert.ok(counts.count(elevenTimes) > 10 && !(counts.count(tenTimes) > 10), 'the FILIP N = 10 boundary');
    // Never added: keepAbove (here 1) is what count() promises for "at most keepAbove times".
    assert.equal(counts.count('a caption that was never added'), 1);
  } finally {
    await counts.close();
  }
});

test('count() is max(n, keepAbove): exact above keepAbove, for every keepAbove and bucket count', async () => {
  const corpus = skewedCorpus(30_000, 2);
  const ref = reference(corpus);
  for (const [keepAbove, buckets, memoryRows] of [[0, 1, 1000], [10, 16, 777], [49, 1024, 4096], [100_000, 2, 50_000]] as const) {
    const counts = await countAll(corpus, { keepAbove, buckets, memoryRows });
    try {
      assert.equal(counts.distinct, ref.size);
      assert.equal(counts.kept, [...ref.values()].filter((n) => n > keepAbove).length);
      for (const [key, n] of ref) {
        assert.equal(counts.count(key), Math.max(n, keepAbove), `keepAbove ${keepAbove}: ${JSON.stringify(key)} x${n}`);
      }
      assert.equal(counts.count('never added'), keepAbove, 'keepAbove 0 gives 0 for a caption never added');
    } finally {
      await counts.close();
    }
  }
});

test('adds that are not awaited still count exactly (they wait for the flush in flight)', async () => {
  const corpus = skewedCorpus(5000, 3);
  const ref = reference(corpus);
  const counter = new CaptionCounter({ dir: freshDir(), buckets: 8, memoryRows: 100, keepAbove: 0 });
  await Promise.all(corpus.map((c) => counter.add(c)));
  const counts = await counter.finish();
  try {
    assert.equal(counts.total, corpus.length);
    for (const [key, n] of ref) assert.equal(counts.count(key), n);
  } finally {
    await counts.close();
  }
});

/** heapUsed plus typed-array memory after a full collection. */
function usedBytes(gc: () => void): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test('memory stays flat over 2 million distinct captions with a small memoryRows', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const counter = new CaptionCounter({ dir: freshDir(), buckets: 16, memoryRows: 4096 });
  const base = usedBytes(gc);
  let peak = 0;
  const n = 2_000_000;
  for (let i = 0; i < n; i++) {
    await counter.add(`caption ${i}`);
    if (i % 250_000 === 249_999) peak = Math.max(peak, usedBytes(gc) - base);
  }
  const counts = await counter.finish();
  peak = Math.max(peak, usedBytes(gc) - base);
  t.diagnostic(`peak growth of heapUsed + arrayBuffers: ${(peak / 1048576).toFixed(2)} MiB over ${n} adds`);
  try {
    assert.equal(counts.total, n);
    assert.equal(counts.distinct, n);
    assert.equal(counts.kept, 0);
    // A Map of 2M captions would hold well over 100 MB; the counter holds 64 KiB of buffers, and
    // finish() one bucket's count table (125k rows, 3 MiB) at a time.
    assert.ok(peak < 8 * 1024 * 1024, `memory grew by ${(peak / 1048576).toFixed(1)} MiB`);
  } finally {
    await counts.close();
  }
});

test('temporary files: bucket files appear on flush and are gone after finish() and close(); discard() too', async () => {
  const dir = freshDir();
  const counter = new CaptionCounter({ dir, buckets: 4, memoryRows: 10 });
  assert.equal(path.dirname(counter.tempDir), dir);
  for (let i = 0; i < 25; i++) await counter.add(`caption ${i % 7}`);
  assert.ok(readdirSync(counter.tempDir).length > 0, 'flushes wrote bucket files');
  const counts = await counter.finish();
  assert.equal(counts.count('caption 3'), 4);
  await counts.close();
  await counts.close(); // idempotent
  assert.equal(existsSync(counter.tempDir), false);
  assert.deepEqual(readdirSync(dir), []);
  assert.throws(() => counts.count('caption 3'));
  await assert.rejects(counter.finish());
  assert.throws(() => counter.add('late'));

  const dropped = new CaptionCounter({ dir, buckets: 4, memoryRows: 10 });
  for (let i = 0; i < 25; i++) await dropped.add(`caption ${i}`);
  await dropped.discard();
  assert.equal(existsSync(dropped.tempDir), false);
  assert.deepEqual(readdirSync(dir), []);
});

test('bad options: FILIP_ERR_INVALID_OPTION naming the option', () => {
  const dir = freshDir();
  const cases: [unknown, string][] = [
    [{}, 'dir'],
    [{ dir: '' }, 'dir'],
    [{ dir: 5 }, 'dir'],
    [{ dir, buckets: 0 }, 'buckets'],
    [{ dir, buckets: 3 }, 'buckets'],
    [{ dir, buckets: 1.5 }, 'buckets'],
    [{ dir, buckets: 1 << 17 }, 'buckets'],
    [{ dir, buckets: '256' }, 'buckets'],
    [{ dir, memoryRows: 0 }, 'memoryRows'],
    [{ dir, memoryRows: -5 }, 'memoryRows'],
    [{ dir, memoryRows: Number.NaN }, 'memoryRows'],
    [{ dir, keepAbove: -1 }, 'keepAbove'],
    [{ dir, keepAbove: 2.5 }, 'keepAbove'],
    [{ dir, bucket: 4 }, 'bucket'],
  ];
  for (const [options, field] of cases) {
    assert.throws(
      () => new CaptionCounter(options as CaptionCounterOptions),
      (err: unknown) => err instanceof FilipError && err.code === 'FILIP_ERR_INVALID_OPTION' && err.field === field,
      JSON.stringify(options),
    );
  }
  assert.equal(existsSync(dir), false, 'a rejected counter creates no folder');
});
