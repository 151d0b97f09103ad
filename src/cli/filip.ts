// Entry point of `filip`, the trainer: train, eval, align and tokenizer commands.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { FilipError } from '../core/errors.js';
import { FILIP_VERSION } from '../fetch/options.js';
import { tokenizerCommand } from './commands/tokenizer.js';
import { trainCommand } from './commands/train.js';
import { evalCommand } from './commands/eval.js';
import { alignCommand } from './commands/align.js';
import { numbersMustParse } from './numbers.js';

try {
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
    .fail((message, error, y) => {
      // A usage error gets the help; an error of the command itself goes on to the handler below.
      if (error instanceof Error) throw error;
      process.stderr.write(`${y.help()}\n\n${message}\n`);
      process.exit(1);
    })
    .parseAsync();
} catch (error) {
  // As filip-data: one line with the error's stable code, exit status 2.
  if (error instanceof FilipError) {
    process.stderr.write(`filip: ${error.code}: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
