// `filip-data ingest`: manifests -> fetch -> decode/resize -> exact dedupe -> Parquet shards.
// Each step is an async generator over Samples; this module only wires them and owns the run's
// options, its resume and its summary. See ARCHITECTURE.md for the data contract.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import { boolOption, choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import { REASON_CODES, TRANSIENT_REASONS, type ReasonCode } from '../core/reasons.js';
import { reject, type Sample } from '../core/sample.js';
import { Fetcher, resolveFetchOptions, type FetchOptions } from '../fetch/fetcher.js';
import { processImage, resolveImageOptions, type ImageOptions } from '../image/process.js';
import {
  countManifestRows,
  listManifestFiles,
  readManifests,
  resolveManifestOptions,
  type ManifestOptions,
} from '../manifest/read.js';
import { iterateShard } from '../shard/reader.js';
import { isFinished } from './shard-source.js';
import { WRITER_ENGINES, type WriterEngine } from '../shard/writer.js';
import { filterSamples, prepareFilter, resolveFilterOptions, type FilterContext, type FilterInput, type FilterOptions } from '../filters/filter.js';
import { Funnel, formatFunnel, writeFunnelReport, type FunnelJson } from '../filters/funnel.js';
import { DedupeIndex, dedupeContent, dedupeUrls } from './dedupe.js';
import { restoreKeptIndex, seedFunnel } from './filter-run.js';
import {
  drainInto,
  FUNNEL_IMAGES,
  openOutput,
  readRejects,
  recoverOutput,
  ShardSink,
  SUMMARY_FILE,
  writeSummary,
  type CommitKind,
  type OutputState,
  type ShardStats,
} from './output.js';
import { orderedMap } from './pool.js';
import { PROGRESS_MODES, Progress, type ProgressMode } from './progress.js';
import { checkPartition, DEFAULT_ROWS_PER_JOB, readPartition, rowsInPartition, writeCursorIndex } from '../scale/partition.js';
import { makeDir } from '../core/make-dir.js';

export interface IngestOptions {
  /** Manifest files or folders. */
  readonly inputs: readonly string[];
  /** Output folder. @default 'shards' */
  readonly output: string;
  readonly manifest: Omit<ManifestOptions, 'inputs'>;
  readonly fetch: FetchOptions;
  readonly image: ImageOptions;
  /** Kept samples per shard. @default 10000 */
  readonly shardSize: number;
  /** Parquet writer engine. @default 'lean' */
  readonly writer: WriterEngine;
  /** Which exact duplicates to drop. @default all true */
  readonly dedupe: { readonly urls: boolean; readonly images: boolean; readonly pairs: boolean };
  /** Re-attempt only rows rejected for transient reasons (timeouts, network errors, 5xx, 429). @default false */
  readonly retryFailed: boolean;
  /** Delete a previous run's output in the folder instead of resuming it. @default false */
  readonly overwrite: boolean;
  /** @default 'auto' */
  readonly progress: ProgressMode;
  /** Where progress and log lines go. @default process.stderr */
  readonly logStream: NodeJS.WritableStream;
  /** Run the filter stage in the same stream (`ingest --filter`); undefined: no filtering. */
  readonly filter: FilterOptions | undefined;
  /**
   * Process one slice of the manifests (`--partitions N --partition I`): the rows of every N-th block
   * of `rowsPerJob` rows, from block I. `filip-data merge` applies the corpus-wide rules afterwards.
   * @default 1
   */
  readonly partitions: number;
  /** @default 0 */
  readonly partition: number;
  /** Rows per partition block. @default 1000 */
  readonly rowsPerJob: number;
  /**
   * With partitions: a file of where every block starts (src/scale/partition.ts writeCursorIndex),
   * written by the first partition that finds it missing (temporary name, then rename) and read by the
   * others, so each partition reads only its own blocks. null: each partition finds its blocks with a
   * parse-only scan of the manifests. @default null
   */
  readonly partitionIndex: string | null;
}

