// `filip train`: wires flags onto src/train/trainer.ts, installs the SIGINT handler (first Ctrl-C:
// finish the step, save a checkpoint, exit 130; second: exit at once) and prints FILIP_ERR_ errors as
// one line with exit status 2.
//
// Flags carry no yargs defaults: the defaults live in src/train/config.ts, and only what the user typed
// reaches the trainer, so that on --resume a flag that contradicts the checkpoint can be told apart
// from a default.
import type { Argv } from 'yargs';

import { PROGRESS_MODES } from '../../pipeline/progress.js';
import { BACKEND_CHOICES } from '../../train/backend.js';
import { AUGMENT_CHOICES, DEFAULT_LR, DEFAULT_TRAIN_OPTIONS as D, LOSS_NAMES, MAX_TRAIN_BATCH, MAX_TRAIN_LR, type TrainOptions } from '../../train/config.js';
import { MODEL_PRESETS } from '../../train/model.js';
import { OPTIMIZER_NAMES } from '../../train/optim.js';
import { Trainer } from '../../train/trainer.js';

interface TrainArgs {
  shards?: string;
  out?: string;
  preset?: string;
  batch?: number;
  steps?: number;
  lr?: number;
  minLr?: number;
  warmup?: number;
  optimizer?: string;
  weightDecay?: number;
  loss?: string;
  topk?: number;
  clipGrad?: number;
  backend?: string;
  tokenizer?: string;
  vocabSize?: number;
  saveEvery?: number;
  keep?: number;
  resume?: string;
  init?: string;
  seed?: number;
  logEvery?: number;
  augment?: string;
  shuffleBuffer?: number;
  progress?: string;
  overwrite?: boolean;
  partialInput?: boolean;
}

const d = (value: unknown) => `(default ${JSON.stringify(value)})`;

export const trainCommand = {
  command: 'train',
  describe: 'train a FILIP model on filip-data shards',
  builder: (y: Argv) =>
    y
      .option('shards', { type: 'string', describe: 'folder of training shards (required unless --resume)' })
      .option('out', { alias: 'o', type: 'string', describe: 'run folder for checkpoints and train_log.jsonl (required unless --resume)' })
      .option('preset', { type: 'string', choices: MODEL_PRESETS, describe: `model size ${d(D.preset)}` })
      .option('batch', { type: 'number', describe: `pairs per step, 2 to ${MAX_TRAIN_BATCH} ${d(D.batch)}` })
      .option('steps', { type: 'number', describe: `updates in the run ${d(D.steps)}` })
      .option('lr', { type: 'number', describe: `base learning rate, 0 to ${MAX_TRAIN_LR}; peak = lr * sqrt(batch / 512) (default ${DEFAULT_LR.lamb} for lamb, ${DEFAULT_LR.adamw} for adamw)` })
      .option('min-lr', { type: 'number', describe: `learning rate at the end of the cosine ${d(D.minLr)}` })
      .option('warmup', { type: 'number', describe: `updates of linear warm-up ${d(D.warmup)}` })
      .option('optimizer', { type: 'string', choices: OPTIMIZER_NAMES, describe: d(D.optimizer) })
      .option('weight-decay', { type: 'number', describe: `decoupled weight decay ${d(D.weightDecay)}` })
      .option('loss', { type: 'string', choices: LOSS_NAMES, describe: `filip: token-wise late interaction; clip: global ${d(D.loss)}` })
      .option('topk', { type: 'number', describe: `share of tokens FILIP keeps ${d(D.topk)}` })
      .option('clip-grad', { type: 'number', describe: `largest global gradient norm, 0 = off ${d(D.clipGrad)}` })
      .option('backend', { type: 'string', choices: BACKEND_CHOICES, describe: d(D.backend) })
      .option('tokenizer', { type: 'string', describe: 'merges file (.txt or .txt.gz); default: learn one from the shards into the run folder' })
      .option('vocab-size', { type: 'number', describe: `vocabulary of a learned tokenizer ${d(D.vocabSize)}` })
      .option('save-every', { type: 'number', describe: `checkpoint every N updates, 0 = only at the end and on SIGINT ${d(D.saveEvery)}` })
      .option('keep', { type: 'number', describe: `newest checkpoints kept, 0 = all ${d(D.keepCheckpoints)}` })
      .option('resume', { type: 'string', describe: 'run folder or checkpoint folder to continue from' })
      .option('init', { type: 'string', describe: "start from this run's or checkpoint's weights (and its model and tokenizer), with a new schedule and optimiser" })
      .option('seed', { type: 'number', describe: d(D.seed) })
      .option('log-every', { type: 'number', describe: `log line every N updates ${d(D.logEvery)}` })
      .option('augment', { type: 'string', choices: AUGMENT_CHOICES, describe: `AutoAugment policy applied online ${d(D.augment)}` })
      .option('shuffle-buffer', { type: 'number', describe: `rows in the shuffle buffer ${d(D.shuffleBuffer)}` })
      .option('progress', { type: 'string', choices: Object.keys(PROGRESS_MODES), describe: d(D.progress) })
      .option('overwrite', { type: 'boolean', describe: 'start again in an --out that holds a run (its checkpoints and log go); without it such an --out is refused' })
      .option('partial-input', { type: 'boolean', describe: 'train on what an unfinished filip-data run in --shards has committed so far (refused without it)' })
      .check((a) => {
        // A string, not a thrown Error: yargs then prints the help and the message (exit 1), no stack.
        if (a.resume === undefined && (a.shards === undefined || a.out === undefined)) return '--shards and --out are required (or --resume a run)';
        return true;
      }),
  handler: async (a: TrainArgs) => {
    const given: Partial<TrainOptions> = {
      shards: a.shards,
      out: a.out,
      preset: a.preset as TrainOptions['preset'] | undefined,
      batch: a.batch,
      steps: a.steps,
      lr: a.lr,
      minLr: a.minLr,
      warmup: a.warmup,
      optimizer: a.optimizer as TrainOptions['optimizer'] | undefined,
      weightDecay: a.weightDecay,
      loss: a.loss as TrainOptions['loss'] | undefined,
      topk: a.topk,
      clipGrad: a.clipGrad,
      backend: a.backend as TrainOptions['backend'] | undefined,
      tokenizer: a.tokenizer,
      vocabSize: a.vocabSize,
      saveEvery: a.saveEvery,
      keepCheckpoints: a.keep,
      resume: a.resume,
      init: a.init,
      seed: a.seed,
      logEvery: a.logEvery,
      augment: a.augment as TrainOptions['augment'] | undefined,
      shuffleBuffer: a.shuffleBuffer,
      progress: a.progress as TrainOptions['progress'] | undefined,
      overwrite: a.overwrite,
      partialInput: a.partialInput,
    };
    const mode = a.progress ?? D.progress;
    const isTty = mode === 'tty' || (mode === 'auto' && process.stdout.isTTY === true);
    const trainer = new Trainer(
      Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as Partial<TrainOptions>,
      { stream: process.stdout, isTty },
    );
    const onSigint = () => {
      process.stderr.write('\nSIGINT: saving a checkpoint after this step (Ctrl-C again to quit now)\n');
      trainer.requestStop();
      process.once('SIGINT', () => process.exit(130));
    };
    process.once('SIGINT', onSigint);
    try {
      const result = await trainer.run();
      if (result.stopped) process.exitCode = 130;
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
  },
};
