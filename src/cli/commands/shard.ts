// `filip-data shard`: the yargs face of src/pipeline/shard-run.ts. Flags map one to one onto
// ShardRunOptions; validation happens in the options factories, not here.

import type { Argv } from 'yargs';
import { inRange } from '../program.js';
import { AUGMENT_POLICIES, type AugmentPolicy } from '../../augment/index.js';
import { PROGRESS_MODES, type ProgressMode } from '../../pipeline/progress.js';
import { formatShardSummary, runShard, SHARD_FORMATS, translationError, type ShardFormat } from '../../pipeline/shard-run.js';
import { WRITER_ENGINES, type WriterEngine } from '../../shard/writer.js';
import { HTTP_FLAVOURS, PIVOT_LANGUAGES, TRANSLATION_ENGINES, type HttpFlavour, type PivotLanguage, type TranslationEngine } from '../../translate/index.js';

interface ShardArgs {
  input: string;
  output: string;
  samplesPerShard: number;
  seed: number;
  format: string;
  writer: string;
  augmentViews: number;
  augmentPolicy: string;
  augmentConcurrency: number;
  translate: string;
  pivots?: string[];
  translateUrl?: string;
  translateFlavour: string;
  marianDir?: string;
  cacheDir?: string;
  translateBatch: number;
  translateConcurrency: number;
  bucketMb: number;
  scatterBufferMb: number;
  overwrite: boolean;
  partialInput: boolean;
  progress: string;
}

export const shardCommand = {
  command: 'shard <input>',
  describe: 'back-translate, augment and shuffle a filter output into fixed-size training shards with sizes.json and a dataset card',
  builder: (y: Argv) =>
    y
      .positional('input', { type: 'string', describe: 'filter (or ingest) output folder' })
      .option('output', { alias: 'o', type: 'string', default: 'shards/final', describe: 'output folder' })
      .option('samples-per-shard', { type: 'number', default: 10_000, describe: 'samples per shard (the last may be short)' })
      .option('seed', { type: 'number', default: 0, describe: 'seed of the shuffle and of the AutoAugment views' })
      .option('format', { type: 'string', choices: Object.keys(SHARD_FORMATS), default: 'parquet', describe: 'shard format' })
      .option('writer', { type: 'string', choices: Object.keys(WRITER_ENGINES), default: 'lean', describe: 'Parquet engine' })
      .option('augment-views', { type: 'number', default: 0, describe: 'AutoAugment views stored per sample (0: none)' })
      .option('augment-policy', { type: 'string', choices: [...AUGMENT_POLICIES], default: 'imagenet' })
      .option('augment-concurrency', { type: 'number', default: 4, describe: 'samples augmented at once' })
      .option('translate', { type: 'string', choices: [...TRANSLATION_ENGINES], default: 'apertium', describe: 'back-translation engine' })
      .option('pivots', {
        type: 'string',
        array: true,
        // Accepts `--pivots spa,cat` as well as `--pivots spa cat`; the values are checked by the stage.
        coerce: (v: string[]) => v.flatMap((x) => x.split(',')).filter((x) => x.length > 0),
        describe: `pivot languages, of ${PIVOT_LANGUAGES.join(', ')} (default: the engine's)`,
      })
      .option('translate-url', { type: 'string', describe: 'server of the http engine (LibreTranslate or apertium-apy)' })
      .option('translate-flavour', { type: 'string', choices: [...HTTP_FLAVOURS], default: 'libretranslate', describe: 'API of --translate-url' })
      .option('marian-dir', { type: 'string', describe: 'folder of opus-mt-* ONNX models for the marian engine' })
      .option('cache-dir', { type: 'string', describe: 'translation cache folder (default: OUTPUT/.translation-cache)' })
      .option('translate-batch', { type: 'number', default: 64, describe: 'captions per engine call' })
      .option('translate-concurrency', { type: 'number', default: 2, describe: 'batches in flight' })
      .option('bucket-mb', { type: 'number', default: 256, describe: 'shuffle bucket size, MiB: the memory the shuffle holds at once' })
      .option('scatter-buffer-mb', { type: 'number', default: 32, describe: 'bucket appends buffered before a write and a resume checkpoint, MiB' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'discard a previous run in --output instead of resuming it' })
      .option('partial-input', {
        type: 'boolean',
        default: false,
        describe: 'shard what an unfinished (killed or running) input run has committed so far, instead of stopping',
      })
      .option('progress', { type: 'string', choices: Object.keys(PROGRESS_MODES), default: 'auto' })
      // Scaled to bytes below: checked here in MiB (see inRange).
      .check(inRange({ 'bucket-mb': { min: 0.001, max: 1 << 20, unit: 'MiB' }, 'scatter-buffer-mb': { min: 0.001, max: 1 << 20, unit: 'MiB' } })),
  handler: async (a: ShardArgs) => {
    const summary = await runShard({
      input: a.input,
      output: a.output,
      samplesPerShard: a.samplesPerShard,
      seed: a.seed,
      format: a.format as ShardFormat,
      writer: a.writer as WriterEngine,
      augment: { views: a.augmentViews, policy: a.augmentPolicy as AugmentPolicy, concurrency: a.augmentConcurrency },
      translate: {
        engine: a.translate as TranslationEngine,
        pivots: (a.pivots as PivotLanguage[] | undefined) ?? null,
        httpUrl: a.translateUrl ?? null,
        httpFlavour: a.translateFlavour as HttpFlavour,
        marianDir: a.marianDir ?? null,
        batchSize: a.translateBatch,
        concurrency: a.translateConcurrency,
        ...(a.cacheDir === undefined ? {} : { cacheDir: a.cacheDir }),
      },
      bucketBytes: Math.round(a.bucketMb * 2 ** 20),
      scatterBufferBytes: Math.round(a.scatterBufferMb * 2 ** 20),
      overwrite: a.overwrite,
      partialInput: a.partialInput,
      progress: a.progress as ProgressMode,
    });
    process.stdout.write(`${formatShardSummary(summary)}\n`);
    // The output is written; an engine that failed every caption still makes the command fail.
    const failed = translationError(summary);
    if (failed) throw failed;
  },
};
