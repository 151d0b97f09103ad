// Proof that training learns, and the paper's ablation replayed at toy scale: on the demo's generated
// scenes, split into training and held-out scenes, train the same model twice with the same data,
// seed, schedule and number of steps, once with FILIP's token-wise loss and once with CLIP's global
// loss; then evaluate both on the held-out scenes (zero-shot shape and colour of the main object,
// retrieval, and word-patch localisation) and print the figures side by side.
//
//   corpus (generateDemoCorpus) -> train.tsv / heldout.tsv (file:// URLs, scene_id kept)
//     -> ingest -> train shards / held-out shards -> Trainer(loss) x 2 -> evaluateModel x 2
//
// Everything is seeded, so a rerun with the same options gives the same figures on the same backend.

import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { choiceOption, intOption, invalid, numberOption, rejectUnknownKeys, stringOption } from '../core/options.js';
import { mulberry32 } from '../core/random.js';
import { generateDemoCorpus, loadDemoCorpus, type DemoCorpus, type DemoScene } from '../demo/corpus.js';
import { runIngest } from '../pipeline/ingest.js';
import { BACKEND_CHOICES, type BackendChoice } from './backend.js';
import { LOSS_NAMES, type LossName } from './config.js';
import { evaluateModel, loadHeldOut, loadTrainedModel, PROMPT_TEMPLATES, type EvalReport } from './eval.js';
import { MODEL_PRESETS, type ModelPreset } from './model.js';
import { Trainer, type TrainResult } from './trainer.js';

export interface LearnCheckOptions {
  /** Work folder: corpus, shards, one run folder per loss, learn-check.json. Required. */
  readonly out: string;
  /**
   * Good scenes generated (the corpus's planted bad rows are not used).
   * @default 1000
   */
  readonly scenes: number;
  /**
   * Share of the scenes held out for evaluation.
   * @default 0.25
   */
  readonly heldOut: number;
  /**
   * Seeds the corpus, the split, the weights and the data order.
   * @default 7
   */
  readonly seed: number;
  /**
   * Model preset (`MODEL_PRESETS`).
   * @default 'tiny'
   */
  readonly preset: ModelPreset;
  /**
   * Updates per run (the same for every loss).
   * @default 300
   */
  readonly steps: number;
  /**
   * Pairs per update.
   * @default 32
   */
  readonly batch: number;
  /**
   * Base learning rate (peak = lr * sqrt(batch / 512)).
   * @default 4e-3
   */
  readonly lr: number;
  /**
   * Updates of warm-up.
   * @default 20
   */
  readonly warmup: number;
  /**
   * Side of the model's input in pixels (a multiple of the preset's 8-pixel patches); null keeps the
   * preset's (tiny: 32, 4x4 patches). 48 gives tiny 6x6 patches, enough to tell the demo's shapes apart.
   * @default 48
   */
  readonly imageSize: number | null;
  /**
   * Shorter side of the images stored in the shards (the model crops its own square from them).
   * @default 64
   */
  readonly imageSide: number;
  /**
   * Losses compared, each a run of its own (`LOSSES`).
   * @default ['filip', 'clip']
   */
  readonly losses: readonly LossName[];
  /**
   * Compute backend (`BACKEND_CHOICES`).
   * @default 'auto'
   */
  readonly backend: BackendChoice;
}

export type LearnCheckInput = Partial<LearnCheckOptions> & Pick<LearnCheckOptions, 'out'>;

export const DEFAULT_LEARN_CHECK_OPTIONS: Omit<LearnCheckOptions, 'out'> = Object.freeze({
  scenes: 1000,
  heldOut: 0.25,
  seed: 7,
  preset: 'tiny' as ModelPreset,
  steps: 300,
  batch: 32,
  lr: 4e-3,
  warmup: 20,
  imageSize: 48,
  imageSide: 64,
  losses: Object.freeze(['filip', 'clip']) as readonly LossName[],
  backend: 'auto' as BackendChoice,
});

