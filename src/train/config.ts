// The train options: one commented defaults object, validated in one factory, saved with every
// checkpoint next to the model config. On `--resume`, what shapes the model, the data order or the
// schedule comes from the checkpoint; a flag that contradicts it is FILIP_ERR_CHECKPOINT naming the
// field, while run-time settings (backend, where to save, how often to log) may change.

import { FilipError } from '../core/errors.js';
import { resolve } from 'node:path';
import { boolOption, choiceOption, intOption, invalid, numberOption, rejectUnknownKeys, stringOption } from '../core/options.js';
import { AUGMENT_POLICIES } from '../augment/policies.js';
import { PROGRESS_MODES, type ProgressMode } from '../pipeline/progress.js';
import { BACKEND_CHOICES, type BackendChoice } from './backend.js';
import { MODEL_PRESETS, type ModelPreset } from './model.js';
import { OPTIMIZER_NAMES, type OptimizerName } from './optim.js';
import { peakLearningRate } from './schedule.js';

export const LOSSES = {
  filip: "FILIP's token-wise late interaction (mean over tokens of the best match), top-k% tokens",
  clip: "CLIP's global loss on the mean-pooled embeddings (for comparison)",
} as const;
export type LossName = keyof typeof LOSSES;
export const LOSS_NAMES = Object.keys(LOSSES) as LossName[];

/** AutoAugment policy applied online to every training image, or none. */
export const AUGMENT_CHOICES = [...AUGMENT_POLICIES, 'none'] as const;
export type AugmentChoice = (typeof AUGMENT_CHOICES)[number];

export interface TrainOptions {
  /** Folder of training shards (`filip-data shard` output, or ingest/filter output). Required. */
  readonly shards: string;
  /** Run folder: checkpoints, `train_log.jsonl`, the trained tokenizer. Required. */
  readonly out: string;
  /**
   * Model size (`MODEL_PRESETS`). On resume it comes from the checkpoint.
   * @default 'tiny'
   */
  readonly preset: ModelPreset;
  /**
   * Pairs per step.
   * @default 32
   */
  readonly batch: number;
  /**
   * Updates in the run; the cosine schedule ends here.
   * @default 1000
   */
  readonly steps: number;
  /**
   * Base learning rate; the peak is `lr * sqrt(batch / 512)`. Given none, `DEFAULT_LR[optimizer]`.
   * @default 1e-2 for lamb, 4e-3 for adamw
   */
  readonly lr: number;
  /**
   * Learning rate at the end of the cosine.
   * @default 0
   */
  readonly minLr: number;
  /**
   * Updates of linear warm-up.
   * @default 100
   */
  readonly warmup: number;
  /**
   * Update rule (`OPTIMIZERS`).
   * @default 'lamb'
   */
  readonly optimizer: OptimizerName;
  /**
   * Decoupled weight decay (not on biases, norms, embeddings, the temperature).
   * @default 0.2
   */
  readonly weightDecay: number;
  /**
   * Contrastive loss (`LOSSES`).
   * @default 'filip'
   */
  readonly loss: LossName;
  /**
   * Share of tokens kept by FILIP's token selection (by their best similarity over the batch); 1 keeps all.
   * @default 0.25
   */
  readonly topk: number;
  /**
   * Largest global gradient norm; 0 does not clip.
   * @default 0
   */
  readonly clipGrad: number;
  /**
   * Compute backend (`BACKEND_CHOICES`); `auto` picks tensorflow, then wasm, then cpu.
   * @default 'auto'
   */
  readonly backend: BackendChoice;
  /**
   * A merges file (CLIP's `bpe_simple_vocab_16e6.txt.gz` or one from `filip tokenizer train`); null
   * learns one from the shards' captions into the run folder.
   * @default null
   */
  readonly tokenizer: string | null;
  /**
   * Vocabulary size when the tokenizer is learned here (capped by what the captions support).
   * @default 49408
   */
  readonly vocabSize: number;
  /**
   * Save a checkpoint every this many updates (and at the end, and on SIGINT); 0 only at those.
   * @default 500
   */
  readonly saveEvery: number;
  /**
   * Newest checkpoints kept in the run folder; 0 keeps all.
   * @default 2
   */
  readonly keepCheckpoints: number;
  /**
   * A run folder or checkpoint folder to continue from; null starts afresh.
   * @default null
   */
  readonly resume: string | null;
  /**
   * A run folder or checkpoint folder whose weights this run starts from (fine-tuning, or a curriculum
   * of stages: open_clip's `--pretrained`), with a new schedule, a fresh optimiser and this run's data.
   * The model's shape and its tokenizer come from that checkpoint. Not together with `resume`. null
   * starts from seeded random weights.
   * @default null
   */
  readonly init: string | null;
  /**
   * Seeds the weights, the data order, augmentation and caption choice.
   * @default 0
   */
  readonly seed: number;
  /**
   * Write a log line (and a `train_log.jsonl` record) every this many updates.
   * @default 10
   */
  readonly logEvery: number;
  /**
   * AutoAugment policy applied online, or 'none'.
   * @default 'imagenet'
   */
  readonly augment: AugmentChoice;
  /**
   * Rows held by the stream's shuffle buffer (shards are shuffled each epoch too).
   * @default 1000
   */
  readonly shuffleBuffer: number;
  /**
   * Progress display (`PROGRESS_MODES`).
   * @default 'auto'
   */
  readonly progress: ProgressMode;
  /**
   * Model config fields that override the preset (library use and tests; not a CLI flag).
   * @default {}
   */
  readonly modelOverrides: Readonly<Record<string, number>>;
  /**
   * A new run (no `resume`) into an `out` that holds a training run replaces it (its checkpoints,
   * log, config); without this it is refused, so a repeated command never wipes a run.
   * @default false
   */
  readonly overwrite: boolean;
  /**
   * Train on what an unfinished filip-data run (no `_summary.json`: killed, or still going) has committed
   * so far; without it such a folder is refused, so that a run never trains on part of its data unawares.
   * @default false
   */
  readonly partialInput: boolean;
}

