// Entry point of `filip`, the trainer. Its commands (train, eval, align, tokenizer) arrive with the
// trainer issue; until then it says so plainly and exits non-zero rather than pretending.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';

await yargs(hideBin(process.argv))
  .scriptName('filip')
  .command('train', 'train a FILIP model on filip-data shards (not implemented yet)', {}, () => {
    process.stderr.write('filip train is not implemented yet: see the trainer issue.\n');
    process.exit(2);
  })
  .demandCommand(1)
  .strict()
  .help()
  .parseAsync();
