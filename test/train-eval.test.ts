// `filip eval` and the learning check: the metrics' building blocks on inputs whose answer is known
// (retrieval ranks, where a scene's box lands in the model's input, which tokens a word has), and,
// at a CI-sized budget, that a tiny model trained on the demo's scenes classifies held-out scenes by
// colour far above chance; `filip eval` on that checkpoint gives the same figures as the library.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import sharp from 'sharp';

import { FilipError } from '../src/core/errors.js';
import { decodeToSquare } from '../src/train/data.js';
import {
  boxInModelInput,
  formatEvalReport,
  patchesInBox,
  recallAtK,
  resolveEvalOptions,
  wordTokenPositions,
  type EvalReport,
} from '../src/train/eval.js';
import { formatLearnCheck, runLearnCheck, type LearnCheckReport } from '../src/train/learn-check.js';
import { BpeTokenizer } from '../src/train/tokenizer.js';

describe('retrieval recall', () => {
  // Rows are queries; the right answer of row q is column q.
  const table: [string, number[], number, { r1: number; r5: number; r10: number }][] = [
    ['all right at rank 1', [0.9, 0.1, 0.2, 0.8], 2, { r1: 1, r5: 1, r10: 1 }],
    ['one right, one second', [0.9, 0.1, 0.95, 0.8], 2, { r1: 0.5, r5: 1, r10: 1 }],
    ['a tie counts against', [0.5, 0.5, 0.1, 0.7], 2, { r1: 0.5, r5: 1, r10: 1 }],
  ];
  for (const [name, scores, n, want] of table) {
    test(name, () => assert.deepEqual(recallAtK(Float32Array.from(scores), n), want));
  }
  test('rank 6 of 12 is in R@10 but not R@5', () => {
    const n = 12;
    const s = new Float32Array(n * n);
    for (let q = 0; q < n; q++) for (let c = 0; c < n; c++) s[q * n + c] = q === c ? 0.5 : c < 5 ? 0.9 : 0.1;
    // Queries 0-4 have 4 others above them (rank 5: in R@5); queries 5-11 have 5 above (rank 6).
    assert.deepEqual(recallAtK(s, n), { r1: 0, r5: 5 / 12, r10: 1 });
  });
});

