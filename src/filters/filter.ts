// The filter stage: FILIP's data rules (and DataComp's basic ones as a preset) applied to ingested
// samples. Each rule has a stable reason code; a sample that fails any rule is rejected with the
// first failed rule as its reason and the list of all failed rules, and counted in the funnel.

import { FilipError } from '../core/errors.js';
import { choiceOption, intOption, numberOption, rejectUnknownKeys } from '../core/options.js';
import type { ReasonCode } from '../core/reasons.js';
import type { Sample } from '../core/sample.js';
import { CaptionCounter, type CaptionCounts } from './caption-counts.js';
import { loadDecontaminationIndex } from './decontaminate.js';
import { createEnglishDetector, LANGUAGE_ENGINES, type LanguageEngine } from './language.js';
import { isMeaningless } from './meaningless.js';
import { DEFAULT_NEAR_DUP_CHECK, type NearDupCheckThresholds } from '../image/near-dup-check.js';
import { DEFAULT_NEAR_DUP_DISTANCE, MAX_NEAR_DUP_DISTANCE, PHASH_ONLY_DISTANCE, PhashIndex } from './phash-index.js';
import { Funnel } from './funnel.js';
import { hasTooFewWords, isTooElongated, isTooSmall } from './rules.js';

/** Every rule, in the order it is applied and reported. The name is the reason code. */
export const FILTER_RULES = [
  'image_too_small',
  'aspect_ratio',
  'meaningless_text',
  'too_few_words',
  'not_english',
  'repeated_text',
  'contaminated',
  'near_duplicate',
] as const satisfies readonly ReasonCode[];
export type FilterRule = (typeof FILTER_RULES)[number];

export const FILTER_PRESETS = {
  filip:
    'FILIP (Yao et al. 2022): shorter side >= 200, aspect <= 3, English, not meaningless, caption repeated at most 10 times; plus near-duplicate removal',
  'datacomp-basic': 'DataComp basic: English, more than 2 words and more than 5 characters, shorter side >= 200, aspect <= 3',
} as const;
export type FilterPreset = keyof typeof FILTER_PRESETS;

const PRESET_RULES: Record<FilterPreset, readonly FilterRule[]> = {
  filip: ['image_too_small', 'aspect_ratio', 'meaningless_text', 'not_english', 'repeated_text', 'near_duplicate'],
  'datacomp-basic': ['image_too_small', 'aspect_ratio', 'too_few_words', 'not_english'],
};

export interface FilterOptions {
  /** @default 'filip' */
  readonly preset: FilterPreset;
  /** Rules that run, in FILTER_RULES order: the preset's, minus `disable`, plus `enable` (and `contaminated` when `decontaminate` is given). */
  readonly rules: readonly FilterRule[];
  /** image_too_small: minimum shorter side of the original image. @default 200 */
  readonly minSide: number;
  /** aspect_ratio: maximum longer/shorter side. @default 3 */
  readonly maxAspect: number;
  /** repeated_text: a caption may occur at most this many times in the corpus. @default 10 */
  readonly maxRepeats: number;
  /** not_english: the identifier. @default 'filip' */
  readonly language: LanguageEngine;
  /**
   * near_duplicate and contaminated: how a pHash candidate is confirmed. `aligned`: by the check data
   * ingest stores (src/image/near-dup-check.ts: chroma hash, then thumbnails with the crop undone);
   * `none`: the pHash distance alone decides. @default 'aligned'
   */
  readonly nearDupCheck: NearDupCheckKind;
  /** near_duplicate: maximum Hamming distance between perceptual hashes. @default DEFAULT_NEAR_DUP_DISTANCE (20) with the check, PHASH_ONLY_DISTANCE (10) without */
  readonly nearDupDistance: number;
  /** contaminated: maximum Hamming distance to an evaluation image. @default as nearDupDistance */
  readonly contaminationDistance: number;
  /** Folders or files of evaluation images or shards; their near duplicates are dropped. @default [] */
  readonly decontaminate: readonly string[];
  /** too_few_words: the caption needs MORE than this many words. @default 2 */
  readonly minWords: number;
  /** too_few_words: the caption needs MORE than this many characters. @default 5 */
  readonly minChars: number;
}

