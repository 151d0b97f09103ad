// Backend selection (auto, explicit, unavailable, unknown), the UnsortedSegmentSum kernel added to
// the wasm backend, and a few real training steps on every available backend: the loss goes down,
// the step really ran on that backend, and none of its kernels is missing there.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { mulberry32 } from '../src/core/random.js';
import { BACKEND_CHOICES, missingKernels, selectBackend } from '../src/train/backend.js';
import { filipLoss } from '../src/train/loss.js';
import { FilipModel, modelConfig } from '../src/train/model.js';

const tfjsNodeInstalled = await import('@tensorflow/tfjs-node' as string).then(
  () => true,
  () => false,
);

describe('selectBackend', () => {
  test('auto picks tfjs-node where installed, else WebAssembly with SIMD, and says why', async () => {
    const s = await selectBackend('auto');
    assert.equal(s.requested, 'auto');
    assert.equal(tf.getBackend(), s.backend);
    if (tfjsNodeInstalled) {
      assert.equal(s.backend, 'tensorflow');
    } else {
      assert.equal(s.backend, 'wasm');
      assert.equal(s.simd, true);
      assert.ok(s.threads >= 1);
      assert.match(s.reason, /tfjs-node/);
      assert.deepEqual(s.addedKernels, ['UnsortedSegmentSum']);
    }
  });

  test('cpu and wasm on request', async () => {
    assert.equal((await selectBackend('cpu')).backend, 'cpu');
    assert.equal(tf.getBackend(), 'cpu');
    assert.equal((await selectBackend('wasm')).backend, 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
  });

  test('a backend that cannot load is FILIP_ERR_BACKEND, never a silent fallback', async () => {
    await selectBackend('wasm');
    await assert.rejects(selectBackend('webgpu'), { code: 'FILIP_ERR_BACKEND' });
    if (!tfjsNodeInstalled) await assert.rejects(selectBackend('tensorflow'), { code: 'FILIP_ERR_BACKEND' });
    assert.equal(tf.getBackend(), 'wasm');
  });

  const BAD: unknown[] = ['gpu', '', 'WASM', 3, null];
  for (const name of BAD) {
    test(`backend ${JSON.stringify(name)} is FILIP_ERR_INVALID_OPTION`, async () => {
      await assert.rejects(selectBackend(name as never), { code: 'FILIP_ERR_INVALID_OPTION' });
    });
  }

  test('the choices are the documented five', () => {
    assert.deepEqual([...BACKEND_CHOICES], ['auto', 'wasm', 'cpu', 'tensorflow', 'webgpu']);
  });
});

describe('wasm kernels', () => {
  test('UnsortedSegmentSum on wasm and cpu (both ours) equals a plain loop (repeated ids, dropped out-of-range ids)', async () => {
    const random = mulberry32(3);
    const rows = 40;
    const values = Array.from({ length: rows * 7 }, () => random() * 2 - 1);
    const ids = Array.from({ length: rows }, (_, i) => (i % 9 === 0 ? -1 : i % 13 === 0 ? 99 : Math.floor(random() * 6)));
    const run = () =>
      tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d(values, [rows, 7]), tf.tensor1d(ids, 'int32'), 6).arraySync());
    const expected = Array.from({ length: 6 }, () => new Array<number>(7).fill(0));
    ids.forEach((id, r) => {
      if (id >= 0 && id < 6) for (let k = 0; k < 7; k++) expected[id]![k]! += values[r * 7 + k]!;
    });
    for (const backend of ['cpu', 'wasm'] as const) {
      await selectBackend(backend);
      const got = run();
      assert.equal(got.length, 6);
      got.forEach((row, s) => row.forEach((v, k) => assert.ok(Math.abs(v - expected[s]![k]!) < 1e-5, `${backend} ${s},${k}`)));
    }
    // and it is the gradient of gather, i.e. of the token embedding
    const table = tf.variable(tf.ones([5, 3]), true, 'gather_test_table');
    const { grads } = tf.variableGrads(() => tf.sum(tf.gather(table, tf.tensor1d([0, 2, 2, 4], 'int32'))));
    assert.deepEqual((grads['gather_test_table']!.arraySync() as number[][]).map((r) => r[0]), [1, 0, 2, 0, 1]);
    tf.dispose([table, ...Object.values(grads)]);
  });
});

