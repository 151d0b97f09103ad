// LAMB and AdamW against updates worked out here element by element, clipping by the global norm,
// state export/import, and bad options.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

import { FilipError } from '../src/core/errors.js';
import { Optimizer, resolveOptimizerOptions, type OptimizerOptions } from '../src/train/optim.js';

before(async () => {
  await tf.setBackend('cpu');
});

function close(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-6, what = ''): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const diff = Math.abs(actual[i]! - expected[i]!);
    assert.ok(diff <= tol * Math.max(1, Math.abs(expected[i]!)), `${what}[${i}]: got ${actual[i]}, expected ${expected[i]}`);
  }
}

const norm = (xs: readonly number[]): number => Math.sqrt(xs.reduce((s, x) => s + x * x, 0));

/**
 * The textbook update in plain numbers, for any number of steps: Adam moments with bias correction,
 * decoupled decay, and LAMB's ||w|| / ||update|| on decayed variables.
 */
function reference(
  o: OptimizerOptions,
  w0: readonly number[],
  gradsPerStep: readonly (readonly number[])[],
  lrs: readonly number[],
  decays: boolean,
): number[] {
  let w = [...w0];
  const m = w.map(() => 0);
  const v = w.map(() => 0);
  gradsPerStep.forEach((g, k) => {
    const t = k + 1;
    const u = w.map((wi, i) => {
      m[i] = o.beta1 * m[i]! + (1 - o.beta1) * g[i]!;
      v[i] = o.beta2 * v[i]! + (1 - o.beta2) * g[i]! * g[i]!;
      const mh = m[i]! / (1 - o.beta1 ** t);
      const vh = v[i]! / (1 - o.beta2 ** t);
      return mh / (Math.sqrt(vh) + o.eps) + (decays ? o.weightDecay * wi : 0);
    });
    let ratio = 1;
    if (o.name === 'lamb' && decays) {
      const wn = norm(w);
      const un = norm(u);
      ratio = wn > 0 && un > 0 ? wn / un : 1;
    }
    w = w.map((wi, i) => wi - lrs[k]! * ratio * u[i]!);
  });
  return w;
}

function run(o: OptimizerOptions, steps: { a: number[]; bias: number[] }[], lrs: number[]) {
  const a = tf.variable(tf.tensor2d([0.5, -1.0, 2.0, 0.25], [2, 2]), true, `a${Math.random()}`);
  const bias = tf.variable(tf.tensor1d([0.1, -0.3]), true, `bias${Math.random()}`);
  const opt = new Optimizer([a, bias], o, (v) => v === bias);
  const norms: number[] = [];
  steps.forEach((g, k) => {
    const grads = { [a.name]: tf.tensor2d(g.a, [2, 2]), [bias.name]: tf.tensor1d(g.bias) };
    norms.push(opt.applyGradients(grads, lrs[k]!).gradNorm);
    tf.dispose(Object.values(grads));
  });
  const out = { a: Array.from(a.dataSync()), bias: Array.from(bias.dataSync()), norms, state: opt.exportState() };
  opt.dispose();
  a.dispose();
  bias.dispose();
  return out;
}

const W_A = [0.5, -1.0, 2.0, 0.25];
const W_BIAS = [0.1, -0.3];
const GRADS = [
  { a: [0.2, -0.4, 0.1, 0.0], bias: [0.05, -0.5] },
  { a: [-0.1, 0.3, 0.3, 0.2], bias: [0.02, 0.4] },
  { a: [0.05, -0.2, -0.6, 0.1], bias: [-0.3, 0.1] },
];
const LRS = [0.01, 0.02, 0.015];

