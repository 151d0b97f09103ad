// `filip-data ingest --queue redis://...`: scans the manifests once, recording where each chunk of
// `rowsPerJob` rows starts (a byte offset in a text file, a row group and row in a Parquet file; gzipped
// manifests are gunzipped to plain copies first, since a gzip stream cannot be entered mid-way), so
// that a chunk job reads only its own rows: total reading stays linear in the manifest's length. Then
// it stores the run (resolved options, files, sizes) in Redis for the workers and adds the jobs to the
// BullMQ queue: count jobs first when the repeated_text rule is on, then stage jobs. Job ids are
// derived from the chunk number, so running the same command again adds nothing twice. With
// `retryFailed` it adds a round of chunks that re-attempt the rows rejected for transient reasons.
// With `wait` it then follows the commits until the run is done and prints the totals.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { FilipError } from '../core/errors.js';
import { boolOption, intOption, invalid, rejectUnknownKeys } from '../core/options.js';
import type { Redis } from 'ioredis';
import { TRANSIENT_REASONS } from '../core/reasons.js';
import { gunzipFile, isGzipPath } from '../manifest/files.js';
import { listManifestFiles, resolveManifestOptions, scanManifests, type ManifestOptions, type PlainCopies } from '../manifest/read.js';
import { resolveIngestOptions, type IngestInput } from '../pipeline/ingest.js';
import { Funnel, writeFunnelReport } from '../filters/funnel.js';
import { seedFunnel } from '../pipeline/filter-run.js';
import { openOutput, readCommits, readRejects, recoverOutput, SUMMARY_FILE, writeFileAtomic } from '../pipeline/output.js';
import { iterateShard } from '../shard/reader.js';
import { STAGING_DIR, type RetryLine } from './chunk.js';
import { connectRedis, parseQueueUrl, redisOptions } from './connection.js';
import {
  baseChunksOf,
  chunkCount,
  DEFAULT_ROWS_PER_JOB,
  Keys,
  parseRun,
  resolveQueueOptions,
  runIdentityOf,
  type ChunkSource,
  type QueueOptions,
  type QueueRun,
} from './plan.js';
import { DEFAULT_NEAR_DUP_INDEX, nearDupIndexOption, type NearDupIndexKind } from './phash-redis.js';
import { DEFAULT_BUCKET_BITS, deleteState } from './state.js';
import { writeQueueSummary } from './commit.js';
import { committedChunks, type ChunkJobData } from './worker.js';
import { makeDir } from '../core/make-dir.js';

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
  /** Where the near_duplicate index lives (see QueueRun.nearDupIndex). @default 'redis' */
  readonly nearDupIndex: NearDupIndexKind;
  /** Where `wait` reports progress. @default process.stderr */
  readonly logStream: NodeJS.WritableStream;
}

export type EnqueueInput = Partial<Omit<EnqueueOptions, 'queue'>> & { queue: Partial<QueueOptions> & { url: string } };

const DEFAULTS = { rowsPerJob: DEFAULT_ROWS_PER_JOB, bucketBits: DEFAULT_BUCKET_BITS, wait: false, attempts: 5, nearDupIndex: DEFAULT_NEAR_DUP_INDEX };

