// The FILIP dual encoder in tfjs: a ViT image encoder and a causal GPT-2-style text transformer,
// each ending in a per-token linear projection to a shared space whose vectors are L2-normalised.
// FILIP compares every image patch with every text token (loss.ts), so both encoders return all
// their tokens; the [CLS] (image) and [EOS] (text) embeddings are returned too, for the CLIP loss.
//
//   image [B,H,W,3] -> patches [B,P,p*p*3] @ W_patch -> [CLS] + patches + positions -> ln_pre
//     -> blocks -> ln_post -> @ proj -> L2 norm: [CLS] = global, the P others = patch tokens
//   ids [B,L] -> token + position embeddings -> causal blocks -> ln_final -> @ proj -> L2 norm:
//     all L = tokens (mask from lengths), position length-1 = [EOS] = global

import * as tf from '@tensorflow/tfjs-core';
import { FilipError } from '../core/errors.js';
import { boolOption, choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import {
  type Block,
  type LayerNorm,
  type Linear,
  ParamStore,
  blockForward,
  l2Normalize,
  layerNorm,
  linear,
  makeBlock,
  makeLayerNorm,
  makeLinear,
} from './layers.js';
import { registerTrainingGradients } from './wasm-kernels.js';

export const MODEL_PRESETS = ['tiny', 'small', 'base', 'large'] as const;
export type ModelPreset = (typeof MODEL_PRESETS)[number];

export interface ModelConfig {
  preset: string;
  /** Square input side in pixels; a multiple of patchSize. */
  imageSize: number;
  patchSize: number;
  vision: { width: number; layers: number; heads: number };
  text: { vocabSize: number; contextLength: number; width: number; layers: number; heads: number };
  /** Size of the shared token space (256 in FILIP). */
  embedDim: number;
}

/** CLIP's vocabulary size; the tokenizer may give a smaller one through `overrides.vocabSize`. */
export const DEFAULT_VOCAB_SIZE = 49408;

const PRESETS: Record<ModelPreset, ModelConfig> = {
  // Trains in seconds on a CPU: 16 patches of 8 px, two layers per tower.
  tiny: {
    preset: 'tiny',
    imageSize: 32,
    patchSize: 8,
    vision: { width: 64, layers: 2, heads: 2 },
    text: { vocabSize: DEFAULT_VOCAB_SIZE, contextLength: 32, width: 64, layers: 2, heads: 2 },
    embedDim: 256,
  },
  // The benchmark model: 64 patches of 8 px, four layers of 256.
  small: {
    preset: 'small',
    imageSize: 64,
    patchSize: 8,
    vision: { width: 256, layers: 4, heads: 4 },
    text: { vocabSize: DEFAULT_VOCAB_SIZE, contextLength: 77, width: 256, layers: 4, heads: 4 },
    embedDim: 256,
  },
  // FILIP-base: ViT-B/32 image tower, 12-layer 512-wide text tower.
  base: {
    preset: 'base',
    imageSize: 224,
    patchSize: 32,
    vision: { width: 768, layers: 12, heads: 12 },
    text: { vocabSize: DEFAULT_VOCAB_SIZE, contextLength: 77, width: 512, layers: 12, heads: 8 },
    embedDim: 256,
  },
  // FILIP-large: ViT-L/14 image tower, 12-layer 768-wide text tower.
  large: {
    preset: 'large',
    imageSize: 224,
    patchSize: 14,
    vision: { width: 1024, layers: 24, heads: 16 },
    text: { vocabSize: DEFAULT_VOCAB_SIZE, contextLength: 77, width: 768, layers: 12, heads: 12 },
    embedDim: 256,
  },
};

export interface ModelOverrides {
  /** Vocabulary size of the tokenizer in use. @default 49408 */
  readonly vocabSize?: number;
  /** Longest token sequence, [BOS] and [EOS] included. @default 77 (tiny: 32) */
  readonly contextLength?: number;
  /** Input side in pixels, a multiple of the preset's patch size. @default 224 (tiny 32, small 64) */
  readonly imageSize?: number;
}

const KNOWN_OVERRIDES: Record<keyof ModelOverrides, true> = { vocabSize: true, contextLength: true, imageSize: true };

/** The configuration of a preset, with the data-dependent sizes overridden. Validated. */
export function modelConfig(preset: string, overrides: ModelOverrides = {}): ModelConfig {
  const name = choiceOption('preset', preset, MODEL_PRESETS);
  if (overrides === null || typeof overrides !== 'object') throw invalid('model overrides', 'an object', overrides);
  rejectUnknownKeys('model', overrides, KNOWN_OVERRIDES);
  const base = PRESETS[name];
  const config: ModelConfig = {
    ...base,
    vision: { ...base.vision },
    text: { ...base.text },
  };
  if (overrides.vocabSize !== undefined) config.text.vocabSize = intOption('vocabSize', overrides.vocabSize, 3);
  if (overrides.contextLength !== undefined) config.text.contextLength = intOption('contextLength', overrides.contextLength, 2);
  if (overrides.imageSize !== undefined) {
    const size = intOption('imageSize', overrides.imageSize, config.patchSize);
    if (size % config.patchSize !== 0) throw invalid('imageSize', `a multiple of the patch size ${config.patchSize}`, size);
    config.imageSize = size;
  }
  return validateModelConfig(config);
}

/** Checks a config read back from a checkpoint (or built by hand): every size an integer that fits. */
export function validateModelConfig(config: ModelConfig): ModelConfig {
  if (config === null || typeof config !== 'object') throw invalid('model config', 'an object', config);
  intOption('patchSize', config.patchSize, 1);
  intOption('imageSize', config.imageSize, config.patchSize);
  if (config.imageSize % config.patchSize !== 0) {
    throw invalid('imageSize', `a multiple of the patch size ${config.patchSize}`, config.imageSize);
  }
  intOption('embedDim', config.embedDim, 1);
  for (const [tower, t] of [['vision', config.vision], ['text', config.text]] as const) {
    intOption(`${tower}.width`, t.width, 1);
    intOption(`${tower}.layers`, t.layers, 1);
    intOption(`${tower}.heads`, t.heads, 1);
    if (t.width % t.heads !== 0) throw invalid(`${tower}.heads`, `a divisor of the width ${t.width}`, t.heads);
  }
  intOption('text.vocabSize', config.text.vocabSize, 3);
  intOption('text.contextLength', config.text.contextLength, 2);
  return config;
}

/** log(1 / 0.07): CLIP's and FILIP's initial temperature, as a log scale. */
export const INITIAL_LOGIT_SCALE = Math.log(1 / 0.07);

/** CLIP's image normalisation, which `encodeImage` expects already applied (per RGB channel). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

interface VisionTower {
  readonly patchEmbed: Linear;
  readonly classEmbed: tf.Variable;
  readonly posEmbed: tf.Variable;
  readonly lnPre: LayerNorm;
  readonly blocks: Block[];
  readonly lnPost: LayerNorm;
  readonly proj: Linear;
}

interface TextTower {
  readonly tokenEmbed: tf.Variable;
  readonly posEmbed: tf.Variable;
  readonly blocks: Block[];
  readonly lnFinal: LayerNorm;
  readonly proj: Linear;
}

export interface FilipModelOptions {
  /**
   * Prefix of the variables' engine names. tfjs keeps one registry of variable names per process,
   * so a second live model needs its own (e.g. 'ema/'). Weight maps use the names without it.
   * @default ''
   */
  readonly scope?: string;
  /**
   * Multiply by temporary copies of the weights so the wasm backend keeps no packed copy of them
   * (half the memory for forward passes; see `linear` in layers.ts). The large preset needs it to
   * run a forward pass inside the 4 GiB wasm heap.
   * @default false
   */
  readonly leanMatmul?: boolean;
}

