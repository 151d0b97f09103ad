// The output folder of a run: shards, their stats files, the reject log, and what a resume reads.
//
// Commit protocol for shard n (the unit of durability):
//   1. the shard is written as `.NNNNN.parquet.tmp` and renamed to `NNNNN.parquet` when closed;
//   2. reject-log lines of the same window are already appended to `rejects.jsonl`; it is fsynced;
//   3. `NNNNN_stats.json` is written (temporary name, then rename) LAST: it marks the commit, and
//      records the input range it covers and the reject log's length at that point.
// A kill at any moment leaves committed shards intact; on resume, shards without stats and
// temporary files are removed, the reject log is cut back to the last committed length, and the
// input restarts at the last committed position. Nothing is lost and nothing is written twice.

import { createReadStream, promises as fs } from 'node:fs';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import type { ReasonCode } from '../core/reasons.js';
import { RUN_FILE, SUMMARY_FILE } from '../core/run-files.js';
import type { Sample } from '../core/sample.js';
import { sampleToRow, shardColumns, shardName } from '../shard/schema.js';
import { openShardWriter, type ShardWriter, type WriterEngine } from '../shard/writer.js';
import { makeDir } from '../core/make-dir.js';

export const REJECT_LOG = 'rejects.jsonl';
export { RUN_FILE, SUMMARY_FILE };
/** The filter funnel's example images, kept until the report is written (see Funnel's imageLog). */
export const FUNNEL_IMAGES = '.funnel-images.bin';

/** ingest and filter commits cover a range of their input; retry commits re-attempt earlier rejects. */
export type CommitKind = 'ingest' | 'filter' | 'retry';

/** Contents of `NNNNN_stats.json`. */
export interface ShardStats {
  readonly shard: number;
  /** Shard file name, or null when the window ended with rejects only. */
  readonly file: string | null;
  readonly kind: CommitKind;
  /** Global input positions covered, [input_start, input_end). For retry commits: both 0. */
  readonly input_start: number;
  readonly input_end: number;
  readonly rows: number;
  readonly ok: number;
  readonly rejected: number;
  readonly by_reason: Partial<Record<ReasonCode, number>>;
  /**
   * Retry commits: the reasons of the earlier rejects that this commit's rows replace, counted per
   * reason. Those rows were counted as rejected by the commits that rejected them; in the output's
   * totals they count only once, under their latest outcome. Absent on other commits.
   */
  readonly replaced_by_reason?: Partial<Record<ReasonCode, number>>;
  /** Bytes of the shard file. */
  readonly bytes: number;
  /** Sum of stored image bytes. */
  readonly image_bytes: number;
  /** Length of rejects.jsonl once this commit's reject lines were written. */
  readonly rejects_offset: number;
  readonly seconds: number;
  readonly finished_at: string;
}

/** One line of rejects.jsonl. */
export interface RejectRecord {
  readonly key: string;
  readonly index: number;
  readonly url: string;
  readonly caption: string;
  readonly source: string;
  readonly reason: ReasonCode;
  /** Every filter rule the row failed, in rule order (filter stage only; reason is the first). */
  readonly failed?: ReasonCode[];
  readonly error_message: string;
  readonly http_status: number | null;
  readonly extra: Record<string, string | null>;
  readonly kind: CommitKind;
}

export interface OutputState {
  readonly commits: ShardStats[];
  /** Next shard number to write. */
  readonly nextShard: number;
  /** First global input position not yet committed by an ingest commit. */
  readonly nextIndex: number;
  readonly rejectsOffset: number;
}

const STATS_RE = /^(\d{5,})_stats\.json$/;

export function statsName(n: number): string {
  return `${String(n).padStart(5, '0')}_stats.json`;
}

/** Reads the committed stats files of an output folder, in shard order, changing nothing. */
export async function readCommits(dir: string): Promise<ShardStats[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const commits: ShardStats[] = [];
  for (const name of names) {
    if (!STATS_RE.test(name)) continue;
    const file = path.join(dir, name);
    try {
      commits.push(JSON.parse(await fs.readFile(file, 'utf8')) as ShardStats);
    } catch (cause) {
      throw new FilipError('FILIP_ERR_SHARD', 'stats file cannot be read', { file }, { cause });
    }
  }
  return commits.sort((a, b) => a.shard - b.shard);
}