/** How near_duplicate and contaminated confirm a pHash candidate (FilterOptions.nearDupCheck). */
export const NEAR_DUP_CHECKS = {
  aligned: 'confirm on the stored check data: chroma hash, then grey thumbnails compared with the crop undone',
  none: 'the pHash distance alone',
} as const;
export type NearDupCheckKind = keyof typeof NEAR_DUP_CHECKS;

/** The thresholds a PhashIndex gets for the filter's check setting. */
export function nearDupCheckThresholds(kind: NearDupCheckKind): NearDupCheckThresholds | undefined {
  return kind === 'aligned' ? DEFAULT_NEAR_DUP_CHECK : undefined;
}

export type FilterInput = Partial<Omit<FilterOptions, 'rules'>> & {
  /** Rules to switch off. */
  readonly disable?: readonly FilterRule[];
  /** Rules to switch on beyond the preset. */
  readonly enable?: readonly FilterRule[];
};

const DEFAULTS = {
  preset: 'filip' as FilterPreset,
  minSide: 200,
  maxAspect: 3,
  maxRepeats: 10,
  language: 'filip' as LanguageEngine,
  nearDupCheck: 'aligned' as NearDupCheckKind,
  nearDupDistance: undefined as number | undefined,
  contaminationDistance: undefined as number | undefined,
  decontaminate: [] as readonly string[],
  minWords: 2,
  minChars: 5,
};

export function resolveFilterOptions(input: FilterInput = {}): FilterOptions {
  rejectUnknownKeys('filter', input, { ...DEFAULTS, disable: 0, enable: 0 });
  const o = { ...DEFAULTS, ...input };
  const preset = choiceOption('preset', o.preset, Object.keys(FILTER_PRESETS) as FilterPreset[]);
  const disable = (input.disable ?? []).map((r) => choiceOption('disable', r, FILTER_RULES));
  const enable = (input.enable ?? []).map((r) => choiceOption('enable', r, FILTER_RULES));
  if (!Array.isArray(o.decontaminate) || o.decontaminate.some((p) => typeof p !== 'string' || p.length === 0)) {
    throw new FilipError('FILIP_ERR_INVALID_OPTION', 'Expected `decontaminate` to be a list of paths', { field: 'decontaminate' });
  }
  const on = new Set<FilterRule>([...PRESET_RULES[preset], ...enable]);
  if (o.decontaminate.length > 0) on.add('contaminated');
  for (const r of disable) on.delete(r);
  if (on.has('contaminated') && o.decontaminate.length === 0) {
    throw new FilipError('FILIP_ERR_INVALID_OPTION', 'the `contaminated` rule needs `decontaminate` paths', { field: 'decontaminate' });
  }
  const nearDupCheck = choiceOption('nearDupCheck', o.nearDupCheck, Object.keys(NEAR_DUP_CHECKS) as NearDupCheckKind[]);
  const defaultDistance = nearDupCheck === 'none' ? PHASH_ONLY_DISTANCE : DEFAULT_NEAR_DUP_DISTANCE;
  const nearDupDistance = intOption('nearDupDistance', o.nearDupDistance ?? defaultDistance, 0, MAX_NEAR_DUP_DISTANCE);
  return {
    preset,
    rules: FILTER_RULES.filter((r) => on.has(r)),
    minSide: intOption('minSide', o.minSide, 1),
    maxAspect: numberOption('maxAspect', o.maxAspect, 1),
    // The caption counter keeps counts up to 2^32 - 1; a limit at or above it could never be passed.
    maxRepeats: intOption('maxRepeats', o.maxRepeats, 1, 2 ** 32 - 2),
    language: choiceOption('language', o.language, Object.keys(LANGUAGE_ENGINES) as LanguageEngine[]),
    nearDupCheck,
    nearDupDistance,
    contaminationDistance: intOption('contaminationDistance', o.contaminationDistance ?? nearDupDistance, 0, MAX_NEAR_DUP_DISTANCE),
    decontaminate: [...o.decontaminate],
    minWords: intOption('minWords', o.minWords, 0),
    minChars: intOption('minChars', o.minChars, 0),
  };
}

