// Writes one Parquet shard file. Every engine sits behind the same small ShardWriter interface; this
// module validates options and rows once, serialises writes, and owns the open/closed/aborted states,
// so an engine only has to append rows, finish the file and throw it away.
//
// The writer writes exactly `path`. The caller writes to a temporary name and renames it when close()
// resolves; abort() removes whatever was written.

import { stat } from 'node:fs/promises';
import { FilipError } from '../core/errors.js';
import { choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import type { ColumnSpec, ColumnType, ShardRow } from './schema.js';

export interface ShardWriter {
  /**
   * Appends one row. Rejects with FILIP_ERR_SHARD on a bad value (naming row and field) or after close/abort.
   * An engine may keep a reference to a binary value until its row group is written (lean does, to
   * avoid copying images): do not change a Buffer after passing it here.
   */
  write(row: ShardRow): Promise<void>;
  /** Finishes the file. `bytes` is the size of the file at `path`. */
  close(): Promise<{ rows: number; bytes: number }>;
  /** Stops writing and removes the partial file. A no-op after close() has resolved, or a second time. */
  abort(): Promise<void>;
}

export const WRITER_ENGINES = {
  parquetjs:
    'parquetjs-lite, pure JavaScript: row groups bounded by rows and bytes; no statistics and no compression on binary columns',
  duckdb:
    'DuckDB (@duckdb/node-api): rows go through an Appender into an in-memory table that spills to disk, then COPY TO parquet on close',
  lean:
    "filip-data's own minimal Parquet writer: PLAIN pages, no statistics, one writev per row group; images are written from the caller's Buffers, never copied",
} as const;
export type WriterEngine = keyof typeof WRITER_ENGINES;

export const SHARD_COMPRESSIONS = {
  snappy: 'fast, readable everywhere (hyparquet decodes it without extra packages)',
  zstd: 'smaller text columns; duckdb only, and reading it back needs a zstd decoder (Node >= 22.15 zlib)',
  none: 'no compression',
} as const;
export type ShardCompression = keyof typeof SHARD_COMPRESSIONS;

export interface ShardWriterOptions {
  /**
   * Most rows in one row group. DuckDB never makes a row group smaller than 2,048 rows (its vector size).
   * @default 4096 for parquetjs and lean, 2048 for duckdb
   */
  readonly rowGroupSize?: number;
  /**
   * parquetjs and lean: a row group is also cut once its buffered values reach this many bytes, so memory
   * stays at a few times this whatever the image sizes (measured peak RSS for 10,000 x 50 KB images:
   * 270 MB at 8 MB, 300 MB at 16 MB, 400 MB at 32 MB, 530 MB at 64 MB). The lean engine holds about one
   * row group (its images as references to the caller's Buffers). DuckDB cuts by rows only.
   * @default 16777216 (16 MiB)
   */
  readonly rowGroupBytes?: number;
  /**
   * Codec for the file. parquetjs and lean apply it to text and integer columns only: encoded images do
   * not compress, and snappy in JavaScript would cost ~5 ms per MB for nothing; neither has zstd. DuckDB
   * applies it to all columns.
   * @default 'snappy'
   */
  readonly compression?: ShardCompression;
  /**
   * duckdb only: DuckDB's memory_limit in MiB. The table spills to a temporary folder beside `path` beyond
   * it, but COPY needs several 2,048-row row groups' worth: 256 fails ("Out of Memory") with 50 KB images.
   * The process RSS runs at 2-3 times this limit.
   * @default 512
   */
  readonly duckdbMemoryLimitMb?: number;
}

export const SHARD_WRITER_DEFAULTS = {
  rowGroupSize: undefined as number | undefined,
  rowGroupBytes: 16 * 1024 * 1024,
  compression: 'snappy' as ShardCompression,
  duckdbMemoryLimitMb: 512,
};

export interface ResolvedShardWriterOptions {
  readonly rowGroupSize: number | undefined;
  readonly rowGroupBytes: number;
  readonly compression: ShardCompression;
  readonly duckdbMemoryLimitMb: number;
}

/** What an engine provides. The wrapper below guarantees: rows are valid, calls never overlap, and
 * finish() or discard() is called at most once, with no append() after either. */
export interface ShardSink {
  append(row: ShardRow): void | Promise<void>;
  /** Writes the complete file at `path` and releases everything. */
  finish(): Promise<void>;
  /** Releases everything and removes `path` if it exists. Must not throw for a half-built sink. */
  discard(): Promise<void>;
}

export type OpenShardSink = (
  path: string,
  columns: readonly ColumnSpec[],
  opts: ResolvedShardWriterOptions,
) => Promise<ShardSink>;

const COLUMN_TYPES: readonly ColumnType[] = ['utf8', 'binary', 'int32', 'int64'];

/** Engines that store a bigint in an int64 column exactly. parquetjs-lite parses INT64 values with
 * parseInt, which rounds anything past 2^53, so it is given safe integers only. */
const BIGINT_ENGINES: ReadonlySet<WriterEngine> = new Set(['duckdb', 'lean']);

/** Engines are loaded when asked for: DuckDB is an optional native dependency. */
const ENGINE_LOADERS: Record<WriterEngine, () => Promise<OpenShardSink>> = {
  parquetjs: async () => (await import('./writer-parquetjs.js')).openParquetjsSink,
  duckdb: async () => (await import('./writer-duckdb.js')).openDuckdbSink,
  lean: async () => (await import('./writer-lean.js')).openLeanSink,
};

export async function openShardWriter(
  path: string,
  columns: readonly ColumnSpec[],
  engine: WriterEngine,
  opts: ShardWriterOptions = {},
): Promise<ShardWriter> {
  stringOption('path', path);
  choiceOption('engine', engine, Object.keys(WRITER_ENGINES) as WriterEngine[]);
  checkColumns(columns);
  const resolved = resolveOptions(engine, opts);
  let sink: ShardSink;
  try {
    const open = await ENGINE_LOADERS[engine]();
    sink = await open(path, columns, resolved);
  } catch (err) {
    if (err instanceof FilipError) throw err;
    throw new FilipError('FILIP_ERR_SHARD', `cannot open a ${engine} shard writer: ${message(err)}`, { file: path }, { cause: err });
  }
  return new CheckedShardWriter(path, columns, sink, BIGINT_ENGINES.has(engine));
}

function resolveOptions(engine: WriterEngine, opts: ShardWriterOptions): ResolvedShardWriterOptions {
  if (typeof opts !== 'object' || opts === null) throw invalid('opts', 'an object', opts);
  rejectUnknownKeys('shard writer', opts, SHARD_WRITER_DEFAULTS);
  const o = { ...SHARD_WRITER_DEFAULTS, ...stripUndefined(opts) };
  const rowGroupSize = o.rowGroupSize === undefined ? undefined : intOption('rowGroupSize', o.rowGroupSize, 1);
  const compression = choiceOption('compression', o.compression, Object.keys(SHARD_COMPRESSIONS) as ShardCompression[]);
  if (engine === 'parquetjs' && compression === 'zstd') {
    throw invalid('compression', '"snappy" or "none" with the parquetjs engine (parquetjs-lite has no zstd)', compression);
  }
  if (engine === 'lean' && compression === 'zstd') {
    throw invalid('compression', '"snappy" or "none" with the lean engine (it has no zstd)', compression);
  }
  return {
    rowGroupSize,
    rowGroupBytes: intOption('rowGroupBytes', o.rowGroupBytes, 1),
    compression,
    duckdbMemoryLimitMb: intOption('duckdbMemoryLimitMb', o.duckdbMemoryLimitMb, 16),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function checkColumns(columns: readonly ColumnSpec[]): void {
  if (!Array.isArray(columns) || columns.length === 0) throw invalid('columns', 'a non-empty array of ColumnSpec', columns);
  const seen = new Set<string>();
  for (const c of columns) {
    if (typeof c?.name !== 'string' || c.name.length === 0) throw invalid('columns[].name', 'a non-empty string', c?.name);
    if (seen.has(c.name)) throw invalid('columns', 'unique column names', c.name);
    seen.add(c.name);
    choiceOption(`columns.${c.name}.type`, c.type, COLUMN_TYPES);
    if (typeof c.nullable !== 'boolean') throw invalid(`columns.${c.name}.nullable`, 'a boolean', c.nullable);
  }
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Checks one row against the columns before any engine sees it, so an engine never holds half a row.
 * It runs for every row: no closures or arrays are made here (tsx's keepNames turns every closure into an
 * Object.defineProperty call, which once cost more than the whole lean engine). */
export function checkRow(
  columns: readonly ColumnSpec[],
  names: ReadonlySet<string>,
  row: ShardRow,
  file: string,
  index: number,
  bigints = false,
): void {
  if (typeof row !== 'object' || row === null) {
    throw new FilipError('FILIP_ERR_SHARD', `row is not an object: ${typeof row}`, { file, row: index });
  }
  for (const key in row) {
    if (!names.has(key) && Object.hasOwn(row, key)) {
      throw new FilipError('FILIP_ERR_SHARD', 'the row has a column the shard schema does not know', { file, row: index, field: key });
    }
  }
  for (let i = 0; i < columns.length; i++) {
    const c = columns[i]!;
    const v: unknown = row[c.name];
    if (v === null || v === undefined) {
      if (!c.nullable) throw badValue(c, v, 'a value', file, index);
      continue;
    }
    switch (c.type) {
      case 'utf8':
        if (typeof v !== 'string') throw badValue(c, v, 'a string', file, index);
        break;
      case 'binary':
        if (!(v instanceof Uint8Array)) throw badValue(c, v, 'a Buffer', file, index);
        break;
      case 'int32':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
          throw badValue(c, v, 'a 32-bit integer', file, index);
        }
        break;
      case 'int64':
        // ShardRow has no bigint, but a caller with a value past 2^53 may pass one where the engine keeps it.
        if (typeof v === 'bigint' && bigints) {
          if (v < INT64_MIN || v > INT64_MAX) throw badValue(c, v, 'a 64-bit integer', file, index);
        } else if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
          throw badValue(c, v, bigints ? 'a safe integer or a 64-bit bigint' : 'a safe integer', file, index);
        }
        break;
    }
  }
}

function badValue(c: ColumnSpec, v: unknown, what: string, file: string, index: number): FilipError {
  return new FilipError('FILIP_ERR_SHARD', `expected ${what} for a ${c.type} column, got ${describe(v)}`, { file, row: index, field: c.name });
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (v instanceof Uint8Array) return `${v.constructor.name}(${v.byteLength})`;
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} chars` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${String(v)}`;
  return typeof v;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

type WriterState = 'open' | 'closing' | 'closed' | 'aborted' | 'failed';

const RESOLVED: Promise<void> = Promise.resolve();

class CheckedShardWriter implements ShardWriter {
  readonly #path: string;
  readonly #columns: readonly ColumnSpec[];
  readonly #names: ReadonlySet<string>;
  readonly #sink: ShardSink;
  readonly #bigints: boolean;
  #state: WriterState = 'open';
  #rows = 0;
  /** The last queued append; writes run one at a time even if the caller does not await them. */
  #tail: Promise<void> = RESOLVED;
  /** Appends started or queued and not yet settled. */
  #inFlight = 0;
  #failure: FilipError | undefined;
  #closing: Promise<{ rows: number; bytes: number }> | undefined;
  #sinkReleased = false;

  constructor(path: string, columns: readonly ColumnSpec[], sink: ShardSink, bigints: boolean) {
    this.#path = path;
    this.#bigints = bigints;
    this.#columns = columns;
    this.#names = new Set(columns.map((c) => c.name));
    this.#sink = sink;
  }

  write(row: ShardRow): Promise<void> {
    try {
      this.#assertOpen('write');
      checkRow(this.#columns, this.#names, row, this.#path, this.#rows, this.#bigints);
    } catch (err) {
      return Promise.reject(err);
    }
    const index = this.#rows++;
    if (this.#inFlight === 0) {
      // Nothing queued: append now. Most appends are synchronous (an engine buffering a row), and those
      // need no promise chain, which is most of the per-row cost of this wrapper.
      let pending: void | Promise<void>;
      try {
        pending = this.#sink.append(row);
      } catch (err) {
        return Promise.reject(this.#fail(err, index));
      }
      if (pending === undefined) return RESOLVED;
      return this.#track(pending.catch((err: unknown) => Promise.reject(this.#fail(err, index))));
    }
    return this.#track(this.#tail.then(() => this.#appendQueued(row, index)));
  }

  async #appendQueued(row: ShardRow, index: number): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.#state === 'aborted') throw this.#stateError('write');
    try {
      await this.#sink.append(row);
    } catch (err) {
      throw this.#fail(err, index);
    }
  }

  /** Makes `run` the tail that later writes, close() and abort() wait for. */
  #track(run: Promise<void>): Promise<void> {
    this.#inFlight++;
    this.#tail = run.then(this.#settled, this.#settled);
    return run;
  }

  readonly #settled = (): void => {
    this.#inFlight--;
  };

  #fail(err: unknown, index: number): FilipError {
    this.#failure = new FilipError('FILIP_ERR_SHARD', `cannot write row: ${message(err)}`, { file: this.#path, row: index }, { cause: err });
    this.#state = 'failed';
    return this.#failure;
  }

  close(): Promise<{ rows: number; bytes: number }> {
    try {
      this.#assertOpen('close');
    } catch (err) {
      return Promise.reject(err);
    }
    this.#state = 'closing';
    this.#closing = this.#finish();
    return this.#closing;
  }

  async #finish(): Promise<{ rows: number; bytes: number }> {
    await this.#tail;
    if (this.#failure) {
      await this.#release();
      throw this.#failure;
    }
    try {
      this.#sinkReleased = true;
      await this.#sink.finish();
      const { size } = await stat(this.#path);
      this.#state = 'closed';
      return { rows: this.#rows, bytes: size };
    } catch (err) {
      this.#state = 'failed';
      await this.#sink.discard().catch(() => undefined);
      throw new FilipError('FILIP_ERR_SHARD', `cannot finish the shard: ${message(err)}`, { file: this.#path }, { cause: err });
    }
  }

  async abort(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'aborted') return;
    if (this.#state === 'closing') {
      // The caller gave up while the footer was being written: let that finish, then remove the file.
      await this.#closing?.catch(() => undefined);
      this.#state = 'aborted';
      this.#sinkReleased = false;
      await this.#sink.discard().catch(() => undefined);
      return;
    }
    this.#state = 'aborted';
    await this.#tail;
    await this.#release();
  }

  async #release(): Promise<void> {
    if (this.#sinkReleased) return;
    this.#sinkReleased = true;
    await this.#sink.discard();
  }

  #assertOpen(op: string): void {
    if (this.#failure) throw this.#failure;
    if (this.#state !== 'open') throw this.#stateError(op);
  }

  #stateError(op: string): FilipError {
    const why = this.#state === 'aborted' ? 'abort()' : 'close()';
    return new FilipError('FILIP_ERR_SHARD', `${op}() after ${why}`, { file: this.#path });
  }
}
