// The committer: takes staged chunks in chunk order, decides the corpus-wide rules against the
// state in Redis (exact dedupe of URL, image and pair; repeated_text; near_duplicate), and commits
// each chunk to the shared output folder as shard K with the single-machine commit protocol
// (output.ts): `.K.parquet.tmp` -> `K.parquet`, reject lines, then `K_stats.json` last.
//
// Any worker may be the committer: whoever holds the commit lock drains what is ready. Because
// chunks commit in order, a chunk is decided against exactly the rows before it, as on one machine.
// The decisions and the dedupe insertions of chunk K are applied to Redis in one atomic script,
// together with a record of the decisions (`decided:K`). If the committer dies after that, the next
// one reuses the record instead of deciding again, so the keys chunk K inserted never make its own
// rows look like duplicates; the record is dropped when `next` moves past K.
//
// near_duplicate reads the kept pHashes from the bucketed index in Redis (phash-redis.ts): one batch
// lookup for the chunk's candidate rows, then the chunk is walked in row order against the local
// index that lookup returns, to which each kept row's hash is added (first seen wins, as on one
// machine). With the run's `nearDupIndex` set to `replica`, the committer's NearDupReplica does that
// job instead (state.ts).

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { FilipError } from '../core/errors.js';
import type { ReasonCode } from '../core/reasons.js';
import type { Sample } from '../core/sample.js';
import type { CaptionCounts } from '../filters/caption-counts.js';
import { FILTER_RULES, failedRules, nearDupCheckThresholds, type FilterContext, type FilterRule } from '../filters/filter.js';
import type { NearDupCheckThresholds } from '../image/near-dup-check.js';
import { totals } from '../pipeline/ingest.js';
import { drainInto, readCommits, REJECT_LOG, ShardSink, statsName, SUMMARY_FILE, writeSummary, type ShardStats } from '../pipeline/output.js';
import { readShardSamples } from '../pipeline/shard-source.js';
import { shardName } from '../shard/schema.js';
import { stagingPaths, type StagedChunk, type StagedRow } from './chunk.js';
import type { Keys, QueueRun } from './plan.js';
import { DEFAULT_NEAR_DUP_INDEX, nearDupIndexOption, RedisPhashIndex, type NearDupIndexKind, type PhashLookupStats } from './phash-redis.js';
import {
  advance,
  applyDecisions,
  captionSlot,
  imageSlot,
  lookupSlots,
  NearDupReplica,
  pairSlot,
  urlSlot,
  type Insertion,
  type Slot,
} from './state.js';

/** Per staged row: null = the staged outcome stands; otherwise [reason, message, failed rules?]. */
export type Decision = null | [ReasonCode, string, ReasonCode[]?];

const GLOBAL_RULES: readonly FilterRule[] = ['repeated_text', 'near_duplicate'];

function slotId(s: Slot): string {
  return `${s.bucket}:${s.field.toString('hex')}`;
}

/**
 * Where the run keeps its near-duplicate index: the run record's `nearDupIndex` (a field plan.ts's
 * QueueRun does not declare yet; runs without it use the default, the bucketed index in Redis).
 */
export function nearDupIndexOf(run: QueueRun): NearDupIndexKind {
  return run.nearDupIndex === undefined ? DEFAULT_NEAR_DUP_INDEX : nearDupIndexOption(run.nearDupIndex);
}

/**
 * Decides a staged chunk against Redis (read only). Returns the decisions and what to insert.
 * With the `replica` index, `nearDups` is the caller's replica of the kept pHashes (synced here); the
 * chunk's kept hashes are added to it, so after a failed or pre-empted apply the caller must reset()
 * it. With the `redis` index (the default) `nearDups` is not used. `phash`: what the pHash bucket
 * lookup cost (`redis` index with near_duplicate on).
 */
