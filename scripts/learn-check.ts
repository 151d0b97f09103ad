// Runs the learning check / loss ablation (src/train/learn-check.ts) and prints the two losses'
// figures side by side.
//   tsx scripts/learn-check.ts [--out DIR] [--steps N] [--scenes N] [--batch N] [--lr X] [--backend B]
import { formatLearnCheck, runLearnCheck, type LearnCheckInput } from '../src/train/learn-check.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const num = (name: string) => (arg(name) === undefined ? undefined : Number(arg(name)));

const input: LearnCheckInput = {
  out: arg('out') ?? 'runs/learn-check',
  steps: num('steps'),
  scenes: num('scenes'),
  batch: num('batch'),
  lr: num('lr'),
  warmup: num('warmup'),
  seed: num('seed'),
  imageSize: num('image-size'),
  backend: arg('backend') as LearnCheckInput['backend'],
};
const started = performance.now();
const report = await runLearnCheck(input, (line) => console.log(line));
console.log(formatLearnCheck(report));
console.log(`(${((performance.now() - started) / 1000).toFixed(0)} s in all)`);