export type TrainInput = Partial<TrainOptions> & Pick<TrainOptions, 'shards' | 'out'>;

/**
 * Base learning rate of each optimiser when none is given. LAMB's rate is not a step size in weight
 * units: its trust ratio scales each decayed variable's update to `lr x ||w||`, so the rate is the
 * share of a weight matrix's norm it moves per update. At CLIP's Adam rate of 5e-4 (peak 1.25e-4 at
 * batch 32) every matrix moved 0.0125% of its norm per update and the tiny model sat at ln(batch) for
 * 150+ updates; gradients were not the problem (their RMS was ~1e-3, ten times LAMB's eps). At 1e-2
 * (peak 2.5e-3) it leaves ln(32) after about 60 updates on the demo's shards without augmentation; at
 * 2e-2 it collapsed (all embeddings alike, gradient norm 0.05): the variables LAMB exempts from the trust
 * ratio (biases, norms, embeddings) take plain Adam steps of the full rate. AdamW's is the rate the
 * learning check trains with.
 */
export const DEFAULT_LR: Readonly<Record<OptimizerName, number>> = Object.freeze({ lamb: 1e-2, adamw: 4e-3 });

export const DEFAULT_TRAIN_OPTIONS: Omit<TrainOptions, 'shards' | 'out'> = Object.freeze({
  preset: 'tiny' as ModelPreset,
  batch: 32,
  steps: 1000,
  // The default optimizer's; resolveTrainOptions picks DEFAULT_LR.adamw for AdamW when no lr is given.
  lr: DEFAULT_LR.lamb,
  minLr: 0,
  warmup: 100,
  optimizer: 'lamb' as OptimizerName,
  weightDecay: 0.2,
  loss: 'filip' as LossName,
  topk: 0.25,
  clipGrad: 0,
  backend: 'auto' as BackendChoice,
  tokenizer: null,
  vocabSize: 49408,
  saveEvery: 500,
  keepCheckpoints: 2,
  resume: null,
  init: null,
  seed: 0,
  logEvery: 10,
  augment: 'imagenet' as AugmentChoice,
  shuffleBuffer: 1000,
  progress: 'auto' as ProgressMode,
  modelOverrides: Object.freeze({}),
  overwrite: false,
  partialInput: false,
});

const KNOWN = { shards: '', out: '', ...DEFAULT_TRAIN_OPTIONS };

/**
 * Options that fix the model, the data order or the schedule: on resume they come from the checkpoint,
 * and a given value that differs is an error. The rest may change between sessions.
 */
export const RESUME_FIXED: readonly (keyof TrainOptions)[] = [
  'preset',
  'modelOverrides',
  'batch',
  'steps',
  'lr',
  'minLr',
  'warmup',
  'optimizer',
  'weightDecay',
  'loss',
  'topk',
  'clipGrad',
  'seed',
  'augment',
  'shuffleBuffer',
  'tokenizer',
  'vocabSize',
];

function dropUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Applies the defaults and validates every field; throws FILIP_ERR_INVALID_OPTION naming it. */
/** Largest `batch` (pairs a step) the trainer accepts. */
export const MAX_TRAIN_BATCH = 65_536;
/** Largest base learning rate the trainer accepts. */
export const MAX_TRAIN_LR = 1;

