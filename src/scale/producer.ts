// `filip-data ingest --queue redis://...`: cuts the manifests into chunk jobs of `rowsPerJob` rows,
// stores the run (resolved options, files, sizes) in Redis for the workers, and adds the jobs to the
// BullMQ queue: count jobs first when the repeated_text rule is on, then stage jobs. Job ids are
// derived from the chunk number, so running the same command again adds nothing twice. With `wait`
// it then follows the commits until the run is done and prints the totals.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { FilipError } from '../core/errors.js';
import { boolOption, intOption, invalid, rejectUnknownKeys } from '../core/options.js';
import { countManifestRows, listManifestFiles, readManifests, resolveManifestOptions } from '../manifest/read.js';
import { resolveIngestOptions, type IngestInput } from '../pipeline/ingest.js';
import { Funnel, writeFunnelReport } from '../filters/funnel.js';
import { seedFunnel } from '../pipeline/filter-run.js';
import { openOutput, readCommits, recoverOutput } from '../pipeline/output.js';
import { STAGING_DIR } from './chunk.js';
import { connectRedis, parseQueueUrl, redisOptions } from './connection.js';
import {
  chunkCount,
  DEFAULT_ROWS_PER_JOB,
  Keys,
  resolveQueueOptions,
  runIdentityOf,
  type QueueOptions,
  type QueueRun,
} from './plan.js';
import { DEFAULT_BUCKET_BITS, deleteState } from './state.js';
import { committedChunks, type ChunkJobData } from './worker.js';

export interface EnqueueOptions {
  readonly queue: QueueOptions;
  /** Input rows per chunk job (and per shard). @default 1000 */
  readonly rowsPerJob: number;
  /** Bits of a fingerprint that pick its Redis bucket (2^bits hashes per structure). @default 16 */
  readonly bucketBits: number;
  /** Wait until every chunk is committed, then print the totals. @default false */
  readonly wait: boolean;
  /** Attempts per job before BullMQ marks it failed. @default 5 */
  readonly attempts: number;
  /** Where `wait` reports progress. @default process.stderr */
  readonly logStream: NodeJS.WritableStream;
}

export type EnqueueInput = Partial<Omit<EnqueueOptions, 'queue'>> & { queue: Partial<QueueOptions> & { url: string } };

const DEFAULTS = { rowsPerJob: DEFAULT_ROWS_PER_JOB, bucketBits: DEFAULT_BUCKET_BITS, wait: false, attempts: 5 };

export function resolveEnqueueOptions(input: EnqueueInput): EnqueueOptions {
  rejectUnknownKeys('queue ingest', input, { ...DEFAULTS, queue: 0, logStream: 0 });
  const o = { ...DEFAULTS, ...input };
  return {
    queue: resolveQueueOptions(input.queue),
    rowsPerJob: intOption('rowsPerJob', o.rowsPerJob, 1, 10_000_000),
    bucketBits: intOption('bucketBits', o.bucketBits, 0, 28),
    wait: boolOption('wait', o.wait),
    attempts: intOption('attempts', o.attempts, 1, 100),
    logStream: input.logStream ?? process.stderr,
  };
}

export interface EnqueueSummary {
  readonly queue: string;
  readonly name: string;
  readonly output: string;
  readonly total: number;
  readonly chunks: number;
  readonly rowsPerJob: number;
  /** Set with `wait`: what the output folder holds once every chunk is committed. */
  readonly done?: { readonly ok: number; readonly rejected: number; readonly shards: number; readonly seconds: number };
}

