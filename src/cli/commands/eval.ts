// `filip eval`: zero-shot classification (prompt ensemble, late interaction), retrieval R@1/5/10 and
// word-patch localisation of a checkpoint on held-out shards. Prints a table, or JSON with --json;
// --report also writes the JSON to a file. FILIP_ERR_ errors print as one line with exit status 2.
import { writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Argv } from 'yargs';

import { FilipError } from '../../core/errors.js';
import { BACKEND_CHOICES } from '../../train/backend.js';
import { DEFAULT_EVAL_OPTIONS as D, formatEvalReport, LABEL_TASK_NAMES, runEval, SIMILARITY_NAMES, type EvalInput } from '../../train/eval.js';
import { makeDir } from '../../core/make-dir.js';

interface EvalArgs {
  checkpoint: string;
  shards: string;
  corpus?: string;
  labels?: string[];
  similarity?: string;
  template?: string[];
  limit?: number;
  batch?: number;
  backend?: string;
  json?: boolean;
  report?: string;
}

const d = (value: unknown) => `(default ${JSON.stringify(value)})`;

export const evalCommand = {
  command: 'eval',
  describe: 'zero-shot classification, retrieval and localisation of a checkpoint on held-out shards',
  builder: (y: Argv) =>
    y
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'run folder (newest checkpoint) or checkpoint folder' })
      .option('shards', { type: 'string', demandOption: true, describe: 'folder of held-out shards' })
      .option('corpus', { type: 'string', describe: 'demo corpus folder (corpus.json) whose scene metadata labels the images; without it only retrieval runs' })
      .option('labels', { type: 'string', array: true, choices: LABEL_TASK_NAMES, describe: `classification tasks ${d(D.labels)}` })
      .option('similarity', { type: 'string', choices: SIMILARITY_NAMES, describe: `auto: the one the checkpoint was trained with ${d(D.similarity)}` })
      .option('template', { type: 'string', array: true, describe: 'prompt templates with one {} each (default: 8 CLIP/FILIP-style prompts)' })
      .option('limit', { type: 'number', describe: `most held-out pairs read, 0 = all ${d(D.limit)}` })
      .option('batch', { type: 'number', describe: `images or texts per forward pass ${d(D.batch)}` })
      .option('backend', { type: 'string', choices: BACKEND_CHOICES, describe: d(D.backend) })
      .option('json', { type: 'boolean', describe: 'print the report as JSON instead of a table' })
      .option('report', { type: 'string', describe: 'also write the JSON report to this file' }),
  handler: async (a: EvalArgs) => {
    const input: EvalInput = {
      checkpoint: a.checkpoint,
      shards: a.shards,
      corpus: a.corpus,
      labels: a.labels as EvalInput['labels'],
      similarity: a.similarity as EvalInput['similarity'],
      templates: a.template,
      limit: a.limit,
      batch: a.batch,
      backend: a.backend as EvalInput['backend'],
    };
    const report = await runEval(input, (line) => process.stderr.write(`${line}\n`));
    const json = `${JSON.stringify(report, null, 2)}\n`;
    // Results first: a report file that cannot be written must not cost them.
    process.stdout.write(a.json ? json : `${formatEvalReport(report)}\n`);
    if (a.report) {
      try {
        await makeDir(dirname(a.report), 'report');
        await writeFile(a.report, json);
      } catch (error) {
        if (error instanceof FilipError) throw error;
        throw new FilipError('FILIP_ERR_INVALID_OPTION', `cannot write the report: ${(error as Error).message}`, { field: 'report', file: a.report }, { cause: error });
      }
    }
  },
};
