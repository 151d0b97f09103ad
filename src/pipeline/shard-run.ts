// `filip-data shard`: a filter (or ingest) output folder in, the final training set out: captions
// back-translated, K AutoAugment views per image, every sample shuffled across the whole input with a
// seed, in fixed-size Parquet or WebDataset shards, with `sizes.json` and a dataset card.
//
// Two phases, each resumable after a kill:
//   1. scatter: committed input rows -> back-translation -> AutoAugment -> one of B bucket files in
//      `.work/` (shuffle.ts); rejected rows to `.work/rejects.jsonl`. Every few MB the buckets are
//      flushed and `_shuffle.json` records how far the input got, the bucket lengths and the counts;
//      a rerun cuts the buckets back to that and reads the input on from there.
//   2. gather: bucket by bucket, shuffled in memory, into shards of exactly `samplesPerShard` samples
//      (the last may be short) under the commit protocol of output.ts: temporary name, rename, then
//      `NNNNN_stats.json` last, recording the range of shuffled positions it holds. A rerun resumes at
//      the first position no stats file covers; the shuffled order is a pure function of the buckets
//      and the seed, so the resumed shards are the ones an uninterrupted run writes.
// Memory: one bucket (about `bucketBytes`) in phase 2; `scatterBufferBytes` of appends plus the
// translation batches and augmentation window in phase 1.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import { boolOption, choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import type { ReasonCode } from '../core/reasons.js';
import type { Sample } from '../core/sample.js';
import { AUGMENT_POLICIES, augmentStage, resolveAugmentOptions, type AugmentPolicy } from '../augment/index.js';
import { createBackTranslator, resolveBackTranslateOptions, type BackTranslateOptions, type BackTranslationStats, type ResolvedBackTranslateOptions } from '../translate/index.js';
import { iterateShard } from '../shard/reader.js';
import { EXTRA_PREFIX, sampleToTrainingRow, shardName, trainingShardColumns } from '../shard/schema.js';
import { listTarMembers, TarWriter, WEBDATASET_MEMBERS, webdatasetMembers } from '../shard/webdataset.js';
import { openShardWriter, WRITER_ENGINES, type WriterEngine } from '../shard/writer.js';
import { columnsSchema, filterSection, readLineage, toolVersion, writeDatasetCard, type DatasetCard } from './dataset-card.js';
import { assertInputsOutside, openOutput, readCommits, REJECT_LOG, statsName, writeFileAtomic, writeSummary, type RejectRecord, type ShardStats } from './output.js';
import { PROGRESS_MODES, Progress, type ProgressMode } from './progress.js';
import { committedShards, isFinished, readShardSamples } from './shard-source.js';
import { gatherShuffled, ShuffleScatter, type ScatterState } from './shuffle.js';

export const TOOL = 'filip-data shard';
export const SIZES_FILE = 'sizes.json';
/** The scatter checkpoint; it stays after the run as the record of the counts and buckets. */
export const SHUFFLE_FILE = '_shuffle.json';
const WORK_DIR = '.work';

export const SHARD_FORMATS = {
  parquet: 'NNNNN.parquet: the ingest columns plus back_translations, translation_failures and view_0..view_{K-1}',
  webdataset: 'NNNNN.tar: KEY.jpg, KEY.txt, KEY.json and KEY.viewN.jpg members, as img2dataset writes them for open_clip',
} as const;
export type ShardFormat = keyof typeof SHARD_FORMATS;

export interface ShardAugmentOptions {
  /** AutoAugment views stored per sample; 0 stores none (the trainer can augment online). @default 0 */
  readonly views: number;
  /** @default 'imagenet' */
  readonly policy: AugmentPolicy;
  /** Samples augmented at once. @default 4 */
  readonly concurrency: number;
  /** Encoder quality of jpeg and webp views. @default 95 */
  readonly quality: number;
}

