// The training loop end to end on a small real shard folder: coloured shapes drawn by sharp with
// matching captions ("a red circle"), ingested by runIngest from a file:// manifest. Covers the batches
// (crop, normalisation, caption choice, seeding, stream position), the train options and resume rules,
// one step not leaking tensors, the tiny model learning, and through the real CLI: the backend line,
// checkpoints, SIGINT, and a resume that continues the uninterrupted run's loss curve step for step.
import assert from 'node:assert/strict';
import { readOutput } from './helpers/read.js';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

import { FilipError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/random.js';
import { autoAugment } from '../src/augment/autoaugment.js';
import { openShardStream } from '../src/data/index.js';
import { runIngest } from '../src/pipeline/ingest.js';
import { selectBackend } from '../src/train/backend.js';
import { listCheckpoints, loadCheckpoint } from '../src/train/checkpoint.js';
import { DEFAULT_LR, resolveTrainOptions, resumeTrainOptions, type TrainOptions } from '../src/train/config.js';
import { BatchLoader, chooseCaption, decodeToSquare, makeBatch, normaliseInto, resolveBatchOptions, type TrainingPair } from '../src/train/data.js';
import { CLIP_MEAN, CLIP_STD, FilipModel, modelConfig } from '../src/train/model.js';
import { Optimizer, resolveOptimizerOptions } from '../src/train/optim.js';
import { BpeTokenizer } from '../src/train/tokenizer.js';
import { Trainer, trainStep, type LogRecord } from '../src/train/trainer.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FILIP = join(ROOT, 'bin', 'filip.js');

const COLOURS: Record<string, string> = { red: '#d62728', green: '#2ca02c', blue: '#1f5fbf', yellow: '#f0c419' };
const SHAPES = ['circle', 'square', 'triangle'] as const;

function shapeSvg(shape: (typeof SHAPES)[number], fill: string, variant: number): string {
  const cx = 40 + (variant % 2) * 16;
  const cy = 40 + Math.floor(variant / 2) * 16;
  const r = 22;
  const body =
    shape === 'circle'
      ? `<circle cx="${cx}" cy="${cy}" r="${r}" fill="${fill}"/>`
      : shape === 'square'
        ? `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="${fill}"/>`
        : `<polygon points="${cx},${cy - r} ${cx - r},${cy + r} ${cx + r},${cy + r}" fill="${fill}"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96"><rect width="96" height="96" fill="#f4f4f0"/>${body}</svg>`;
}

let tmp: string;
let shards: string;
let mergesFile: string;

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'filip-train-'));
  await mkdir(join(tmp, 'img'));
  // 4 colours x 3 shapes x 4 positions = 48 pairs, ingested into 3 shards of 16.
  const rows: string[] = [];
  for (const [colour, fill] of Object.entries(COLOURS)) {
    for (const shape of SHAPES) {
      for (let v = 0; v < 4; v++) {
        const file = join(tmp, 'img', `${colour}-${shape}-${v}.png`);
        await sharp(Buffer.from(shapeSvg(shape, fill, v))).png().toFile(file);
        rows.push(`${pathToFileURL(file).href}\ta ${colour} ${shape}`);
      }
    }
  }
  const manifest = join(tmp, 'manifest.tsv');
  await writeFile(manifest, `url\tcaption\n${rows.join('\n')}\n`);
  shards = join(tmp, 'shards');
  await runIngest({ inputs: [manifest], output: shards, shardSize: 16, progress: 'none', image: { size: 64 } });
  // A fixed small tokenizer for the library tests (the CLI tests learn theirs from the shards).
  mergesFile = join(tmp, 'merges.txt');
  await writeFile(mergesFile, '#version: 0.2\nr e\nc i\nre d</w>\ns q\n');
  await selectBackend('wasm');
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function firstPairs(n: number): Promise<TrainingPair[]> {
  const stream = await openShardStream(shards, { columns: ['caption', 'image'], shuffleShards: false });
  const pairs: TrainingPair[] = [];
  for await (const s of stream) {
    pairs.push(s);
    if (pairs.length === n) break;
  }
  return pairs;
}

