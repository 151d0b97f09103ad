// The one record every stage passes along. A stage takes AsyncIterable<Sample> and yields
// AsyncIterable<Sample>; a sample it rejects keeps flowing with status 'rejected' and a reason code,
// so the writer can log it. Nothing is dropped silently.

import type { ReasonCode } from './reasons.js';

/** Where a row came from: the manifest file (as given on the command line) and its 0-based data row. */
export interface SampleSource {
  readonly file: string;
  /** 0-based index of the data record within the file (a header line is not counted). */
  readonly row: number;
}

/** Encoded output formats; `none` resize mode may also keep the original format, hence the wider type. */
export const IMAGE_FORMATS = ['jpeg', 'webp', 'png', 'gif', 'tiff', 'avif', 'heif', 'svg'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

export interface SampleImage {
  /** Encoded image bytes as stored in the shard. */
  readonly bytes: Buffer;
  readonly format: ImageFormat;
  /** Size as stored (after resize). */
  readonly width: number;
  readonly height: number;
  /** Size as downloaded, after EXIF orientation, before any resize. Filters use these. */
  readonly originalWidth: number;
  readonly originalHeight: number;
  /** Lower-case hex sha256 of the downloaded bytes (before decode). */
  readonly sha256: string;
  /** 64-bit DCT perceptual hash as 16 lower-case hex digits. */
  readonly phash: string;
  /**
   * The hash's weak-bit mask (src/image/phash.ts), 16 hex digits: which bits the near-duplicate
   * index probes. Absent in shards written before the column existed; lookups then probe exact
   * chunk matches only.
   */
  readonly phashWeak?: string;
  /**
   * What the near-duplicate rule confirms a pHash match with (src/image/near-dup-check.ts:
   * NEAR_DUP_CHECK_BYTES bytes, a chroma hash and a grey thumbnail). Absent in shards written before
   * the column existed; such rows match on the pHash alone, within PHASH_ONLY_DISTANCE.
   */
  readonly nearDupCheck?: Uint8Array;
}

/** One back-translated caption: caption -> pivot language -> English (shard stage). */
export interface CaptionTranslation {
  /** ISO 639-3 code of the pivot language, e.g. 'deu', 'rus', 'spa'. */
  readonly pivot: string;
  /** Engine that produced it, e.g. 'apertium', 'marian', 'http'. */
  readonly engine: string;
  readonly text: string;
}

/** A back-translation that failed: the row is kept with its original caption, and this says why. */
export interface TranslationFailure {
  readonly pivot: string;
  readonly engine: string;
  readonly reason: ReasonCode;
  readonly message: string;
}

export type SampleStatus = 'pending' | 'ok' | 'rejected';

/** Values of manifest columns the user asked to keep (`--keep-cols`), stored as strings or null. */
export type ExtraColumns = Record<string, string | null>;

export interface Sample {
  /** Stable, unique id: manifest file index (4 digits) then data row (9+ digits). */
  readonly key: string;
  /** 0-based position of the row in the whole input (all manifests in order). Resume counts by it. */
  readonly index: number;
  readonly url: string;
  readonly caption: string;
  readonly source: SampleSource;
  readonly extra: ExtraColumns;
  status: SampleStatus;
  reason?: ReasonCode;
  /** Filter stage: every rule the sample failed, in rule order; `reason` is the first of them. */
  failedRules?: ReasonCode[];
  errorMessage?: string;
  /** HTTP status of the final response, when there was one. */
  httpStatus?: number;
  /** --retry-failed: the reason of the earlier reject this attempt replaces (it no longer counts). */
  retriedReason?: ReasonCode;
  image?: SampleImage;
  /** Shard stage: extra captions from back-translation, one per pivot that succeeded. */
  backTranslations?: CaptionTranslation[];
  /** Shard stage: pivots whose back-translation failed (the sample is kept). */
  translationFailures?: TranslationFailure[];
  /** Shard stage: K AutoAugment views of the image, encoded in the image's format, view 0 first. */
  views?: Buffer[];
}

export function makeKey(fileIndex: number, row: number): string {
  return `${String(fileIndex).padStart(4, '0')}${String(row).padStart(9, '0')}`;
}

/** Marks a sample rejected (in place) and returns it, so stages can `yield reject(s, ...)`. */
export function reject(sample: Sample, reason: ReasonCode, message: string): Sample {
  sample.status = 'rejected';
  sample.reason = reason;
  sample.errorMessage = message;
  return sample;
}
