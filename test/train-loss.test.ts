// FILIP and CLIP losses against a brute-force reference written here with plain loops over nested
// arrays (float64): similarity matrices, loss values with topK 1 and 0.25, gradients by central
// finite differences, padding that changes nothing, the temperature clamp, wasm = cpu, no leaks.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { mulberry32 } from '../src/core/random.js';
import { selectBackend } from '../src/train/backend.js';
import { clipLoss, filipLoss, tokenwiseSimilarity } from '../src/train/loss.js';

type Vec = number[];

// ---------- the reference: the paper's definitions, one loop at a time ----------

const dot = (a: Vec, b: Vec): number => a.reduce((s, x, i) => s + x * b[i]!, 0);

/** Indices of the ceil(k n) (at least 1) best of `scores` restricted to `candidates`, ties to the earlier. */
function topIndices(scores: number[], candidates: number[], k: number): number[] {
  const keep = Math.max(1, Math.ceil(k * candidates.length - 1e-9));
  const ranked = [...candidates].sort((a, b) => scores[b]! - scores[a]! || a - b);
  return ranked.slice(0, keep);
}

function refSimilarity(img: Vec[][], txt: Vec[][], mask: number[][], k: number): { i2t: number[][]; t2i: number[][] } {
  const bi = img.length;
  const bt = txt.length;
  const real = mask.map((row) => row.flatMap((m, r) => (m === 1 ? [r] : [])));
  // a[i][p][t] = max over real r of <x_ip, y_tr>; b[t][r][i] = max over p of <x_ip, y_tr>
  const a = img.map((patches) => patches.map((x) => txt.map((_, t) => Math.max(...real[t]!.map((r) => dot(x, txt[t]![r]!))))));
  const b = txt.map((tokens) => tokens.map((y) => img.map((patches) => Math.max(...patches.map((x) => dot(x, y))))));
  const patchSel = img.map((patches, i) => {
    const score = patches.map((_, p) => Math.max(...a[i]![p]!));
    return topIndices(score, patches.map((_, p) => p), k);
  });
  const tokenSel = txt.map((tokens, t) => {
    const score = tokens.map((_, r) => Math.max(...b[t]![r]!));
    return topIndices(score, real[t]!, k);
  });
  const i2t = Array.from({ length: bi }, (_, i) =>
    Array.from({ length: bt }, (_, t) => patchSel[i]!.reduce((s, p) => s + a[i]![p]![t]!, 0) / patchSel[i]!.length),
  );
  const t2i = Array.from({ length: bt }, (_, t) =>
    Array.from({ length: bi }, (_, i) => tokenSel[t]!.reduce((s, r) => s + b[t]![r]![i]!, 0) / tokenSel[t]!.length),
  );
  return { i2t, t2i };
}

function refCrossEntropy(sim: number[][], scale: number): number {
  let total = 0;
  sim.forEach((row, i) => {
    const logits = row.map((v) => v * scale);
    const m = Math.max(...logits);
    const lse = m + Math.log(logits.reduce((s, v) => s + Math.exp(v - m), 0));
    total += lse - logits[i]!;
  });
  return total / sim.length;
}

function refFilip(img: Vec[][], txt: Vec[][], mask: number[][], logitScale: number, k: number): number {
  const { i2t, t2i } = refSimilarity(img, txt, mask, k);
  const scale = Math.exp(Math.min(logitScale, Math.log(100)));
  return (refCrossEntropy(i2t, scale) + refCrossEntropy(t2i, scale)) / 2;
}

function refClip(imgG: Vec[], txtG: Vec[], logitScale: number): number {
  const sim = imgG.map((x) => txtG.map((y) => dot(x, y)));
  const simT = sim[0]!.map((_, j) => sim.map((row) => row[j]!));
  const scale = Math.exp(Math.min(logitScale, Math.log(100)));
  return (refCrossEntropy(sim, scale) + refCrossEntropy(simT, scale)) / 2;
}

// ---------- fixtures ----------

const B = 3;
const P = 8;
const L = 6;
const D = 5;
const LENGTHS = [6, 3, 1]; // full, padded, a single real token

function unitVectors(random: () => number, n: number, d: number): Vec[] {
  return Array.from({ length: n }, () => {
    const v = Array.from({ length: d }, () => random() * 2 - 1);
    const norm = Math.sqrt(dot(v, v));
    return v.map((x) => x / norm);
  });
}