export type IngestInput = Partial<
  Omit<IngestOptions, 'manifest' | 'fetch' | 'image' | 'dedupe' | 'filter'> & {
    filter: FilterInput;
    manifest: Partial<Omit<ManifestOptions, 'inputs'>>;
    fetch: Partial<FetchOptions>;
    image: Partial<ImageOptions>;
    dedupe: Partial<IngestOptions['dedupe']>;
  }
> & { inputs: readonly string[] };

const DEFAULTS = {
  output: 'shards',
  shardSize: 10_000,
  writer: 'lean' as WriterEngine,
  retryFailed: false,
  overwrite: false,
  progress: 'auto' as ProgressMode,
  partitions: 1,
  partition: 0,
  rowsPerJob: DEFAULT_ROWS_PER_JOB,
  partitionIndex: null as string | null,
};

export function resolveIngestOptions(input: IngestInput): IngestOptions {
  rejectUnknownKeys('ingest', input, {
    ...DEFAULTS,
    inputs: 0,
    manifest: 0,
    fetch: 0,
    image: 0,
    dedupe: 0,
    logStream: 0,
    filter: 0,
  });
  if (!Array.isArray(input.inputs) || input.inputs.length === 0) {
    throw new FilipError('FILIP_ERR_INVALID_OPTION', 'Expected `inputs` to be a non-empty list of manifest paths', {
      field: 'inputs',
    });
  }
  const o = { ...DEFAULTS, ...input };
  const { inputs: _ignored, ...manifest } = resolveManifestOptions({ ...input.manifest, inputs: [...input.inputs] });
  const dedupe = { urls: true, images: true, pairs: true, ...input.dedupe };
  const { partitions, partition } = checkPartition(o.partitions, o.partition);
  if (partitions > 1 && input.filter !== undefined) {
    throw invalid('filter', 'off with --partitions (the corpus-wide rules need every partition: use `filip-data merge --filter`)', true);
  }
  return {
    inputs: [...input.inputs],
    output: stringOption('output', o.output),
    manifest,
    fetch: resolveFetchOptions(input.fetch),
    image: resolveImageOptions(input.image),
    shardSize: intOption('shardSize', o.shardSize, 1),
    writer: choiceOption('writer', o.writer, Object.keys(WRITER_ENGINES) as WriterEngine[]),
    dedupe: {
      urls: boolOption('dedupe.urls', dedupe.urls),
      images: boolOption('dedupe.images', dedupe.images),
      pairs: boolOption('dedupe.pairs', dedupe.pairs),
    },
    retryFailed: boolOption('retryFailed', o.retryFailed),
    overwrite: boolOption('overwrite', o.overwrite),
    progress: choiceOption('progress', o.progress, Object.keys(PROGRESS_MODES) as ProgressMode[]),
    logStream: input.logStream ?? process.stderr,
    filter: input.filter === undefined ? undefined : resolveFilterOptions(input.filter),
    partitions,
    partition,
    rowsPerJob: intOption('rowsPerJob', o.rowsPerJob, 1, 10_000_000),
    partitionIndex: o.partitionIndex === null ? null : stringOption('partitionIndex', o.partitionIndex),
  };
}

export interface RunSummary {
  readonly output: string;
  readonly kind: CommitKind;
  /** Rows this invocation processed (a resumed run counts only what it did itself). */
  readonly rows: number;
  readonly ok: number;
  readonly rejected: number;
  readonly byReason: Partial<Record<ReasonCode, number>>;
  /** Shard files committed by this invocation. */
  readonly shards: string[];
  readonly seconds: number;
  /**
   * Totals over everything committed in the output folder, this and earlier invocations, each row
   * counted once under its latest outcome (a row kept or rejected again by --retry-failed replaces
   * its earlier reject).
   */
  readonly total: OutputTotals;
  /** Rows skipped because an earlier invocation had committed them. */
  readonly resumedFrom: number;
  readonly dedupeIndexBytes: number;
  /** With --filter: the funnel over the samples that reached the filter. */
  readonly funnel?: FunnelJson;
}

