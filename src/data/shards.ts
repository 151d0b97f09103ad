// The training-shard folder as the data loader sees it: which shard files there are and how many
// samples each holds (from `sizes.json` when the shard command wrote one, else from the files
// themselves), and the one interface both shard formats are read through: a shard is a list of row
// groups, and rows [lo, hi) of one group are read at once into TrainingSamples.
//
// Parquet shards (parquet.ts) are read with hyparquet directly, not through src/shard/reader.ts: the loader
// plans its reads by row group (to hold one at a time and to fetch single rows on resume) and counts the
// bytes it reads, and the reader only offers whole-file iteration or a range that reopens the file.
// WebDataset .tar shards (tar.ts) are indexed by their headers and read by byte ranges.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import { RUN_FILE, SUMMARY_FILE } from '../core/run-files.js';
import type { CaptionTranslation } from '../core/sample.js';
import { openParquetShard } from './parquet.js';
import { openTarShard } from './tar.js';
import { message } from './values.js';

/** The file the shard command writes beside its shards: `{ "00000.parquet": rows, ... }`. */
export const SIZES_FILE = 'sizes.json';

/** Shard formats by file extension. */
export const SHARD_FILE_FORMATS = {
  parquet: 'NNNNN.parquet: the training-shard columns (src/shard/schema.ts)',
  tar: 'NNNNN.tar: WebDataset members KEY.jpg, KEY.txt, KEY.json, KEY.viewN.jpg (src/shard/webdataset.ts)',
} as const;
export type ShardFileFormat = keyof typeof SHARD_FILE_FORMATS;

/** Shard file names the loader picks up when there is no sizes.json: 00000.parquet, 00001.tar, ... */
const SHARD_FILE = /^\d+\.(parquet|tar)$/;

export interface ShardInfo {
  /** Path of the shard file (the folder joined with its name). */
  readonly file: string;
  /** File name within the folder, e.g. `00003.parquet`. */
  readonly name: string;
  readonly format: ShardFileFormat;
  /** Samples in the shard. */
  readonly rows: number;
}

function formatOf(name: string): ShardFileFormat | undefined {
  const m = SHARD_FILE.exec(name) ?? /\.(parquet|tar)$/.exec(name);
  return m ? (m[1] as ShardFileFormat) : undefined;
}

/** Groups of fields a stream can read. Value = the columns behind it (docs, --help). */
export const STREAM_FIELDS = {
  caption: 'caption: the caption column',
  backTranslations: 'backTranslations: the back_translations column (JSON), parsed (an empty list when the shard has none)',
  image: 'image, imageFormat, width, height: the image column and its format and stored size',
  views: 'views: the AutoAugment columns view_0 ... view_{K-1} (an empty list when the shard has none)',
} as const;
export type StreamField = keyof typeof STREAM_FIELDS;
export const STREAM_FIELD_NAMES = Object.keys(STREAM_FIELDS) as StreamField[];

interface FieldValues {
  caption: { readonly caption: string };
  backTranslations: { readonly backTranslations: readonly CaptionTranslation[] };
  image: { readonly image: Buffer; readonly imageFormat: string; readonly width: number; readonly height: number };
  views: { readonly views: readonly Buffer[] };
}

type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;

/**
 * One training sample as the trainer gets it. The fields present are those of the field groups the
 * stream was opened with (`columns`); with the default, all of them. Binary values are copies that the
 * sample owns: keeping one does not keep a row group alive.
 */
export type TrainingSample<F extends StreamField = StreamField> = {
  readonly key: string;
  /** Shard file name and 0-based row within it: where the sample came from. */
  readonly shard: string;
  readonly row: number;
} & UnionToIntersection<FieldValues[F]>;

/** Every field filled in; the stream narrows it to TrainingSample<F> in its type only. */
export interface AnySample {
  key: string;
  shard: string;
  row: number;
  caption?: string;
  backTranslations?: CaptionTranslation[];
  image?: Buffer;
  imageFormat?: string;
  width?: number;
  height?: number;
  views?: Buffer[];
}

/** What the loader asked of the file system, and rows decoded. */
export interface ReadCounters {
  bytesRead: number;
  rowsRead: number;
  rowGroupsRead: number;
}

export function newCounters(): ReadCounters {
  return { bytesRead: 0, rowsRead: 0, rowGroupsRead: 0 };
}

/** An opened shard of either format. */
export interface ShardReader {
  readonly file: string;
  readonly rows: number;
  /** groupStarts[g] is the first row of row group g; the last entry is the row count. */
  readonly groupStarts: readonly number[];
  /**
   * Rows [lo, hi) as samples with the fields the reader was opened for. The rows should lie in one row
   * group: a group is what is fetched at once. With `keep`, only the rows it accepts become samples.
   */
  read(lo: number, hi: number, keep?: (row: number) => boolean): Promise<AnySample[]>;
}