describe('one step, worked out by hand', () => {
  test('AdamW with decay: sign of the gradient plus lr * wd * w; the no-decay bias gets no decay', () => {
    const o = resolveOptimizerOptions({ name: 'adamw', weightDecay: 0.1, eps: 1e-8 });
    const r = run(o, [GRADS[0]!], [0.01]);
    // Step 1: m_hat = g and v_hat = g^2, so the Adam direction is g / (|g| + eps) = sign(g) (0 for g = 0).
    const expectedA = [0.5 - 0.01 * (1 + 0.1 * 0.5), -1.0 - 0.01 * (-1 + 0.1 * -1.0), 2.0 - 0.01 * (1 + 0.1 * 2.0), 0.25 - 0.01 * (0 + 0.1 * 0.25)];
    close(r.a, expectedA, 1e-6, 'a');
    close(r.bias, [0.1 - 0.01, -0.3 + 0.01], 1e-6, 'bias');
  });

  test('LAMB with decay: the decayed update is scaled by ||w|| / ||update||; the bias is plain Adam', () => {
    const o = resolveOptimizerOptions({ name: 'lamb', weightDecay: 0.1, eps: 1e-8 });
    const r = run(o, [GRADS[0]!], [0.01]);
    const u = [1 + 0.05, -1 - 0.1, 1 + 0.2, 0 + 0.025];
    const ratio = norm(W_A) / norm(u);
    close(r.a, W_A.map((w, i) => w - 0.01 * ratio * u[i]!), 1e-6, 'a');
    close(r.bias, [0.1 - 0.01, -0.3 + 0.01], 1e-6, 'bias');
  });

  test('without decay, AdamW is Adam and LAMB still adapts the decayed variables only', () => {
    const adam = run(resolveOptimizerOptions({ name: 'adamw', weightDecay: 0, eps: 1e-8 }), [GRADS[0]!], [0.01]);
    close(adam.a, [0.5 - 0.01, -1.0 + 0.01, 2.0 - 0.01, 0.25], 1e-6, 'adamw a');
    const lamb = run(resolveOptimizerOptions({ name: 'lamb', weightDecay: 0, eps: 1e-8 }), [GRADS[0]!], [0.01]);
    const ratio = norm(W_A) / norm([1, -1, 1, 0]);
    close(lamb.a, [0.5 - 0.01 * ratio, -1.0 + 0.01 * ratio, 2.0 - 0.01 * ratio, 0.25], 1e-6, 'lamb a');
    close(lamb.bias, [0.1 - 0.01, -0.3 + 0.01], 1e-6, 'lamb bias');
  });

  test('eps is in the denominator: a gradient of eps size moves half as far', () => {
    const o = resolveOptimizerOptions({ name: 'adamw', weightDecay: 0, eps: 1e-4 });
    const r = run(o, [{ a: [1e-4, 0, 0, 0], bias: [0, 0] }], [1]);
    close(r.a, [0.5 - 0.5, -1, 2, 0.25], 1e-5, 'a');
  });
});

describe('several steps against the element-wise reference', () => {
  for (const name of ['lamb', 'adamw'] as const) {
    for (const weightDecay of [0, 0.2]) {
      test(`${name}, weight decay ${weightDecay}`, () => {
        const o = resolveOptimizerOptions({ name, weightDecay });
        const r = run(o, GRADS, LRS);
        close(r.a, reference(o, W_A, GRADS.map((g) => g.a), LRS, true), 1e-5, 'a');
        close(r.bias, reference(o, W_BIAS, GRADS.map((g) => g.bias), LRS, false), 1e-5, 'bias');
        assert.equal(r.state.step, 3);
      });
    }
  }
});

describe('gradient clipping', () => {
  test('gradients above the threshold are scaled by threshold / global norm', () => {
    const g = { a: [3, 0, 0, 0], bias: [0, 4] }; // global norm 5
    const o = resolveOptimizerOptions({ name: 'adamw', clipGradNorm: 1 });
    const r = run(o, [g], [0.01]);
    close(r.norms, [5], 1e-6, 'reported norm (before clipping)');
    // The first moment after one step is (1 - beta1) * the gradient actually used.
    const m = Object.fromEntries(r.state.slots.map((s) => [s.variable.replace(/[0-9.]+$/, ''), Array.from(s.m)]));
    close(m.a!, [0.1 * 3 * (1 / 5), 0, 0, 0], 1e-6, 'm of a');
    close(m.bias!, [0, 0.1 * 4 * (1 / 5)], 1e-6, 'm of bias');
  });

  test('gradients under the threshold, or with clipping off, are used as they are', () => {
    const g = { a: [0.3, 0, 0, 0], bias: [0, 0.4] };
    for (const clipGradNorm of [0, 1]) {
      const r = run(resolveOptimizerOptions({ name: 'adamw', clipGradNorm }), [g], [0.01]);
      const m = Object.fromEntries(r.state.slots.map((s) => [s.variable.replace(/[0-9.]+$/, ''), Array.from(s.m)]));
      close(m.a!, [0.03, 0, 0, 0], 1e-6, `m of a (clip ${clipGradNorm})`);
    }
  });
});

describe('LAMB guards', () => {
  test('a zero variable (norm 0) takes a plain Adam step instead of none, and nothing is NaN', () => {
    const w = tf.variable(tf.zeros([3]), true, `zero${Math.random()}`);
    const opt = new Optimizer([w], resolveOptimizerOptions({ name: 'lamb', weightDecay: 0.1, eps: 1e-8 }));
    const g = tf.tensor1d([1, -2, 0]);
    opt.applyGradients({ [w.name]: g }, 0.5);
    close(w.dataSync(), [-0.5, 0.5, 0], 1e-6, 'w');
    // A zero gradient on a non-zero variable with no decay: update norm 0, ratio 1, no movement.
    const w2 = tf.variable(tf.ones([2]), true, `one${Math.random()}`);
    const opt2 = new Optimizer([w2], resolveOptimizerOptions({ name: 'lamb', weightDecay: 0 }));
    const g2 = tf.zeros([2]);
    opt2.applyGradients({ [w2.name]: g2 }, 0.5);
    close(w2.dataSync(), [1, 1], 0, 'w2');
    tf.dispose([w, g, w2, g2]);
    opt.dispose();
    opt2.dispose();
  });
});

