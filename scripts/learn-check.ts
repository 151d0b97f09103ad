// Runs the learning check / loss ablation (src/train/learn-check.ts) and prints the two losses'
// figures side by side. Exits 1 when one of the check's claims does not hold.
//   tsx scripts/learn-check.ts [--out DIR] [--steps N] [--scenes N] [--singles N] [--batch N] [--lr X]
//                              [--warmup N] [--seed N] [--image-size PX] [--backend B]
//                              [--single-captions shape|colour-shape|mixed|scene] [--losses filip,clip] [--topk K]
//                              [--batches random|same-colour] [--shape-first STEPS]
import { formatLearnCheck, learnCheckVerdicts, runLearnCheck, type LearnCheckInput } from '../src/train/learn-check.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const num = (name: string) => (arg(name) === undefined ? undefined : Number(arg(name)));

const input: LearnCheckInput = {
  out: arg('out') ?? 'runs/learn-check',
  steps: num('steps'),
  scenes: num('scenes'),
  singles: num('singles'),
  batch: num('batch'),
  lr: num('lr'),
  topk: num('topk'),
  warmup: num('warmup'),
  seed: num('seed'),
  imageSize: num('image-size'),
  backend: arg('backend') as LearnCheckInput['backend'],
  singleCaptions: arg('single-captions') as LearnCheckInput['singleCaptions'],
  batches: arg('batches') as LearnCheckInput['batches'],
  shapeFirst: num('shape-first'),
  losses: arg('losses')?.split(',') as LearnCheckInput['losses'],
};
const cpu = process.cpuUsage();
const report = await runLearnCheck(input, (line) => console.log(line));
console.log(formatLearnCheck(report));
const used = process.cpuUsage(cpu);
console.log(`(${((used.user + used.system) / 1e6).toFixed(0)} s of CPU time in this process)`);
if (learnCheckVerdicts(report).some((v) => !v.holds)) process.exitCode = 1;