describe('registered gradients', () => {
  // Each kernel's gradient against central differences of sum(w * op(x)) with a fixed random w,
  // on the plain backend. Inputs are kept away from kinks (distinct values for max/min, positive
  // values for sqrt/log/div).
  const random = mulberry32(17);
  const values = (shape: number[], lo = -1, hi = 1) =>
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => lo + (hi - lo) * random());
  type Case = [string, (...xs: tf.Tensor[]) => tf.Tensor, [number[], number, number][]];
  const any = (shape: number[]): [number[], number, number] => [shape, -1, 1];
  const positive = (shape: number[]): [number[], number, number] => [shape, 0.5, 2];
  const CASES: Case[] = [
    ['Add (broadcast)', (a, b) => tf.add(a!, b!), [any([2, 3]), any([3])]],
    ['Sub (broadcast)', (a, b) => tf.sub(a!, b!), [any([2, 3]), any([2, 1])]],
    ['Multiply (broadcast)', (a, b) => tf.mul(a!, b!), [any([2, 3]), any([1, 3])]],
    ['RealDiv', (a, b) => tf.div(a!, b!), [any([2, 3]), positive([2, 3])]],
    ['Minimum', (a, b) => tf.minimum(a!, b!), [any([2, 3]), any([2, 3])]],
    ['Maximum', (a, b) => tf.maximum(a!, b!), [any([2, 3]), any([2, 3])]],
    ['Neg', (a) => tf.neg(a!), [any([4])]],
    ['Square', (a) => tf.square(a!), [any([4])]],
    ['Sqrt', (a) => tf.sqrt(a!), [positive([4])]],
    ['Rsqrt', (a) => tf.rsqrt(a!), [positive([4])]],
    ['Exp', (a) => tf.exp(a!), [any([4])]],
    ['Log', (a) => tf.log(a!), [positive([4])]],
    ['Erf', (a) => tf.erf(a!), [any([4])]],
    ['Tanh', (a) => tf.tanh(a!), [any([4])]],
    ['Reshape', (a) => tf.reshape(a!, [3, 2]), [any([2, 3])]],
    ['ExpandDims', (a) => tf.expandDims(a!, 1), [any([2, 3])]],
    ['Transpose', (a) => tf.transpose(a!, [2, 0, 1]), [any([2, 3, 4])]],
    ['Sum', (a) => tf.sum(a!, 1), [any([2, 3, 2])]],
    ['Mean', (a) => tf.mean(a!, [0, 2], true), [any([2, 3, 2])]],
    ['Max', (a) => tf.max(a!, 1), [any([3, 4])]],
    ['Softmax', (a) => tf.softmax(a!), [any([2, 4])]],
    ['BatchMatMul', (a, b) => tf.matMul(a!, b!), [any([2, 3, 4]), any([2, 4, 2])]],
    ['BatchMatMul (b transposed)', (a, b) => tf.matMul(a!, b!, false, true), [any([2, 3, 4]), any([2, 2, 4])]],
    ['BatchMatMul (a transposed)', (a, b) => tf.matMul(a!, b!, true, false), [any([2, 4, 3]), any([2, 4, 2])]],
    ['BatchMatMul (both transposed)', (a, b) => tf.matMul(a!, b!, true, true), [any([4, 3]), any([2, 4])]],
    ['GatherV2', (a) => tf.gather(a!, tf.tensor1d([0, 3, 3, 1], 'int32')), [any([5, 2])]],
    ['Slice', (a) => tf.slice(a!, [1, 0], [2, -1]), [any([4, 3])]],
    ['SplitV', (a) => { const [p, q] = tf.split(a!, [1, 2], 1); return tf.concat([tf.mul(p!, 2), q!], 1); }, [any([2, 3])]],
    ['Concat', (a, b) => tf.concat([a!, b!], 0), [any([1, 3]), any([2, 3])]],
  ];
  for (const [name, op, specs] of CASES) {
    test(`${name}: analytic gradient = central differences`, async () => {
      await selectBackend('cpu');
      const inputs = specs.map(([shape, lo, hi]) => ({ shape, data: values(shape, lo, hi) }));
      const outShape = tf.tidy(() => op(...inputs.map((x) => tf.tensor(x.data, x.shape))).shape);
      const w = tf.tensor(values(outShape), outShape);
      const loss = (...xs: tf.Tensor[]) => tf.sum(tf.mul(op(...xs), w));
      const analytic = tf.tidy(() => tf.grads(loss)(inputs.map((x) => tf.tensor(x.data, x.shape))).map((g) => [...g.dataSync()]));
      const eps = 1e-2;
      inputs.forEach((input, k) => {
        input.data.forEach((_, i) => {
          const at = (delta: number) =>
            tf.tidy(() => {
              const xs = inputs.map((x, j) => {
                const data = [...x.data];
                if (j === k) data[i]! += delta;
                return tf.tensor(data, x.shape);
              });
              return loss(...xs).dataSync()[0]!;
            });
          const fd = (at(eps) - at(-eps)) / (2 * eps);
          const got = analytic[k]![i]!;
          assert.ok(Math.abs(got - fd) <= 2e-3 + 2e-2 * Math.abs(fd), `input ${k}[${i}]: analytic ${got} vs ${fd}`);
        });
      });
      w.dispose();
    });
  }
});

