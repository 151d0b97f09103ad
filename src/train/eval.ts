// Evaluation of a trained checkpoint on held-out shards: zero-shot classification with a prompt
// ensemble, image-to-text and text-to-image retrieval (R@1/5/10), and word-patch localisation.
//
// Zero-shot, as in the FILIP paper: every label is written into each of the prompt templates; the
// score of (image, label) is the token-wise late-interaction similarity of the image with each
// prompt (mean over patches of the best real token), averaged over the templates. The prompt
// embeddings are never averaged into one vector: late interaction has no single vector to average.
// A checkpoint trained with `--loss clip` is scored with its global embeddings instead ([CLS] x [EOS]
// cosine, averaged over templates), which is how CLIP would be evaluated; `similarity` overrides it.
//
// Labels come from the demo corpus's scene metadata: a shard row keeps the manifest's `scene_id`
// column (`extra_scene_id` in Parquet shards); where a shard lacks it, the row's key names the
// manifest row (last 9+ digits), which corpus.json maps to its scene.
//
// Localisation: for every held-out image, each patch's best token among its own caption's real
// tokens; of the patches whose centre lies in the main object's box (as the model saw it: resized
// and centre-cropped like the training loader does), the share whose best token is part of the
// object's shape or colour word. Chance is the share the word's tokens have among the real tokens.

import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import * as tf from '@tensorflow/tfjs-core';

