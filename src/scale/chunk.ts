// The two kinds of chunk job a worker runs. Both read the rows [start, end) of the manifests, entered
// at the place the producer recorded for the chunk (`sources` in Redis), or, for a chunk of a
// `--retry-failed` round, the chunk's rows from the round's spill file.
//
// count  (only when repeated_text is on): adds the chunk's caption counts to Redis, once.
// stage  the heavy, parallel part of ingest: URL pre-check, fetch, decode/resize, hashes, and the
//        filter rules that need nothing corpus-wide. Candidates go to `.staging/chunk-K.parquet`,
//        every row's outcome (without image bytes) to `.staging/chunk-K.json`, both written under a
//        temporary name first; the chunk's `staged` bit is set last. A retried job removes whatever
//        an earlier attempt left. Nothing here changes the dedupe state: corpus-wide decisions are
//        taken by the committer (commit.ts), in chunk order.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ReasonCode } from '../core/reasons.js';
import { reject, type ExtraColumns, type Sample } from '../core/sample.js';
import type { Fetcher } from '../fetch/fetcher.js';
import { failedRules, type FilterContext } from '../filters/filter.js';
import { FilipError } from '../core/errors.js';
import { readManifests, readManifestsFrom, resolveManifestOptions } from '../manifest/read.js';
import { readLines } from '../manifest/text.js';
import { download } from '../pipeline/ingest.js';
import { orderedMap } from '../pipeline/pool.js';
import { sampleToRow, shardColumns } from '../shard/schema.js';
import { openShardWriter } from '../shard/writer.js';
import type { ChunkRange, ChunkSource, Keys, QueueRun } from './plan.js';
import { applyCounts, captionSlot, lookupSlots, urlSlot, type Slot } from './state.js';
import { makeDir } from '../core/make-dir.js';

export const STAGING_DIR = '.staging';

/** One row of `.staging/chunk-K.json`: what the stage found, before corpus-wide decisions. */
export interface StagedRow {
  readonly key: string;
  readonly index: number;
  readonly url: string;
  readonly caption: string;
  readonly source: { readonly file: string; readonly row: number };
  readonly extra: ExtraColumns;
  /** 'ok': a candidate, its image is in chunk-K.parquet. */
  readonly status: 'ok' | 'rejected';
  /** The manifest row was malformed (it takes part in no rule). */
  readonly malformed: boolean;
  readonly reason?: ReasonCode;
  readonly errorMessage?: string;
  readonly httpStatus?: number;
  readonly sha256?: string;
  readonly phash?: string;
  /** The phash's weak-bit mask (see Sample), when the image has one. */
  readonly phashWeak?: string;
  /** The image's near-duplicate check data (see Sample), base64, when it has one. */
  readonly nearDupCheck?: string;
  /** Filter rules (not corpus-wide ones) this candidate fails, in rule order, and the first one's message. */
  readonly localFailed?: ReasonCode[];
  readonly localMessage?: string;
}

export interface StagedChunk {
  readonly chunk: number;
  /** Manifest chunks: the input range. Retry chunks: the first and last+1 input index of their rows. */
  readonly start: number;
  readonly end: number;
  readonly rows: StagedRow[];
  /** 'retry': the chunk re-attempts rows of a `--retry-failed` round (commit kind 'retry'). @default 'ingest' */
  readonly kind?: 'ingest' | 'retry';
}

export function stagingPaths(output: string, chunk: number) {
  const dir = path.join(output, STAGING_DIR);
  const base = `chunk-${String(chunk).padStart(6, '0')}`;
  return { dir, base, parquet: path.join(dir, `${base}.parquet`), json: path.join(dir, `${base}.json`) };
}

/**
 * The rows of chunk K, read from where the producer recorded that they start (`source`), so a job
 * reads its own rows and not the rows before them. Without a recorded source (a run queued by an
 * older version) the manifests are read from the start and the rows before the chunk skipped.
 */