export interface ShardRunOptions {
  /** A filter (or ingest) output folder; its committed shards are read. */
  readonly input: string;
  /** @default 'shards/final' */
  readonly output: string;
  /** Samples per shard; the last shard may hold fewer. @default 10000 */
  readonly samplesPerShard: number;
  /** Seed of the shuffle and of the AutoAugment views (0 to 2^32 - 1). @default 0 */
  readonly seed: number;
  /** @default 'parquet' */
  readonly format: ShardFormat;
  /** Parquet engine (format parquet). @default 'lean' */
  readonly writer: WriterEngine;
  readonly augment: ShardAugmentOptions;
  /**
   * Back-translation options (src/translate). The cache folder defaults to `OUTPUT/.translation-cache`,
   * so a resumed or repeated run translates nothing twice; pass `cacheDir: null` for memory only.
   * @default { engine: 'apertium' }
   */
  readonly translate: ResolvedBackTranslateOptions;
  /**
   * Target size of one shuffle bucket in bytes; the number of buckets is the input's estimated size
   * (images and views) over this. Phase 2 holds one bucket in memory. @default 268435456 (256 MiB)
   */
  readonly bucketBytes: number;
  /** Appends buffered for all buckets together before they are written (and a checkpoint is taken). @default 33554432 (32 MiB) */
  readonly scatterBufferBytes: number;
  /** @default false */
  readonly overwrite: boolean;
  /**
   * Shard what an unfinished input run (no `_summary.json`) has committed so far, instead of stopping
   * with FILIP_ERR_INPUT_UNFINISHED. @default false
   */
  readonly partialInput: boolean;
  /** @default 'auto' */
  readonly progress: ProgressMode;
  /** @default process.stderr */
  readonly logStream: NodeJS.WritableStream;
}

export type ShardRunInput = Partial<Omit<ShardRunOptions, 'augment' | 'translate'>> & {
  input: string;
  augment?: Partial<ShardAugmentOptions>;
  translate?: BackTranslateOptions;
};

const DEFAULTS = {
  output: 'shards/final',
  samplesPerShard: 10_000,
  seed: 0,
  format: 'parquet' as ShardFormat,
  writer: 'lean' as WriterEngine,
  bucketBytes: 256 * 2 ** 20,
  scatterBufferBytes: 32 * 2 ** 20,
  overwrite: false,
  partialInput: false,
  progress: 'auto' as ProgressMode,
};
const AUGMENT_DEFAULTS: ShardAugmentOptions = { views: 0, policy: 'imagenet', concurrency: 4, quality: 95 };

export function resolveShardRunOptions(input: ShardRunInput): ShardRunOptions {
  if (typeof input !== 'object' || input === null) throw invalid('options', 'an object', input);
  rejectUnknownKeys('shard', input, { ...DEFAULTS, input: 0, augment: 0, translate: 0, logStream: 0 });
  const o = { ...DEFAULTS, ...definedOnly(input) };
  const output = stringOption('output', o.output);
  rejectUnknownKeys('shard augment', input.augment ?? {}, AUGMENT_DEFAULTS);
  const a = { ...AUGMENT_DEFAULTS, ...definedOnly(input.augment ?? {}) };
  const translate = input.translate ?? {};
  return {
    input: stringOption('input', o.input),
    output,
    samplesPerShard: intOption('samplesPerShard', o.samplesPerShard, 1),
    seed: intOption('seed', o.seed, 0, 2 ** 32 - 1),
    format: choiceOption('format', o.format, Object.keys(SHARD_FORMATS) as ShardFormat[]),
    writer: choiceOption('writer', o.writer, Object.keys(WRITER_ENGINES) as WriterEngine[]),
    augment: {
      views: intOption('augment.views', a.views, 0, 64),
      policy: choiceOption('augment.policy', a.policy, AUGMENT_POLICIES),
      concurrency: intOption('augment.concurrency', a.concurrency, 1, 1024),
      quality: intOption('augment.quality', a.quality, 1, 100),
    },
    translate: resolveBackTranslateOptions({
      ...translate,
      cacheDir: translate.cacheDir !== undefined ? translate.cacheDir : translate.engine === 'none' ? null : path.join(output, '.translation-cache'),
    }),
    bucketBytes: intOption('bucketBytes', o.bucketBytes, 1),
    scatterBufferBytes: intOption('scatterBufferBytes', o.scatterBufferBytes, 1),
    overwrite: boolOption('overwrite', o.overwrite),
    partialInput: boolOption('partialInput', o.partialInput),
    progress: choiceOption('progress', o.progress, Object.keys(PROGRESS_MODES) as ProgressMode[]),
    logStream: input.logStream ?? process.stderr,
  };
}