export function resolveLearnCheckOptions(input: LearnCheckInput): LearnCheckOptions {
  if (input === null || typeof input !== 'object') throw invalid('learn-check options', 'an object', input);
  rejectUnknownKeys('learn-check', input, { out: '', ...DEFAULT_LEARN_CHECK_OPTIONS });
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const o = { ...DEFAULT_LEARN_CHECK_OPTIONS, ...given } as LearnCheckOptions;
  if (!Array.isArray(o.losses) || o.losses.length === 0) throw invalid('losses', `a non-empty list of ${LOSS_NAMES.join(', ')}`, o.losses);
  const heldOut = numberOption('heldOut', o.heldOut, 0, 1);
  if (heldOut <= 0 || heldOut >= 1) throw invalid('heldOut', 'a fraction strictly between 0 and 1', heldOut);
  return Object.freeze({
    out: stringOption('out', o.out),
    scenes: intOption('scenes', o.scenes, 30, 100_000),
    heldOut,
    seed: intOption('seed', o.seed, 0, 0xffffffff),
    preset: choiceOption('preset', o.preset, MODEL_PRESETS),
    steps: intOption('steps', o.steps, 1),
    batch: intOption('batch', o.batch, 2),
    lr: numberOption('lr', o.lr, 0),
    warmup: intOption('warmup', o.warmup, 0),
    imageSize: o.imageSize === null ? null : intOption('imageSize', o.imageSize, 8, 4096),
    imageSide: intOption('imageSide', o.imageSide, 8, 4096),
    losses: Object.freeze([...new Set(o.losses.map((l: unknown) => choiceOption('losses', l, LOSS_NAMES)))]),
    backend: choiceOption('backend', o.backend, BACKEND_CHOICES),
  });
}

export interface LearnCheckRun {
  readonly loss: LossName;
  readonly train: Pick<TrainResult, 'step' | 'pairsPerSec' | 'checkpoint' | 'parameters'> & {
    readonly firstLoss: number;
    readonly lastLoss: number;
    readonly seconds: number;
  };
  readonly eval: EvalReport;
}

export interface LearnCheckReport {
  readonly options: LearnCheckOptions;
  readonly trainScenes: number;
  readonly heldOutScenes: number;
  readonly runs: readonly LearnCheckRun[];
}

/** The demo corpus of `o`, reused when the folder already holds it. */
async function corpusFor(dir: string, seed: number, scenes: number): Promise<DemoCorpus> {
  try {
    const c = await loadDemoCorpus(dir);
    if (c.seed === seed && c.scenes.filter((s) => s.copyOf === undefined).length === scenes) return c;
  } catch {
    // none yet
  }
  return generateDemoCorpus(dir, { seed, scenes });
}

