// `npm run bench:train`: training throughput of the `small` preset on the WebAssembly backend and on
// the plain cpu backend, in one run. For each backend, in a child process of its own (so each peak RSS
// is its own): the backend's own matmul rate on 512x512 float32 matrices, then FILIP training steps on
// a fixed synthetic batch (random pixels, random token ids of a realistic caption length), then the
// matmul rate again. Printed per backend: pairs/s, the step's achieved GFLOP/s against the matmul
// GFLOP/s (the step's FLOPs counted analytically: forward matmuls x 3 for forward + backward), peak
// RSS and tfjs's peak tensor memory.
//
// The machine this runs on is shared, so every rate is given two ways: by wall clock, as the best of
// several timed repetitions (the least disturbed one; a mean over a busy second measures the
// neighbours), and per second of this process's own CPU time. The matmul reference is taken after
// warm-up repetitions (the first calls pay for XNNPACK packing the right operand and for growing the
// wasm heap), on the same two operands each time, reading the result back and freeing it every time.
//
// Then, unless `--parts throughput` is given, the learning check of the issue (scripts/learn-check.ts,
// src/train/learn-check.ts): `tiny` trained with the FILIP and the CLIP loss on the demo's generated
// scenes, evaluated on held-out ones, both side by side; its output is printed as it comes.
//
//   npm run bench:train [-- --batch 8 --steps 3 --cpu-steps 1 --backends wasm,cpu --parts throughput,learn]
//                       [-- --learn-out runs/learn-check]   (learning-check flags: scripts/learn-check.ts)

import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as tf from '@tensorflow/tfjs-core';

import { selectBackend } from '../src/train/backend.js';
import type { Batch } from '../src/train/data.js';
import { FilipModel, modelConfig, type ModelConfig } from '../src/train/model.js';
import { Optimizer, resolveOptimizerOptions } from '../src/train/optim.js';
import { trainStep } from '../src/train/trainer.js';
import { mulberry32 } from '../src/core/random.js';

const PRESET = 'small';
/** Real tokens per caption in the synthetic batch: [BOS] + 18 + [EOS], about a demo caption's length. */
const CAPTION_TOKENS = 20;

/** Side of the square matrices of the matmul reference. */
const MATMUL_N = 512;

interface Rate {
  /** GFLOP/s of the fastest timed repetition (wall clock). */
  best: number;
  /** GFLOP/s of the median repetition (wall clock). */
  median: number;
  /** GFLOP/s per second of this process's CPU time, over all timed repetitions. */
  perCpu: number;
}

interface ChildResult {
  backend: string;
  reason: string;
  /** The matmul reference: the better of the measurements before and after the steps. */
  matmul: Rate;
  matmulReps: number;
  /** Pairs per second over all timed steps (wall clock), and per CPU-second. */
  pairsPerSec: number;
  pairsPerCpuSec: number;
  /** The step's rate: best and median step by wall clock, and per CPU-second. */
  step: Rate;
  flopsPerStep: number;
  secondsPerStep: number;
  peakRssMiB: number;
  peakTensorMiB: number;
  tensorsAfter: number;
  steps: number;
  batch: number;
  loss: number;
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6;
}

