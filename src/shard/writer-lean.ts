// The lean engine: filip-data's own Parquet writer, for exactly the flat shard schemas (utf8, binary,
// int32, int64 columns; required or optional; no nesting). It exists because parquetjs-lite spends too
// much main-thread CPU per row (a generic thrift protocol, 64-row pages, Buffer.concat copies, many
// small objects), and ingest throughput is bounded by that CPU.
//
// What it writes, and why that is enough:
// - "PAR1", row groups, FileMetaData (thrift-compact.ts), its 4-byte length, "PAR1".
// - One column chunk per column per row group, made of v1 DATA_PAGEs, PLAIN encoding, no dictionary, no
//   statistics, no page index. Readers here scan whole row groups anyway (src/shard/reader.ts).
// - Pages are cut at TEXT_PAGE_BYTES for text and integer columns and at BINARY_PAGE_BYTES for binary
//   ones, so with the default rowGroupBytes the image column is one page per row group.
// - OPTIONAL columns carry definition levels (RLE/bit-packed hybrid, bit width 1, 4-byte length
//   prefix) and only their non-null values; REQUIRED columns carry no levels.
// - compression 'snappy' applies to text and integer columns only (a small compressor below); binary
//   columns are stored uncompressed: encoded images do not compress. A text column whose first
//   sizeable page saves less than 20% (hex digests) is stored uncompressed from its next row group on:
//   snappy in JavaScript costs more per row than all the rest of this writer.
//
// Memory and copies: a row group is held until it is cut (by rows or by bytes, as the parquetjs engine
// does). Text and integers are encoded straight into per-column 64 KiB chunks; binary values of
// COPY_BELOW bytes and more are NOT copied but kept as references to the caller's buffers until their row
// group is written with one writev() of all its pieces. The caller must not change a Buffer after
// passing it to write() (the pipeline never does: every image is a fresh Buffer from sharp).

import { open, rm, type FileHandle } from 'node:fs/promises';
import type { ColumnSpec, ShardRow } from './schema.js';
import {
  Codec,
  ConvertedType,
  Encoding,
  ParquetType,
  Repetition,
  encodeDataPageHeader,
  encodeFileMetaData,
  type ColumnChunkMeta,
  type RowGroupMeta,
  type SchemaElement,
} from './thrift-compact.js';
import type { OpenShardSink, ShardSink } from './writer.js';

export const LEAN_DEFAULT_ROW_GROUP_SIZE = 4096;
/** Page size limit for text and integer columns: small enough for any reader's page buffers. */
const TEXT_PAGE_BYTES = 1 << 20;
/** Page size limit for binary columns; rowGroupBytes (16 MiB by default) usually cuts first. */
const BINARY_PAGE_BYTES = 64 << 20;
/** Size of the scratch chunks that text, integers, length prefixes and small binary values go into. */
const CHUNK_BYTES = 64 << 10;
/** Binary values shorter than this are copied into the chunk; longer ones are written from the caller's
 * buffer (one iovec each). */
const COPY_BELOW = 1024;
/** Strings up to this many UTF-16 units are tried as ASCII in a JavaScript loop before calling into C++. */
const ASCII_LOOP_MAX = 16;
/** Snappy is given up on for a column when a page of at least SNAPPY_PROBE_BYTES compresses to more than
 * SNAPPY_MIN_RATIO of its size (hex sha256: 0.94, hex phash: 0.85; captions and URLs: ~0.35). */
const SNAPPY_PROBE_BYTES = 4096;
const SNAPPY_MIN_RATIO = 0.8;
const INT32_MAX = 2 ** 31 - 1;
const MAGIC = Buffer.from('PAR1', 'latin1');
const CREATED_BY = 'filip-data lean writer';

const UTF8 = 0;
const BINARY = 1;
const INT32 = 2;
const INT64 = 3;
const KINDS = { utf8: UTF8, binary: BINARY, int32: INT32, int64: INT64 } as const;
const PHYSICAL = [ParquetType.BYTE_ARRAY, ParquetType.BYTE_ARRAY, ParquetType.INT32, ParquetType.INT64] as const;