import { FilipError } from '../core/errors.js';
import { choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import { listShards, streamSamples } from '../data/index.js';
import { loadDemoCorpus, type DemoScene } from '../demo/corpus.js';
import { DEMO_COLOUR_NAMES, DEMO_SHAPES, type BBox } from '../demo/scene.js';
import { BACKEND_CHOICES, selectBackend, type BackendChoice } from './backend.js';
import { loadCheckpoint } from './checkpoint.js';
import type { LossName } from './config.js';
import { decodeToSquare, normaliseInto } from './data.js';
import { tokenwiseSimilarity } from './loss.js';
import { matMulT } from './wasm-kernels.js';
import { FilipModel, validateModelConfig, type ModelConfig } from './model.js';
import { BpeTokenizer, preTokenize } from './tokenizer.js';
import type { SavedConfig } from './trainer.js';

// ---- constants ----

/** CLIP/FILIP-style prompt templates; `{}` is replaced by the label. */
export const PROMPT_TEMPLATES = [
  'a photo of a {}.',
  'a picture of a {}.',
  'a drawing of a {}.',
  'an image of a {}.',
  'a photo of the {}.',
  'a rendering of a {}.',
  'a simple picture of a {}.',
  'a {} on a plain background.',
] as const;

/** How an image and a text are compared. */
export const SIMILARITIES = {
  auto: 'tokenwise for a checkpoint trained with the FILIP loss, global for one trained with the CLIP loss',
  tokenwise: "FILIP's late interaction: mean over patches of each patch's best real token",
  global: "CLIP's cosine of the [CLS] and [EOS] embeddings",
} as const;
export type Similarity = keyof typeof SIMILARITIES;
export const SIMILARITY_NAMES = Object.keys(SIMILARITIES) as Similarity[];

/** Classification tasks the demo corpus's scene metadata can label: the main object's shape and colour. */
export const LABEL_TASKS = {
  shape: DEMO_SHAPES,
  colour: DEMO_COLOUR_NAMES,
} as const satisfies Record<string, readonly string[]>;
export type LabelTask = keyof typeof LABEL_TASKS;
export const LABEL_TASK_NAMES = Object.keys(LABEL_TASKS) as LabelTask[];

// ---- options ----

export interface EvalOptions {
  /** A run folder (its newest checkpoint) or a checkpoint folder. Required. */
  readonly checkpoint: string;
  /** Folder of held-out shards (scenes the model was not trained on). Required. */
  readonly shards: string;
  /**
   * Demo corpus folder (holding corpus.json) whose scene metadata labels the images; null skips
   * classification and localisation (retrieval needs no labels).
   * @default null
   */
  readonly corpus: string | null;
  /**
   * Classification tasks (`LABEL_TASKS`).
   * @default ['shape', 'colour']
   */
  readonly labels: readonly LabelTask[];
  /**
   * Image-text similarity (`SIMILARITIES`).
   * @default 'auto'
   */
  readonly similarity: Similarity;
  /**
   * Prompt templates, each with one `{}`.
   * @default PROMPT_TEMPLATES
   */
  readonly templates: readonly string[];
  /**
   * Most held-out pairs read (in shard order); 0 reads them all.
   * @default 0
   */
  readonly limit: number;
  /**
   * Images (or texts) encoded per forward pass.
   * @default 64
   */
  readonly batch: number;
  /**
   * Compute backend (`BACKEND_CHOICES`).
   * @default 'auto'
   */
  readonly backend: BackendChoice;
}

export type EvalInput = Partial<EvalOptions> & Pick<EvalOptions, 'checkpoint' | 'shards'>;

export const DEFAULT_EVAL_OPTIONS: Omit<EvalOptions, 'checkpoint' | 'shards'> = Object.freeze({
  corpus: null,
  labels: Object.freeze([...LABEL_TASK_NAMES]),
  similarity: 'auto' as Similarity,
  templates: PROMPT_TEMPLATES,
  limit: 0,
  batch: 64,
  backend: 'auto' as BackendChoice,
});

export function resolveEvalOptions(input: EvalInput): EvalOptions {
  if (input === null || typeof input !== 'object') throw invalid('eval options', 'an object', input);
  rejectUnknownKeys('eval', input, { checkpoint: '', shards: '', ...DEFAULT_EVAL_OPTIONS });
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const o = { ...DEFAULT_EVAL_OPTIONS, ...given } as EvalOptions;
  if (!Array.isArray(o.labels)) throw invalid('labels', `a list of ${LABEL_TASK_NAMES.join(', ')}`, o.labels);
  if (!Array.isArray(o.templates) || o.templates.length === 0) throw invalid('templates', 'a non-empty list of strings', o.templates);
  for (const [i, t] of o.templates.entries()) {
    if (typeof t !== 'string' || t.split('{}').length !== 2) throw invalid(`templates[${i}]`, 'a string with exactly one "{}"', t);
  }
  return Object.freeze({
    checkpoint: stringOption('checkpoint', o.checkpoint),
    shards: stringOption('shards', o.shards),
    corpus: o.corpus === null ? null : stringOption('corpus', o.corpus),
    labels: Object.freeze([...new Set(o.labels.map((l: unknown) => choiceOption('labels', l, LABEL_TASK_NAMES)))]),
    similarity: choiceOption('similarity', o.similarity, SIMILARITY_NAMES),
    templates: Object.freeze([...o.templates]),
    limit: intOption('limit', o.limit, 0),
    batch: intOption('batch', o.batch, 1),
    backend: choiceOption('backend', o.backend, BACKEND_CHOICES),
  });
}

// ---- a trained model ----

export interface TrainedModel {
  readonly net: FilipModel;
  readonly tokenizer: BpeTokenizer;
  readonly config: ModelConfig;
  /** The loss it was trained with (from the saved train options). */
  readonly loss: LossName;
  readonly step: number;
  /** The checkpoint folder it was read from. */
  readonly path: string;
}

let loadedModels = 0;

/** Rebuilds the model and tokenizer of a checkpoint for inference (no optimiser). Dispose `net` after. */
export async function loadTrainedModel(path: string): Promise<TrainedModel> {
  const ckpt = await loadCheckpoint<SavedConfig>(path);
  const saved = ckpt.config;
  if (!saved || typeof saved !== 'object' || !saved.model) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', 'the checkpoint has no model config', { file: ckpt.path, field: 'config' });
  }
  const config = validateModelConfig(saved.model);
  const tokenizer = BpeTokenizer.fromJSON(ckpt.tokenizer);
  // A scope of its own, so that a live training model (or another loaded one) keeps its names.
  const net = new FilipModel(config, 0, { scope: `eval${loadedModels++}/` });
  const weights = new Map<string, tf.Tensor>();
  try {
    for (const w of ckpt.weights) weights.set(w.name, tf.tensor(w.data, [...w.shape], 'float32'));
    net.setWeights(weights);
  } catch (error) {
    net.dispose();
    throw error;
  } finally {
    tf.dispose([...weights.values()]);
  }
  const loss: LossName = saved.train?.loss === 'clip' ? 'clip' : 'filip';
  return { net, tokenizer, config, loss, step: ckpt.step, path: ckpt.path };
}