const OUR_FILES = /^(\.?\d{5,}(\.parquet|\.tar|_stats\.json)(\.tmp)?|rejects\.jsonl|_run\.json|_summary\.json|funnel\.json|report\.html|\.funnel-images\.bin)$/;

/**
 * Prepares an output folder for a run: with `overwrite`, removes a previous run's files (ours only);
 * otherwise recovers committed state and checks that it belongs to the same run, comparing `identity`
 * (what must not change between an interrupted run and its resume) field by field.
 */
export async function openOutput(
  dir: string,
  tool: string,
  identity: Record<string, unknown>,
  overwrite: boolean,
  inputs: readonly string[],
): Promise<OutputState> {
  await assertInputsOutside(dir, inputs);
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const runFile = path.join(dir, RUN_FILE);
  if (overwrite) {
    for (const n of names) if (OUR_FILES.test(n)) await fs.rm(path.join(dir, n), { force: true });
  } else if (!names.includes(RUN_FILE)) {
    // Files named like ours but no run record: another tool's output (img2dataset writes 00000.tar
    // and 00000_stats.json too). Recovering would delete its "uncommitted" shards and cut its
    // rejects.jsonl, so nothing is touched.
    const foreign = names.filter((n) => OUR_FILES.test(n));
    if (foreign.length > 0) {
      throw new FilipError(
        'FILIP_ERR_RESUME_MISMATCH',
        `the output folder holds ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''} but no ${RUN_FILE}: ` +
          'not a filip-data output, left untouched; choose another --output, or --overwrite to replace those files',
        { file: runFile },
      );
    }
  }
  const state = await recoverOutput(dir);
  const previous = await fs.readFile(runFile, 'utf8').then((t) => JSON.parse(t) as { tool: string; identity: Record<string, unknown> }, () => null);
  if (state.commits.length > 0) {
    if (!previous) {
      throw new FilipError('FILIP_ERR_RESUME_MISMATCH', `committed shards but no ${RUN_FILE}: not a filip-data output`, { file: runFile });
    }
    if (previous.tool !== tool) {
      throw new FilipError('FILIP_ERR_RESUME_MISMATCH', `the output folder holds a "${previous.tool}" run, not "${tool}"`, { file: runFile, field: 'tool' });
    }
    for (const k of Object.keys(identity)) {
      if (JSON.stringify(previous.identity[k]) !== JSON.stringify(identity[k])) {
        throw new FilipError(
          'FILIP_ERR_RESUME_MISMATCH',
          `the output folder holds a run with different "${k}" (was ${JSON.stringify(previous.identity[k])}); ` +
            'use the same inputs and options to resume, --overwrite to start again, or another --output',
          { file: runFile, field: k },
        );
      }
    }
  }
  // From here until the run writes it again at its end, the folder is a run in progress: the later
  // stages refuse it (FILIP_ERR_INPUT_UNFINISHED) rather than read a part of it as the whole.
  await fs.rm(path.join(dir, SUMMARY_FILE), { force: true });
  await writeFileAtomic(runFile, `${JSON.stringify({ tool, identity }, null, 2)}\n`);
  return state;
}

/**
 * Refuses an output folder that is one of the run's inputs, or that holds an input file named like
 * the files a run manages there: --overwrite would delete the input, and a resume would mix the two.
 * FILIP_ERR_INVALID_OPTION on field `output`, naming the input.
 */
export async function assertInputsOutside(dir: string, inputs: readonly string[]): Promise<void> {
  const real = (p: string) => fs.realpath(p).catch(() => path.resolve(p));
  const out = await real(dir);
  for (const input of inputs) {
    const p = await real(input);
    if (p === out || (path.dirname(p) === out && OUR_FILES.test(path.basename(p)))) {
      throw new FilipError(
        'FILIP_ERR_INVALID_OPTION',
        `the output folder ${dir} ${p === out ? 'is' : 'holds'} the input ${input}: the run would write over it; choose another --output`,
        { field: 'output', file: input },
      );
    }
  }
}