export async function decideChunk(
  redis: Redis,
  keys: Keys,
  run: QueueRun,
  staged: StagedChunk,
  nearDups?: NearDupReplica,
): Promise<{ decisions: Decision[]; insertions: Insertion[]; kept: number; phash?: PhashLookupStats }> {
  const bits = run.bucketBits;
  const rows = staged.rows;
  const rules = new Set(run.filter?.rules ?? []);
  const urlRows = run.dedupe.urls ? rows.filter((r) => !r.malformed) : [];
  const okRows = rows.filter((r) => r.status === 'ok' && r.sha256 !== undefined);
  const urlSlots = urlRows.map((r) => urlSlot(r.url, bits));
  const imageSlots = okRows.map((r) => imageSlot(r.sha256!, bits));
  const pairSlots = okRows.map((r) => pairSlot(r.sha256!, r.caption, bits));
  const captionSlots = rules.has('repeated_text') ? okRows.map((r) => captionSlot(r.caption, bits)) : [];
  const nearDup = rules.has('near_duplicate');
  const check = nearDup ? runNearDupCheck(run) : undefined;
  const bucketed =
    nearDup && nearDupIndexOf(run) === 'redis' ? new RedisPhashIndex(keys, { maxDistance: run.filter!.nearDupDistance, ...(check ? { check } : {}) }) : undefined;
  const replica = nearDup && !bucketed ? (nearDups ?? new NearDupReplica(run.filter!.nearDupDistance, check)) : undefined;
  const checkOf = (row: StagedRow): Buffer | undefined => (check && row.nearDupCheck !== undefined ? Buffer.from(row.nearDupCheck, 'base64') : undefined);
  const [urlFound, imageFound, pairFound, captionCounts, stored] = await Promise.all([
    lookupSlots(redis, keys, 'u', urlSlots),
    lookupSlots(redis, keys, 'i', imageSlots),
    lookupSlots(redis, keys, 'p', pairSlots),
    lookupSlots(redis, keys, 'c', captionSlots),
    // Every candidate row's pHash: rows that fail another rule first are looked up for nothing, but
    // which ones do is only known in the walk below, and one batch costs what it costs.
    bucketed?.lookup(
      redis,
      okRows.map((r) => {
        const data = checkOf(r);
        return { phash: r.phash!, ...(r.phashWeak !== undefined ? { weak: r.phashWeak } : {}), ...(data ? { check: data } : {}) };
      }),
    ),
    replica?.sync(redis, keys),
  ]);

  const known = {
    urls: new Set(urlSlots.filter((_, i) => urlFound[i] !== null).map(slotId)),
    images: new Set(imageSlots.filter((_, i) => imageFound[i] !== null).map(slotId)),
    pairs: new Set(pairSlots.filter((_, i) => pairFound[i] !== null).map(slotId)),
  };
  const counts = new Map(captionSlots.map((s, i) => [slotId(s), captionCounts[i] ?? 0]));
  const kept = stored?.index ?? replica?.index;
  let keptCount = 0;
  const globalCtx: FilterContext | undefined = run.filter
    ? {
        options: { ...run.filter, rules: run.filter.rules.filter((r) => GLOBAL_RULES.includes(r)) },
        isEnglish: () => true,
        counts: countsView((c) => counts.get(slotId(captionSlot(c, bits))) ?? 0),
        ...(kept ? { kept } : {}),
        close: async () => {},
      }
    : undefined;

  const decisions: Decision[] = [];
  const insertions: Insertion[] = [];
  for (const row of rows) {
    if (row.malformed) {
      decisions.push(null);
      continue;
    }
    if (run.dedupe.urls) {
      const slot = urlSlot(row.url, bits);
      const id = slotId(slot);
      if (known.urls.has(id)) {
        decisions.push(['duplicate_url', `URL already seen in this run: ${row.url}`]);
        continue;
      }
      known.urls.add(id);
      insertions.push({ kind: 'u', slot, value: row.index });
    }
    if (row.status !== 'ok' || row.sha256 === undefined) {
      // A staged duplicate_url that is not one after all cannot happen: staging only marks URLs
      // claimed before, which this walk has seen too. Other staged rejects stand.
      decisions.push(null);
      continue;
    }
    const image = imageSlot(row.sha256, bits);
    const pair = pairSlot(row.sha256, row.caption, bits);
    if (run.dedupe.images && known.images.has(slotId(image))) {
      decisions.push(['duplicate_image', `image bytes already kept (sha256 ${row.sha256.slice(0, 16)}...)`]);
      continue;
    }
    if (run.dedupe.pairs && known.pairs.has(slotId(pair))) {
      decisions.push(['duplicate_pair', `same image and caption already kept (sha256 ${row.sha256.slice(0, 16)}...)`]);
      continue;
    }
    known.images.add(slotId(image));
    known.pairs.add(slotId(pair));
    insertions.push({ kind: 'i', slot: image, value: row.index }, { kind: 'p', slot: pair, value: row.index });
    if (!globalCtx) {
      decisions.push(null);
      continue;
    }
    const rowCheck = checkOf(row);
    const probe = { caption: row.caption, image: { phash: row.phash!, phashWeak: row.phashWeak, nearDupCheck: rowCheck } } as unknown as Sample;
    const global = failedRules(probe, globalCtx);
    const local = row.localFailed ?? [];
    const failed = FILTER_RULES.filter((r) => local.includes(r) || global.failed.includes(r));
    if (failed.length > 0) {
      const first = failed[0]!;
      decisions.push([first, local.includes(first) ? (row.localMessage ?? '') : global.message, failed]);
      continue;
    }
    decisions.push(null);
    if (kept) {
      kept.add(row.phash!, rowCheck);
      keptCount++;
      if (bucketed) insertions.push(...bucketed.insertion(row.phash!, row.index, rowCheck));
      else insertions.push({ append: keys.nearDups, bytes: replica!.record(row.phash!, rowCheck) });
    }
  }
  return { decisions, insertions, kept: keptCount, ...(stored ? { phash: stored.stats } : {}) };
}

