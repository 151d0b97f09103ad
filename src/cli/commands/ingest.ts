// `filip-data ingest`: the yargs face of src/pipeline/ingest.ts. Flags map one to one onto
// IngestOptions; validation happens in the stage's own options factories, not here.

import type { Argv, ArgumentsCamelCase } from 'yargs';
import { RESIZE_MODES, OUTPUT_FORMATS } from '../../image/process.js';
import { MANIFEST_FORMATS } from '../../manifest/read.js';
import { PROGRESS_MODES } from '../../pipeline/progress.js';
import { WRITER_ENGINES } from '../../shard/writer.js';
import { formatSummary, runIngest, type IngestInput } from '../../pipeline/ingest.js';
import { filterFlags, toFilterInput } from './filter.js';

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
    .option('retry-failed', { type: 'boolean', default: false, describe: 're-attempt only rows rejected for transient reasons' })
    .option('overwrite', { type: 'boolean', default: false, describe: 'discard a previous run in --output instead of resuming' })
    .option('progress', { type: 'string', choices: Object.keys(PROGRESS_MODES), default: 'auto' });
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
      connectTimeoutMs: a.timeout * 1000,
      headersTimeoutMs: a.timeout * 1000,
      bodyTimeoutMs: a.timeout * 1000,
      totalTimeoutMs: a.deadline * 1000,
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
  };
}

export const ingestCommand = {
  command: 'ingest <inputs..>',
  describe: 'read manifests, download, decode, dedupe, write Parquet shards',
  builder: (y: Argv) => ingestFlags(y.positional('inputs', { type: 'string', array: true, describe: 'manifest files or folders' })),
  handler: async (a: IngestArgs & { inputs: string[] }) => {
    const summary = await runIngest(toIngestInput(a, a.inputs));
    process.stdout.write(`${formatSummary(summary)}\n`);
  },
};