export const DEFAULT_MODEL_OPTIONS: Required<FilipModelOptions> = Object.freeze({ scope: '', leanMatmul: false });

export function resolveFilipModelOptions(partial: FilipModelOptions = {}): Required<FilipModelOptions> {
  if (partial === null || typeof partial !== 'object') throw invalid('model options', 'an object', partial);
  rejectUnknownKeys('model', partial, DEFAULT_MODEL_OPTIONS);
  const o = { ...DEFAULT_MODEL_OPTIONS, ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) };
  return Object.freeze({
    scope: stringOption('scope', o.scope, { allowEmpty: true }),
    leanMatmul: boolOption('leanMatmul', o.leanMatmul),
  });
}

/** Variables without weight decay, by the last part(s) of their name. */
function isNoDecayName(name: string): boolean {
  return (
    name === 'logit_scale' ||
    name.endsWith('/b') || // biases, and the shifts of LayerNorms
    /\/ln_[^/]+\/g$/.test(name) || // LayerNorm gains
    /_embed$/.test(name) // token, position and class embeddings (patch_embed/w is a linear layer)
  );
}

export class FilipModel {
  readonly config: ModelConfig;
  /** Every trainable variable in creation order; `name` is `scope` + the stable name. */
  readonly variables: tf.Variable[];
  readonly logitScale: tf.Variable;
  /** Prefix of the engine names ('' by default); weight maps use the names without it. */
  readonly scope: string;
  private readonly vision: VisionTower;
  private readonly text: TextTower;
  private readonly byName = new Map<string, tf.Variable>();
  private readonly noDecayNames = new Set<string>();
  private disposed = false;

