// Entry point of `filip`, the trainer: train, eval, align and tokenizer commands.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { FILIP_VERSION } from '../fetch/options.js';
import { tokenizerCommand } from './commands/tokenizer.js';
import { trainCommand } from './commands/train.js';
import { evalCommand } from './commands/eval.js';
import { alignCommand } from './commands/align.js';
import { numbersMustParse } from './numbers.js';

await numbersMustParse(yargs(hideBin(process.argv)), hideBin(process.argv))
  .scriptName('filip')
  .version(FILIP_VERSION) // see src/cli/filip-data.ts
  .command(tokenizerCommand as never)
  .command(trainCommand as never)
  .command(evalCommand as never)
  .command(alignCommand as never)
  .demandCommand(1)
  .strict()
  .help()
  .parseAsync();
