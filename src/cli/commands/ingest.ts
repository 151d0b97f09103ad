// `filip-data ingest`: the yargs face of src/pipeline/ingest.ts. Flags map one to one onto
// IngestOptions; validation happens in the stage's own options factories, not here.

import type { Argv, ArgumentsCamelCase } from 'yargs';
import { inRange, onlyWith } from '../program.js';
import { RESIZE_MODES, OUTPUT_FORMATS } from '../../image/process.js';
import { MANIFEST_FORMATS } from '../../manifest/read.js';
import { PROGRESS_MODES } from '../../pipeline/progress.js';
import { WRITER_ENGINES } from '../../shard/writer.js';
import { formatSummary, runIngest, type IngestInput } from '../../pipeline/ingest.js';
import { FILTER_FLAGS, filterFlags, toFilterInput } from './filter.js';
import { invalid } from '../../core/options.js';
import { DEFAULT_QUEUE_NAME, DEFAULT_ROWS_PER_JOB } from '../../scale/plan.js';
import { enqueueIngest, formatEnqueueSummary } from '../../scale/producer.js';
import { DEFAULT_BUCKET_BITS } from '../../scale/state.js';
import { DEFAULT_NEAR_DUP_INDEX, NEAR_DUP_INDEXES, type NearDupIndexKind } from '../../scale/phash-redis.js';

export function ingestFlags<T>(y: Argv<T>) {
  return filterFlags(y)
    .option('filter', { type: 'boolean', default: false, describe: 'run the filter stage in the same stream (filter flags apply)' })
    .option('output', { alias: 'o', type: 'string', default: 'shards', describe: 'output folder' })
    .option('format', { type: 'string', choices: Object.keys(MANIFEST_FORMATS), default: 'auto', describe: 'manifest format' })
    .option('url-col', { type: 'string', default: 'url', describe: 'manifest column holding the URL (LAION: URL)' })
    .option('caption-col', { type: 'string', default: 'caption', describe: 'manifest column holding the caption (LAION: TEXT)' })
    .option('keep-cols', { type: 'string', array: true, default: [] as string[], describe: 'manifest columns to keep in the shards' })
    .option('resize-mode', { type: 'string', choices: Object.keys(RESIZE_MODES), default: 'keep-ratio' })
    .option('image-size', { type: 'number', default: 256, describe: 'target size in pixels' })
    .option('resize-side', { type: 'string', choices: ['shorter', 'longer'], default: 'shorter', describe: 'keep-ratio: which side becomes --image-size' })
    .option('upscale', { type: 'boolean', default: false, describe: 'enlarge images smaller than --image-size' })
    .option('output-format', { type: 'string', choices: Object.keys(OUTPUT_FORMATS), default: 'jpeg' })
    .option('quality', { type: 'number', default: 95 })
    .option('max-pixels', { type: 'number', default: 100_000_000, describe: 'decompression-bomb limit' })
    .option('shard-size', { type: 'number', default: 10_000, describe: 'samples per shard' })
    .option('writer', { type: 'string', choices: Object.keys(WRITER_ENGINES), default: 'lean' })
    .option('concurrency', { type: 'number', default: 64, describe: 'requests in flight' })
    .option('per-host', { type: 'number', default: 16, describe: 'requests in flight per host' })
    .option('timeout', { type: 'number', default: 10, describe: 'connect/header/idle-body timeout, seconds' })
    .option('deadline', { type: 'number', default: 30, describe: 'hard deadline of one attempt, seconds' })
    .option('retries', { type: 'number', default: 2, describe: 'extra attempts for network errors, timeouts, 5xx, 429' })
    .option('max-body', { type: 'number', default: 20, describe: 'body size cap, MiB' })
    .option('user-agent-token', { type: 'string', default: '', describe: 'appended to the User-Agent' })
    .option('robots', { type: 'boolean', default: true, describe: 'respect X-Robots-Tag noai/noimageai/noindex/noimageindex (--no-robots to ignore)' })
    .option('dedupe-urls', { type: 'boolean', default: true })
    .option('dedupe-images', { type: 'boolean', default: true })
    .option('dedupe-pairs', { type: 'boolean', default: true })
    .option('retry-failed', { type: 'boolean', default: false, describe: 're-attempt only rows rejected for transient reasons (with --queue: as a new round of chunk jobs, once the run is done)' })
    .option('overwrite', { type: 'boolean', default: false, describe: 'discard a previous run in --output instead of resuming' })
    .option('progress', { type: 'string', choices: Object.keys(PROGRESS_MODES), default: 'auto' })
    .option('queue', { type: 'string', describe: 'redis://HOST:PORT/DB: split the manifests into chunk jobs for `filip-data worker`s instead of running here' })
    .option('queue-name', { type: 'string', default: DEFAULT_QUEUE_NAME, describe: 'BullMQ queue name (and prefix of the run state in Redis)' })
    .option('rows-per-job', { type: 'number', default: DEFAULT_ROWS_PER_JOB, describe: 'input rows per chunk job (--queue) or partition block (--partitions)' })
    .option('bucket-bits', { type: 'number', default: DEFAULT_BUCKET_BITS, describe: '--queue: 2^bits Redis buckets per dedupe structure (raise to 22 for 300M rows)' })
    .option('wait', { type: 'boolean', default: false, describe: '--queue: wait until the workers have committed every chunk' })
    .option('near-dup-index', { type: 'string', choices: NEAR_DUP_INDEXES, default: DEFAULT_NEAR_DUP_INDEX, describe: '--queue: near-duplicate index bucketed in Redis, or a Redis log plus a local replica per committer (faster, ~59 B per kept row in each)' })
    .option('partitions', { type: 'number', default: 1, describe: 'process one of N slices of the manifests (no Redis); then `filip-data merge`' })
    .option('partition', { type: 'number', default: 0, describe: 'which slice, 0 to N-1 (with --partitions)' })
    .option('partition-index', { type: 'string', describe: 'with --partitions: file of where each block starts, written by the first partition that lacks it, so each partition reads only its own blocks' });
}