  /** Builds the model with weights drawn from `seed` (the same seed gives the same weights). */
  constructor(config: ModelConfig, seed: number, options: FilipModelOptions = {}) {
    registerTrainingGradients();
    this.config = validateModelConfig(config);
    intOption('seed', seed, 0, 0xffffffff);
    const { scope, leanMatmul } = resolveFilipModelOptions(options);
    this.scope = scope;
    const p = new ParamStore(seed, leanMatmul);
    const s = scope;
    const { vision: v, text: t, patchSize, imageSize, embedDim } = config;
    const patches = (imageSize / patchSize) ** 2;
    const vScale = v.width ** -0.5;
    try {
      this.vision = {
        patchEmbed: makeLinear(p, `${s}vision/patch_embed`, patchSize * patchSize * 3, v.width, (patchSize * patchSize * 3) ** -0.5, false),
        classEmbed: p.normal(`${s}vision/class_embed`, [v.width], vScale),
        posEmbed: p.normal(`${s}vision/pos_embed`, [patches + 1, v.width], vScale),
        lnPre: makeLayerNorm(p, `${s}vision/ln_pre`, v.width),
        blocks: Array.from({ length: v.layers }, (_, i) => makeBlock(p, `${s}vision/blocks/${i}`, v.width, v.heads, v.layers)),
        lnPost: makeLayerNorm(p, `${s}vision/ln_post`, v.width),
        proj: makeLinear(p, `${s}vision/proj`, v.width, embedDim, vScale, false),
      };
      this.text = {
        tokenEmbed: p.normal(`${s}text/token_embed`, [t.vocabSize, t.width], 0.02),
        posEmbed: p.normal(`${s}text/pos_embed`, [t.contextLength, t.width], 0.01),
        blocks: Array.from({ length: t.layers }, (_, i) => makeBlock(p, `${s}text/blocks/${i}`, t.width, t.heads, t.layers)),
        lnFinal: makeLayerNorm(p, `${s}text/ln_final`, t.width),
        proj: makeLinear(p, `${s}text/proj`, t.width, embedDim, t.width ** -0.5, false),
      };
      this.logitScale = p.constant(`${s}logit_scale`, [], INITIAL_LOGIT_SCALE);
    } catch (error) {
      for (const variable of p.variables) variable.dispose();
      if (error instanceof Error && /already registered/.test(error.message)) {
        throw new FilipError('FILIP_ERR_INVALID_OPTION', `another live model uses the variable names of scope "${scope}": ${error.message}; dispose it or pass another scope`, { field: 'scope' });
      }
      throw error;
    }
    this.variables = p.variables;
    for (const variable of this.variables) {
      const stable = variable.name.slice(scope.length);
      this.byName.set(stable, variable);
      if (isNoDecayName(stable)) this.noDecayNames.add(variable.name);
    }
  }

