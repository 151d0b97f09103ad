// The manifest reader: every row of every manifest file, in a stable order, as a pending Sample.
// A row that cannot be used is yielded as a rejected sample (malformed_row), never thrown; only a
// problem with a whole file (missing column, unreadable file) stops the run, and those are found
// before the first row is yielded by checking every file's header or schema up front.

import { stat } from 'node:fs/promises';

import { FilipError } from '../core/errors.js';
import { intOption } from '../core/options.js';
import type { Sample } from '../core/sample.js';
import {
  MISSING,
  findKey,
  locateColumns,
  rowToSample,
  type ColumnPositions,
  type ColumnRequest,
  type RowNames,
  type RowPlace,
  type RowProblem,
} from './columns.js';
import { formatFromPath, isGzipPath, listManifestFiles } from './files.js';
import { DEFAULT_MANIFEST_OPTIONS, resolveManifestOptions, type ManifestFormat, type ManifestOptions } from './options.js';
import { openParquet, parquetRowCount, readParquetRows } from './parquet.js';
import { firstTextRecord, textRecords, type TextRecord, type TextStart } from './text.js';

export { MANIFEST_EXTENSIONS, formatFromPath, listManifestFiles } from './files.js';
export {
  DEFAULT_MANIFEST_OPTIONS,
  MANIFEST_FORMATS,
  MANIFEST_FORMAT_NAMES,
  resolveManifestOptions,
  type ManifestFormat,
  type ManifestOptions,
} from './options.js';

type TextFormat = 'tsv' | 'csv' | 'jsonl' | 'cc3m' | 'cc12m';
type ConcreteFormat = TextFormat | 'parquet';

/** Column names the headerless formats give their two fields (keepCols may only name these). */
const HEADERLESS_COLUMNS = { cc3m: ['caption', 'url'], cc12m: ['url', 'caption'] } as const;

/** Above this much uncompressed text, countManifestRows does not scan the files and answers undefined. */
export const COUNT_TEXT_LIMIT_BYTES = 64 * 1024 * 1024;

const HTTP_URL = /^https?:\/\//i;

/**
 * How an `auto` .tsv file is laid out, from the fields of its first non-empty line:
 * - a field equal to `urlCol` (exactly, else case-insensitively): `tsv`, a header line;
 * - otherwise exactly two fields, the second an http(s) URL and the first not: `cc3m` (caption, url);
 * - otherwise exactly two fields, the first an http(s) URL and the second not: `cc12m` (url, caption);
 * - anything else: `tsv`, so a wrong header fails with FILIP_ERR_MISSING_COLUMN listing what it has.
 */
export function detectTsvLayout(firstLineFields: readonly string[], urlCol: string): 'tsv' | 'cc3m' | 'cc12m' {
  const fields = firstLineFields.map((f) => f.trim());
  const lower = urlCol.toLowerCase();
  if (fields.some((f) => f === urlCol || f.toLowerCase() === lower)) return 'tsv';
  if (fields.length === 2) {
    const [first, second] = fields as [string, string];
    if (HTTP_URL.test(second) && !HTTP_URL.test(first)) return 'cc3m';
    if (HTTP_URL.test(first) && !HTTP_URL.test(second)) return 'cc12m';
  }
  return 'tsv';
}

function concreteFormat(file: string, format: ManifestFormat): ConcreteFormat {
  if (format !== 'auto') return format;
  const byExtension = formatFromPath(file);
  if (byExtension === undefined) {
    throw new FilipError(
      'FILIP_ERR_MANIFEST',
      'cannot tell the manifest format from the file extension; set `format` (tsv, csv, jsonl, parquet, cc3m, cc12m)',
      { file },
    );
  }
  return byExtension;
}

/** A text file's layout: its format after detection, its column names, and whether line 1 is a header. */
interface TextLayout {
  readonly format: TextFormat;
  readonly header: boolean;
  readonly columns: readonly string[];
  /** The file holds no record at all (not even a header). */
  readonly empty: boolean;
}

