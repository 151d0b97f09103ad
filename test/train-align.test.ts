// `filip align`: the PNG decodes at the expected size, and what it draws (the number in each patch and
// the coloured boxes) is the argmax this test computes itself from the model's own token embeddings.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

import { FilipError } from '../src/core/errors.js';
import { alignmentSvg, HIGHLIGHT_COLOURS, LEGEND_HEIGHT, legendLayout, resolveAlignOptions, runAlign } from '../src/train/align.js';
import { selectBackend } from '../src/train/backend.js';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.js';
import { resolveTrainOptions } from '../src/train/config.js';
import { decodeToSquare, normaliseInto } from '../src/train/data.js';
import { FilipModel, modelConfig } from '../src/train/model.js';
import { BpeTokenizer } from '../src/train/tokenizer.js';

const PROMPT = 'a red circle and a blue square';
const HIGHLIGHT = ['red', 'circle', 'blue'];
const CELL = 32;

let dir: string;
let image: string;

/** A random-weight tiny model and a small tokenizer, saved as a checkpoint the way the trainer saves one. */
async function writeCheckpoint(runDir: string): Promise<void> {
  const merges: [string, string][] = [
    ['r', 'e'], ['re', 'd</w>'], ['c', 'i'], ['ci', 'r'], ['cir', 'c'], ['circ', 'l'], ['circl', 'e</w>'],
    ['b', 'l'], ['bl', 'u'], ['blu', 'e</w>'], ['s', 'q'], ['a', 'n'], ['an', 'd</w>'],
  ];
  const tokenizer = BpeTokenizer.fromMerges(merges);
  const config = modelConfig('tiny', { vocabSize: tokenizer.vocabSize });
  const net = new FilipModel(config, 11, { scope: 'align-writer/' });
  try {
    await saveCheckpoint(runDir, {
      step: 1,
      config: { model: config, train: resolveTrainOptions({ shards: 'unused', out: runDir }) },
      weights: net.variables.map((v) => ({ name: v.name.slice(net.scope.length), shape: v.shape, data: Float32Array.from(v.dataSync()) })),
      optimizer: { name: 'adamw', step: 1, slots: [] },
      tokenizer: tokenizer.toJSON(),
      dataPosition: null,
    });
  } finally {
    net.dispose();
  }
}

/**
 * The best token of every patch, computed here from the checkpoint's weights: the model's patch and
 * token embeddings, then plain dot products over the prompt's real tokens ([BOS] = position 0).
 */
async function expectedArgmax(runDir: string, bytes: Buffer): Promise<{ best: number[]; positions: Map<string, number[]> }> {
  const ckpt = await loadCheckpoint<{ model: ReturnType<typeof modelConfig> }>(runDir);
  const tokenizer = BpeTokenizer.fromJSON(ckpt.tokenizer);
  const net = new FilipModel(ckpt.config.model, 0, { scope: 'align-check/' });
  const weights = new Map(ckpt.weights.map((w) => [w.name, tf.tensor(w.data, [...w.shape])]));
  try {
    net.setWeights(weights);
    const S = net.config.imageSize;
    const pixels = new Float32Array(S * S * 3);
    normaliseInto(await decodeToSquare(bytes, S), pixels, 0);
    const tok = tokenizer.tokenize([PROMPT], net.config.text.contextLength);
    const n = tok.lengths[0]!;
    const image = net.encodeImage(tf.tensor4d(pixels, [1, S, S, 3]));
    const text = net.encodeText(tf.tensor2d(tok.ids, [1, net.config.text.contextLength], 'int32'), tf.tensor1d(tok.lengths, 'int32'));
    const patches = (await image.patches.array())[0]!;
    const tokens = (await text.tokens.array())[0]!;
    tf.dispose([image.patches, image.global, text.tokens, text.mask, text.global]);
    const best = patches.map((p) => {
      let arg = 0;
      let top = -Infinity;
      for (let r = 0; r < n; r++) {
        const s = p.reduce((sum, x, d) => sum + x * tokens[r]![d]!, 0);
        if (s > top) [top, arg] = [s, r];
      }
      return arg;
    });
    // Where each highlighted word's tokens sit: [BOS], then each word's own encoding in order.
    const positions = new Map<string, number[]>();
    let pos = 1;
    for (const word of PROMPT.split(' ')) {
      const k = tokenizer.encode(word).length;
      if (HIGHLIGHT.includes(word) && !positions.has(word)) positions.set(word, Array.from({ length: k }, (_, i) => pos + i));
      pos += k;
    }
    assert.equal(pos + 1, n, 'the prompt tokenizes word by word');
    return { best, positions };
  } finally {
    net.dispose();
    tf.dispose([...weights.values()]);
  }
}