function fixture(seed: number) {
  const random = mulberry32(seed);
  const img = Array.from({ length: B }, () => unitVectors(random, P, D));
  const txt = Array.from({ length: B }, () => unitVectors(random, L, D));
  const mask = LENGTHS.map((n) => Array.from({ length: L }, (_, r) => (r < n ? 1 : 0)));
  const imgG = unitVectors(random, B, D);
  const txtG = unitVectors(random, B, D);
  return { img, txt, mask, imgG, txtG, logitScale: 1.3 };
}

const t3 = (v: Vec[][]) => tf.tensor3d(v);
const close = (actual: number, expected: number, tol: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);

function filipValue(f: ReturnType<typeof fixture>, topK: number): number {
  return tf.tidy(() => filipLoss({ patches: t3(f.img) }, { tokens: t3(f.txt), mask: tf.tensor2d(f.mask) }, tf.scalar(f.logitScale), { topK }).dataSync()[0]!);
}

before(async () => {
  await selectBackend('cpu');
});

describe('token-wise similarity', () => {
  test('matches the reference for every pair, both directions (topK 1 and 0.25)', () => {
    const f = fixture(11);
    for (const topK of [1, 0.25]) {
      const ref = refSimilarity(f.img, f.txt, f.mask, topK);
      const { i2t, t2i } = tokenwiseSimilarity(t3(f.img), t3(f.txt), tf.tensor2d(f.mask), { topK });
      const got = { i2t: i2t.arraySync(), t2i: t2i.arraySync() };
      tf.dispose([i2t, t2i]);
      assert.deepEqual(got.i2t.length, B);
      for (let i = 0; i < B; i++) {
        for (let t = 0; t < B; t++) {
          close(got.i2t[i]![t]!, ref.i2t[i]![t]!, 1e-5, `topK ${topK} i2t[${i}][${t}]`);
          close(got.t2i[t]![i]!, ref.t2i[t]![i]!, 1e-5, `topK ${topK} t2i[${t}][${i}]`);
        }
      }
    }
  });

  test('padded tokens change nothing, whatever their values', () => {
    const f = fixture(12);
    const g = fixture(12);
    // overwrite the padding of text 1 with a copy of an image patch: it would win every max if counted
    for (let r = LENGTHS[1]!; r < L; r++) g.txt[1]![r] = [...g.img[0]![0]!];
    for (const topK of [1, 0.25]) assert.equal(filipValue(g, topK), filipValue(f, topK));
  });

  test('topK keeps ceil(k n) tokens ranked by their best similarity (hand-computed example)', () => {
    // One image of 8 patches, one text of 3 real tokens and one padded token [7, 7], which would
    // win every max if it were counted. Each patch's best real token: 1, .8, 0, .6, -.28, .6, -.28, 0;
    // each real token's best patch: 1, .6, .6.
    const img = [[[1, 0], [0.8, 0.6], [0, 1], [-1, 0], [-0.6, 0.8], [0.6, 0.8], [-0.28, 0.96], [-0.8, 0.6]]];
    const txt = [[[1, 0], [0.6, -0.8], [-0.6, -0.8], [7, 7]]];
    const mask = [[1, 1, 1, 0]];
    const cases: [number, number, number][] = [
      [1, 2.44 / 8, 2.2 / 3], // every patch, every real token
      [0.5, (1 + 0.8 + 0.6 + 0.6) / 4, (1 + 0.6) / 2], // 4 patches, ceil(1.5) = 2 tokens
      [0.25, (1 + 0.8) / 2, 1], // 2 patches, ceil(0.75) = 1 token
      [0.01, 1, 1], // at least one of each
    ];
    for (const [topK, i2tExpected, t2iExpected] of cases) {
      const { i2t, t2i } = tokenwiseSimilarity(tf.tensor3d(img), tf.tensor3d(txt), tf.tensor2d(mask), { topK });
      close(i2t.dataSync()[0]!, i2tExpected, 1e-6, `topK ${topK} i2t`);
      close(t2i.dataSync()[0]!, t2iExpected, 1e-6, `topK ${topK} t2i`);
      tf.dispose([i2t, t2i]);
    }
  });
});