/** Reads committed state and removes what an interrupted run left half-done. */
export async function recoverOutput(dir: string): Promise<OutputState> {
  await makeDir(dir, 'output');
  const names = await fs.readdir(dir);
  const commits = await readCommits(dir);
  const committedFiles = new Set(commits.map((c) => c.file).filter((f): f is string => f !== null));
  for (const name of names) {
    const partialShard = /^\d{5,}\.(parquet|tar)$/.test(name) && !committedFiles.has(name);
    // A killed DuckDB writer leaves its hidden spill folder (.NNNNN.tmp.duckdb-XXXX) behind.
    const spill = name.startsWith('.') && name.includes('.duckdb-');
    if (partialShard || spill || name.endsWith('.tmp')) await fs.rm(path.join(dir, name), { recursive: true, force: true });
  }
  const last = commits.at(-1);
  const rejectsOffset = last?.rejects_offset ?? 0;
  const rejectPath = path.join(dir, REJECT_LOG);
  const size = await fs.stat(rejectPath).then((s) => s.size, () => -1);
  if (size > rejectsOffset) await fs.truncate(rejectPath, rejectsOffset);
  if (size >= 0 && size < rejectsOffset) {
    throw new FilipError('FILIP_ERR_SHARD', `reject log is shorter (${size} bytes) than committed (${rejectsOffset})`, {
      file: rejectPath,
    });
  }
  let nextIndex = 0;
  for (const c of commits) if (c.kind !== 'retry') nextIndex = Math.max(nextIndex, c.input_end);
  return { commits, nextShard: last ? last.shard + 1 : 0, nextIndex, rejectsOffset };
}

/**
 * Reads the reject log's committed lines (up to the last commit's `rejects_offset`), so a reader never
 * sees lines of a window that a running or killed run has not committed.
 */
export async function* readRejects(dir: string): AsyncGenerator<RejectRecord> {
  const file = path.join(dir, REJECT_LOG);
  const committed = (await readCommits(dir)).at(-1)?.rejects_offset ?? 0;
  if (committed === 0) return;
  // Streamed line by line: the log of a large run does not fit in memory.
  const lines = createInterface({ input: createReadStream(file, { start: 0, end: committed - 1 }), crlfDelay: Infinity });
  let row = 0;
  for await (const line of lines) {
    if (line.length === 0) continue;
    try {
      yield JSON.parse(line) as RejectRecord;
    } catch (cause) {
      throw new FilipError('FILIP_ERR_SHARD', 'reject log line is not JSON', { file, row }, { cause });
    }
    row++;
  }
}

export interface ShardSinkOptions {
  readonly dir: string;
  readonly shardSize: number;
  readonly engine: WriterEngine;
  readonly keepCols: readonly string[];
  readonly kind: CommitKind;
  /** Called after each commit (progress, logging). */
  readonly onCommit?: (stats: ShardStats) => void;
}

/** Writes ok samples to shards and rejected ones to the reject log, committing shard by shard. */
export class ShardSink {
  readonly #o: ShardSinkOptions;
  #shard: number;
  #rejectsOffset: number;
  #rejects?: fs.FileHandle;
  #writer?: ShardWriter;
  #window = newWindow(0);

  constructor(options: ShardSinkOptions, state: OutputState) {
    this.#o = options;
    this.#shard = state.nextShard;
    this.#rejectsOffset = state.rejectsOffset;
    this.#window = newWindow(state.nextIndex);
  }

