// Loads the perceptual hashes of a user's evaluation set for the `contaminated` rule: training images
// that are near duplicates of evaluation images are dropped, as ALIGN did against its benchmarks.
//
// The set is given as a folder (searched recursively; hidden entries skipped) or a single file, of
// images, of Parquet shards written by ingest, or of both. Images are hashed exactly as ingest hashes
// a training image (processImage with the default keep-ratio 256 options, then its `phash`), so the
// two sides of the comparison come from the same function; shards give their `phash` column.
//
// Errors (FilipError): FILIP_ERR_INVALID_OPTION, naming the path, when the path does not exist, when
// it yields no hash at all, or when one of its images cannot be decoded (a silent gap in the
// decontamination would defeat its purpose); FILIP_ERR_MISSING_COLUMN for a shard without `phash`;
// FILIP_ERR_SHARD for a shard that cannot be read or holds a malformed hash. Files that are not
// images by their first bytes (a README, labels.txt, an SVG, a shard's stats file) are skipped.
//
// With a check (the filter's default), each image's check data comes with its hash, from
// processImage or the shard's `near_dup_check` column; rows of shards without that column match on
// the pHash alone, within PHASH_ONLY_DISTANCE (phash-index.ts).

import { availableParallelism } from 'node:os';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { FilipError } from '../core/errors.js';
import { DEFAULT_IMAGE_OPTIONS, processImage } from '../image/process.js';
import { sniffImageFormat } from '../image/sniff.js';
import { orderedMap } from '../pipeline/pool.js';
import { iterateShard } from '../shard/reader.js';
import { NEAR_DUP_CHECK_BYTES, type NearDupCheckThresholds } from '../image/near-dup-check.js';
import { PhashIndex } from './phash-index.js';

const SHARD_EXT = '.parquet';
const PHASH = /^[0-9a-f]{16}$/;
/** The option the path came from, named in errors. */
const FIELD = 'decontaminate';

/** What a load found, for the caller's log line. */
export interface DecontaminationStats {
  readonly images: number;
  readonly shards: number;
  /** Hashes from shard rows. */
  readonly shardRows: number;
  /** Files that are neither shards nor images. */
  readonly skipped: number;
}

/**
 * Hashes of the evaluation set at `path` (a folder or a file of images and/or shards) in a
 * PhashIndex that matches within `maxDistance` bits through a sample's weak bits (PhashIndex.find).
 * `onStats`, when given, receives the counts.
 */
export async function loadDecontaminationIndex(
  path: string,
  maxDistance: number,
  check?: NearDupCheckThresholds,
  onStats?: (stats: DecontaminationStats) => void,
): Promise<PhashIndex> {
  const index = new PhashIndex(maxDistance, check);
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    throw new FilipError('FILIP_ERR_INVALID_OPTION', 'the evaluation set does not exist or cannot be read', { file: path, field: FIELD }, { cause: err });
  }
  const files = info.isDirectory() ? await listFiles(path) : [path];
  const shards = files.filter((f) => extname(f).toLowerCase() === SHARD_EXT);
  const images = files.filter((f) => extname(f).toLowerCase() !== SHARD_EXT);

  let shardRows = 0;
  for (const shard of shards) shardRows += await addShard(index, shard);

  let hashedImages = 0;
  let skipped = 0;
  const hashes = orderedMap(
    (async function* () {
      yield* images;
    })(),
    (file) => hashImage(file),
    { concurrency: Math.max(1, Math.min(8, availableParallelism())), window: 64 },
  );
  for await (const hashed of hashes) {
    if (hashed === undefined) {
      skipped++;
      continue;
    }
    index.add(hashed.phash, hashed.check);
    hashedImages++;
  }

  if (index.size === 0) {
    const what = files.length === 0 ? 'holds no files' : `holds no image or shard row to hash (${skipped} other files)`;
    throw new FilipError('FILIP_ERR_INVALID_OPTION', `the evaluation set ${what}`, { file: path, field: FIELD });
  }
  onStats?.({ images: hashedImages, shards: shards.length, shardRows, skipped });
  return index;
}

/** Files under `dir`, sorted by path so the index is the same from run to run. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full)));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/** The phash and check data ingest would store for this file; undefined when the file is not an image at all. */
async function hashImage(file: string): Promise<{ phash: string; check: Uint8Array | undefined } | undefined> {
  // Look at the magic bytes before reading a whole file: an output folder also holds logs and stats.
  const head = Buffer.alloc(64);
  const handle = await open(file, 'r');
  let got: number;
  try {
    got = (await handle.read(head, 0, head.length, 0)).bytesRead;
  } finally {
    await handle.close();
  }
  if (sniffImageFormat(head.subarray(0, got)) === undefined) return undefined;
  const bytes = await readFile(file);
  const result = await processImage(bytes, DEFAULT_IMAGE_OPTIONS);
  if (result.ok) return { phash: result.image.phash, check: result.image.nearDupCheck };
  if (result.reason === 'not_an_image') return undefined;
  throw new FilipError('FILIP_ERR_INVALID_OPTION', `an evaluation image cannot be hashed (${result.reason}): ${result.message}`, {
    file,
    field: FIELD,
  });
}

async function addShard(index: PhashIndex, file: string): Promise<number> {
  let row = 0;
  for await (const record of iterateShard(file, { columns: ['phash'], optionalColumns: ['near_dup_check'] })) {
    if (!Object.hasOwn(record, 'phash')) {
      throw new FilipError('FILIP_ERR_MISSING_COLUMN', 'the shard has no phash column', { file, field: 'phash' });
    }
    const hash = record.phash;
    if (typeof hash !== 'string' || !PHASH.test(hash)) {
      throw new FilipError('FILIP_ERR_SHARD', `expected 16 lower-case hex digits, got ${JSON.stringify(hash)}`, { file, row, field: 'phash' });
    }
    const check = record.near_dup_check;
    if (check !== null && check !== undefined && (!(check instanceof Uint8Array) || check.length !== NEAR_DUP_CHECK_BYTES)) {
      throw new FilipError('FILIP_ERR_SHARD', `expected ${NEAR_DUP_CHECK_BYTES} bytes`, { file, row, field: 'near_dup_check' });
    }
    index.add(hash, check ?? undefined);
    row++;
  }
  return row;
}
