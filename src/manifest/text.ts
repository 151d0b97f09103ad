// Streaming record sources for the text formats (TSV, CSV, JSON Lines, optionally gzipped).
// Everything works on 64 KiB chunks and yields small batches of records, so memory stays flat
// whatever the file's length, and no single record may grow past MAX_RECORD_CHARS. Every line and
// record carries its byte offset, so a reader can later start at a record (TextStart) instead of at
// the top of the file: that is how chunk jobs read only their own rows.

import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

import { FilipError } from '../core/errors.js';
import { isGzipPath } from './files.js';

/**
 * Longest record (line, or lines of one quoted CSV record) kept in memory. Past it the record is a
 * malformed row: a manifest row is a URL and a caption, never a megabyte, so a longer one is a broken
 * quote or a binary file, and buffering it would break the flat-memory promise.
 */
export const MAX_RECORD_CHARS = 1 << 20;

/** One physical line, without its `\n` (a `\r` before it is kept: CSV decides where it belongs). */
export interface Line {
  readonly text: string;
  /** 1-based physical line number in the (decompressed) file. */
  readonly number: number;
  /** Byte offset of the line's first byte in the (decompressed) file: where a reader can start again. */
  readonly offset: number;
  /** The line was longer than MAX_RECORD_CHARS; its text was dropped. */
  readonly overflow: boolean;
}

/** One data record of a text manifest, before its values are checked. */
export interface TextRecord {
  /** 1-based physical line where the record starts. */
  readonly line: number;
  /** Byte offset (in the decompressed file) of that line: reading from here yields this record first. */
  readonly offset: number;
  /** The line (TSV, JSONL), without a trailing `\r`. */
  readonly text?: string;
  /** The parsed fields (CSV); with `error`, the fields before `errorField`, which parsed. */
  readonly fields?: string[];
  /** Why the record could not be parsed at all; the row is then malformed. */
  readonly error?: string;
  /** 0-based index of the field the parse error is in, when known. */
  readonly errorField?: number;
}

/**
 * Where to start reading a text file: the byte offset of a line start (in the decompressed text) and
 * the number of physical lines before it, so line numbers (and messages) are those of a full read.
 */
export interface TextStart {
  readonly offset: number;
  readonly linesBefore: number;
}

export const FILE_START: TextStart = { offset: 0, linesBefore: 0 };

/** Bytes actually read from disk by the text readers since the process started (tests, benches). */
export const textReadStats = { bytes: 0 };

function cannotRead(file: string, err: unknown): FilipError {
  if (err instanceof FilipError) return err;
  return new FilipError('FILIP_ERR_MANIFEST', `cannot read manifest: ${(err as Error).message}`, { file }, {
    cause: err,
  });
}

/**
 * Raw bytes of a file from `start`, gunzipped when the name ends in `.gz`. A gzip stream cannot be
 * entered mid-way, so for `.gz` the bytes before `start` are inflated and dropped: correct, but it
 * costs the whole prefix (queue workers are given a plain copy instead, see src/scale/producer.ts).
 */
async function* readBytes(file: string, start: number, chunkBytes: number): AsyncGenerator<Buffer> {
  const gzip = isGzipPath(file);
  const source = createReadStream(file, { highWaterMark: chunkBytes, start: gzip ? 0 : start });
  source.on('data', (d) => (textReadStats.bytes += d.length));
  let stream: Readable = source;
  if (gzip) {
    const gunzip = createGunzip({ chunkSize: Math.max(chunkBytes, 1 << 10) });
    source.on('error', (err) => gunzip.destroy(err));
    stream = source.pipe(gunzip);
  }
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let skip = gzip ? start : 0;
  try {
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = await iterator.next();
      } catch (err) {
        throw cannotRead(file, err);
      }
      if (next.done === true) return;
      let chunk = next.value;
      if (skip > 0) {
        if (chunk.length <= skip) {
          skip -= chunk.length;
          continue;
        }
        chunk = chunk.subarray(skip);
        skip = 0;
      }
      yield chunk;
    }
  } finally {
    stream.destroy();
    source.destroy();
  }
}

const NL = 10;

/**
 * The physical lines of a text manifest from `from` on, in batches (one per chunk read) to keep
 * per-line overhead low, each with its byte offset. Lines are split on the `\n` byte (never part of a
 * multi-byte UTF-8 character) and decoded a chunk at a time; offsets cost nothing for ASCII text and
 * one Buffer.byteLength per line otherwise. A BOM at the very start is dropped.
 */
