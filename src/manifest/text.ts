// Streaming record sources for the text formats (TSV, CSV, JSON Lines, optionally gzipped).
// Everything works on 64 KiB chunks and yields small batches of records, so memory stays flat
// whatever the file's length, and no single record may grow past MAX_RECORD_CHARS.

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
  /** The line was longer than MAX_RECORD_CHARS; its text was dropped. */
  readonly overflow: boolean;
}

/** One data record of a text manifest, before its values are checked. */
export interface TextRecord {
  /** 1-based physical line where the record starts. */
  readonly line: number;
  /** The line (TSV, JSONL), without a trailing `\r`. */
  readonly text?: string;
  /** The parsed fields (CSV). */
  readonly fields?: string[];
  /** Why the record could not be parsed at all; the row is then malformed. */
  readonly error?: string;
  /** 0-based index of the field the parse error is in, when known. */
  readonly errorField?: number;
}

function cannotRead(file: string, err: unknown): FilipError {
  if (err instanceof FilipError) return err;
  return new FilipError('FILIP_ERR_MANIFEST', `cannot read manifest: ${(err as Error).message}`, { file }, {
    cause: err,
  });
}

/** Decoded UTF-8 text of a file in chunks, gunzipped when the name ends in `.gz`; a BOM is dropped. */
export async function* readTextChunks(file: string): AsyncGenerator<string> {
  const source = createReadStream(file, { highWaterMark: 1 << 16 });
  let stream: Readable = source;
  if (isGzipPath(file)) {
    const gunzip = createGunzip({ chunkSize: 1 << 16 });
    source.on('error', (err) => gunzip.destroy(err));
    stream = source.pipe(gunzip);
  }
  stream.setEncoding('utf8');
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<string>;
  let first = true;
  try {
    for (;;) {
      let next: IteratorResult<string>;
      try {
        next = await iterator.next();
      } catch (err) {
        throw cannotRead(file, err);
      }
      if (next.done === true) return;
      let chunk = next.value;
      if (first) {
        first = false;
        if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      }
      yield chunk;
    }
  } finally {
    stream.destroy();
    source.destroy();
  }
}

/** Splits chunks into physical lines, in batches (one per chunk) to keep per-line overhead low. */
export async function* readLines(chunks: AsyncIterable<string>): AsyncGenerator<Line[]> {
  let rest = '';
  let number = 0;
  let overflow = false;
  for await (const chunk of chunks) {
    const batch: Line[] = [];
    let start = 0;
    let nl = chunk.indexOf('\n');
    while (nl !== -1) {
      number++;
      if (rest.length + (nl - start) > MAX_RECORD_CHARS) overflow = true;
      batch.push(overflow ? { text: '', number, overflow } : { text: rest + chunk.slice(start, nl), number, overflow });
      rest = '';
      overflow = false;
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    if (!overflow && start < chunk.length) {
      rest += chunk.slice(start);
      if (rest.length > MAX_RECORD_CHARS) {
        overflow = true;
        rest = '';
      }
    }
    if (batch.length > 0) yield batch;
  }
  if (overflow || rest.length > 0) yield [{ text: rest, number: number + 1, overflow }];
}

function stripCr(text: string): string {
  return text.charCodeAt(text.length - 1) === 13 ? text.slice(0, -1) : text;
}

function overflowRecord(line: Line): TextRecord {
  return { line: line.number, error: `line is longer than ${MAX_RECORD_CHARS} characters` };
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
      out.push({ line: line.number, text });
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
    const line = this.lines[0]!.number;
    const fields = this.fields;
    this.reset();
    out.push({ line, fields });
  }

  /** Emits the open record as broken and queues its lines after the first to be parsed again. */
  private fail(out: TextRecord[], message: string): void {
    const errorField = this.fields.length;
    const lines = this.reset();
    out.push({ line: lines[0]!.number, error: message, errorField });
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

/** The records of a text manifest as its format reads them; the header (if any) is the first record. */
export function textRecords(file: string, format: 'tsv' | 'csv' | 'jsonl' | 'cc3m' | 'cc12m'): AsyncGenerator<TextRecord[]> {
  const lines = readLines(readTextChunks(file));
  if (format === 'csv') return csvRecords(lines);
  return lineRecords(lines, { skipWhitespace: format === 'jsonl' });
}

/** The first record of a text manifest, or undefined for an empty file. Reads only the first chunk(s). */
export async function firstTextRecord(
  file: string,
  format: 'tsv' | 'csv' | 'jsonl' | 'cc3m' | 'cc12m',
): Promise<TextRecord | undefined> {
  for await (const batch of textRecords(file, format)) return batch[0];
  return undefined;
}