/** Counts of phase 1, kept in the checkpoint so a resumed run reports the whole run. */
export interface ShardCounts {
  input: number;
  ok: number;
  rejected: number;
  byReason: Partial<Record<ReasonCode, number>>;
  backTranslations: Record<string, number>;
  translationFailures: Record<string, Partial<Record<ReasonCode, number>>>;
}

/** Contents of `_shuffle.json`. */
interface ShuffleCheckpoint {
  readonly identity: Record<string, unknown>;
  readonly buckets: number;
  readonly done: boolean;
  /** Input rows (positions in the input folder's shards) scattered so far. */
  readonly inputEnd: number;
  readonly scatter: ScatterState;
  /** Committed length of `.work/rejects.jsonl`. */
  readonly rejectsBytes: number;
  readonly counts: ShardCounts;
}

export interface ShardRunSummary {
  readonly output: string;
  readonly format: ShardFormat;
  readonly counts: ShardCounts;
  /** `sizes.json`: samples per shard file. */
  readonly sizes: Record<string, number>;
  readonly buckets: number;
  /** Bytes of the largest bucket: what phase 2 held in memory at once (images and views). */
  readonly largestBucketBytes: number;
  /** Back-translation figures of this invocation (not of earlier, interrupted ones). */
  readonly translation: BackTranslationStats | null;
  readonly seconds: number;
  readonly card: { readonly json: string; readonly md: string };
  /** The input was an unfinished run, read with --partial-input. */
  readonly partialInput: boolean;
}

/** The input folder's committed shards, their row count, and their image bytes (for the bucket count). */
async function describeInput(dir: string, partial: boolean): Promise<{ files: string[]; rows: number; imageBytes: number }> {
  const files = await committedShards(dir, { partial, partialFlag: true });
  const names = new Set(files.map((f) => path.basename(f)));
  let rows = 0;
  let imageBytes = 0;
  for (const c of await readCommits(dir)) {
    if (c.file === null || !names.has(c.file)) continue;
    rows += c.ok;
    imageBytes += c.image_bytes ?? c.bytes;
  }
  return { files, rows, imageBytes };
}

/** The kept manifest columns of the input (its `extra_` columns), from the first shard's first row. */
async function keepColsOf(files: readonly string[]): Promise<string[]> {
  for (const file of files) {
    for await (const row of iterateShard(file)) return Object.keys(row).filter((k) => k.startsWith(EXTRA_PREFIX)).map((k) => k.slice(EXTRA_PREFIX.length));
  }
  return [];
}

function emptyCounts(): ShardCounts {
  return { input: 0, ok: 0, rejected: 0, byReason: {}, backTranslations: {}, translationFailures: {} };
}

function tally(c: ShardCounts, s: Sample): void {
  c.input++;
  if (s.status !== 'ok') {
    const r = s.reason ?? 'malformed_row';
    c.rejected++;
    c.byReason[r] = (c.byReason[r] ?? 0) + 1;
    return;
  }
  c.ok++;
  for (const t of s.backTranslations ?? []) c.backTranslations[t.pivot] = (c.backTranslations[t.pivot] ?? 0) + 1;
  for (const f of s.translationFailures ?? []) {
    const per = (c.translationFailures[f.pivot] ??= {});
    per[f.reason] = (per[f.reason] ?? 0) + 1;
  }
}