/** The options that must match for a resume to be the same run. */
function runIdentity(o: IngestOptions, files: string[]) {
  return {
    files: files.map((f) => path.resolve(f)),
    manifest: o.manifest,
    image: o.image,
    shardSize: o.shardSize,
    dedupe: o.dedupe,
    filter: o.filter ?? null,
    // Only partitioned runs record it, so outputs of earlier versions still resume.
    ...(o.partitions > 1 ? { partition: { partitions: o.partitions, partition: o.partition, rowsPerJob: o.rowsPerJob } } : {}),
  };
}

async function prepareOutput(o: IngestOptions, files: string[]): Promise<OutputState> {
  return openOutput(o.output, 'filip-data ingest', runIdentity(o, files), o.overwrite, files);
}

/** Rebuilds the exact-dedupe index from what is committed, so a resumed run decides as an uninterrupted one. */
async function rebuildIndex(dir: string, state: OutputState, index: DedupeIndex, collectKeys: boolean): Promise<Set<string>> {
  const keptKeys = new Set<string>();
  for (const c of state.commits) {
    if (c.file === null) continue;
    for await (const row of iterateShard(path.join(dir, c.file), { columns: ['key', 'url', 'sha256', 'caption'] })) {
      index.addUrl(String(row.url));
      index.addKept(String(row.sha256), String(row.caption));
      if (collectKeys) keptKeys.add(String(row.key));
    }
  }
  for await (const r of readRejects(dir)) if (r.reason !== 'malformed_row') index.addUrl(r.url);
  return keptKeys;
}

/** Rows whose latest reject is transient and that no committed shard holds. */
async function* transientRejects(dir: string, keptKeys: Set<string>): AsyncGenerator<Sample> {
  const latest = new Map<string, Sample>();
  for await (const r of readRejects(dir)) {
    if (keptKeys.has(r.key)) continue;
    if (!TRANSIENT_REASONS.has(r.reason)) {
      latest.delete(r.key);
      continue;
    }
    const sep = r.source.lastIndexOf(':');
    latest.delete(r.key); // keep file order = order of the latest attempt
    latest.set(r.key, {
      key: r.key,
      index: r.index,
      url: r.url,
      caption: r.caption,
      source: { file: r.source.slice(0, sep), row: Number(r.source.slice(sep + 1)) },
      extra: r.extra,
      status: 'pending',
      retriedReason: r.reason,
    });
  }
  yield* latest.values();
}

/** First pass of repeated_text inside ingest: the caption of every well-formed manifest row. */
async function* manifestCaptions(manifest: ManifestOptions): AsyncGenerator<string> {
  for await (const s of readManifests(manifest)) if (s.status === 'pending') yield s.caption;
}

/**
 * --retry-failed runs on a folder whose first pass is done: on one stopped midway it would write the
 * summary that marks the folder finished, and the later stages would take part of the input for all
 * of it. Done means no manifest row of this run (or partition) lies past the last commit; when the
 * manifests cannot be counted cheaply, that the folder had its summary.
 */
async function assertMainRunDone(o: IngestOptions, files: string[], nextIndex: number, finishedBefore: boolean): Promise<void> {
  const rows = await countManifestRows(files, resolveManifestOptions({ ...o.manifest, inputs: files }));
  const mine = (n: number) => (o.partitions <= 1 ? n : rowsInPartition(n, o.rowsPerJob, o.partitions, o.partition));
  const left = rows === undefined ? (finishedBefore ? 0 : undefined) : mine(rows) - mine(nextIndex);
  if (left === 0) return;
  const where = rows === undefined ? `has no ${SUMMARY_FILE} and stopped at input row ${nextIndex}` : `stopped at input row ${nextIndex} of ${rows}`;
  throw new FilipError(
    'FILIP_ERR_INPUT_UNFINISHED',
    `the run in this folder ${where}: finish it first (the same command without --retry-failed resumes it), then retry`,
    { file: o.output },
  );
}

/** Fetch and decode one pending sample (in place); anything else passes through. Also used by queue workers. */
export async function download(sample: Sample, fetcher: Fetcher, image: ImageOptions): Promise<Sample> {
  if (sample.status !== 'pending') return sample;
  const got = await fetcher.fetch(sample.url);
  if (got.status !== undefined) sample.httpStatus = got.status;
  if (!got.ok) return reject(sample, got.reason, got.message);
  const decoded = await processImage(got.bytes, image);
  if (!decoded.ok) return reject(sample, decoded.reason, decoded.message);
  sample.image = decoded.image;
  sample.status = 'ok';
  return sample;
}

