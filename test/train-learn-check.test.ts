// The learning check's own parts (src/train/learn-check.ts): the ambiguity ceiling printed next to the
// demo scenes' zero-shot figures, the single-object scenes it generates, its options, and a toy-sized
// run end to end: no held-out scene is trained on, both losses are evaluated on both held-out sets, and
// the report prints them side by side with the verdicts. (Whether the model learns is
// test/train-eval.test.ts's and `npm run bench:train`'s concern; this file stays fast.)
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { FilipError } from '../src/core/errors.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import type { DemoObject } from '../src/demo/scene.js';
import {
  formatLearnCheck,
  learnCheckVerdicts,
  resolveLearnCheckOptions,
  runLearnCheck,
  sameColourBatches,
  shortCaption,
  singleObjectScenes,
  zeroShotCeiling,
  type LearnCheckReport,
} from '../src/train/learn-check.js';

const obj = (shape: DemoObject['shape'], colour: DemoObject['colour']): DemoObject => ({
  shape,
  colour,
  size: 'large',
  bbox: { x: 0, y: 0, width: 10, height: 10 },
});

describe('zero-shot ceiling on scenes with several objects', () => {
  // Square 100x100 scenes unless given: the centre crop keeps all of them.
  const at = (o: DemoObject, x: number): DemoObject => ({ ...o, bbox: { ...o.bbox, x } });
  const table: [string, DemoObject[][], number, number, number?][] = [
    ['one object: the label is certain', [[obj('circle', 'red')]], 1, 1],
    ['two shapes, one colour', [[obj('circle', 'red'), obj('star', 'red')]], 0.5, 1],
    ['three objects, two distinct shapes, three colours', [[obj('circle', 'red'), obj('star', 'blue'), obj('circle', 'green')]], 0.5, 1 / 3],
    ['the mean over scenes', [[obj('circle', 'red')], [obj('circle', 'red'), obj('star', 'blue')]], 0.75, 0.75],
    // 200x100: the crop keeps x in [50, 150]
    ['a second object cut off by the centre crop is not seen', [[at(obj('circle', 'red'), 95), at(obj('star', 'blue'), 180)]], 1, 1, 200],
    ['a main object cut off scores chance (5 shapes, 6 colours)', [[at(obj('circle', 'red'), 0), at(obj('star', 'blue'), 95)]], 1 / 5, 1 / 6, 200],
  ];
  for (const [name, scenes, shape, colour, width = 100] of table) {
    test(name, () => {
      // through JSON, as the corpus is read back: `main` is then a copy of objects[0], not the same object
      const s = JSON.parse(JSON.stringify(scenes.map((objects) => ({ objects, main: objects[0]!, width, height: 100 }))));
      assert.equal(zeroShotCeiling(s, 'shape'), shape);
      assert.equal(zeroShotCeiling(s, 'colour'), colour);
    });
  }
});

describe('single-object scenes', () => {
  let a: string;
  let b: string;
  before(async () => {
    a = await mkdtemp(join(tmpdir(), 'filip-singles-'));
    b = await mkdtemp(join(tmpdir(), 'filip-singles-'));
  });
  after(async () => {
    await rm(a, { recursive: true, force: true });
    await rm(b, { recursive: true, force: true });
  });

  test('each has exactly one object, named by its caption; the same seed gives the same scenes', async () => {
    const first = await singleObjectScenes(a, 3, 6);
    const again = await singleObjectScenes(b, 3, 6);
    assert.equal(first.length, 6);
    assert.deepEqual(again, first);
    for (const s of first) {
      assert.equal(s.objects.length, 1, s.id);
      // square, so the trainer's centre crop keeps the whole picture and the object in it
      assert.equal(s.width, s.height, s.id);
      assert.deepEqual(s.main, s.objects[0]);
      assert.match(s.description, new RegExp(`\\b${s.main.colour} ${s.main.shape}\\b`), s.description);
    }
    const other = await singleObjectScenes(join(b, 'other'), 4, 6);
    assert.notDeepEqual(other.map((s) => s.description), first.map((s) => s.description));
  });
});

