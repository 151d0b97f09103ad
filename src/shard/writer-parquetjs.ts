// The parquetjs-lite engine: pure JavaScript, no native code.
//
// Two things parquetjs-lite does by default are wrong for image shards, and both can be switched off per
// field (lib/schema.js passes `statistics` through, lib/writer.js checks `field.statistics !== false`):
// - min/max statistics for every column, in every page header, the column metadata and the column index.
//   For the image column that stores two whole images per page and per row group, and compares Buffers
//   with `<`, which stringifies them. Binary columns get `statistics: false`.
// - one codec for every column. Encoded images do not compress; binary columns are stored uncompressed.
// Memory: parquetjs-lite buffers a row group until `rowGroupSize` rows; it has no byte limit, so this sink
// cuts a row group early once the buffered values pass `rowGroupBytes` (see append()).

import { createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import parquet from 'parquetjs-lite';
import type { ParquetFieldOptions } from 'parquetjs-lite';
import type { ColumnSpec, ColumnType, ShardRow } from './schema.js';
import type { OpenShardSink, ResolvedShardWriterOptions, ShardSink, ShardCompression } from './writer.js';

export const PARQUETJS_DEFAULT_ROW_GROUP_SIZE = 4096;
/** Rows per data page. parquetjs-lite keeps every raw value of a page (and a Set of them) until the page
 * is encoded, so small pages keep that short-lived; ~64 x 50 KB images is ~3 MB a page. */
const PAGE_ROWS = 64;

const PARQUET_TYPES: Record<ColumnType, string> = {
  utf8: 'UTF8',
  binary: 'BYTE_ARRAY',
  int32: 'INT32',
  int64: 'INT64',
};

const CODECS: Record<ShardCompression, string> = {
  snappy: 'SNAPPY',
  zstd: 'ZSTD', // rejected earlier by writer.ts: the lite build has no ZSTD
  none: 'UNCOMPRESSED',
};

export function parquetjsSchemaFields(columns: readonly ColumnSpec[], compression: ShardCompression): Record<string, ParquetFieldOptions> {
  const fields: Record<string, ParquetFieldOptions> = {};
  for (const c of columns) {
    const binary = c.type === 'binary';
    fields[c.name] = {
      type: PARQUET_TYPES[c.type],
      optional: c.nullable,
      compression: binary ? 'UNCOMPRESSED' : CODECS[compression],
      ...(binary ? { statistics: false } : {}),
    };
  }
  return fields;
}

/** Approximate bytes a row holds in the row buffer: what matters is the binary and text payload. */
function rowBytes(row: ShardRow): number {
  let n = 0;
  for (const k in row) {
    const v = row[k];
    if (typeof v === 'string') n += Buffer.byteLength(v);
    else if (v instanceof Uint8Array) n += v.byteLength;
    else n += 8;
  }
  return n;
}

/**
 * parquetjs-lite builds each row group as one Buffer, growing it with `Buffer.concat([body, chunk])` once
 * per column: every column after the image column copies the whole row group again (about half the
 * writer's time with the shard schema, where 9 columns follow `image`). This hands the library's own
 * row-group encoder one column at a time and writes each column chunk as it comes. The bytes on disk are
 * the same as the library's (test/shard-writer.test.ts compares them); only the copying goes.
 */
function writeRowGroupsColumnByColumn(writer: ParquetWriterInternals): void {
  const envelope = writer.envelopeWriter;
  const encodeAndWrite = envelope.writeRowGroup;
  envelope.writeRowGroup = (records: unknown): Promise<unknown> => {
    let merged: RowGroupMeta | undefined;
    const writes: Promise<unknown>[] = [];
    for (const field of envelope.schema.fieldList) {
      if (field.isNested) continue;
      // A stand-in envelope with a one-column schema. Its offset is the real file offset, so the column
      // chunk's offsets come out right, and its writeSection is the real one (which advances the offset).
      const one = {
        schema: { fieldList: [field] },
        offset: envelope.offset,
        pageSize: envelope.pageSize,
        useDataPageV2: envelope.useDataPageV2,
        pageIndex: envelope.pageIndex,
        rowCount: 0,
        rowGroups: [] as RowGroupMeta[],
        writeSection: (buf: Buffer): Promise<unknown> => envelope.writeSection(buf),
      };
      writes.push(encodeAndWrite.call(one, records));
      const group = one.rowGroups[0]!;
      if (merged === undefined) {
        merged = group; // a thrift RowGroup with num_rows set; it collects the other columns
      } else {
        merged.columns.push(...group.columns);
        merged.total_byte_size += group.total_byte_size;
      }
    }
    if (merged !== undefined) {
      envelope.rowCount += merged.num_rows;
      envelope.rowGroups.push(merged);
    }
    return Promise.all(writes);
  };
}

/** The parts of parquetjs-lite 0.8.7's ParquetWriter / ParquetEnvelopeWriter (lib/writer.js) used above. */
interface RowGroupMeta {
  num_rows: number;
  total_byte_size: number;
  columns: unknown[];
}
interface EnvelopeInternals {
  schema: { fieldList: { isNested?: boolean }[] };
  offset: number;
  pageSize: number;
  useDataPageV2: boolean;
  pageIndex: boolean | undefined;
  rowCount: number;
  rowGroups: RowGroupMeta[];
  writeSection(buf: Buffer): Promise<unknown>;
  writeRowGroup(this: unknown, records: unknown): Promise<unknown>;
}
interface ParquetWriterInternals {
  envelopeWriter: EnvelopeInternals;
}

export const openParquetjsSink: OpenShardSink = (path, columns, opts) => openParquetjsSinkWith(path, columns, opts, true);

/** `columnByColumn: false` leaves parquetjs-lite's row-group writing as it is (tests compare the two). */
export async function openParquetjsSinkWith(
  path: string,
  columns: readonly ColumnSpec[],
  opts: ResolvedShardWriterOptions,
  columnByColumn: boolean,
): Promise<ShardSink> {
  const schema = new parquet.ParquetSchema(parquetjsSchemaFields(columns, opts.compression));
  const rowGroupSize = opts.rowGroupSize ?? PARQUETJS_DEFAULT_ROW_GROUP_SIZE;
  const out = createWriteStream(path);
  let streamError: Error | undefined;
  out.on('error', (err) => {
    streamError = err;
  });
  await once(out, 'open');
  // parquetjs-lite does not await the promise of its header write, so a failed write (or abort() while
  // it is pending) would be an unhandled rejection. It gets a stream whose callbacks never fail; the
  // error is kept and thrown by the next append() or finish().
  const quiet = {
    write(buf: Buffer, cb: () => void): boolean {
      out.write(buf, (err) => {
        if (err && !streamError) streamError = err;
        cb();
      });
      return true;
    },
    end(cb: () => void): void {
      out.end((err?: Error | null) => {
        if (err && !streamError) streamError = err;
        cb();
      });
    },
  };
  const writer = await parquet.ParquetWriter.openStream(schema, quiet as unknown as Writable, {
    rowGroupSize,
    pageSize: Math.min(PAGE_ROWS, rowGroupSize),
    // v1 data pages: every Parquet reader handles them; nothing here needs v2's uncompressed levels.
    useDataPageV2: false,
    // Its OffsetIndex is wrong after the first page (first_row_index reads `lastPage.count`, which is
    // never set), and hyparquet then returns rows from the wrong page. Readers get no page index.
    pageIndex: false,
  });
  if (columnByColumn) writeRowGroupsColumnByColumn(writer as unknown as ParquetWriterInternals);
  return new ParquetjsSink(path, out, writer, rowGroupSize, opts.rowGroupBytes, () => streamError);
}

class ParquetjsSink implements ShardSink {
  #pendingRows = 0;
  #pendingBytes = 0;

  constructor(
    private readonly path: string,
    private readonly out: WriteStream,
    private readonly writer: InstanceType<typeof parquet.ParquetWriter>,
    private readonly rowGroupSize: number,
    private readonly rowGroupBytes: number,
    private readonly streamError: () => Error | undefined,
  ) {}

  async append(row: ShardRow): Promise<void> {
    const err = this.streamError();
    if (err) throw err;
    const bytes = rowBytes(row);
    // parquetjs-lite flushes a row group right after the append that brings its row count to
    // rowGroupSize; lowering that to "this row" for one call cuts the group at a byte budget instead.
    const cut = this.#pendingRows + 1 < this.rowGroupSize && this.#pendingBytes + bytes >= this.rowGroupBytes;
    if (cut) this.writer.setRowGroupSize(this.#pendingRows + 1);
    try {
      await this.writer.appendRow(row);
    } catch (e) {
      // parquetjs-lite throws strings
      throw e instanceof Error ? e : new Error(String(e));
    } finally {
      if (cut) this.writer.setRowGroupSize(this.rowGroupSize);
    }
    this.#pendingRows += 1;
    this.#pendingBytes += bytes;
    if (cut || this.#pendingRows >= this.rowGroupSize) {
      this.#pendingRows = 0;
      this.#pendingBytes = 0;
    }
  }

  async finish(): Promise<void> {
    try {
      await this.writer.close();
    } catch (e) {
      throw e instanceof Error ? e : new Error(String(e));
    }
    if (!this.out.closed) await once(this.out, 'close');
    const err = this.streamError();
    if (err) throw err;
  }

  async discard(): Promise<void> {
    if (!this.out.closed) {
      const closed = once(this.out, 'close').catch(() => undefined);
      this.out.destroy();
      await closed;
    }
    await rm(this.path, { force: true });
  }
}
