// Entry point of `filip-data`. Only src/cli knows yargs (program.ts); errors with a FILIP_ERR_ code
// are printed as one line with their code and exit status 2.

import { hideBin } from 'yargs/helpers';
import { demoCommand } from './commands/demo.js';
import { filterCommand } from './commands/filter.js';
import { ingestCommand } from './commands/ingest.js';
import { mergeCommand } from './commands/merge.js';
import { shardCommand } from './commands/shard.js';
import { statusCommand } from './commands/status.js';
import { workerCommand } from './commands/worker.js';
import { runProgram } from './program.js';

await runProgram(
  'filip-data',
  hideBin(process.argv),
  [ingestCommand, filterCommand, shardCommand, demoCommand, workerCommand, statusCommand, mergeCommand] as never[],
  'name a command: ingest, filter or demo',
);
