// `filip-data worker --queue redis://...`: takes chunk jobs from the BullMQ queue and runs them
// (count, stage; see chunk.ts), and commits whatever is ready whenever it can take the commit lock
// (commit.ts). Run any number of these on any number of machines that see the same output folder.
//
// A worker killed mid-job holds the job's BullMQ lock until it expires (lockDurationMs); another
// worker's stalled-job check (every stalledIntervalMs) then puts the job back, and it is redone from
// the start. A killed committer holds the commit lock until its TTL runs out; the next one redoes the
// commit of the same chunk (see commit.ts for why nothing is counted twice).

import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { boolOption, intOption, rejectUnknownKeys } from '../core/options.js';
import { Fetcher } from '../fetch/fetcher.js';
import { prepareFilter, type FilterContext } from '../filters/filter.js';
import { isFinished } from '../pipeline/shard-source.js';
import { commitChunk, nearDupIndexOf, runNearDupCheck, writeQueueSummary } from './commit.js';
import { countChunk, stageChunk } from './chunk.js';
import { connectRedis, parseQueueUrl, redisOptions } from './connection.js';
import { baseChunksOf, chunkRange, Keys, parseRun, resolveQueueOptions, retryRoundOf, type QueueOptions, type QueueRun } from './plan.js';
import { NearDupReplica, releaseLock, renewLock, tryLock } from './state.js';

export interface WorkerOptions {
  readonly queue: QueueOptions;
  /** Where the shared output folder is mounted on this machine. @default the run's output path */
  readonly output: string | undefined;
  /** Downloads in flight (overrides the run's --concurrency). @default the run's */
  readonly concurrency: number | undefined;
  /** Chunk jobs this worker runs at once (2: one job's last downloads overlap the next one's first). @default 2 */
  readonly jobs: number;
  /** BullMQ job lock: a killed worker's job is given to another one this long after its last renewal. @default 30000 */
  readonly lockDurationMs: number;
  /** How often this worker looks for stalled jobs. @default 30000 */
  readonly stalledIntervalMs: number;
  /** Times a job may stall before it is failed. @default 3 */
  readonly maxStalledCount: number;
  /** Exit once every chunk of the run is committed. @default false */
  readonly untilDone: boolean;
  /** @default process.stderr */
  readonly logStream: NodeJS.WritableStream;
}

export type WorkerInput = Partial<Omit<WorkerOptions, 'queue'>> & { queue: Partial<QueueOptions> & { url: string } };

const DEFAULTS = { jobs: 2, lockDurationMs: 30_000, stalledIntervalMs: 30_000, maxStalledCount: 3, untilDone: false };

export function resolveWorkerOptions(input: WorkerInput): WorkerOptions {
  rejectUnknownKeys('worker', input, { ...DEFAULTS, queue: 0, output: 0, concurrency: 0, logStream: 0 });
  const o = { ...DEFAULTS, ...input };
  return {
    queue: resolveQueueOptions(input.queue),
    output: input.output,
    concurrency: input.concurrency === undefined ? undefined : intOption('concurrency', input.concurrency, 1, 4096),
    jobs: intOption('jobs', o.jobs, 1, 64),
    lockDurationMs: intOption('lockDurationMs', o.lockDurationMs, 1000),
    stalledIntervalMs: intOption('stalledIntervalMs', o.stalledIntervalMs, 500),
    maxStalledCount: intOption('maxStalledCount', o.maxStalledCount, 0),
    untilDone: boolOption('untilDone', o.untilDone),
    logStream: input.logStream ?? process.stderr,
  };
}

/** What a worker reports in `filip:<queue>:workers` (read by `filip-data status`). */
export interface WorkerStats {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: number;
  lastSeen: number;
  jobs: number;
  rows: number;
  /** Milliseconds during which at least one stage job ran (rows/s = rows / busy time). */
  busyMs: number;
  commits: number;
}

export interface ChunkJobData {
  readonly kind: 'count' | 'stage';
  readonly chunk: number;
}

