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

/**
 * Stage option fields set by a flag of another name, or required by another flag (see flagOf; a field
 * named like its flag in kebab case needs no entry otherwise). Fields the commands scale (ms, bytes)
 * are range-checked by the commands as well.
 */
const FIELD_FLAGS = {
  size: ['image-size'],
  format: ['output-format'],
  engine: ['translate'],
  maxRepeats: ['max-repeats'],
  perHostConcurrency: ['per-host'],
  connectTimeoutMs: ['timeout'],
  totalTimeoutMs: ['deadline'],
  maxBodyBytes: ['max-body'],
  concurrency: ['translate-concurrency'],
  batchSize: ['translate-batch'],
  httpUrl: ['translate-url'],
  url: ['translate-url', 'queue'],
  httpFlavour: ['translate-flavour'],
  marianDir: ['marian-dir'],
  bucketBytes: ['bucket-mb'],
  scatterBufferBytes: ['scatter-buffer-mb'],
  lockDurationMs: ['lock-duration'],
  stalledIntervalMs: ['stalled-interval'],
  maxStalledCount: ['max-stalled'],
};

await runProgram(
  'filip-data',
  hideBin(process.argv),
  [ingestCommand, filterCommand, shardCommand, demoCommand, workerCommand, statusCommand, mergeCommand] as never[],
  'name a command: ingest, filter or demo',
  FIELD_FLAGS,
);