export async function runIngest(input: IngestInput): Promise<RunSummary> {
  const o = resolveIngestOptions(input);
  const started = performance.now();
  const files = await listManifestFiles(o.inputs);
  const finishedBefore = await isFinished(o.output);
  const state = await prepareOutput(o, files);
  const index = new DedupeIndex();
  const kind: CommitKind = o.retryFailed ? 'retry' : 'ingest';
  // Kept keys are only needed to pick retry candidates; an ingest resume needs just the index.
  const keptKeys =
    state.commits.length > 0 ? await rebuildIndex(o.output, state, index, kind === 'retry') : new Set<string>();

  let source: AsyncIterable<Sample>;
  let total: number | undefined;
  if (kind === 'retry') {
    await assertMainRunDone(o, files, state.nextIndex, finishedBefore);
    source = transientRejects(o.output, keptKeys);
  } else {
    const manifestOptions = resolveManifestOptions({ ...o.manifest, inputs: files });
    const rows = await countManifestRows(files, manifestOptions);
    if (rows !== undefined) total = Math.max(rows - state.nextIndex, 0);
    if (o.partitions <= 1) {
      source = readManifests(manifestOptions, state.nextIndex);
    } else {
      const spec = { rowsPerJob: o.rowsPerJob, partitions: o.partitions, partition: o.partition };
      if (o.partitionIndex !== null && !(await fs.stat(o.partitionIndex).then(() => true, () => false))) {
        await writeCursorIndex(manifestOptions, o.rowsPerJob, o.partitionIndex);
      }
      source = readPartition(manifestOptions, spec, state.nextIndex, o.partitionIndex ?? undefined);
      if (rows !== undefined) {
        const mine = (n: number) => rowsInPartition(n, o.rowsPerJob, o.partitions, o.partition);
        total = mine(rows) - mine(state.nextIndex);
      }
    }
    if (o.dedupe.urls) source = dedupeUrls(source, index);
  }

  const progress = new Progress({ mode: o.progress, total, stream: o.logStream, label: kind });
  if (state.nextIndex > 0 && kind === 'ingest') {
    progress.log(`resuming ${o.output}: ${state.commits.length} commits, continuing at input row ${state.nextIndex}`);
  }
  const byReason: Partial<Record<ReasonCode, number>> = {};
  const shards: string[] = [];
  const sink = new ShardSink(
    {
      dir: o.output,
      shardSize: o.shardSize,
      engine: o.writer,
      keepCols: o.manifest.keepCols,
      kind,
      onCommit: (s: ShardStats) => {
        if (s.file) shards.push(s.file);
        if (o.progress === 'log') progress.log(`committed ${s.file ?? `window ${s.shard}`}: ${s.ok} ok, ${s.rejected} rejected`);
      },
    },
    state,
  );
  const fetcher = new Fetcher(o.fetch);
  const concurrency = o.fetch.concurrency;
  let filter: { ctx: FilterContext; funnel: Funnel } | undefined;
  const workDir = path.join(o.output, '.work');
  try {
    if (o.filter) {
      await makeDir(workDir, 'output');
      const all = resolveManifestOptions({ ...o.manifest, inputs: files });
      const ctx = await prepareFilter(o.filter, () => manifestCaptions(all), workDir);
      filter = { ctx, funnel: new Funnel(o.filter.rules, { imageLog: path.join(o.output, FUNNEL_IMAGES) }) };
      await restoreKeptIndex(o.output, state, ctx);
      await seedFunnel(o.output, state, filter.funnel);
    }
    const downloaded = orderedMap(source, (s) => download(s, fetcher, o.image), {
      concurrency,
      window: Math.max(concurrency * 8, 256),
    });
    const deduped = dedupeContent(downloaded, index, { images: o.dedupe.images, pairs: o.dedupe.pairs });
    const filtered = filter ? filterSamples(deduped, filter.ctx, filter.funnel) : deduped;
    await drainInto(sink, filtered, (sample) => {
      progress.tick(sample);
      if (sample.status === 'rejected' && sample.reason) byReason[sample.reason] = (byReason[sample.reason] ?? 0) + 1;
    });
  } finally {
    progress.stop();
    await fetcher.close();
    await filter?.ctx.close();
    await fs.rm(workDir, { recursive: true, force: true });
  }
  if (filter) {
    await writeFunnelReport(o.output, filter.funnel, `filip-data ingest --filter ${o.filter!.preset}`);
    await fs.rm(path.join(o.output, FUNNEL_IMAGES), { force: true });
  }

  const after = await recoverOutput(o.output);
  const summary: RunSummary = {
    output: o.output,
    kind,
    rows: progress.rows,
    ok: progress.ok,
    rejected: progress.rows - progress.ok,
    byReason,
    shards,
    seconds: (performance.now() - started) / 1000,
    total: totals(after.commits),
    resumedFrom: kind === 'ingest' ? state.nextIndex : 0,
    dedupeIndexBytes: index.bytes,
    ...(filter ? { funnel: filter.funnel.toJSON() } : {}),
  };
  await writeSummary(o.output, summary);
  return summary;
}