// ---- encoding into plain arrays ----

/** Encoded images: L2-normalised patch tokens [n, P, D] and global embeddings [n, D]. */
export interface ImageCodes {
  readonly n: number;
  readonly patches: number;
  readonly dim: number;
  readonly patchData: Float32Array;
  readonly globalData: Float32Array;
}

/** Encoded texts: L2-normalised tokens [n, L, D] (L = longest text), real-token counts, globals [n, D]. */
export interface TextCodes {
  readonly n: number;
  readonly length: number;
  readonly dim: number;
  readonly tokenData: Float32Array;
  readonly lengths: Int32Array;
  readonly globalData: Float32Array;
}

/**
 * Decodes encoded images as the training loader does (cover-resize, centre crop, CLIP normalisation).
 * An image that does not decode is FILIP_ERR_SHARD naming it by `names[i]` (a key; default its index).
 */
export async function imagePixels(images: readonly Buffer[], size: number, names?: readonly string[]): Promise<Float32Array> {
  const pixels = new Float32Array(images.length * size * size * 3);
  await Promise.all(
    images.map(async (bytes, i) => {
      let image: Awaited<ReturnType<typeof decodeToSquare>>;
      try {
        image = await decodeToSquare(bytes, size);
      } catch (error) {
        const name = names?.[i] ?? `image ${i}`;
        throw new FilipError('FILIP_ERR_SHARD', `${name}: the image does not decode: ${(error as Error).message}`, { field: 'image' }, { cause: error });
      }
      normaliseInto(image, pixels, i * size * size * 3);
    }),
  );
  return pixels;
}

/** Runs the image tower over normalised pixels [n, S, S, 3], `batch` images at a time. */
export function encodeImages(net: FilipModel, pixels: Float32Array, n: number, batch = 64): ImageCodes {
  const S = net.config.imageSize;
  const P = net.patchCount;
  const D = net.config.embedDim;
  const patchData = new Float32Array(n * P * D);
  const globalData = new Float32Array(n * D);
  for (let lo = 0; lo < n; lo += batch) {
    const hi = Math.min(n, lo + batch);
    const out = tf.tidy(() => {
      const x = tf.tensor4d(pixels.subarray(lo * S * S * 3, hi * S * S * 3), [hi - lo, S, S, 3]);
      const { patches, global } = net.encodeImage(x);
      return [patches, global] as const;
    });
    patchData.set(out[0].dataSync(), lo * P * D);
    globalData.set(out[1].dataSync(), lo * D);
    tf.dispose([...out]);
  }
  return { n, patches: P, dim: D, patchData, globalData };
}

/** Tokenizes and runs the text tower, `batch` texts at a time; rows are cut to the longest text. */
export function encodeTexts(net: FilipModel, tokenizer: BpeTokenizer, texts: readonly string[], batch = 64): TextCodes {
  const C = net.config.text.contextLength;
  const D = net.config.embedDim;
  const tok = tokenizer.tokenize(texts, C);
  let L = 1;
  for (const len of tok.lengths) L = Math.max(L, len);
  const n = texts.length;
  const tokenData = new Float32Array(n * L * D);
  const globalData = new Float32Array(n * D);
  for (let lo = 0; lo < n; lo += batch) {
    const hi = Math.min(n, lo + batch);
    const ids = new Int32Array((hi - lo) * L);
    for (let r = lo; r < hi; r++) ids.set(tok.ids.subarray(r * C, r * C + L), (r - lo) * L);
    const out = tf.tidy(() => {
      const t = net.encodeText(tf.tensor2d(ids, [hi - lo, L], 'int32'), tf.tensor1d(tok.lengths.subarray(lo, hi), 'int32'));
      return [t.tokens, t.global] as const;
    });
    tokenData.set(out[0].dataSync(), lo * L * D);
    globalData.set(out[1].dataSync(), lo * D);
    tf.dispose([...out]);
  }
  return { n, length: L, dim: D, tokenData, lengths: tok.lengths, globalData };
}

