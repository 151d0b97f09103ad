// `filip-data merge DIR...`: the outputs of `ingest --partitions N --partition I` (I = 0..N-1) in,
// one output out, with the corpus-wide rules applied as a single-machine run applies them.
//
// Every partition already dropped its own duplicates. That is safe: a row a partition rejected as a
// duplicate of an earlier row of its own is a duplicate of an earlier row of the whole input too. So
// merge only has to replay, in input order (keys sort as the manifest rows do): every well-formed
// row claims its URL (a later row with the same URL becomes duplicate_url, whatever its partition
// decided), kept rows go through the exact image/pair dedupe, then, with a filter, through the
// filter stage, whose repeated_text counts cover every well-formed row of every partition. The kept
// keys equal a single-machine `ingest` (or `ingest --filter`) of the same manifests (tested).
//
// The output is written with ingest's commit protocol (shard under a temporary name, renamed, stats
// last), so a killed merge resumes: run it again and it replays the merged stream, deciding every row
// again but writing only the rows after the last commit (tested with SIGKILL).

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import { boolOption, choiceOption, intOption, rejectUnknownKeys, stringOption } from '../core/options.js';
import { reject, type Sample } from '../core/sample.js';
import { filterSamples, prepareFilter, resolveFilterOptions, type FilterContext, type FilterInput, type FilterOptions } from '../filters/filter.js';
import { Funnel, formatFunnel, writeFunnelReport, type FunnelJson } from '../filters/funnel.js';
import { DedupeIndex, dedupeContent } from '../pipeline/dedupe.js';
import { drainInto, openOutput, readCommits, readRejects, RUN_FILE, ShardSink, writeSummary, type RejectRecord } from '../pipeline/output.js';
import { PROGRESS_MODES, Progress, type ProgressMode } from '../pipeline/progress.js';
import { committedShards, readShardSamples } from '../pipeline/shard-source.js';
import { iterateShard } from '../shard/reader.js';
import { WRITER_ENGINES, type WriterEngine } from '../shard/writer.js';
import { makeDir } from '../core/make-dir.js';

export interface MergeOptions {
  /** The partitions' output folders, all N of them. */
  readonly inputs: readonly string[];
  /** @default 'shards/merged' */
  readonly output: string;
  /** Run the filter stage over the merged stream; undefined: dedupe only. */
  readonly filter: FilterOptions | undefined;
  /** Which exact duplicates to drop. @default all true (as ingest) */
  readonly dedupe: { readonly urls: boolean; readonly images: boolean; readonly pairs: boolean };
  /** @default 10000 */
  readonly shardSize: number;
  /** @default 'lean' */
  readonly writer: WriterEngine;
  /** Replace an earlier merge in the output folder instead of resuming it. @default false */
  readonly overwrite: boolean;
  /** @default 'auto' */
  readonly progress: ProgressMode;
  /** @default process.stderr */
  readonly logStream: NodeJS.WritableStream;
}

export type MergeInput = Partial<Omit<MergeOptions, 'filter' | 'dedupe'>> & {
  inputs: readonly string[];
  filter?: FilterInput;
  dedupe?: Partial<MergeOptions['dedupe']>;
};

const DEFAULTS = { output: 'shards/merged', shardSize: 10_000, writer: 'lean' as WriterEngine, overwrite: false, progress: 'auto' as ProgressMode };

export function resolveMergeOptions(input: MergeInput): MergeOptions {
  rejectUnknownKeys('merge', input, { ...DEFAULTS, inputs: 0, filter: 0, dedupe: 0, logStream: 0 });
  if (!Array.isArray(input.inputs) || input.inputs.length === 0) {
    throw new FilipError('FILIP_ERR_INVALID_OPTION', 'Expected `inputs` to be the partition output folders', { field: 'inputs' });
  }
  const o = { ...DEFAULTS, ...input };
  const dedupe = { urls: true, images: true, pairs: true, ...input.dedupe };
  return {
    inputs: input.inputs.map((p, i) => stringOption(`inputs[${i}]`, p)),
    output: stringOption('output', o.output),
    filter: input.filter === undefined ? undefined : resolveFilterOptions(input.filter),
    dedupe: { urls: boolOption('dedupe.urls', dedupe.urls), images: boolOption('dedupe.images', dedupe.images), pairs: boolOption('dedupe.pairs', dedupe.pairs) },
    shardSize: intOption('shardSize', o.shardSize, 1),
    writer: choiceOption('writer', o.writer, Object.keys(WRITER_ENGINES) as WriterEngine[]),
    overwrite: boolOption('overwrite', o.overwrite),
    progress: choiceOption('progress', o.progress, Object.keys(PROGRESS_MODES) as ProgressMode[]),
    logStream: input.logStream ?? process.stderr,
  };
}