export async function* readLines(file: string, from: TextStart = FILE_START, chunkBytes = 1 << 16): AsyncGenerator<Line[]> {
  let offset = from.offset; // of the first byte of `pending`
  let number = from.linesBefore;
  // The line being read, not yet ended by a newline: its bytes, unless it is already known too long.
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let overflow = false;
  let first = from.offset === 0;
  const hold = (bytes: Buffer) => {
    if (overflow) return;
    pendingBytes += bytes.length;
    // A UTF-8 character is at most 4 bytes: past 4 x the limit the line is too long whatever it holds.
    if (pendingBytes > 4 * MAX_RECORD_CHARS) {
      overflow = true;
      pending = [];
    } else {
      pending.push(bytes);
    }
  };
  const endLine = (text: string, lineBytes: number, batch: Line[]) => {
    number++;
    const long = overflow || text.length > MAX_RECORD_CHARS;
    batch.push({ text: long ? '' : text, number, offset, overflow: long });
    offset += lineBytes;
    pending = [];
    pendingBytes = 0;
    overflow = false;
  };
  for await (let chunk of readBytes(file, from.offset, chunkBytes)) {
    if (first) {
      first = false;
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) {
        chunk = chunk.subarray(3);
        offset += 3;
      }
    }
    const batch: Line[] = [];
    const firstNl = chunk.indexOf(NL);
    if (firstNl === -1) {
      hold(chunk);
      continue;
    }
    // The line that was pending ends in this chunk.
    hold(chunk.subarray(0, firstNl));
    const head = overflow ? '' : Buffer.concat(pending, pendingBytes).toString('utf8');
    endLine(head, pendingBytes + 1, batch);
    // Whole lines between the first and the last newline: one decode for all of them.
    const lastNl = chunk.lastIndexOf(NL);
    if (lastNl > firstNl) {
      const text = chunk.toString('utf8', firstNl + 1, lastNl);
      // Chars = bytes only for ASCII; otherwise (multi-byte or invalid UTF-8) the line lengths come
      // from the newline bytes themselves (byte 10 and '\n' correspond one to one).
      const ascii = text.length === lastNl - firstNl - 1;
      let at = 0;
      let byteAt = firstNl + 1;
      for (;;) {
        const nl = text.indexOf('\n', at);
        const line = nl === -1 ? text.slice(at) : text.slice(at, nl);
        const nlByte = ascii ? byteAt + line.length : nl === -1 ? lastNl : chunk.indexOf(NL, byteAt);
        endLine(line, nlByte - byteAt + 1, batch);
        if (nl === -1) break;
        at = nl + 1;
        byteAt = nlByte + 1;
      }
    }
    if (lastNl + 1 < chunk.length) hold(chunk.subarray(lastNl + 1));
    yield batch;
  }
  if (overflow || pendingBytes > 0) {
    const batch: Line[] = [];
    endLine(overflow ? '' : Buffer.concat(pending, pendingBytes).toString('utf8'), pendingBytes, batch);
    yield batch;
  }
}

function stripCr(text: string): string {
  return text.charCodeAt(text.length - 1) === 13 ? text.slice(0, -1) : text;
}

function overflowRecord(line: Line): TextRecord {
  return { line: line.number, offset: line.offset, error: `line is longer than ${MAX_RECORD_CHARS} characters` };
}

/**
 * One record per non-empty line (TSV, cc3m, JSONL). Lines that are empty (or only `\r`) are not
 * records and get no row number; with `skipWhitespace` (JSONL) whitespace-only lines are skipped too.
 */
export async function* lineRecords(
  lines: AsyncIterable<Line[]>,
  { skipWhitespace = false } = {},
): AsyncGenerator<TextRecord[]> {
  for await (const batch of lines) {
    const out: TextRecord[] = [];
    for (const line of batch) {
      if (line.overflow) {
        out.push(overflowRecord(line));
        continue;
      }
      const text = stripCr(line.text);
      if (text.length === 0 || (skipWhitespace && text.trim().length === 0)) continue;
      out.push({ line: line.number, offset: line.offset, text });
    }
    if (out.length > 0) yield out;
  }
}

const QUOTE = 34;
const COMMA = 44;
const CR = 13;

/**
 * RFC 4180 record parser fed one physical line at a time: quoted fields, doubled quotes, newlines
 * inside quotes, CRLF. Two lenient rules, as pandas has them: a quote inside an unquoted field is a
 * literal character, and empty lines between records are skipped.
 *
 * A broken record (text after a closing quote, a quote still open at end of file or after
 * MAX_RECORD_CHARS) becomes one error record at its first line, and parsing resumes at the line
 * after that first line: one stray quote costs one row, not the rest of the file.
 */
export class CsvParser {
  private lines: Line[] = [];
  private chars = 0;
  private fields: string[] = [];
  private field = '';
  private inQuotes = false;
  // Lines waiting to be parsed: normally the one just pushed, after a broken record also the lines
  // of that record after its first. A queue, not recursion, so a long broken record cannot overflow the stack.
  private queue: Line[] = [];
  private head = 0;

  /** Feeds one line; complete records (good or broken) are pushed onto `out`. */
  push(line: Line, out: TextRecord[]): void {
    this.queue.push(line);
    this.drain(out);
  }

  /** Flushes at end of input: a record still open is an unterminated quote. */
  end(out: TextRecord[]): void {
    while (this.lines.length > 0) {
      this.fail(out, 'quoted field is not closed before the end of the file');
      this.drain(out);
    }
  }

