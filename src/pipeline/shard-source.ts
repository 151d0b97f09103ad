// Reads a finished output folder (ingest or filter) back as a stream of Samples, in shard order,
// so later stages (filter, shard) consume what earlier ones committed and nothing half-written.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import { IMAGE_FORMATS, type ImageFormat, type Sample } from '../core/sample.js';
import { NEAR_DUP_CHECK_BYTES } from '../image/near-dup-check.js';
import { EXTRA_PREFIX } from '../shard/schema.js';
import { iterateShard, shardRowCount } from '../shard/reader.js';
import { DEFAULT_QUEUE_NAME } from '../scale/plan.js';
import { readCommits, readRejects, RUN_FILE, SUMMARY_FILE, type CommitKind } from './output.js';

export interface CommittedShardsOptions {
  /** Only commits of these kinds (all when undefined). */
  readonly kinds?: readonly CommitKind[];
  /**
   * Accept a folder whose run has not finished (no `_summary.json`: killed, or still running) and
   * read what it has committed so far. When false, such a folder is FILIP_ERR_INPUT_UNFINISHED.
   * @default false
   */
  readonly partial?: boolean;
  /** The caller has a --partial-input flag, so the error may suggest it. @default false */
  readonly partialFlag?: boolean;
}

/** Whether the run in an output folder has finished: it wrote `_summary.json`, its last file. */
export async function isFinished(dir: string): Promise<boolean> {
  return fs.stat(path.join(dir, SUMMARY_FILE)).then((s) => s.isFile(), () => false);
}

/**
 * Committed shard files of an output folder, in order. Reads only; a running writer is not disturbed.
 * A run writes `_summary.json` last, and removes it when it starts again in the folder (resume,
 * --retry-failed, a queue's retry round), so a folder without one is a run that stopped or is still
 * going: reading it would make a dataset that silently lacks the rest of the input.
 */
export async function committedShards(dir: string, options: CommittedShardsOptions = {}): Promise<string[]> {
  const { kinds, partial = false } = options;
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) {
    throw new FilipError('FILIP_ERR_NO_INPUT', 'not a folder of filip-data shards', { file: dir });
  }
  // Without it this is some other folder (its parent, an empty one, loose Parquet files): reading it
  // as an output with nothing committed would "succeed" with 0 rows.
  if (!(await fs.stat(path.join(dir, RUN_FILE)).then((s) => s.isFile(), () => false))) {
    throw new FilipError('FILIP_ERR_NO_INPUT', `not a filip-data output folder: it has no ${RUN_FILE} (give the folder a filip-data ingest, filter or merge run wrote)`, { file: dir });
  }
  const commits = await readCommits(dir);
  if (!partial && !(await isFinished(dir))) {
    const rows = commits.reduce((a, c) => a + c.ok, 0);
    const run = JSON.parse(await fs.readFile(path.join(dir, RUN_FILE), 'utf8').catch(() => '{}')) as { identity?: { queue?: unknown } };
    // A queue run is finished by its workers, not by running the producer's command again.
    let finish = 'run its command again to complete it (it resumes where it stopped)';
    if (typeof run.identity?.queue === 'string') {
      const [url, name] = run.identity.queue.split('#');
      const named = name !== undefined && name !== DEFAULT_QUEUE_NAME ? ` --queue-name ${name}` : '';
      finish = `its chunk jobs are not all committed yet: start (or wait for) \`filip-data worker --queue ${url}${named}\``;
    }
    throw new FilipError(
      'FILIP_ERR_INPUT_UNFINISHED',
      `the run writing this folder has not finished (no ${SUMMARY_FILE}; ${commits.length} commits, ${rows} rows kept so far): ${finish}` +
        (options.partialFlag ? ', or pass --partial-input to use only what it has committed' : ''),
      { file: dir },
    );
  }
  return commits
    .filter((c) => c.file !== null && (kinds === undefined || kinds.includes(c.kind)))
    .map((c) => path.join(dir, c.file!));
}

export async function countShardRows(files: readonly string[]): Promise<number> {
  let n = 0;
  for (const f of files) n += await shardRowCount(f);
  return n;
}

const HEX16 = /^[0-9a-f]{16}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const FORMATS: ReadonlySet<unknown> = new Set(IMAGE_FORMATS);

function describe(value: unknown): string {
  if (value === undefined) return 'no such column';
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  return `${typeof value} ${JSON.stringify(typeof value === 'bigint' ? String(value) : value)?.slice(0, 80)}`;
}