/**
 * Similarity of every image with every text, both directions: i2t [nImages, nTexts] (how well text t
 * describes image i) and t2i [nTexts, nImages]. Tokenwise uses all patches and all real tokens
 * (no top-k selection at evaluation); global is the cosine of the global embeddings (symmetric).
 */
export function similarityMatrices(img: ImageCodes, txt: TextCodes, how: 'tokenwise' | 'global'): { i2t: Float32Array; t2i: Float32Array } {
  const { n: ni, patches: P, dim: D } = img;
  const { n: nt, length: L } = txt;
  const i2t = new Float32Array(ni * nt);
  const t2i = new Float32Array(nt * ni);
  // Chunks keep the [images x patches, texts x tokens] similarity block near 4M floats.
  const imgChunk = how === 'global' ? ni : Math.max(1, Math.min(ni, Math.floor(256 / P) || 1));
  const txtChunk = how === 'global' ? nt : Math.max(1, Math.floor((4 << 20) / (imgChunk * P * L)));
  for (let i0 = 0; i0 < ni; i0 += imgChunk) {
    const i1 = Math.min(ni, i0 + imgChunk);
    for (let t0 = 0; t0 < nt; t0 += txtChunk) {
      const t1 = Math.min(nt, t0 + txtChunk);
      const [a, b] = tf.tidy(() => {
        if (how === 'global') {
          const gi = tf.tensor2d(img.globalData.subarray(i0 * D, i1 * D), [i1 - i0, D]);
          const gt = tf.tensor2d(txt.globalData.subarray(t0 * D, t1 * D), [t1 - t0, D]);
          const s = matMulT(gi, gt, false, true);
          return [s, tf.transpose(s)];
        }
        const patches = tf.tensor3d(img.patchData.subarray(i0 * P * D, i1 * P * D), [i1 - i0, P, D]);
        const tokens = tf.tensor3d(txt.tokenData.subarray(t0 * L * D, t1 * L * D), [t1 - t0, L, D]);
        const mask = tf.tensor2d(
          Float32Array.from({ length: (t1 - t0) * L }, (_, k) => (k % L < txt.lengths[t0 + Math.floor(k / L)]! ? 1 : 0)),
          [t1 - t0, L],
        );
        const s = tokenwiseSimilarity(patches, tokens, mask, { topK: 1 });
        return [s.i2t, s.t2i];
      });
      const av = a.dataSync();
      const bv = b.dataSync();
      for (let i = i0; i < i1; i++) for (let t = t0; t < t1; t++) {
        i2t[i * nt + t] = av[(i - i0) * (t1 - t0) + (t - t0)]!;
        t2i[t * ni + i] = bv[(t - t0) * (i1 - i0) + (i - i0)]!;
      }
      tf.dispose([a, b]);
    }
  }
  return { i2t, t2i };
}

// ---- held-out data ----

export interface HeldOutPair {
  readonly key: string;
  readonly caption: string;
  readonly image: Buffer;
  /** Stored size of the image in the shard. */
  readonly width: number;
  readonly height: number;
  /** Its scene in the demo corpus, when one was given and the row maps to one. */
  readonly scene?: DemoScene;
}

/** scene_id of each key, from the `extra_scene_id` column of Parquet shards that have it. */
async function sceneIdsFromShards(dir: string): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  for (const shard of await listShards(dir)) {
    if (shard.format !== 'parquet' || shard.rows === 0) continue;
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file: await asyncBufferFromFile(shard.file), columns: ['key', 'extra_scene_id'] });
    } catch {
      continue; // no such column: fall back to the key
    }
    for (const r of rows) if (typeof r.key === 'string' && typeof r.extra_scene_id === 'string') ids.set(r.key, r.extra_scene_id);
  }
  return ids;
}

/**
 * The held-out pairs of a shard folder in shard order, each with its demo scene where known: from the
 * corpus in `corpusDir`, or from `extraScenes` (scenes generated outside a corpus, such as the learning
 * check's single-object ones), matched by the shards' scene_id column.
 */