export async function* chunkRows(run: QueueRun, range: ChunkRange, source: ChunkSource | undefined): AsyncGenerator<Sample> {
  if (source?.kind === 'retry') {
    yield* retryRows(run, source);
    return;
  }
  const manifest = resolveManifestOptions({ ...run.manifest, inputs: run.files });
  if (source?.kind === 'manifest') {
    yield* readManifestsFrom(manifest, source.cursor, range.end, run.copies ?? {});
    return;
  }
  for await (const s of readManifests(manifest, range.start)) {
    if (s.index >= range.end) break;
    yield s;
  }
}

/** One line of a retry round's spill file: a row to re-attempt, as it was read from the manifest. */
export type RetryLine = Pick<Sample, 'key' | 'index' | 'url' | 'caption' | 'source' | 'extra'>;

/** The `rows` rows of a retry chunk, from its byte offset in the round's spill file, as pending samples. */
async function* retryRows(run: QueueRun, source: Extract<ChunkSource, { kind: 'retry' }>): AsyncGenerator<Sample> {
  const round = run.retries?.find((r) => r.round === source.round);
  if (!round) throw new FilipError('FILIP_ERR_QUEUE', `retry round ${source.round} is not in the run record`, { field: 'queue' });
  let left = source.rows;
  for await (const batch of readLines(round.file, { offset: source.offset, linesBefore: 0 })) {
    for (const line of batch) {
      if (left === 0) return;
      if (line.text.length === 0) continue;
      const r = JSON.parse(line.text) as RetryLine;
      left--;
      yield { key: r.key, index: r.index, url: r.url, caption: r.caption, source: r.source, extra: r.extra, status: 'pending' };
    }
  }
  if (left > 0) throw new FilipError('FILIP_ERR_QUEUE', `retry spill file ends ${left} rows early`, { file: round.file });
}

/** Reads chunk K's source as the producer stored it (undefined for runs queued without one). */
export async function chunkSource(redis: Redis, keys: Keys, chunk: number): Promise<ChunkSource | undefined> {
  const text = await redis.hget(keys.sources, String(chunk));
  return text === null ? undefined : (JSON.parse(text) as ChunkSource);
}

/** Count job: the captions of every well-formed row of the chunk, added to Redis once. Returns rows read. */
export async function countChunk(redis: Redis, keys: Keys, run: QueueRun, range: ChunkRange): Promise<number> {
  if ((await redis.getbit(keys.counted, range.chunk)) === 1) return 0;
  const counts = new Map<string, { slot: Slot; n: number }>();
  let rows = 0;
  for await (const s of chunkRows(run, range, await chunkSource(redis, keys, range.chunk))) {
    rows++;
    if (s.status !== 'pending') continue;
    const slot = captionSlot(s.caption, run.bucketBits);
    const id = `${slot.bucket}:${slot.field.toString('hex')}`;
    const c = counts.get(id);
    if (c) c.n++;
    else counts.set(id, { slot, n: 1 });
  }
  await applyCounts(redis, keys, range.chunk, counts);
  return rows;
}

export interface StageContext {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly run: QueueRun;
  readonly output: string;
  readonly fetcher: Fetcher;
  readonly concurrency: number;
  /** The filter's per-sample rules (no repeated_text, no near_duplicate), when the run filters. */
  readonly localFilter?: FilterContext;
}