describe('batches', () => {
  test('an image is resized on its shorter side and centre-cropped to the model size', async () => {
    // 300 x 100: blue 100 px on each side, red in the middle 100 px. The centre crop is all red.
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100"><rect width="300" height="100" fill="#0000ff"/><rect x="100" width="100" height="100" fill="#ff0000"/></svg>`;
    const png = await sharp(Buffer.from(svg)).png().toBuffer();
    const img = await decodeToSquare(png, 32);
    assert.equal(img.width, 32);
    assert.equal(img.height, 32);
    assert.equal(img.data.length, 32 * 32 * 3);
    for (let i = 0; i < img.data.length; i += 3) {
      assert.ok(img.data[i]! > 200 && img.data[i + 2]! < 60, `pixel ${i / 3} is red: ${img.data.slice(i, i + 3)}`);
    }
    // Grey with alpha still gives 3 channels.
    const grey = await sharp({ create: { width: 40, height: 50, channels: 4, background: { r: 128, g: 128, b: 128, alpha: 1 } } }).png().toBuffer();
    assert.equal((await decodeToSquare(grey, 16)).data.length, 16 * 16 * 3);
  });

  test("pixels are normalised with CLIP's mean and std", () => {
    const img = { width: 2, height: 1, data: Uint8Array.from([255, 255, 255, 0, 0, 0]) };
    const out = new Float32Array(6);
    normaliseInto(img, out, 0);
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(out[c]! - (1 - CLIP_MEAN[c]!) / CLIP_STD[c]!) < 1e-5);
      assert.ok(Math.abs(out[3 + c]! - -CLIP_MEAN[c]! / CLIP_STD[c]!) < 1e-5);
    }
  });

  test('the caption is drawn uniformly among the original and its back-translations', () => {
    const pair = {
      caption: 'a red circle',
      backTranslations: [
        { pivot: 'deu', engine: 'apertium', text: 'a red round' },
        { pivot: 'spa', engine: 'apertium', text: 'one red circle' },
      ],
    };
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const c = chooseCaption(pair, mulberry32(i));
      counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    assert.equal(counts.size, 3);
    for (const [caption, n] of counts) assert.ok(n > 850 && n < 1150, `${caption}: ${n} of 3000`);
    assert.equal(chooseCaption({ caption: 'only this' }, mulberry32(1)), 'only this');
    assert.equal(chooseCaption({ caption: 'kept', backTranslations: [{ pivot: 'deu', engine: 'x', text: '  ' }] }, () => 0.99), 'kept');
  });

  test('a batch is a pure function of its pairs and step: same step, same batch; another step, other views', async () => {
    const pairs = await firstPairs(4);
    const tok = await BpeTokenizer.fromMergesFile(mergesFile);
    const o = resolveBatchOptions({ batch: 4, imageSize: 32, contextLength: 16, seed: 3 });
    const t = { tokenize: (x: readonly string[], l: number) => tok.tokenize(x, l), augment: (img: Parameters<typeof autoAugment>[0], rng: () => number) => autoAugment(img, rng, 'imagenet') };
    const a = await makeBatch(pairs, 7, null, o, t);
    const b = await makeBatch(pairs, 7, null, o, t);
    assert.deepEqual(b.pixels, a.pixels);
    assert.deepEqual(b.tokens.ids, a.tokens.ids);
    assert.equal(a.pixels.length, 4 * 32 * 32 * 3);
    assert.deepEqual(a.captions, pairs.map((p) => p.caption));
    // Over a few steps AutoAugment must change at least one image (some sub-policies are identity).
    let differs = false;
    for (let step = 8; step < 14 && !differs; step++) {
      const c = await makeBatch(pairs, step, null, o, t);
      differs = c.pixels.some((v, i) => v !== a.pixels[i]);
    }
    assert.ok(differs, 'augmentation depends on the step');
  });

  test('the loader hands out consecutive steps and the stream position after each batch', async () => {
    const stream = await openShardStream(shards, { columns: ['caption', 'image'], loop: true });
    const tok = await BpeTokenizer.fromMergesFile(mergesFile);
    const loader = new BatchLoader(stream, 5, resolveBatchOptions({ batch: 8, imageSize: 32 }), { tokenize: (x, l) => tok.tokenize(x, l) });
    const positions: unknown[] = [];
    const steps: number[] = [];
    for (let i = 0; i < 7; i++) {
      const batch = (await loader.next())!;
      steps.push(batch.step);
      positions.push(batch.position);
    }
    await loader.close();
    assert.deepEqual(steps, [5, 6, 7, 8, 9, 10, 11]);
    // 48 pairs an epoch: six batches of 8, then the next epoch begins.
    assert.deepEqual(positions, [8, 16, 24, 32, 40, 48, 8].map((consumed, i) => ({ epoch: i < 6 ? 0 : 1, consumed })));
  });

  test('undecodable images are skipped and named; a source where none decodes is FILIP_ERR_SHARD, not an endless loop', async () => {
    const tok = await BpeTokenizer.fromMergesFile(mergesFile);
    const good = await firstPairs(6);
    /** A looping source (as training reads shards) over `pairs`. */
    const looping = (pairs: readonly TrainingPair[]) => ({
      position: () => null,
      async *[Symbol.asyncIterator]() {
        for (;;) yield* pairs;
      },
    });
    const garbage = (key: string): TrainingPair => ({ key, image: Buffer.from('not an image at all'), caption: 'a broken picture' });
    const some = new BatchLoader(looping([good[0]!, garbage('bad-1'), ...good.slice(1, 3), garbage('bad-2'), ...good.slice(3)]), 1, resolveBatchOptions({ batch: 6, imageSize: 32 }), {
      tokenize: (x, l) => tok.tokenize(x, l),
    });
    const batch = (await some.next())!;
    await some.close();
    assert.equal(batch.size, 6);
    // The next batch is prefetched from the looping source, so it may have met them again.
    assert.ok(some.skipped >= 2, String(some.skipped));
    assert.deepEqual(some.skippedExamples.slice(0, 2).map((e) => e.split(':')[0]), ['bad-1', 'bad-2']);

    const none = new BatchLoader(looping([garbage('bad-a'), garbage('bad-b')]), 1, resolveBatchOptions({ batch: 4, imageSize: 32 }), {
      tokenize: (x, l) => tok.tokenize(x, l),
    });
    await assert.rejects(none.next(), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_SHARD' && /bad-[ab]/.test(e.message));
    await none.close();
  });
});