  /** Takes one sample in input order. */
  async write(sample: Sample): Promise<void> {
    const w = this.#window;
    w.rows++;
    if (this.#o.kind !== 'retry') w.inputEnd = sample.index + 1;
    if (sample.retriedReason !== undefined) w.replaced[sample.retriedReason] = (w.replaced[sample.retriedReason] ?? 0) + 1;
    if (sample.status === 'ok') {
      this.#writer ??= await openShardWriter(this.#tmpPath(), shardColumns(this.#o.keepCols), this.#o.engine);
      await this.#writer.write(sampleToRow(sample, this.#o.keepCols));
      w.ok++;
      w.imageBytes += sample.image?.bytes.length ?? 0;
      if (w.ok >= this.#o.shardSize) await this.commit();
    } else {
      const reason = sample.reason ?? 'malformed_row';
      w.rejected++;
      w.byReason[reason] = (w.byReason[reason] ?? 0) + 1;
      await this.#appendReject(sample, reason);
    }
  }

  /** Commits the open window (a shard, its reject lines and its stats). No-op when empty. */
  async commit(): Promise<ShardStats | undefined> {
    const w = this.#window;
    if (w.rows === 0) return undefined;
    const n = this.#shard;
    let file: string | null = null;
    let bytes = 0;
    if (this.#writer) {
      const done = await this.#writer.close();
      this.#writer = undefined;
      file = shardName(n);
      await fs.rename(this.#tmpPath(), path.join(this.#o.dir, file));
      bytes = done.bytes;
    }
    if (this.#rejects) await this.#rejects.sync();
    const stats: ShardStats = {
      shard: n,
      file,
      kind: this.#o.kind,
      input_start: this.#o.kind !== 'retry' ? w.inputStart : 0,
      input_end: this.#o.kind !== 'retry' ? w.inputEnd : 0,
      rows: w.rows,
      ok: w.ok,
      rejected: w.rejected,
      by_reason: w.byReason,
      ...(this.#o.kind === 'retry' ? { replaced_by_reason: w.replaced } : {}),
      bytes,
      image_bytes: w.imageBytes,
      rejects_offset: this.#rejectsOffset,
      seconds: (performance.now() - w.started) / 1000,
      finished_at: new Date().toISOString(),
    };
    await writeFileAtomic(path.join(this.#o.dir, statsName(n)), `${JSON.stringify(stats, null, 2)}\n`);
    this.#shard = n + 1;
    this.#window = newWindow(w.inputEnd);
    this.#o.onCommit?.(stats);
    return stats;
  }

  /** Commits what is open and releases files. */
  async close(): Promise<void> {
    await this.commit();
    await this.#rejects?.close();
    this.#rejects = undefined;
  }

  /** Drops the open window without committing (its rows are redone by the next run). */
  async abort(): Promise<void> {
    await this.#writer?.abort();
    this.#writer = undefined;
    await this.#rejects?.close();
    this.#rejects = undefined;
  }

  #tmpPath(): string {
    return path.join(this.#o.dir, `.${shardName(this.#shard)}.tmp`);
  }

  async #appendReject(sample: Sample, reason: ReasonCode): Promise<void> {
    this.#rejects ??= await fs.open(path.join(this.#o.dir, REJECT_LOG), 'a');
    const record: RejectRecord = {
      key: sample.key,
      index: sample.index,
      url: sample.url,
      caption: sample.caption,
      source: `${sample.source.file}:${sample.source.row}`,
      reason,
      ...(sample.failedRules ? { failed: sample.failedRules } : {}),
      error_message: sample.errorMessage ?? '',
      http_status: sample.httpStatus ?? null,
      extra: sample.extra,
      kind: this.#o.kind,
    };
    const line = Buffer.from(`${JSON.stringify(record)}\n`);
    await this.#rejects.write(line);
    this.#rejectsOffset += line.length;
  }
}

/**
 * Writes every sample into the sink and commits the last window. On any error the open window is
 * dropped, not committed: its rows are redone by the next run, as after a kill.
 */
export async function drainInto(sink: ShardSink, samples: AsyncIterable<Sample>, onSample: (s: Sample) => void): Promise<void> {
  try {
    for await (const sample of samples) {
      onSample(sample);
      await sink.write(sample);
    }
    await sink.close();
  } catch (error) {
    await sink.abort();
    throw error;
  }
}

interface Window {
  inputStart: number;
  inputEnd: number;
  rows: number;
  ok: number;
  rejected: number;
  imageBytes: number;
  byReason: Partial<Record<ReasonCode, number>>;
  replaced: Partial<Record<ReasonCode, number>>;
  started: number;
}

function newWindow(inputStart: number): Window {
  return {
    inputStart,
    inputEnd: inputStart,
    rows: 0,
    ok: 0,
    rejected: 0,
    imageBytes: 0,
    byReason: {},
    replaced: {},
    started: performance.now(),
  };
}

/**
 * Marks the run in `dir` finished: writes its summary as `_summary.json`, the last file a run writes.
 * The later stages read only folders that have one (see committedShards); openOutput removes it when
 * a run starts again in the folder.
 */
export async function writeSummary(dir: string, summary: object): Promise<void> {
  await writeFileAtomic(path.join(dir, SUMMARY_FILE), `${JSON.stringify(summary, null, 2)}\n`);
}

export async function writeFileAtomic(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await fs.open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fs.rename(tmp, file);
}
