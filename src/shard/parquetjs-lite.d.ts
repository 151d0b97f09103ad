// Types for the part of parquetjs-lite 0.8 (CommonJS, untyped) that writer-parquetjs.ts uses.
// Field options and writer internals are read from lib/schema.js and lib/writer.js.

declare module 'parquetjs-lite' {
  import type { Writable } from 'node:stream';

  export interface ParquetFieldOptions {
    /** A logical or primitive type name from lib/types.js, e.g. 'UTF8', 'BYTE_ARRAY', 'INT32', 'INT64'. */
    type: string;
    optional?: boolean;
    /** 'UNCOMPRESSED' | 'GZIP' | 'SNAPPY' (the lite build has no ZSTD). */
    compression?: string;
    encoding?: string;
    /** false: write no min/max/distinct statistics (page headers, column metadata, column index). */
    statistics?: boolean;
  }

  export class ParquetSchema {
    constructor(fields: Record<string, ParquetFieldOptions>);
  }

  export interface ParquetWriterOptions {
    rowGroupSize?: number;
    /** Rows per data page, not bytes. */
    pageSize?: number;
    useDataPageV2?: boolean;
    pageIndex?: boolean;
  }

  export class ParquetWriter {
    static openStream(schema: ParquetSchema, stream: Writable, opts?: ParquetWriterOptions): Promise<ParquetWriter>;
    appendRow(row: Record<string, unknown>): Promise<void>;
    close(): Promise<void>;
    setRowGroupSize(rows: number): void;
    setMetadata(key: string, value: string): void;
  }

  const parquet: {
    ParquetSchema: typeof ParquetSchema;
    ParquetWriter: typeof ParquetWriter;
  };
  export default parquet;
}