export interface MergeSummary {
  readonly output: string;
  readonly partitions: number;
  /** Rows of the merged stream that an earlier, interrupted merge had committed. */
  readonly resumedFrom: number;
  /** Rows this invocation wrote. */
  readonly rows: number;
  readonly ok: number;
  readonly rejected: number;
  readonly shards: string[];
  readonly seconds: number;
  readonly funnel?: FunnelJson;
}

interface PartitionRun {
  readonly dir: string;
  readonly identity: Record<string, unknown>;
  readonly partition: { partitions: number; partition: number; rowsPerJob: number } | undefined;
}

/** Checks the inputs are the N partitions of one run: same files and options, each index once. */
async function checkPartitions(dirs: readonly string[]): Promise<PartitionRun[]> {
  const runs: PartitionRun[] = [];
  for (const dir of dirs) {
    const file = path.join(dir, RUN_FILE);
    const text = await fs.readFile(file, 'utf8').catch(() => null);
    if (text === null) throw new FilipError('FILIP_ERR_NO_INPUT', 'not a filip-data ingest output (no _run.json)', { file: dir });
    const run = JSON.parse(text) as { tool: string; identity: Record<string, unknown> };
    if (run.tool !== 'filip-data ingest') throw new FilipError('FILIP_ERR_INVALID_OPTION', `merge takes ingest outputs, this is a "${run.tool}" output`, { file });
    // A partition still running or killed: merging it would drop its missing rows for good.
    await committedShards(dir);
    const commits = await readCommits(dir);
    if (commits.some((c) => c.kind !== 'ingest')) {
      throw new FilipError('FILIP_ERR_INVALID_OPTION', 'merge takes plain ingest outputs (no --retry-failed or filter commits)', { file: dir });
    }
    runs.push({ dir, identity: run.identity, partition: run.identity.partition as PartitionRun['partition'] });
  }
  const first = runs[0]!;
  const n = first.partition?.partitions ?? 1;
  const seen = new Set<number>();
  for (const r of runs) {
    const { partition: _p, ...a } = r.identity;
    const { partition: _q, ...b } = first.identity;
    if (JSON.stringify(a) !== JSON.stringify(b)) {
      throw new FilipError('FILIP_ERR_INVALID_OPTION', `partition outputs of different runs (inputs or options differ from ${first.dir})`, { file: r.dir });
    }
    const p = r.partition ?? { partitions: 1, partition: 0, rowsPerJob: 0 };
    if (p.partitions !== n || seen.has(p.partition)) {
      throw new FilipError('FILIP_ERR_INVALID_OPTION', `partition ${p.partition} of ${p.partitions} given twice or mixed with a run of ${n} partitions`, { file: r.dir });
    }
    seen.add(p.partition);
  }
  if (seen.size !== n) {
    const missing = [...Array(n).keys()].filter((i) => !seen.has(i));
    throw new FilipError('FILIP_ERR_INVALID_OPTION', `merge needs all ${n} partitions; missing: ${missing.join(', ')}`, { field: 'inputs' });
  }
  return runs;
}

/** Input order of a key (file index, then row), comparable as a number up to 10^15 rows. */
function keyOrder(key: string): number {
  return Number(key.slice(0, 4)) * 1e12 + Number(key.slice(4));
}

function rejectToSample(r: RejectRecord): Sample {
  const sep = r.source.lastIndexOf(':');
  return {
    key: r.key,
    index: r.index,
    url: r.url,
    caption: r.caption,
    source: { file: r.source.slice(0, sep), row: Number(r.source.slice(sep + 1)) },
    extra: r.extra,
    status: 'rejected',
    reason: r.reason,
    errorMessage: r.error_message,
    ...(r.http_status !== null ? { httpStatus: r.http_status } : {}),
  };
}
/** Every row of every partition, kept (with image) and rejected, in input order. */
async function* mergedRows(dirs: readonly string[]): AsyncGenerator<Sample> {
  const streams: AsyncIterator<Sample>[] = [];
  for (const dir of dirs) {
    streams.push(readShardSamples(await committedShards(dir))[Symbol.asyncIterator]());
    streams.push(
      (async function* () {
        for await (const r of readRejects(dir)) yield rejectToSample(r);
      })()[Symbol.asyncIterator](),
    );
  }
  const heads: (Sample | undefined)[] = await Promise.all(streams.map(async (s) => (await s.next()).value as Sample | undefined));
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      if (heads[i] && (best < 0 || keyOrder(heads[i]!.key) < keyOrder(heads[best]!.key))) best = i;
    }
    if (best < 0) return;
    yield heads[best]!;
    const next = await streams[best]!.next();
    heads[best] = next.done ? undefined : next.value;
  }
}

/** Stage: every well-formed row claims its URL in input order; a later claimant becomes duplicate_url. */
async function* replayUrls(source: AsyncIterable<Sample>, index: DedupeIndex, on: boolean): AsyncGenerator<Sample> {
  let position = 0;
  for await (const row of source) {
    // Positions in the merged stream: the commit ranges of the merge output count over it.
    const s: Sample = { ...row, index: position++ };
    if (on && s.reason !== 'malformed_row' && !index.addUrl(s.url)) {
      delete s.image;
      delete s.httpStatus;
      reject(s, 'duplicate_url', `URL already seen in this run: ${s.url}`);
    }
    yield s;
  }
}