function rejectLine(s: Sample): string {
  const record: Omit<RejectRecord, 'kind'> & { kind: string } = {
    key: s.key,
    index: s.index,
    url: s.url,
    caption: s.caption,
    source: `${s.source.file}:${s.source.row}`,
    reason: s.reason ?? 'malformed_row',
    error_message: s.errorMessage ?? '',
    http_status: s.httpStatus ?? null,
    extra: s.extra,
    kind: 'shard',
  };
  return `${JSON.stringify(record)}\n`;
}

async function readCheckpoint(file: string): Promise<ShuffleCheckpoint | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as ShuffleCheckpoint;
  } catch {
    return undefined;
  }
}

/** One training shard being written, whatever the format. */
interface TrainingShard {
  write(sample: Sample): Promise<void>;
  close(): Promise<{ bytes: number }>;
  abort(): Promise<void>;
}

async function openTrainingShard(file: string, o: ShardRunOptions, keepCols: readonly string[]): Promise<TrainingShard> {
  const views = o.augment.views;
  if (o.format === 'webdataset') {
    const tar = await TarWriter.open(file);
    return {
      async write(s) {
        for (const m of webdatasetMembers(s, keepCols, views)) await tar.add(m.name, m.data);
      },
      close: () => tar.close(),
      abort: () => tar.abort(),
    };
  }
  const writer = await openShardWriter(file, trainingShardColumns(keepCols, views), o.writer);
  return {
    write: (s) => writer.write(sampleToTrainingRow(s, keepCols, views)),
    close: () => writer.close(),
    abort: () => writer.abort(),
  };
}

export async function runShard(input: ShardRunInput): Promise<ShardRunSummary> {
  const o = resolveShardRunOptions(input);
  const started = performance.now();
  const source = await describeInput(o.input, o.partialInput);
  const partial = o.partialInput && !(await isFinished(o.input));
  const views = o.augment.views;
  // Views are about as large as the image; ~600 bytes a row of text and framing.
  const estimate = source.imageBytes * (1 + views) + source.rows * 600;
  const buckets = Math.min(Math.max(1, Math.ceil(estimate / o.bucketBytes)), 99_999);
  const identity = {
    input: path.resolve(o.input),
    inputShards: source.files.map((f) => path.basename(f)),
    inputRows: source.rows,
    samplesPerShard: o.samplesPerShard,
    seed: o.seed,
    format: o.format,
    writer: o.format === 'parquet' ? o.writer : null,
    augment: views === 0 ? { views: 0 } : { views, policy: o.augment.policy, quality: o.augment.quality },
    translate: { engine: o.translate.engine, pivots: o.translate.engine === 'none' ? [] : o.translate.pivots },
    buckets,
    ...(partial ? { partialInput: true } : {}),
  };
  const workDir = path.join(o.output, WORK_DIR);
  const shuffleFile = path.join(o.output, SHUFFLE_FILE);
  await assertInputsOutside(o.output, [o.input]);
  if (o.overwrite) {
    for (const name of [WORK_DIR, SHUFFLE_FILE, SIZES_FILE, 'dataset_card.json', 'dataset_card.md']) {
      await fs.rm(path.join(o.output, name), { recursive: true, force: true });
    }
  }
  const state = await openOutput(o.output, TOOL, identity, o.overwrite, [o.input]);
  let ckpt = await readCheckpoint(shuffleFile);
  if (ckpt && JSON.stringify(ckpt.identity) !== JSON.stringify(identity)) {
    // Only reachable without commits (openOutput checks the identity of committed runs): start afresh.
    ckpt = undefined;
    await fs.rm(workDir, { recursive: true, force: true });
  }
  if (state.commits.length > 0 && !ckpt?.done) {
    throw new FilipError('FILIP_ERR_RESUME_MISMATCH', `committed shards but no finished ${SHUFFLE_FILE}; use --overwrite to start again`, {
      file: shuffleFile,
    });
  }
  const log = (line: string) => {
    if (o.progress !== 'none') o.logStream.write(`${line}\n`);
  };

  if (partial) log(`warning: ${o.input} is a run that has not finished: sharding the ${source.rows} rows it has committed (--partial-input)`);
  let translation: BackTranslationStats | null = null;
  if (!ckpt?.done) {
    log(`shard: ${source.rows} input rows, ${buckets} shuffle bucket(s)${ckpt ? `; resuming the scatter at row ${ckpt.inputEnd}` : ''}`);
    const scattered = await scatterPhase(o, source.files, identity, buckets, workDir, shuffleFile, ckpt);
    ckpt = scattered.ckpt;
    translation = scattered.translation;
  }
  const done = ckpt!;

  const total = done.scatter.rows.reduce((a, n) => a + n, 0);
  const keepCols = await keepColsOf(source.files);
  await gatherPhase(o, done, total, keepCols, workDir, state);

  const commits = await readCommits(o.output);
  const sizes: Record<string, number> = {};
  for (const c of commits) if (c.file !== null) sizes[c.file] = c.ok;
  await writeFileAtomic(path.join(o.output, SIZES_FILE), `${JSON.stringify(sizes, null, 2)}\n`);
  const card = await writeDatasetCard(o.output, await buildCard(o, done, commits, keepCols, partial));
  const summary: ShardRunSummary = {
    output: o.output,
    format: o.format,
    counts: done.counts,
    sizes,
    buckets: done.buckets,
    largestBucketBytes: done.scatter.bytes.reduce((a, b) => Math.max(a, b), 0),
    translation,
    seconds: (performance.now() - started) / 1000,
    card,
    partialInput: partial,
  };
  await writeSummary(o.output, summary);
  await fs.rm(workDir, { recursive: true, force: true });
  return summary;
}