/**
 * A byte sink that is a list of pieces: views of its own scratch chunks, and caller buffers referenced
 * as they are. take() hands the pieces so far to a page; the chunk bytes stay untouched until recycle(),
 * which keeps the filled chunks for the next row group instead of leaving them to the GC.
 */
class Pieces {
  #chunk: Buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  #start = 0;
  #pos = 0;
  #parts: Uint8Array[] = [];
  /** Chunks filled since the last recycle(), and chunks free for reuse. */
  #filled: Buffer[] = [];
  #spare: Buffer[] = [];

  #reserve(n: number): void {
    if (this.#pos + n <= this.#chunk.length) return;
    this.#seal();
    this.#filled.push(this.#chunk);
    this.#chunk = (n <= CHUNK_BYTES ? this.#spare.pop() : undefined) ?? Buffer.allocUnsafe(Math.max(CHUNK_BYTES, n));
    this.#start = 0;
    this.#pos = 0;
  }

  #seal(): void {
    if (this.#pos > this.#start) {
      this.#parts.push(this.#chunk.subarray(this.#start, this.#pos));
      this.#start = this.#pos;
    }
  }

  /** PLAIN BYTE_ARRAY of a string: 4-byte length, UTF-8 bytes. Returns the bytes added. */
  string(s: string): number {
    const units = s.length;
    this.#reserve(4 + units * 3); // UTF-8 needs at most 3 bytes per UTF-16 unit
    const chunk = this.#chunk;
    const at = this.#pos + 4;
    let n = 0;
    if (units <= ASCII_LOOP_MAX) {
      while (n < units) {
        const c = s.charCodeAt(n);
        if (c > 0x7f) break;
        chunk[at + n] = c;
        n++;
      }
      if (n < units) n = chunk.write(s, at, 'utf8');
    } else {
      n = chunk.write(s, at, 'utf8');
    }
    chunk.writeUInt32LE(n, at - 4);
    this.#pos = at + n;
    return 4 + n;
  }

  /** PLAIN BYTE_ARRAY of bytes: 4-byte length, then the bytes (copied when short, else referenced). */
  bytes(b: Uint8Array): number {
    const n = b.byteLength;
    if (n < COPY_BELOW) {
      this.#reserve(4 + n);
      this.#chunk.writeUInt32LE(n, this.#pos);
      this.#chunk.set(b, this.#pos + 4);
      this.#pos += 4 + n;
    } else {
      this.#reserve(4);
      this.#chunk.writeUInt32LE(n, this.#pos);
      this.#pos += 4;
      this.#seal();
      this.#parts.push(b);
    }
    return 4 + n;
  }

  int32(v: number): number {
    this.#reserve(4);
    this.#chunk.writeInt32LE(v, this.#pos);
    this.#pos += 4;
    return 4;
  }

  int64(v: number | bigint): number {
    this.#reserve(8);
    if (typeof v === 'bigint') {
      this.#chunk.writeBigInt64LE(v, this.#pos);
    } else {
      // Two's complement from a safe integer without a BigInt: ToUint32 is the low word mod 2^32, and
      // floor division gives the (signed) high word.
      this.#chunk.writeUInt32LE(v >>> 0, this.#pos);
      this.#chunk.writeInt32LE(Math.floor(v / 4294967296), this.#pos + 4);
    }
    this.#pos += 8;
    return 8;
  }

  /** The pieces added since the last take(). */
  take(): Uint8Array[] {
    this.#seal();
    const parts = this.#parts;
    this.#parts = [];
    return parts;
  }

  /** Reuses the chunks from their start: only once every piece taken from them has been written. */
  recycle(): void {
    for (const c of this.#filled) if (c.length === CHUNK_BYTES) this.#spare.push(c);
    this.#filled = [];
    this.#start = 0;
    this.#pos = 0;
  }
}

interface Page {
  /** Rows of the row group in this page: [firstRow, endRow). */
  readonly firstRow: number;
  readonly endRow: number;
  readonly values: Uint8Array[];
  readonly valueBytes: number;
}

