// The back-translation stage: each kept caption goes to a pivot language and back to English, once per
// configured pivot, and the results ride on the sample as extra captions (`backTranslations`, with
// pivot and engine). A caption the engine fails on keeps its row, unchanged status and original
// caption, with a `translationFailures` entry (reason `translation_failed`, pivot, engine, message).
// Rejected samples pass through untouched.
//
// Samples are grouped into batches of up to `batchSize` ok captions; each batch is looked up in the
// cache, its distinct new captions go to the engine in one call per direction, and up to
// `concurrency` batches are in flight while the output keeps the input's order and count.

import { FilipError } from '../core/errors.js';
import { choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import type { CaptionTranslation, Sample, TranslationFailure } from '../core/sample.js';
import { orderedMap } from '../pipeline/pool.js';
import { ApertiumTranslator, DEFAULT_APERTIUM_OPTIONS } from './apertium.js';
import { TranslationCache } from './cache.js';
import {
  DEFAULT_PIVOTS,
  HTTP_FLAVOURS,
  PIVOT_LANGUAGES,
  SOURCE_LANGUAGE,
  TRANSLATION_ENGINES,
  normalizeForTranslation,
  type HttpFlavour,
  type PivotLanguage,
  type TranslationEngine,
  type Translator,
} from './engine.js';
import { HttpTranslator } from './http.js';
import { MARIAN_DTYPES, MarianTranslator, type MarianDtype } from './marian.js';

export interface BackTranslateOptions {
  /**
   * Translation engine; `none` passes samples through untouched.
   * @default 'apertium'
   */
  readonly engine?: TranslationEngine;
  /**
   * Pivot languages (ISO 639-3), in the order their captions are stored. null: the engine's default
   * (apertium: spa, cat; marian: deu, rus; http: spa, cat for apertium-apy, deu, rus for LibreTranslate).
   * @default null
   */
  readonly pivots?: readonly PivotLanguage[] | null;
  /**
   * Folder of the on-disk translation cache; null keeps it in memory for this run only.
   * @default null
   */
  readonly cacheDir?: string | null;
  /**
   * Ok captions per engine call.
   * @default 64
   */
  readonly batchSize?: number;
  /**
   * Batches in flight at once (the HTTP engine also caps its requests in flight at this).
   * @default 2
   */
  readonly concurrency?: number;
  /**
   * Translation server for the http engine, e.g. `http://127.0.0.1:5000`.
   * @default null
   */
  readonly httpUrl?: string | null;
  /** @default 'libretranslate' */
  readonly httpFlavour?: HttpFlavour;
  /**
   * Extra attempts per HTTP request after a 5xx, 429, network error or timeout.
   * @default 2
   */
  readonly httpRetries?: number;
  /**
   * Folder with `opus-mt-en-de/`, `opus-mt-de-en/`, ... for the marian engine.
   * @default null
   */
  readonly marianDir?: string | null;
  /** @default 'fp32' */
  readonly marianDtype?: MarianDtype;
  /**
   * Per call (apertium) or per HTTP attempt (http), in milliseconds.
   * @default 60000
   */
  readonly timeoutMs?: number;
  /** @default '/usr/share/apertium/modes' */
  readonly apertiumModesDir?: string;
}

export const DEFAULT_BACK_TRANSLATE_OPTIONS = {
  engine: 'apertium',
  pivots: null,
  cacheDir: null,
  batchSize: 64,
  concurrency: 2,
  httpUrl: null,
  httpFlavour: 'libretranslate',
  httpRetries: 2,
  marianDir: null,
  marianDtype: 'fp32',
  timeoutMs: 60_000,
  apertiumModesDir: DEFAULT_APERTIUM_OPTIONS.modesDir,
} as const satisfies Required<BackTranslateOptions>;

export interface ResolvedBackTranslateOptions {
  readonly engine: TranslationEngine;
  readonly pivots: readonly PivotLanguage[];
  readonly cacheDir: string | null;
  readonly batchSize: number;
  readonly concurrency: number;
  readonly httpUrl: string | null;
  readonly httpFlavour: HttpFlavour;
  readonly httpRetries: number;
  readonly marianDir: string | null;
  readonly marianDtype: MarianDtype;
  readonly timeoutMs: number;
  readonly apertiumModesDir: string;
}

/** Validates and defaults the options; throws FilipError FILIP_ERR_INVALID_OPTION naming the option. */
export function resolveBackTranslateOptions(given: BackTranslateOptions = {}): ResolvedBackTranslateOptions {
  if (given === null || typeof given !== 'object') throw invalid('options', 'an object', given);
  rejectUnknownKeys('back-translation', given, DEFAULT_BACK_TRANSLATE_OPTIONS);
  const o = { ...DEFAULT_BACK_TRANSLATE_OPTIONS, ...definedOnly(given) };
  const engine = choiceOption('engine', o.engine, TRANSLATION_ENGINES);
  const httpFlavour = choiceOption('httpFlavour', o.httpFlavour, HTTP_FLAVOURS);
  const pivots = o.pivots === null ? defaultPivots(engine, httpFlavour) : o.pivots;
  if (!Array.isArray(pivots) || (engine !== 'none' && pivots.length === 0)) {
    throw invalid('pivots', `a non-empty list of ${PIVOT_LANGUAGES.join(', ')}`, pivots);
  }
  pivots.forEach((p, i) => choiceOption(`pivots[${i}]`, p, PIVOT_LANGUAGES));
  if (new Set(pivots).size !== pivots.length) throw invalid('pivots', 'a list without repeats', pivots);
  const httpUrl = o.httpUrl === null ? null : stringOption('httpUrl', o.httpUrl);
  if (engine === 'http' && httpUrl === null) throw invalid('httpUrl', 'a server URL when engine is "http"', httpUrl);
  const marianDir = o.marianDir === null ? null : stringOption('marianDir', o.marianDir);
  if (engine === 'marian' && marianDir === null) throw invalid('marianDir', 'a model folder when engine is "marian"', marianDir);
  return {
    engine,
    pivots: [...pivots],
    cacheDir: o.cacheDir === null ? null : stringOption('cacheDir', o.cacheDir),
    batchSize: intOption('batchSize', o.batchSize, 1, 100_000),
    concurrency: intOption('concurrency', o.concurrency, 1, 1024),
    httpUrl,
    httpFlavour,
    httpRetries: intOption('httpRetries', o.httpRetries, 0, 20),
    marianDir,
    marianDtype: choiceOption('marianDtype', o.marianDtype, MARIAN_DTYPES),
    timeoutMs: intOption('timeoutMs', o.timeoutMs, 1),
    apertiumModesDir: stringOption('apertiumModesDir', o.apertiumModesDir),
  };
}

/** The engine's default pivots (see BackTranslateOptions.pivots). */
export function defaultPivots(engine: TranslationEngine, flavour: HttpFlavour = 'libretranslate'): readonly PivotLanguage[] {
  if (engine === 'none') return [];
  if (engine === 'http' && flavour === 'libretranslate') return DEFAULT_PIVOTS.marian;
  return DEFAULT_PIVOTS[engine];
}

export interface BackTranslationStats {
  /** Ok samples whose caption went through the stage. */
  captions: number;
  /** (caption, pivot) pairs that got a back-translation, from the engine or the cache. */
  translated: number;
  /** (caption, pivot) lookups answered without the engine: on disk, or seen earlier in the same batch. */
  cacheHits: number;
  /** (caption, pivot) lookups that needed the engine. */
  cacheMisses: number;
  /** (caption, pivot) pairs recorded as translation_failed. */
  failures: number;
  /** The message of the first translation_failed of the run, null while there is none. */
  firstFailure: string | null;
}

export interface BackTranslator {
  readonly options: ResolvedBackTranslateOptions;
  /** The engine in use; null for engine `none`. */
  readonly translator: Translator | null;
  /** The stage: same samples, same order, ok ones carrying backTranslations / translationFailures. */
  stage(source: AsyncIterable<Sample>): AsyncGenerator<Sample>;
  stats(): BackTranslationStats;
  /** Ends the engine (child processes, sockets) and the cache files. */
  close(): Promise<void>;
}

/** Makes the engine the options name (or the given one). */
export function createTranslator(o: ResolvedBackTranslateOptions): Translator | null {
  switch (o.engine) {
    case 'none':
      return null;
    case 'apertium':
      return new ApertiumTranslator({ modesDir: o.apertiumModesDir, timeoutMs: o.timeoutMs });
    case 'http':
      return new HttpTranslator({
        url: o.httpUrl!,
        flavour: o.httpFlavour,
        timeoutMs: o.timeoutMs,
        retries: o.httpRetries,
        concurrency: o.concurrency,
      });
    case 'marian':
      return new MarianTranslator({ dir: o.marianDir!, dtype: o.marianDtype });
  }
}

/**
 * Sets up the stage: validates the options, makes the engine (or takes `translator`, whose `engine`
 * name then goes on the results), checks that it can do every pivot in both directions where that can
 * be known beforehand (Apertium modes, Marian model files: FilipError), and opens the cache.
 */
export async function createBackTranslator(options: BackTranslateOptions = {}, translator?: Translator): Promise<BackTranslator> {
  const o = resolveBackTranslateOptions(options);
  const engine = translator ?? createTranslator(o);
  const cache = new TranslationCache(o.cacheDir);
  const stats: BackTranslationStats = { captions: 0, translated: 0, cacheHits: 0, cacheMisses: 0, failures: 0, firstFailure: null };
  try {
    if (engine?.check) {
      for (const pivot of o.pivots) {
        await engine.check(SOURCE_LANGUAGE, pivot);
        await engine.check(pivot, SOURCE_LANGUAGE);
      }
    }
    if (engine) for (const pivot of o.pivots) await cache.load(engine.engine, pivot);
  } catch (err) {
    await engine?.close();
    await cache.close();
    throw err;
  }

  /** One pivot over one batch: results per sample, in the batch's order. */
  const translatePivot = async (engine: Translator, pivot: PivotLanguage, captions: readonly string[]) => {
    const results = new Map<string, string | Error>();
    const todo: string[] = [];
    let hits = 0;
    let misses = 0;
    for (const text of captions) {
      if (text === '') continue;
      if (results.has(text)) {
        hits++; // a repeat within the batch costs nothing either
        continue;
      }
      const cached = cache.get(engine.engine, pivot, text);
      if (cached !== undefined) {
        results.set(text, cached);
        hits++;
      } else {
        results.set(text, new Error('pending'));
        todo.push(text);
        misses++;
      }
    }
    if (todo.length > 0) {
      const there = await callEngine(engine, todo, SOURCE_LANGUAGE, pivot);
      const okIdx = todo.flatMap((_, i) => (typeof there[i] === 'string' && there[i] !== '' ? [i] : []));
      const back = okIdx.length > 0 ? await callEngine(engine, okIdx.map((i) => there[i] as string), pivot, SOURCE_LANGUAGE) : [];
      const fresh: [string, string][] = [];
      todo.forEach((text, i) => {
        const mid = there[i]!;
        if (mid instanceof Error) results.set(text, mid);
        else if (mid === '') results.set(text, new Error(`${engine.engine} ${SOURCE_LANGUAGE}->${pivot}: empty translation`));
      });
      okIdx.forEach((i, k) => {
        const text = todo[i]!;
        const b = back[k]!;
        if (b instanceof Error) results.set(text, b);
        else if (normalizeForTranslation(b) === '') results.set(text, new Error(`${engine.engine} ${pivot}->${SOURCE_LANGUAGE}: empty translation`));
        else {
          results.set(text, b);
          fresh.push([text, b]);
        }
      });
      await cache.put(engine.engine, pivot, fresh);
    }
    return { perCaption: captions.map((t) => (t === '' ? new Error('empty caption') : results.get(t)!)), hits, misses };
  };

  const translateBatch = async (engine: Translator, group: Sample[]): Promise<Sample[]> => {
    const ok = group.filter((s) => s.status === 'ok');
    if (ok.length === 0) return group;
    const captions = ok.map((s) => normalizeForTranslation(s.caption));
    const perPivot = await Promise.all(o.pivots.map((pivot) => translatePivot(engine, pivot, captions)));
    stats.captions += ok.length;
    ok.forEach((s, k) => {
      const done: CaptionTranslation[] = [];
      const failed: TranslationFailure[] = [];
      o.pivots.forEach((pivot, p) => {
        const r = perPivot[p]!.perCaption[k]!;
        if (r instanceof Error) failed.push({ pivot, engine: engine.engine, reason: 'translation_failed', message: r.message });
        else done.push({ pivot, engine: engine.engine, text: r });
      });
      s.backTranslations = done;
      if (failed.length > 0) s.translationFailures = failed;
      else delete s.translationFailures;
      stats.translated += done.length;
      stats.failures += failed.length;
      stats.firstFailure ??= failed[0] ? `${failed[0].pivot}: ${failed[0].message}` : null;
    });
    for (const r of perPivot) {
      stats.cacheHits += r.hits;
      stats.cacheMisses += r.misses;
    }
    return group;
  };

  return {
    options: o,
    translator: engine,
    async *stage(source: AsyncIterable<Sample>): AsyncGenerator<Sample> {
      if (!engine) {
        yield* source;
        return;
      }
      const batches = orderedMap(groupSamples(source, o.batchSize), (g) => translateBatch(engine, g), {
        concurrency: o.concurrency,
        window: o.concurrency * 2,
      });
      for await (const group of batches) yield* group;
    },
    stats: () => ({ ...stats }),
    async close() {
      await engine?.close();
      await cache.close();
    },
  };
}

/**
 * The stage as a plain function: with options it makes a back-translator and closes it at the end;
 * with a BackTranslator it uses it and leaves it open.
 */
export async function* backTranslateStage(
  source: AsyncIterable<Sample>,
  with_: BackTranslator | BackTranslateOptions = {},
): AsyncGenerator<Sample> {
  const owned = !('stage' in with_);
  const bt = owned ? await createBackTranslator(with_ as BackTranslateOptions) : (with_ as BackTranslator);
  try {
    yield* bt.stage(source);
  } finally {
    if (owned) await bt.close();
  }
}

/**
 * Consecutive samples in groups holding up to `batchSize` ok samples; rejected ones ride along in
 * place. A long run of rejected samples is cut at 4 x batchSize so memory stays bounded.
 */
async function* groupSamples(source: AsyncIterable<Sample>, batchSize: number): AsyncGenerator<Sample[]> {
  let group: Sample[] = [];
  let ok = 0;
  for await (const s of source) {
    group.push(s);
    if (s.status === 'ok') ok++;
    if (ok >= batchSize || group.length >= 4 * batchSize) {
      yield group;
      group = [];
      ok = 0;
    }
  }
  if (group.length > 0) yield group;
}

/** An engine call whose unexpected throw fails that call's texts; FilipError (setup, misuse) stops the run. */
async function callEngine(engine: Translator, texts: string[], from: string, to: string): Promise<(string | Error)[]> {
  try {
    const out = await engine.translate(texts, from, to);
    if (out.length !== texts.length) {
      const e = new Error(`${engine.engine} ${from}->${to}: returned ${out.length} results for ${texts.length} texts`);
      return texts.map(() => e);
    }
    return out;
  } catch (err) {
    if (err instanceof FilipError) throw err;
    const e = new Error(`${engine.engine} ${from}->${to}: ${(err as Error).message}`);
    return texts.map(() => e);
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
