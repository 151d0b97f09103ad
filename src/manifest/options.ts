// Options of the manifest reader: which files, how to parse them and which columns to take.
// One typed, defaulted, validated factory; the allowed formats are one constant map reused by
// validation, the CLI's `choices` and the docs.

import { choiceOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';

/** Manifest formats. Value = one-line description (docs, --help). */
export const MANIFEST_FORMATS = {
  auto: 'by extension (.tsv .csv .jsonl .json .parquet, optionally .gz); a headerless .tsv is read as cc3m or cc12m',
  tsv: 'tab-separated with a header line, no quoting',
  csv: 'comma-separated with a header line, RFC 4180 quoting',
  jsonl: 'one JSON object per line (JSON Lines; also .json files written that way)',
  parquet: 'Apache Parquet (LAION style: pass urlCol "URL", captionCol "TEXT")',
  cc3m: 'headerless caption<TAB>url, as Conceptual Captions 3M ships',
  cc12m: 'headerless url<TAB>caption, as Conceptual 12M ships',
} as const;

export type ManifestFormat = keyof typeof MANIFEST_FORMATS;
export const MANIFEST_FORMAT_NAMES = Object.keys(MANIFEST_FORMATS) as ManifestFormat[];

export interface ManifestOptions {
  /**
   * Manifest files or folders. Folders are listed recursively (known extensions only, dot-files
   * skipped); the resulting list is sorted by path so keys and indexes are stable across runs.
   * @default []
   */
  readonly inputs: readonly string[];
  /**
   * How to parse every file; `auto` decides per file by extension and, for `.tsv`, by its first line.
   * @default 'auto'
   */
  readonly format: ManifestFormat;
  /**
   * Column holding the image URL. Matched exactly first, then case-insensitively.
   * Ignored by the headerless formats (cc3m, cc12m).
   * @default 'url'
   */
  readonly urlCol: string;
  /**
   * Column holding the caption. Matched like `urlCol`. A null caption becomes ''.
   * @default 'caption'
   */
  readonly captionCol: string;
  /**
   * Further columns copied into `sample.extra` as strings (null when the value is null).
   * @default []
   */
  readonly keepCols: readonly string[];
}

export const DEFAULT_MANIFEST_OPTIONS: ManifestOptions = Object.freeze({
  inputs: Object.freeze([]) as readonly string[],
  format: 'auto',
  urlCol: 'url',
  captionCol: 'caption',
  keepCols: Object.freeze([]) as readonly string[],
});

function stringList(name: string, value: unknown, { nonEmpty }: { nonEmpty: boolean }): readonly string[] {
  const expected = `${nonEmpty ? 'a non-empty' : 'an'} array of non-empty strings`;
  if (!Array.isArray(value) || (nonEmpty && value.length === 0)) throw invalid(name, expected, value);
  for (const item of value) {
    if (typeof item !== 'string' || item.length === 0) throw invalid(name, expected, value);
  }
  return Object.freeze([...(value as string[])]);
}

/**
 * Applies the defaults and validates every field at once. Throws FilipError FILIP_ERR_INVALID_OPTION
 * naming the option; unknown keys are errors. `inputs` must name at least one path.
 */
export function resolveManifestOptions(partial: Partial<ManifestOptions> = {}): ManifestOptions {
  if (typeof partial !== 'object' || partial === null) throw invalid('manifest options', 'an object', partial);
  rejectUnknownKeys('manifest', partial, DEFAULT_MANIFEST_OPTIONS);
  const merged = { ...DEFAULT_MANIFEST_OPTIONS, ...partial };
  const keepCols = stringList('keepCols', merged.keepCols, { nonEmpty: false });
  if (new Set(keepCols).size !== keepCols.length) throw invalid('keepCols', 'a list without duplicates', keepCols);
  return Object.freeze({
    inputs: stringList('inputs', merged.inputs, { nonEmpty: true }),
    format: choiceOption('format', merged.format, MANIFEST_FORMAT_NAMES),
    urlCol: stringOption('urlCol', merged.urlCol),
    captionCol: stringOption('captionCol', merged.captionCol),
    keepCols,
  });
}
