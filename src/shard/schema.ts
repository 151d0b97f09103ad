// The Parquet shard schema: the one place that knows column names, types and their meaning.
// Names follow img2dataset where it has one (key, url, caption, width, height, original_width,
// original_height, sha256, status, error_message); image bytes live in the `image` column.

import type { Sample } from '../core/sample.js';

export type ColumnType = 'utf8' | 'binary' | 'int32' | 'int64';

export interface ColumnSpec {
  readonly name: string;
  readonly type: ColumnType;
  readonly nullable: boolean;
  readonly doc: string;
}

export const BASE_COLUMNS: readonly ColumnSpec[] = [
  { name: 'key', type: 'utf8', nullable: false, doc: 'stable unique id: manifest file index (4 digits) + 0-based data row (9 digits, more past 999,999,999)' },
  { name: 'url', type: 'utf8', nullable: false, doc: 'the URL (or path) as given in the manifest' },
  { name: 'caption', type: 'utf8', nullable: false, doc: 'the caption as given in the manifest (trimmed)' },
  { name: 'image', type: 'binary', nullable: false, doc: 'encoded image bytes' },
  { name: 'image_format', type: 'utf8', nullable: false, doc: 'jpeg, webp or png (or the original format with --resize-mode none)' },
  { name: 'width', type: 'int32', nullable: false, doc: 'width of the stored image in pixels' },
  { name: 'height', type: 'int32', nullable: false, doc: 'height of the stored image in pixels' },
  { name: 'original_width', type: 'int32', nullable: false, doc: 'width as downloaded, after EXIF orientation, before resize' },
  { name: 'original_height', type: 'int32', nullable: false, doc: 'height as downloaded, after EXIF orientation, before resize' },
  { name: 'sha256', type: 'utf8', nullable: false, doc: 'hex sha256 of the downloaded bytes' },
  { name: 'phash', type: 'utf8', nullable: false, doc: '64-bit DCT perceptual hash, 16 hex digits' },
  {
    name: 'phash_weak',
    type: 'utf8',
    nullable: true,
    doc: "the phash's weak-bit mask, 16 hex digits: per 16-bit chunk, the 5 bits closest to flipping, which near-duplicate lookups probe",
  },
  {
    name: 'near_dup_check',
    type: 'binary',
    nullable: true,
    doc: 'what the near-duplicate rules confirm a pHash match with: 592 bytes, a 128-bit chroma hash and a 24 x 24 grey thumbnail (src/image/near-dup-check.ts)',
  },
  { name: 'source', type: 'utf8', nullable: false, doc: 'manifest file and data row, as "FILE:ROW" (row 0-based)' },
];

/** Kept manifest columns are stored as nullable strings under their own name, prefixed to avoid clashes. */
export const EXTRA_PREFIX = 'extra_';

export function shardColumns(keepCols: readonly string[]): ColumnSpec[] {
  return [
    ...BASE_COLUMNS,
    ...keepCols.map((c) => ({
      name: EXTRA_PREFIX + c,
      type: 'utf8' as const,
      nullable: true,
      doc: `manifest column "${c}", kept by --keep-cols`,
    })),
  ];
}

/** One shard row as plain values, in the order of shardColumns(). */
export type ShardRow = Record<string, string | number | Buffer | null>;

export function sampleToRow(sample: Sample, keepCols: readonly string[]): ShardRow {
  const img = sample.image;
  if (sample.status !== 'ok' || img === undefined) {
    throw new Error(`sampleToRow: sample ${sample.key} is not an ok sample with an image`);
  }
  const row: ShardRow = {
    key: sample.key,
    url: sample.url,
    caption: sample.caption,
    image: img.bytes,
    image_format: img.format,
    width: img.width,
    height: img.height,
    original_width: img.originalWidth,
    original_height: img.originalHeight,
    sha256: img.sha256,
    phash: img.phash,
    phash_weak: img.phashWeak ?? null,
    near_dup_check: img.nearDupCheck === undefined ? null : Buffer.from(img.nearDupCheck.buffer, img.nearDupCheck.byteOffset, img.nearDupCheck.byteLength),
    source: `${sample.source.file}:${sample.source.row}`,
  };
  for (const c of keepCols) row[EXTRA_PREFIX + c] = sample.extra[c] ?? null;
  return row;
}

/** Shard file name for shard number n: 00000.parquet, 00001.parquet, ... */
export function shardName(n: number, ext = 'parquet'): string {
  return `${String(n).padStart(5, '0')}.${ext}`;
}

// ---- Training shards (`filip-data shard`): the ingest columns plus the shard stage's additions. ----

/** JSON array of {pivot, engine, text}, "[]" when none. */
export const BACK_TRANSLATIONS_COLUMN = 'back_translations';
/** JSON array of {pivot, engine, reason, message}, "[]" when none. */
export const TRANSLATION_FAILURES_COLUMN = 'translation_failures';
/** AutoAugment views are binary columns view_0 ... view_{K-1}. */
export const VIEW_PREFIX = 'view_';

export function trainingShardColumns(keepCols: readonly string[], views: number): ColumnSpec[] {
  const cols = shardColumns(keepCols);
  cols.push(
    { name: BACK_TRANSLATIONS_COLUMN, type: 'utf8', nullable: false, doc: 'JSON array of back-translated captions: [{"pivot":"spa","engine":"apertium","text":"..."}]' },
    { name: TRANSLATION_FAILURES_COLUMN, type: 'utf8', nullable: false, doc: 'JSON array of failed back-translations: [{"pivot","engine","reason","message"}]; the row is kept' },
  );
  for (let v = 0; v < views; v++) {
    cols.push({ name: `${VIEW_PREFIX}${v}`, type: 'binary', nullable: false, doc: `AutoAugment view ${v} of the image, same format as image, seeded by (seed, key, ${v})` });
  }
  return cols;
}

export function sampleToTrainingRow(sample: Sample, keepCols: readonly string[], views: number): ShardRow {
  const row = sampleToRow(sample, keepCols);
  row[BACK_TRANSLATIONS_COLUMN] = JSON.stringify(sample.backTranslations ?? []);
  row[TRANSLATION_FAILURES_COLUMN] = JSON.stringify(sample.translationFailures ?? []);
  for (let v = 0; v < views; v++) {
    const b = sample.views?.[v];
    if (b === undefined) throw new Error(`sampleToTrainingRow: sample ${sample.key} lacks view ${v}`);
    row[`${VIEW_PREFIX}${v}`] = b;
  }
  return row;
}