  /** Number of trainable scalars. */
  get parameterCount(): number {
    return this.variables.reduce((n, v) => n + v.size, 0);
  }

  /** Patches per image (the [CLS] token not counted). */
  get patchCount(): number {
    return (this.config.imageSize / this.config.patchSize) ** 2;
  }

  /**
   * images [B, H, W, 3] float32, already normalised (CLIP_MEAN / CLIP_STD), H = W = imageSize ->
   * patches [B, P, D]: the patch tokens L2-normalised, row-major over the grid, no [CLS];
   * global [B, D]: the [CLS] embedding L2-normalised, for the CLIP loss. The caller disposes them.
   */
  encodeImage(images: tf.Tensor4D): { patches: tf.Tensor3D; global: tf.Tensor2D } {
    this.assertAlive();
    const { imageSize: size, patchSize: p } = this.config;
    const [batch, height, width, channels] = images.shape;
    if (height !== size || width !== size || channels !== 3) {
      throw invalid('images', `a [B, ${size}, ${size}, 3] tensor`, images.shape);
    }
    const v = this.vision;
    return tf.tidy(() => {
      const grid = size / p;
      // [B, H, W, 3] -> [B, gy, p, gx, p, 3] -> [B, gy, gx, p, p, 3] -> [B, P, p*p*3]: row-major patches
      const cut = tf.transpose(tf.reshape(images, [batch, grid, p, grid, p, 3]), [0, 1, 3, 2, 4, 5]);
      const patches = linear(tf.reshape(cut, [batch, grid * grid, p * p * 3]), v.patchEmbed);
      // [CLS] for every image (an add broadcasts it; its gradient sums over the batch)
      const cls = tf.add(tf.zeros([batch, 1, v.classEmbed.shape[0]!]), tf.reshape(v.classEmbed, [1, 1, -1]));
      let x = tf.add(tf.concat([cls, patches], 1), v.posEmbed);
      x = layerNorm(x, v.lnPre);
      for (const block of v.blocks) x = blockForward(x, block, null);
      const tokens = l2Normalize(linear(layerNorm(x, v.lnPost), v.proj)); // [B, 1+P, D]
      const embed = this.config.embedDim;
      return {
        patches: tf.slice(tokens, [0, 1, 0], [batch, grid * grid, embed]) as tf.Tensor3D,
        global: tf.reshape(tf.slice(tokens, [0, 0, 0], [batch, 1, embed]), [batch, embed]) as tf.Tensor2D,
      };
    });
  }