describe('loss values', () => {
  test('filipLoss equals the reference with topK 1 and 0.25 (default 0.25)', () => {
    const f = fixture(21);
    for (const topK of [1, 0.25]) close(filipValue(f, topK), refFilip(f.img, f.txt, f.mask, f.logitScale, topK), 1e-5, `topK ${topK}`);
    const byDefault = tf.tidy(() => filipLoss({ patches: t3(f.img) }, { tokens: t3(f.txt), mask: tf.tensor2d(f.mask) }, tf.scalar(f.logitScale)).dataSync()[0]!);
    close(byDefault, refFilip(f.img, f.txt, f.mask, f.logitScale, 0.25), 1e-5, 'default topK');
    // top-k selection is not a no-op on this data
    assert.ok(Math.abs(refFilip(f.img, f.txt, f.mask, f.logitScale, 1) - refFilip(f.img, f.txt, f.mask, f.logitScale, 0.25)) > 1e-3);
  });

  test('clipLoss equals the reference', () => {
    const f = fixture(22);
    const got = tf.tidy(() => clipLoss(tf.tensor2d(f.imgG), tf.tensor2d(f.txtG), tf.scalar(f.logitScale)).dataSync()[0]!);
    close(got, refClip(f.imgG, f.txtG, f.logitScale), 1e-5, 'clip');
  });

  test('the temperature is clamped at 100: past ln 100 the loss stops changing and gets no gradient', () => {
    const f = fixture(23);
    const at = (ls: number) => ({ ...f, logitScale: ls });
    close(filipValue(at(6), 0.25), refFilip(f.img, f.txt, f.mask, Math.log(100), 0.25), 1e-5, 'clamped');
    const g = tf.tidy(() =>
      tf.grad((ls: tf.Tensor) => filipLoss({ patches: t3(f.img) }, { tokens: t3(f.txt), mask: tf.tensor2d(f.mask) }, ls))(tf.scalar(6)).dataSync()[0]!,
    );
    assert.equal(g, 0);
  });

  const BAD_TOPK: [string, number][] = [['zero', 0], ['negative', -0.5], ['over one', 1.5], ['NaN', Number.NaN]];
  for (const [name, topK] of BAD_TOPK) {
    test(`topK ${name} is FILIP_ERR_INVALID_OPTION`, () => {
      const f = fixture(24);
      assert.throws(() => filipValue(f, topK), { code: 'FILIP_ERR_INVALID_OPTION' });
    });
  }

  test('a batch with fewer texts than images is an error, not a wrong loss', () => {
    const f = fixture(25);
    assert.throws(
      () => filipLoss({ patches: t3(f.img) }, { tokens: t3(f.txt.slice(0, 2)), mask: tf.tensor2d(f.mask.slice(0, 2)) }, tf.scalar(1)),
      { code: 'FILIP_ERR_INVALID_OPTION' },
    );
  });
});

