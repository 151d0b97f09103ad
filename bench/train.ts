// `npm run bench:train`: training throughput of the `small` preset on the WebAssembly backend and on
// the plain cpu backend, in one run. For each backend, in a child process of its own (so each peak RSS
// is its own): the backend's matmul rate on 512x512 float32 matrices, then FILIP training steps on a
// fixed synthetic batch (random pixels, random token ids of a realistic caption length). Printed per
// backend: pairs/s, the step's achieved GFLOP/s against the matmul GFLOP/s (the step's FLOPs counted
// analytically: forward matmuls x 3 for forward + backward), peak RSS and tfjs's peak tensor memory.
//
//   npm run bench:train [-- --batch 8 --steps 3 --cpu-steps 1 --backends wasm,cpu]

import { spawnSync } from 'node:child_process';
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

interface ChildResult {
  backend: string;
  reason: string;
  matmulGflops: number;
  /** The same per second of this process's CPU time: less sensitive to other load on the machine. */
  matmulGflopsCpu: number;
  pairsPerSec: number;
  pairsPerCpuSec: number;
  stepGflops: number;
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

  // The backend's own matmul rate: 512x512 by 512x512, enough repeats for ~1 s.
  const n = 512;
  const a = tf.randomUniform([n, n]);
  const b = tf.randomUniform([n, n]);
  tf.tidy(() => tf.matMul(a, b).dataSync()); // warm-up
  let reps = 0;
  const mmCpu = process.cpuUsage();
  const mmStart = performance.now();
  while (performance.now() - mmStart < 1000 || reps < 2) {
    tf.tidy(() => tf.matMul(a, b).dataSync());
    reps++;
  }
  const matmulGflops = (2 * n ** 3 * reps) / ((performance.now() - mmStart) / 1000) / 1e9;
  const matmulGflopsCpu = (2 * n ** 3 * reps) / cpuSeconds(mmCpu) / 1e9;
  tf.dispose([a, b]);

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
  const started = performance.now();
  let loss = 0;
  for (let s = 0; s < steps; s++) loss = run();
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSeconds(stepCpu);
  const flopsPerStep = 3 * stepForwardFlops(config, batch, CAPTION_TOKENS);
  const result: ChildResult = {
    backend: sel.backend,
    reason: sel.reason,
    matmulGflops,
    matmulGflopsCpu,
    pairsPerSec: (batch * steps) / seconds,
    pairsPerCpuSec: (batch * steps) / cpu,
    stepGflops: (flopsPerStep * steps) / seconds / 1e9,
    flopsPerStep,
    secondsPerStep: seconds / steps,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    peakTensorMiB: peakTensorBytes / 2 ** 20,
    tensorsAfter: tf.memory().numTensors - tensorsBefore,
    steps,
    batch,
    loss,
  };
  optimizer.dispose();
  net.dispose();
  return result;
}

async function main(): Promise<void> {
  const which = arg('child', '');
  if (which === 'wasm' || which === 'cpu') {
    process.stdout.write(`${JSON.stringify(await child(which))}\n`);
    return;
  }
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
  const head = ['backend', 'pairs/s', 'pairs/cpu-s', 's/step', 'step GFLOP/s', 'matmul GFLOP/s', 'matmul/cpu-s', 'step/matmul', 'peak RSS', 'peak tensors', 'leaked'];
  const rows = results.map((r) => [
    r.backend,
    r.pairsPerSec.toFixed(2),
    r.pairsPerCpuSec.toFixed(2),
    r.secondsPerStep.toFixed(2),
    r.stepGflops.toFixed(2),
    r.matmulGflops.toFixed(2),
    r.matmulGflopsCpu.toFixed(2),
    `${((100 * r.stepGflops) / r.matmulGflops).toFixed(0)}%`,
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
    console.log(`step = ${(r.flopsPerStep / 1e9).toFixed(2)} GFLOP (3 x forward matmuls) for ${r.batch} pairs; timed ${results.map((x) => `${x.steps} step(s) on ${x.backend}`).join(', ')} after one warm-up step`);
  }
  const wasm = results.find((r) => r.backend === 'wasm');
  const cpu = results.find((r) => r.backend === 'cpu');
  if (wasm && cpu) console.log(`wasm / cpu: ${(wasm.pairsPerSec / cpu.pairsPerSec).toFixed(1)}x pairs/s, ${(wasm.matmulGflops / cpu.matmulGflops).toFixed(1)}x matmul GFLOP/s`);
}

await main();