class ColumnBuffer {
  readonly name: string;
  readonly kind: number;
  readonly optional: boolean;
  readonly pageLimit: number;
  /** Compress this column's pages; turned off for good once a page shows the data does not compress. */
  snappy: boolean;
  readonly out = new Pieces();
  /** Definition level (0 null, 1 value) of every row in the row group; optional columns only. */
  levels: Uint8Array;
  pages: Page[] = [];
  pageFirstRow = 0;
  pageBytes = 0;

  constructor(spec: ColumnSpec, snappy: boolean) {
    this.name = spec.name;
    this.kind = KINDS[spec.type];
    this.optional = spec.nullable;
    this.pageLimit = this.kind === BINARY ? BINARY_PAGE_BYTES : TEXT_PAGE_BYTES;
    this.snappy = snappy && this.kind !== BINARY;
    this.levels = new Uint8Array(spec.nullable ? 1024 : 0);
  }

  setLevel(row: number, level: number): void {
    if (row >= this.levels.length) {
      const next = new Uint8Array(this.levels.length * 2);
      next.set(this.levels);
      this.levels = next;
    }
    this.levels[row] = level;
  }

  cutPage(endRow: number): void {
    if (endRow === this.pageFirstRow) return;
    this.pages.push({ firstRow: this.pageFirstRow, endRow, values: this.out.take(), valueBytes: this.pageBytes });
    this.pageFirstRow = endRow;
    this.pageBytes = 0;
  }

  /** After the row group is on disk. */
  reset(): void {
    this.pages = [];
    this.pageFirstRow = 0;
    this.pageBytes = 0;
    this.out.recycle();
  }
}

export const openLeanSink: OpenShardSink = async (path, columns, opts) => {
  const fh = await open(path, 'w');
  return new LeanSink(path, fh, columns, opts.rowGroupSize ?? LEAN_DEFAULT_ROW_GROUP_SIZE, opts.rowGroupBytes, opts.compression === 'snappy');
};

class LeanSink implements ShardSink {
  readonly #path: string;
  readonly #fh: FileHandle;
  readonly #specs: readonly ColumnSpec[];
  readonly #columns: ColumnBuffer[];
  readonly #rowGroupSize: number;
  readonly #rowGroupBytes: number;
  readonly #rowGroups: RowGroupMeta[] = [];
  /** Bytes written to the file so far (the magic counts once it is written). */
  #offset = 0;
  #totalRows = 0;
  #groupRows = 0;
  #groupBytes = 0;
  #closed = false;

  constructor(path: string, fh: FileHandle, specs: readonly ColumnSpec[], rowGroupSize: number, rowGroupBytes: number, snappy: boolean) {
    this.#path = path;
    this.#fh = fh;
    this.#specs = specs;
    this.#columns = specs.map((s) => new ColumnBuffer(s, snappy));
    this.#rowGroupSize = rowGroupSize;
    this.#rowGroupBytes = rowGroupBytes;
  }