  /**
   * ids [B, L] int32 (L <= contextLength), lengths [B]: real tokens per row, [BOS] and [EOS]
   * included, each from 1 to L (not checked: that would read the tensor back) ->
   * tokens [B, L, D] L2-normalised; mask [B, L] float32, 1 for positions < length (from the
   * lengths, never the ids: id 0 is a real token); global [B, D]: the token at length - 1 ([EOS]).
   */
  encodeText(ids: tf.Tensor2D, lengths: tf.Tensor1D): { tokens: tf.Tensor3D; mask: tf.Tensor2D; global: tf.Tensor2D } {
    this.assertAlive();
    const [batch, length] = ids.shape;
    const { contextLength } = this.config.text;
    if (ids.dtype !== 'int32' || length > contextLength || length < 1) {
      throw invalid('ids', `an int32 [B, L] tensor with L from 1 to ${contextLength}`, `${ids.dtype} ${JSON.stringify(ids.shape)}`);
    }
    if (lengths.rank !== 1 || lengths.shape[0] !== batch) {
      throw invalid('lengths', `a [${batch}] tensor`, lengths.shape);
    }
    const t = this.text;
    return tf.tidy(() => {
      const lens = tf.cast(lengths, 'int32');
      const positions = tf.range(0, length, 1, 'int32');
      // 1 for positions < length: from the lengths only, since id 0 is a real token in CLIP's vocabulary
      const mask = tf.cast(tf.less(tf.expandDims(positions, 0), tf.expandDims(lens, 1)), 'float32') as tf.Tensor2D;
      const embedded = tf.reshape(tf.gather(t.tokenEmbed, tf.reshape(ids, [-1])), [batch, length, -1]);
      let x = tf.add(embedded, tf.slice(t.posEmbed, [0, 0], [length, -1]));
      const causal = causalBias(length);
      for (const block of t.blocks) x = blockForward(x, block, causal);
      const tokens = l2Normalize(linear(layerNorm(x, t.lnFinal), t.proj)) as tf.Tensor3D; // [B, L, D]
      // [EOS] is the last real token: pick it with a one-hot over positions (no gather, no grad needed)
      const eos = tf.oneHot(tf.sub(lens, tf.scalar(1, 'int32')) as tf.Tensor1D, length); // [B, L]
      const global = tf.sum(tf.mul(tokens, tf.expandDims(tf.cast(eos, 'float32'), 2)), 1) as tf.Tensor2D;
      return { tokens, mask, global };
    });
  }

  /** True for variables that get no weight decay: biases, LayerNorms, embeddings, logit_scale. */
  noDecay(v: tf.Variable): boolean {
    return this.noDecayNames.has(v.name);
  }

  /** Copies of every weight, keyed by stable name (no scope); the caller disposes them. */
  getWeights(): Map<string, tf.Tensor> {
    this.assertAlive();
    return new Map([...this.byName].map(([name, v]) => [name, tf.clone(v)]));
  }

  /** Loads every weight (same names and shapes as getWeights); FILIP_ERR_CHECKPOINT when they differ. */
  setWeights(weights: Map<string, tf.Tensor>): void {
    this.assertAlive();
    for (const name of weights.keys()) {
      if (!this.byName.has(name)) throw new FilipError('FILIP_ERR_CHECKPOINT', `unknown weight "${name}" for the ${this.config.preset} model`, { field: name });
    }
    for (const [name, v] of this.byName) {
      const w = weights.get(name);
      if (w === undefined) throw new FilipError('FILIP_ERR_CHECKPOINT', `weight "${name}" is missing`, { field: name });
      if (!tf.util.arraysEqual(w.shape, v.shape)) {
        throw new FilipError('FILIP_ERR_CHECKPOINT', `weight "${name}" has shape ${JSON.stringify(w.shape)}, the model ${JSON.stringify(v.shape)}`, { field: name });
      }
    }
    for (const [name, v] of this.byName) {
      const w = weights.get(name)!;
      v.assign(w.dtype === 'float32' ? w : tf.tidy(() => tf.cast(w, 'float32')));
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const v of this.variables) v.dispose();
  }

  private assertAlive(): void {
    if (this.disposed) throw new FilipError('FILIP_ERR_INVALID_OPTION', 'the model was disposed', { field: 'model' });
  }
}

/** [L, L]: 0 where a query may attend (key position <= query position), -1e9 above the diagonal. */
function causalBias(length: number): tf.Tensor2D {
  const values = new Float32Array(length * length);
  for (let q = 0; q < length; q++) for (let k = q + 1; k < length; k++) values[q * length + k] = -1e9;
  return tf.tensor2d(values, [length, length]);
}
