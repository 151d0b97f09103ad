// Entry point of `filip`, the trainer: train, eval, align and tokenizer commands. Errors as filip-data's
// (src/cli/program.ts).

import { hideBin } from 'yargs/helpers';
import { alignCommand } from './commands/align.js';
import { evalCommand } from './commands/eval.js';
import { tokenizerCommand } from './commands/tokenizer.js';
import { trainCommand } from './commands/train.js';
import { runProgram } from './program.js';

/** Option fields set by a flag of another name (see flagOf in program.ts). */
const FIELD_FLAGS = { keepCheckpoints: ['keep'], templates: ['template'], images: ['image'] };

await runProgram(
  'filip',
  hideBin(process.argv),
  [tokenizerCommand, trainCommand, evalCommand, alignCommand] as never[],
  'name a command: train, eval, align or tokenizer',
  FIELD_FLAGS,
);
