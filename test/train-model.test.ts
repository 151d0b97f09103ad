// The FILIP model: presets and their validation, output shapes and norms, the padding mask from the
// lengths (never the ids), causality, the [EOS] and [CLS] embeddings, weight names / no-decay /
// get-set, gradients of the whole model against finite differences, no leaks, and one forward
// pass of the base and large presets.

import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../src/train/backend.js';
import { clipLoss, filipLoss } from '../src/train/loss.js';
import { FilipModel, INITIAL_LOGIT_SCALE, MODEL_PRESETS, modelConfig } from '../src/train/model.js';

const VOCAB = 50;

/** Size of the wasm backend's heap (its high-water mark: the heap never shrinks). */
function heapBytes(): number {
  const backend = tf.backend() as unknown as { wasm?: { HEAPU8: Uint8Array } };
  return backend.wasm?.HEAPU8.length ?? 0;
}

function tinyModel(seed = 1, scope = ''): FilipModel {
  return new FilipModel(modelConfig('tiny', { vocabSize: VOCAB, contextLength: 8 }), seed, { scope });
}

function images(batch: number, size: number, seed: number): tf.Tensor4D {
  return tf.randomNormal([batch, size, size, 3], 0, 1, 'float32', seed) as tf.Tensor4D;
}

before(async () => {
  await selectBackend('wasm');
});

describe('presets', () => {
  test('base and large are the paper\'s FILIP-base (ViT-B/32) and FILIP-large (ViT-L/14)', () => {
    const base = modelConfig('base');
    assert.deepEqual([base.imageSize, base.patchSize, base.vision], [224, 32, { width: 768, layers: 12, heads: 12 }]);
    assert.deepEqual(base.text, { vocabSize: 49408, contextLength: 77, width: 512, layers: 12, heads: 8 });
    const large = modelConfig('large');
    assert.deepEqual([large.imageSize, large.patchSize, large.vision], [224, 14, { width: 1024, layers: 24, heads: 16 }]);
    assert.deepEqual(large.text, { vocabSize: 49408, contextLength: 77, width: 768, layers: 12, heads: 12 });
    for (const preset of MODEL_PRESETS) assert.equal(modelConfig(preset).embedDim, 256);
  });

  test('overrides set the tokenizer and image sizes and leave the preset untouched', () => {
    const c = modelConfig('small', { vocabSize: 1000, contextLength: 40, imageSize: 96 });
    assert.equal(c.text.vocabSize, 1000);
    assert.equal(c.text.contextLength, 40);
    assert.equal(c.imageSize, 96);
    assert.equal(modelConfig('small').text.vocabSize, 49408);
  });

  const BAD: [string, () => unknown][] = [
    ['unknown preset', () => modelConfig('huge')],
    ['unknown override', () => modelConfig('tiny', { vocab: 10 } as never)],
    ['image size not a multiple of the patch', () => modelConfig('tiny', { imageSize: 36 })],
    ['zero vocabulary', () => modelConfig('tiny', { vocabSize: 0 })],
    ['fractional context', () => modelConfig('tiny', { contextLength: 7.5 })],
    ['context of one token', () => modelConfig('tiny', { contextLength: 1 })],
    ['heads not dividing the width', () => new FilipModel({ ...modelConfig('tiny'), vision: { width: 64, layers: 1, heads: 3 } }, 1)],
    ['negative seed', () => new FilipModel(modelConfig('tiny', { vocabSize: VOCAB }), -1)],
    ['unknown model option', () => new FilipModel(modelConfig('tiny', { vocabSize: VOCAB }), 1, { lean: true } as never)],
    ['leanMatmul not a boolean', () => new FilipModel(modelConfig('tiny', { vocabSize: VOCAB }), 1, { leanMatmul: 'yes' } as never)],
  ];
  for (const [name, make] of BAD) {
    test(`${name} is FILIP_ERR_INVALID_OPTION`, () => assert.throws(make, { code: 'FILIP_ERR_INVALID_OPTION' }));
  }
});

