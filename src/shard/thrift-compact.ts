// Thrift compact-protocol encoding of the few parquet.thrift structs the lean writer needs: PageHeader
// (with DataPageHeader) before every page, FileMetaData (SchemaElement, RowGroup, ColumnChunk,
// ColumnMetaData) in the footer. Encode only; hyparquet and DuckDB are the decoders the tests use.
//
// Compact protocol in brief: a struct is a sequence of fields, each a header byte (field-id delta << 4 |
// type) and a value, ended by a 0 byte; integers are zigzag varints; strings are a varint length and the
// bytes; a list is a header byte (size << 4 | element type, or 0xF0 | type and a varint size) and the
// elements. Field ids are written in increasing order, so the delta form is always the one used here.

/** Compact-protocol type ids. */
const T = {
  I32: 5,
  I64: 6,
  BINARY: 8,
  LIST: 9,
  STRUCT: 12,
} as const;

/** parquet.thrift enums, as far as the lean writer uses them. */
export const ParquetType = { INT32: 1, INT64: 2, BYTE_ARRAY: 6 } as const;
export const Repetition = { REQUIRED: 0, OPTIONAL: 1 } as const;
export const ConvertedType = { UTF8: 0 } as const;
export const Encoding = { PLAIN: 0, RLE: 3 } as const;
export const Codec = { UNCOMPRESSED: 0, SNAPPY: 1 } as const;
export const PageType = { DATA_PAGE: 0 } as const;

export interface SchemaElement {
  readonly name: string;
  readonly type?: number;
  readonly repetition?: number;
  readonly numChildren?: number;
  readonly convertedType?: number;
  /** LogicalType STRING (the union's field 1, an empty struct). */
  readonly logicalString?: boolean;
}

export interface ColumnChunkMeta {
  readonly type: number;
  readonly encodings: readonly number[];
  readonly path: readonly string[];
  readonly codec: number;
  readonly numValues: number;
  readonly totalUncompressedSize: number;
  readonly totalCompressedSize: number;
  readonly dataPageOffset: number;
}

export interface RowGroupMeta {
  readonly columns: readonly ColumnChunkMeta[];
  readonly totalByteSize: number;
  readonly numRows: number;
  readonly fileOffset: number;
  readonly totalCompressedSize: number;
}

export interface FileMeta {
  readonly schema: readonly SchemaElement[];
  readonly numRows: number;
  readonly rowGroups: readonly RowGroupMeta[];
  readonly createdBy: string;
}

export interface DataPageHeaderFields {
  readonly uncompressedSize: number;
  readonly compressedSize: number;
  readonly numValues: number;
}

/** A growable byte buffer with the compact-protocol primitives. Field ids are tracked per open struct. */
export class CompactWriter {
  #buf: Buffer;
  #pos = 0;
  #lastField = 0;
  readonly #stack: number[] = [];

  constructor(initialBytes = 256) {
    this.#buf = Buffer.allocUnsafe(initialBytes);
  }

  /** The bytes written so far (a view of the internal buffer). */
  bytes(): Buffer {
    return this.#buf.subarray(0, this.#pos);
  }