export function resolveEnqueueOptions(input: EnqueueInput): EnqueueOptions {
  rejectUnknownKeys('queue ingest', input, { ...DEFAULTS, queue: 0, logStream: 0 });
  const o = { ...DEFAULTS, ...input };
  return {
    queue: resolveQueueOptions(input.queue),
    rowsPerJob: intOption('rowsPerJob', o.rowsPerJob, 1, 10_000_000),
    bucketBits: intOption('bucketBits', o.bucketBits, 0, 28),
    wait: boolOption('wait', o.wait),
    attempts: intOption('attempts', o.attempts, 1, 100),
    nearDupIndex: nearDupIndexOption(o.nearDupIndex),
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
  /** Set with retryFailed: rows the new retry round re-attempts. */
  readonly retry?: number;
  /** Set with `wait`: what the output folder holds once every chunk is committed. */
  readonly done?: { readonly ok: number; readonly rejected: number; readonly shards: number; readonly seconds: number };
}

export async function enqueueIngest(ingest: IngestInput, input: EnqueueInput): Promise<EnqueueSummary> {
  const q = resolveEnqueueOptions(input);
  const o = resolveIngestOptions(ingest);
  const started = performance.now();
  const output = path.resolve(o.output);
  const files = (await listManifestFiles(o.inputs)).map((f) => path.resolve(f));
  const manifest = resolveManifestOptions({ ...o.manifest, inputs: files });
  const copyDir = path.join(output, STAGING_DIR, 'manifests');
  const copies: Record<string, string> = {};
  for (const [i, file] of files.entries()) {
    if (isGzipPath(file)) copies[file] = path.join(copyDir, `${String(i).padStart(4, '0')}-${path.basename(file).slice(0, -3)}`);
  }
  // total, chunks and baseChunks are filled in once the manifests are scanned (new runs only).
  const planned: QueueRun = {
    version: 1,
    files,
    copies,
    output,
    total: 0,
    rowsPerJob: q.rowsPerJob,
    chunks: 0,
    baseChunks: 0,
    manifest: o.manifest,
    fetch: o.fetch,
    image: o.image,
    writer: o.writer,
    dedupe: o.dedupe,
    filter: o.filter ?? null,
    countCaptions: o.filter?.rules.includes('repeated_text') ?? false,
    bucketBits: q.bucketBits,
    nearDupIndex: q.nearDupIndex,
    createdAt: new Date().toISOString(),
  };

  const address = parseQueueUrl(q.queue.url);
  const redis = await connectRedis(address);
  const keys = new Keys(q.queue.name);
  const queue = new Queue<ChunkJobData>(q.queue.name, { connection: redisOptions(address) });
  queue.on('error', () => {});
  try {
    let stored: QueueRun | undefined;
    if (o.overwrite) {
      if (o.retryFailed) throw invalid('overwrite', 'false with --retry-failed (a retry re-attempts the rejects of the stored run)', true);
      await queue.obliterate({ force: true });
      await deleteState(redis, keys);
      await fs.rm(path.join(output, STAGING_DIR), { recursive: true, force: true });
    } else {
      const text = await redis.get(keys.run);
      if (text !== null) {
        stored = parseRun(text, q.queue.url, q.queue.name);
        if (runIdentityOf(stored) !== runIdentityOf(planned)) {
          throw new FilipError(
            'FILIP_ERR_QUEUE',
            `queue "${q.queue.name}" at ${q.queue.url} holds another run (other inputs or options); use --overwrite or another --queue-name`,
            { field: 'queue' },
          );
        }
      }
    }
    const opts = (id: string) => ({ jobId: id, attempts: q.attempts, backoff: { type: 'exponential', delay: 1000 }, removeOnComplete: false, removeOnFail: false });
    let run: QueueRun;
    let retried = 0;
    if (o.retryFailed) {
      if (!stored) throw parseRunError(q);
      ({ run, rows: retried } = await addRetryRound(redis, keys, stored, q.rowsPerJob, (jobs) => queue.addBulk(jobs.map((j) => ({ ...j, opts: opts(`${j.data.kind}-${j.data.chunk}`) }))), q.logStream));
    } else {
      await openOutput(output, 'filip-data ingest', { queue: `${q.queue.url}#${q.queue.name}`, run: runIdentityOf(planned) }, o.overwrite, planned.files);
      // A stored run was scanned already, and its cursors are complete (the record is written after them).
      run = stored ?? (await scanAndStore(redis, keys, planned, manifest, copies, q.logStream));
      const jobs: { name: string; data: ChunkJobData; opts: object }[] = [];
      const base = baseChunksOf(run);
      if (run.countCaptions) for (let k = 0; k < base; k++) jobs.push({ name: 'count', data: { kind: 'count', chunk: k }, opts: opts(`count-${k}`) });
      for (let k = 0; k < base; k++) jobs.push({ name: 'stage', data: { kind: 'stage', chunk: k }, opts: opts(`stage-${k}`) });
      for (let i = 0; i < jobs.length; i += 1000) await queue.addBulk(jobs.slice(i, i + 1000));
      // openOutput marked the folder unfinished; a run that is done already gets its summary back now,
      // not only when some worker next looks.
      if ((await committedChunks(redis, keys)) >= run.chunks) await writeQueueSummary(output, q.queue.name, run);
    }

    const summary: EnqueueSummary = {
      queue: q.queue.url,
      name: q.queue.name,
      output,
      total: run.total,
      chunks: run.chunks,
      rowsPerJob: q.rowsPerJob,
      ...(o.retryFailed ? { retry: retried } : {}),
    };
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

function parseRunError(q: EnqueueOptions): FilipError {
  return new FilipError('FILIP_ERR_QUEUE', `no run on queue "${q.queue.name}" at ${q.queue.url} to retry: queue one first (without --retry-failed)`, {
    field: 'queue',
  });
}

/**
 * Scans the manifests once, recording where every chunk starts (Redis hash `sources`, written in
 * batches as the scan goes, so memory stays flat), then stores the run record: a record in Redis
 * means its cursors are complete. Gzipped manifests are first gunzipped to plain copies in the
 * output's staging folder, which the chunk jobs read at their offsets.
 */
async function scanAndStore(
  redis: Redis,
  keys: Keys,
  planned: QueueRun,
  manifest: ManifestOptions,
  copies: PlainCopies,
  log: NodeJS.WritableStream,
): Promise<QueueRun> {
  for (const [file, copy] of Object.entries(copies)) {
    await makeDir(path.dirname(copy), 'output');
    log.write(`${new Date().toISOString()} gunzipping ${file} -> ${copy} (chunk jobs read the plain copy from their offsets)\n`);
    await gunzipFile(file, copy);
  }
  await redis.del(keys.sources);
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length > 0) await redis.hset(keys.sources, ...batch);
    batch = [];
  };
  const total = await scanManifests(
    manifest,
    planned.rowsPerJob,
    async (cursor) => {
      const source: ChunkSource = { kind: 'manifest', cursor };
      batch.push(String(cursor.index / planned.rowsPerJob), JSON.stringify(source));
      if (batch.length >= 2000) await flush();
    },
    copies,
  );
  await flush();
  const chunks = chunkCount(total, planned.rowsPerJob);
  const run: QueueRun = { ...planned, total, chunks, baseChunks: chunks };
  await redis.set(keys.run, JSON.stringify(run), 'NX');
  return parseRun(await redis.get(keys.run), 'redis', keys.name); // another producer may have stored it first
}

/** The latest outcome of every rejected row whose latest reject is transient and that no later round kept. */
async function retryCandidates(run: QueueRun): Promise<RetryLine[]> {
  // Kept rows never leave a reject line; only a retry round can keep a row rejected before.
  const keptByRetry = new Set<string>();
  for (const c of await readCommits(run.output)) {
    if (c.file === null || c.shard < baseChunksOf(run)) continue;
    for await (const row of iterateShard(path.join(run.output, c.file), { columns: ['key'] })) keptByRetry.add(String(row.key));
  }
  const latest = new Map<string, RetryLine>();
  for await (const r of readRejects(run.output)) {
    latest.delete(r.key); // map order = order of each row's latest attempt, as single-machine retry
    if (keptByRetry.has(r.key) || !TRANSIENT_REASONS.has(r.reason)) continue;
    const sep = r.source.lastIndexOf(':');
    latest.set(r.key, {
      key: r.key,
      index: r.index,
      url: r.url,
      caption: r.caption,
      source: { file: r.source.slice(0, sep), row: Number(r.source.slice(sep + 1)) },
      extra: r.extra,
    });
  }
  return [...latest.values()];
}

/**
 * `ingest --retry-failed --queue`: once every chunk of the stored run is committed, spills the rows
 * whose latest reject is transient to `.staging/retry-R.jsonl`, records each retry chunk's byte offset
 * in it, adds the round to the run record and queues its stage jobs (chunk numbers after the run's
 * last). While the run (or an earlier round) is unfinished, it only re-adds the jobs of uncommitted
 * chunks (job ids make that idempotent), so a killed `--retry-failed` is resumed by running it again.
 */
async function addRetryRound(
  redis: Redis,
  keys: Keys,
  stored: QueueRun,
  rowsPerJob: number,
  add: (jobs: { name: string; data: ChunkJobData }[]) => Promise<unknown>,
  log: NodeJS.WritableStream,
): Promise<{ run: QueueRun; rows: number }> {
  const committed = await committedChunks(redis, keys);
  const stageJobs = (from: number, to: number) => {
    const jobs: { name: string; data: ChunkJobData }[] = [];
    for (let k = from; k < to; k++) jobs.push({ name: 'stage', data: { kind: 'stage', chunk: k } });
    return jobs;
  };
  if (committed < stored.chunks) {
    log.write(`${new Date().toISOString()} queue ${keys.name}: ${committed}/${stored.chunks} chunks committed; retry again once they are (their jobs are re-added)\n`);
    for (let k = Math.max(committed, baseChunksOf(stored)); k < stored.chunks; k += 1000) await add(stageJobs(k, Math.min(k + 1000, stored.chunks)));
    return { run: stored, rows: 0 };
  }
  const candidates = await retryCandidates(stored);
  if (candidates.length === 0) {
    log.write(`${new Date().toISOString()} queue ${keys.name}: no row was rejected for a transient reason; nothing to retry\n`);
    return { run: stored, rows: 0 };
  }
  const round = stored.retries?.length ?? 0;
  const file = path.join(stored.output, STAGING_DIR, `retry-${String(round).padStart(3, '0')}.jsonl`);
  await makeDir(path.dirname(file), 'output');
  const fields: string[] = [];
  const lines: Buffer[] = [];
  let offset = 0;
  for (let i = 0; i < candidates.length; i += rowsPerJob) {
    const rows = Math.min(rowsPerJob, candidates.length - i);
    const source: ChunkSource = { kind: 'retry', round, offset, rows };
    fields.push(String(stored.chunks + i / rowsPerJob), JSON.stringify(source));
    for (const c of candidates.slice(i, i + rows)) {
      const line = Buffer.from(`${JSON.stringify(c)}\n`);
      lines.push(line);
      offset += line.length;
    }
  }
  await writeFileAtomic(file, Buffer.concat(lines));
  const chunks = fields.length / 2;
  const run: QueueRun = {
    ...stored,
    baseChunks: baseChunksOf(stored),
    chunks: stored.chunks + chunks,
    retries: [...(stored.retries ?? []), { round, firstChunk: stored.chunks, chunks, rows: candidates.length, file }],
  };
  // The sources and the record together: a worker that sees the round finds its chunks' sources.
  await redis.multi().hset(keys.sources, ...fields).set(keys.run, JSON.stringify(run)).exec();
  // The output is unfinished again until the round's last chunk is committed (the committer writes
  // the summary then). Removed after the record is stored: see Committer's summaryDue.
  await fs.rm(path.join(stored.output, SUMMARY_FILE), { force: true });
  await add(stageJobs(stored.chunks, run.chunks));
  return { run, rows: candidates.length };
}

export function formatEnqueueSummary(s: EnqueueSummary): string {
  const lines =
    s.retry === undefined
      ? [`queued ${s.total} rows as ${s.chunks} chunk jobs of ${s.rowsPerJob} rows on "${s.name}" at ${s.queue} -> ${s.output}`]
      : [`queued ${s.retry} rows rejected for transient reasons for a retry on "${s.name}" at ${s.queue} (the run now has ${s.chunks} chunks) -> ${s.output}`];
  if (s.done) {
    const rate = s.done.seconds > 0 ? s.total / s.done.seconds : 0;
    lines.push(`all chunks committed in ${s.done.seconds.toFixed(1)} s (${rate.toFixed(1)} rows/s): ${s.done.ok} kept, ${s.done.rejected} rejected, ${s.done.shards} shards`);
  } else {
    lines.push(`start workers with: filip-data worker --queue ${s.queue}${s.name === 'filip-ingest' ? '' : ` --queue-name ${s.name}`}`);
  }
  return lines.join('\n');
}