/** Phase 1: input -> back-translation -> AutoAugment -> buckets, with checkpoints. */
async function scatterPhase(
  o: ShardRunOptions,
  files: readonly string[],
  identity: Record<string, unknown>,
  buckets: number,
  workDir: string,
  shuffleFile: string,
  previous: ShuffleCheckpoint | undefined,
): Promise<{ ckpt: ShuffleCheckpoint; translation: BackTranslationStats }> {
  const scatter = new ShuffleScatter(workDir, buckets, o.seed, o.scatterBufferBytes);
  const rejectsFile = path.join(workDir, REJECT_LOG);
  let ckpt = previous;
  const rejectsSize = await fs.stat(rejectsFile).then((s) => s.size, () => 0);
  try {
    if (rejectsSize < (ckpt?.rejectsBytes ?? 0)) {
      throw new FilipError('FILIP_ERR_SHARD', `reject log is shorter (${rejectsSize} bytes) than its checkpoint`, { file: rejectsFile });
    }
    await scatter.restore(ckpt?.scatter);
  } catch (err) {
    // A work file shorter than its checkpoint (the machine, not the process, went down): start again.
    if (!(err instanceof FilipError) || err.code !== 'FILIP_ERR_SHARD') throw err;
    ckpt = undefined;
    await scatter.restore();
  }
  let rejectsBytes = ckpt?.rejectsBytes ?? 0;
  await fs.writeFile(rejectsFile, '', { flag: 'a' });
  await fs.truncate(rejectsFile, rejectsBytes);

  const counts = ckpt ? structuredClone(ckpt.counts) : emptyCounts();
  let inputEnd = ckpt?.inputEnd ?? 0;
  let pendingRejects: string[] = [];
  const checkpoint = async (done: boolean) => {
    await scatter.flush();
    if (pendingRejects.length > 0) {
      const text = pendingRejects.join('');
      await fs.appendFile(rejectsFile, text);
      rejectsBytes += Buffer.byteLength(text);
      pendingRejects = [];
    }
    ckpt = { identity, buckets, done, inputEnd, scatter: scatter.state(), rejectsBytes, counts };
    await writeFileAtomic(shuffleFile, `${JSON.stringify(ckpt)}\n`);
  };

  const totalRows = (identity.inputRows as number) - inputEnd;
  const progress = new Progress({ mode: o.progress, total: totalRows, stream: o.logStream, label: 'shard: translate+augment+scatter' });
  const translator = await createBackTranslator(o.translate);
  try {
    let stream: AsyncIterable<Sample> = translator.stage(readShardSamples(files, inputEnd));
    if (o.augment.views > 0) {
      const augment = resolveAugmentOptions({ ...o.augment, seed: o.seed });
      stream = augmentStage(augment)(stream);
    }
    let lastCheckpoint = performance.now();
    for await (const s of stream) {
      if (s.index !== inputEnd) {
        // Both stages keep the input order; the checkpoint's input position depends on it.
        throw new Error(`shard: sample ${s.key} came at input position ${s.index}, expected ${inputEnd}`);
      }
      inputEnd++;
      progress.tick(s);
      tally(counts, s);
      let full = false;
      if (s.status === 'ok') full = scatter.add(s);
      else pendingRejects.push(rejectLine(s));
      // Without a full buffer, still checkpoint now and then so a kill loses little work.
      if (full || performance.now() - lastCheckpoint > 30_000) {
        await checkpoint(false);
        lastCheckpoint = performance.now();
      }
    }
    await checkpoint(true);
  } finally {
    progress.stop();
    await translator.close();
  }
  return { ckpt: ckpt!, translation: translator.stats() };
}