export async function loadHeldOut(shards: string, corpusDir: string | null, limit = 0, extraScenes: readonly DemoScene[] = []): Promise<HeldOutPair[]> {
  const corpus = corpusDir === null ? null : await loadDemoCorpus(corpusDir);
  const scenes = new Map([...(corpus?.scenes ?? []), ...extraScenes].map((s) => [s.id, s]));
  const byKey = corpus || extraScenes.length > 0 ? await sceneIdsFromShards(shards) : new Map<string, string>();
  const pairs: HeldOutPair[] = [];
  for await (const s of streamSamples(shards, { columns: ['caption', 'image'], shuffleShards: false })) {
    let id = byKey.get(s.key);
    if (id === undefined && corpus) {
      // A key is the manifest's index (4 digits) then its data row: the demo manifest's row.
      const row = corpus.rows[Number(s.key.slice(4))];
      if (row && row.sceneId !== '') id = row.sceneId;
    }
    const scene = id === undefined ? undefined : scenes.get(id);
    pairs.push({ key: s.key, caption: s.caption, image: s.image, width: s.width, height: s.height, ...(scene ? { scene } : {}) });
    if (limit > 0 && pairs.length >= limit) break;
  }
  if (pairs.length === 0) throw new FilipError('FILIP_ERR_NO_INPUT', 'the held-out shards hold no pairs', { file: shards });
  return pairs;
}

// ---- geometry: a scene's box as the model sees it ----

/**
 * A box of the scene (in the scene's pixels) in the model's input: the stored image is the scene
 * resized to width x height, then the loader cover-resizes it to size x size and crops the centre.
 */
export function boxInModelInput(box: BBox, scene: { width: number; height: number }, stored: { width: number; height: number }, size: number): BBox {
  const s1x = stored.width / scene.width;
  const s1y = stored.height / scene.height;
  const s2 = size / Math.min(stored.width, stored.height);
  const dx = (stored.width * s2 - size) / 2;
  const dy = (stored.height * s2 - size) / 2;
  return { x: box.x * s1x * s2 - dx, y: box.y * s1y * s2 - dy, width: box.width * s1x * s2, height: box.height * s1y * s2 };
}

/** Patch indexes (row-major) whose centre lies inside `box` (model-input pixels). */
export function patchesInBox(box: BBox, size: number, patchSize: number): number[] {
  const grid = size / patchSize;
  const out: number[] = [];
  for (let gy = 0; gy < grid; gy++) for (let gx = 0; gx < grid; gx++) {
    const cx = (gx + 0.5) * patchSize;
    const cy = (gy + 0.5) * patchSize;
    if (cx >= box.x && cx <= box.x + box.width && cy >= box.y && cy <= box.y + box.height) out.push(gy * grid + gx);
  }
  return out;
}

/** Share of a box's area inside the [0, size]^2 crop. */
function visibleShare(box: BBox, size: number): number {
  const w = Math.max(0, Math.min(size, box.x + box.width) - Math.max(0, box.x));
  const h = Math.max(0, Math.min(size, box.y + box.height) - Math.max(0, box.y));
  return (w * h) / Math.max(1e-9, box.width * box.height);
}

/**
 * Positions (in the tokenized sequence, [BOS] = 0) of the tokens of the first occurrence of `word` in
 * `text`, or [] when it does not occur. BPE works word by word, so a word's tokens are its own encoding.
 */
export function wordTokenPositions(tokenizer: BpeTokenizer, text: string, word: string, contextLength: number): number[] {
  const target = preTokenize(word);
  const words = preTokenize(text);
  let pos = 1;
  for (let w = 0; w < words.length; w++) {
    const matches = target.length > 0 && target.every((t, k) => words[w + k] === t);
    if (matches) {
      const n = target.reduce((sum, t) => sum + tokenizer.encode(t).length, 0);
      const positions = Array.from({ length: n }, (_, k) => pos + k);
      // Tokens cut off by the context length (the last position is [EOS]) cannot be matched.
      return positions.filter((p) => p < contextLength - 1);
    }
    pos += tokenizer.encode(words[w]!).length;
  }
  return [];
}