  append(row: ShardRow): void | Promise<void> {
    const r = this.#groupRows;
    const columns = this.#columns;
    let bytes = 0;
    for (let i = 0; i < columns.length; i++) {
      const c = columns[i]!;
      const v = row[c.name];
      if (c.optional) {
        if (v === null || v === undefined) {
          c.setLevel(r, 0);
          continue;
        }
        c.setLevel(r, 1);
      }
      // Types were checked by writer.ts (checkRow) before this call.
      let n: number;
      switch (c.kind) {
        case UTF8:
          n = c.out.string(v as string);
          break;
        case BINARY:
          n = c.out.bytes(v as Uint8Array);
          break;
        case INT32:
          n = c.out.int32(v as number);
          break;
        default:
          n = c.out.int64(v as number | bigint);
          break;
      }
      bytes += n;
      c.pageBytes += n;
      if (c.pageBytes >= c.pageLimit) c.cutPage(r + 1);
    }
    this.#groupRows = r + 1;
    this.#groupBytes += bytes;
    if (this.#groupRows >= this.#rowGroupSize || this.#groupBytes >= this.#rowGroupBytes) return this.#flushRowGroup();
  }

  async #flushRowGroup(): Promise<void> {
    const rows = this.#groupRows;
    const pieces: Uint8Array[] = [];
    if (this.#offset === 0) pieces.push(MAGIC);
    let offset = this.#offset === 0 ? MAGIC.length : this.#offset;
    const groupStart = offset;
    const chunks: ColumnChunkMeta[] = [];
    let totalUncompressed = 0;
    for (const c of this.#columns) {
      c.cutPage(rows);
      const chunkStart = offset;
      const snappy = c.snappy; // the codec is per column chunk: all its pages share it
      let uncompressedSize = 0;
      for (const page of c.pages) {
        const levels = c.optional ? encodeLevels(c.levels, page.firstRow, page.endRow) : undefined;
        const rawSize = (levels?.byteLength ?? 0) + page.valueBytes;
        if (rawSize > INT32_MAX) throw new Error(`column "${c.name}": a page of ${rawSize} bytes is over the 2 GiB Parquet page limit`);
        let body = levels === undefined ? page.values : [levels, ...page.values];
        let size = rawSize;
        if (snappy) {
          const compressed = snappyCompress(Buffer.concat(body, rawSize));
          body = [compressed];
          size = compressed.byteLength;
          // Hex digests and the like hardly compress, and snappy in JavaScript costs ~5-10 ns a byte:
          // judged on a page big enough to tell, such a column is stored uncompressed from the next row group.
          if (rawSize >= SNAPPY_PROBE_BYTES && size > rawSize * SNAPPY_MIN_RATIO) c.snappy = false;
        }
        const header = encodeDataPageHeader({ uncompressedSize: rawSize, compressedSize: size, numValues: page.endRow - page.firstRow });
        pieces.push(header, ...body);
        offset += header.byteLength + size;
        uncompressedSize += header.byteLength + rawSize;
      }
      chunks.push({
        type: PHYSICAL[c.kind]!,
        encodings: c.optional ? [Encoding.PLAIN, Encoding.RLE] : [Encoding.PLAIN],
        path: [c.name],
        codec: snappy ? Codec.SNAPPY : Codec.UNCOMPRESSED,
        numValues: rows,
        totalUncompressedSize: uncompressedSize,
        totalCompressedSize: offset - chunkStart,
        dataPageOffset: chunkStart,
      });
      totalUncompressed += uncompressedSize;
    }
    await writeFully(this.#fh, pieces, this.#offset);
    this.#rowGroups.push({
      columns: chunks,
      totalByteSize: totalUncompressed,
      numRows: rows,
      fileOffset: groupStart,
      totalCompressedSize: offset - groupStart,
    });
    this.#offset = offset;
    this.#totalRows += rows;
    this.#groupRows = 0;
    this.#groupBytes = 0;
    for (const c of this.#columns) c.reset();
  }

  async finish(): Promise<void> {
    if (this.#groupRows > 0) await this.#flushRowGroup();
    const footer = encodeFileMetaData({
      schema: schemaElements(this.#specs),
      numRows: this.#totalRows,
      rowGroups: this.#rowGroups,
      createdBy: CREATED_BY,
    });
    const tail = Buffer.allocUnsafe(8);
    tail.writeUInt32LE(footer.byteLength, 0);
    MAGIC.copy(tail, 4);
    const pieces = this.#offset === 0 ? [MAGIC, footer, tail] : [footer, tail];
    await writeFully(this.#fh, pieces, this.#offset);
    this.#closed = true;
    await this.#fh.close();
  }

  async discard(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#fh.close().catch(() => undefined);
    }
    await rm(this.#path, { force: true });
  }
}

function schemaElements(specs: readonly ColumnSpec[]): SchemaElement[] {
  return [
    { name: 'schema', numChildren: specs.length },
    ...specs.map((s): SchemaElement => {
      const kind = KINDS[s.type];
      return {
        name: s.name,
        type: PHYSICAL[kind],
        repetition: s.nullable ? Repetition.OPTIONAL : Repetition.REQUIRED,
        ...(kind === UTF8 ? { convertedType: ConvertedType.UTF8, logicalString: true } : {}),
      };
    }),
  ];
}

/**
 * Definition levels of rows [from, to) as the RLE/bit-packed hybrid with bit width 1, with the 4-byte
 * length prefix of v1 data pages. All-equal levels are one RLE run; otherwise bit-packed runs of at most
 * 63 groups of 8 (one header byte each, as parquet-mr writes them), the last run padded with zeros.
 */
export function encodeLevels(levels: Uint8Array, from: number, to: number): Buffer {
  const n = to - from;
  const first = levels[from]!;
  let same = true;
  for (let i = from + 1; i < to; i++) {
    if (levels[i] !== first) {
      same = false;
      break;
    }
  }
  if (same) {
    const out = Buffer.allocUnsafe(4 + 10 + 1);
    let p = 4;
    let v = n * 2; // RLE header: run length << 1
    while (v > 0x7f) {
      out[p++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    out[p++] = v;
    out[p++] = first;
    out.writeUInt32LE(p - 4, 0);
    return out.subarray(0, p);
  }
  const groups = Math.ceil(n / 8);
  const out = Buffer.alloc(4 + Math.ceil(groups / 63) + groups); // zeroed: the padding must be 0
  let p = 4;
  for (let g = 0; g < groups; ) {
    const run = Math.min(63, groups - g);
    out[p++] = (run << 1) | 1;
    for (let k = 0; k < run; k++, g++) {
      let byte = 0;
      const base = from + g * 8;
      const end = Math.min(base + 8, to);
      for (let i = base; i < end; i++) byte |= levels[i]! << (i - base);
      out[p++] = byte;
    }
  }
  out.writeUInt32LE(p - 4, 0);
  return out.subarray(0, p);
}

/** One writev of all pieces at `position`; continues after a short write (libuv returns one when a
 * later iovec fails), so the error, if any, comes from the retry. */
async function writeFully(fh: FileHandle, pieces: Uint8Array[], position: number): Promise<void> {
  let total = 0;
  for (const p of pieces) total += p.byteLength;
  let done = 0;
  let rest = pieces;
  while (done < total) {
    const { bytesWritten } = await fh.writev(rest, position + done);
    if (bytesWritten === 0) throw new Error(`wrote 0 of ${total - done} bytes at offset ${position + done}`);
    done += bytesWritten;
    if (done < total) rest = skipBytes(rest, bytesWritten);
  }
}

function skipBytes(pieces: Uint8Array[], skip: number): Uint8Array[] {
  let i = 0;
  while (skip >= pieces[i]!.byteLength) skip -= pieces[i++]!.byteLength;
  return [pieces[i]!.subarray(skip), ...pieces.slice(i + 1)];
}

// ---------------------------------------------------------------------------------------------------
// Snappy (raw block format, as Parquet uses it): the greedy hash-match compressor of the reference
// implementation, on 64 KiB blocks. Only text and integer pages go through it (a few KB per row group).

const SNAPPY_BLOCK = 1 << 16;
const MAX_HASH_BITS = 14;
const hashTable = new Uint16Array(1 << MAX_HASH_BITS);

export function snappyCompress(input: Uint8Array): Buffer {
  const n = input.byteLength;
  const out = Buffer.allocUnsafe(32 + n + Math.ceil(n / 6));
  let op = 0;
  let v = n;
  while (v > 0x7f) {
    out[op++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[op++] = v;
  for (let pos = 0; pos < n; pos += SNAPPY_BLOCK) {
    op = compressBlock(input, pos, Math.min(pos + SNAPPY_BLOCK, n), out, op);
  }
  return out.subarray(0, op);
}

const load32 = (a: Uint8Array, i: number): number => a[i]! | (a[i + 1]! << 8) | (a[i + 2]! << 16) | (a[i + 3]! << 24);

function compressBlock(src: Uint8Array, base: number, end: number, out: Buffer, op: number): number {
  const INPUT_MARGIN = 15;
  let nextEmit = base;
  if (end - base >= INPUT_MARGIN) {
    // A table no larger than the block (as the reference does): small pages need not clear 32 KB.
    let bits = 8;
    while (bits < MAX_HASH_BITS && 1 << bits < end - base) bits++;
    const shift = 32 - bits;
    const table = hashTable;
    table.fill(0, 0, 1 << bits); // offsets from `base`; a stale 0 is only a candidate, checked before use
    const ipLimit = end - INPUT_MARGIN;
    let ip = base + 1;
    let nextWord = load32(src, ip);
    outer: for (;;) {
      // Look for a 4-byte match, skipping faster the longer nothing matches (incompressible data).
      let skip = 32;
      let nextIp = ip;
      let candidate: number;
      let word: number;
      do {
        ip = nextIp;
        word = nextWord;
        const h = Math.imul(word, 0x1e35a7bd) >>> shift;
        nextIp = ip + (skip++ >> 5);
        if (nextIp > ipLimit) break outer;
        nextWord = load32(src, nextIp);
        candidate = base + table[h]!;
        table[h] = ip - base;
      } while (word !== load32(src, candidate));
      op = emitLiteral(src, nextEmit, ip - nextEmit, out, op);
      // Emit copies for as long as the next position matches too.
      do {
        const matchStart = ip;
        let len = 4;
        while (ip + len < end && src[ip + len] === src[candidate + len]) len++;
        ip += len;
        op = emitCopy(out, op, matchStart - candidate, len);
        nextEmit = ip;
        if (ip >= ipLimit) break outer;
        table[Math.imul(load32(src, ip - 1), 0x1e35a7bd) >>> shift] = ip - 1 - base;
        word = load32(src, ip);
        const h = Math.imul(word, 0x1e35a7bd) >>> shift;
        candidate = base + table[h]!;
        table[h] = ip - base;
      } while (word === load32(src, candidate));
      nextWord = load32(src, ++ip);
    }
  }
  if (nextEmit < end) op = emitLiteral(src, nextEmit, end - nextEmit, out, op);
  return op;
}

function emitLiteral(src: Uint8Array, from: number, len: number, out: Buffer, op: number): number {
  const n = len - 1;
  if (n < 60) {
    out[op++] = n << 2;
  } else if (n < 0x100) {
    out[op++] = 60 << 2;
    out[op++] = n;
  } else if (n < 0x10000) {
    out[op++] = 61 << 2;
    out[op++] = n & 0xff;
    out[op++] = n >>> 8;
  } else if (n < 0x1000000) {
    out[op++] = 62 << 2;
    out[op++] = n & 0xff;
    out[op++] = (n >>> 8) & 0xff;
    out[op++] = n >>> 16;
  } else {
    out[op++] = 63 << 2;
    out.writeUInt32LE(n, op);
    op += 4;
  }
  if (len < 16) {
    for (let i = 0; i < len; i++) out[op + i] = src[from + i]!;
  } else {
    out.set(src.subarray(from, from + len), op);
  }
  return op + len;
}

function emitCopy(out: Buffer, op: number, offset: number, len: number): number {
  while (len >= 68) {
    op = emitCopyUpTo64(out, op, offset, 64);
    len -= 64;
  }
  if (len > 64) {
    op = emitCopyUpTo64(out, op, offset, 60);
    len -= 60;
  }
  return emitCopyUpTo64(out, op, offset, len);
}

function emitCopyUpTo64(out: Buffer, op: number, offset: number, len: number): number {
  if (len < 12 && offset < 2048) {
    out[op++] = 1 | ((len - 4) << 2) | ((offset >>> 8) << 5);
    out[op++] = offset & 0xff;
  } else {
    out[op++] = 2 | ((len - 1) << 2);
    out[op++] = offset & 0xff;
    out[op++] = offset >>> 8;
  }
  return op;
}