export async function enqueueIngest(ingest: IngestInput, input: EnqueueInput): Promise<EnqueueSummary> {
  const q = resolveEnqueueOptions(input);
  const o = resolveIngestOptions(ingest);
  if (o.retryFailed) throw invalid('retryFailed', 'false with --queue (run --retry-failed on one machine after the queue run)', true);
  const started = performance.now();
  const output = path.resolve(o.output);
  const files = (await listManifestFiles(o.inputs)).map((f) => path.resolve(f));
  const manifest = resolveManifestOptions({ ...o.manifest, inputs: files });
  let total = await countManifestRows(files, manifest);
  if (total === undefined) {
    total = 0;
    for await (const _ of readManifests(manifest)) total++;
  }
  const run: QueueRun = {
    version: 1,
    files,
    output,
    total,
    rowsPerJob: q.rowsPerJob,
    chunks: chunkCount(total, q.rowsPerJob),
    manifest: o.manifest,
    fetch: o.fetch,
    image: o.image,
    writer: o.writer,
    dedupe: o.dedupe,
    filter: o.filter ?? null,
    countCaptions: o.filter?.rules.includes('repeated_text') ?? false,
    bucketBits: q.bucketBits,
    createdAt: new Date().toISOString(),
  };

  const address = parseQueueUrl(q.queue.url);
  const redis = await connectRedis(address);
  const keys = new Keys(q.queue.name);
  const queue = new Queue<ChunkJobData>(q.queue.name, { connection: redisOptions(address) });
  queue.on('error', () => {});
  try {
    if (o.overwrite) {
      await queue.obliterate({ force: true });
      await deleteState(redis, keys);
      await fs.rm(path.join(output, STAGING_DIR), { recursive: true, force: true });
    } else {
      const stored = await redis.get(keys.run);
      if (stored !== null && runIdentityOf(JSON.parse(stored) as QueueRun) !== runIdentityOf(run)) {
        throw new FilipError(
          'FILIP_ERR_QUEUE',
          `queue "${q.queue.name}" at ${q.queue.url} holds another run (other inputs or options); use --overwrite or another --queue-name`,
          { field: 'queue' },
        );
      }
    }
    await openOutput(output, 'filip-data ingest', { queue: `${q.queue.url}#${q.queue.name}`, run: runIdentityOf(run) }, o.overwrite);
    await redis.set(keys.run, JSON.stringify(run), 'NX');
    const jobs: { name: string; data: ChunkJobData; opts: object }[] = [];
    const opts = (id: string) => ({ jobId: id, attempts: q.attempts, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: false, removeOnFail: false });
    if (run.countCaptions) for (let k = 0; k < run.chunks; k++) jobs.push({ name: 'count', data: { kind: 'count', chunk: k }, opts: opts(`count-${k}`) });
    for (let k = 0; k < run.chunks; k++) jobs.push({ name: 'stage', data: { kind: 'stage', chunk: k }, opts: opts(`stage-${k}`) });
    for (let i = 0; i < jobs.length; i += 1000) await queue.addBulk(jobs.slice(i, i + 1000));

    const summary: EnqueueSummary = { queue: q.queue.url, name: q.queue.name, output, total, chunks: run.chunks, rowsPerJob: q.rowsPerJob };
    if (!q.wait) return summary;
    let last = -1;
    for (;;) {
      const done = await committedChunks(redis, keys);
      if (done !== last) q.logStream.write(`${new Date().toISOString()} queue ${q.queue.name}: ${done}/${run.chunks} chunks committed\n`);
      last = done;
      if (done >= run.chunks) break;
      await sleep(500);
    }
    const commits = await readCommits(output);
    if (run.filter) {
      // The funnel report of a single-machine `ingest --filter`, rebuilt from the committed rows.
      const funnel = new Funnel(run.filter.rules);
      await seedFunnel(output, await recoverOutput(output), funnel);
      await writeFunnelReport(output, funnel, `filip-data ingest --filter ${run.filter.preset} --queue`);
    }
    let ok = 0;
    let rejected = 0;
    for (const c of commits) {
      ok += c.ok;
      rejected += c.rejected;
    }
    return { ...summary, done: { ok, rejected, shards: commits.filter((c) => c.file).length, seconds: (performance.now() - started) / 1000 } };
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

export function formatEnqueueSummary(s: EnqueueSummary): string {
  const lines = [`queued ${s.total} rows as ${s.chunks} chunk jobs of ${s.rowsPerJob} rows on "${s.name}" at ${s.queue} -> ${s.output}`];
  if (s.done) {
    const rate = s.done.seconds > 0 ? s.total / s.done.seconds : 0;
    lines.push(`all chunks committed in ${s.done.seconds.toFixed(1)} s (${rate.toFixed(1)} rows/s): ${s.done.ok} kept, ${s.done.rejected} rejected, ${s.done.shards} shards`);
  } else {
    lines.push(`start workers with: filip-data worker --queue ${s.queue}${s.name === 'filip-ingest' ? '' : ` --queue-name ${s.name}`}`);
  }
  return lines.join('\n');
}
