// Partitions for schedulers without Redis (Slurm job arrays, Kubernetes Indexed Jobs):
// `ingest --partitions N --partition I` keeps the rows of every N-th block of `rowsPerJob` input
// rows, starting with block I. No partition needs to know the manifest's length, blocks are dealt
// round-robin so partitions get equal shares, and `filip-data merge` puts them back in input order.
// A leaf module (core only), so the ingest pipeline can use it.

import { intOption, invalid } from '../core/options.js';
import type { Sample } from '../core/sample.js';

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