/** What the rules need beyond the sample itself: corpus-wide caption counts, hash indexes, the identifier. */
export interface FilterContext {
  readonly options: FilterOptions;
  readonly isEnglish: (text: string) => boolean;
  readonly counts?: CaptionCounts;
  /** Perceptual hashes of the samples kept so far (first seen wins). */
  readonly kept?: PhashIndex;
  readonly contamination?: PhashIndex;
  close(): Promise<void>;
}

/**
 * Builds the context. `captions` must yield the caption of every row of the corpus once (first pass
 * of repeated_text); it is only read when that rule is on. `workDir` holds the counter's bucket files.
 */
export async function prepareFilter(
  options: FilterOptions,
  captions: () => AsyncIterable<string>,
  workDir: string,
): Promise<FilterContext> {
  const on = new Set(options.rules);
  let counts: CaptionCounts | undefined;
  if (on.has('repeated_text')) {
    // Only captions above the limit matter, so only those are kept for lookups.
    const counter = new CaptionCounter({ dir: workDir, keepAbove: options.maxRepeats });
    for await (const c of captions()) await counter.add(c);
    counts = await counter.finish();
  }
  const check = nearDupCheckThresholds(options.nearDupCheck);
  const contamination = on.has('contaminated')
    ? await loadContamination(options.decontaminate, options.contaminationDistance, check)
    : undefined;
  return {
    options,
    isEnglish: createEnglishDetector(options.language),
    counts,
    kept: on.has('near_duplicate') ? new PhashIndex(options.nearDupDistance, check) : undefined,
    contamination,
    close: async () => {
      await counts?.close();
    },
  };
}

async function loadContamination(paths: readonly string[], distance: number, check: NearDupCheckThresholds | undefined): Promise<PhashIndex> {
  const index = new PhashIndex(distance, check);
  for (const p of paths) {
    const one = await loadDecontaminationIndex(p, distance, check);
    for (const { hash, check: data } of one.entries()) index.add(hash, data);
  }
  return index;
}

/**
 * The answers of the hash indexes for one sample, looked up beforehand (filterSamples asks them for a
 * batch at once): the matching evaluation image and kept image, or undefined.
 */
export interface IndexAnswers {
  readonly contaminated: string | undefined;
  readonly nearDuplicate: string | undefined;
}

/**
 * The rules a sample fails, in rule order, with a message for the first. Does not touch the kept
 * index. `answers`, when given, replace the contaminated and near_duplicate lookups.
 */
export function failedRules(sample: Sample, ctx: FilterContext, answers?: IndexAnswers): { failed: FilterRule[]; message: string } {
  const o = ctx.options;
  const img = sample.image;
  const failed: FilterRule[] = [];
  let message = '';
  const fail = (rule: FilterRule, why: () => string) => {
    if (failed.length === 0) message = why();
    failed.push(rule);
  };
  for (const rule of o.rules) {
    switch (rule) {
      case 'image_too_small':
        if (img && isTooSmall(img.originalWidth, img.originalHeight, o.minSide)) {
          fail(rule, () => `original ${img.originalWidth}x${img.originalHeight}: shorter side under ${o.minSide} px`);
        }
        break;
      case 'aspect_ratio':
        if (img && isTooElongated(img.originalWidth, img.originalHeight, o.maxAspect)) {
          fail(rule, () => `original ${img.originalWidth}x${img.originalHeight}: aspect ratio over ${o.maxAspect}`);
        }
        break;
      case 'meaningless_text':
        if (isMeaningless(sample.caption)) fail(rule, () => `meaningless caption ${JSON.stringify(sample.caption.slice(0, 80))}`);
        break;
      case 'too_few_words':
        if (hasTooFewWords(sample.caption, o.minWords, o.minChars)) {
          fail(rule, () => `caption needs more than ${o.minWords} words and ${o.minChars} characters`);
        }
        break;
      case 'not_english':
        if (!ctx.isEnglish(sample.caption)) fail(rule, () => `caption is not English (${o.language} identifier)`);
        break;
      case 'repeated_text': {
        const n = ctx.counts?.count(sample.caption) ?? 0;
        if (n > o.maxRepeats) fail(rule, () => `caption occurs ${n} times in the corpus (at most ${o.maxRepeats} allowed)`);
        break;
      }
      case 'contaminated': {
        const hit = answers ? answers.contaminated : img ? ctx.contamination?.find(img.phash, img.phashWeak, img.nearDupCheck) : undefined;
        if (hit !== undefined) fail(rule, () => `near duplicate (phash ${hit}) of an evaluation image`);
        break;
      }
      case 'near_duplicate': {
        const hit = answers ? answers.nearDuplicate : img ? ctx.kept?.find(img.phash, img.phashWeak, img.nearDupCheck) : undefined;
        if (hit !== undefined) fail(rule, () => `near duplicate of a kept image (phash ${hit})`);
        break;
      }
    }
  }
  return { failed, message };
}

