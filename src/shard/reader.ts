// Reads shard files back with hyparquet (pure JavaScript), independent of whichever engine wrote them.
// Values come back as plain JS: strings, numbers, Buffers (binary columns) and null. INT64 comes back
// as a number when it is a safe integer, else as a bigint.
//
// Binary values are Buffer views, not copies: keeping one image keeps the buffer it was decoded from
// (up to one column chunk of a row group). Copy it (Buffer.from(b)) to keep it long.

import * as zlib from 'node:zlib';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import type { AsyncBuffer, Compressors, FileMetaData } from 'hyparquet';
import { FilipError } from '../core/errors.js';
import { intOption } from '../core/options.js';

export interface ReadShardOptions {
  /** Columns to read. @default all */
  readonly columns?: string[];
  /** First row, 0-based, inclusive. @default 0 */
  readonly rowStart?: number;
  /** Row to stop before. @default the row count */
  readonly rowEnd?: number;
}

export interface IterateShardOptions {
  /** Columns to read. @default all */
  readonly columns?: string[];
  /**
   * With `columns`: more columns to read when the file has them (ones added to the schema later,
   * such as `near_dup_check`); a record lacks them otherwise. @default []
   */
  readonly optionalColumns?: string[];
  /**
   * Most rows decoded at a time. A file without a usable page index (neither engine here writes one) is
   * read one row group at a time whatever this says: hyparquet would otherwise re-read the whole column
   * chunk for every batch. Both writers bound their row groups, so memory stays bounded either way.
   * @default 256
   */
  readonly batchRows?: number;
}

export type ShardRecord = Record<string, unknown>;

// zstd is in zlib from Node 22.15 / 23.8; the typings for Node 20 do not know it.
const zstdDecompressSync = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync;

const COMPRESSORS: Compressors = {
  GZIP: (input) => zlib.gunzipSync(input),
  ...(zstdDecompressSync ? { ZSTD: (input: Uint8Array) => zstdDecompressSync(input) } : {}),
};

interface OpenShard {
  readonly file: AsyncBuffer;
  readonly metadata: FileMetaData;
  /** parquetjs-lite writes an OffsetIndex whose first_row_index is wrong after the first page; reading
   * through it returns rows from the wrong page, so files from parquet.js are read without it. */
  readonly usePageIndex: boolean;
}

async function openShard(path: string): Promise<OpenShard> {
  try {
    const file = await asyncBufferFromFile(path);
    const metadata = await parquetMetadataAsync(file);
    return { file, metadata, usePageIndex: !(metadata.created_by ?? '').startsWith('parquet.js') };
  } catch (err) {
    throw new FilipError('FILIP_ERR_SHARD', `cannot open the shard: ${errorMessage(err)}`, { file: path }, { cause: err });
  }
}

export async function shardRowCount(path: string): Promise<number> {
  const { metadata } = await openShard(path);
  return Number(metadata.num_rows);
}

export async function readShardRows(path: string, opts: ReadShardOptions = {}): Promise<ShardRecord[]> {
  const shard = await openShard(path);
  const total = Number(shard.metadata.num_rows);
  const rowStart = opts.rowStart === undefined ? 0 : intOption('rowStart', opts.rowStart, 0);
  const rowEnd = opts.rowEnd === undefined ? total : intOption('rowEnd', opts.rowEnd, rowStart);
  return readRange(path, shard, opts.columns, rowStart, Math.min(rowEnd, total));
}

export async function* iterateShard(path: string, opts: IterateShardOptions = {}): AsyncGenerator<ShardRecord> {
  const batchRows = opts.batchRows === undefined ? 256 : intOption('batchRows', opts.batchRows, 1);
  const shard = await openShard(path);
  let columns = opts.columns;
  if (columns !== undefined && opts.optionalColumns !== undefined) {
    const present = new Set(shard.metadata.schema.map((e) => e.name));
    columns = [...columns, ...opts.optionalColumns.filter((c) => present.has(c))];
  }
  const wanted = columns === undefined ? undefined : new Set(columns);
  let groupStart = 0;
  for (const group of shard.metadata.row_groups) {
    const groupRows = Number(group.num_rows);
    const groupEnd = groupStart + groupRows;
    const paged =
      shard.usePageIndex &&
      group.columns.every((c) => (wanted !== undefined && !wanted.has(c.meta_data?.path_in_schema.join('.') ?? '')) || c.offset_index_length);
    const step = paged ? batchRows : groupRows;
    for (let start = groupStart; start < groupEnd; start += step) {
      yield* await readRange(path, shard, columns, start, Math.min(start + step, groupEnd));
    }
    groupStart = groupEnd;
  }
}

async function readRange(
  path: string,
  shard: OpenShard,
  columns: string[] | undefined,
  rowStart: number,
  rowEnd: number,
): Promise<ShardRecord[]> {
  if (rowEnd <= rowStart) return [];
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({
      file: shard.file,
      metadata: shard.metadata,
      columns,
      rowStart,
      rowEnd,
      // Without this hyparquet turns every BYTE_ARRAY into a string, images included. UTF8-annotated
      // columns (parquetjs UTF8, DuckDB VARCHAR) are still decoded as strings.
      utf8: false,
      useOffsetIndex: shard.usePageIndex,
      compressors: COMPRESSORS,
    });
  } catch (err) {
    const msg = errorMessage(err);
    const hint = /ZSTD/.test(msg) && !zstdDecompressSync ? ' (zstd needs Node >= 22.15, or hyparquet-compressors)' : '';
    throw new FilipError('FILIP_ERR_SHARD', `cannot read rows ${rowStart}..${rowEnd}: ${msg}${hint}`, { file: path, row: rowStart }, { cause: err });
  }
  for (const row of rows) {
    for (const key of Object.keys(row)) row[key] = normalise(row[key]);
  }
  return rows;
}

function normalise(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
