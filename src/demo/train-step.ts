// The demo's last step: a short training run of the `tiny` model on the demo's final shards, then one
// word-patch alignment picture of a demo scene written into the demo folder, so `npm run demo` ends
// with a model that has seen its own data and a picture of what it matched.

import path from 'node:path';

import { alignImage, renderAlignment } from '../train/align.js';
import { loadTrainedModel } from '../train/eval.js';
import { Trainer, type TrainResult } from '../train/trainer.js';
import type { DemoCorpus } from './corpus.js';
import { promises as fs } from 'node:fs';

export interface DemoTrainStepOptions {
  /** Updates of the short run. @default 80 */
  readonly steps: number;
  /** Pairs per update. @default 32 */
  readonly batch: number;
  /** @default 1 */
  readonly seed: number;
}

export const DEFAULT_DEMO_TRAIN_STEP: DemoTrainStepOptions = Object.freeze({ steps: 80, batch: 32, seed: 1 });

export interface DemoTrainStepResult {
  readonly train: TrainResult;
  readonly runDir: string;
  /** The alignment picture, and the prompt it shows. */
  readonly picture: string;
  readonly prompt: string;
}

/**
 * Trains on `shardDir` into `<output>/train`, then draws `<output>/align.png` for the first scene of
 * the corpus with the prompt "a <colour> <shape>" of its main object.
 */
export async function demoTrainStep(
  shardDir: string,
  corpus: DemoCorpus,
  output: string,
  say: (line: string) => void,
  partial: Partial<DemoTrainStepOptions> = {},
): Promise<DemoTrainStepResult> {
  const o = { ...DEFAULT_DEMO_TRAIN_STEP, ...partial };
  const runDir = path.join(output, 'train');
  say(`train (tiny, FILIP loss, ${o.steps} steps of ${o.batch}) -> ${runDir}`);
  const trainer = new Trainer(
    {
      shards: shardDir,
      out: runDir,
      // The demo starts afresh each time, as its other stages do.
      overwrite: true,
      preset: 'tiny',
      loss: 'filip',
      steps: o.steps,
      batch: o.batch,
      // The recipe of the learning check (src/train/learn-check.ts): AdamW at a peak of 1e-3.
      lr: 4e-3,
      warmup: 20,
      optimizer: 'adamw',
      weightDecay: 0.1,
      vocabSize: 1000,
      augment: 'none',
      shuffleBuffer: 256,
      saveEvery: 0,
      keepCheckpoints: 1,
      logEvery: Math.max(1, Math.floor(o.steps / 5)),
      seed: o.seed,
      progress: 'none',
    },
    { stream: { write: (chunk: string) => (say(`  ${String(chunk).replace(/\n$/, '')}`), true) } as unknown as NodeJS.WritableStream },
  );
  const train = await trainer.run();

  const scene = corpus.scenes.find((s) => s.copyOf === undefined)!;
  const prompt = `a ${scene.main.colour} ${scene.main.shape}`;
  const bytes = await fs.readFile(path.join(corpus.dir, scene.file));
  const model = await loadTrainedModel(runDir);
  const picture = path.join(output, 'align.png');
  try {
    const map = await alignImage(model, bytes, prompt, [scene.main.colour, scene.main.shape]);
    await fs.writeFile(picture, await renderAlignment(bytes, map, 64));
    const on = map.highlights.map((h) => `${h.word} ${map.best.filter((b) => h.positions.includes(b)).length}`).join(', ');
    say(`alignment picture of ${scene.file} with "${prompt}" -> ${picture} (patches on: ${on} of ${map.best.length})`);
  } finally {
    model.net.dispose();
  }
  return { train, runDir, picture, prompt };
}