describe('train options', () => {
  const base = { shards: '/data', out: '/run' };
  const bad: [string, Record<string, unknown>, string][] = [
    ['an unknown preset', { preset: 'huge' }, 'preset'],
    ['a batch of one pair', { batch: 1 }, 'batch'],
    // A batch no process can build used to pass, warn, and then stall building it.
    ['a batch above MAX_TRAIN_BATCH', { batch: 1e9 }, 'batch'],
    ['a learning rate above 1', { lr: 5 }, 'lr'],
    ['topk 0', { topk: 0 }, 'topk'],
    ['topk above 1', { topk: 1.5 }, 'topk'],
    ['an unknown optimizer', { optimizer: 'sgd' }, 'optimizer'],
    ['an unknown backend', { backend: 'tpu' }, 'backend'],
    ['an unknown loss', { loss: 'siglip' }, 'loss'],
    ['an unknown augment policy', { augment: 'randaugment' }, 'augment'],
    ['a vocabulary under the byte alphabet', { vocabSize: 300 }, 'vocabSize'],
    ['a floor above the peak', { lr: 1e-4, minLr: 1 }, 'minLr'],
    ['an unknown key', { epochs: 3 }, 'epochs'],
    ['--init together with --resume', { init: '/a', resume: '/b' }, 'init'],
    ['a tokenizer file together with --init (the weights bring theirs)', { init: '/a', tokenizer: '/t.txt' }, 'tokenizer'],
  ];
  for (const [what, input, field] of bad) {
    test(`rejects ${what}`, () => {
      assert.throws(
        () => resolveTrainOptions({ ...base, ...input } as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
      );
    });
  }

  test('defaults follow the paper where it has them', () => {
    const o = resolveTrainOptions(base);
    assert.equal(o.optimizer, 'lamb');
    assert.equal(o.topk, 0.25);
    assert.equal(o.loss, 'filip');
    assert.equal(o.weightDecay, 0.2);
  });

  test("without --lr each optimiser gets its own rate (LAMB's is relative to each weight's norm); a given rate wins", () => {
    assert.equal(resolveTrainOptions(base).lr, DEFAULT_LR.lamb);
    assert.equal(resolveTrainOptions({ ...base, optimizer: 'adamw' }).lr, DEFAULT_LR.adamw);
    assert.equal(resolveTrainOptions({ ...base, optimizer: 'adamw', lr: 1e-3 }).lr, 1e-3);
    assert.equal(resolveTrainOptions({ ...base, lr: 2e-3 }).lr, 2e-3);
    // LAMB moves each decayed matrix by (peak rate) x its norm per update: at batch 32 the default
    // must be far above the 1.25e-4 of CLIP's 5e-4, at which the tiny model did not leave ln(32).
    assert.ok(DEFAULT_LR.lamb * Math.sqrt(32 / 512) >= 1e-3);
    // A resumed run keeps the rate it was trained with, whatever the defaults are now.
    const saved = resolveTrainOptions({ ...base, lr: 3e-3 });
    assert.equal(resumeTrainOptions(saved, {}, '/run/ckpt').lr, 3e-3);
  });

  test('on resume, a flag that contradicts the checkpoint is FILIP_ERR_CHECKPOINT naming it; run-time flags may change', () => {
    const saved: TrainOptions = resolveTrainOptions({ ...base, preset: 'tiny', batch: 8, steps: 50 });
    for (const [field, value] of [['preset', 'small'], ['batch', 16], ['steps', 60], ['loss', 'clip'], ['seed', 4]] as const) {
      assert.throws(
        () => resumeTrainOptions(saved, { [field]: value }, '/run/ckpt-00000010'),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT' && e.field === field,
        field,
      );
    }
    const same = resumeTrainOptions(saved, { preset: 'tiny', backend: 'cpu', saveEvery: 7, out: '/elsewhere' }, '/run/ckpt');
    assert.equal(same.backend, 'cpu');
    assert.equal(same.saveEvery, 7);
    assert.equal(same.out, '/elsewhere');
    assert.equal(same.steps, 50);
  });
});

describe('training', () => {
  test('a step frees every tensor it makes', async () => {
    const tok = await BpeTokenizer.fromMergesFile(mergesFile);
    const net = new FilipModel(modelConfig('tiny', { vocabSize: tok.vocabSize }), 1);
    const opt = new Optimizer(net.variables, resolveOptimizerOptions({ clipGradNorm: 1 }), (v) => net.noDecay(v));
    try {
      const batch = await makeBatch(await firstPairs(4), 1, null, resolveBatchOptions({ batch: 4, imageSize: 32, contextLength: 32 }), {
        tokenize: (x, l) => tok.tokenize(x, l),
      });
      for (const loss of ['filip', 'clip'] as const) {
        trainStep(net, opt, batch, 1e-3, { loss, topk: 0.25 });
        const before = tf.memory().numTensors;
        for (let i = 0; i < 3; i++) trainStep(net, opt, batch, 1e-3, { loss, topk: 0.25 });
        assert.equal(tf.memory().numTensors, before, `${loss}: numTensors after 3 more steps`);
      }
    } finally {
      opt.dispose();
      net.dispose();
    }
  });

  test('the tiny model learns with the default optimiser and rate (LAMB): the loss falls well below chance within 30 steps', async () => {
    const out = join(tmp, 'learn');
    const lines: string[] = [];
    const stream = { write: (s: string) => lines.push(s) } as unknown as NodeJS.WritableStream;
    const trainer = new Trainer(
      { shards, out, batch: 8, steps: 30, warmup: 5, backend: 'wasm', augment: 'none', vocabSize: 600, logEvery: 5, saveEvery: 0, shuffleBuffer: 48 },
      { stream },
    );
    const r = await trainer.run();
    const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const chance = Math.log(8);
    assert.equal(r.losses.length, 30);
    assert.ok(Math.abs(mean(r.losses.slice(0, 3)) - chance) < 0.3, `starts near chance ln 8: ${r.losses.slice(0, 3)}`);
    assert.ok(mean(r.losses.slice(-5)) < chance - 0.5, `last 5 losses ${r.losses.slice(-5).map((l) => l.toFixed(3))} vs chance ${chance.toFixed(3)}`);
    assert.equal(r.backend.backend, 'wasm');
    assert.deepEqual((await listCheckpoints(out)).map((c) => c.step), [30]);
    const log = (await readFile(join(out, 'train_log.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as LogRecord);
    assert.deepEqual(log.map((l) => l.step), [5, 10, 15, 20, 25, 30]);
    assert.ok(log.every((l) => l.pairsPerSec > 0 && l.lr >= 0 && Number.isFinite(l.loss)));
    // The checkpoint carries the model config and tokenizer needed to rebuild the model.
    const ckpt = await loadCheckpoint<{ model: { preset: string; text: { vocabSize: number } } }>(out);
    assert.equal(ckpt.config.model.preset, 'tiny');
    assert.equal(BpeTokenizer.fromJSON(ckpt.tokenizer).vocabSize, ckpt.config.model.text.vocabSize);
  });

  test("--init starts from another run's weights, model and tokenizer, with its own schedule and optimiser", async () => {
    const from = join(tmp, 'learn'); // the run of the test above: 30 steps, loss well below chance
    const source = await loadCheckpoint<{ model: unknown }>(from);
    const quiet = { stream: { write: () => true } as unknown as NodeJS.WritableStream };
    // lr 0: the weights cannot move, so what the run starts from is what its checkpoint holds.
    const frozen = { shards, batch: 8, steps: 3, warmup: 0, lr: 0, optimizer: 'adamw' as const, weightDecay: 0, backend: 'wasm' as const, augment: 'none' as const, saveEvery: 0, shuffleBuffer: 48 };
    const init = await new Trainer({ ...frozen, out: join(tmp, 'init'), init: from }, quiet).run();
    const fresh = await new Trainer({ ...frozen, out: join(tmp, 'fresh'), vocabSize: 600 }, quiet).run();
    const chance = Math.log(8);
    assert.equal(init.startStep, 0, 'a new schedule: steps count from 1');
    assert.equal(init.step, 3);
    const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(init.losses) < chance - 0.5, `from the trained weights: ${init.losses.map((l) => l.toFixed(3))}`);
    assert.ok(Math.abs(mean(fresh.losses) - chance) < 0.3, `from seeded random weights: ${fresh.losses.map((l) => l.toFixed(3))}`);
    const got = await loadCheckpoint<{ model: unknown }>(join(tmp, 'init'));
    assert.deepEqual(got.config.model, source.config.model);
    assert.deepEqual(got.tokenizer, source.tokenizer);
    assert.deepEqual(
      got.weights.map((w) => [w.name, [...w.data]]),
      source.weights.map((w) => [w.name, [...w.data]]),
    );
    await assert.rejects(
      new Trainer({ ...frozen, out: join(tmp, 'init-small'), init: from, preset: 'small' }, quiet).run(),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT' && e.field === 'preset',
    );
    await assert.rejects(
      new Trainer({ ...frozen, out: join(tmp, 'init-96'), init: from, modelOverrides: { imageSize: 96 } }, quiet).run(),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT' && e.field === 'modelOverrides',
    );
    await assert.rejects(
      new Trainer({ ...frozen, out: join(tmp, 'init-none'), init: join(tmp, 'img') }, quiet).run(),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_CHECKPOINT',
    );
  });

  test('a new run into a folder that holds a run is refused, the run untouched; --overwrite starts again', async () => {
    const quiet = { stream: { write: () => true } as unknown as NodeJS.WritableStream };
    const opts = { shards, batch: 8, steps: 2, warmup: 0, backend: 'wasm' as const, augment: 'none' as const, vocabSize: 600, saveEvery: 0, shuffleBuffer: 48 };
    const out = join(tmp, 'again');
    // Given relative, as users type it.
    await new Trainer({ ...opts, shards: relative(process.cwd(), shards), out }, quiet).run();
    const listing = async () => (await readdir(out)).sort();
    const before = await listing();
    const log = await readFile(join(out, 'train_log.jsonl'), 'utf8');
    assert.ok(before.includes('ckpt-00000002') && log.length > 0);
    // --resume finds the shards from any working directory.
    const saved = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as { train: { shards: string } };
    assert.equal(saved.train.shards, shards);
    assert.ok(isAbsolute(saved.train.shards));
    await assert.rejects(new Trainer({ ...opts, out }, quiet).run(), (e: unknown) => {
      assert.ok(e instanceof FilipError && e.code === 'FILIP_ERR_RESUME_MISMATCH', String(e));
      assert.match(e.message, /--resume .*--overwrite/);
      return true;
    });
    assert.deepEqual(await listing(), before);
    assert.equal(await readFile(join(out, 'train_log.jsonl'), 'utf8'), log, 'the log is not cut');
    const again = await new Trainer({ ...opts, out, steps: 3, overwrite: true }, quiet).run();
    assert.deepEqual([again.startStep, again.step], [0, 3]);
    assert.deepEqual((await listing()).filter((n) => n.startsWith('ckpt-')), ['ckpt-00000003'], 'the old checkpoints went');
    // A file where the run folder should be.
    await writeFile(join(tmp, 'a-file'), 'x');
    await assert.rejects(new Trainer({ ...opts, out: join(tmp, 'a-file') }, quiet).run(), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'out');
  });

  test('a batch larger than the data is warned about; the first step logs no rate instead of 0.0 pairs/s', async () => {
    const lines: string[] = [];
    const io = { stream: { write: (t: string) => lines.push(...t.split('\n').filter((l) => l.length > 0)) > 0 } as unknown as NodeJS.WritableStream };
    const pairs = (await readOutput(shards)).rows.length;
    const opts = { shards, steps: 2, warmup: 0, backend: 'wasm' as const, augment: 'none' as const, vocabSize: 600, saveEvery: 0, shuffleBuffer: 8, logEvery: 1 };
    await new Trainer({ ...opts, batch: pairs + 2, out: join(tmp, 'big-batch') }, io).run();
    const warning = lines.filter((l) => l.startsWith('warning:'));
    assert.deepEqual(warning, [`warning: the shards hold ${pairs} pairs, fewer than the batch of ${pairs + 2}: every batch repeats pairs; lower --batch to ${pairs} or less`]);
    const steps = lines.filter((l) => l.startsWith('step '));
    assert.match(steps[0]!, /^step 1\/2 .* - pairs\/s$/);
    assert.match(steps[1]!, /^step 2\/2 .* \d+\.\d pairs\/s$/);
    lines.length = 0;
    await new Trainer({ ...opts, batch: pairs, out: join(tmp, 'exact-batch') }, io).run();
    assert.deepEqual(lines.filter((l) => l.startsWith('warning:')), [], 'a batch of exactly the data is fine');
  });
});

// ---- the real CLI ----

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `filip train ...`; `onStdout` may send the child a signal. */
function filip(args: string[], onStdout?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FILIP, 'train', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function readLog(dir: string): Promise<LogRecord[]> {
  const text = await readFile(join(dir, 'train_log.jsonl'), 'utf8');
  return text.trim().split('\n').map((l) => JSON.parse(l) as LogRecord);
}

describe('filip train (CLI)', () => {
  const common = ['--shards', '', '--preset', 'tiny', '--batch', '8', '--steps', '10', '--lr', '0.01', '--warmup', '3', '--backend', 'wasm', '--vocab-size', '600', '--log-every', '1', '--save-every', '3', '--progress', 'log'];
  const args = (out: string) => common.map((a) => (a === '' ? shards : a)).concat(['--out', out]);

  test('SIGINT saves a checkpoint; --resume continues the uninterrupted loss curve step for step', async () => {
    const whole = join(tmp, 'cli-whole');
    const a = await filip(args(whole));
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /^backend wasm/m, 'prints the backend it uses');
    const reference = await readLog(whole);
    assert.deepEqual(reference.map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual((await listCheckpoints(whole)).map((c) => c.step), [9, 10], 'every 3 steps and at the end, newest 2 kept');

    const cut = join(tmp, 'cli-cut');
    let sent = false;
    const b = await filip(args(cut), (text, child) => {
      if (!sent && /^step 5\/10/m.test(text)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    assert.ok(sent, 'the run got to step 5');
    assert.equal(b.code, 130, b.stderr);
    const stoppedAt = Number(/stopped at step (\d+)/.exec(b.stdout)?.[1]);
    assert.ok(stoppedAt >= 5 && stoppedAt < 10, `stopped at ${stoppedAt}`);
    assert.equal((await listCheckpoints(cut)).at(-1)?.step, stoppedAt, 'the newest checkpoint is the step it stopped at');
    assert.ok(!(await readdir(cut)).some((n) => n.endsWith('.tmp')), 'no temporary checkpoint left');

    // A conflicting model shape is refused, naming the field, before anything is trained.
    const wrong = await filip(['--resume', cut, '--preset', 'small']);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /FILIP_ERR_CHECKPOINT/);
    assert.match(wrong.stderr, /preset/);

    const c = await filip(['--resume', cut, '--progress', 'log']);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, new RegExp(`resuming from .* at step ${stoppedAt}`));
    const resumed = await readLog(cut);
    assert.deepEqual(resumed.map((r) => r.step), reference.map((r) => r.step));
    for (const [i, r] of resumed.entries()) {
      const ref = reference[i]!;
      assert.ok(Math.abs(r.loss - ref.loss) <= 1e-4 * Math.max(1, ref.loss), `step ${r.step}: resumed loss ${r.loss}, uninterrupted ${ref.loss}`);
      assert.equal(r.lr, ref.lr, `step ${r.step}: same schedule`);
    }
    // Weights at the end agree too.
    const wa = (await loadCheckpoint(whole)).weights;
    const wc = (await loadCheckpoint(cut)).weights;
    for (const [i, w] of wa.entries()) {
      const other = wc[i]!;
      assert.equal(other.name, w.name);
      let maxDiff = 0;
      for (let j = 0; j < w.data.length; j++) maxDiff = Math.max(maxDiff, Math.abs(w.data[j]! - other.data[j]!));
      assert.ok(maxDiff < 1e-4, `${w.name}: max difference ${maxDiff}`);
    }
  });

  test('a missing required flag is a usage error', async () => {
    const r = await filip(['--shards', shards]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--out/);
  });
});