/** For each patch of image `i`, the position of its best real token of text `t` (ties: the first). */
export function bestTokens(img: ImageCodes, i: number, txt: TextCodes, t: number): Int32Array {
  const { patches: P, dim: D } = img;
  const L = txt.length;
  const n = txt.lengths[t]!;
  const best = new Int32Array(P);
  for (let p = 0; p < P; p++) {
    let top = -Infinity;
    const po = (i * P + p) * D;
    for (let r = 0; r < n; r++) {
      const to = (t * L + r) * D;
      let s = 0;
      for (let d = 0; d < D; d++) s += img.patchData[po + d]! * txt.tokenData[to + d]!;
      if (s > top) {
        top = s;
        best[p] = r;
      }
    }
  }
  return best;
}

// ---- metrics ----

export interface RecallAtK {
  readonly r1: number;
  readonly r5: number;
  readonly r10: number;
}

/** R@1/5/10 of a score matrix [n, n] whose right answer for row q is column q (ties count against). */
export function recallAtK(scores: Float32Array, n: number): RecallAtK {
  const hits = { r1: 0, r5: 0, r10: 0 };
  for (let q = 0; q < n; q++) {
    const own = scores[q * n + q]!;
    let rank = 0;
    for (let c = 0; c < n; c++) if (c !== q && scores[q * n + c]! >= own) rank++;
    if (rank < 1) hits.r1++;
    if (rank < 5) hits.r5++;
    if (rank < 10) hits.r10++;
  }
  return { r1: hits.r1 / n, r5: hits.r5 / n, r10: hits.r10 / n };
}

export interface ZeroShotResult {
  readonly task: LabelTask;
  readonly labels: readonly string[];
  /** Images classified: those with a scene whose main object is at least half inside the crop. */
  readonly images: number;
  readonly correct: number;
  readonly accuracy: number;
  readonly chance: number;
  /** Accuracy per true label (NaN where no image has it). */
  readonly perLabel: Readonly<Record<string, { readonly images: number; readonly accuracy: number }>>;
}

export interface LocalisationResult {
  /** Images with a scene whose main object covers at least one patch centre. */
  readonly images: number;
  /** Patches inside those objects' boxes. */
  readonly patches: number;
  /** Share of them whose best token is part of the object's shape or colour word. */
  readonly word: number;
  readonly shape: number;
  readonly colour: number;
  /** The share a patch would reach by picking one of its caption's real tokens at random. */
  readonly chance: number;
  /**
   * Control: the same share for the patches outside the object's box. A model that puts the word on
   * every patch scores as high here as inside; localisation is inside minus this, not inside alone.
   */
  readonly outside: number;
}

export interface EvalReport {
  readonly checkpoint: string;
  readonly step: number;
  readonly preset: string;
  readonly trainedWith: LossName;
  readonly similarity: 'tokenwise' | 'global';
  readonly templates: number;
  readonly pairs: number;
  readonly zeroShot: readonly ZeroShotResult[];
  readonly retrieval: { readonly imageToText: RecallAtK; readonly textToImage: RecallAtK };
  readonly localisation: LocalisationResult | null;
  readonly seconds: number;
}

