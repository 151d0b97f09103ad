// `filip-data merge`: the yargs face of src/scale/merge.ts.
import type { Argv } from 'yargs';
import { PROGRESS_MODES, type ProgressMode } from '../../pipeline/progress.js';
import { formatMergeSummary, runMerge } from '../../scale/merge.js';
import { WRITER_ENGINES, type WriterEngine } from '../../shard/writer.js';
import { onlyWith } from '../program.js';
import { FILTER_FLAGS, filterFlags, toFilterInput } from './filter.js';

export const mergeCommand = {
  command: 'merge <inputs..>',
  describe: 'join the outputs of `ingest --partitions N --partition I` and apply the corpus-wide rules (dedupe; with --filter, the filter)',
  builder: (y: Argv) =>
    filterFlags(y.positional('inputs', { type: 'string', array: true, describe: 'the partition output folders' }))
      .option('filter', { type: 'boolean', default: false, describe: 'run the filter stage over the merged rows (filter flags apply)' })
      .option('output', { alias: 'o', type: 'string', default: 'shards/merged' })
      .option('shard-size', { type: 'number', default: 10_000 })
      .option('writer', { type: 'string', choices: Object.keys(WRITER_ENGINES), default: 'lean' })
      .option('dedupe-urls', { type: 'boolean', default: true })
      .option('dedupe-images', { type: 'boolean', default: true })
      .option('dedupe-pairs', { type: 'boolean', default: true })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace an earlier merge in --output (without it, a killed merge resumes)' })
      .option('progress', { type: 'string', choices: Object.keys(PROGRESS_MODES), default: 'auto' })
      .check(onlyWith('filter', FILTER_FLAGS, ' (or run `filip-data filter` on the merged output)')),
  handler: async (a: Parameters<typeof toFilterInput>[0] & {
    inputs: string[];
    filter: boolean;
    output: string;
    shardSize: number;
    writer: string;
    dedupeUrls: boolean;
    dedupeImages: boolean;
    dedupePairs: boolean;
    overwrite: boolean;
    progress: string;
  }) => {
    const summary = await runMerge({
      inputs: a.inputs,
      output: a.output,
      ...(a.filter ? { filter: toFilterInput(a) } : {}),
      dedupe: { urls: a.dedupeUrls, images: a.dedupeImages, pairs: a.dedupePairs },
      shardSize: a.shardSize,
      writer: a.writer as WriterEngine,
      overwrite: a.overwrite,
      progress: a.progress as ProgressMode,
    });
    process.stdout.write(`${formatMergeSummary(summary)}\n`);
  },
};
