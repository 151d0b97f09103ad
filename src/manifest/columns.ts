// From a manifest row's raw values to a Sample: finding the requested columns in a header or schema,
// turning cell values into strings, and deciding whether the row is malformed. Shared by every format.

import { FilipError } from '../core/errors.js';
import { makeKey, type ExtraColumns, type Sample } from '../core/sample.js';

/** Marks a value that is absent from the row (too few fields, a JSONL key not present). */
export const MISSING: unique symbol = Symbol('missing');

/** Index of `name` in `columns`: exact match first, then the first case-insensitive match; -1 if none. */
export function findColumn(columns: readonly string[], name: string): number {
  const exact = columns.indexOf(name);
  if (exact !== -1) return exact;
  const lower = name.toLowerCase();
  return columns.findIndex((c) => c.toLowerCase() === lower);
}

/** Key of `name` in a JSON object, matched like findColumn; undefined if absent. */
export function findKey(object: Record<string, unknown>, name: string): string | undefined {
  if (Object.hasOwn(object, name)) return name;
  const lower = name.toLowerCase();
  for (const key of Object.keys(object)) if (key.toLowerCase() === lower) return key;
  return undefined;
}

/** The requested columns: which name each plays, in the order url, caption, ...keepCols. */
export interface ColumnRequest {
  readonly urlCol: string;
  readonly captionCol: string;
  readonly keepCols: readonly string[];
}

/** Positions of the requested columns in a header or schema. */
export interface ColumnPositions {
  readonly url: number;
  readonly caption: number;
  readonly keep: readonly number[];
}

function listColumns(columns: readonly string[]): string {
  return columns.length === 0 ? '(none)' : columns.map((c) => JSON.stringify(c)).join(', ');
}

/**
 * Finds every requested column in `columns` or throws FILIP_ERR_MISSING_COLUMN naming the file, the
 * missing columns and the columns the file has.
 */
export function locateColumns(file: string, columns: readonly string[], request: ColumnRequest): ColumnPositions {
  const url = findColumn(columns, request.urlCol);
  const caption = findColumn(columns, request.captionCol);
  const keep = request.keepCols.map((name) => findColumn(columns, name));
  const missing: string[] = [];
  if (url === -1) missing.push(`${JSON.stringify(request.urlCol)} (the URL column)`);
  if (caption === -1) missing.push(`${JSON.stringify(request.captionCol)} (the caption column)`);
  request.keepCols.forEach((name, i) => {
    if (keep[i] === -1) missing.push(`${JSON.stringify(name)} (a column to keep)`);
  });
  if (missing.length > 0) {
    const first = url === -1 ? request.urlCol : caption === -1 ? request.captionCol : request.keepCols[keep.indexOf(-1)];
    throw new FilipError(
      'FILIP_ERR_MISSING_COLUMN',
      `manifest lacks column ${missing.join(', ')}; its columns are: ${listColumns(columns)}`,
      { file, field: first },
    );
  }
  return { url, caption, keep };
}

/** Where a row is, for its key and for messages. */
export interface RowPlace {
  readonly file: string;
  readonly fileIndex: number;
  /** 0-based data row in the file. */
  readonly row: number;
  /** 0-based global index. */
  readonly index: number;
  /** 1-based physical line, for text formats. */
  readonly line?: number;
}

/** A reason the whole row cannot be used, found before looking at the values. */
export interface RowProblem {
  readonly message: string;
  readonly field?: string;
}

export function rowMessage(place: RowPlace, problem: RowProblem): string {
  const where = [place.file, `row ${place.row}`];
  if (problem.field !== undefined) where.push(`field ${JSON.stringify(problem.field)}`);
  const line = place.line === undefined ? '' : ` (line ${place.line})`;
  return `${where.join(', ')}: ${problem.message}${line}`;
}

function bigintSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function typeName(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'binary';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * A kept column's value as a string: strings as they are, numbers, bigints and booleans through
 * String(), dates as ISO 8601, bytes as base64, anything else as JSON; null stays null.
 */
export function cellToString(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  return JSON.stringify(value, bigintSafe) ?? null;
}

/** Names of the requested columns, as the user spelled them (extras are keyed by these). */
export interface RowNames {
  readonly url: string;
  readonly caption: string;
  readonly keep: readonly string[];
}

/**
 * Builds the Sample for one row. Values are raw cells (MISSING when absent, null when null). The row
 * is rejected as malformed_row on `problem`, a missing value, or a url that is null, not a string or
 * empty after trimming; the first fault found is the one reported.
 */
export function rowToSample(
  place: RowPlace,
  names: RowNames,
  url: unknown,
  caption: unknown,
  keep: readonly unknown[],
  problem?: RowProblem,
): Sample {
  // Straight-line code without per-row closures: this runs once per manifest row.
  let fault = problem;

  let urlText = '';
  if (url === MISSING) fault ??= { field: names.url, message: 'value is missing' };
  else if (typeof url !== 'string') fault ??= { field: names.url, message: `URL is ${typeName(url)}, not a string` };
  else {
    urlText = url.trim();
    if (urlText.length === 0) fault ??= { field: names.url, message: 'URL is empty' };
    // An http(s) URL that does not parse would otherwise fail at fetch time as a (transient)
    // network error and be retried forever by --retry-failed: it is a bad row, say so here.
    else if (/^https?:/i.test(urlText) && !URL.canParse(urlText)) {
      fault ??= { field: names.url, message: `URL does not parse: ${JSON.stringify(urlText.slice(0, 200))}` };
    }
  }

  let captionText = '';
  if (typeof caption === 'string') captionText = caption.trim();
  else if (caption === MISSING) fault ??= { field: names.caption, message: 'value is missing' };
  else if (typeof caption === 'number' || typeof caption === 'bigint' || typeof caption === 'boolean') {
    captionText = String(caption);
  } else if (caption !== null && caption !== undefined) {
    fault ??= { field: names.caption, message: `caption is ${typeName(caption)}` };
  }

  const extra: ExtraColumns = {};
  for (let i = 0; i < names.keep.length; i++) {
    const name = names.keep[i]!;
    const value = keep[i];
    if (value === MISSING) {
      fault ??= { field: name, message: 'value is missing' };
      extra[name] = null;
    } else {
      extra[name] = cellToString(value);
    }
  }

  const sample: Sample = {
    key: makeKey(place.fileIndex, place.row),
    index: place.index,
    url: urlText,
    caption: captionText,
    source: { file: place.file, row: place.row },
    extra,
    status: 'pending',
  };
  if (fault !== undefined) {
    sample.status = 'rejected';
    sample.reason = 'malformed_row';
    sample.errorMessage = rowMessage(place, fault);
  }
  return sample;
}