/**
 * Samples the filter stage decides together (filterSamples): their near_duplicate and contaminated
 * lookups go to PhashIndex.findMany at once, which reads the index in address order (against a
 * million kept pictures: ~110k lookups/s in batches of 4,096, ~65k one at a time). It holds that many
 * samples, images included, before it yields the first.
 */
export const FILTER_BATCH = 4096;

/**
 * The filter stage: ok samples that fail a rule become rejected; others pass and join the kept index.
 * Samples are decided in batches of `batch` samples with an image (see FILTER_BATCH; 1 decides each
 * on its own), in order, with the same result whatever the batch: a sample is a near duplicate of
 * the first kept picture that matches it, kept before its batch or earlier in it.
 */
export async function* filterSamples(
  source: AsyncIterable<Sample>,
  ctx: FilterContext,
  funnel?: Funnel,
  batch: number = FILTER_BATCH,
): AsyncGenerator<Sample> {
  const size = intOption('batch', batch, 1);
  const pending: Sample[] = [];
  let lookups = 0;
  for await (const sample of source) {
    pending.push(sample);
    if (sample.status === 'ok' && sample.image) lookups++;
    if (lookups >= size) {
      yield* decide(pending, ctx, funnel);
      pending.length = 0;
      lookups = 0;
    }
  }
  yield* decide(pending, ctx, funnel);
}

/**
 * Decides a batch in order. The index lookups of its samples are asked at once: evaluation images,
 * and pictures kept before the batch; a sample without a match there is then looked up among the
 * pictures kept earlier in the batch (a small index of its own), so every sample sees every picture
 * kept before it.
 */
function* decide(pending: readonly Sample[], ctx: FilterContext, funnel: Funnel | undefined): Generator<Sample> {
  const on = new Set(ctx.options.rules);
  const asked = pending.filter((s) => s.status === 'ok' && s.image);
  const hashes = asked.map((s) => s.image!.phash);
  const weaks = asked.map((s) => s.image!.phashWeak);
  const checks = asked.map((s) => s.image!.nearDupCheck);
  const contaminated = on.has('contaminated') && ctx.contamination ? ctx.contamination.findMany(hashes, weaks, checks) : undefined;
  const earlier = on.has('near_duplicate') && ctx.kept ? ctx.kept.findMany(hashes, weaks, checks) : undefined;
  let local: PhashIndex | undefined;
  let j = 0;
  for (const sample of pending) {
    if (sample.status !== 'ok') {
      yield sample;
      continue;
    }
    const img = sample.image;
    let answers: IndexAnswers | undefined;
    if (img) {
      answers = {
        contaminated: contaminated?.[j],
        nearDuplicate: earlier?.[j] ?? local?.find(img.phash, img.phashWeak, img.nearDupCheck),
      };
      j++;
    }
    const { failed, message } = failedRules(sample, ctx, answers);
    if (failed.length > 0) {
      sample.status = 'rejected';
      sample.reason = failed[0];
      sample.failedRules = failed;
      sample.errorMessage = message;
    } else if (img && ctx.kept) {
      ctx.kept.add(img.phash, img.nearDupCheck);
      if (earlier) {
        local ??= new PhashIndex(ctx.kept.maxDistance, ctx.kept.check);
        local.add(img.phash, img.nearDupCheck);
      }
    }
    funnel?.add(sample, failed);
    yield sample;
  }
}