/** Opens a shard to read the given field groups; counts what it reads into `counters`. */
export function openShard(info: Omit<ShardInfo, 'rows'>, fields: ReadonlySet<StreamField>, counters: ReadCounters): Promise<ShardReader> {
  return info.format === 'tar' ? openTarShard(info.file, fields, counters) : openParquetShard(info.file, fields, counters);
}

/**
 * Whether a folder's files are those of a filip-data run that has not finished. A filip-data output (it
 * has _run.json) is complete once its run wrote _summary.json, last; without it the run was killed or
 * is still going: its shards are a part of the data, and `shard`'s sizes.json is not there yet, so every
 * committed NNNNN file would be read as if it were all. Folders other tools wrote have neither file.
 */
export function unfinishedRun(names: readonly string[]): boolean {
  return names.includes(RUN_FILE) && !names.includes(SUMMARY_FILE);
}

/**
 * The folder's file names, after checking that it is a folder (FILIP_ERR_NO_INPUT) and, unless
 * `partial`, that it is not an unfinished filip-data run (FILIP_ERR_INPUT_UNFINISHED).
 */
export async function shardFolderNames(dir: string, options: ListShardsOptions = {}): Promise<string[]> {
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) throw new FilipError('FILIP_ERR_NO_INPUT', 'no such folder of training shards', { file: dir });
  const names = await fs.readdir(dir);
  if (!options.partial && unfinishedRun(names)) {
    throw new FilipError(
      'FILIP_ERR_INPUT_UNFINISHED',
      `the filip-data run writing this folder has not finished (no ${SUMMARY_FILE}): run its command again to complete it` +
        (options.partialFlag ? ', or pass --partial-input to read only the shards it has committed' : ''),
      { file: dir },
    );
  }
  return names;
}

export interface ListShardsOptions {
  /** Read a filip-data output whose run has not finished (no `_summary.json`). @default false */
  readonly partial?: boolean;
  /** The caller has a --partial-input flag, so the error may suggest it. @default false */
  readonly partialFlag?: boolean;
}

/**
 * Lists the shards of a folder in name order. A filip-data output folder whose run has not finished
 * is FILIP_ERR_INPUT_UNFINISHED unless `partial`; folders other tools wrote are read as they are.
 * With a sizes.json, exactly the .parquet and .tar files it names (its counts are checked against each
 * file when the file is opened); without one, every NNNNN.parquet and NNNNN.tar file, counted from the
 * file (a Parquet footer, the tar's headers). Shards with no rows are listed too (the planner skips them).
 */
export async function listShards(dir: string, options: ListShardsOptions = {}): Promise<ShardInfo[]> {
  const names = await shardFolderNames(dir, options);
  let shards: ShardInfo[];
  if (names.includes(SIZES_FILE)) {
    shards = await readSizes(dir, new Set(names));
  } else {
    shards = [];
    for (const name of names.filter((n) => SHARD_FILE.test(n)).sort()) {
      const info = { file: path.join(dir, name), name, format: formatOf(name)!, rows: -1 };
      shards.push({ ...info, rows: (await openShard(info, new Set(), newCounters())).rows });
    }
  }
  if (shards.length === 0) {
    throw new FilipError('FILIP_ERR_NO_INPUT', 'no shards (NNNNN.parquet or NNNNN.tar) in the folder', { file: dir });
  }
  return shards;
}

async function readSizes(dir: string, present: ReadonlySet<string>): Promise<ShardInfo[]> {
  const file = path.join(dir, SIZES_FILE);
  let sizes: unknown;
  try {
    sizes = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (err) {
    throw new FilipError('FILIP_ERR_SHARD', `cannot read the shard sizes: ${message(err)}`, { file }, { cause: err });
  }
  if (typeof sizes !== 'object' || sizes === null || Array.isArray(sizes)) {
    throw new FilipError('FILIP_ERR_SHARD', 'expected an object mapping shard file names to row counts', { file });
  }
  const shards: ShardInfo[] = [];
  const entries = Object.entries(sizes as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [name, rows] of entries) {
    const format = formatOf(name);
    if (format === undefined) continue;
    if (typeof rows !== 'number' || !Number.isSafeInteger(rows) || rows < 0) {
      throw new FilipError('FILIP_ERR_SHARD', `expected a row count, got ${JSON.stringify(rows)}`, { file, field: name });
    }
    if (name.includes('/') || name.includes('\\') || !present.has(name)) {
      throw new FilipError('FILIP_ERR_SHARD', `${SIZES_FILE} names a shard that is not in the folder`, { file: path.join(dir, name) });
    }
    shards.push({ file: path.join(dir, name), name, format, rows });
  }
  return shards;
}