/**
 * The near-duplicate check of a queue run: its filter's `nearDupCheck`. Run records written before
 * the option existed have none, and keep the rule they were planned with (the pHash alone).
 */
export function runNearDupCheck(run: QueueRun): NearDupCheckThresholds | undefined {
  return nearDupCheckThresholds(run.filter?.nearDupCheck ?? 'none');
}

function countsView(count: (caption: string) => number): CaptionCounts {
  return { count, keepAbove: 0, distinct: 0, total: 0, kept: 0, bytes: 0, close: async () => {} };
}

export interface CommitContext {
  readonly redis: Redis;
  readonly keys: Keys;
  readonly run: QueueRun;
  readonly output: string;
  /** The commit lock's token this committer holds. */
  readonly token: string;
  /** This committer's replica of the kept pHashes, kept between commits (near_duplicate with the `replica` index only; ignored otherwise). */
  readonly nearDups?: NearDupReplica;
  readonly onCommit?: (stats: ShardStats) => void;
}

/** Decides (or reuses the decisions of) chunk K, writes shard K and its stats, and moves `next` on. */
export async function commitChunk(ctx: CommitContext, chunk: number): Promise<void> {
  const { redis, keys, run, output } = ctx;
  if ((await redis.get(keys.lock)) !== ctx.token) throw new FilipError('FILIP_ERR_QUEUE', `commit of chunk ${chunk} without holding the commit lock`);
  const paths = stagingPaths(output, chunk);
  const staged = JSON.parse(await fs.readFile(paths.json, 'utf8')) as StagedChunk;
  let stored = await redis.get(keys.decided(chunk));
  if (stored === null) {
    const replica = nearDupIndexOf(run) === 'replica' ? ctx.nearDups : undefined;
    try {
      const { decisions, insertions, kept } = await decideChunk(redis, keys, run, staged, replica);
      const text = JSON.stringify(decisions);
      if ((await applyDecisions(redis, keys, ctx.token, chunk, text, insertions)) === 'applied') {
        stored = text;
        if (replica) replica.offset += 8 * kept; // our own appends, already in the replica
      } else {
        stored = await redis.get(keys.decided(chunk));
        replica?.reset();
      }
    } catch (error) {
      replica?.reset();
      throw error;
    }
  }
  const decisions = JSON.parse(stored!) as Decision[];

  const statsFile = path.join(output, statsName(chunk));
  const committed = await fs.stat(statsFile).then(() => true, () => false);
  if (!committed) {
    // Undo what a committer that died mid-commit left: the tmp shard, an unrecorded shard, reject lines past the last commit.
    const offset = chunk === 0 ? 0 : (JSON.parse(await fs.readFile(path.join(output, statsName(chunk - 1)), 'utf8')) as ShardStats).rejects_offset;
    await fs.rm(path.join(output, `.${shardName(chunk)}.tmp`), { force: true });
    await fs.rm(path.join(output, shardName(chunk)), { force: true });
    const rejects = path.join(output, REJECT_LOG);
    const size = await fs.stat(rejects).then((s) => s.size, () => -1);
    if (size > offset) await fs.truncate(rejects, offset);
    const sink = new ShardSink(
      {
        dir: output,
        shardSize: Number.MAX_SAFE_INTEGER,
        engine: run.writer,
        keepCols: run.manifest.keepCols,
        kind: staged.kind ?? 'ingest',
        ...(ctx.onCommit ? { onCommit: ctx.onCommit } : {}),
      },
      { commits: [], nextShard: chunk, nextIndex: staged.start, rejectsOffset: offset },
    );
    await drainInto(sink, finalSamples(staged, decisions, paths.parquet), () => {});
  }
  await advance(redis, keys, ctx.token, chunk);
  await fs.rm(paths.json, { force: true });
  await fs.rm(paths.parquet, { force: true });
}