/**
 * Drops the rows an interrupted merge already committed (positions before `resumeAt`). They still go
 * through every stage before this one: the dedupe index, the filter's near-duplicate index and the
 * funnel are rebuilt by deciding them again, in the same order, so the rows after them are decided
 * exactly as in an uninterrupted merge. Costs a read of the committed part, no writing.
 */
async function* after(source: AsyncIterable<Sample>, resumeAt: number): AsyncGenerator<Sample> {
  for await (const s of source) if (s.index >= resumeAt) yield s;
}

/** Captions of every well-formed row of every partition (first pass of repeated_text). */
async function* allCaptions(dirs: readonly string[]): AsyncGenerator<string> {
  for (const dir of dirs) {
    for (const file of await committedShards(dir)) for await (const r of iterateShard(file, { columns: ['caption'] })) yield String(r.caption);
    for await (const r of readRejects(dir)) if (r.reason !== 'malformed_row') yield r.caption;
  }
}

export async function runMerge(input: MergeInput): Promise<MergeSummary> {
  const o = resolveMergeOptions(input);
  const started = performance.now();
  const runs = await checkPartitions(o.inputs);
  const dirs = runs.map((r) => r.dir);
  const identity = { inputs: dirs.map((d) => path.resolve(d)), filter: o.filter ?? null, dedupe: o.dedupe, shardSize: o.shardSize };
  // A merge killed midway resumes: its committed shards stay, and it goes on after the last of them.
  const state = await openOutput(o.output, 'filip-data merge', identity, o.overwrite, dirs);
  const resumeAt = state.nextIndex;
  const index = new DedupeIndex();
  const shards: string[] = [];
  const progress = new Progress({ mode: o.progress, stream: o.logStream, label: 'merge' });
  if (resumeAt > 0) progress.log(`resuming ${o.output}: ${state.commits.length} commits, replaying the decisions of the first ${resumeAt} rows`);
  const sink = new ShardSink(
    { dir: o.output, shardSize: o.shardSize, engine: o.writer, keepCols: await keepColsOf(dirs), kind: 'ingest', onCommit: (s) => s.file && shards.push(s.file) },
    state,
  );
  const workDir = path.join(o.output, '.work');
  let filter: { ctx: FilterContext; funnel: Funnel } | undefined;
  try {
    if (o.filter) {
      await makeDir(workDir, 'output');
      filter = { ctx: await prepareFilter(o.filter, () => allCaptions(dirs), workDir), funnel: new Funnel(o.filter.rules) };
    }
    const urls = replayUrls(mergedRows(dirs), index, o.dedupe.urls);
    const deduped = dedupeContent(urls, index, { images: o.dedupe.images, pairs: o.dedupe.pairs });
    const filtered = filter ? filterSamples(deduped, filter.ctx, filter.funnel) : deduped;
    await drainInto(sink, after(filtered, resumeAt), (s) => progress.tick(s));
  } finally {
    progress.stop();
    await filter?.ctx.close();
    await fs.rm(workDir, { recursive: true, force: true });
  }
  if (filter) await writeFunnelReport(o.output, filter.funnel, `filip-data merge --filter ${o.filter!.preset}`);
  const summary: MergeSummary = {
    output: o.output,
    partitions: dirs.length,
    resumedFrom: resumeAt,
    rows: progress.rows,
    ok: progress.ok,
    rejected: progress.rows - progress.ok,
    shards,
    seconds: (performance.now() - started) / 1000,
    ...(filter ? { funnel: filter.funnel.toJSON() } : {}),
  };
  await writeSummary(o.output, summary);
  return summary;
}

async function keepColsOf(dirs: readonly string[]): Promise<string[]> {
  for (const dir of dirs) {
    const run = JSON.parse(await fs.readFile(path.join(dir, RUN_FILE), 'utf8')) as { identity: { manifest?: { keepCols?: string[] } } };
    if (run.identity.manifest?.keepCols) return run.identity.manifest.keepCols;
  }
  return [];
}

export function formatMergeSummary(s: MergeSummary): string {
  const lines = [
    `merge of ${s.partitions} partitions finished in ${s.seconds.toFixed(1)} s: ${s.rows} rows, ${s.ok} kept, ${s.rejected} rejected -> ${s.output}`,
  ];
  if (s.resumedFrom > 0) lines.push(`resumed after the first ${s.resumedFrom} merged rows, committed by an earlier merge`);
  if (s.funnel) lines.push('filter funnel (samples that reached the filter):', formatFunnel(s.funnel));
  lines.push(`shards written: ${s.shards.length}`);
  return lines.join('\n');
}
