// Parquet manifests (LAION style) through hyparquet: the schema from the footer, then only the
// requested columns, one bounded window of rows at a time, so a file of any size reads in flat memory
// and a resume skips straight to the row group that holds its first row.

import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
  type AsyncBuffer,
  type FileMetaData,
  type ParquetRow,
} from 'hyparquet';

import { FilipError } from '../core/errors.js';
import { isGzipPath } from './files.js';

/**
 * Rows decoded per read. A row group larger than this is read in windows: hyparquet still fetches the
 * window's whole (compressed) column chunks, but skips the pages before the window without
 * decompressing them and stops after it, so decoded rows in memory stay bounded.
 */
export const PARQUET_WINDOW_ROWS = 1 << 16;

export interface OpenParquet {
  readonly buffer: AsyncBuffer;
  readonly metadata: FileMetaData;
  /** Top-level column names, in schema order. */
  readonly columns: readonly string[];
  readonly rows: number;
  /** Removes the temporary copy of a gunzipped file; a no-op otherwise. */
  close(): Promise<void>;
}

function cannotRead(file: string, err: unknown): FilipError {
  if (err instanceof FilipError) return err;
  return new FilipError('FILIP_ERR_MANIFEST', `cannot read parquet manifest: ${(err as Error).message}`, { file }, {
    cause: err,
  });
}

/**
 * Opens a parquet file and reads its footer. A `.parquet.gz` cannot be read at random, so it is first
 * gunzipped (streaming) into a temporary file that `close()` removes.
 */
export async function openParquet(file: string): Promise<OpenParquet> {
  let path = file;
  let tempDir: string | undefined;
  const close = async (): Promise<void> => {
    if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
  };
  try {
    if (isGzipPath(file)) {
      tempDir = await mkdtemp(join(tmpdir(), 'filip-manifest-'));
      path = join(tempDir, 'manifest.parquet');
      await pipeline(createReadStream(file), createGunzip(), createWriteStream(path));
    }
    const buffer = await asyncBufferFromFile(path);
    const metadata = await parquetMetadataAsync(buffer);
    const columns = parquetSchema(metadata).children.map((child) => child.element.name);
    return { buffer, metadata, columns, rows: Number(metadata.num_rows), close };
  } catch (err) {
    await close();
    throw cannotRead(file, err);
  }
}

/** Row count from the footer alone, or undefined for a gzipped file (that would need a full gunzip). */
export async function parquetRowCount(file: string): Promise<number | undefined> {
  if (isGzipPath(file)) return undefined;
  try {
    const metadata = await parquetMetadataAsync(await asyncBufferFromFile(file));
    return Number(metadata.num_rows);
  } catch (err) {
    throw cannotRead(file, err);
  }
}

/** Half-open row ranges covering [start, rows): whole row groups, split into windows when large. */
export function parquetWindows(
  metadata: Pick<FileMetaData, 'row_groups'>,
  start: number,
  windowRows = PARQUET_WINDOW_ROWS,
): Array<[number, number]> {
  const windows: Array<[number, number]> = [];
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    const groupEnd = groupStart + Number(group.num_rows);
    for (let s = Math.max(groupStart, start); s < groupEnd; s += windowRows) {
      windows.push([s, Math.min(groupEnd, s + windowRows)]);
    }
    groupStart = groupEnd;
  }
  return windows;
}

/**
 * Object rows of `columns` from row `start` on, one window per batch. The next window is decoded while
 * the consumer works on the current one (at most two windows in memory).
 */
export async function* readParquetRows(
  file: string,
  open: OpenParquet,
  columns: readonly string[],
  start: number,
  windowRows = PARQUET_WINDOW_ROWS,
): AsyncGenerator<{ readonly rowStart: number; readonly rows: ParquetRow[] }> {
  const windows = parquetWindows(open.metadata, start, windowRows);
  const read = (i: number): Promise<ParquetRow[]> => {
    const [rowStart, rowEnd] = windows[i]!;
    const pending = parquetReadObjects({
      file: open.buffer,
      metadata: open.metadata,
      columns: [...columns],
      rowStart,
      rowEnd,
      // Not useOffsetIndex: with offset indexes as parquetjs-lite writes them, hyparquet 1.33 returned
      // rows from the wrong pages (or empty rows) for a window inside a row group.
    });
    pending.catch(() => {}); // awaited below; this only stops an early return from leaving it unhandled
    return pending;
  };
  let next = windows.length > 0 ? read(0) : undefined;
  for (let i = 0; next !== undefined; i++) {
    let rows: ParquetRow[];
    try {
      rows = await next;
    } catch (err) {
      throw cannotRead(file, err);
    }
    next = i + 1 < windows.length ? read(i + 1) : undefined;
    yield { rowStart: windows[i]![0], rows };
  }
}