function bad(file: string, row: number, field: string, want: string, value: unknown): never {
  throw new FilipError('FILIP_ERR_SHARD', `${field} must be ${want}, got ${describe(value)}`, { file, row, field });
}

/**
 * Checks the columns later stages rely on, so a damaged or foreign shard stops here with its own
 * file, row and column named, not later as a wrong decision (a null size read as 0 px) or as an
 * error about the stage's output file.
 */
function checkRow(file: string, row: number, r: Record<string, unknown>): void {
  for (const field of ['key', 'url', 'caption', 'source'] as const) {
    if (typeof r[field] !== 'string') bad(file, row, field, 'a string', r[field]);
  }
  if ((r.key as string).length === 0) bad(file, row, 'key', 'a non-empty string', r.key);
  if (!(r.image instanceof Uint8Array) || r.image.length === 0) bad(file, row, 'image', 'non-empty bytes', r.image);
  if (!FORMATS.has(r.image_format)) bad(file, row, 'image_format', `one of ${IMAGE_FORMATS.join(', ')}`, r.image_format);
  for (const field of ['width', 'height', 'original_width', 'original_height'] as const) {
    const v = r[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad(file, row, field, 'a positive integer', v);
  }
  if (typeof r.sha256 !== 'string' || !HEX64.test(r.sha256)) bad(file, row, 'sha256', '64 lower-case hex digits', r.sha256);
  // The near-duplicate rules parse these.
  if (typeof r.phash !== 'string' || !HEX16.test(r.phash)) bad(file, row, 'phash', '16 lower-case hex digits', r.phash);
  if (r.phash_weak !== null && r.phash_weak !== undefined && (typeof r.phash_weak !== 'string' || !HEX16.test(r.phash_weak))) {
    bad(file, row, 'phash_weak', '16 lower-case hex digits', r.phash_weak);
  }
  const check = r.near_dup_check;
  if (check !== null && check !== undefined && (!(check instanceof Uint8Array) || check.length !== NEAR_DUP_CHECK_BYTES)) {
    bad(file, row, 'near_dup_check', `${NEAR_DUP_CHECK_BYTES} bytes`, check);
  }
}

function parseSource(text: string): { file: string; row: number } {
  const sep = text.lastIndexOf(':');
  return { file: text.slice(0, sep), row: Number(text.slice(sep + 1)) };
}

/**
 * Every sample of the given shard files as an `ok` Sample with its image. `index` is the position in
 * this stream (0-based across the files), so a stage's resume counts over its own input.
 */
export async function* readShardSamples(files: readonly string[], startIndex = 0): AsyncGenerator<Sample> {
  let index = 0;
  for (const file of files) {
    const rows = await shardRowCount(file);
    if (index + rows <= startIndex) {
      index += rows;
      continue;
    }
    let row = -1;
    for await (const r of iterateShard(file)) {
      row++;
      if (index < startIndex) {
        index++;
        continue;
      }
      checkRow(file, row, r);
      const extra: Record<string, string | null> = {};
      for (const [k, v] of Object.entries(r)) {
        if (k.startsWith(EXTRA_PREFIX)) extra[k.slice(EXTRA_PREFIX.length)] = v === null ? null : String(v);
      }
      yield {
        key: String(r.key),
        index: index++,
        url: String(r.url),
        caption: String(r.caption),
        source: parseSource(String(r.source)),
        extra,
        status: 'ok',
        image: {
          bytes: Buffer.from(r.image as Uint8Array),
          format: String(r.image_format) as ImageFormat,
          width: Number(r.width),
          height: Number(r.height),
          originalWidth: Number(r.original_width),
          originalHeight: Number(r.original_height),
          sha256: String(r.sha256),
          phash: String(r.phash),
          ...(typeof r.phash_weak === 'string' ? { phashWeak: r.phash_weak } : {}),
          ...(r.near_dup_check instanceof Uint8Array ? { nearDupCheck: Buffer.from(r.near_dup_check) } : {}),
        },
      };
    }
  }
}

/**
 * The caption of every row the output folder's run read, once each: rows committed to shards by the
 * first pass, plus first-pass rejects (not malformed ones). A row that a --retry-failed pass later
 * kept is counted through its first-pass reject, so nothing is counted twice.
 */
export async function* outputCaptions(dir: string, partial = false): AsyncGenerator<string> {
  for (const file of await committedShards(dir, { kinds: ['ingest', 'filter'], partial, partialFlag: true })) {
    for await (const r of iterateShard(file, { columns: ['caption'] })) yield String(r.caption);
  }
  for await (const r of readRejects(dir)) if (r.kind !== 'retry' && r.reason !== 'malformed_row') yield r.caption;
}