const median = (xs: readonly number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

/** Rates of `work` (which does `flops` each call) over timed repetitions: best, median, per CPU-second. */
function rateOf(flops: number, seconds: readonly number[], cpu: number): Rate {
  return {
    best: flops / Math.min(...seconds) / 1e9,
    median: flops / median(seconds) / 1e9,
    perCpu: (flops * seconds.length) / cpu / 1e9,
  };
}

/**
 * The backend's matmul rate on n x n by n x n float32: 3 warm-up repetitions, then timed ones for at
 * least `minSeconds` and at least 5, each reading the product back (dataSync) and freeing it.
 */
function matmulRate(n: number, minSeconds = 1.5): { rate: Rate; reps: number } {
  const a = tf.randomUniform([n, n]);
  const b = tf.randomUniform([n, n]);
  const once = () => {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  };
  for (let i = 0; i < 3; i++) once();
  const times: number[] = [];
  const cpu = process.cpuUsage();
  const started = performance.now();
  while (times.length < 5 || performance.now() - started < minSeconds * 1000) {
    const t0 = performance.now();
    once();
    times.push((performance.now() - t0) / 1000);
  }
  const rate = rateOf(2 * n ** 3, times, cpuSeconds(cpu));
  tf.dispose([a, b]);
  return { rate, reps: times.length };
}

const better = (x: Rate, y: Rate): Rate => ({ best: Math.max(x.best, y.best), median: Math.max(x.median, y.median), perCpu: Math.max(x.perCpu, y.perCpu) });

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

/** Forward matmul FLOPs of one transformer tower of `layers` blocks over `tokens` tokens of `width`. */
function towerFlops(tokens: number, width: number, layers: number): number {
  const perLayer =
    2 * tokens * width * 3 * width + // q, k, v
    2 * 2 * tokens * tokens * width + // scores and the weighted sum of values, all heads together
    2 * tokens * width * width + // attention output projection
    2 * 2 * tokens * width * 4 * width; // MLP up and down
  return layers * perLayer;
}

/** Forward matmul FLOPs of one FILIP training step over `batch` pairs with `textTokens` tokens each. */
export function stepForwardFlops(c: ModelConfig, batch: number, textTokens: number): number {
  const P = (c.imageSize / c.patchSize) ** 2;
  const patchIn = c.patchSize * c.patchSize * 3;
  const image = 2 * P * patchIn * c.vision.width + towerFlops(P + 1, c.vision.width, c.vision.layers) + 2 * (P + 1) * c.vision.width * c.embedDim;
  const text = towerFlops(textTokens, c.text.width, c.text.layers) + 2 * textTokens * c.text.width * c.embedDim;
  const similarity = 2 * (batch * P) * (batch * textTokens) * c.embedDim; // every patch with every token
  return batch * (image + text) + similarity;
}

async function child(backendName: 'wasm' | 'cpu'): Promise<ChildResult> {
  const sel = await selectBackend(backendName);
  const batch = Number(arg('batch', '8'));
  const steps = Number(arg(backendName === 'cpu' ? 'cpu-steps' : 'steps', backendName === 'cpu' ? '1' : '3'));
  let peakTensorBytes = 0;
  const sampleMemory = () => (peakTensorBytes = Math.max(peakTensorBytes, tf.memory().numBytes));

  // The backend's own matmul rate, measured before and after the steps (the machine is shared: the
  // better of the two is the backend's, not the neighbours').
  const before = matmulRate(MATMUL_N);
  // A fixed synthetic batch: the step's cost does not depend on the values.
  const config = modelConfig(PRESET);
  const net = new FilipModel(config, 0);
  const optimizer = new Optimizer(net.variables, resolveOptimizerOptions({ name: 'lamb' }), (v) => net.noDecay(v));
  const rng = mulberry32(1);
  const S = config.imageSize;
  const L = config.text.contextLength;
  const pixels = Float32Array.from({ length: batch * S * S * 3 }, () => rng() * 2 - 1);
  const ids = new Int32Array(batch * L);
  const lengths = new Int32Array(batch).fill(CAPTION_TOKENS);
  for (let r = 0; r < batch; r++) for (let t = 0; t < CAPTION_TOKENS; t++) ids[r * L + t] = Math.floor(rng() * config.text.vocabSize);
  const data: Batch = {
    step: 1,
    size: batch,
    pixels,
    imageSize: S,
    tokens: { ids, lengths, batchSize: batch, contextLength: L },
    keys: Array.from({ length: batch }, (_, i) => String(i)),
    captions: [],
    position: null,
  };
  const run = () => {
    const r = trainStep(net, optimizer, data, 1e-4, { loss: 'filip', topk: 0.25 });
    sampleMemory();
    return r.loss;
  };
  run(); // warm-up: kernel set-up and first allocations
  const tensorsBefore = tf.memory().numTensors;
  const stepCpu = process.cpuUsage();
  const times: number[] = [];
  let loss = 0;
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    loss = run();
    times.push((performance.now() - t0) / 1000);
  }
  const cpu = cpuSeconds(stepCpu);
  const seconds = times.reduce((x, y) => x + y, 0);
  const tensorsAfter = tf.memory().numTensors - tensorsBefore;
  const flopsPerStep = 3 * stepForwardFlops(config, batch, CAPTION_TOKENS);
  optimizer.dispose();
  net.dispose();
  const after = matmulRate(MATMUL_N);
  const result: ChildResult = {
    backend: sel.backend,
    reason: sel.reason,
    matmul: better(before.rate, after.rate),
    matmulReps: before.reps + after.reps,
    pairsPerSec: (batch * steps) / seconds,
    pairsPerCpuSec: (batch * steps) / cpu,
    step: rateOf(flopsPerStep, times, cpu),
    flopsPerStep,
    secondsPerStep: seconds / steps,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    peakTensorMiB: peakTensorBytes / 2 ** 20,
    tensorsAfter,
    steps,
    batch,
    loss,
  };
  return result;
}