describe('a scene box in the model input', () => {
  test('the box maps through the stored resize and the loader\'s cover crop onto the drawn pixels', async () => {
    // A 120x90 scene with a red box at x 70..100, y 20..50; stored at 80x60 as keep-ratio ingest would.
    const scene = { width: 120, height: 90 };
    const bbox = { x: 70, y: 20, width: 30, height: 30 };
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="90"><rect width="120" height="90" fill="#ffffff"/>` +
      `<rect x="70" y="20" width="30" height="30" fill="#ff0000"/></svg>`;
    const stored = await sharp(Buffer.from(svg)).resize(80, 60).png().toBuffer();
    const size = 48;
    const img = await decodeToSquare(stored, size);
    const box = boxInModelInput(bbox, scene, { width: 80, height: 60 }, size);
    const red = (x: number, y: number) => {
      const i = (y * size + x) * 3;
      return img.data[i]! > 200 && img.data[i + 1]! < 60 && img.data[i + 2]! < 60;
    };
    let inside = 0;
    let outside = 0;
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
      const cx = x + 0.5;
      const cy = y + 0.5;
      const margin = 1.5;
      if (cx > box.x + margin && cx < box.x + box.width - margin && cy > box.y + margin && cy < box.y + box.height - margin) {
        assert.ok(red(x, y), `pixel ${x},${y} inside the mapped box is red`);
        inside++;
      } else if (cx < box.x - margin || cx > box.x + box.width + margin || cy < box.y - margin || cy > box.y + box.height + margin) {
        assert.ok(!red(x, y), `pixel ${x},${y} outside the mapped box is not red`);
        outside++;
      }
    }
    assert.ok(inside > 50 && outside > 1000);
    // By hand: x 70*(2/3)*0.8 - 8 = 29.3 .. 45.3 (crop offset (64-48)/2), y 10.7 .. 26.7. Of the 6x6
    // patches of 8 px, centres x 36 and 44 (columns 4, 5) and y 12 and 20 (rows 1, 2) are inside.
    assert.deepEqual(patchesInBox(box, size, 8), [10, 11, 16, 17]);
  });
});

describe('word token positions', () => {
  const tokenizer = BpeTokenizer.fromMerges([['r', 'e'], ['re', 'd</w>'], ['s', 't'], ['st', 'a'], ['sta', 'r</w>']]);
  const table: [string, string, number[]][] = [
    ['red', 'a red star', [2]], // [BOS]=0, a=1, red=2
    ['star', 'a red star', [3]],
    ['star', 'A Red STAR!', [3]], // lower-cased like the tokenizer
    ['blue', 'a blue star', [2, 3, 4, 5]], // no merges: one token per letter
    ['star', 'a blue star', [6]],
    ['red', 'a red star above a red circle', [2]], // the first occurrence: the main object is named first
    ['green', 'a red star', []],
  ];
  for (const [word, text, want] of table) {
    test(`"${word}" in "${text}"`, () => assert.deepEqual(wordTokenPositions(tokenizer, text, word, 77), want));
  }
  test('tokens cut by the context length are not matched', () => {
    // [BOS] a red star [EOS] needs 5; with 4 the word "star" (position 3) is replaced by [EOS].
    assert.deepEqual(wordTokenPositions(tokenizer, 'a red star', 'star', 4), []);
  });
});

describe('eval options', () => {
  const bad: [string, Record<string, unknown>, string][] = [
    ['unknown label task', { labels: ['size'] }, 'labels'],
    ['labels not a list', { labels: 'shape' }, 'labels'],
    ['unknown similarity', { similarity: 'cosine' }, 'similarity'],
    ['template without {}', { templates: ['a photo'] }, 'templates[0]'],
    ['template with two {}', { templates: ['{} and {}'] }, 'templates[0]'],
    ['negative limit', { limit: -1 }, 'limit'],
    ['zero batch', { batch: 0 }, 'batch'],
    ['unknown backend', { backend: 'gpu' }, 'backend'],
    ['unknown option', { topk: 0.5 }, 'topk'],
    ['empty checkpoint', { checkpoint: '' }, 'checkpoint'],
  ];
  for (const [name, patch, field] of bad) {
    test(`${name} is FILIP_ERR_INVALID_OPTION on ${field}`, () => {
      assert.throws(
        () => resolveEvalOptions({ checkpoint: 'run', shards: 'held', ...patch } as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
      );
    });
  }
  test('defaults: both demo tasks, auto similarity, eight templates', () => {
    const o = resolveEvalOptions({ checkpoint: 'run', shards: 'held' });
    assert.deepEqual(o.labels, ['shape', 'colour']);
    assert.equal(o.similarity, 'auto');
    assert.equal(o.templates.length, 8);
  });
});

describe('learning at a CI-sized budget', () => {
  let dir: string;
  let report: LearnCheckReport;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'filip-learn-'));
    // 300 demo scenes (about 225 for training) and no single-object ones (so no shape-first stage), at
    // 48 px, 150 updates of 32 pairs, FILIP loss only: the full check (npm run bench:train) is too long
    // for the test suite.
    report = await runLearnCheck({ out: dir, scenes: 300, singles: 0, shapeFirst: 0, imageSize: 48, steps: 150, losses: ['filip'], backend: 'wasm' });
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the training loss falls well below ln(batch)', (t) => {
    t.diagnostic(formatLearnCheck(report));
    const run = report.runs[0]!;
    assert.ok(run.train.firstLoss > Math.log(32) - 0.2, `first ${run.train.firstLoss}`);
    assert.ok(run.train.lastLoss < Math.log(32) - 1, `last ${run.train.lastLoss}`);
  });

  test('zero-shot accuracy on held-out scenes is far above chance for colour; retrieval beats chance', () => {
    const run = report.runs[0]!;
    const colour = run.eval.zeroShot.find((z) => z.task === 'colour')!;
    const shape = run.eval.zeroShot.find((z) => z.task === 'shape')!;
    assert.ok(colour.images >= 40 && shape.images >= 40, `${colour.images} images`);
    assert.equal(colour.chance, 1 / 6);
    assert.equal(shape.chance, 1 / 5);
    assert.ok(colour.accuracy >= 2 * colour.chance, `colour ${colour.accuracy}`);
    // Shape is not asserted at this budget: on ~80 held-out scenes its accuracy moves +-5 points by
    // chance alone, and across demo corpora that differ in a few scenes it measured 17.7%, 20.5%,
    // 23.1% and 26.3% (chance 20%; 20.5% was with 200 steps). The learning check at its own budget
    // (npm run bench:train: shape first on single-object scenes) is where shape learning is shown;
    // see ARCHITECTURE.md.
    // Retrieval among the held-out pairs beats chance (1/n at R@1) several times over.
    assert.ok(run.eval.retrieval.textToImage.r5 >= 5 * (5 / run.eval.pairs), `t2i R@5 ${run.eval.retrieval.textToImage.r5}`);
    assert.match(formatLearnCheck(report), /zero-shot colour/);
  });

  test('`filip eval` on the checkpoint prints the same figures as JSON, and a table', () => {
    const args = ['--import', 'tsx', 'src/cli/filip.ts', 'eval', '--checkpoint', join(dir, 'run-filip'), '--shards', join(dir, 'heldout-shards'), '--corpus', join(dir, 'corpus'), '--backend', 'wasm'];
    const json = spawnSync(process.execPath, [...args, '--json'], { encoding: 'utf8' });
    assert.equal(json.status, 0, json.stderr);
    const cli = JSON.parse(json.stdout) as EvalReport;
    const lib = report.runs[0]!.eval;
    assert.equal(cli.pairs, lib.pairs);
    assert.equal(cli.similarity, 'tokenwise');
    for (const z of lib.zeroShot) assert.equal(cli.zeroShot.find((c) => c.task === z.task)?.correct, z.correct, z.task);
    assert.deepEqual(cli.retrieval, lib.retrieval);
    const table = spawnSync(process.execPath, args, { encoding: 'utf8' });
    assert.equal(table.status, 0, table.stderr);
    assert.equal(table.stdout.trim(), formatEvalReport({ ...cli, seconds: 0 }).trim());
  });

  test('`filip eval --report`: written into new folders; a path that cannot be written is exit 2 naming --report, after the results', () => {
    const args = ['--import', 'tsx', 'src/cli/filip.ts', 'eval', '--checkpoint', join(dir, 'run-filip'), '--shards', join(dir, 'heldout-shards'), '--corpus', join(dir, 'corpus'), '--backend', 'wasm', '--json'];
    const file = join(dir, 'reports', 'new', 'eval.json');
    const good = spawnSync(process.execPath, [...args, '--report', file], { encoding: 'utf8', timeout: 300_000 });
    assert.equal(good.status, 0, good.stderr);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), JSON.parse(good.stdout));
    // Under a file, and under /proc (where Node's own recursive mkdir never returned).
    const bad: [string, RegExp][] = [[join(file, 'x.json'), /eval\.json is a file, not a folder/]];
    if (existsSync('/proc/self')) bad.push(['/proc/filip-eval-test/r.json', /ENOENT/]);
    for (const [report, why] of bad) {
      const r = spawnSync(process.execPath, [...args, '--report', report], { encoding: 'utf8', timeout: 300_000 });
      assert.equal(r.signal, null, `${report}: did not finish`);
      assert.equal(r.status, 2, `${report}: ${r.stderr}`);
      const figures = (json: string): unknown => ({ ...(JSON.parse(json) as EvalReport), seconds: 0 });
      assert.deepEqual(figures(r.stdout), figures(good.stdout), 'the results come first');
      const last = r.stderr.trim().split('\n').at(-1)!;
      assert.match(last, /^filip: FILIP_ERR_INVALID_OPTION: .*--report/, report);
      assert.match(last, why, report);
    }
  });

  test('`filip eval` without a checkpoint exits 2 with FILIP_ERR_CHECKPOINT', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/filip.ts', 'eval', '--checkpoint', join(dir, 'none'), '--shards', join(dir, 'heldout-shards'), '--backend', 'cpu'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /FILIP_ERR_CHECKPOINT/);
  });
});