/** Every metric for one loaded model on a list of held-out pairs. */
export async function evaluateModel(
  model: TrainedModel,
  pairs: readonly HeldOutPair[],
  o: Pick<EvalOptions, 'labels' | 'similarity' | 'templates' | 'batch'>,
  log: (line: string) => void = () => undefined,
): Promise<EvalReport> {
  const started = performance.now();
  const { net, tokenizer, config } = model;
  const how: 'tokenwise' | 'global' = o.similarity === 'auto' ? (model.loss === 'clip' ? 'global' : 'tokenwise') : o.similarity;
  const size = config.imageSize;
  const n = pairs.length;

  log(`encoding ${n} held-out images and captions (${how} similarity)`);
  const images = encodeImages(net, await imagePixels(pairs.map((p) => p.image), size, pairs.map((p) => `key ${p.key}`)), n, o.batch);
  const captions = encodeTexts(net, tokenizer, pairs.map((p) => p.caption), o.batch);

  // Retrieval among the held-out pairs: pair q's caption is the right answer for image q and back.
  const sims = similarityMatrices(images, captions, how);
  const retrieval = { imageToText: recallAtK(sims.i2t, n), textToImage: recallAtK(sims.t2i, n) };

  // Where each main object lands in the model's input.
  const boxes = pairs.map((p) => (p.scene ? boxInModelInput(p.scene.main.bbox, p.scene, p, size) : null));

  const zeroShot: ZeroShotResult[] = [];
  for (const task of o.labels) {
    const labels = LABEL_TASKS[task];
    const usable = pairs.map((p, i) => i).filter((i) => boxes[i] !== null && visibleShare(boxes[i]!, size) >= 0.5);
    if (usable.length === 0) continue;
    log(`zero-shot ${task}: ${labels.length} labels x ${o.templates.length} templates on ${usable.length} images`);
    const prompts = labels.flatMap((label) => o.templates.map((t) => t.replace('{}', label)));
    const promptCodes = encodeTexts(net, tokenizer, prompts, o.batch);
    const sub = subsetImages(images, usable);
    const { i2t } = similarityMatrices(sub, promptCodes, how);
    const m = o.templates.length;
    const per: Record<string, { images: number; correct: number }> = Object.fromEntries(labels.map((l) => [l, { images: 0, correct: 0 }]));
    let correct = 0;
    usable.forEach((pairIndex, row) => {
      let best = 0;
      let bestScore = -Infinity;
      for (let c = 0; c < labels.length; c++) {
        let sum = 0;
        for (let t = 0; t < m; t++) sum += i2t[row * prompts.length + c * m + t]!;
        if (sum / m > bestScore) {
          bestScore = sum / m;
          best = c;
        }
      }
      const main = pairs[pairIndex]!.scene!.main;
      const truth = task === 'shape' ? main.shape : main.colour;
      per[truth]!.images++;
      if (labels[best] === truth) {
        correct++;
        per[truth]!.correct++;
      }
    });
    zeroShot.push({
      task,
      labels,
      images: usable.length,
      correct,
      accuracy: correct / usable.length,
      chance: 1 / labels.length,
      perLabel: Object.fromEntries(Object.entries(per).map(([l, v]) => [l, { images: v.images, accuracy: v.correct / v.images }])),
    });
  }

  const localisation = localise(model, pairs, boxes, images, captions);
  return {
    checkpoint: model.path,
    step: model.step,
    preset: config.preset,
    trainedWith: model.loss,
    similarity: how,
    templates: o.templates.length,
    pairs: n,
    zeroShot,
    retrieval,
    localisation,
    seconds: (performance.now() - started) / 1000,
  };
}

function subsetImages(img: ImageCodes, rows: readonly number[]): ImageCodes {
  const { patches: P, dim: D } = img;
  const patchData = new Float32Array(rows.length * P * D);
  const globalData = new Float32Array(rows.length * D);
  rows.forEach((r, k) => {
    patchData.set(img.patchData.subarray(r * P * D, (r + 1) * P * D), k * P * D);
    globalData.set(img.globalData.subarray(r * D, (r + 1) * D), k * D);
  });
  return { n: rows.length, patches: P, dim: D, patchData, globalData };
}