async function main(): Promise<void> {
  const which = arg('child', '');
  if (which === 'wasm' || which === 'cpu') {
    process.stdout.write(`${JSON.stringify(await child(which))}\n`);
    return;
  }
  const parts = arg('parts', 'throughput,learn').split(',');
  if (parts.includes('throughput')) throughput();
  if (parts.includes('learn')) learnCheck();
}

/** The learning check, in a child process whose output goes straight to ours. */
function learnCheck(): void {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'scripts', 'learn-check.ts');
  console.log(`\nlearning check: ${script}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--out', arg('learn-out', 'runs/learn-check')], { stdio: 'inherit' });
  if (r.status !== 0) process.exitCode = r.status ?? 1;
}

function throughput(): void {
  const backends = arg('backends', 'wasm,cpu').split(',');
  const self = fileURLToPath(import.meta.url);
  const passOn = ['batch', 'steps', 'cpu-steps'].flatMap((k) => (process.argv.includes(`--${k}`) ? [`--${k}`, arg(k, '')] : []));
  const config = modelConfig(PRESET);
  console.log(
    `bench:train — ${PRESET} preset (${config.imageSize}px, ${(config.imageSize / config.patchSize) ** 2} patches, ` +
      `${CAPTION_TOKENS}-token captions, vocabulary ${config.text.vocabSize}), FILIP loss, LAMB; one child process per backend`,
  );
  const results: ChildResult[] = [];
  for (const backend of backends) {
    console.log(`running ${backend} ...`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--child', backend, ...passOn], { encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    if (r.status !== 0 || !line.startsWith('{')) {
      console.log(`  ${backend} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
      continue;
    }
    const res = JSON.parse(line) as ChildResult;
    results.push(res);
    console.log(`  ${res.reason}`);
  }
  const gf = (x: number) => x.toFixed(2);
  const head = ['backend', 'pairs/s', 'pairs/cpu-s', 's/step', 'step GFLOP/s best|med|cpu', 'matmul GFLOP/s best|med|cpu', 'step/matmul best|cpu', 'peak RSS', 'peak tensors', 'leaked'];
  const rows = results.map((r) => [
    r.backend,
    r.pairsPerSec.toFixed(2),
    r.pairsPerCpuSec.toFixed(2),
    r.secondsPerStep.toFixed(2),
    `${gf(r.step.best)} | ${gf(r.step.median)} | ${gf(r.step.perCpu)}`,
    `${gf(r.matmul.best)} | ${gf(r.matmul.median)} | ${gf(r.matmul.perCpu)}`,
    `${((100 * r.step.best) / r.matmul.best).toFixed(0)}% | ${((100 * r.step.perCpu) / r.matmul.perCpu).toFixed(0)}%`,
    `${r.peakRssMiB.toFixed(0)} MiB`,
    `${r.peakTensorMiB.toFixed(0)} MiB`,
    String(r.tensorsAfter),
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c]!.length)));
  const fmt = (row: string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  console.log(fmt(head));
  for (const row of rows) console.log(fmt(row));
  if (results[0]) {
    const r = results[0];
    console.log(
      `step = ${(r.flopsPerStep / 1e9).toFixed(2)} GFLOP (3 x forward matmuls) for ${r.batch} pairs; timed ${results.map((x) => `${x.steps} step(s) on ${x.backend}`).join(', ')} after one warm-up step; ` +
        `matmul ${MATMUL_N}x${MATMUL_N}, ${results.map((x) => `${x.matmulReps} reps on ${x.backend}`).join(', ')} after 3 warm-up reps, before and after the steps (the better kept)`,
    );
    console.log('best = fastest repetition by wall clock; med = median repetition; cpu = per second of the process\'s own CPU time (least sensitive to a busy machine)');
  }
  const wasm = results.find((r) => r.backend === 'wasm');
  const cpu = results.find((r) => r.backend === 'cpu');
  if (wasm && cpu) {
    console.log(
      `wasm / cpu: ${(wasm.pairsPerSec / cpu.pairsPerSec).toFixed(1)}x pairs/s (${(wasm.pairsPerCpuSec / cpu.pairsPerCpuSec).toFixed(1)}x per cpu-s), ` +
        `${(wasm.matmul.best / cpu.matmul.best).toFixed(1)}x matmul GFLOP/s (${(wasm.matmul.perCpu / cpu.matmul.perCpu).toFixed(1)}x per cpu-s)`,
    );
  }
}

await main();