describe('short captions of the single-object training scenes', () => {
  const table: ['shape' | 'colour' | 'colour-shape', DemoObject['colour'], DemoObject['shape'], string][] = [
    ['shape', 'red', 'circle', 'a circle'],
    ['shape', 'green', 'triangle', 'a triangle'],
    ['colour', 'red', 'circle', 'a red object'],
    ['colour', 'orange', 'star', 'an orange object'],
    ['colour-shape', 'red', 'circle', 'a red circle'],
    ['colour-shape', 'orange', 'star', 'an orange star'],
    ['colour-shape', 'purple', 'diamond', 'a purple diamond'],
  ];
  for (const [style, colour, shape, caption] of table) {
    test(`${style}, ${colour} ${shape}: "${caption}", the scene otherwise unchanged`, () => {
      const main = obj(shape, colour);
      const scene = { id: 'x1', file: 'images/x1.png', format: 'png', width: 300, height: 300, background: 'white', objects: [main], main, description: `a small ${colour} ${shape} in the top left corner` };
      const short = shortCaption(scene as never, style);
      assert.equal(short.description, caption);
      assert.deepEqual({ ...short, description: scene.description }, scene);
    });
  }
});

describe('same-colour batches', () => {
  const colours: DemoObject['colour'][] = ['red', 'green', 'blue'];
  const shapes: DemoObject['shape'][] = ['circle', 'square', 'star', 'triangle', 'diamond'];
  const item = (id: string, o: DemoObject) => ({ id, scene: { objects: [o], main: o } as never });
  // 3 colours x 11 singles (2 whole batches of 4 each, 3 left over), 10 demo scenes
  const singles = colours.flatMap((c, ci) => Array.from({ length: 11 }, (_, i) => item(`x${ci}-${i}`, obj(shapes[i % 5]!, c))));
  const demo = Array.from({ length: 10 }, (_, i) => item(`d${i}`, obj(shapes[i % 5]!, colours[i % 3]!)));
  const b = sameColourBatches(demo, singles, 4, 7);
  const batches = Array.from({ length: b.rows.length / 4 }, (_, i) => b.rows.slice(4 * i, 4 * i + 4));

  test('whole batches only; every scene at most once; what is left out is counted', () => {
    assert.equal(b.rows.length % 4, 0);
    assert.equal(b.batches, batches.length);
    assert.equal(new Set(b.rows.map((r) => r.id)).size, b.rows.length);
    assert.equal(b.rows.length + b.dropped, demo.length + singles.length);
    assert.ok(b.dropped < 4);
  });
  test('each colour gives its whole batches of single-object scenes; the rest go into mixed batches with the demo scenes', () => {
    assert.equal(b.sameColour, 6);
    const oneColour = batches.filter((batch) => batch.every((r) => r.id.startsWith('x')) && new Set(batch.map((r) => (r.scene as { main: DemoObject }).main.colour)).size === 1);
    assert.ok(oneColour.length >= 6);
    for (const batch of batches.filter((x) => x.some((r) => r.id.startsWith('d')))) {
      assert.ok(!oneColour.includes(batch));
    }
  });
  test('seeded: the same seed gives the same order, another seed another', () => {
    assert.deepEqual(sameColourBatches(demo, singles, 4, 7).rows.map((r) => r.id), b.rows.map((r) => r.id));
    assert.notDeepEqual(sameColourBatches(demo, singles, 4, 8).rows.map((r) => r.id), b.rows.map((r) => r.id));
  });
});