function localise(
  model: TrainedModel,
  pairs: readonly HeldOutPair[],
  boxes: readonly (BBox | null)[],
  images: ImageCodes,
  captions: TextCodes,
): LocalisationResult | null {
  const { imageSize: size, patchSize } = model.config;
  const C = model.config.text.contextLength;
  let imagesUsed = 0;
  let patches = 0;
  let word = 0;
  let shape = 0;
  let colour = 0;
  let chance = 0;
  let outsidePatches = 0;
  let outsideWord = 0;
  pairs.forEach((pair, i) => {
    const box = boxes[i];
    if (!box || !pair.scene) return;
    const inside = patchesInBox(box, size, patchSize);
    const shapeAt = new Set(wordTokenPositions(model.tokenizer, pair.caption, pair.scene.main.shape, C));
    const colourAt = new Set(wordTokenPositions(model.tokenizer, pair.caption, pair.scene.main.colour, C));
    if (inside.length === 0 || (shapeAt.size === 0 && colourAt.size === 0)) return;
    imagesUsed++;
    const best = bestTokens(images, i, captions, i);
    for (const p of inside) {
      const r = best[p]!;
      patches++;
      if (shapeAt.has(r)) shape++;
      if (colourAt.has(r)) colour++;
      if (shapeAt.has(r) || colourAt.has(r)) word++;
      chance += new Set([...shapeAt, ...colourAt]).size / captions.lengths[i]!;
    }
    const inBox = new Set(inside);
    best.forEach((r, p) => {
      if (inBox.has(p)) return;
      outsidePatches++;
      if (shapeAt.has(r) || colourAt.has(r)) outsideWord++;
    });
  });
  if (patches === 0) return null;
  return {
    images: imagesUsed,
    patches,
    word: word / patches,
    shape: shape / patches,
    colour: colour / patches,
    chance: chance / patches,
    outside: outsidePatches === 0 ? Number.NaN : outsideWord / outsidePatches,
  };
}

// ---- the command ----

/** `filip eval`: loads the checkpoint and the held-out pairs, evaluates, returns the report. */
export async function runEval(input: EvalInput, log: (line: string) => void = () => undefined): Promise<EvalReport> {
  const o = resolveEvalOptions(input);
  const backend = await selectBackend(o.backend);
  log(backend.reason);
  const model = await loadTrainedModel(o.checkpoint);
  try {
    log(`checkpoint ${model.path}: ${model.config.preset} model, step ${model.step}, trained with the ${model.loss} loss`);
    const pairs = await loadHeldOut(o.shards, o.corpus, o.limit);
    const labelled = pairs.filter((p) => p.scene).length;
    log(`held-out: ${pairs.length} pairs from ${o.shards}${o.corpus ? `, ${labelled} with scene labels from ${o.corpus}` : ''}`);
    return await evaluateModel(model, pairs, o, log);
  } finally {
    model.net.dispose();
  }
}

const pct = (x: number) => (Number.isNaN(x) ? '   -  ' : `${(100 * x).toFixed(1).padStart(5)}%`);

/** The report as a readable table. */
export function formatEvalReport(r: EvalReport): string {
  const lines = [
    `checkpoint ${r.checkpoint} (${r.preset}, step ${r.step}, ${r.trainedWith} loss), ${r.similarity} similarity, ${r.pairs} held-out pairs`,
  ];
  if (r.zeroShot.length > 0) {
    lines.push(`zero-shot (${r.templates} prompt templates, score = mean ${r.similarity} similarity over them):`);
    lines.push('  task     images  accuracy  chance');
    for (const z of r.zeroShot) lines.push(`  ${z.task.padEnd(8)} ${String(z.images).padStart(6)}  ${pct(z.accuracy)}    ${pct(z.chance)}`);
    for (const z of r.zeroShot) {
      lines.push(`  ${z.task} per label: ${Object.entries(z.perLabel).map(([l, v]) => `${l} ${pct(v.accuracy).trim()} of ${v.images}`).join(', ')}`);
    }
  }
  const rr = (x: RecallAtK) => `${pct(x.r1)}  ${pct(x.r5)}  ${pct(x.r10)}`;
  lines.push(`retrieval among the ${r.pairs} pairs (chance R@1 ${pct(1 / r.pairs).trim()}):`);
  lines.push('  direction        R@1     R@5     R@10');
  lines.push(`  image -> text  ${rr(r.retrieval.imageToText)}`);
  lines.push(`  text -> image  ${rr(r.retrieval.textToImage)}`);
  if (r.localisation) {
    const l = r.localisation;
    lines.push(
      `localisation: of ${l.patches} patches inside the main object (${l.images} images), best token is its shape or colour word ` +
        `${pct(l.word).trim()} (shape ${pct(l.shape).trim()}, colour ${pct(l.colour).trim()}; chance ${pct(l.chance).trim()}); ` +
        `outside the object ${pct(l.outside).trim()}`,
    );
  }
  return lines.join('\n');
}