describe('gradients', () => {
  // float32 loss of about 1: rounding noise ~1e-7, so eps 1e-3 gives ~1e-4 of noise per difference.
  const EPS = 1e-3;
  const TOL = 3e-3;

  function checkFilip(topK: number): void {
    const f = fixture(31);
    const patches = t3(f.img);
    const tokens = t3(f.txt);
    const mask = tf.tensor2d(f.mask);
    const loss = (x: tf.Tensor, y: tf.Tensor, ls: tf.Tensor) =>
      filipLoss({ patches: x as tf.Tensor3D }, { tokens: y as tf.Tensor3D, mask }, ls, { topK });
    const [gx, gy, gs] = tf.grads(loss)([patches, tokens, tf.scalar(f.logitScale)]).map((g) => g.arraySync()) as [
      number[][][],
      number[][][],
      number,
    ];
    const value = (img: Vec[][], txt: Vec[][], ls: number) => tf.tidy(() => loss(t3(img), t3(txt), tf.scalar(ls)).dataSync()[0]!);
    const central = (plus: number, minus: number) => (plus - minus) / (2 * EPS);
    let checked = 0;
    for (const [name, data, grad] of [['patches', f.img, gx], ['tokens', f.txt, gy]] as const) {
      for (let a = 0; a < data.length; a++) {
        for (let b = 0; b < data[a]!.length; b++) {
          for (let c = 0; c < D; c++) {
            const shifted = (delta: number) => {
              const copy = data.map((m) => m.map((v) => [...v]));
              copy[a]![b]![c]! += delta;
              return name === 'patches' ? value(copy, f.txt, f.logitScale) : value(f.img, copy, f.logitScale);
            };
            const fd = central(shifted(EPS), shifted(-EPS));
            close(grad[a]![b]![c]!, fd, TOL, `topK ${topK} d loss / d ${name}[${a}][${b}][${c}]`);
            checked++;
          }
        }
      }
    }
    close(gs, central(value(f.img, f.txt, f.logitScale + EPS), value(f.img, f.txt, f.logitScale - EPS)), TOL, 'd loss / d logit_scale');
    assert.equal(checked, B * (P + L) * D);
    // padded tokens get exactly zero gradient
    for (let t = 0; t < B; t++) for (let r = LENGTHS[t]!; r < L; r++) assert.ok(gy[t]![r]!.every((v) => v === 0), `padding ${t},${r}`);
    assert.ok(gs !== 0);
    tf.dispose([patches, tokens, mask]);
  }

  test('filipLoss (topK 1): analytic gradients = central differences for patches, tokens and logit_scale', () => checkFilip(1));
  test('filipLoss (topK 0.25): analytic gradients = central differences', () => checkFilip(0.25));

  test('clipLoss: analytic gradients = central differences', () => {
    const f = fixture(32);
    const loss = (x: tf.Tensor, y: tf.Tensor, ls: tf.Tensor) => clipLoss(x as tf.Tensor2D, y as tf.Tensor2D, ls);
    const [gx, gy, gs] = tf.grads(loss)([tf.tensor2d(f.imgG), tf.tensor2d(f.txtG), tf.scalar(f.logitScale)]).map((g) => g.arraySync()) as [
      number[][],
      number[][],
      number,
    ];
    for (const [which, grad] of [['img', gx], ['txt', gy]] as const) {
      for (let i = 0; i < B; i++) {
        for (let c = 0; c < D; c++) {
          const at = (delta: number) => {
            const imgG = f.imgG.map((v) => [...v]);
            const txtG = f.txtG.map((v) => [...v]);
            (which === 'img' ? imgG : txtG)[i]![c]! += delta;
            return refClip(imgG, txtG, f.logitScale);
          };
          close(grad[i]![c]!, (at(EPS) - at(-EPS)) / (2 * EPS), TOL, `d clip / d ${which}[${i}][${c}]`);
        }
      }
    }
    close(gs, (refClip(f.imgG, f.txtG, f.logitScale + EPS) - refClip(f.imgG, f.txtG, f.logitScale - EPS)) / (2 * EPS), TOL, 'd clip / d logit_scale');
  });
});

describe('backends and memory', () => {
  after(async () => {
    await selectBackend('cpu');
  });

  test('wasm gives the cpu values: losses and gradients', async () => {
    const f = fixture(41);
    const run = () =>
      tf.tidy(() => {
        const mask = tf.tensor2d(f.mask);
        const loss = (x: tf.Tensor, y: tf.Tensor, ls: tf.Tensor) =>
          tf.add(
            filipLoss({ patches: x as tf.Tensor3D }, { tokens: y as tf.Tensor3D, mask }, ls),
            filipLoss({ patches: x as tf.Tensor3D }, { tokens: y as tf.Tensor3D, mask }, ls, { topK: 1 }),
          ) as tf.Scalar;
        const { value, grads } = tf.valueAndGrads(loss)([t3(f.img), t3(f.txt), tf.scalar(f.logitScale)]);
        return [value.dataSync()[0]!, ...grads.flatMap((g) => [...g.dataSync()])];
      });
    await selectBackend('cpu');
    const onCpu = run();
    const selection = await selectBackend('wasm');
    assert.equal(selection.backend, 'wasm');
    const onWasm = run();
    assert.equal(tf.getBackend(), 'wasm');
    assert.equal(onWasm.length, onCpu.length);
    onCpu.forEach((v, i) => close(onWasm[i]!, v, 1e-5, `value ${i}`));
  });

  test('loss and gradient steps leave no tensors behind', async () => {
    await selectBackend('wasm');
    const f = fixture(42);
    const patches = tf.variable(t3(f.img));
    const scale = tf.variable(tf.scalar(f.logitScale));
    const tokens = t3(f.txt);
    const mask = tf.tensor2d(f.mask);
    const step = () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() =>
          tf.add(filipLoss({ patches }, { tokens, mask }, scale), clipLoss(tf.mean(patches, 1) as tf.Tensor2D, tf.mean(tokens, 1) as tf.Tensor2D, scale)) as tf.Scalar,
        );
        patches.assign(tf.sub(patches, tf.mul(grads[patches.name]!, 0.1)));
        return value.dataSync()[0]!;
      });
    step();
    const baseline = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) step();
    assert.equal(tf.memory().numTensors, baseline);
    tf.dispose([patches, scale, tokens, mask]);
  });
});