describe('options', () => {
  test('defaults: tiny at 64 px, both losses, single-object scenes on top of the demo corpus, shape first', () => {
    const o = resolveLearnCheckOptions({ out: 'x' });
    assert.equal(o.preset, 'tiny');
    assert.equal(o.imageSize, 64);
    assert.deepEqual(o.losses, ['filip', 'clip']);
    assert.ok(o.singles > 0);
    assert.ok(o.shapeFirst > 0, 'the curriculum is on');
    assert.equal(o.singleCaptions, 'colour-shape');
    assert.equal(o.batches, 'random');
  });
  const bad: [string, Record<string, unknown>, string][] = [
    ['held-out share of 0', { heldOut: 0 }, 'heldOut'],
    ['held-out share of 1', { heldOut: 1 }, 'heldOut'],
    ['no losses', { losses: [] }, 'losses'],
    ['an unknown loss', { losses: ['siglip'] }, 'losses'],
    ['negative single-object scenes', { singles: -1 }, 'singles'],
    ['an unknown caption style', { singleCaptions: 'long' }, 'singleCaptions'],
    ['an unknown batch order', { batches: 'sorted' }, 'batches'],
    ['a shape-first stage without single-object scenes', { singles: 0 }, 'shapeFirst'],
    ['a token share of 0', { topk: 0 }, 'topk'],
    ['a token share above 1', { topk: 1.5 }, 'topk'],
    ['too few demo scenes', { scenes: 10 }, 'scenes'],
    ['an unknown key', { epochs: 3 }, 'epochs'],
  ];
  for (const [what, input, field] of bad) {
    test(`rejects ${what}`, () => {
      assert.throws(
        () => resolveLearnCheckOptions({ out: 'x', ...input } as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
      );
    });
  }
});

describe('a toy-sized run end to end', () => {
  let dir: string;
  let report: LearnCheckReport;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'filip-learn-toy-'));
    report = await runLearnCheck({ out: dir, scenes: 30, singles: 16, shapeFirst: 2, steps: 2, batch: 4, warmup: 1, imageSize: 16, backend: 'wasm' });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const ids = async (name: string) =>
    (await readFile(join(dir, `${name}.tsv`), 'utf8'))
      .trim()
      .split('\n')
      .slice(1)
      .map((line) => line.split('\t')[2]!);

  test('no held-out scene is in the training manifest', async () => {
    const train = new Set(await ids('train'));
    const held = [...(await ids('heldout')), ...(await ids('heldout-singles'))];
    assert.equal(train.size, report.trainScenes + report.trainSingles);
    assert.equal(held.length, report.heldOutScenes + report.heldOutSingles);
    for (const id of held) assert.ok(!train.has(id), `${id} is both held out and trained on`);
    assert.equal(report.heldOutSingles, 4);
    assert.equal(report.trainSingles, 12);
  });

  test('stage 1 trains the single-object scenes captioned by shape alone, stage 2 everything with colour and shape (the defaults); held-out ones keep the scene caption', async () => {
    const captions = async (name: string) =>
      (await readFile(join(dir, `${name}.tsv`), 'utf8')).trim().split('\n').slice(1).map((line) => ({ caption: line.split('\t')[1]!, id: line.split('\t')[2]! }));
    const stageOne = await captions('shape-first');
    assert.equal(stageOne.length, report.trainSingles);
    for (const r of stageOne) assert.match(r.caption, /^an? (circle|square|triangle|star|diamond)$/, r.id);
    const singlesTrained = (await captions('train')).filter((r) => r.id.startsWith('x'));
    assert.deepEqual(singlesTrained.map((r) => r.id).sort(), stageOne.map((r) => r.id).sort());
    for (const r of singlesTrained) assert.match(r.caption, /^an? (red|orange|yellow|green|blue|purple) (circle|square|triangle|star|diamond)$/, r.id);
    const held = await captions('heldout-singles');
    assert.ok(held.every((r) => r.caption.split(' ').length > 3), 'held-out single-object scenes keep their full captions');
  });

  test('both losses are trained the same number of steps, stage 2 from stage 1 weights, and evaluated on both held-out sets', async () => {
    assert.deepEqual(report.runs.map((r) => r.loss), ['filip', 'clip']);
    for (const run of report.runs) {
      assert.equal(run.train.step, 2);
      const stageOne = await loadCheckpoint<{ train: { loss: string; steps: number } }>(join(dir, `run-${run.loss}-shape-first`));
      assert.equal(stageOne.step, 2);
      assert.equal(stageOne.config.train.loss, run.loss);
      const config = JSON.parse(await readFile(join(dir, `run-${run.loss}`, 'config.json'), 'utf8')) as { train: { init: string; loss: string } };
      assert.equal(config.train.init, join(dir, `run-${run.loss}-shape-first`));
      assert.equal(run.eval.pairs, report.heldOutScenes);
      assert.equal(run.singles?.pairs, report.heldOutSingles);
      assert.deepEqual(run.singles?.zeroShot.map((z) => z.task), ['shape', 'colour']);
    }
    assert.equal(report.runs[0]!.eval.similarity, 'tokenwise');
    assert.equal(report.runs[1]!.eval.similarity, 'global');
  });

  test('the report prints both columns, the ceiling and one verdict per claim', () => {
    const text = formatLearnCheck(report);
    assert.match(text, /^\s+filip\s+clip$/m);
    assert.match(text, /single-object held-out scenes \(4\)/);
    assert.match(text, /ceiling \d+\.\d%/);
    const verdicts = learnCheckVerdicts(report);
    assert.equal(verdicts.length, 3);
    for (const v of verdicts) assert.ok(text.includes(v.claim));
  });
});
