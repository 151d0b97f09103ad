// Throughput of back-translation, for benchmarks (bench:shard) and the docs: the same captions through
// the stage batched and one caption at a time, and the cache hit rate on a corpus with repeats.
// A caption counts once however many pivots it goes through (each pivot is two engine calls). Each run
// starts its engine with one warm-up caption first, so start-up (Apertium loading its dictionaries,
// a model loading) is not counted.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { makeKey, type Sample } from '../core/sample.js';
import { createBackTranslator, type BackTranslateOptions, type BackTranslationStats } from './backtranslate.js';
import { makeTestCaptions } from './test-captions.js';

export interface BackTranslationMeasure {
  readonly engine: string;
  readonly pivots: readonly string[];
  /** Distinct captions timed in each of the first two runs. */
  readonly captions: number;
  readonly batchSize: number;
  /** Captions/s through the stage with `batchSize`, distinct captions, empty cache. */
  readonly batchedPerSecond: number;
  /** Captions/s with batchSize 1 and concurrency 1, same captions, empty cache. */
  readonly singlePerSecond: number;
  /** batched / single. */
  readonly ratio: number;
  /** The repeated corpus: its size, hit rate and captions/s (empty cache at start). */
  readonly repeated: { readonly captions: number; readonly hitRate: number; readonly perSecond: number; readonly stats: BackTranslationStats };
  /** A second pass over the repeated corpus with the cache folder the first pass filled. */
  readonly rerun: { readonly perSecond: number; readonly stats: BackTranslationStats };
}

/** Fake ok samples around captions: the stage only reads `status` and `caption`. */
export function captionSamples(captions: readonly string[]): Sample[] {
  return captions.map((caption, i) => ({
    key: makeKey(0, i),
    index: i,
    url: `http://127.0.0.1/${i}.jpg`,
    caption,
    source: { file: 'captions', row: i },
    extra: {},
    status: 'ok',
  }));
}

/** Times the stage over `captions`, after one warm-up caption has started the engine's pipelines/models. */
async function timeStage(options: BackTranslateOptions, captions: readonly string[]): Promise<{ seconds: number; stats: BackTranslationStats }> {
  const bt = await createBackTranslator(options);
  const drain = async (samples: Sample[]) => {
    async function* src() {
      yield* samples;
    }
    for await (const _ of bt.stage(src())) {
      // drain
    }
  };
  try {
    await drain(captionSamples(['warm-up caption for the engine']));
    const before = bt.stats();
    const t0 = performance.now();
    await drain(captionSamples(captions));
    const seconds = (performance.now() - t0) / 1000;
    const after = bt.stats();
    const stats = Object.fromEntries(
      Object.entries(after).map(([k, v]) => [k, typeof v === 'number' ? v - (before[k as keyof BackTranslationStats] as number) : v]),
    ) as unknown as BackTranslationStats;
    return { seconds, stats };
  } finally {
    await bt.close();
  }
}

/**
 * Runs the three measurements. `distinct` captions for the batched/single comparison, `repeated`
 * captions of which `repeatFraction` copy an earlier one for the cache figures.
 */
export async function measureBackTranslation({
  options = {},
  distinct = 500,
  repeated = 2000,
  repeatFraction = 0.5,
  seed = 1,
}: {
  options?: BackTranslateOptions;
  distinct?: number;
  repeated?: number;
  repeatFraction?: number;
  seed?: number;
} = {}): Promise<BackTranslationMeasure> {
  const base: BackTranslateOptions = { ...options, cacheDir: null };
  const captions = [...new Set(makeTestCaptions(distinct * 3, { seed }))].slice(0, distinct);
  const batched = await timeStage(base, captions);
  const single = await timeStage({ ...base, batchSize: 1, concurrency: 1 }, captions);

  const corpus = makeTestCaptions(repeated, { seed: seed + 1, repeatFraction });
  const dir = await mkdtemp(join(tmpdir(), 'filip-bt-measure-'));
  try {
    const first = await timeStage({ ...options, cacheDir: dir }, corpus);
    const again = await timeStage({ ...options, cacheDir: dir }, corpus);
    const bt = await createBackTranslator(base);
    const { engine, pivots, batchSize } = { engine: bt.translator?.engine ?? 'none', pivots: bt.options.pivots, batchSize: bt.options.batchSize };
    await bt.close();
    const lookups = first.stats.cacheHits + first.stats.cacheMisses;
    return {
      engine,
      pivots,
      captions: captions.length,
      batchSize,
      batchedPerSecond: captions.length / batched.seconds,
      singlePerSecond: captions.length / single.seconds,
      ratio: single.seconds / batched.seconds,
      repeated: {
        captions: corpus.length,
        hitRate: lookups === 0 ? 0 : first.stats.cacheHits / lookups,
        perSecond: corpus.length / first.seconds,
        stats: first.stats,
      },
      rerun: { perSecond: corpus.length / again.seconds, stats: again.stats },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