/** Phase 2: buckets -> shuffled -> fixed-size shards, committed one by one. */
async function gatherPhase(
  o: ShardRunOptions,
  ckpt: ShuffleCheckpoint,
  total: number,
  keepCols: readonly string[],
  workDir: string,
  state: { readonly commits: readonly ShardStats[]; readonly nextShard: number; readonly nextIndex: number },
): Promise<void> {
  const rejectsOut = path.join(o.output, REJECT_LOG);
  let rejectsOffset: number;
  if (state.commits.length === 0) {
    // The reject log of phase 1 becomes the output's; the first commit records its length.
    await fs.copyFile(path.join(workDir, REJECT_LOG), rejectsOut);
    rejectsOffset = ckpt.rejectsBytes;
  } else {
    rejectsOffset = state.commits.at(-1)!.rejects_offset;
  }
  const ext = o.format === 'webdataset' ? 'tar' : 'parquet';
  let shard = state.nextShard;
  let position = state.nextIndex;
  if (position >= total && state.commits.length > 0) return;

  const commit = async (writer: TrainingShard | undefined, start: number, end: number, imageBytes: number, startedAt: number) => {
    let file: string | null = null;
    let bytes = 0;
    if (writer) {
      bytes = (await writer.close()).bytes;
      file = shardName(shard, ext);
      // On disk before the rename and the stats file: a machine crash cannot leave a committed empty shard.
      const fh = await fs.open(tmpPath(o.output, shard, ext), 'r');
      await fh.sync().finally(() => fh.close());
      await fs.rename(tmpPath(o.output, shard, ext), path.join(o.output, file));
    }
    const rows = end - start;
    const stats = {
      shard,
      file,
      kind: 'shard',
      input_start: start,
      input_end: end,
      rows,
      ok: rows,
      rejected: 0,
      by_reason: {},
      bytes,
      image_bytes: imageBytes,
      rejects_offset: rejectsOffset,
      seconds: (performance.now() - startedAt) / 1000,
      finished_at: new Date().toISOString(),
    };
    await writeFileAtomic(path.join(o.output, statsName(shard)), `${JSON.stringify(stats, null, 2)}\n`);
    shard++;
  };

  if (total === 0) {
    // Nothing to write: one stats file without a shard commits the reject log.
    await commit(undefined, 0, 0, 0, performance.now());
    return;
  }
  const progress = new Progress({ mode: o.progress, total: total - position, stream: o.logStream, label: 'shard: write' });
  let writer: TrainingShard | undefined;
  let windowStart = position;
  let imageBytes = 0;
  let startedAt = performance.now();
  try {
    for await (const s of gatherShuffled(workDir, ckpt.scatter, o.seed, position)) {
      writer ??= await openTrainingShard(tmpPath(o.output, shard, ext), o, keepCols);
      await writer.write(s);
      imageBytes += s.image!.bytes.length;
      position = s.index + 1;
      progress.tick(s);
      if (position - windowStart >= o.samplesPerShard) {
        await commit(writer, windowStart, position, imageBytes, startedAt);
        writer = undefined;
        windowStart = position;
        imageBytes = 0;
        startedAt = performance.now();
      }
    }
    if (writer) await commit(writer, windowStart, position, imageBytes, startedAt);
    writer = undefined;
  } finally {
    // On an error the open shard is dropped: the next run writes it again, as after a kill.
    await writer?.abort();
    progress.stop();
  }
}