describe('state', () => {
  test('exported state imported into a fresh optimiser continues exactly like the original', () => {
    const o = resolveOptimizerOptions({ name: 'lamb' });
    const make = () => tf.variable(tf.tensor1d([0.5, -1, 2]), true, `s${Math.random()}`);
    const w1 = make();
    const w2 = tf.variable(tf.tensor1d([0.5, -1, 2]), true, w1.name.replace('s', 't'));
    const opt1 = new Optimizer([w1], o);
    const step = (opt: Optimizer, w: tf.Variable, g: number[], lr: number) => {
      const t = tf.tensor1d(g);
      opt.applyGradients({ [w.name]: t }, lr);
      t.dispose();
    };
    step(opt1, w1, [0.1, 0.2, -0.3], 0.01);
    step(opt1, w1, [0.3, -0.2, 0.1], 0.01);
    // Copy weights and state over (renaming the slot to the second variable's name).
    w2.assign(tf.tensor1d(Array.from(w1.dataSync())));
    const state = opt1.exportState();
    const opt2 = new Optimizer([w2], o);
    opt2.importState({ ...state, slots: state.slots.map((s) => ({ ...s, variable: w2.name })) });
    assert.equal(opt2.step, 2);
    step(opt1, w1, [-0.2, 0.1, 0.4], 0.02);
    step(opt2, w2, [-0.2, 0.1, 0.4], 0.02);
    assert.deepEqual(Array.from(w2.dataSync()), Array.from(w1.dataSync()));
    opt1.dispose();
    opt2.dispose();
    tf.dispose([w1, w2]);
  });

  test('a state with a wrong shape or another optimiser is FILIP_ERR_CHECKPOINT naming the field', () => {
    const w = tf.variable(tf.zeros([2]), true, `shape${Math.random()}`);
    const opt = new Optimizer([w], resolveOptimizerOptions({ name: 'lamb' }));
    const good = opt.exportState();
    const cases: [string, unknown, string][] = [
      ['wrong shape', { ...good, slots: [{ ...good.slots[0]!, shape: [3], m: new Float32Array(3), v: new Float32Array(3) }] }, w.name],
      ['missing slot', { ...good, slots: [] }, w.name],
      ['other optimizer', { ...good, name: 'adamw' }, 'optimizer'],
    ];
    for (const [what, state, field] of cases) {
      assert.throws(
        () => opt.importState(state as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT' && e.field === field,
        what,
      );
    }
    opt.dispose();
    w.dispose();
  });

  test('steps do not leak tensors', () => {
    const w = tf.variable(tf.ones([4, 4]), true, `leak${Math.random()}`);
    const opt = new Optimizer([w], resolveOptimizerOptions({ name: 'lamb', clipGradNorm: 0.5 }));
    const g = tf.ones([4, 4]);
    opt.applyGradients({ [w.name]: g }, 0.1);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) opt.applyGradients({ [w.name]: g }, 0.1);
    assert.equal(tf.memory().numTensors, before);
    opt.dispose();
    tf.dispose([w, g]);
  });
});

describe('options', () => {
  test('defaults: LAMB, betas 0.9/0.999, eps 1e-4 (AdamW 1e-8), weight decay 0.2, no clipping', () => {
    assert.deepEqual({ ...resolveOptimizerOptions() }, { name: 'lamb', beta1: 0.9, beta2: 0.999, eps: 1e-4, weightDecay: 0.2, clipGradNorm: 0 });
    assert.equal(resolveOptimizerOptions({ name: 'adamw' }).eps, 1e-8);
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ['unknown optimizer', { name: 'sgd' }, 'name'],
    ['beta1 of 1', { beta1: 1 }, 'beta1'],
    ['negative beta2', { beta2: -0.1 }, 'beta2'],
    ['zero eps', { eps: 0 }, 'eps'],
    ['negative weight decay', { weightDecay: -1 }, 'weightDecay'],
    ['clip as a string', { clipGradNorm: '1' }, 'clipGradNorm'],
    ['unknown key', { momentum: 0.9 }, 'momentum'],
  ];
  for (const [what, input, field] of bad) {
    test(`rejects ${what}`, () => {
      assert.throws(
        () => resolveOptimizerOptions(input as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
      );
    });
  }
});