/** Runs until stopped (SIGTERM/SIGINT) or, with untilDone, until the run is committed. */
export async function runWorker(input: WorkerInput, signal?: AbortSignal): Promise<WorkerStats> {
  const o = resolveWorkerOptions(input);
  const address = parseQueueUrl(o.queue.url);
  const redis = await connectRedis(address);
  const keys = new Keys(o.queue.name);
  const log = (line: string) => o.logStream.write(`${new Date().toISOString()} worker ${process.pid}: ${line}\n`);
  let run = await waitForRun(redis, keys, o, signal, log);
  let runText = JSON.stringify(run);
  // `ingest --retry-failed --queue` adds chunks to a stored run: a worker takes up the new record.
  const refresh = async () => {
    const text = await redis.get(keys.run);
    if (text !== null && text !== runText) {
      run = parseRun(text, o.queue.url, o.queue.name);
      runText = text;
    }
  };
  const output = o.output ?? run.output;
  const concurrency = o.concurrency ?? run.fetch.concurrency;
  const fetcher = new Fetcher({ ...run.fetch, concurrency });
  const id = `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 6)}`;
  const stats: WorkerStats = { id, host: os.hostname(), pid: process.pid, startedAt: Date.now(), lastSeen: Date.now(), jobs: 0, rows: 0, busyMs: 0, commits: 0 };
  // Busy time is the union of the stage jobs' intervals: with --jobs 2 they overlap.
  let staging = 0;
  let busySince = 0;
  const busy = (delta: 1 | -1) => {
    if (delta === 1 && staging++ === 0) busySince = performance.now();
    if (delta === -1 && --staging === 0) stats.busyMs += performance.now() - busySince;
  };
  const report = () => {
    stats.lastSeen = Date.now();
    const open = staging > 0 ? performance.now() - busySince : 0;
    return redis.hset(keys.workers, id, JSON.stringify({ ...stats, busyMs: stats.busyMs + open }));
  };
  await report();

  // Built before the first job is taken: the English identifier's tables take seconds of blocking
  // work, during which a job's lock could not be renewed and the job would look stalled.
  let localFilter: FilterContext | undefined;
  if (run.filter) {
    const local = { ...run.filter, rules: run.filter.rules.filter((r) => r !== 'repeated_text' && r !== 'near_duplicate') };
    log('preparing the filter rules');
    localFilter = await prepareFilter(local, async function* () {}, `${output}/.staging/.work-${process.pid}`);
  }

  // The commit lock expires like a job lock: a dead committer holds up commits this long at most.
  const committer = new Committer(redis, keys, () => run, output, id, o.lockDurationMs, (chunk, ms) => {
    stats.commits++;
    log(`committed chunk ${chunk} in ${ms.toFixed(0)} ms`);
  });
  const processor = async (job: Job<ChunkJobData>) => {
    if (job.data.chunk >= run.chunks) await refresh();
    const round = retryRoundOf(run, job.data.chunk);
    const range = chunkRange(job.data.chunk, run.rowsPerJob, run.total);
    const started = performance.now();
    if (job.data.kind === 'count') {
      const rows = await countChunk(redis, keys, run, range);
      log(`counted chunk ${range.chunk} (${rows} rows)`);
    } else {
      log(round ? `staging chunk ${range.chunk}: retry round ${round.round}` : `staging chunk ${range.chunk}: rows ${range.start}-${range.end - 1}`);
      busy(1);
      let staged: { rows: number; ok: number };
      try {
        staged = await stageChunk({ redis, keys, run, output, fetcher, concurrency, ...(localFilter ? { localFilter } : {}) }, range);
      } finally {
        busy(-1);
      }
      const { rows, ok } = staged;
      stats.rows += rows;
      log(`staged chunk ${range.chunk}: ${rows} rows, ${ok} candidates in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    stats.jobs++;
    await report();
    // Not awaited: the next job's downloads overlap this commit (commits run one at a time anyway).
    void committer.drain().catch((err: Error) => log(`commit: ${err.message}`));
  };

  const worker = new Worker<ChunkJobData>(o.queue.name, processor, {
    connection: redisOptions(address, true),
    concurrency: o.jobs,
    lockDuration: o.lockDurationMs,
    stalledInterval: o.stalledIntervalMs,
    maxStalledCount: o.maxStalledCount,
    autorun: true,
  });
  worker.on('failed', (job, err) => log(`job ${job?.id ?? '?'} failed: ${err.message}`));
  worker.on('error', (err) => log(`queue error: ${err.message}`));

  // Idle workers commit too: a chunk staged by a worker that died before committing is not left behind.
  try {
    while (!signal?.aborted) {
      await refresh().catch(() => undefined);
      await committer.drain().catch((err: Error) => log(`commit: ${err.message}`));
      await report();
      if (o.untilDone && (await committedChunks(redis, keys)) >= run.chunks) break;
      await sleep(500, undefined, signal ? { signal } : undefined).catch(() => undefined);
    }
  } finally {
    await worker.close();
    await fetcher.close();
    await localFilter?.close();
    await report().catch(() => undefined);
    redis.disconnect();
  }
  log(`done: ${stats.jobs} jobs, ${stats.rows} rows staged, ${stats.commits} chunks committed`);
  return stats;
}

async function waitForRun(redis: Redis, keys: Keys, o: WorkerOptions, signal: AbortSignal | undefined, log: (l: string) => void): Promise<QueueRun> {
  let told = false;
  for (;;) {
    const text = await redis.get(keys.run);
    if (text !== null || signal?.aborted) return parseRun(text, o.queue.url, o.queue.name);
    if (!told) log(`waiting for a run on queue "${o.queue.name}" (filip-data ingest --queue ${o.queue.url} ...)`);
    told = true;
    await sleep(1000);
  }
}

export async function committedChunks(redis: Redis, keys: Keys): Promise<number> {
  return Number((await redis.get(keys.next)) ?? 0);
}

/**
 * The run as the committer must see it for chunk K. A retry chunk's rows claimed their URLs on their
 * first attempt, so URLs are not checked again (single-machine retry does not replay URL dedupe either);
 * image and pair dedupe and the filter rules decide as for any chunk.
 */
function commitView(run: QueueRun, chunk: number): QueueRun {
  return retryRoundOf(run, chunk) ? { ...run, dedupe: { ...run.dedupe, urls: false } } : run;
}

/** Commits staged chunks in order while it holds the commit lock; one drain at a time per process. */
class Committer {
  readonly #token: string;
  readonly #nearDups: NearDupReplica | undefined;
  readonly #run: () => QueueRun;
  #running: Promise<void> | undefined;
  #again = false;

  constructor(
    readonly redis: Redis,
    readonly keys: Keys,
    run: () => QueueRun,
    readonly output: string,
    workerId: string,
    readonly ttlMs: number,
    readonly onCommit: (chunk: number, ms: number) => void,
  ) {
    this.#token = `${workerId}:${randomUUID()}`;
    this.#run = run;
    const filter = run().filter;
    this.#nearDups = filter?.rules.includes('near_duplicate') && nearDupIndexOf(run()) === 'replica' ? new NearDupReplica(filter.nearDupDistance, runNearDupCheck(run())) : undefined;
  }

  drain(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = this.#loop().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #ready(): Promise<number | undefined> {
    const run = this.#run();
    const next = await committedChunks(this.redis, this.keys);
    if (next >= run.chunks) return undefined;
    if (run.countCaptions && (await this.redis.bitcount(this.keys.counted)) < baseChunksOf(run)) return undefined;
    return (await this.redis.getbit(this.keys.staged, next)) === 1 ? next : undefined;
  }

  /**
   * Every chunk of the run is committed and `_summary.json` is not written yet. The summary is looked
   * at before the run record: the producer stores a retry round's record before it removes the
   * summary, so a worker that sees it removed also sees the round's chunks.
   */
  async #summaryDue(): Promise<QueueRun | undefined> {
    if (await isFinished(this.output)) return undefined;
    const text = await this.redis.get(this.keys.run);
    if (text === null) return undefined;
    const run = parseRun(text, '', this.keys.name);
    return (await committedChunks(this.redis, this.keys)) >= run.chunks ? run : undefined;
  }

  async #loop(): Promise<void> {
    do {
      this.#again = false;
      if ((await this.#ready()) === undefined && (await this.#summaryDue()) === undefined) continue;
      if (!(await tryLock(this.redis, this.keys, this.#token, this.ttlMs))) continue;
      const renew = setInterval(() => void renewLock(this.redis, this.keys, this.#token, this.ttlMs).catch(() => {}), this.ttlMs / 4);
      try {
        for (let next = await this.#ready(); next !== undefined; next = await this.#ready()) {
          const started = performance.now();
          const ctx = { redis: this.redis, keys: this.keys, run: commitView(this.#run(), next), output: this.output, token: this.#token };
          await commitChunk(this.#nearDups ? { ...ctx, nearDups: this.#nearDups } : ctx, next);
          this.onCommit(next, performance.now() - started);
        }
        const finished = await this.#summaryDue();
        if (finished) await writeQueueSummary(this.output, this.keys.name, finished);
      } finally {
        clearInterval(renew);
        await releaseLock(this.redis, this.keys, this.#token);
      }
      // A chunk staged while we held the lock, whose worker found the lock taken, is ours to commit.
      if ((await this.#ready()) !== undefined) this.#again = true;
    } while (this.#again);
  }
}