async function textLayout(file: string, format: TextFormat, urlCol: string): Promise<TextLayout> {
  if (format === 'cc3m' || format === 'cc12m') {
    return { format, header: false, columns: HEADERLESS_COLUMNS[format], empty: false };
  }
  const first = await firstTextRecord(file, format);
  if (first === undefined) return { format, header: format !== 'jsonl', columns: [], empty: true };
  if (format === 'jsonl') {
    if (first.text !== undefined && first.text.trimStart().startsWith('[')) {
      throw new FilipError('FILIP_ERR_MANIFEST', 'first line is a JSON array; only JSON Lines of objects (one per line) is read', {
        file,
        row: 0,
      });
    }
    return { format, header: false, columns: [], empty: false };
  }
  if (first.error !== undefined) {
    throw new FilipError('FILIP_ERR_MANIFEST', `header cannot be parsed: ${first.error}`, { file });
  }
  const names = (first.fields ?? first.text!.split('\t')).map((f) => f.trim());
  if (format === 'tsv') {
    const layout = detectTsvLayout(names, urlCol);
    if (layout !== 'tsv') return { format: layout, header: false, columns: HEADERLESS_COLUMNS[layout], empty: false };
  }
  return { format, header: true, columns: names, empty: false };
}

interface TextPlan extends TextLayout {
  readonly kind: 'text';
  readonly file: string;
  /** Where the bytes are read from: the file itself, or a plain copy of a gzipped one. */
  readonly readPath: string;
  readonly fileIndex: number;
  /** Positions of the requested columns; undefined for JSONL (looked up per row) and empty files. */
  readonly positions?: ColumnPositions;
}

interface ParquetPlan {
  readonly kind: 'parquet';
  readonly file: string;
  /** Where the bytes are read from: the file itself, or a plain copy of a gzipped one. */
  readonly readPath: string;
  readonly fileIndex: number;
  /** From the footer; undefined for `.parquet.gz`, whose columns are checked when it is read. */
  readonly rows?: number;
}

type FilePlan = TextPlan | ParquetPlan;

function requestOf(options: ManifestOptions, layout?: TextLayout): ColumnRequest {
  // The headerless formats have fixed positions whatever urlCol and captionCol say.
  const headerless = layout !== undefined && !layout.header && layout.format !== 'jsonl';
  return {
    urlCol: headerless ? 'url' : options.urlCol,
    captionCol: headerless ? 'caption' : options.captionCol,
    keepCols: options.keepCols,
  };
}

/** Opens one file far enough to know its layout and to check its columns; throws on a bad file. */
async function planFile(file: string, fileIndex: number, options: ManifestOptions, readPath = file): Promise<FilePlan> {
  const format = concreteFormat(file, options.format);
  if (format === 'parquet') {
    if (isGzipPath(readPath)) return { kind: 'parquet', file, readPath, fileIndex };
    const open = await openParquet(readPath);
    try {
      locateColumns(file, open.columns, requestOf(options));
      return { kind: 'parquet', file, readPath, fileIndex, rows: open.rows };
    } finally {
      await open.close();
    }
  }
  const layout = await textLayout(readPath, format, options.urlCol);
  if (layout.format === 'jsonl' && !layout.empty) await checkJsonlColumns(file, readPath, options);
  if (layout.empty || layout.format === 'jsonl') return { kind: 'text', file, readPath, fileIndex, ...layout };
  const positions = locateColumns(file, layout.columns, requestOf(options, layout));
  return { kind: 'text', file, readPath, fileIndex, ...layout, positions };
}

/**
 * JSON Lines have no header; the first object's keys stand for one, so a misspelt --url-col fails
 * here, naming the file and those keys, instead of rejecting every row as malformed. Later rows may
 * still lack a key (each is then a malformed row). A first line that is not a JSON object is left
 * to the row reader, which rejects it.
 */