  #ensure(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#pos + n));
    this.#buf.copy(next, 0, 0, this.#pos);
    this.#buf = next;
  }

  #byte(b: number): void {
    this.#ensure(1);
    this.#buf[this.#pos++] = b;
  }

  /** Unsigned varint of a non-negative integer up to 2^53 (plain number arithmetic above 2^31). */
  #varint(v: number): void {
    this.#ensure(10);
    const buf = this.#buf;
    while (v > 0x7f) {
      buf[this.#pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    buf[this.#pos++] = v;
  }

  #fieldHeader(id: number, type: number): void {
    const delta = id - this.#lastField;
    if (delta > 0 && delta <= 15) {
      this.#byte((delta << 4) | type);
    } else {
      this.#byte(type);
      this.#varint(zigzag32(id));
    }
    this.#lastField = id;
  }

  i32(id: number, v: number): void {
    this.#fieldHeader(id, T.I32);
    this.#varint(zigzag32(v));
  }

  i64(id: number, v: number): void {
    this.#fieldHeader(id, T.I64);
    this.#varint(zigzag53(v));
  }

  string(id: number, s: string): void {
    this.#fieldHeader(id, T.BINARY);
    this.#stringValue(s);
  }

  #stringValue(s: string): void {
    const n = Buffer.byteLength(s);
    this.#varint(n);
    this.#ensure(n);
    this.#pos += this.#buf.write(s, this.#pos, 'utf8');
  }

  /** Opens a struct-typed field; close it with end(). */
  struct(id: number): void {
    this.#fieldHeader(id, T.STRUCT);
    this.begin();
  }

  /** Starts a struct value (top level, or a list element). */
  begin(): void {
    this.#stack.push(this.#lastField);
    this.#lastField = 0;
  }

  /** Ends the innermost struct value. */
  end(): void {
    this.#byte(0);
    this.#lastField = this.#stack.pop() ?? 0;
  }

  #listHeader(id: number, size: number, elemType: number): void {
    this.#fieldHeader(id, T.LIST);
    if (size < 15) {
      this.#byte((size << 4) | elemType);
    } else {
      this.#byte(0xf0 | elemType);
      this.#varint(size);
    }
  }

  listI32(id: number, values: readonly number[]): void {
    this.#listHeader(id, values.length, T.I32);
    for (const v of values) this.#varint(zigzag32(v));
  }

  listString(id: number, values: readonly string[]): void {
    this.#listHeader(id, values.length, T.BINARY);
    for (const v of values) this.#stringValue(v);
  }

  /** A list of structs: `each` writes one element's fields between begin() and end(). */
  listStruct<E>(id: number, values: readonly E[], each: (w: CompactWriter, e: E) => void): void {
    this.#listHeader(id, values.length, T.STRUCT);
    for (const v of values) {
      this.begin();
      each(this, v);
      this.end();
    }
  }
}

function zigzag32(n: number): number {
  return ((n << 1) ^ (n >> 31)) >>> 0;
}

/** Zigzag of an integer in the safe range; doubling is exact in floating point, so no bigint is needed. */
function zigzag53(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

/** PageHeader { type: DATA_PAGE, sizes, data_page_header: { num_values, PLAIN, RLE, RLE } }. */
export function encodeDataPageHeader(h: DataPageHeaderFields): Buffer {
  const w = new CompactWriter(32);
  w.begin();
  w.i32(1, PageType.DATA_PAGE);
  w.i32(2, h.uncompressedSize);
  w.i32(3, h.compressedSize);
  w.struct(5);
  w.i32(1, h.numValues);
  w.i32(2, Encoding.PLAIN);
  w.i32(3, Encoding.RLE); // definition levels
  w.i32(4, Encoding.RLE); // repetition levels (none: the schema is flat)
  w.end();
  w.end();
  return w.bytes();
}

export function encodeFileMetaData(md: FileMeta): Buffer {
  const w = new CompactWriter(1024);
  w.begin();
  w.i32(1, 1); // version
  w.listStruct(2, md.schema, (w, e) => {
    if (e.type !== undefined) w.i32(1, e.type);
    if (e.repetition !== undefined) w.i32(3, e.repetition);
    w.string(4, e.name);
    if (e.numChildren !== undefined) w.i32(5, e.numChildren);
    if (e.convertedType !== undefined) w.i32(6, e.convertedType);
    if (e.logicalString) {
      w.struct(10); // LogicalType union
      w.struct(1); // STRING: StringType {}
      w.end();
      w.end();
    }
  });
  w.i64(3, md.numRows);
  w.listStruct(4, md.rowGroups, (w, g) => {
    w.listStruct(1, g.columns, (w, c) => {
      w.i64(2, c.dataPageOffset); // file_offset (deprecated; the chunk's first byte)
      w.struct(3);
      w.i32(1, c.type);
      w.listI32(2, c.encodings);
      w.listString(3, c.path);
      w.i32(4, c.codec);
      w.i64(5, c.numValues);
      w.i64(6, c.totalUncompressedSize);
      w.i64(7, c.totalCompressedSize);
      w.i64(9, c.dataPageOffset);
      w.end();
    });
    w.i64(2, g.totalByteSize);
    w.i64(3, g.numRows);
    w.i64(5, g.fileOffset);
    w.i64(6, g.totalCompressedSize);
  });
  w.string(6, md.createdBy);
  w.end();
  return w.bytes();
}