describe('tiny model', () => {
  test('shapes, unit norms, [CLS] apart from the patches, mask from lengths', () => {
    const model = tinyModel();
    const cfg = model.config;
    tf.tidy(() => {
      const img = model.encodeImage(images(2, cfg.imageSize, 1));
      assert.deepEqual(img.patches.shape, [2, (cfg.imageSize / cfg.patchSize) ** 2, 256]);
      assert.deepEqual(img.global.shape, [2, 256]);
      for (const t of [img.patches, img.global]) {
        for (const n of tf.norm(t, 'euclidean', -1).dataSync()) assert.ok(Math.abs(n - 1) < 1e-4, `norm ${n}`);
      }
      // id 0 is a real token: the mask follows the lengths, not the ids
      const ids = tf.tensor2d([[0, 0, 0, 0, 0], [1, 0, 2, 3, 3]], undefined, 'int32');
      const txt = model.encodeText(ids, tf.tensor1d([3, 5], 'int32'));
      assert.deepEqual(txt.tokens.shape, [2, 5, 256]);
      assert.deepEqual(txt.mask.arraySync(), [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]);
      assert.equal(txt.mask.dtype, 'float32');
      // the text's global embedding is its last real token's ([EOS])
      const tokens = txt.tokens.arraySync();
      const global = txt.global.arraySync();
      for (const [b, last] of [[0, 2], [1, 4]] as const) {
        global[b]!.forEach((v, d) => assert.ok(Math.abs(v - tokens[b]![last]![d]!) < 1e-6));
      }
    });
    model.dispose();
  });

  test('padding and later tokens do not change earlier tokens (causal text tower)', () => {
    const model = tinyModel();
    tf.tidy(() => {
      const lengths = tf.tensor1d([3], 'int32');
      const a = model.encodeText(tf.tensor2d([[1, 5, 2, 0, 0, 0]], undefined, 'int32'), lengths);
      const b = model.encodeText(tf.tensor2d([[1, 5, 2, 9, 17, 33]], undefined, 'int32'), lengths);
      const first = (t: tf.Tensor3D) => tf.slice(t, [0, 0, 0], [1, 3, -1]).dataSync();
      assert.deepEqual([...first(b.tokens)], [...first(a.tokens)]);
      assert.deepEqual([...b.global.dataSync()], [...a.global.dataSync()]);
      // but a change at position 1 does change position 2
      const c = model.encodeText(tf.tensor2d([[1, 6, 2, 0, 0, 0]], undefined, 'int32'), lengths);
      assert.notDeepEqual([...first(c.tokens)].slice(512), [...first(a.tokens)].slice(512));
    });
    model.dispose();
  });

  test('each image is encoded independently of the others in the batch', () => {
    const model = tinyModel();
    tf.tidy(() => {
      const x = images(3, model.config.imageSize, 2);
      const all = model.encodeImage(x).patches;
      const one = model.encodeImage(tf.slice(x, [1, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D).patches;
      const fromAll = tf.slice(all, [1, 0, 0], [1, -1, -1]).dataSync();
      one.dataSync().forEach((v, i) => assert.ok(Math.abs(v - fromAll[i]!) < 1e-5));
    });
    model.dispose();
  });

  test('leanMatmul changes memory, not results', () => {
    const a = tinyModel(8);
    const b = new FilipModel(a.config, 8, { scope: 'lean/', leanMatmul: true });
    tf.tidy(() => {
      const x = images(2, a.config.imageSize, 6);
      assert.deepEqual([...b.encodeImage(x).patches.dataSync()], [...a.encodeImage(x).patches.dataSync()]);
      const ids = tf.tensor2d([[1, 4, 2]], undefined, 'int32');
      const lengths = tf.tensor1d([3], 'int32');
      assert.deepEqual([...b.encodeText(ids, lengths).tokens.dataSync()], [...a.encodeText(ids, lengths).tokens.dataSync()]);
    });
    a.dispose();
    b.dispose();
  });

  test('inputs of the wrong shape are refused', () => {
    const model = tinyModel();
    assert.throws(() => model.encodeImage(tf.zeros([1, 16, 16, 3]) as tf.Tensor4D), { code: 'FILIP_ERR_INVALID_OPTION' });
    assert.throws(() => model.encodeText(tf.zeros([1, 9], 'int32') as tf.Tensor2D, tf.tensor1d([2], 'int32')), {
      code: 'FILIP_ERR_INVALID_OPTION',
    });
    assert.throws(() => model.encodeText(tf.zeros([2, 4], 'int32') as tf.Tensor2D, tf.tensor1d([2], 'int32')), {
      code: 'FILIP_ERR_INVALID_OPTION',
    });
    model.dispose();
  });
});

describe('weights', () => {
  test('stable unique names, the same weights from the same seed, logit_scale = log(1/0.07)', () => {
    const a = tinyModel(5);
    const names = a.variables.map((v) => v.name);
    assert.equal(new Set(names).size, names.length);
    for (const name of ['vision/blocks/0/attn/qkv/w', 'vision/blocks/1/mlp/proj/b', 'vision/patch_embed/w', 'vision/class_embed',
      'vision/pos_embed', 'vision/ln_post/g', 'vision/proj/w', 'text/token_embed', 'text/pos_embed', 'text/blocks/1/ln_2/b',
      'text/ln_final/g', 'text/proj/w', 'logit_scale']) {
      assert.ok(names.includes(name), name);
    }
    assert.equal(a.logitScale.name, 'logit_scale');
    assert.ok(a.logitScale.trainable);
    assert.ok(Math.abs(a.logitScale.dataSync()[0]! - INITIAL_LOGIT_SCALE) < 1e-6);
    const wa = a.getWeights();
    a.dispose();
    const b = tinyModel(5);
    const wb = b.getWeights();
    for (const [name, t] of wa) assert.deepEqual([...wb.get(name)!.dataSync()], [...t.dataSync()], name);
    b.dispose();
    const c = tinyModel(6);
    assert.notDeepEqual([...c.getWeights().get('text/proj/w')!.dataSync()], [...wa.get('text/proj/w')!.dataSync()]);
    c.dispose();
    tf.dispose([...wa.values(), ...wb.values()]);
  });

  test('noDecay: biases, norms, embeddings and logit_scale; not the weight matrices', () => {
    const model = tinyModel();
    const byName = new Map(model.variables.map((v) => [v.name, v]));
    for (const name of ['vision/blocks/0/attn/qkv/b', 'vision/blocks/0/ln_1/g', 'vision/blocks/0/ln_1/b', 'vision/ln_pre/g',
      'vision/class_embed', 'vision/pos_embed', 'text/token_embed', 'text/pos_embed', 'text/ln_final/g', 'logit_scale']) {
      assert.equal(model.noDecay(byName.get(name)!), true, name);
    }
    for (const name of ['vision/patch_embed/w', 'vision/blocks/0/attn/qkv/w', 'vision/blocks/0/attn/out/w',
      'vision/blocks/1/mlp/fc/w', 'text/blocks/0/mlp/proj/w', 'vision/proj/w', 'text/proj/w']) {
      assert.equal(model.noDecay(byName.get(name)!), false, name);
    }
    model.dispose();
  });

  test('setWeights(getWeights()) reproduces the outputs; a second live model needs its own scope', () => {
    const a = tinyModel(1);
    assert.throws(() => tinyModel(2), { code: 'FILIP_ERR_INVALID_OPTION' });
    const b = tinyModel(2, 'copy/');
    assert.ok(b.variables.every((v) => v.name.startsWith('copy/')));
    const weights = a.getWeights();
    b.setWeights(weights);
    tf.tidy(() => {
      const x = images(2, a.config.imageSize, 3);
      assert.deepEqual([...b.encodeImage(x).patches.dataSync()], [...a.encodeImage(x).patches.dataSync()]);
    });
    const missing = new Map(weights);
    missing.delete('text/proj/w');
    assert.throws(() => b.setWeights(missing), { code: 'FILIP_ERR_CHECKPOINT' });
    assert.throws(() => b.setWeights(new Map([...weights, ['text/extra', tf.zeros([1])]])), { code: 'FILIP_ERR_CHECKPOINT' });
    const wrongShape = new Map(weights);
    wrongShape.set('text/proj/w', tf.zeros([3, 3]));
    assert.throws(() => b.setWeights(wrongShape), { code: 'FILIP_ERR_CHECKPOINT' });
    tf.dispose([...weights.values(), wrongShape.get('text/proj/w')!]);
    a.dispose();
    b.dispose();
  });
});

describe('training', () => {
  test('gradients of the whole model match central differences (cpu)', async () => {
    await selectBackend('cpu');
    const model = tinyModel(3);
    const x = images(3, model.config.imageSize, 4);
    const ids = tf.tensor2d([[1, 4, 9, 2, 0], [1, 7, 2, 0, 0], [1, 3, 3, 8, 2]], undefined, 'int32');
    const lengths = tf.tensor1d([4, 3, 5], 'int32');
    const loss = () =>
      tf.tidy(() => {
        const img = model.encodeImage(x);
        const txt = model.encodeText(ids, lengths);
        return tf.add(filipLoss(img, txt, model.logitScale, { topK: 1 }), clipLoss(img.global, txt.global, model.logitScale)) as tf.Scalar;
      });
    const { grads } = tf.variableGrads(loss);
    // A sample of weights across both towers: every layer type on the way (embeddings, LayerNorm,
    // attention, GELU MLP, projections). In each, the 3 coordinates with the largest gradient.
    const names = ['text/token_embed', 'text/blocks/0/attn/qkv/w', 'text/blocks/1/mlp/fc/b', 'text/ln_final/g',
      'vision/patch_embed/w', 'vision/class_embed', 'vision/blocks/0/ln_1/g', 'vision/blocks/1/attn/out/w', 'vision/proj/w', 'logit_scale'];
    const eps = 1e-2;
    let checked = 0;
    for (const name of names) {
      const v = model.variables.find((w) => w.name === name)!;
      const g = grads[name]!.dataSync();
      const order = [...g.keys()].sort((i, j) => Math.abs(g[j]!) - Math.abs(g[i]!)).slice(0, 3);
      for (const i of order) {
        const original = v.dataSync().slice();
        const at = (delta: number) => {
          const values = original.slice();
          values[i]! += delta;
          v.assign(tf.tensor(values, v.shape));
          return loss().dataSync()[0]!;
        };
        const fd = (at(eps) - at(-eps)) / (2 * eps);
        v.assign(tf.tensor(original, v.shape));
        const tol = 0.05 * Math.abs(fd) + 2e-4;
        assert.ok(Math.abs(g[i]! - fd) <= tol, `${name}[${i}]: analytic ${g[i]} vs finite difference ${fd}`);
        checked++;
      }
    }
    assert.ok(checked >= 28);
    tf.dispose([x, ids, lengths, ...Object.values(grads)]);
    model.dispose();
    await selectBackend('wasm');
  });

  test('a training step leaves no tensors behind, and dispose frees every variable', () => {
    const before = tf.memory().numTensors;
    const model = tinyModel(4);
    const x = images(2, model.config.imageSize, 5);
    const ids = tf.tensor2d([[1, 4, 2, 0], [1, 2, 0, 0]], undefined, 'int32');
    const lengths = tf.tensor1d([3, 2], 'int32');
    const step = () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => filipLoss(model.encodeImage(x), model.encodeText(ids, lengths), model.logitScale));
        for (const v of model.variables) v.assign(tf.sub(v, tf.mul(grads[v.name]!, 0.01)));
        return value.dataSync()[0]!;
      });
    step();
    const during = tf.memory().numTensors;
    for (let i = 0; i < 4; i++) step();
    assert.equal(tf.memory().numTensors, during);
    tf.dispose([x, ids, lengths]);
    model.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('base and large presets: one forward pass', () => {
  // large needs leanMatmul: its 1.6 GiB of weights plus the packed copy the wasm backend keeps of
  // every weight matrix overflow the 4 GiB wasm heap.
  for (const [preset, leanMatmul] of [['base', false], ['large', true]] as const) {
    test(`${preset} builds and encodes one image and one text`, async (t) => {
      const started = Date.now();
      const before = tf.memory().numTensors;
      const model = new FilipModel(modelConfig(preset), 7, { leanMatmul });
      const built = Date.now();
      const weightBytes = tf.memory().numBytes;
      const [patches, tokens] = tf.tidy(() => {
        const img = model.encodeImage(tf.zeros([1, 224, 224, 3]) as tf.Tensor4D);
        const txt = model.encodeText(tf.tensor2d([[1, 320, 2]], undefined, 'int32'), tf.tensor1d([3], 'int32'));
        const norm = tf.norm(img.global).dataSync()[0]! + tf.norm(txt.global).dataSync()[0]!;
        assert.ok(Math.abs(norm - 2) < 1e-3);
        return [img.patches.shape, txt.tokens.shape];
      });
      const grid = 224 / model.config.patchSize;
      assert.deepEqual(patches, [1, Math.floor(grid) ** 2, 256]);
      assert.deepEqual(tokens, [1, 3, 256]);
      t.diagnostic(
        `${preset} on ${tf.getBackend()}: ${(model.parameterCount / 1e6).toFixed(1)} M parameters, build ${((built - started) / 1000).toFixed(1)} s, ` +
          `forward ${((Date.now() - built) / 1000).toFixed(1)} s, weights ${(weightBytes / 2 ** 20).toFixed(0)} MiB, ` +
          `wasm heap ${(heapBytes() / 2 ** 20).toFixed(0)} MiB, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`,
      );
      model.dispose();
      assert.equal(tf.memory().numTensors, before);
    });
  }
});
