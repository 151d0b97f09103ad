// `filip-data filter`: an ingest output folder in, a filtered output folder out (same shard schema),
// with the funnel report. The same filter stage also runs inside ingest (`ingest --filter`); both
// count captions over the same rows and see samples in the same order, so they keep the same keys.

import path from 'node:path';
import { promises as fs } from 'node:fs';
import { boolOption, choiceOption, intOption, rejectUnknownKeys, stringOption } from '../core/options.js';
import type { ReasonCode } from '../core/reasons.js';
import type { Sample } from '../core/sample.js';
import { filterSamples, prepareFilter, resolveFilterOptions, type FilterContext, type FilterInput, type FilterOptions } from '../filters/filter.js';
import { Funnel, formatFunnel, writeFunnelReport } from '../filters/funnel.js';
import { iterateShard } from '../shard/reader.js';
import { WRITER_ENGINES, type WriterEngine } from '../shard/writer.js';
import { drainInto, FUNNEL_IMAGES, openOutput, readRejects, ShardSink, writeSummary, type OutputState } from './output.js';
import { PROGRESS_MODES, Progress, type ProgressMode } from './progress.js';
import { committedShards, countShardRows, isFinished, outputCaptions, readShardSamples } from './shard-source.js';
import { makeDir } from '../core/make-dir.js';

export interface FilterRunOptions {
  /** An ingest (or filter) output folder. */
  readonly input: string;
  /** @default 'shards/filtered' */
  readonly output: string;
  readonly filter: FilterOptions;
  /** @default 10000 */
  readonly shardSize: number;
  /** @default 'lean' */
  readonly writer: WriterEngine;
  /** @default false */
  readonly overwrite: boolean;
  /**
   * Filter what an unfinished input run (no `_summary.json`) has committed so far, instead of
   * stopping with FILIP_ERR_INPUT_UNFINISHED. The corpus-wide rules then count only those rows.
   * @default false
   */
  readonly partialInput: boolean;
  /** @default 'auto' */
  readonly progress: ProgressMode;
  /** @default process.stderr */
  readonly logStream: NodeJS.WritableStream;
}

export type FilterRunInput = Partial<Omit<FilterRunOptions, 'filter'>> & { input: string; filter?: FilterInput };

const DEFAULTS = {
  output: 'shards/filtered',
  shardSize: 10_000,
  writer: 'lean' as WriterEngine,
  overwrite: false,
  partialInput: false,
  progress: 'auto' as ProgressMode,
};

export function resolveFilterRunOptions(input: FilterRunInput): FilterRunOptions {
  rejectUnknownKeys('filter run', input, { ...DEFAULTS, input: 0, filter: 0, logStream: 0 });
  const o = { ...DEFAULTS, ...input };
  return {
    input: stringOption('input', o.input),
    output: stringOption('output', o.output),
    filter: resolveFilterOptions(input.filter),
    shardSize: intOption('shardSize', o.shardSize, 1),
    writer: choiceOption('writer', o.writer, Object.keys(WRITER_ENGINES) as WriterEngine[]),
    overwrite: boolOption('overwrite', o.overwrite),
    partialInput: boolOption('partialInput', o.partialInput),
    progress: choiceOption('progress', o.progress, Object.keys(PROGRESS_MODES) as ProgressMode[]),
    logStream: input.logStream ?? process.stderr,
  };
}

export interface FilterRunSummary {
  readonly output: string;
  readonly input: number;
  readonly kept: number;
  readonly funnel: ReturnType<Funnel['toJSON']>;
  readonly shards: string[];
  readonly seconds: number;
  readonly report: { readonly json: string; readonly html: string };
  /** The input was an unfinished run, read with --partial-input: the output holds part of it. */
  readonly partialInput: boolean;
}

/** Adds the kept samples' hashes of committed shards back to the near-duplicate index on resume. */
export async function restoreKeptIndex(dir: string, state: OutputState, ctx: FilterContext): Promise<void> {
  if (!ctx.kept) return;
  for (const c of state.commits) {
    if (!c.file) continue;
    for await (const r of iterateShard(path.join(dir, c.file), { columns: ['phash'], optionalColumns: ['near_dup_check'] })) {
      ctx.kept.add(String(r.phash), r.near_dup_check instanceof Uint8Array ? r.near_dup_check : undefined);
    }
  }
}

/**
 * Seeds the funnel with what earlier invocations committed: the counts, and the same seeded sample
 * of examples, their images from the funnel's image log. A fresh run starts a fresh image log.
 */
