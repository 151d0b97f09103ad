// Parquet training shards for the loader: the footer once, then row ranges of one row group at a time,
// with only the columns behind the requested field groups.

import path from 'node:path';
import * as zlib from 'node:zlib';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import type { AsyncBuffer, Compressors, FileMetaData } from 'hyparquet';
import { FilipError } from '../core/errors.js';
import { BACK_TRANSLATIONS_COLUMN, VIEW_PREFIX } from '../shard/schema.js';
import { bytes, checkBackTranslations, int, message, parseJson, text } from './values.js';
import type { AnySample, ReadCounters, ShardReader, StreamField } from './shards.js';

// zstd is in zlib from Node 22.15; the typings for Node 20 do not know it. Snappy is built into hyparquet.
const zstdDecompressSync = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Buffer }).zstdDecompressSync;
const COMPRESSORS: Compressors = {
  GZIP: (input) => zlib.gunzipSync(input),
  ...(zstdDecompressSync ? { ZSTD: (input: Uint8Array) => zstdDecompressSync(input) } : {}),
};

/** First read from the end of a shard for its footer; hyparquet reads the rest when the footer is longer.
 * A training shard's footer is a few KB (about 100 bytes per column per row group); hyparquet's own
 * default, 512 KiB, would read whole small shards just to open them. */
const FOOTER_FETCH_BYTES = 16 << 10;

export async function openParquetShard(file: string, fields: ReadonlySet<StreamField>, counters: ReadCounters): Promise<ShardReader> {
  let buffer: AsyncBuffer;
  let metadata: FileMetaData;
  try {
    const raw = await asyncBufferFromFile(file);
    buffer = {
      byteLength: raw.byteLength,
      slice: (start, end) => {
        counters.bytesRead += (end ?? raw.byteLength) - start;
        return raw.slice(start, end);
      },
    };
    metadata = await parquetMetadataAsync(buffer, { initialFetchSize: FOOTER_FETCH_BYTES });
  } catch (err) {
    throw new FilipError('FILIP_ERR_SHARD', `cannot open the shard: ${message(err)}`, { file }, { cause: err });
  }
  const groupStarts = [0];
  for (const g of metadata.row_groups) groupStarts.push(groupStarts[groupStarts.length - 1]! + Number(g.num_rows));
  const present = new Set(metadata.schema.slice(1).map((s) => s.name));
  let views = 0;
  while (present.has(`${VIEW_PREFIX}${views}`)) views++;

  const columns = ['key'];
  if (fields.has('caption')) columns.push('caption');
  // Ingest and filter shards (and other producers') have no back_translations column: like a shard
  // without views, they give the group as an empty list, so a caller need not probe the files first.
  const withTranslations = fields.has('backTranslations');
  if (withTranslations && present.has(BACK_TRANSLATIONS_COLUMN)) columns.push(BACK_TRANSLATIONS_COLUMN);
  if (fields.has('image')) columns.push('image', 'image_format', 'width', 'height');
  if (fields.has('views')) for (let v = 0; v < views; v++) columns.push(`${VIEW_PREFIX}${v}`);
  for (const c of columns) {
    if (!present.has(c)) throw new FilipError('FILIP_ERR_SHARD', 'the shard lacks a column the stream reads', { file, field: c });
  }
  const name = path.basename(file);
  const withViews = fields.has('views');

  function toSample(r: Record<string, unknown>, row: number): AnySample {
    const at = (field: string) => ({ file, row, field });
    const s: AnySample = { key: text(r.key, at('key')), shard: name, row };
    // A shard written with no views (or no back-translations) still gives the group: an empty list.
    if (withViews) s.views = [];
    if (withTranslations) s.backTranslations = [];
    for (const c of columns) {
      switch (c) {
        case 'key':
          break;
        case 'caption':
          s.caption = text(r.caption, at(c));
          break;
        case BACK_TRANSLATIONS_COLUMN:
          s.backTranslations = checkBackTranslations(parseJson(text(r[c], at(c)), at(c)), at(c));
          break;
        case 'image':
          s.image = bytes(r.image, at(c));
          break;
        case 'image_format':
          s.imageFormat = text(r.image_format, at(c));
          break;
        case 'width':
        case 'height':
          s[c] = int(r[c], at(c));
          break;
        default:
          // view_0 ... view_{K-1}, in order
          s.views!.push(bytes(r[c], at(c)));
      }
    }
    return s;
  }

  return {
    file,
    rows: groupStarts[groupStarts.length - 1]!,
    groupStarts,
    async read(lo, hi, keep) {
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file: buffer, metadata, columns, rowStart: lo, rowEnd: hi, utf8: false, compressors: COMPRESSORS });
      } catch (err) {
        throw new FilipError('FILIP_ERR_SHARD', `cannot read rows ${lo}..${hi}: ${message(err)}`, { file, row: lo }, { cause: err });
      }
      if (rows.length !== hi - lo) {
        throw new FilipError('FILIP_ERR_SHARD', `expected ${hi - lo} rows from ${lo}, read ${rows.length}`, { file, row: lo });
      }
      counters.rowsRead += rows.length;
      counters.rowGroupsRead++;
      const out: AnySample[] = [];
      for (let i = 0; i < rows.length; i++) if (keep === undefined || keep(lo + i)) out.push(toSample(rows[i]!, lo + i));
      return out;
    },
  };
}