/**
 * The end of a queue run, once every chunk is committed: `_summary.json` as a local ingest writes it
 * last (what the whole output holds), so the later stages take the folder as finished. Written by the
 * committer that commits the last chunk, or by the producer when it finds the run done.
 */
export async function writeQueueSummary(output: string, queueName: string, run: QueueRun): Promise<void> {
  const commits = await readCommits(output);
  const summary = { output, kind: 'queue', queue: queueName, rows: run.total, chunks: run.chunks, total: totals(commits) };
  const file = path.join(output, SUMMARY_FILE);
  try {
    await writeSummary(output, summary);
  } catch (error) {
    // The producer and a worker can both find the run done: the loser's rename finds the shared
    // temporary file gone, and the winner's summary, which says the same, in place.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || !(await fs.stat(file).then(() => true, () => false))) throw error;
  }
}

/** The chunk's rows in input order with their final outcome; kept rows with their image from the staging shard. */
async function* finalSamples(staged: StagedChunk, decisions: readonly Decision[], parquet: string): AsyncGenerator<Sample> {
  const images = readShardSamples([parquet])[Symbol.asyncIterator]();
  for (let i = 0; i < staged.rows.length; i++) {
    const row = staged.rows[i]!;
    let candidate: Sample | undefined;
    if (row.status === 'ok') {
      const next = await images.next();
      if (next.done || next.value.key !== row.key) throw new Error(`staging shard of chunk ${staged.chunk} does not match its row list at ${row.key}`);
      candidate = next.value;
    }
    const d = decisions[i];
    if (candidate && (d === null || d === undefined)) {
      yield { ...candidate, index: row.index, source: row.source, extra: row.extra };
      continue;
    }
    yield {
      key: row.key,
      index: row.index,
      url: row.url,
      caption: row.caption,
      source: row.source,
      extra: row.extra,
      status: 'rejected',
      reason: d ? d[0] : (row.reason ?? 'malformed_row'),
      errorMessage: d ? d[1] : (row.errorMessage ?? ''),
      ...(d?.[2] ? { failedRules: d[2] } : {}),
      ...(row.httpStatus !== undefined ? { httpStatus: row.httpStatus } : {}),
    };
  }
}