function tmpPath(dir: string, shard: number, ext: string): string {
  return path.join(dir, `.${shardName(shard, ext)}.tmp`);
}

async function buildCard(o: ShardRunOptions, ckpt: ShuffleCheckpoint, commits: readonly ShardStats[], keepCols: readonly string[], partial: boolean): Promise<DatasetCard> {
  const lineage = await readLineage(o.input);
  // Folders read while unfinished: this run's input, and the inputs of earlier --partial-input runs.
  const partialInputs = [
    ...(partial ? [path.resolve(o.input)] : []),
    ...lineage.filter((s) => s.identity?.partialInput === true && typeof s.identity.input === 'string').map((s) => path.resolve(String(s.identity!.input))),
  ];
  const views = o.augment.views;
  const schema =
    o.format === 'parquet'
      ? columnsSchema(trainingShardColumns(keepCols, views))
      : Object.entries(WEBDATASET_MEMBERS)
          .filter(([name]) => views > 0 || !name.includes('view'))
          .map(([name, doc]) => ({ name, type: 'file', nullable: false, doc }));
  const c = ckpt.counts;
  return {
    name: `FILIP training set from ${path.basename(path.resolve(o.input))}`,
    tool: await toolVersion(),
    format: o.format,
    samples_per_shard: o.samplesPerShard,
    seed: o.seed,
    counts: {
      input: c.input,
      samples: c.ok,
      rejected: c.rejected,
      rejected_by_reason: c.byReason,
      back_translations: c.backTranslations,
      translation_failures: c.translationFailures,
    },
    shards: commits.filter((s) => s.file !== null).map((s) => ({ file: s.file!, samples: s.ok, bytes: s.bytes })),
    shuffle: {
      method: 'two-pass scatter-gather: a seeded hash of the key picks one of B buckets, each bucket is sorted by key and Fisher-Yates shuffled (mulberry32 seeded by seed and bucket)',
      buckets: ckpt.buckets,
      bucket_bytes: ckpt.buckets > 0 ? Math.round(ckpt.scatter.bytes.reduce((a, b) => a + b, 0) / ckpt.buckets) : 0,
    },
    translation: { engine: o.translate.engine, pivots: o.translate.engine === 'none' ? [] : o.translate.pivots },
    augmentation: { policy: views > 0 ? o.augment.policy : 'none', views },
    schema,
    filter: filterSection(lineage),
    lineage: lineage.map((s) => ({ ...s, dir: path.resolve(s.dir) })),
    partial_inputs: partialInputs,
  };
}

/** The end-of-run report. */
/**
 * The run's error when every back-translation it asked for failed (the engine is down, the URL is
 * wrong): the rows are kept with their reasons, as for any failure, but a run that exits 0 then would
 * pass a dataset without back-translations off as done. The command prints the summary, then this.
 */
