// The DuckDB engine: one in-memory DuckDB database per shard. Rows go through an Appender into a table;
// close() runs `COPY shard TO path (FORMAT parquet, ...)`.
//
// Memory, measured with 10,000 x 50 KB images (bench/writer.ts --rows 10000 --reps 1):
// - memory_limit bounds DuckDB's buffer pool; past it the table spills to a temporary folder created
//   beside `path` (not os.tmpdir(), which may be RAM-backed) and removed on close/abort.
// - the Appender keeps its pending rows outside the buffer pool, so it is flushed every APPEND_FLUSH_ROWS
//   rows or APPEND_FLUSH_BYTES bytes; flushing only every 2,048 rows doubled the RSS.
// - DuckDB tries a dictionary for every string/blob column; hashing every image for it made COPY ~3x
//   slower (450 vs 130 ms for 50 MB). DICTIONARY_SIZE_LIMIT 1 (bytes) turns dictionaries off for the
//   file; the few repetitive text columns (image_format) still compress with the codec.
// - COPY buffers whole row groups (and their encoded pages, and the compressed pages), and DuckDB never
//   cuts a row group below 2,048 rows. For 50 KB images that is ~100 MB a group: COPY fails with
//   memory_limit 256MB, and with 512MB the process peaks at ~1.4 GB RSS (10,000 and 20,000 rows alike).
//   A larger ROW_GROUP_SIZE (one group per shard) failed even at 512MB. So DuckDB is the engine for
//   small rows; the parquetjs engine bounds row groups by bytes instead.
// @duckdb/node-api is loaded only when this engine is asked for.

import { FilipError } from '../core/errors.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { DuckDBAppender, DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { ColumnSpec, ColumnType, ShardRow } from './schema.js';
import type { OpenShardSink, ShardSink, ShardCompression } from './writer.js';

export const DUCKDB_DEFAULT_ROW_GROUP_SIZE = 2048;
const APPEND_FLUSH_ROWS = 256;
const APPEND_FLUSH_BYTES = 8 * 1024 * 1024;
const TABLE = 'shard';

const SQL_TYPES: Record<ColumnType, string> = {
  utf8: 'VARCHAR',
  binary: 'BLOB',
  int32: 'INTEGER',
  int64: 'BIGINT',
};

const CODECS: Record<ShardCompression, string> = {
  snappy: 'snappy',
  zstd: 'zstd',
  none: 'uncompressed',
};

const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;
const literal = (s: string): string => `'${s.replaceAll("'", "''")}'`;

export function duckdbCreateTable(columns: readonly ColumnSpec[]): string {
  const cols = columns.map((c) => `${ident(c.name)} ${SQL_TYPES[c.type]}${c.nullable ? '' : ' NOT NULL'}`);
  return `CREATE TABLE ${TABLE} (${cols.join(', ')})`;
}

export const openDuckdbSink: OpenShardSink = async (path, columns, opts) => {
  let DuckDBInstance: typeof import('@duckdb/node-api').DuckDBInstance;
  try {
    ({ DuckDBInstance } = await import('@duckdb/node-api'));
  } catch (cause) {
    // An optional dependency: say what to do rather than surface a module-resolution stack.
    throw new FilipError(
      'FILIP_ERR_INVALID_OPTION',
      'the duckdb writer needs the optional package @duckdb/node-api (npm install @duckdb/node-api), or use --writer lean',
      { file: path, field: 'writer' },
      { cause },
    );
  }
  const target = resolve(path);
  const spillDir = await mkdtemp(join(dirname(target), `.${basename(target)}.duckdb-`));
  let instance: DuckDBInstance | undefined;
  let connection: DuckDBConnection | undefined;
  try {
    instance = await DuckDBInstance.create(':memory:', {
      memory_limit: `${opts.duckdbMemoryLimitMb}MB`,
      temp_directory: spillDir,
      // One thread per shard: the pipeline runs shards side by side, and COPY of mostly-blob data is I/O bound.
      threads: '1',
      // Rows must come out in the order they were written.
      preserve_insertion_order: 'true',
    });
    connection = await instance.connect();
    await connection.run(duckdbCreateTable(columns));
    const appender = await connection.createAppender(TABLE);
    const copySql =
      `COPY ${TABLE} TO ${literal(target)} (FORMAT parquet, COMPRESSION ${CODECS[opts.compression]}, ` +
      `ROW_GROUP_SIZE ${opts.rowGroupSize ?? DUCKDB_DEFAULT_ROW_GROUP_SIZE}, DICTIONARY_SIZE_LIMIT 1)`;
    return new DuckdbSink(target, spillDir, columns, instance, connection, appender, copySql);
  } catch (err) {
    connection?.closeSync();
    instance?.closeSync();
    await rm(spillDir, { recursive: true, force: true });
    throw err;
  }
};

class DuckdbSink implements ShardSink {
  #pendingRows = 0;
  #pendingBytes = 0;
  #released = false;
  #appenderOpen = true;

  constructor(
    private readonly path: string,
    private readonly spillDir: string,
    private readonly columns: readonly ColumnSpec[],
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
    private readonly appender: DuckDBAppender,
    private readonly copySql: string,
  ) {}

  append(row: ShardRow): void {
    const a = this.appender;
    let bytes = 0;
    for (const c of this.columns) {
      const v = row[c.name];
      if (v === null || v === undefined) {
        a.appendNull();
        continue;
      }
      // Types were checked by writer.ts (checkRow) before this call.
      switch (c.type) {
        case 'utf8':
          a.appendVarchar(v as string);
          bytes += (v as string).length;
          break;
        case 'binary':
          a.appendBlob(v as Uint8Array);
          bytes += (v as Uint8Array).byteLength;
          break;
        case 'int32':
          a.appendInteger(v as number);
          break;
        case 'int64':
          a.appendBigInt(BigInt(v as number));
          break;
      }
    }
    a.endRow();
    this.#pendingRows += 1;
    this.#pendingBytes += bytes;
    if (this.#pendingRows >= APPEND_FLUSH_ROWS || this.#pendingBytes >= APPEND_FLUSH_BYTES) {
      a.flushSync();
      this.#pendingRows = 0;
      this.#pendingBytes = 0;
    }
  }

  async finish(): Promise<void> {
    this.#closeAppender();
    await this.connection.run(this.copySql);
    await this.#release();
  }

  async discard(): Promise<void> {
    try {
      this.#closeAppender();
    } catch {
      // a half-written row or a failed flush: the table is thrown away anyway
    }
    await this.#release();
    await rm(this.path, { force: true });
  }

  #closeAppender(): void {
    if (!this.#appenderOpen) return;
    this.#appenderOpen = false;
    this.appender.closeSync();
  }

  async #release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    this.connection.closeSync();
    this.instance.closeSync();
    await rm(this.spillDir, { recursive: true, force: true });
  }
}
