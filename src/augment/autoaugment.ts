// AutoAugment as torchvision applies it: pick one sub-policy uniformly, apply each of its two ops
// with its probability, at its binned magnitude, negated with probability 1/2 for signed ops. Every
// random draw comes from the caller's generator, so the same seed gives the same view. One module,
// two users: `filip-data shard --augment-views K` (offline, through augmentImageBytes) and the
// trainer (online, autoAugment on pixels it already decoded).

import sharp from 'sharp';
import {
  autoContrast,
  brightness,
  color,
  contrast,
  equalize,
  identity,
  invert,
  posterize,
  rotate,
  sharpness,
  shearX,
  shearY,
  solarize,
  translateX,
  translateY,
  type RgbImage,
} from './ops.js';
import { magnitudeOf, POLICY_TABLES, SIGNED_OPS, type AugmentOp, type AugmentPolicy } from './policies.js';
import { mulberry32 } from '../core/random.js';

/**
 * torchvision `_apply_op`: the op at a signed magnitude. Colour ops take factor 1 + magnitude,
 * Posterize an integer bit count, Translate a pixel count truncated toward zero.
 */
export function applyOp(img: RgbImage, op: AugmentOp, magnitude: number): RgbImage {
  switch (op) {
    case 'ShearX':
      return shearX(img, magnitude);
    case 'ShearY':
      return shearY(img, magnitude);
    case 'TranslateX':
      return translateX(img, Math.trunc(magnitude));
    case 'TranslateY':
      return translateY(img, Math.trunc(magnitude));
    case 'Rotate':
      return rotate(img, magnitude);
    case 'Brightness':
      return brightness(img, 1 + magnitude);
    case 'Color':
      return color(img, 1 + magnitude);
    case 'Contrast':
      return contrast(img, 1 + magnitude);
    case 'Sharpness':
      return sharpness(img, 1 + magnitude);
    case 'Posterize':
      return posterize(img, Math.trunc(magnitude));
    case 'Solarize':
      return solarize(img, magnitude);
    case 'AutoContrast':
      return autoContrast(img);
    case 'Equalize':
      return equalize(img);
    case 'Invert':
      return invert(img);
    case 'Identity':
      return identity(img);
  }
}

/** One op a draw decided to apply, with its final (signed) magnitude. */
export interface PlannedOp {
  readonly op: AugmentOp;
  readonly magnitude: number;
}

/** What one AutoAugment draw decided: the sub-policy index and the ops that passed their coin. */
export interface AugmentPlan {
  readonly subPolicy: number;
  readonly ops: readonly PlannedOp[];
}

/**
 * Makes the random decisions of one AutoAugment call, in torchvision's order (`get_params`): the
 * sub-policy index, then two uniform numbers for the probabilities, then two sign coins. Exactly
 * five draws, whatever is applied, so the stream position never depends on the image. An op runs
 * when its draw is <= its probability; a signed op's magnitude is negated when its coin is < 1/2
 * (torchvision's `signs[i] == 0`).
 */
export function planAutoAugment(rng: () => number, policy: AugmentPolicy, width: number, height: number): AugmentPlan {
  const table = POLICY_TABLES[policy];
  const subPolicy = Math.min(table.length - 1, Math.floor(rng() * table.length));
  const probs = [rng(), rng()];
  const negate = [rng() < 0.5, rng() < 0.5];
  const ops: PlannedOp[] = [];
  table[subPolicy]!.forEach(([op, probability, bin], i) => {
    if (probs[i]! > probability) return;
    let magnitude = magnitudeOf(op, bin, width, height);
    if (SIGNED_OPS.has(op) && negate[i]) magnitude = -magnitude;
    ops.push({ op, magnitude });
  });
  return { subPolicy, ops };
}

/** Applies a plan's ops in order. */
export function applyPlan(img: RgbImage, plan: AugmentPlan): RgbImage {
  let out = img;
  for (const { op, magnitude } of plan.ops) out = applyOp(out, op, magnitude);
  return out === img ? identity(img) : out;
}

/**
 * One AutoAugment view of `img` (never modified; a new image is returned), drawing only from `rng`
 * (use mulberry32(viewSeed(seed, key, view)) for reproducible views).
 */