export function translationError(s: ShardRunSummary): FilipError | undefined {
  const t = s.translation;
  if (t === null || t.failures === 0 || t.translated > 0) return undefined;
  return new FilipError(
    'FILIP_ERR_TRANSLATOR',
    `every back-translation of this run failed (${t.failures} of ${t.failures}; the first: ${t.firstFailure ?? 'no message'}): ` +
      `the ${s.counts.ok} rows are written without them, each with its translation_failures; fix the engine and run again with --overwrite`,
    { file: s.output },
  );
}

export function formatShardSummary(s: ShardRunSummary): string {
  const c = s.counts;
  const lines = [
    `shard finished in ${s.seconds.toFixed(1)} s: ${c.input} rows in, ${c.ok} samples in ${Object.keys(s.sizes).length} ${s.format} shard(s) -> ${s.output}`,
    `  rejected: ${c.rejected}${Object.keys(c.byReason).length > 0 ? ` (${Object.entries(c.byReason).map(([r, n]) => `${r} ${n}`).join(', ')})` : ''}`,
    ...(s.partialInput ? ['  input: an unfinished run, read with --partial-input: these shards hold part of it'] : []),
  ];
  const bt = Object.entries(c.backTranslations);
  if (bt.length > 0) lines.push(`  back-translations: ${bt.map(([p, n]) => `${p} ${n}`).join(', ')}`);
  const failed = Object.entries(c.translationFailures);
  if (failed.length > 0) lines.push(`  failed back-translations (rows kept): ${failed.map(([p, r]) => `${p} ${Object.values(r).reduce((a, n) => a + (n ?? 0), 0)}`).join(', ')}`);
  if (s.translation) {
    const looked = s.translation.cacheHits + s.translation.cacheMisses;
    lines.push(`  translation cache: ${s.translation.cacheHits} of ${looked} lookups answered (${looked > 0 ? ((100 * s.translation.cacheHits) / looked).toFixed(1) : '0.0'}%)`);
  }
  lines.push(`  shuffle: ${s.buckets} bucket(s), largest ${(s.largestBucketBytes / 2 ** 20).toFixed(1)} MiB held in memory`);
  lines.push(`  sizes: ${path.join(s.output, SIZES_FILE)}; card: ${s.card.md}`);
  return lines.join('\n');
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** What `checkShardOutput` found: sizes.json, the keys in shard order, and every disagreement. */
export interface ShardOutputCheck {
  readonly sizes: Record<string, number>;
  readonly keys: string[];
  readonly problems: string[];
}

/**
 * Reads a shard output back and checks it against its own sizes.json: each listed shard holds that many
 * samples, and no key appears twice. Parquet shards are read by the hyparquet reader, tar shards by
 * their headers (a sample is the run of members sharing the name before the first dot).
 */
export async function checkShardOutput(dir: string): Promise<ShardOutputCheck> {
  const sizes = JSON.parse(await fs.readFile(path.join(dir, SIZES_FILE), 'utf8')) as Record<string, number>;
  const keys: string[] = [];
  const problems: string[] = [];
  for (const [file, count] of Object.entries(sizes)) {
    const inFile: string[] = [];
    if (file.endsWith('.tar')) {
      for (const m of await listTarMembers(path.join(dir, file))) {
        const key = m.name.slice(0, m.name.indexOf('.'));
        if (inFile.at(-1) !== key) inFile.push(key);
      }
    } else {
      for await (const r of iterateShard(path.join(dir, file), { columns: ['key'] })) inFile.push(String(r.key));
    }
    if (inFile.length !== count) problems.push(`${file}: sizes.json says ${count} samples, the file holds ${inFile.length}`);
    keys.push(...inFile);
  }
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k)) problems.push(`key ${k} appears more than once`);
    seen.add(k);
  }
  return { sizes, keys, problems };
}
