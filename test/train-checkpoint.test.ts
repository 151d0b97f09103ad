// Checkpoints: save -> load round trip, atomic writes (a torn temporary folder is ignored, a damaged
// complete one is refused), pruning, and a resumed optimisation that continues the uninterrupted loss
// curve (a small least-squares model trained with LAMB and the real schedule).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { FilipError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/random.js';
import {
  checkpointName,
  listCheckpoints,
  loadCheckpoint,
  saveCheckpoint,
  type Checkpoint,
} from '../src/train/checkpoint.js';
import { Optimizer, resolveOptimizerOptions } from '../src/train/optim.js';
import { learningRate, resolveScheduleOptions } from '../src/train/schedule.js';

let root: string;
before(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(join(tmpdir(), 'filip-ckpt-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

function randomArray(n: number, seed: number): Float32Array {
  const rng = mulberry32(seed);
  return Float32Array.from({ length: n }, () => rng() * 2 - 1);
}

function sampleCheckpoint(step: number): Checkpoint {
  return {
    step,
    config: { model: { preset: 'tiny', width: 8 }, train: { lr: 5e-4, batch: 4 } },
    weights: [
      { name: 'image/w', shape: [3, 5], data: randomArray(15, 1) },
      { name: 'text/b', shape: [7], data: randomArray(7, 2) },
    ],
    optimizer: {
      name: 'lamb',
      step,
      slots: [
        { variable: 'image/w', shape: [3, 5], m: randomArray(15, 3), v: randomArray(15, 4).map(Math.abs) },
        { variable: 'text/b', shape: [7], m: randomArray(7, 5), v: randomArray(7, 6).map(Math.abs) },
      ],
    },
    tokenizer: { kind: 'bpe', merges: ['a b', 'ab c'], vocab: 300 },
    dataPosition: { shard: 2, row: 17, epoch: 0 },
  };
}

describe('save and load', () => {
  test('load gives back identical weights, moments, step, config, tokenizer and data position', async () => {
    const dir = join(root, 'roundtrip');
    const ckpt = sampleCheckpoint(40);
    const path = await saveCheckpoint(dir, ckpt);
    assert.equal(path, join(dir, checkpointName(40)));
    const back = await loadCheckpoint(dir);
    assert.equal(back.step, 40);
    assert.deepEqual(back.config, ckpt.config);
    assert.deepEqual(back.tokenizer, ckpt.tokenizer);
    assert.deepEqual(back.dataPosition, ckpt.dataPosition);
    assert.deepEqual(back.weights.map((w) => [w.name, [...w.shape], Array.from(w.data)]), ckpt.weights.map((w) => [w.name, [...w.shape], Array.from(w.data)]));
    assert.equal(back.optimizer.name, 'lamb');
    assert.equal(back.optimizer.step, 40);
    assert.deepEqual(
      back.optimizer.slots.map((s) => [s.variable, Array.from(s.m), Array.from(s.v)]),
      ckpt.optimizer.slots.map((s) => [s.variable, Array.from(s.m), Array.from(s.v)]),
    );
    // The checkpoint folder itself can be named too.
    assert.equal((await loadCheckpoint(path)).step, 40);
  });

  test('a run folder resolves to its newest checkpoint; older ones beyond `keep` are removed', async () => {
    const dir = join(root, 'keep');
    for (const step of [10, 20, 30]) await saveCheckpoint(dir, sampleCheckpoint(step), { keep: 2 });
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.step), [20, 30]);
    assert.equal((await loadCheckpoint(dir)).step, 30);
  });

  test('saving the same step twice replaces the checkpoint', async () => {
    const dir = join(root, 'same-step');
    await saveCheckpoint(dir, sampleCheckpoint(5));
    const again = { ...sampleCheckpoint(5), dataPosition: { shard: 9 } };
    await saveCheckpoint(dir, again);
    assert.deepEqual((await loadCheckpoint(dir)).dataPosition, { shard: 9 });
    assert.deepEqual((await readdir(dir)).sort(), [checkpointName(5)]);
  });
});

describe('torn and damaged checkpoints', () => {
  test('a temporary folder left by a kill mid-save is ignored, then cleaned by the next save', async () => {
    const dir = join(root, 'torn');
    await saveCheckpoint(dir, sampleCheckpoint(100));
    // What a kill during the save of step 200 leaves: a temp folder with a partial tensors.bin.
    const temp = join(dir, `.${checkpointName(200)}.tmp`);
    await mkdir(temp);
    await writeFile(join(temp, 'tensors.bin'), Buffer.alloc(13));
    await writeFile(join(temp, 'checkpoint.json'), '{"format":"filip-chec');
    assert.equal((await loadCheckpoint(dir)).step, 100);
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.step), [100]);
    await saveCheckpoint(dir, sampleCheckpoint(300));
    assert.ok(!(await readdir(dir)).includes(`.${checkpointName(200)}.tmp`));
  });

  const damage: [string, (path: string) => Promise<void>, string | undefined][] = [
    ['truncated tensors.bin', (p) => truncate(join(p, 'tensors.bin'), 20), undefined],
    ['flipped bytes in tensors.bin', async (p) => {
      const { readFile } = await import('node:fs/promises');
      const bytes = await readFile(join(p, 'tensors.bin'));
      bytes[10] = bytes[10]! ^ 0xff;
      await writeFile(join(p, 'tensors.bin'), bytes);
    }, undefined],
    ['checkpoint.json not JSON', (p) => writeFile(join(p, 'checkpoint.json'), '{'), undefined],
    ['another format', (p) => writeFile(join(p, 'checkpoint.json'), '{"format":"other"}'), 'format'],
    ['a newer version', (p) => writeFile(join(p, 'checkpoint.json'), '{"format":"filip-checkpoint","version":99}'), 'version'],
  ];
  for (const [what, harm, field] of damage) {
    test(`a complete checkpoint with ${what} is FILIP_ERR_CHECKPOINT`, async () => {
      const dir = join(root, `damaged-${what.replace(/\W+/g, '-')}`);
      const path = await saveCheckpoint(dir, sampleCheckpoint(1));
      await harm(path);
      await assert.rejects(loadCheckpoint(path), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT' && (field === undefined || e.field === field));
    });
  }

  test('a folder without any checkpoint is FILIP_ERR_CHECKPOINT', async () => {
    const dir = join(root, 'empty');
    await mkdir(dir);
    await assert.rejects(loadCheckpoint(dir), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT');
  });
});

describe('resume', () => {
  // Least squares y = X w + b on data drawn from a seed; the batch of step s is a pure function of s,
  // as the trainer's augmentation and caption choice are. Gradients written out, so only the
  // optimiser, schedule and checkpoint are under test here.
  const features = 6;
  const batch = 8;
  const trueW = randomArray(features, 99);
  function batchOf(step: number): { x: tf.Tensor2D; y: tf.Tensor2D } {
    const x = randomArray(batch * features, 1000 + step);
    const y = Float32Array.from({ length: batch }, (_, i) => {
      let s = 0.5;
      for (let j = 0; j < features; j++) s += x[i * features + j]! * trueW[j]!;
      return s;
    });
    return { x: tf.tensor2d(x, [batch, features]), y: tf.tensor2d(y, [batch, 1]) };
  }

  const schedule = resolveScheduleOptions({ baseLr: 0.5, batch: 512, warmup: 5, steps: 40 });
  const options = resolveOptimizerOptions({ name: 'lamb', weightDecay: 0.01 });

  class Run {
    readonly w = tf.variable(tf.tensor2d(randomArray(features, 7), [features, 1]), true, `w${Math.random()}`);
    readonly b = tf.variable(tf.zeros([1]), true, `b${Math.random()}`);
    readonly opt = new Optimizer([this.w, this.b], options, (v) => v === this.b);
    step = 0;

    train(until: number): number[] {
      const losses: number[] = [];
      while (this.step < until) {
        const s = ++this.step;
        const { x, y } = batchOf(s);
        const { loss, grads } = tf.tidy(() => {
          const err = tf.sub(tf.add(tf.matMul(x, this.w), this.b), y);
          const scale = 2 / batch;
          return {
            loss: tf.mean(tf.square(err)),
            grads: { [this.w.name]: tf.mul(tf.matMul(x, err, true, false), scale), [this.b.name]: tf.mul(tf.sum(err, 0), scale) },
          };
        });
        losses.push(loss.dataSync()[0]!);
        this.opt.applyGradients(grads, learningRate(s, schedule));
        tf.dispose([x, y, loss, ...Object.values(grads)]);
      }
      return losses;
    }

    checkpoint(): Checkpoint {
      return {
        step: this.step,
        config: { schedule, options },
        weights: [this.w, this.b].map((v) => ({ name: v === this.w ? 'w' : 'b', shape: v.shape, data: Float32Array.from(v.dataSync()) })),
        optimizer: (() => {
          const s = this.opt.exportState();
          return { ...s, slots: s.slots.map((slot) => ({ ...slot, variable: slot.variable === this.w.name ? 'w' : 'b' })) };
        })(),
        tokenizer: null,
        dataPosition: { step: this.step },
      };
    }

    restore(ckpt: Checkpoint): void {
      this.step = ckpt.step;
      for (const w of ckpt.weights) (w.name === 'w' ? this.w : this.b).assign(tf.tensor(w.data, [...w.shape]));
      this.opt.importState({
        ...ckpt.optimizer,
        slots: ckpt.optimizer.slots.map((s) => ({ ...s, variable: s.variable === 'w' ? this.w.name : this.b.name })),
      });
    }

    dispose(): void {
      this.opt.dispose();
      tf.dispose([this.w, this.b]);
    }
  }

  test('the step after resume equals the uninterrupted run, and so does the rest of the curve', async () => {
    const whole = new Run();
    const curve = whole.train(40);
    whole.dispose();
    assert.ok(curve[39]! < curve[0]! / 10, `the toy model learns: ${curve[0]} -> ${curve[39]}`);

    const first = new Run();
    const head = first.train(17);
    const dir = join(root, 'resume');
    await saveCheckpoint(dir, first.checkpoint());
    first.dispose();

    const second = new Run();
    const ckpt = await loadCheckpoint(dir);
    second.restore(ckpt);
    assert.equal(second.step, 17);
    const tail = second.train(40);
    second.dispose();

    const resumed = [...head, ...tail];
    assert.equal(resumed.length, curve.length);
    for (let i = 0; i < curve.length; i++) {
      assert.ok(Math.abs(resumed[i]! - curve[i]!) <= 1e-6 * Math.max(1, curve[i]!), `step ${i + 1}: resumed ${resumed[i]}, uninterrupted ${curve[i]}`);
    }
  });
});
