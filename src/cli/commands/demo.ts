// `filip-data demo`: the README's first command. Wires flags onto src/demo/run.ts.
import type { Argv } from 'yargs';
import { runDemo } from '../../demo/run.js';
import { PROGRESS_MODES, type ProgressMode } from '../../pipeline/progress.js';

export const demoCommand = {
  command: 'demo',
  describe: 'generate the seeded sample corpus, serve it on 127.0.0.1 and run the pipeline on it',
  builder: (y: Argv) =>
    y
      .option('output', { alias: 'o', type: 'string', default: 'shards/demo' })
      .option('seed', { type: 'number', default: 1 })
      .option('scenes', { type: 'number', default: 300, describe: 'good scenes; bad cases are planted on top' })
      .option('progress', { type: 'string', choices: Object.keys(PROGRESS_MODES), default: 'auto' }),
  handler: async (a: { output: string; seed: number; scenes: number; progress: string }) => {
    const result = await runDemo({ output: a.output, seed: a.seed, scenes: a.scenes, progress: a.progress as ProgressMode });
    if (result.checks.some((c) => c.expected !== c.got)) process.exitCode = 1;
  },
};