describe('training steps on every available backend', () => {
  const backends = ['cpu', 'wasm', ...(tfjsNodeInstalled ? ['tensorflow'] : [])] as const;
  for (const backend of backends) {
    test(`${backend}: plain SGD lowers the FILIP loss, every kernel runs on ${backend}`, async (t) => {
      const selection = await selectBackend(backend as 'cpu');
      assert.equal(selection.backend, backend);
      const warnings: string[] = [];
      const warn = console.warn;
      console.warn = (...args: unknown[]) => void warnings.push(args.join(' '));
      const model = new FilipModel(modelConfig('tiny', { vocabSize: 64, contextLength: 8 }), 9);
      const images = tf.randomNormal([4, 32, 32, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
      const ids = tf.tensor2d([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0], [1, 8, 9, 10, 11, 2], [1, 12, 2, 0, 0, 0]], undefined, 'int32');
      const lengths = tf.tensor1d([4, 3, 6, 3], 'int32');
      const step = () =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() =>
            filipLoss(model.encodeImage(images), model.encodeText(ids, lengths), model.logitScale),
          );
          for (const v of model.variables) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 0.05)));
          return value.dataSync()[0]!;
        });
      try {
        const profile = await tf.profile(() => void step());
        const kernels = new Set(profile.kernels.map((k) => k.name));
        assert.deepEqual(missingKernels(kernels, backend), []);
        for (const k of ['BatchMatMul', 'Softmax', 'Erf', 'GatherV2', 'UnsortedSegmentSum', 'Max']) assert.ok(kernels.has(k), k);
        const started = Date.now();
        const losses: number[] = [];
        for (let i = 0; i < 6; i++) losses.push(step());
        t.diagnostic(`${backend}: losses ${losses.map((l) => l.toFixed(3)).join(' ')}, ${((Date.now() - started) / 6).toFixed(0)} ms/step`);
        assert.equal(tf.getBackend(), backend);
        assert.ok(losses.every(Number.isFinite));
        assert.ok(losses.at(-1)! < 0.8 * losses[0]!, `loss ${losses[0]} -> ${losses.at(-1)}`);
        assert.deepEqual(warnings, []);
      } finally {
        console.warn = warn;
        tf.dispose([images, ids, lengths]);
        model.dispose();
      }
    });
  }
});
