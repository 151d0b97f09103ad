// How a run is cut into pieces for many machines: chunk jobs of `rowsPerJob` consecutive input rows
// (queue mode; partitions are in partition.ts).
// Also the run record that `ingest --queue` stores in Redis for the workers, and the key layout.

import type { NearDupIndexKind } from './phash-redis.js';
import { FilipError } from '../core/errors.js';
import { invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import type { ManifestCursor, PlainCopies } from '../manifest/read.js';
import type { IngestOptions } from '../pipeline/ingest.js';

/** Options of the queue itself, shared by `ingest --queue`, `worker` and `status`. */
export interface QueueOptions {
  /** `redis://HOST:PORT/DB`. Required. */
  readonly url: string;
  /** BullMQ queue name; also the prefix of filip-data's own keys (`filip:<name>:...`). @default 'filip-ingest' */
  readonly name: string;
}

export const DEFAULT_QUEUE_NAME = 'filip-ingest';
const QUEUE_NAME_RE = /^[A-Za-z0-9_.-]{1,100}$/;

export function resolveQueueOptions(input: Partial<QueueOptions> & { url: string }): QueueOptions {
  rejectUnknownKeys('queue', input, { url: 0, name: 0 });
  const name = input.name ?? DEFAULT_QUEUE_NAME;
  if (typeof name !== 'string' || !QUEUE_NAME_RE.test(name)) throw invalid('queueName', 'letters, digits, _ . - (1 to 100)', name);
  return { url: stringOption('queue', input.url), name };
}

export { DEFAULT_ROWS_PER_JOB } from './partition.js';

export interface ChunkRange {
  readonly chunk: number;
  /** First global input index, inclusive. */
  readonly start: number;
  /** Last global input index, exclusive. */
  readonly end: number;
}

export function chunkRange(chunk: number, rowsPerJob: number, total: number): ChunkRange {
  const start = chunk * rowsPerJob;
  return { chunk, start, end: Math.min(start + rowsPerJob, total) };
}

export function chunkCount(total: number, rowsPerJob: number): number {
  return Math.ceil(total / rowsPerJob);
}

/**
 * What `ingest --queue` stores under `filip:<name>:run`: everything a worker needs to process a
 * chunk the way a single-machine run would, so workers take no pipeline flags of their own.
 */
export interface QueueRun {
  readonly version: 1;
  /** Manifest files, absolute, in the order that gives keys (sorted). */
  readonly files: string[];
  /**
   * Plain copies of the gzipped manifests (original -> copy under `.staging/manifests/`), which chunk
   * jobs read instead: a gzip stream cannot be entered at a byte offset. Absent in runs of older versions.
   */
  readonly copies?: PlainCopies;
  /** Chunks of the manifest pass (count and stage jobs); later chunks belong to `--retry-failed` rounds. */
  readonly baseChunks?: number;
  /** `ingest --retry-failed --queue` rounds, in order; their chunks follow the manifest's. */
  readonly retries?: RetryRound[];
  /** Shared output folder, absolute as seen by the producer (a worker may mount it elsewhere: `--output`). */
  readonly output: string;
  readonly total: number;
  readonly rowsPerJob: number;
  /** Every chunk of the run: the manifest's, then those of the retry rounds. */
  readonly chunks: number;
  readonly manifest: IngestOptions['manifest'];
  readonly fetch: IngestOptions['fetch'];
  readonly image: IngestOptions['image'];
  readonly writer: IngestOptions['writer'];
  readonly dedupe: IngestOptions['dedupe'];
  readonly filter: IngestOptions['filter'] | null;
  /** Whether count jobs run first (the repeated_text rule is on). */
  readonly countCaptions: boolean;
  readonly bucketBits: number;
  /**
   * Where the near_duplicate rule's index lives: 'redis' (bucketed in Redis, phash-redis.ts) or
   * 'replica' (a log in Redis plus a local copy in each committer). Absent in older runs: 'redis'.
   */
  readonly nearDupIndex?: NearDupIndexKind;
  readonly createdAt: string;
}

/**
 * One `ingest --retry-failed --queue` round: the rows it re-attempts are spilled, one JSON sample a
 * line, to `file`; its chunk K (from firstChunk) starts at the byte offset stored for K in `sources`.
 */
export interface RetryRound {
  readonly round: number;
  readonly firstChunk: number;
  readonly chunks: number;
  readonly rows: number;
  /** Absolute path, in the output's staging folder. */
  readonly file: string;
}

/** Where a chunk job's rows come from: a place in the manifests, or a place in a retry round's spill file. */
export type ChunkSource =
  | { readonly kind: 'manifest'; readonly cursor: ManifestCursor }
  | { readonly kind: 'retry'; readonly round: number; readonly offset: number; readonly rows: number };

/** The manifest pass's chunk count (runs without retry rounds: all of them). */
export function baseChunksOf(run: QueueRun): number {
  return run.baseChunks ?? run.chunks;
}

/** The retry round chunk K belongs to, or undefined for a manifest chunk. */
export function retryRoundOf(run: QueueRun, chunk: number): RetryRound | undefined {
  return run.retries?.find((r) => chunk >= r.firstChunk && chunk < r.firstChunk + r.chunks);
}

/**
 * The fields that must match for `ingest --queue` to add to (rather than clash with) a stored run:
 * the inputs and pipeline options, not what the run found (row count) or added since (retry rounds).
 */
export function runIdentityOf(r: QueueRun): string {
  const { createdAt: _c, fetch: _f, total: _t, chunks: _n, baseChunks: _b, retries: _r, ...same } = r;
  return JSON.stringify(same);
}

export function parseRun(text: string | null, url: string, name: string): QueueRun {
  if (text === null) {
    throw new FilipError('FILIP_ERR_QUEUE', `no run on queue "${name}" at ${url}: start one with \`filip-data ingest --queue ${url} ...\``, {
      field: 'queue',
    });
  }
  try {
    const run = JSON.parse(text) as QueueRun;
    if (run.version !== 1) throw new Error(`version ${String(run.version)}`);
    return run;
  } catch (cause) {
    throw new FilipError('FILIP_ERR_QUEUE', `the run record of queue "${name}" at ${url} cannot be read`, { field: 'queue' }, { cause });
  }
}

/** Key names of one queue's state. Everything filip-data keeps in Redis lives under `filip:<name>:`. */
export class Keys {
  readonly prefix: string;
  constructor(readonly name: string) {
    this.prefix = `filip:${name}`;
  }
  get run() {
    return `${this.prefix}:run`;
  }
  /** Next chunk to commit (a number; absent = 0). */
  get next() {
    return `${this.prefix}:next`;
  }
  /** Bitmap: chunk k staged (downloaded, decoded, written to .staging/). */
  get staged() {
    return `${this.prefix}:staged`;
  }
  /** Bitmap: chunk k's captions counted (idempotency marker of the count job). */
  get counted() {
    return `${this.prefix}:counted`;
  }
  /** The commit lock (holder's token, with a TTL). */
  get lock() {
    return `${this.prefix}:lock`;
  }
  /** Hash: chunk number -> JSON ChunkSource (where the chunk's rows start), written by the producer. */
  get sources() {
    return `${this.prefix}:sources`;
  }
  /** Hash: worker id -> JSON stats. */
  get workers() {
    return `${this.prefix}:workers`;
  }
  decided(chunk: number) {
    return `${this.prefix}:decided:${chunk}`;
  }
  /** Fingerprint buckets: u (URL), i (image sha256), p (image+caption pair), c (caption counts). */
  bucket(kind: 'u' | 'i' | 'p' | 'c', bucket: number) {
    return `${this.prefix}:${kind}:${bucket.toString(16)}`;
  }
  /** The kept rows' pHashes, 8 bytes each, in commit order. */
  get nearDups() {
    return `${this.prefix}:n`;
  }
}