export interface OutputTotals {
  readonly ok: number;
  readonly rejected: number;
  readonly shards: number;
  readonly byReason: Partial<Record<ReasonCode, number>>;
}

/** What the output holds, from its commits' stats: every row once, under its latest outcome. */
export function totals(commits: readonly ShardStats[]): OutputTotals {
  let ok = 0;
  let rejected = 0;
  let shards = 0;
  const byReason: Partial<Record<ReasonCode, number>> = {};
  const add = (counts: Partial<Record<ReasonCode, number>> | undefined, sign: number): void => {
    for (const [reason, n] of Object.entries(counts ?? {}) as [ReasonCode, number][]) {
      const left = (byReason[reason] ?? 0) + sign * n;
      if (left === 0) delete byReason[reason];
      else byReason[reason] = left;
      rejected += sign * n;
    }
  };
  for (const c of commits) {
    ok += c.ok;
    add(c.by_reason, 1);
    add(c.replaced_by_reason, -1);
    if (c.file) shards++;
  }
  return { ok, rejected, shards, byReason };
}

/** The end-of-run table: counts per reason, in the order reasons are declared. */
export function formatSummary(s: RunSummary): string {
  const lines: string[] = [];
  const rate = s.seconds > 0 ? s.rows / s.seconds : 0;
  lines.push(`${s.kind} finished in ${s.seconds.toFixed(1)} s (${rate.toFixed(1)} rows/s) -> ${s.output}`);
  if (s.resumedFrom > 0) lines.push(`resumed at input row ${s.resumedFrom}`);
  const rows: [string, number][] = [['ok', s.ok]];
  for (const r of REASON_CODES) if (s.byReason[r]) rows.push([r, s.byReason[r]!]);
  rows.push(['total', s.rows]);
  const width = Math.max(...rows.map(([k]) => k.length));
  const numWidth = Math.max(...rows.map(([, v]) => String(v).length));
  for (const [k, v] of rows) {
    const pct = s.rows > 0 ? ((100 * v) / s.rows).toFixed(1).padStart(5) : '  0.0';
    lines.push(`  ${k.padEnd(width)}  ${String(v).padStart(numWidth)}  ${pct}%`);
  }
  if (s.funnel) lines.push('filter funnel (samples that reached the filter):', formatFunnel(s.funnel));
  lines.push(`shards written: ${s.shards.length} (output holds ${s.total.shards} shards, ${s.total.ok} samples, ${s.total.rejected} rejected rows)`);
  if (s.total.ok !== s.ok || s.total.rejected !== s.rejected) {
    // Resumed or retried: what the whole output holds, each row once under its latest outcome.
    const held = s.total.ok + s.total.rejected;
    const parts = [`ok ${s.total.ok}`];
    for (const r of REASON_CODES) if (s.total.byReason[r]) parts.push(`${r} ${s.total.byReason[r]}`);
    lines.push(`whole output (${held} rows): ${parts.join(', ')}`);
  }
  return lines.join('\n');
}