  private drain(out: TextRecord[]): void {
    while (this.head < this.queue.length) this.step(this.queue[this.head++]!, out);
    this.queue = [];
    this.head = 0;
  }

  private step(line: Line, out: TextRecord[]): void {
    if (line.overflow) {
      if (this.lines.length > 0) {
        this.head--; // parse this line again once the broken record's lines have been re-queued
        this.fail(out, `quoted field runs past ${MAX_RECORD_CHARS} characters (unbalanced quote?)`);
        return;
      }
      out.push(overflowRecord(line));
      return;
    }
    const text = line.text;
    if (this.lines.length === 0) {
      if (text.length === 0 || (text.length === 1 && text.charCodeAt(0) === CR)) return;
    } else {
      this.field += '\n';
    }
    this.lines.push(line);
    this.chars += text.length + 1;
    if (this.chars > MAX_RECORD_CHARS) {
      this.fail(out, `quoted field runs past ${MAX_RECORD_CHARS} characters (unbalanced quote?)`);
      return;
    }
    const n = text.length;
    let i = 0;
    for (;;) {
      if (this.inQuotes) {
        const q = text.indexOf('"', i);
        if (q === -1) {
          this.field += text.slice(i);
          return; // the quoted field goes on in the next line
        }
        this.field += text.slice(i, q);
        if (text.charCodeAt(q + 1) === QUOTE) {
          this.field += '"';
          i = q + 2;
          continue;
        }
        this.inQuotes = false;
        i = q + 1;
        if (i === n || (i === n - 1 && text.charCodeAt(i) === CR)) {
          this.fields.push(this.field);
          this.finish(out);
          return;
        }
        if (text.charCodeAt(i) !== COMMA) {
          this.fail(out, `unexpected text after the closing quote (line ${line.number})`);
          return;
        }
        this.fields.push(this.field);
        this.field = '';
        i++;
      }
      // At the start of a field, outside quotes.
      if (i < n && text.charCodeAt(i) === QUOTE) {
        this.inQuotes = true;
        i++;
        continue;
      }
      const c = text.indexOf(',', i);
      if (c === -1) {
        this.fields.push(stripCr(text.slice(i)));
        this.finish(out);
        return;
      }
      this.fields.push(text.slice(i, c));
      i = c + 1;
    }
  }

  private reset(): Line[] {
    const lines = this.lines;
    this.lines = [];
    this.chars = 0;
    this.fields = [];
    this.field = '';
    this.inQuotes = false;
    return lines;
  }

  private finish(out: TextRecord[]): void {
    const { number: line, offset } = this.lines[0]!;
    const fields = this.fields;
    this.reset();
    out.push({ line, offset, fields });
  }

  /** Emits the open record as broken and queues its lines after the first to be parsed again. */
  private fail(out: TextRecord[], message: string): void {
    const errorField = this.fields.length;
    // The fields before the broken one parsed fine: the reject log keeps them (the URL, mostly).
    const fields = this.fields;
    const lines = this.reset();
    out.push({ line: lines[0]!.number, offset: lines[0]!.offset, error: message, errorField, fields });
    if (lines.length > 1) {
      this.queue = lines.slice(1).concat(this.queue.slice(this.head));
      this.head = 0;
    }
  }
}

/** CSV records from physical lines, in batches. */
export async function* csvRecords(lines: AsyncIterable<Line[]>): AsyncGenerator<TextRecord[]> {
  const parser = new CsvParser();
  for await (const batch of lines) {
    const out: TextRecord[] = [];
    for (const line of batch) parser.push(line, out);
    if (out.length > 0) yield out;
  }
  const out: TextRecord[] = [];
  parser.end(out);
  if (out.length > 0) yield out;
}

/**
 * The records of a text manifest as its format reads them; read from the top, the header (if any) is
 * the first record. From a TextStart (a record's offset, as a previous read reported it) the records
 * are those of a full read from that record on, since every parser is at a record boundary there.
 */
export function textRecords(
  file: string,
  format: 'tsv' | 'csv' | 'jsonl' | 'cc3m' | 'cc12m',
  from: TextStart = FILE_START,
  chunkBytes = 1 << 16,
): AsyncGenerator<TextRecord[]> {
  const lines = readLines(file, from, chunkBytes);
  if (format === 'csv') return csvRecords(lines);
  return lineRecords(lines, { skipWhitespace: format === 'jsonl' });
}

/** The first record of a text manifest, or undefined for an empty file. Reads only the first chunk(s). */
export async function firstTextRecord(
  file: string,
  format: 'tsv' | 'csv' | 'jsonl' | 'cc3m' | 'cc12m',
): Promise<TextRecord | undefined> {
  // Small reads: a chunk job opens its first file for the header and should not pay 64 KiB for it.
  for await (const batch of textRecords(file, format, FILE_START, 1 << 12)) return batch[0];
  return undefined;
}
