// Diagnostic for the learning check (src/train/learn-check.ts): can the `tiny` vision tower learn the
// single-object scenes' shapes at all when told them directly? A linear head on the tower's [CLS]
// embedding, trained with cross-entropy on the shape labels of the first --train scenes (Adam, batch
// 32), scored on the rest every 50 steps. If this learns and the contrastive runs do not, the weak part
// is the contrastive signal, not the tower's capacity or the pictures.
//   tsx scripts/shape-probe.ts --singles runs/learn-check/singles [--steps 800] [--train 900] [--lr 1e-3]
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import * as tf from '@tensorflow/tfjs-core';

import { mulberry32 } from '../src/core/random.js';
import type { DemoScene } from '../src/demo/corpus.js';
import { DEMO_SHAPES } from '../src/demo/scene.js';
import { selectBackend } from '../src/train/backend.js';
import { decodeToSquare, normaliseInto } from '../src/train/data.js';
import { FilipModel, modelConfig } from '../src/train/model.js';

const { values } = parseArgs({
  options: {
    singles: { type: 'string', default: 'runs/learn-check/singles' },
    steps: { type: 'string', default: '800' },
    train: { type: 'string', default: '900' },
    lr: { type: 'string', default: '1e-3' },
    size: { type: 'string', default: '64' },
    seed: { type: 'string', default: '7' },
  },
});
const steps = Number(values.steps);
const nTrain = Number(values.train);
const size = Number(values.size);
const seed = Number(values.seed);

const selection = await selectBackend('auto');
console.log(`backend ${selection.backend}`);
const { scenes } = JSON.parse(await readFile(join(values.singles, 'singles.json'), 'utf8')) as { scenes: DemoScene[] };
if (scenes.length <= nTrain) throw new Error(`${values.singles} holds ${scenes.length} scenes; --train ${nTrain} leaves none to score`);
const pixels = new Float32Array(scenes.length * size * size * 3);
for (const [i, s] of scenes.entries()) {
  normaliseInto(await decodeToSquare(await readFile(join(values.singles, s.file)), size), pixels, i * size * size * 3);
}
const labels = scenes.map((s) => DEMO_SHAPES.indexOf(s.main.shape));
const images = tf.tensor4d(pixels, [scenes.length, size, size, 3]);

const model = new FilipModel(modelConfig('tiny', { imageSize: size, vocabSize: 1000 }), seed);
const head = tf.variable(tf.mul(tf.randomNormal([model.config.embedDim, DEMO_SHAPES.length], 0, 1, 'float32', seed), 0.05));
const optimizer = tf.train.adam(Number(values.lr));
const logits = (x: tf.Tensor4D) => tf.mul(tf.matMul(model.encodeImage(x).global, head), 10);

function accuracy(from: number, to: number): number {
  return tf.tidy(() => {
    const x = tf.slice(images, [from, 0, 0, 0], [to - from, size, size, 3]) as tf.Tensor4D;
    const predicted = tf.argMax(logits(x), 1).dataSync();
    let correct = 0;
    predicted.forEach((p, i) => (correct += p === labels[from + i] ? 1 : 0));
    return correct / predicted.length;
  });
}

const rng = mulberry32(seed);
const started = performance.now();
for (let step = 1; step <= steps; step++) {
  const rows = Array.from({ length: 32 }, () => Math.floor(rng() * nTrain));
  const loss = optimizer.minimize(
    () =>
      tf.tidy(() => {
        const x = tf.gather(images, rows) as tf.Tensor4D;
        const y = tf.oneHot(tf.tensor1d(rows.map((r) => labels[r]!), 'int32'), DEMO_SHAPES.length);
        return tf.losses.softmaxCrossEntropy(y, logits(x)) as tf.Scalar;
      }),
    true,
    [...model.variables, head],
  );
  if (step % 50 === 0 || step === steps) {
    const value = (await loss!.data())[0]!;
    const train = accuracy(0, Math.min(300, nTrain));
    const held = accuracy(nTrain, scenes.length);
    const seconds = (performance.now() - started) / 1000;
    console.log(`step ${step}  loss ${value.toFixed(3)}  shape accuracy: training ${(100 * train).toFixed(1)}%  held out ${(100 * held).toFixed(1)}%  (chance 20%)  ${seconds.toFixed(0)} s`);
  }
  loss?.dispose();
}
