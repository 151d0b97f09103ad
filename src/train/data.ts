// Training batches from the shard stream: each image decoded with sharp to the model's resolution
// (shorter side resized, centre crop), AutoAugment applied online, normalised with CLIP's mean and std;
// one caption picked among the original and its back-translations; captions tokenized. Randomness is
// seeded by (seed, step, slot in the batch), so a batch is a pure function of the samples and the step:
// a resumed run sees exactly the batches an uninterrupted one would. The next batch is prepared while
// the current step runs (sharp decodes on libuv's threads).

import sharp from 'sharp';

import { FilipError } from '../core/errors.js';
import { intOption, invalid, rejectUnknownKeys } from '../core/options.js';
import { mulberry32 } from '../core/random.js';
import type { CaptionTranslation } from '../core/sample.js';
import type { RgbImage } from '../augment/ops.js';
import { CLIP_MEAN, CLIP_STD } from './model.js';
import type { TokenizedBatch } from './tokenizer.js';


/** What the batcher needs of a sample; the shard stream's TrainingSample fits. */
export interface TrainingPair {
  readonly key: string;
  readonly image: Buffer;
  readonly caption: string;
  readonly backTranslations?: readonly CaptionTranslation[];
}

/** A stream of pairs that can say where it stands (the shard stream does). */
export interface PairSource<P = unknown> extends AsyncIterable<TrainingPair> {
  position(): P;
}

/** One ready batch: NHWC float32 pixels and token ids, with where the stream stood after it. */
export interface Batch<P = unknown> {
  /** The update this batch is for (counted from 1). */
  readonly step: number;
  readonly size: number;
  /** size x imageSize x imageSize x 3, normalised. */
  readonly pixels: Float32Array;
  readonly imageSize: number;
  readonly tokens: TokenizedBatch;
  readonly keys: readonly string[];
  /** The caption chosen for each pair. */
  readonly captions: readonly string[];
  /** The stream's position after this batch's last pair: save it with the checkpoint of `step`. */
  readonly position: P;
}

export interface BatchOptions {
  /**
   * Pairs per batch.
   * @default 32
   */
  readonly batch: number;
  /**
   * Side of the square model input, in pixels.
   * @default 224
   */
  readonly imageSize: number;
  /**
   * Tokens per caption, [BOS] and [EOS] included.
   * @default 77
   */
  readonly contextLength: number;
  /**
   * Seeds augmentation and caption choice, mixed with the step and the slot in the batch.
   * @default 0
   */
  readonly seed: number;
  /**
   * Images decoded at once (sharp works on libuv's thread pool, 4 threads by default).
   * @default 4
   */
  readonly decodeConcurrency: number;
}

export const DEFAULT_BATCH_OPTIONS: BatchOptions = Object.freeze({
  batch: 32,
  imageSize: 224,
  contextLength: 77,
  seed: 0,
  decodeConcurrency: 4,
});

export function resolveBatchOptions(partial: Partial<BatchOptions> = {}): BatchOptions {
  if (partial === null || typeof partial !== 'object') throw invalid('batch options', 'an object', partial);
  rejectUnknownKeys('batch', partial, DEFAULT_BATCH_OPTIONS);
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const o: BatchOptions = { ...DEFAULT_BATCH_OPTIONS, ...given };
  return Object.freeze({
    batch: intOption('batch', o.batch, 1),
    imageSize: intOption('imageSize', o.imageSize, 1, 4096),
    contextLength: intOption('contextLength', o.contextLength, 3),
    seed: intOption('seed', o.seed, 0, 0xffffffff),
    decodeConcurrency: intOption('decodeConcurrency', o.decodeConcurrency, 1, 256),
  });
}

/** The functions a batch is made with: AutoAugment (or none) and the tokenizer. */
export interface BatchTransforms {
  readonly augment?: (img: RgbImage, rng: () => number) => RgbImage;
  readonly tokenize: (texts: readonly string[], contextLength: number) => TokenizedBatch;
}

/** murmur3's finaliser: spreads every input bit over the whole 32-bit word. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The seed of one sample's randomness: a hash of (run seed, step, slot in the batch). */
export function pairSeed(seed: number, step: number, slot: number): number {
  let h = fmix32((seed ^ 0x9e3779b9) >>> 0);
  h = fmix32((h ^ Math.imul(step, 0x27d4eb2d)) >>> 0);
  return fmix32((h ^ Math.imul(slot + 1, 0x165667b1)) >>> 0);
}

/** One of the original caption and its back-translations, uniformly (FILIP samples one of the three). */
export function chooseCaption(pair: Pick<TrainingPair, 'caption' | 'backTranslations'>, rng: () => number): string {
  const texts = [pair.caption, ...(pair.backTranslations ?? []).map((t) => t.text).filter((t) => t.trim().length > 0)];
  return texts[Math.min(texts.length - 1, Math.floor(rng() * texts.length))]!;
}

/**
 * Decodes an encoded image to `size` x `size` RGB: the shorter side resized to `size` (bicubic, as
 * CLIP's preprocessing) and the centre cropped. Alpha is flattened on white, grey expanded to RGB.
 */
export async function decodeToSquare(bytes: Buffer, size: number): Promise<RgbImage> {
  const { data, info } = await sharp(bytes, { failOn: 'none' })
    .rotate()
    .resize(size, size, { fit: 'cover', position: 'centre', kernel: 'cubic' })
    .flatten({ background: '#ffffff' })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== size || info.height !== size) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: size, height: size };
}

