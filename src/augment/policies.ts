// AutoAugment's learned policies (Cubuk et al. 2019) as torchvision tabulates them, and its
// magnitude bins (`_augmentation_space` with num_bins = 10). Data only, plus the lookup from an
// (op, bin) pair to the magnitude torchvision would pass to `_apply_op`.

/** Policies learned on three datasets. Value = one-line description (docs, --help). */
export const AUGMENT_POLICY_DESCRIPTIONS = {
  imagenet: 'the ImageNet policy (25 sub-policies; FILIP uses this one)',
  cifar10: 'the CIFAR-10 policy (25 sub-policies)',
  svhn: 'the SVHN policy (25 sub-policies, mostly shears and inversions)',
} as const;
export const AUGMENT_POLICIES = ['imagenet', 'cifar10', 'svhn'] as const;
export type AugmentPolicy = (typeof AUGMENT_POLICIES)[number];

/** The operations a policy can name; `Identity` is RandAugment's, kept for completeness. */
export const AUGMENT_OPS = [
  'ShearX',
  'ShearY',
  'TranslateX',
  'TranslateY',
  'Rotate',
  'AutoContrast',
  'Invert',
  'Equalize',
  'Solarize',
  'Posterize',
  'Contrast',
  'Color',
  'Brightness',
  'Sharpness',
  'Identity',
] as const;
export type AugmentOp = (typeof AUGMENT_OPS)[number];

/** One step of a sub-policy: the op, the probability it is applied, its magnitude bin (0-9) or null. */
export type PolicyStep = readonly [op: AugmentOp, probability: number, bin: number | null];
export type SubPolicy = readonly [PolicyStep, PolicyStep];

// Transcribed from torchvision.transforms.AutoAugment._get_policies, in its order.
const IMAGENET: readonly SubPolicy[] = [
  [['Posterize', 0.4, 8], ['Rotate', 0.6, 9]],
  [['Solarize', 0.6, 5], ['AutoContrast', 0.6, null]],
  [['Equalize', 0.8, null], ['Equalize', 0.6, null]],
  [['Posterize', 0.6, 7], ['Posterize', 0.6, 6]],
  [['Equalize', 0.4, null], ['Solarize', 0.2, 4]],
  [['Equalize', 0.4, null], ['Rotate', 0.8, 8]],
  [['Solarize', 0.6, 3], ['Equalize', 0.6, null]],
  [['Posterize', 0.8, 5], ['Equalize', 1.0, null]],
  [['Rotate', 0.2, 3], ['Solarize', 0.6, 8]],
  [['Equalize', 0.6, null], ['Posterize', 0.4, 6]],
  [['Rotate', 0.8, 8], ['Color', 0.4, 0]],
  [['Rotate', 0.4, 9], ['Equalize', 0.6, null]],
  [['Equalize', 0.0, null], ['Equalize', 0.8, null]],
  [['Invert', 0.6, null], ['Equalize', 1.0, null]],
  [['Color', 0.6, 4], ['Contrast', 1.0, 8]],
  [['Rotate', 0.8, 8], ['Color', 1.0, 2]],
  [['Color', 0.8, 8], ['Solarize', 0.8, 7]],
  [['Sharpness', 0.4, 7], ['Invert', 0.6, null]],
  [['ShearX', 0.6, 5], ['Equalize', 1.0, null]],
  [['Color', 0.4, 0], ['Equalize', 0.6, null]],
  [['Equalize', 0.4, null], ['Solarize', 0.2, 4]],
  [['Solarize', 0.6, 5], ['AutoContrast', 0.6, null]],
  [['Invert', 0.6, null], ['Equalize', 1.0, null]],
  [['Color', 0.6, 4], ['Contrast', 1.0, 8]],
  [['Equalize', 0.8, null], ['Equalize', 0.6, null]],
];

const CIFAR10: readonly SubPolicy[] = [
  [['Invert', 0.1, null], ['Contrast', 0.2, 6]],
  [['Rotate', 0.7, 2], ['TranslateX', 0.3, 9]],
  [['Sharpness', 0.8, 1], ['Sharpness', 0.9, 3]],
  [['ShearY', 0.5, 8], ['TranslateY', 0.7, 9]],
  [['AutoContrast', 0.5, null], ['Equalize', 0.9, null]],
  [['ShearY', 0.2, 7], ['Posterize', 0.3, 7]],
  [['Color', 0.4, 3], ['Brightness', 0.6, 7]],
  [['Sharpness', 0.3, 9], ['Brightness', 0.7, 9]],
  [['Equalize', 0.6, null], ['Equalize', 0.5, null]],
  [['Contrast', 0.6, 7], ['Sharpness', 0.6, 5]],
  [['Color', 0.7, 7], ['TranslateX', 0.5, 8]],
  [['Equalize', 0.3, null], ['AutoContrast', 0.4, null]],
  [['TranslateY', 0.4, 3], ['Sharpness', 0.2, 6]],
  [['Brightness', 0.9, 6], ['Color', 0.2, 8]],
  [['Solarize', 0.5, 2], ['Invert', 0.0, null]],
  [['Equalize', 0.2, null], ['AutoContrast', 0.6, null]],
  [['Equalize', 0.2, null], ['Equalize', 0.6, null]],
  [['Color', 0.9, 9], ['Equalize', 0.6, null]],
  [['AutoContrast', 0.8, null], ['Solarize', 0.2, 8]],
  [['Brightness', 0.1, 3], ['Color', 0.7, 0]],
  [['Solarize', 0.4, 5], ['AutoContrast', 0.9, null]],
  [['TranslateY', 0.9, 9], ['TranslateY', 0.7, 9]],
  [['AutoContrast', 0.9, null], ['Solarize', 0.8, 3]],
  [['Equalize', 0.8, null], ['Invert', 0.1, null]],
  [['TranslateY', 0.7, 9], ['AutoContrast', 0.9, null]],
];

