// The shard stage's AutoAugment step (`filip-data shard --augment-views K`): for every ok sample
// with an image, K AutoAugment views encoded like the stored image, view v drawn from
// mulberry32(viewSeed(seed, key, v)). Samples keep their order; a picture that cannot be decoded or
// encoded rejects its sample with `augment_failed`; everything else passes through untouched.

import { choiceOption, intOption, invalid, rejectUnknownKeys } from '../core/options.js';
import { reject, type Sample } from '../core/sample.js';
import { orderedMap } from '../pipeline/pool.js';
import { autoAugment, decodeRgb, encodeRgb, viewRng, VIEW_FORMATS, type ViewFormat } from './autoaugment.js';
import { AUGMENT_POLICIES, type AugmentPolicy } from './policies.js';

export interface AugmentOptions {
  /**
   * Views stored per sample (1 to 64).
   * @default 2
   */
  readonly views: number;
  /**
   * Run seed (0 to 2^32 - 1); with the sample key and view index it fixes every view.
   * @default 0
   */
  readonly seed: number;
  /**
   * Which learned policy; see AUGMENT_POLICIES.
   * @default 'imagenet'
   */
  readonly policy: AugmentPolicy;
  /**
   * Samples augmented at once (decode and encode run on sharp's threads, the ops on this one).
   * @default 4
   */
  readonly concurrency: number;
  /**
   * Encoder quality (1 to 100) for jpeg and webp views; png ignores it.
   * @default 95
   */
  readonly quality: number;
}

export const DEFAULT_AUGMENT_OPTIONS: AugmentOptions = Object.freeze({
  views: 2,
  seed: 0,
  policy: 'imagenet',
  concurrency: 4,
  quality: 95,
});

/**
 * Applies defaults and validates. Keys set to `undefined` count as not given; unknown keys and wrong
 * values throw FilipError `FILIP_ERR_INVALID_OPTION` naming the option.
 */
export function resolveAugmentOptions(given: Partial<AugmentOptions> = {}): AugmentOptions {
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw invalid('augment options', 'an object', given);
  }
  rejectUnknownKeys('augment', given, DEFAULT_AUGMENT_OPTIONS);
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  const o: Record<keyof AugmentOptions, unknown> = { ...DEFAULT_AUGMENT_OPTIONS, ...defined };
  return Object.freeze({
    views: intOption('views', o.views, 1, 64),
    seed: intOption('seed', o.seed, 0, 0xffffffff),
    policy: choiceOption('policy', o.policy, AUGMENT_POLICIES),
    concurrency: intOption('concurrency', o.concurrency, 1, 1024),
    quality: intOption('quality', o.quality, 1, 100),
  });
}

/** Views are written in the stored image's format; a format sharp should not re-encode to becomes jpeg. */
function viewFormatOf(format: string): ViewFormat {
  return (VIEW_FORMATS as readonly string[]).includes(format) ? (format as ViewFormat) : 'jpeg';
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).trim();
}

/** Decodes once, then makes and encodes the K views of one sample. */
async function augmentSample(sample: Sample, o: AugmentOptions): Promise<Sample> {
  const image = sample.image;
  if (sample.status !== 'ok' || image === undefined) return sample;
  const format = viewFormatOf(image.format);
  try {
    const pixels = await decodeRgb(image.bytes);
    const views: Buffer[] = [];
    for (let v = 0; v < o.views; v++) {
      const view = autoAugment(pixels, viewRng(o.seed, sample.key, v), o.policy);
      views.push(await encodeRgb(view, format, o.quality));
    }
    sample.views = views;
    return sample;
  } catch (error) {
    return reject(sample, 'augment_failed', `AutoAugment failed: ${errorText(error)}`);
  }
}

/**
 * The stage: `AsyncIterable<Sample>` in, the same samples out in the same order, ok samples with
 * `views` set. `options` must come from resolveAugmentOptions. At most `concurrency` samples are
 * in work and at most max(8 x concurrency, 64) finished ones wait behind a slow one.
 */
export function augmentStage(options: AugmentOptions): (src: AsyncIterable<Sample>) => AsyncIterable<Sample> {
  const o = options;
  return (src) =>
    orderedMap(src, (sample) => augmentSample(sample, o), {
      concurrency: o.concurrency,
      window: Math.max(8 * o.concurrency, 64),
    });
}