/** Writes `img` into `out` at `offset` as (x / 255 - mean) / std per channel, HWC order. */
export function normaliseInto(img: RgbImage, out: Float32Array, offset: number): void {
  const d = img.data;
  const scale = [1 / (255 * CLIP_STD[0]), 1 / (255 * CLIP_STD[1]), 1 / (255 * CLIP_STD[2])];
  const shift = [CLIP_MEAN[0] / CLIP_STD[0], CLIP_MEAN[1] / CLIP_STD[1], CLIP_MEAN[2] / CLIP_STD[2]];
  for (let i = 0; i < d.length; i += 3) {
    out[offset + i] = d[i]! * scale[0]! - shift[0]!;
    out[offset + i + 1] = d[i + 1]! * scale[1]! - shift[1]!;
    out[offset + i + 2] = d[i + 2]! * scale[2]! - shift[2]!;
  }
}

/** Builds one batch from its pairs: decode, augment, normalise, choose captions, tokenize. */
export async function makeBatch<P>(
  pairs: readonly TrainingPair[],
  step: number,
  position: P,
  o: BatchOptions,
  t: BatchTransforms,
): Promise<Batch<P>> {
  const size = o.imageSize;
  const pixels = new Float32Array(pairs.length * size * size * 3);
  const captions: string[] = new Array(pairs.length);
  let next = 0;
  const work = async () => {
    for (let i = next++; i < pairs.length; i = next++) {
      const pair = pairs[i]!;
      // One generator per pair, used in a fixed order (caption first, then augmentation), so the same
      // pair at the same step and slot always gets the same caption and the same view.
      const rng = mulberry32(pairSeed(o.seed, step, i));
      captions[i] = chooseCaption(pair, rng);
      let img = await decodeToSquare(pair.image, size);
      if (t.augment) img = t.augment(img, rng);
      normaliseInto(img, pixels, i * size * size * 3);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.decodeConcurrency, pairs.length) }, work));
  return {
    step,
    size: pairs.length,
    pixels,
    imageSize: size,
    tokens: t.tokenize(captions, o.contextLength),
    keys: pairs.map((p) => p.key),
    captions,
    position,
  };
}

/** Undecodable images in a row that stop a run (a looping source would otherwise skip for ever). */
export const MAX_UNDECODABLE_IN_A_ROW = 10_000;
const SKIPPED_EXAMPLES = 3;

/**
 * Batches of `o.batch` pairs for steps `firstStep`, `firstStep + 1`, ..., each started as soon as the
 * previous one is handed out, so it is built while that step trains. A pair that does not decode is
 * skipped and counted in `skipped`, the first few named in `skippedExamples` (the shard stage rejects
 * undecodable images, so this is rare). MAX_UNDECODABLE_IN_A_ROW failures in a row are
 * FILIP_ERR_SHARD: on a looping source whose images all fail, skipping would never end.
 * Ends when the source ends before a batch is full.
 */
export class BatchLoader<P = unknown> {
  skipped = 0;
  /** `key: why` of the first SKIPPED_EXAMPLES pairs skipped. */
  readonly skippedExamples: string[] = [];
  #failedInARow = 0;
  readonly #iterator: AsyncIterator<TrainingPair>;
  readonly #source: PairSource<P>;
  readonly #o: BatchOptions;
  readonly #t: BatchTransforms;
  #step: number;
  #pending: Promise<Batch<P> | null> | undefined;

  constructor(source: PairSource<P>, firstStep: number, o: BatchOptions, t: BatchTransforms) {
    this.#source = source;
    this.#iterator = source[Symbol.asyncIterator]();
    this.#o = o;
    this.#t = t;
    this.#step = firstStep;
  }

  /** The next batch (null when the source ran dry); starts building the one after it. */
  async next(): Promise<Batch<P> | null> {
    const current = this.#pending ?? this.#build(this.#step++);
    const batch = await current;
    this.#pending = batch ? this.#build(this.#step++) : undefined;
    // An error in the prefetched batch surfaces on the next call; keep it from being "unhandled" meanwhile.
    this.#pending?.catch(() => undefined);
    return batch;
  }

  /** Waits for a batch being prefetched and stops the source. */
  async close(): Promise<void> {
    await this.#pending?.catch(() => undefined);
    this.#pending = undefined;
    await this.#iterator.return?.();
  }

  async #build(step: number): Promise<Batch<P> | null> {
    const pairs: TrainingPair[] = [];
    while (pairs.length < this.#o.batch) {
      const r = await this.#iterator.next();
      if (r.done) return null;
      pairs.push(r.value);
    }
    // Read the position before awaiting anything else: it must describe exactly these pairs.
    const position = this.#source.position();
    try {
      return await makeBatch(pairs, step, position, this.#o, this.#t);
    } catch {
      // Decode failures are per pair: retry pair by pair, drop the bad ones, refill from the stream.
      return this.#buildSlow(step, pairs);
    }
  }

  async #buildSlow(step: number, pairs: TrainingPair[]): Promise<Batch<P> | null> {
    const good: TrainingPair[] = [];
    const queue = [...pairs];
    while (good.length < this.#o.batch) {
      let pair = queue.shift();
      if (!pair) {
        const r = await this.#iterator.next();
        if (r.done) return null;
        pair = r.value;
      }
      try {
        await decodeToSquare(pair.image, 8);
        good.push(pair);
        this.#failedInARow = 0;
      } catch (err) {
        this.skipped++;
        const why = `${pair.key}: ${(err as Error).message}`;
        if (this.skippedExamples.length < SKIPPED_EXAMPLES) this.skippedExamples.push(why);
        if (++this.#failedInARow >= MAX_UNDECODABLE_IN_A_ROW) {
          throw new FilipError('FILIP_ERR_SHARD', `${this.#failedInARow} images in a row do not decode, the last ${why}: the shards hold no usable image`, {
            field: 'image',
          });
        }
      }
    }
    return makeBatch(good, step, this.#source.position(), this.#o, this.#t);
  }
}
