// Entry point of `filip`, the trainer. Its commands (train, eval, align, tokenizer) arrive with the
// trainer issue; until then it says so plainly and exits non-zero rather than pretending.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { tokenizerCommand } from './commands/tokenizer.js';
import { trainCommand } from './commands/train.js';
import { evalCommand } from './commands/eval.js';
import { alignCommand } from './commands/align.js';

await yargs(hideBin(process.argv))
  .scriptName('filip')
  .command(tokenizerCommand as never)
  .command(trainCommand as never)
  .command(evalCommand as never)
  .command(alignCommand as never)
  .demandCommand(1)
  .strict()
  .help()
  .parseAsync();