export function resolveTrainOptions(input: TrainInput): TrainOptions {
  if (input === null || typeof input !== 'object') throw invalid('train options', 'an object', input);
  rejectUnknownKeys('train', input, KNOWN);
  const given = dropUndefined(input);
  const merged = { ...DEFAULT_TRAIN_OPTIONS, ...given } as TrainOptions;
  // No rate given: the one that suits the optimiser chosen (LAMB's and AdamW's differ 5x).
  const o: TrainOptions =
    given.lr === undefined && Object.hasOwn(DEFAULT_LR, merged.optimizer) ? { ...merged, lr: DEFAULT_LR[merged.optimizer] } : merged;
  const nullableString = (name: string, v: unknown) => (v === null ? null : stringOption(name, v));
  const overrides = o.modelOverrides;
  if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides)) {
    throw invalid('modelOverrides', 'an object of numbers', overrides);
  }
  for (const [k, v] of Object.entries(overrides)) numberOption(`modelOverrides.${k}`, v, 0);
  const resolved: TrainOptions = {
    // Absolute, so that config.json lets --resume find the shards from any working directory.
    shards: resolve(stringOption('shards', o.shards)),
    out: stringOption('out', o.out),
    preset: choiceOption('preset', o.preset, MODEL_PRESETS),
    // The batch is the contrastive problem's set of classes: one pair alone has nothing to contrast.
    // Its B x B similarity matrices and B images must fit one process (CLIP's largest was 32,768).
    batch: intOption('batch', o.batch, 2, MAX_TRAIN_BATCH),
    steps: intOption('steps', o.steps, 1),
    // A base rate above 1 only ever diverges, with any of the optimizers.
    lr: numberOption('lr', o.lr, 0, MAX_TRAIN_LR),
    minLr: numberOption('minLr', o.minLr, 0),
    warmup: intOption('warmup', o.warmup, 0),
    optimizer: choiceOption('optimizer', o.optimizer, OPTIMIZER_NAMES),
    weightDecay: numberOption('weightDecay', o.weightDecay, 0),
    loss: choiceOption('loss', o.loss, LOSS_NAMES),
    topk: numberOption('topk', o.topk, 0, 1),
    clipGrad: numberOption('clipGrad', o.clipGrad, 0),
    backend: choiceOption('backend', o.backend, BACKEND_CHOICES),
    tokenizer: nullableString('tokenizer', o.tokenizer),
    // 512 byte symbols and 2 specials: the smallest byte-level BPE vocabulary.
    vocabSize: intOption('vocabSize', o.vocabSize, 514),
    saveEvery: intOption('saveEvery', o.saveEvery, 0),
    keepCheckpoints: intOption('keepCheckpoints', o.keepCheckpoints, 0),
    resume: nullableString('resume', o.resume),
    init: nullableString('init', o.init),
    seed: intOption('seed', o.seed, 0, 0xffffffff),
    logEvery: intOption('logEvery', o.logEvery, 1),
    augment: choiceOption('augment', o.augment, AUGMENT_CHOICES),
    shuffleBuffer: intOption('shuffleBuffer', o.shuffleBuffer, 0),
    progress: choiceOption('progress', o.progress, Object.keys(PROGRESS_MODES) as ProgressMode[]),
    modelOverrides: Object.freeze({ ...overrides }),
    overwrite: boolOption('overwrite', o.overwrite),
    partialInput: boolOption('partialInput', o.partialInput),
  };
  if (resolved.init !== null && resolved.resume !== null) throw invalid('init', 'left out with --resume (a resumed run has its weights)', resolved.init);
  if (resolved.init !== null && resolved.tokenizer !== null) throw invalid('tokenizer', 'left out with --init (the tokenizer comes with the weights)', resolved.tokenizer);
  if (resolved.topk === 0) throw invalid('topk', 'a number above 0 and at most 1', resolved.topk);
  const peak = peakLearningRate(resolved.lr, resolved.batch);
  if (resolved.minLr > peak) throw invalid('minLr', `at most the peak rate lr * sqrt(batch / 512) = ${peak}`, resolved.minLr);
  return Object.freeze(resolved);
}

/**
 * The options of a resumed run: the checkpoint's, with the run-time settings the user gave on top.
 * `given` holds only what the user set explicitly (no defaults applied); a fixed option given with a
 * different value than the checkpoint's is FILIP_ERR_CHECKPOINT naming it.
 */
export function resumeTrainOptions(saved: TrainOptions, given: Partial<TrainOptions>, checkpoint: string): TrainOptions {
  const explicit = dropUndefined(given);
  for (const key of RESUME_FIXED) {
    if (!(key in explicit)) continue;
    const mine = JSON.stringify(explicit[key]);
    const theirs = JSON.stringify(saved[key]);
    if (mine !== theirs) {
      throw new FilipError(
        'FILIP_ERR_CHECKPOINT',
        `the checkpoint was trained with ${key} ${theirs}, this run asks for ${mine}; leave it out to continue, or start a new run`,
        { file: checkpoint, field: key },
      );
    }
  }
  // Options added after the checkpoint was written take their defaults.
  // The weights a run started from (init) are in the checkpoint now.
  return resolveTrainOptions({ ...DEFAULT_TRAIN_OPTIONS, ...pickKnown(saved), init: null, ...explicit } as TrainInput);
}

function pickKnown(o: object): Partial<TrainOptions> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => Object.hasOwn(KNOWN, k))) as Partial<TrainOptions>;
}