async function checkJsonlColumns(file: string, readPath: string, options: ManifestOptions): Promise<void> {
  const first = await firstTextRecord(readPath, 'jsonl');
  let value: unknown;
  try {
    value = JSON.parse(first?.text ?? '');
  } catch {
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  // findColumn matches names as findKey does for the rows (exact, then case-insensitive).
  locateColumns(file, Object.keys(value), requestOf(options));
}

function namesOf(options: ManifestOptions): RowNames {
  return { url: options.urlCol, caption: options.captionCol, keep: options.keepCols };
}

function fieldCountProblem(fields: readonly string[], columns: readonly string[], header: boolean): RowProblem | undefined {
  if (fields.length === columns.length) return undefined;
  const expected = header ? `the header has ${columns.length}` : `expected ${columns.length} (${columns.join(', ')})`;
  const message = `row has ${fields.length} field${fields.length === 1 ? '' : 's'}, ${expected}`;
  return fields.length < columns.length ? { field: columns[fields.length], message } : { message };
}

function allMissing(names: RowNames): unknown[] {
  return new Array<unknown>(names.keep.length).fill(MISSING);
}

function jsonValue(object: Record<string, unknown>, name: string): unknown {
  const key = findKey(object, name);
  return key === undefined ? MISSING : object[key];
}

function jsonlSample(place: RowPlace, names: RowNames, text: string): Sample {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return rowToSample(place, names, MISSING, MISSING, allMissing(names), {
      message: `line is not valid JSON: ${(err as Error).message}`,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const got = value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    return rowToSample(place, names, MISSING, MISSING, allMissing(names), {
      message: `line is not a JSON object (got ${got})`,
    });
  }
  const object = value as Record<string, unknown>;
  const keep = new Array<unknown>(names.keep.length);
  for (let i = 0; i < keep.length; i++) keep[i] = jsonValue(object, names.keep[i]!);
  return rowToSample(place, names, jsonValue(object, names.url), jsonValue(object, names.caption), keep);
}

function fieldAt(fields: readonly string[], position: number): unknown {
  return position < fields.length ? fields[position] : MISSING;
}

function textSample(plan: TextPlan, place: RowPlace, names: RowNames, record: TextRecord): Sample {
  if (record.error !== undefined) {
    const field = record.errorField === undefined ? undefined : plan.columns[record.errorField];
    const problem = { message: record.error, ...(field === undefined ? {} : { field }) };
    // Still malformed, but the reject log gets the URL and caption when they came before the break.
    const parsed = record.fields ?? [];
    if (parsed.length === 0 || plan.positions === undefined) return rowToSample(place, names, MISSING, MISSING, allMissing(names), problem);
    const positions = plan.positions;
    const keep = positions.keep.map((p) => fieldAt(parsed, p));
    return rowToSample(place, names, fieldAt(parsed, positions.url), fieldAt(parsed, positions.caption), keep, problem);
  }
  if (plan.format === 'jsonl') return jsonlSample(place, names, record.text!);
  const fields = record.fields ?? record.text!.split('\t');
  const positions = plan.positions!;
  const keep = new Array<unknown>(positions.keep.length);
  for (let i = 0; i < keep.length; i++) keep[i] = fieldAt(fields, positions.keep[i]!);
  return rowToSample(
    place,
    names,
    fieldAt(fields, positions.url),
    fieldAt(fields, positions.caption),
    keep,
    fieldCountProblem(fields, plan.columns, plan.header),
  );
}

// The per-file readers yield batches, so that each row pays for one async yield (readManifests'),
// not one per generator layer.

/** Streams a text file's rows from global index `base`; returns the number of data rows it holds. */
async function* readTextFile(
  plan: TextPlan,
  options: ManifestOptions,
  base: number,
  startIndex: number,
  from?: EntryPoint,
): AsyncGenerator<Sample[], number> {
  if (plan.empty) return 0;
  // Headerless files name their fields 'url' and 'caption' whatever urlCol and captionCol say.
  const names = plan.header || plan.format === 'jsonl' ? namesOf(options) : { ...namesOf(options), url: 'url', caption: 'caption' };
  // An entry point with a byte offset is a data record's first line: the header, if any, is behind
  // it. Without an offset, the file is read from its start and the rows before the entry skipped.
  const entered = from?.text !== undefined;
  let row = entered ? from!.row : 0;
  let headerPending = plan.header && !entered;
  if (!entered && from !== undefined) startIndex = Math.max(startIndex, base + from.row);
  // A file entered mid-way is a chunk job's: smaller reads, so the read past the chunk's end stays small.
  for await (const batch of textRecords(plan.readPath, plan.format, from?.text, entered ? 1 << 14 : 1 << 16)) {
    const samples: Sample[] = [];
    for (const record of batch) {
      if (headerPending) {
        headerPending = false;
        continue;
      }
      const index = base + row;
      if (index >= startIndex) {
        samples.push(textSample(plan, { file: plan.file, fileIndex: plan.fileIndex, row, index, line: record.line }, names, record));
      }
      row++;
    }
    if (samples.length > 0) yield samples;
  }
  return row;
}

/** Streams a parquet file's rows from global index `base`; returns the number of rows it holds. */
async function* readParquetFile(
  plan: ParquetPlan,
  options: ManifestOptions,
  base: number,
  startIndex: number,
  from?: EntryPoint,
): AsyncGenerator<Sample[], number> {
  const open = await openParquet(plan.readPath);
  try {
    const positions = locateColumns(plan.file, open.columns, requestOf(options));
    const urlName = open.columns[positions.url]!;
    const captionName = open.columns[positions.caption]!;
    const keepNames = positions.keep.map((p) => open.columns[p]!);
    const wanted = [...new Set([urlName, captionName, ...keepNames])];
    const names = namesOf(options);
    const first = Math.max(0, startIndex - base, from?.row ?? 0);
    for await (const { rowStart, rows } of readParquetRows(plan.file, open, wanted, first)) {
      const samples = new Array<Sample>(rows.length);
      for (let i = 0; i < rows.length; i++) {
        const data = rows[i]!;
        const row = rowStart + i;
        const keep = new Array<unknown>(keepNames.length);
        // hyparquet gives undefined for a null cell; the column exists, so it is null, not missing.
        for (let k = 0; k < keep.length; k++) keep[k] = data[keepNames[k]!] ?? null;
        samples[i] = rowToSample(
          { file: plan.file, fileIndex: plan.fileIndex, row, index: base + row },
          names,
          data[urlName] ?? null,
          data[captionName] ?? null,
          keep,
        );
      }
      yield samples;
    }
    return open.rows;
  } finally {
    await open.close();
  }
}

/**
 * Every row of every manifest file named by `options.inputs`, in order, as a Sample with status
 * 'pending', or 'rejected' with reason 'malformed_row' when the row cannot be used. Keys are
 * makeKey(position of the file in the sorted list, 0-based data row in the file); `index` counts rows
 * across all files. Rows with index < `startIndex` are skipped without being yielded: text files are
 * still scanned line by line, parquet files are skipped whole by their footer's row count and then by
 * row group. Before the first row, every file is opened to check its columns: FILIP_ERR_MISSING_COLUMN,
 * FILIP_ERR_MANIFEST (unreadable, unknown format) and FILIP_ERR_NO_INPUT are thrown then, not mid-run.
 */
export async function* readManifests(options: ManifestOptions, startIndex = 0): AsyncGenerator<Sample> {
  const resolved = resolveManifestOptions(options);
  intOption('startIndex', startIndex, 0);
  const files = await listManifestFiles(resolved.inputs);
  const plans: FilePlan[] = [];
  for (const [fileIndex, file] of files.entries()) plans.push(await planFile(file, fileIndex, resolved));

  let base = 0;
  for (const plan of plans) {
    if (plan.kind === 'parquet' && plan.rows !== undefined && base + plan.rows <= startIndex) {
      base += plan.rows;
      continue;
    }
    const batches =
      plan.kind === 'parquet' ? readParquetFile(plan, resolved, base, startIndex) : readTextFile(plan, resolved, base, startIndex);
    try {
      for (;;) {
        const next = await batches.next();
        if (next.done === true) {
          base += next.value;
          break;
        }
        for (const sample of next.value) yield sample;
      }
    } finally {
      await batches.return(0); // closes the file when the consumer stops early; a no-op otherwise
    }
  }
}

/**
 * A place to enter the manifests mid-way without reading what comes before it: the first row of a
 * chunk, as found once by scanManifests and handed to readManifestsFrom by whoever reads the chunk.
 */
export interface ManifestCursor {
  /** Position of the file in the sorted file list (the first part of every key). */
  readonly fileIndex: number;
  /** 0-based data row in that file (the row of `source`, the second part of the key). */
  readonly row: number;
  /** 0-based global index of that row. */
  readonly index: number;
  /** Text: byte offset of the row's first line in the (decompressed) file. */
  readonly offset?: number;
  /** Text: physical lines before that line (line numbers in messages stay those of a full read). */
  readonly linesBefore?: number;
  /** Parquet: the row group that holds the row, and the row's place in that group. */
  readonly rowGroup?: number;
  readonly groupRow?: number;
}

/** Where one file is entered: its first data row to read, and for text where its bytes begin. */
interface EntryPoint {
  readonly row: number;
  readonly text?: TextStart;
}

/**
 * Plain copies to read instead of gzipped files (original path -> copy): a gzip stream cannot be
 * entered mid-way, its plain copy can. Keys and `source` still name the original file.
 */
export type PlainCopies = Readonly<Record<string, string>>;

function entryOf(cursor: ManifestCursor): EntryPoint {
  if (cursor.offset === undefined) return { row: cursor.row };
  return { row: cursor.row, text: { offset: cursor.offset, linesBefore: cursor.linesBefore ?? 0 } };
}

/**
 * Reads every manifest row once, as readManifests would, and calls `onCursor` with a cursor for the
 * rows whose global index is a multiple of `every` (0, every, 2 x every, ...). Returns the number of
 * rows. Text files are parsed record by record without building samples; parquet cursors come from
 * the footers alone. File-level errors are thrown as by readManifests, before the first cursor.
 */
export async function scanManifests(
  options: ManifestOptions,
  every: number,
  onCursor: (cursor: ManifestCursor) => void | Promise<void>,
  copies: PlainCopies = {},
): Promise<number> {
  const resolved = resolveManifestOptions(options);
  intOption('every', every, 1);
  const files = await listManifestFiles(resolved.inputs);
  const plans: FilePlan[] = [];
  for (const [fileIndex, file] of files.entries()) plans.push(await planFile(file, fileIndex, resolved, copies[file] ?? file));
  let base = 0;
  for (const plan of plans) {
    if (plan.kind === 'parquet') {
      const open = await openParquet(plan.readPath);
      try {
        let groupStart = 0;
        for (const [rowGroup, group] of open.metadata.row_groups.entries()) {
          const rows = Number(group.num_rows);
          const firstIndex = base + groupStart;
          for (let index = Math.ceil(firstIndex / every) * every; index < firstIndex + rows; index += every) {
            const row = index - base;
            await onCursor({ fileIndex: plan.fileIndex, row, index, rowGroup, groupRow: row - groupStart });
          }
          groupStart += rows;
        }
        base += open.rows;
      } finally {
        await open.close();
      }
      continue;
    }
    if (plan.empty) continue;
    let headerPending = plan.header;
    let row = 0;
    for await (const batch of textRecords(plan.readPath, plan.format)) {
      for (const record of batch) {
        if (headerPending) {
          headerPending = false;
          continue;
        }
        const index = base + row;
        if (index % every === 0) {
          await onCursor({ fileIndex: plan.fileIndex, row, index, offset: record.offset, linesBefore: record.line - 1 });
        }
        row++;
      }
    }
    base += row;
  }
  return base;
}

/**
 * The rows with global index in [cursor.index, end), exactly as readManifests yields them (same keys,
 * sources, values and malformed rows), read from the cursor's place: nothing before it is read, and
 * only the files the range touches are opened. `options.inputs` must be the sorted file list the
 * cursor was found in (listManifestFiles' result, as scanManifests saw it), not folders.
 */
export async function* readManifestsFrom(
  options: ManifestOptions,
  cursor: ManifestCursor,
  end: number,
  copies: PlainCopies = {},
): AsyncGenerator<Sample> {
  const resolved = resolveManifestOptions(options);
  const files = resolved.inputs;
  let base = cursor.index - cursor.row;
  let entry: EntryPoint | undefined = entryOf(cursor);
  for (let fileIndex = cursor.fileIndex; fileIndex < files.length && base < end; fileIndex++) {
    const file = files[fileIndex]!;
    const plan = await planFile(file, fileIndex, resolved, copies[file] ?? file);
    const batches =
      plan.kind === 'parquet' ? readParquetFile(plan, resolved, base, 0, entry) : readTextFile(plan, resolved, base, 0, entry);
    entry = undefined;
    try {
      for (;;) {
        const next = await batches.next();
        if (next.done === true) {
          base += next.value;
          break;
        }
        for (const sample of next.value) {
          if (sample.index >= end) return;
          yield sample;
        }
      }
    } finally {
      await batches.return(0);
    }
  }
}

/**
 * How many rows readManifests will yield for `files` (from index 0), when that is cheap to know:
 * parquet row counts come from the footers; text files are counted by reading them only when none is
 * gzipped and together they hold less than COUNT_TEXT_LIMIT_BYTES (64 MiB). Otherwise undefined: the
 * caller then shows progress without an ETA. `options` must match the reader's for the header rule.
 */
export async function countManifestRows(
  files: readonly string[],
  options: Pick<ManifestOptions, 'format' | 'urlCol'> = DEFAULT_MANIFEST_OPTIONS,
): Promise<number | undefined> {
  let total = 0;
  const text: Array<{ file: string; format: TextFormat }> = [];
  let textBytes = 0;
  for (const file of files) {
    const format = concreteFormat(file, options.format);
    if (format === 'parquet') {
      const rows = await parquetRowCount(file);
      if (rows === undefined) return undefined;
      total += rows;
      continue;
    }
    if (isGzipPath(file)) return undefined;
    try {
      textBytes += (await stat(file)).size;
    } catch (err) {
      throw new FilipError('FILIP_ERR_MANIFEST', `cannot read manifest: ${(err as Error).message}`, { file }, {
        cause: err,
      });
    }
    if (textBytes >= COUNT_TEXT_LIMIT_BYTES) return undefined;
    text.push({ file, format });
  }
  for (const { file, format } of text) {
    const layout = await textLayout(file, format, options.urlCol);
    if (layout.empty) continue;
    let records = 0;
    for await (const batch of textRecords(file, layout.format)) records += batch.length;
    total += layout.header ? records - 1 : records;
  }
  return total;
}