const SVHN: readonly SubPolicy[] = [
  [['ShearX', 0.9, 4], ['Invert', 0.2, null]],
  [['ShearY', 0.9, 8], ['Invert', 0.7, null]],
  [['Equalize', 0.6, null], ['Solarize', 0.6, 6]],
  [['Invert', 0.9, null], ['Equalize', 0.6, null]],
  [['Equalize', 0.6, null], ['Rotate', 0.9, 3]],
  [['ShearX', 0.9, 4], ['AutoContrast', 0.8, null]],
  [['ShearY', 0.9, 8], ['Invert', 0.4, null]],
  [['ShearY', 0.9, 5], ['Solarize', 0.2, 6]],
  [['Invert', 0.9, null], ['AutoContrast', 0.8, null]],
  [['Equalize', 0.6, null], ['Rotate', 0.9, 3]],
  [['ShearX', 0.9, 4], ['Solarize', 0.3, 3]],
  [['ShearY', 0.8, 8], ['Invert', 0.7, null]],
  [['Equalize', 0.9, null], ['TranslateY', 0.6, 6]],
  [['Invert', 0.9, null], ['Equalize', 0.6, null]],
  [['Contrast', 0.3, 3], ['Rotate', 0.8, 4]],
  [['Invert', 0.8, null], ['TranslateY', 0.0, 2]],
  [['ShearY', 0.7, 6], ['Solarize', 0.4, 8]],
  [['Invert', 0.6, null], ['Rotate', 0.8, 4]],
  [['ShearY', 0.3, 7], ['TranslateX', 0.9, 3]],
  [['ShearX', 0.1, 6], ['Invert', 0.6, null]],
  [['Solarize', 0.7, 2], ['TranslateY', 0.6, 7]],
  [['ShearY', 0.8, 4], ['Invert', 0.8, null]],
  [['ShearX', 0.7, 9], ['TranslateY', 0.8, 3]],
  [['ShearY', 0.8, 5], ['AutoContrast', 0.7, null]],
  [['ShearX', 0.7, 2], ['Invert', 0.1, null]],
];

export const POLICY_TABLES: Readonly<Record<AugmentPolicy, readonly SubPolicy[]>> = Object.freeze({
  imagenet: IMAGENET,
  cifar10: CIFAR10,
  svhn: SVHN,
});

/** Number of magnitude bins AutoAugment uses. */
export const NUM_BINS = 10;

const f32 = Math.fround;

/**
 * torch.linspace in float32 on the CPU: step = (end - start) / (steps - 1) in float32; the first
 * half counts up from start, the second half down from end, every product and sum in float32.
 * The bins matter to the bit: Solarize compares pixels against them and Translate truncates them.
 */
export function linspaceF32(start: number, end: number, steps: number): number[] {
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) return [s];
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    out.push(i < half ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1))));
  }
  return out;
}

/** Posterize bins: 8 - round(arange(10) / ((10 - 1) / 4)), i.e. 8, 8, 7, 7, 6, 6, 5, 5, 4, 4. */
function posterizeBins(): number[] {
  const out: number[] = [];
  const divisor = f32((NUM_BINS - 1) / 4);
  for (let i = 0; i < NUM_BINS; i++) out.push(8 - Math.round(f32(i / divisor)));
  return out;
}

/** Which ops have magnitudes that AutoAugment negates with probability 1/2. */
export const SIGNED_OPS: ReadonlySet<AugmentOp> = new Set<AugmentOp>([
  'ShearX',
  'ShearY',
  'TranslateX',
  'TranslateY',
  'Rotate',
  'Brightness',
  'Color',
  'Contrast',
  'Sharpness',
]);

/**
 * torchvision `_augmentation_space(10, (height, width))`: the magnitudes of every binned op for an
 * image of this size. Ops without magnitude (AutoContrast, Equalize, Invert, Identity) are absent.
 */
export function augmentationSpace(width: number, height: number): Readonly<Partial<Record<AugmentOp, readonly number[]>>> {
  return {
    ShearX: linspaceF32(0, 0.3, NUM_BINS),
    ShearY: linspaceF32(0, 0.3, NUM_BINS),
    TranslateX: linspaceF32(0, (150 / 331) * width, NUM_BINS),
    TranslateY: linspaceF32(0, (150 / 331) * height, NUM_BINS),
    Rotate: linspaceF32(0, 30, NUM_BINS),
    Brightness: linspaceF32(0, 0.9, NUM_BINS),
    Color: linspaceF32(0, 0.9, NUM_BINS),
    Contrast: linspaceF32(0, 0.9, NUM_BINS),
    Sharpness: linspaceF32(0, 0.9, NUM_BINS),
    Posterize: posterizeBins(),
    Solarize: linspaceF32(255, 0, NUM_BINS),
  };
}

/** The unsigned magnitude of `op` at `bin` for an image of this size (0 for ops without bins). */
export function magnitudeOf(op: AugmentOp, bin: number | null, width: number, height: number): number {
  if (bin === null) return 0;
  const bins = augmentationSpace(width, height)[op];
  if (bins === undefined) return 0;
  const value = bins[bin];
  if (value === undefined) throw new RangeError(`magnitude bin must be 0 to ${NUM_BINS - 1}, got ${bin}`);
  return value;
}