export async function seedFunnel(dir: string, state: OutputState, funnel: Funnel): Promise<void> {
  if (state.commits.length === 0) {
    await fs.rm(path.join(dir, FUNNEL_IMAGES), { force: true });
    return;
  }
  const kept = state.commits.reduce((a, c) => a + c.ok, 0);
  for (let i = 0; i < kept; i++) funnel.add({ status: 'ok' } as Sample, []);
  for await (const r of readRejects(dir)) {
    if (!r.failed) continue; // rejected before the filter (ingest reasons)
    funnel.add({ key: r.key, caption: r.caption, errorMessage: r.error_message, status: 'rejected' } as Sample, r.failed);
  }
  await funnel.restoreImages();
}

export async function runFilter(input: FilterRunInput): Promise<FilterRunSummary> {
  const o = resolveFilterRunOptions(input);
  const started = performance.now();
  const files = await committedShards(o.input, { partial: o.partialInput, partialFlag: true });
  const inputRows = await countShardRows(files);
  const partial = o.partialInput && !(await isFinished(o.input));
  // The input's shards and rows are part of the run: a filter resumed after its (--partial-input)
  // input grew would decide the new rows on other corpus-wide counts than the earlier ones.
  const identity = {
    input: path.resolve(o.input),
    filter: o.filter,
    shardSize: o.shardSize,
    inputShards: files.map((f) => path.basename(f)),
    inputRows,
    ...(partial ? { partialInput: true } : {}),
  };
  const state = await openOutput(o.output, 'filip-data filter', identity, o.overwrite, [o.input]);
  const workDir = path.join(o.output, '.work');
  await makeDir(workDir, 'output');
  const ctx = await prepareFilter(o.filter, () => outputCaptions(o.input, o.partialInput), workDir);
  const imageLog = path.join(o.output, FUNNEL_IMAGES);
  const funnel = new Funnel(o.filter.rules as readonly ReasonCode[], { imageLog });
  const shards: string[] = [];
  let progress: Progress | undefined;
  try {
    await restoreKeptIndex(o.output, state, ctx);
    await seedFunnel(o.output, state, funnel);
    const total = Math.max(inputRows - state.nextIndex, 0);
    progress = new Progress({ mode: o.progress, total, stream: o.logStream, label: 'filter' });
    if (partial) progress.log(`warning: ${o.input} is a run that has not finished: filtering the ${inputRows} rows it has committed (--partial-input)`);
    const sink = new ShardSink(
      {
        dir: o.output,
        shardSize: o.shardSize,
        engine: o.writer,
        keepCols: await keepColsOf(files),
        kind: 'filter',
        onCommit: (s) => {
          if (s.file) shards.push(s.file);
        },
      },
      state,
    );
    const ticker = progress;
    await drainInto(sink, filterSamples(readShardSamples(files, state.nextIndex), ctx, funnel), (s) => ticker.tick(s));
  } finally {
    progress?.stop();
    await ctx.close();
    await fs.rm(workDir, { recursive: true, force: true });
  }
  const report = await writeFunnelReport(o.output, funnel, `filip-data filter: ${o.filter.preset} on ${o.input}`);
  await fs.rm(imageLog, { force: true });
  const summary: FilterRunSummary = {
    output: o.output,
    input: funnel.input,
    kept: funnel.kept,
    funnel: funnel.toJSON(),
    shards,
    seconds: (performance.now() - started) / 1000,
    report,
    partialInput: partial,
  };
  await writeSummary(o.output, summary);
  return summary;
}

/** The kept manifest columns of the input shards (their `extra_` columns), taken from the first shard. */
async function keepColsOf(files: readonly string[]): Promise<string[]> {
  if (files.length === 0) return [];
  for await (const row of iterateShard(files[0]!)) {
    return Object.keys(row).filter((k) => k.startsWith('extra_')).map((k) => k.slice('extra_'.length));
  }
  return [];
}

/** The end-of-run report: one line, then the funnel table. */
export function formatFilterSummary(s: FilterRunSummary): string {
  return [
    `filter finished in ${s.seconds.toFixed(1)} s: ${s.input} rows in, ${s.kept} kept -> ${s.output}`,
    formatFunnel(s.funnel),
    `report: ${s.report.html}`,
    ...(s.partialInput ? ['input: an unfinished run, read with --partial-input: this output holds part of it'] : []),
  ].join('\n');
}
