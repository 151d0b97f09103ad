// Entry point of `filip-data`. The only place (with src/cli/commands) that knows yargs; errors
// with a FILIP_ERR_ code are printed as one line with their code and exit status 2.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { FilipError } from '../core/errors.js';
import { FILIP_VERSION } from '../fetch/options.js';
import { numbersMustParse } from './numbers.js';
import { demoCommand } from './commands/demo.js';
import { filterCommand } from './commands/filter.js';
import { ingestCommand } from './commands/ingest.js';
import { mergeCommand } from './commands/merge.js';
import { statusCommand } from './commands/status.js';
import { workerCommand } from './commands/worker.js';
import { shardCommand } from './commands/shard.js';

export async function main(argv: string[]): Promise<void> {
  await numbersMustParse(yargs(argv), argv)
    .scriptName('filip-data')
    // Given, not guessed: yargs looks for package.json from its own install folder and, when that
    // folder's path has a dot in it (/tmp/tmp.x1y2/node_modules), mistakes it for a file and prints 'unknown'.
    .version(FILIP_VERSION)
    .command(ingestCommand as never)
    .command(filterCommand as never)
    .command(shardCommand as never)
    .command(demoCommand as never)
    .command(workerCommand as never)
    .command(statusCommand as never)
    .command(mergeCommand as never)
    .demandCommand(1, 'name a command: ingest, filter or demo')
    .strict()
    .help()
    .fail((message, error, y) => {
      // A failed check arrives as its message string; real errors go on to the handler below.
      if (error instanceof Error) throw error;
      process.stderr.write(`${y.help()}\n\n${message}\n`);
      process.exit(1);
    })
    .parseAsync();
}

try {
  await main(hideBin(process.argv));
} catch (error) {
  if (error instanceof FilipError) {
    process.stderr.write(`filip-data: ${error.code}: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
