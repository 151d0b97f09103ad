// Partitions for schedulers without Redis (Slurm job arrays, Kubernetes Indexed Jobs):
// `ingest --partitions N --partition I` keeps the rows of every N-th block of `rowsPerJob` input
// rows, starting with block I. No partition needs to know the manifest's length, blocks are dealt
// round-robin so partitions get equal shares, and `filip-data merge` puts them back in input order.
// readPartition enters each of its blocks at a recorded cursor (see src/manifest/read.ts) instead of
// reading every row and dropping the others'. Imports only core and manifest, so ingest can use it.

import { promises as fs } from 'node:fs';
import { intOption, invalid } from '../core/options.js';
import type { Sample } from '../core/sample.js';
import {
  listManifestFiles,
  readManifestsFrom,
  resolveManifestOptions,
  scanManifests,
  type ManifestCursor,
  type ManifestOptions,
  type PlainCopies,
} from '../manifest/read.js';
import { readLines } from '../manifest/text.js';

/** Input rows per chunk job, and per partition block. @default 1000 */
export const DEFAULT_ROWS_PER_JOB = 1000;

/** Which partition a global input row belongs to. */
export function partitionOf(index: number, rowsPerJob: number, partitions: number): number {
  return Math.floor(index / rowsPerJob) % partitions;
}

/** Validates `--partitions N --partition I`: N >= 1, 0 <= I < N. */
export function checkPartition(partitions: unknown, partition: unknown): { partitions: number; partition: number } {
  const n = intOption('partitions', partitions, 1, 1_000_000);
  const i = intOption('partition', partition, 0);
  if (i >= n) throw invalid('partition', `an integer from 0 to ${n - 1} (partitions is ${n})`, i);
  return { partitions: n, partition: i };
}

/** How many of `total` input rows fall in partition I. */
export function rowsInPartition(total: number, rowsPerJob: number, partitions: number, partition: number): number {
  const blocks = Math.ceil(total / rowsPerJob);
  let rows = 0;
  for (let b = partition; b < blocks; b += partitions) rows += Math.min(rowsPerJob, total - b * rowsPerJob);
  return rows;
}

/** Stage: only the rows of one partition go on (the others are another partition's, not rejects). */
export async function* onlyPartition(source: AsyncIterable<Sample>, rowsPerJob: number, partitions: number, partition: number): AsyncGenerator<Sample> {
  for await (const s of source) if (partitionOf(s.index, rowsPerJob, partitions) === partition) yield s;
}

/** A partition of a run: which blocks of `rowsPerJob` rows it owns. */
export interface PartitionSpec {
  readonly rowsPerJob: number;
  readonly partitions: number;
  readonly partition: number;
}

/**
 * The rows of one partition from global index `startIndex` on, the rows onlyPartition(readManifests())
 * yields, but each block entered at its own cursor, so the other partitions' rows are never turned
 * into samples. The cursors come from `index` (a file written once by writeCursorIndex: then a
 * partition reads only its own blocks' bytes, and N partitions together read the manifests once), or,
 * without one, from a scan of the manifests (scanManifests: parsing only, about a third of the cost of
 * reading them into samples; parquet cursors come from the footers at no cost).
 */
export async function* readPartition(
  options: ManifestOptions,
  spec: PartitionSpec,
  startIndex = 0,
  index?: string,
  copies: PlainCopies = {},
): AsyncGenerator<Sample> {
  const { rowsPerJob, partitions, partition } = spec;
  const mine = (c: ManifestCursor) => partitionOf(c.index, rowsPerJob, partitions) === partition && c.index + rowsPerJob > startIndex;
  const cursors: ManifestCursor[] = [];
  if (index !== undefined) {
    for await (const c of readCursorIndex(index, rowsPerJob)) if (mine(c)) cursors.push(c);
  } else {
    await scanManifests(options, rowsPerJob, (c) => void (mine(c) && cursors.push(c)), copies);
  }
  const files = await listManifestFiles(options.inputs);
  const exact = resolveManifestOptions({ ...options, inputs: files });
  for (const cursor of cursors) {
    for await (const s of readManifestsFrom(exact, cursor, cursor.index + rowsPerJob, copies)) if (s.index >= startIndex) yield s;
  }
}

/**
 * Scans the manifests once and writes where every block of `rowsPerJob` rows starts to `file` (JSON
 * Lines, a header line then one cursor a line; temporary name, renamed when complete). Returns the
 * number of rows. Run it once before starting the partitions, and give each the file.
 */
export async function writeCursorIndex(options: ManifestOptions, rowsPerJob: number, file: string): Promise<number> {
  const tmp = `${file}.tmp`;
  const out = await fs.open(tmp, 'w');
  try {
    let lines: string[] = [JSON.stringify({ rowsPerJob })];
    const total = await scanManifests(options, rowsPerJob, async (c) => {
      lines.push(JSON.stringify(c));
      if (lines.length >= 1000) {
        await out.write(`${lines.join('\n')}\n`);
        lines = [];
      }
    });
    if (lines.length > 0) await out.write(`${lines.join('\n')}\n`);
    await out.sync();
    await out.close();
    await fs.rename(tmp, file);
    return total;
  } catch (error) {
    await out.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw error;
  }
}

/** The cursors of an index written by writeCursorIndex; refuses an index made for another block size. */
export async function* readCursorIndex(file: string, rowsPerJob: number): AsyncGenerator<ManifestCursor> {
  let header = true;
  for await (const batch of readLines(file)) {
    for (const line of batch) {
      if (line.text.length === 0) continue;
      const value = JSON.parse(line.text) as ManifestCursor & { rowsPerJob?: number };
      if (header) {
        header = false;
        if (value.rowsPerJob !== rowsPerJob) throw invalid('index', `an index of blocks of ${rowsPerJob} rows (rowsPerJob)`, `${String(value.rowsPerJob)} (${file})`);
        continue;
      }
      yield value;
    }
  }
}