async function writeManifest(file: string, corpusDir: string, scenes: readonly DemoScene[]): Promise<void> {
  const lines = ['url\tcaption\tscene_id'];
  for (const s of scenes) lines.push(`${pathToFileURL(resolve(corpusDir, s.file)).href}\t${s.description}\t${s.id}`);
  await writeFile(file, `${lines.join('\n')}\n`);
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** Runs the whole check; `log` receives progress and the trainers' lines. */
export async function runLearnCheck(input: LearnCheckInput, log: (line: string) => void = () => undefined): Promise<LearnCheckReport> {
  const o = resolveLearnCheckOptions(input);
  await mkdir(o.out, { recursive: true });

  // ---- data: the demo's scenes, split by a seeded shuffle ----
  const corpusDir = join(o.out, 'corpus');
  log(`generating ${o.scenes} demo scenes (seed ${o.seed}) in ${corpusDir}`);
  const corpus = await corpusFor(corpusDir, o.seed, o.scenes);
  // Planted near-duplicates would put copies of training scenes into the held-out set: leave them out.
  const scenes = corpus.scenes.filter((s) => s.copyOf === undefined);
  const rng = mulberry32(o.seed ^ 0x5eed);
  const order = scenes.map((s) => ({ s, r: rng() })).sort((a, b) => a.r - b.r).map((x) => x.s);
  const nHeld = Math.max(1, Math.round(order.length * o.heldOut));
  const heldScenes = order.slice(0, nHeld);
  const trainScenes = order.slice(nHeld);
  const shardsOf = { train: join(o.out, 'train-shards'), heldout: join(o.out, 'heldout-shards') };
  for (const [name, list] of [['train', trainScenes], ['heldout', heldScenes]] as const) {
    const manifest = join(o.out, `${name}.tsv`);
    await writeManifest(manifest, corpusDir, list);
    const r = await runIngest({
      inputs: [manifest],
      output: shardsOf[name],
      overwrite: true,
      shardSize: 256,
      progress: 'none',
      manifest: { keepCols: ['scene_id'] },
      image: { resizeMode: 'keep-ratio', size: o.imageSide },
    });
    log(`${name}: ${list.length} scenes -> ${r.ok} pairs in ${shardsOf[name]}${r.rejected > 0 ? ` (${r.rejected} rejected)` : ''}`);
  }
  const heldOut = await loadHeldOut(shardsOf.heldout, corpusDir);

  // ---- one run per loss, everything else equal ----
  const runs: LearnCheckRun[] = [];
  for (const loss of o.losses) {
    const runDir = join(o.out, `run-${loss}`);
    log(`training ${o.preset} with the ${loss} loss: ${o.steps} steps of ${o.batch} pairs -> ${runDir}`);
    const started = performance.now();
    const trainer = new Trainer(
      {
        shards: shardsOf.train,
        out: runDir,
        preset: o.preset,
        ...(o.imageSize === null ? {} : { modelOverrides: { imageSize: o.imageSize } }),
        loss,
        steps: o.steps,
        batch: o.batch,
        lr: o.lr,
        warmup: Math.min(o.warmup, o.steps),
        optimizer: 'adamw',
        weightDecay: 0.1,
        seed: o.seed,
        backend: o.backend,
        // The corpus is small and its captions few: a small learned vocabulary, and no augmentation
        // (AutoAugment's colour operations would change the very colours the captions name).
        vocabSize: 1000,
        augment: 'none',
        shuffleBuffer: 256,
        saveEvery: 0,
        keepCheckpoints: 1,
        logEvery: Math.max(1, Math.floor(o.steps / 10)),
        progress: 'none',
      },
      { stream: { write: (chunk: string) => (log(String(chunk).replace(/\n$/, '')), true) } as unknown as NodeJS.WritableStream },
    );
    const result = await trainer.run();
    const seconds = (performance.now() - started) / 1000;
    const model = await loadTrainedModel(runDir);
    let report: EvalReport;
    try {
      report = await evaluateModel(model, heldOut, { labels: ['shape', 'colour'], similarity: 'auto', templates: PROMPT_TEMPLATES, batch: 64 });
    } finally {
      model.net.dispose();
    }
    const k = Math.max(1, Math.min(10, Math.floor(result.losses.length / 5)));
    runs.push({
      loss,
      train: {
        step: result.step,
        pairsPerSec: result.pairsPerSec,
        checkpoint: result.checkpoint,
        parameters: result.parameters,
        firstLoss: mean(result.losses.slice(0, k)),
        lastLoss: mean(result.losses.slice(-k)),
        seconds,
      },
      eval: report,
    });
  }
  const report: LearnCheckReport = { options: o, trainScenes: trainScenes.length, heldOutScenes: heldScenes.length, runs };
  await writeFile(join(o.out, 'learn-check.json'), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

/** The runs side by side, one column per loss. */
export function formatLearnCheck(r: LearnCheckReport): string {
  const pct = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '-' : `${(100 * x).toFixed(1)}%`);
  const o = r.options;
  const rows: [string, ...string[]][] = [];
  const col = (name: string, f: (run: LearnCheckRun) => string) => rows.push([name, ...r.runs.map(f)]);
  const zs = (run: LearnCheckRun, task: string) => run.eval.zeroShot.find((z) => z.task === task);
  col('train loss (first -> last)', (x) => `${x.train.firstLoss.toFixed(3)} -> ${x.train.lastLoss.toFixed(3)}`);
  col('train pairs/s', (x) => x.train.pairsPerSec.toFixed(1));
  col('similarity at eval', (x) => x.eval.similarity);
  col(`zero-shot shape (chance ${pct(1 / 5)})`, (x) => pct(zs(x, 'shape')?.accuracy));
  col(`zero-shot colour (chance ${pct(1 / 6)})`, (x) => pct(zs(x, 'colour')?.accuracy));
  col('image->text R@1 / R@5', (x) => `${pct(x.eval.retrieval.imageToText.r1)} / ${pct(x.eval.retrieval.imageToText.r5)}`);
  col('text->image R@1 / R@5', (x) => `${pct(x.eval.retrieval.textToImage.r1)} / ${pct(x.eval.retrieval.textToImage.r5)}`);
  col('localisation: word', (x) => pct(x.eval.localisation?.word));
  col('  shape word / colour word', (x) => `${pct(x.eval.localisation?.shape)} / ${pct(x.eval.localisation?.colour)}`);
  col('  chance', (x) => pct(x.eval.localisation?.chance));
  col('  control: same word, patches outside', (x) => pct(x.eval.localisation?.outside));
  const widths = [0, ...r.runs.map(() => 0)].map((_, c) => Math.max(...[['', ...r.runs.map((x) => x.loss)], ...rows].map((row) => row[c]!.length)));
  const line = (row: readonly string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('   ');
  return [
    `learn check: ${o.preset}${o.imageSize === null ? '' : ` at ${o.imageSize}px`}, ${o.steps} steps x ${o.batch} pairs on ${r.trainScenes} training scenes; ` +
      `evaluated on ${r.heldOutScenes} held-out scenes (${r.runs[0]?.eval.pairs ?? 0} pairs)`,
    line(['', ...r.runs.map((x) => x.loss)]),
    ...rows.map(line),
  ].join('\n');
}