/** Stage job. Returns rows and candidates staged (0, 0 when the chunk was staged already). */
export async function stageChunk(ctx: StageContext, range: ChunkRange): Promise<{ rows: number; ok: number }> {
  const { redis, keys, run } = ctx;
  if ((await redis.getbit(keys.staged, range.chunk)) === 1) return { rows: 0, ok: 0 };
  const paths = stagingPaths(ctx.output, range.chunk);
  await makeDir(paths.dir, 'output');
  // An earlier attempt (killed, or failed) may have left files: they are never used, only removed.
  for (const name of await fs.readdir(paths.dir)) {
    if (name.startsWith(`${paths.base}.`)) await fs.rm(path.join(paths.dir, name), { force: true });
  }

  const source = await chunkSource(redis, keys, range.chunk);
  const samples: Sample[] = [];
  for await (const s of chunkRows(run, range, source)) samples.push(s);
  const malformed = new Set(samples.filter((s) => s.status !== 'pending').map((s) => s.key));
  // A retried row's URL is claimed in Redis by the row itself (its first attempt): not a duplicate.
  const retry = source?.kind === 'retry';
  if (run.dedupe.urls && !retry) await skipKnownUrls(ctx, samples);

  const attempt = randomUUID().slice(0, 8);
  const tmpParquet = path.join(paths.dir, `${paths.base}.${attempt}.parquet.tmp`);
  const tmpJson = path.join(paths.dir, `${paths.base}.${attempt}.json.tmp`);
  const keepCols = run.manifest.keepCols;
  const writer = await openShardWriter(tmpParquet, shardColumns(keepCols), run.writer);
  const rows: StagedRow[] = [];
  let ok = 0;
  try {
    const downloaded = orderedMap(toAsync(samples), (s) => download(s, ctx.fetcher, run.image), {
      concurrency: ctx.concurrency,
      window: Math.max(ctx.concurrency * 8, 256),
    });
    for await (const s of downloaded) {
      let local: { failed: ReasonCode[]; message: string } | undefined;
      if (s.status === 'ok' && s.image) {
        if (ctx.localFilter) local = failedRules(s, ctx.localFilter);
        await writer.write(sampleToRow(s, keepCols));
        ok++;
      }
      rows.push({
        key: s.key,
        index: s.index,
        url: s.url,
        caption: s.caption,
        source: s.source,
        extra: s.extra,
        status: s.status === 'ok' ? 'ok' : 'rejected',
        malformed: malformed.has(s.key),
        ...(s.reason ? { reason: s.reason } : {}),
        ...(s.errorMessage !== undefined ? { errorMessage: s.errorMessage } : {}),
        ...(s.httpStatus !== undefined ? { httpStatus: s.httpStatus } : {}),
        ...(s.image
          ? {
              sha256: s.image.sha256,
              phash: s.image.phash,
              ...(s.image.phashWeak !== undefined ? { phashWeak: s.image.phashWeak } : {}),
              ...(s.image.nearDupCheck !== undefined ? { nearDupCheck: Buffer.from(s.image.nearDupCheck).toString('base64') } : {}),
            }
          : {}),
        ...(local && local.failed.length > 0 ? { localFailed: local.failed, localMessage: local.message } : {}),
      });
    }
    await writer.close();
  } catch (error) {
    await writer.abort();
    throw error;
  }
  const staged: StagedChunk = retry
    ? { chunk: range.chunk, start: rows[0]?.index ?? 0, end: (rows.at(-1)?.index ?? -1) + 1, rows, kind: 'retry' }
    : { chunk: range.chunk, start: range.start, end: range.end, rows };
  await fs.writeFile(tmpJson, JSON.stringify(staged));
  await fs.rename(tmpParquet, paths.parquet);
  await fs.rename(tmpJson, paths.json);
  await redis.setbit(keys.staged, range.chunk, 1);
  return { rows: rows.length, ok };
}

/**
 * Rows whose URL an earlier row already claimed are not fetched. Claims in Redis come only from
 * chunks before this one (commits go in chunk order, and this chunk is not committed), so a row
 * found there is a duplicate whatever happens next; repeats inside the chunk are skipped too. The
 * committer decides again (exactly); this only saves the downloads.
 */
async function skipKnownUrls(ctx: StageContext, samples: Sample[]): Promise<void> {
  const pending = samples.filter((s) => s.status === 'pending');
  const slots = pending.map((s) => urlSlot(s.url, ctx.run.bucketBits));
  const found = await lookupSlots(ctx.redis, ctx.keys, 'u', slots);
  const seen = new Set<string>();
  pending.forEach((s, i) => {
    const id = `${slots[i]!.bucket}:${slots[i]!.field.toString('hex')}`;
    if (found[i] !== null || seen.has(id)) reject(s, 'duplicate_url', `URL already seen in this run: ${s.url}`);
    seen.add(id);
  });
}

async function* toAsync<T>(items: readonly T[]): AsyncGenerator<T> {
  yield* items;
}