before(async () => {
  await selectBackend('cpu');
  dir = await mkdtemp(join(tmpdir(), 'filip-align-'));
  await writeCheckpoint(join(dir, 'run'));
  // A 96x80 picture (not square, so the centre crop matters): a red disc and a blue square.
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="80"><rect width="96" height="80" fill="#f0ede4"/>' +
    '<circle cx="30" cy="40" r="18" fill="#d62728"/><rect x="56" y="22" width="30" height="30" fill="#1f5fbf"/></svg>';
  image = join(dir, 'scene.png');
  await writeFile(image, await sharp(Buffer.from(svg)).png().toBuffer());
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('filip align', () => {
  test('writes a PNG of grid*cell pixels plus the legend, labelled with the independently computed argmax', async () => {
    const out = join(dir, 'pictures');
    const [result] = await runAlign({ checkpoint: join(dir, 'run'), images: [image], prompt: PROMPT, highlight: HIGHLIGHT, out, cell: CELL, backend: 'cpu' });
    assert.ok(result);
    assert.equal(result.file, join(out, 'scene.align.png'));

    const png = sharp(result.file);
    const meta = await png.metadata();
    assert.equal(meta.format, 'png');
    const grid = 32 / 8; // tiny: 32 px input, 8 px patches
    assert.equal(meta.width, grid * CELL);
    assert.equal(meta.height, grid * CELL + legendLayout(result.map.tokens, grid * CELL).height);

    const bytes = await sharp(image).toBuffer();
    const expected = await expectedArgmax(join(dir, 'run'), bytes);
    assert.deepEqual(result.map.best, expected.best);

    // The numbers drawn: one <text> per patch, in the SVG that is composited onto the picture.
    const svg = alignmentSvg(result.map, CELL);
    const drawn = [...svg.matchAll(/<text class="patch" data-patch="(\d+)"[^>]*>(\d+)<\/text>/g)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.equal(drawn.length, grid * grid);
    for (const [patch, label] of drawn) assert.equal(label, expected.best[patch!], `patch ${patch}`);

    // The boxes drawn: a patch whose best token belongs to a highlighted word has that word's colour
    // on its border; the others do not.
    const { data, info } = await png.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const colourAt = (x: number, y: number) => [0, 1, 2].map((c) => data[(y * info.width + x) * 3 + c]!);
    const hex = (h: string) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
    const near = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]!) <= 3);
    let boxed = 0;
    expected.best.forEach((token, p) => {
      const word = HIGHLIGHT.findIndex((w) => expected.positions.get(w)!.includes(token));
      const pixel = colourAt((p % grid) * CELL + 1, Math.floor(p / grid) * CELL + 4);
      if (word >= 0) {
        boxed++;
        assert.ok(near(pixel, hex(HIGHLIGHT_COLOURS[word]!)), `patch ${p} (token ${token}, "${HIGHLIGHT[word]}") should be boxed, got ${pixel}`);
      } else {
        for (const c of HIGHLIGHT_COLOURS) assert.ok(!near(pixel, hex(c)), `patch ${p} (token ${token}) should not be boxed, got ${pixel}`);
      }
    });
    // The check above only means something if both kinds of patch occur.
    assert.ok(boxed > 0 && boxed < grid * grid, `boxed ${boxed} of ${grid * grid} patches`);
  });

  test('a long prompt wraps the legend onto more rows inside the picture width, none cut off', async () => {
    const prompt = 'a red circle and a blue square beside a small green triangle under a yellow star on a white table';
    const out = join(dir, 'long');
    const cell = 16; // a 64-pixel-wide picture: room for a few labels per row
    const [result] = await runAlign({ checkpoint: join(dir, 'run'), images: [image], prompt, highlight: ['triangle'], out, cell, backend: 'cpu' });
    const side = 4 * cell;
    const layout = legendLayout(result!.map.tokens, side);
    assert.equal(layout.items.length, result!.map.tokens.length, 'every token has a label');
    assert.ok(layout.height > LEGEND_HEIGHT, `more than one row (${layout.height} px)`);
    for (const item of layout.items) {
      // A label fits its row unless it alone is wider than the picture (then it starts the row).
      assert.ok(item.x + item.width <= side - 4 || item.x === 6, `${item.label} at ${item.x} in row ${item.row}`);
    }
    assert.deepEqual(layout.items.map((i) => i.row), [...layout.items.map((i) => i.row)].sort((a, b) => a - b), 'rows in token order');
    const meta = await sharp(result!.file).metadata();
    assert.deepEqual([meta.width, meta.height], [side, side + layout.height]);
    const svg = alignmentSvg(result!.map, cell);
    for (const item of layout.items) assert.ok(svg.includes(`>${item.label.replace(/</g, '&#60;').replace(/>/g, '&#62;')}</text>`), item.label);
  });

  test('a highlighted word that is not in the prompt is an error naming the option', async () => {
    await assert.rejects(
      runAlign({ checkpoint: join(dir, 'run'), images: [image], prompt: PROMPT, highlight: ['triangle'], out: join(dir, 'x'), backend: 'cpu' }),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'highlight',
    );
  });

  test('a missing checkpoint is FILIP_ERR_CHECKPOINT', async () => {
    await assert.rejects(
      runAlign({ checkpoint: join(dir, 'nothing-here'), images: [image], prompt: PROMPT, out: join(dir, 'x'), backend: 'cpu' }),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT',
    );
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ['no images', { images: [] }, 'images'],
    ['cell too small', { cell: 2 }, 'cell'],
    ['cell not an integer', { cell: 12.5 }, 'cell'],
    ['too many highlights', { highlight: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] }, 'highlight'],
    ['unknown backend', { backend: 'gpu' }, 'backend'],
    ['empty prompt', { prompt: '' }, 'prompt'],
    ['unknown option', { colour: 'red' }, 'colour'],
  ];
  for (const [name, patch, field] of bad) {
    test(`options: ${name} is FILIP_ERR_INVALID_OPTION on ${field}`, () => {
      assert.throws(
        () => resolveAlignOptions({ checkpoint: 'run', images: ['a.png'], prompt: 'a red circle', ...patch } as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
      );
    });
  }
});