export function autoAugment(img: RgbImage, rng: () => number, policy: AugmentPolicy = 'imagenet'): RgbImage {
  return applyPlan(img, planAutoAugment(rng, policy, img.width, img.height));
}

// ---------------------------------------------------------------------------------------------
// Seeds

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnvByte(hash: number, byte: number): number {
  return Math.imul(hash ^ byte, FNV_PRIME) >>> 0;
}

function fnvUint32(hash: number, value: number): number {
  let h = hash;
  for (let shift = 0; shift < 32; shift += 8) h = fnvByte(h, (value >>> shift) & 0xff);
  return h;
}

/**
 * A 32-bit seed for one view of one sample: FNV-1a over the key's UTF-8 bytes, the run seed and
 * the view index, then a murmur3 finaliser so that neighbouring views give unrelated streams.
 * Pure: the same (seed, key, view) always gives the same number, on every platform.
 */
export function viewSeed(seed: number, key: string, view: number): number {
  let h = FNV_OFFSET;
  for (const byte of Buffer.from(key, 'utf8')) h = fnvByte(h, byte);
  h = fnvUint32(h, seed >>> 0);
  h = fnvUint32(h, Math.floor(seed / 2 ** 32) >>> 0);
  h = fnvUint32(h, view >>> 0);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The generator for one view: mulberry32 seeded by viewSeed. */
export function viewRng(seed: number, key: string, view: number): () => number {
  return mulberry32(viewSeed(seed, key, view));
}

// ---------------------------------------------------------------------------------------------
// Bytes <-> pixels (sharp); used by the shard stage and by the trainer

/** Encodings a view can be written in. */
export const VIEW_FORMATS = ['jpeg', 'webp', 'png'] as const;
export type ViewFormat = (typeof VIEW_FORMATS)[number];

const WHITE = { r: 255, g: 255, b: 255 };

/**
 * Decodes any image sharp reads to 8-bit RGB pixels: EXIF orientation applied, alpha flattened onto
 * white, grey/CMYK/16-bit converted. With `size`, the picture is scaled so its shorter side is
 * `size` and the centre `size` x `size` square is kept (the model's input). Rejects (throws sharp's
 * error) for bytes that are not a decodable image.
 */
export async function decodeRgb(bytes: Buffer, size?: number): Promise<RgbImage> {
  const pipeline = sharp(bytes, { failOn: 'truncated' })
    .autoOrient()
    .flatten({ background: WHITE })
    .toColourspace('srgb')
    .removeAlpha();
  if (size !== undefined) pipeline.resize({ width: size, height: size, fit: 'cover', position: 'centre' });
  const { data, info } = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`the image decoded to ${info.channels} channels instead of 3`);
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
}

/** Encodes RGB pixels; `quality` (1-100) applies to jpeg and webp. */
export async function encodeRgb(img: RgbImage, format: ViewFormat, quality = 95): Promise<Buffer> {
  const encoder = sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength), {
    raw: { width: img.width, height: img.height, channels: 3 },
  });
  if (format === 'jpeg') encoder.jpeg({ quality });
  else if (format === 'webp') encoder.webp({ quality });
  else encoder.png();
  return encoder.toBuffer();
}

export interface AugmentBytesOptions {
  /** Run seed. */
  readonly seed: number;
  /** Sample key (Sample.key): the same key and view give the same output. */
  readonly key: string;
  /** View index, 0 for the first view. */
  readonly view: number;
  /** @default 'imagenet' */
  readonly policy?: AugmentPolicy;
  /** @default 'jpeg' */
  readonly format?: ViewFormat;
  /** Encoder quality for jpeg and webp. @default 95 */
  readonly quality?: number;
}

/** Decodes, makes view `view` of sample `key` with AutoAugment, and encodes it again. */
export async function augmentImageBytes(bytes: Buffer, opts: AugmentBytesOptions): Promise<Buffer> {
  const img = await decodeRgb(bytes);
  const view = autoAugment(img, viewRng(opts.seed, opts.key, opts.view), opts.policy ?? 'imagenet');
  return encodeRgb(view, opts.format ?? 'jpeg', opts.quality ?? 95);
}
