// Reads a finished output folder (ingest or filter) back as a stream of Samples, in shard order,
// so later stages (filter, shard) consume what earlier ones committed and nothing half-written.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import type { ImageFormat, Sample } from '../core/sample.js';
import { EXTRA_PREFIX } from '../shard/schema.js';
import { iterateShard, shardRowCount } from '../shard/reader.js';
import { readCommits, readRejects, type CommitKind } from './output.js';

/** Committed shard files of an output folder, in order. Reads only; a running writer is not disturbed. */
export async function committedShards(dir: string, kinds?: readonly CommitKind[]): Promise<string[]> {
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) {
    throw new FilipError('FILIP_ERR_NO_INPUT', 'not a folder of filip-data shards', { file: dir });
  }
  const commits = await readCommits(dir);
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

function badHash(file: string, row: number, field: string, value: unknown): never {
  throw new FilipError('FILIP_ERR_SHARD', `${field} must be 16 lower-case hex digits, got ${JSON.stringify(value)}`, { file, row, field });
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
      // The near-duplicate rules parse these; a bad one names its file, row and column here.
      if (typeof r.phash !== 'string' || !HEX16.test(r.phash)) badHash(file, row, 'phash', r.phash);
      if (r.phash_weak !== null && r.phash_weak !== undefined && (typeof r.phash_weak !== 'string' || !HEX16.test(r.phash_weak))) {
        badHash(file, row, 'phash_weak', r.phash_weak);
      }
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
export async function* outputCaptions(dir: string): AsyncGenerator<string> {
  for (const file of await committedShards(dir, ['ingest', 'filter'])) {
    for await (const r of iterateShard(file, { columns: ['caption'] })) yield String(r.caption);
  }
  for await (const r of readRejects(dir)) if (r.kind !== 'retry' && r.reason !== 'malformed_row') yield r.caption;
}