type IngestArgs = ArgumentsCamelCase<Awaited<ReturnType<typeof ingestFlags>['argv']>>;

export function toIngestInput(a: IngestArgs, inputs: readonly string[]): IngestInput {
  return {
    inputs,
    output: a.output,
    manifest: {
      format: a.format as never,
      urlCol: a.urlCol,
      captionCol: a.captionCol,
      keepCols: a.keepCols.flatMap((c) => String(c).split(',')).filter(Boolean),
    },
    image: {
      resizeMode: a.resizeMode as never,
      size: a.imageSize,
      resizeSide: a.resizeSide as never,
      upscale: a.upscale,
      format: a.outputFormat as never,
      quality: a.quality,
      maxPixels: a.maxPixels,
    },
    fetch: {
      concurrency: a.concurrency,
      perHostConcurrency: a.perHost,
      connectTimeoutMs: Math.round(a.timeout * 1000),
      headersTimeoutMs: Math.round(a.timeout * 1000),
      bodyTimeoutMs: Math.round(a.timeout * 1000),
      totalTimeoutMs: Math.round(a.deadline * 1000),
      retries: a.retries,
      maxBodyBytes: Math.round(a.maxBody * 1024 * 1024),
      userAgentToken: a.userAgentToken,
      respectRobots: a.robots,
    },
    shardSize: a.shardSize,
    writer: a.writer as never,
    dedupe: { urls: a.dedupeUrls, images: a.dedupeImages, pairs: a.dedupePairs },
    retryFailed: a.retryFailed,
    overwrite: a.overwrite,
    progress: a.progress as never,
    ...(a.filter ? { filter: toFilterInput(a) } : {}),
    partitions: a.partitions,
    partition: a.partition,
    partitionIndex: a.partitionIndex ?? null,
    rowsPerJob: a.rowsPerJob,
  };
}

/** Flags that set up a Redis run: without --queue they would be ignored, so they are usage errors. */
const QUEUE_FLAGS = ['queue-name', 'bucket-bits', 'wait', 'near-dup-index'] as const;

export const ingestCommand = {
  command: 'ingest <inputs..>',
  describe: 'read manifests, download, decode, dedupe, write Parquet shards',
  builder: (y: Argv) =>
    ingestFlags(y.positional('inputs', { type: 'string', array: true, describe: 'manifest files or folders' }))
      // Scaled to ms and bytes below: checked here in the units typed (see inRange).
      .check(
        inRange({
          timeout: { min: 0.001, max: 2_147_483, unit: 'seconds' },
          deadline: { min: 0.001, max: 2_147_483, unit: 'seconds' },
          'max-body': { min: 0.001, max: 2047, unit: 'MiB' },
        }),
      )
      .check(onlyWith('filter', FILTER_FLAGS, ' (or run `filip-data filter` on the output)'))
      .check(onlyWith('queue', QUEUE_FLAGS, ' (it sets up the Redis run)')),
  handler: async (a: IngestArgs & { inputs: string[] }) => {
    if (a.queue !== undefined) {
      if (a.partitions !== 1 || a.partition !== 0) throw invalid('partitions', 'left out with --queue (partitions are for runs without Redis)', a.partitions);
      const { partitions: _n, partition: _i, rowsPerJob: _r, ...ingest } = toIngestInput(a, a.inputs);
      const queued = await enqueueIngest(ingest, { queue: { url: a.queue, name: a.queueName }, rowsPerJob: a.rowsPerJob, bucketBits: a.bucketBits, wait: a.wait, nearDupIndex: a.nearDupIndex as NearDupIndexKind });
      process.stdout.write(`${formatEnqueueSummary(queued)}\n`);
      return;
    }
    const summary = await runIngest(toIngestInput(a, a.inputs));
    process.stdout.write(`${formatSummary(summary)}\n`);
  },
};
