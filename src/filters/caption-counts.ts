// Exact corpus-wide caption counts for FILIP's `repeated_text` rule (a normalised caption may occur
// at most N = 10 times in the WHOLE corpus), in bounded memory. First pass: each caption becomes a
// 64-bit fingerprint of normalizeCaption(caption), buffered in memory and appended in binary (8 bytes)
// to one of B bucket files chosen by the fingerprint's top bits. finish(): each bucket is read back
// in chunks and counted in a typed open-addressing table; only fingerprints seen more than
// `keepAbove` times are kept, sorted, for binary search in the second (filtering) pass.
//
// Sizes for 300 million captions (8 bytes a row on disk; 12 bytes a slot in a count table):
// - disk: 300M x 8 B = 2.4 GB in the bucket files; each file is deleted as soon as it is counted.
// - first pass: 2 x 8 B x memoryRows (buffer + partition scratch) = 16 MiB at the default 1M rows.
// - finish, one bucket at a time: B = 256 -> 1.17M rows (9.4 MB file); count table for up to that
//   many distinct fingerprints at load <= 0.7 = 2^21 slots x 12 B = 25 MiB, plus a 1 MiB read chunk.
//   B = 1024 -> 293k rows (2.3 MB); 2^19 slots = 6.3 MiB. (A bucket full of one heavy caption does
//   not grow the table: its size follows the distinct fingerprints, starting from the average.)
// - kept table: 12 B per kept fingerprint (8 B key + 4 B count), no per-entry objects. If 5% of
//   the 300M captions are occurrences of repeated captions, at most 15M / 2 = 7.5M fingerprints repeat:
//   <= 90 MB at keepAbove = 1 (15M kept would be 180 MB). In general kept <= total / (keepAbove + 1);
//   the repeated_text rule only needs keepAbove = N (10), which keeps at most 27M and in practice a
//   small fraction of that.
// - time: add() costs 6-9 us a caption on one core (measured on a shared 2-core box: sha1 through
//   fingerprint() 3-4 us, normalizeCaption 0.5-2 us, the rest buffering and writes), so about 30-45
//   min for 300M; finish() about 0.2 s per million rows, about 1 min plus reading 2.4 GB.
// Counts are exact up to 64-bit fingerprint collisions: about n^2 / 2^65 colliding pairs among n
// distinct captions (0.002 at n = 300M), each one merging two captions' counts.

import { mkdtempSync } from 'node:fs';
import { appendFile, open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import { normalizeCaption } from '../pipeline/dedupe.js';
import { fingerprint } from '../pipeline/hashset.js';
import { makeDirSync } from '../core/make-dir.js';

export interface CaptionCounterOptions {
  /** Folder for the bucket files (a fresh sub-folder is made in it and removed again). Required. */
  readonly dir: string;
  /**
   * Bucket files, a power of two. More buckets mean smaller count tables in finish() (memory about
   * 25 MiB x 256 / buckets at 300M captions) and more, smaller writes per flush.
   * @default 256
   */
  readonly buckets?: number;
  /**
   * Fingerprints buffered in memory before a flush to the bucket files (16 bytes each, buffer and
   * scratch together).
   * @default 1048576
   */
  readonly memoryRows?: number;
  /**
   * Only fingerprints seen more than this many times are kept for lookups; see {@link CaptionCounts.count}.
   * Set it to the repeated_text limit N to keep the smallest table that still answers `count > N`.
   * @default 1
   */
  readonly keepAbove?: number;
}

export const DEFAULT_CAPTION_COUNTER_OPTIONS = {
  buckets: 256,
  memoryRows: 1 << 20,
  keepAbove: 1,
} as const satisfies Omit<Required<CaptionCounterOptions>, 'dir'>;

type ResolvedOptions = Required<CaptionCounterOptions>;

/** Validates and defaults the options; throws FilipError FILIP_ERR_INVALID_OPTION naming the option. */
export function resolveCaptionCounterOptions(given: CaptionCounterOptions): ResolvedOptions {
  if (given === null || typeof given !== 'object') {
    throw new TypeError(`Expected CaptionCounter options to be an object, got ${String(given)}`);
  }
  rejectUnknownKeys('caption counter', given, { dir: '', ...DEFAULT_CAPTION_COUNTER_OPTIONS });
  const o = { ...DEFAULT_CAPTION_COUNTER_OPTIONS, ...definedOnly(given) };
  const buckets = intOption('buckets', o.buckets, 1, 1 << 16);
  if ((buckets & (buckets - 1)) !== 0) throw invalid('buckets', 'a power of two from 1 to 65536', buckets);
  return {
    dir: stringOption('dir', o.dir),
    buckets,
    memoryRows: intOption('memoryRows', o.memoryRows, 1, 1 << 27),
    keepAbove: intOption('keepAbove', o.keepAbove, 0, 0xffff_fffe),
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Counts, for the second pass. */
export interface CaptionCounts {
  /**
   * `Math.max(n, keepAbove)`, where n is how many times the normalised caption was added: exact
   * whenever n > keepAbove; for a caption added at most keepAbove times (or never) it is keepAbove,
   * an upper bound. So `count(c) > limit` is exact for every limit >= keepAbove, and keepAbove = 0
   * makes every count exact (0 for a caption never added).
   */
  count(caption: string): number;
  /** The `keepAbove` the counts were built with. */
  readonly keepAbove: number;
  /** Distinct normalised captions (fingerprints) in the corpus. */
  readonly distinct: number;
  /** Captions added, repeats included. */
  readonly total: number;
  /** Fingerprints held for lookups (those with count > keepAbove). */
  readonly kept: number;
  /** Bytes held by the kept table. */
  readonly bytes: number;
  /** Releases the table and removes any temporary file left; count() throws afterwards. Idempotent. */
  close(): Promise<void>;
}

const RESOLVED: Promise<void> = Promise.resolve();
const READ_CHUNK_ROWS = 1 << 17; // 1 MiB reads
const MAX_LOAD = 0.7;

/**
 * First pass of repeated_text. `await add(caption)` for every caption of the corpus (await it: a
 * flush to disk happens inside every `memoryRows` calls), then `await finish()` once.
 */
export class CaptionCounter {
  readonly options: ResolvedOptions;
  readonly #tmp: string;
  readonly #shift: number;
  #buf: Uint32Array;
  #scratch: Uint32Array;
  #rows = 0;
  #total = 0;
  #flushing: Promise<void> = RESOLVED;
  #state: 'adding' | 'finishing' | 'done' = 'adding';

  constructor(options: CaptionCounterOptions) {
    this.options = resolveCaptionCounterOptions(options);
    const { dir, buckets, memoryRows } = this.options;
    makeDirSync(dir, 'dir');
    this.#tmp = mkdtempSync(path.join(dir, 'caption-counts-'));
    this.#shift = 32 - Math.log2(buckets);
    this.#buf = new Uint32Array(memoryRows * 2);
    this.#scratch = new Uint32Array(memoryRows * 2);
  }

  /** Captions added so far. */
  get total(): number {
    return this.#total;
  }

  /** The folder holding the bucket files (removed by finish(), or by discard()). */
  get tempDir(): string {
    return this.#tmp;
  }

  add(caption: string): Promise<void> {
    if (this.#state !== 'adding') throw new Error('CaptionCounter.add() called after finish()');
    const [hi, lo] = fingerprint(normalizeCaption(caption));
    return this.#push(hi, lo);
  }

  #push(hi: number, lo: number): Promise<void> {
    // Full only when the caller did not await the add() that started the flush: wait for it.
    if (this.#rows === this.options.memoryRows) return this.#flushing.then(() => this.#push(hi, lo));
    const i = this.#rows * 2;
    this.#buf[i] = hi;
    this.#buf[i + 1] = lo;
    this.#rows++;
    this.#total++;
    if (this.#rows === this.options.memoryRows) {
      this.#flushing = this.#flush(this.#flushing);
      return this.#flushing;
    }
    return RESOLVED;
  }

  /** Partitions the buffer by bucket into the scratch array, then appends each slice to its file. */
  async #flush(previous: Promise<void>): Promise<void> {
    await previous; // the scratch array is the previous flush's until it is written
    const rows = this.#rows;
    const { buckets } = this.options;
    const shift = this.#shift;
    const buf = this.#buf;
    const out = this.#scratch;
    const starts = new Uint32Array(buckets + 1);
    for (let r = 0; r < rows; r++) starts[bucketOf(buf[r * 2]!, shift) + 1]!++;
    for (let b = 0; b < buckets; b++) starts[b + 1]! += starts[b]!;
    const next = starts.slice(0, buckets);
    for (let r = 0; r < rows; r++) {
      const hi = buf[r * 2]!;
      const at = next[bucketOf(hi, shift)]!++ * 2;
      out[at] = hi;
      out[at + 1] = buf[r * 2 + 1]!;
    }
    this.#rows = 0; // the buffer is free again; adds may go on while the slices are written
    for (let b = 0; b < buckets; b++) {
      const from = starts[b]!;
      const to = starts[b + 1]!;
      if (to > from) {
        await appendFile(this.#bucketPath(b), new Uint8Array(out.buffer, out.byteOffset + from * 8, (to - from) * 8));
      }
    }
  }

  #bucketPath(b: number): string {
    return path.join(this.#tmp, `b${b.toString(16).padStart(4, '0')}.fp`);
  }

  /** Counts every bucket and returns the lookup table; the bucket files are gone when it resolves. */
  async finish(): Promise<CaptionCounts> {
    if (this.#state !== 'adding') throw new Error('CaptionCounter.finish() called twice');
    this.#state = 'finishing';
    try {
      await this.#flushing;
      if (this.#rows > 0) await this.#flush(RESOLVED);
      this.#buf = this.#scratch = new Uint32Array(0);
      const { buckets, keepAbove } = this.options;
      const average = Math.ceil(this.#total / buckets);
      const keys: Uint32Array[] = [];
      const counts: Uint32Array[] = [];
      let distinct = 0;
      const chunk = Buffer.allocUnsafe(READ_CHUNK_ROWS * 8);
      for (let b = 0; b < buckets; b++) {
        const table = await countBucket(this.#bucketPath(b), average, chunk);
        distinct += table.size;
        const kept = table.sortedAbove(keepAbove);
        keys.push(kept.keys);
        counts.push(kept.counts);
        await rm(this.#bucketPath(b), { force: true });
      }
      await rm(this.#tmp, { recursive: true, force: true });
      return new SortedCaptionCounts(keys, counts, this.#shift, keepAbove, distinct, this.#total, this.#tmp);
    } catch (err) {
      await this.discard();
      throw err;
    } finally {
      this.#state = 'done';
    }
  }

  /** Gives up: removes the bucket files without counting. add() and finish() throw afterwards. */
  async discard(): Promise<void> {
    this.#state = 'done';
    await this.#flushing.catch(() => undefined);
    this.#buf = this.#scratch = new Uint32Array(0);
    await rm(this.#tmp, { recursive: true, force: true });
  }
}

function bucketOf(hi: number, shift: number): number {
  return shift === 32 ? 0 : hi >>> shift;
}

async function countBucket(file: string, average: number, chunk: Buffer): Promise<CountTable> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new CountTable(0);
    throw err;
  }
  const rows = size / 8;
  const table = new CountTable(Math.min(rows, average * 2));
  const words = new Uint32Array(chunk.buffer, chunk.byteOffset, chunk.length / 4);
  const fh = await open(file, 'r');
  try {
    let position = 0;
    while (position < size) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, size - position), position);
      if (bytesRead === 0 || bytesRead % 8 !== 0) throw new Error(`short read in ${file} at byte ${position}`);
      for (let i = 0; i < bytesRead / 4; i += 2) table.add(words[i]!, words[i + 1]!);
      position += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return table;
}

/**
 * Open addressing with linear probing: two uint32 words of key and one uint32 count per slot; a zero
 * count marks an empty slot, so every 64-bit key is storable. Grows by doubling above MAX_LOAD.
 */
class CountTable {
  #keys: Uint32Array;
  #counts: Uint32Array;
  #mask: number;
  size = 0;

  constructor(expected: number) {
    let cap = 16;
    while (cap * MAX_LOAD < expected) cap *= 2;
    this.#keys = new Uint32Array(cap * 2);
    this.#counts = new Uint32Array(cap);
    this.#mask = cap - 1;
  }

  add(hi: number, lo: number): void {
    const keys = this.#keys;
    const counts = this.#counts;
    let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.#mask;
    while (true) {
      const c = counts[i]!;
      if (c === 0) break;
      if (keys[i * 2] === hi && keys[i * 2 + 1] === lo) {
        if (c !== 0xffff_ffff) counts[i] = c + 1;
        return;
      }
      i = (i + 1) & this.#mask;
    }
    keys[i * 2] = hi;
    keys[i * 2 + 1] = lo;
    counts[i] = 1;
    if (++this.size > (this.#mask + 1) * MAX_LOAD) this.#grow();
  }

  #grow(): void {
    const oldKeys = this.#keys;
    const oldCounts = this.#counts;
    const cap = oldCounts.length * 2;
    this.#keys = new Uint32Array(cap * 2);
    this.#counts = new Uint32Array(cap);
    this.#mask = cap - 1;
    for (let j = 0; j < oldCounts.length; j++) {
      const c = oldCounts[j]!;
      if (c === 0) continue;
      const hi = oldKeys[j * 2]!;
      const lo = oldKeys[j * 2 + 1]!;
      let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.#mask;
      while (this.#counts[i] !== 0) i = (i + 1) & this.#mask;
      this.#keys[i * 2] = hi;
      this.#keys[i * 2 + 1] = lo;
      this.#counts[i] = c;
    }
  }

  /** Entries with count > floor, sorted by (hi, lo) as unsigned 64-bit keys. */
  sortedAbove(floor: number): { keys: Uint32Array; counts: Uint32Array } {
    const counts = this.#counts;
    const keys = this.#keys;
    let n = 0;
    for (let i = 0; i < counts.length; i++) if (counts[i]! > floor) n++;
    if (n === 0) return { keys: EMPTY, counts: EMPTY };
    // Native sort of the 64-bit keys; the counts are found again in this table afterwards.
    const packed = new BigUint64Array(n);
    for (let i = 0, k = 0; i < counts.length; i++) {
      if (counts[i]! > floor) packed[k++] = (BigInt(keys[i * 2]!) << 32n) | BigInt(keys[i * 2 + 1]!);
    }
    packed.sort();
    const outKeys = new Uint32Array(n * 2);
    const outCounts = new Uint32Array(n);
    for (let k = 0; k < n; k++) {
      const hi = Number(packed[k]! >> 32n);
      const lo = Number(packed[k]! & 0xffff_ffffn);
      outKeys[k * 2] = hi;
      outKeys[k * 2 + 1] = lo;
      outCounts[k] = this.get(hi, lo);
    }
    return { keys: outKeys, counts: outCounts };
  }

  get(hi: number, lo: number): number {
    let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.#mask;
    while (true) {
      const c = this.#counts[i]!;
      if (c === 0) return 0;
      if (this.#keys[i * 2] === hi && this.#keys[i * 2 + 1] === lo) return c;
      i = (i + 1) & this.#mask;
    }
  }
}

const EMPTY = new Uint32Array(0);

/** The kept fingerprints of each bucket, sorted, searched by bisection. */
class SortedCaptionCounts implements CaptionCounts {
  #keys: Uint32Array[];
  #counts: Uint32Array[];
  readonly #shift: number;
  readonly #tmp: string;
  #closed = false;
  readonly keepAbove: number;
  readonly distinct: number;
  readonly total: number;
  readonly kept: number;
  readonly bytes: number;

  constructor(
    keys: Uint32Array[],
    counts: Uint32Array[],
    shift: number,
    keepAbove: number,
    distinct: number,
    total: number,
    tmp: string,
  ) {
    this.#keys = keys;
    this.#counts = counts;
    this.#shift = shift;
    this.#tmp = tmp;
    this.keepAbove = keepAbove;
    this.distinct = distinct;
    this.total = total;
    this.kept = counts.reduce((n, c) => n + c.length, 0);
    this.bytes = this.kept * 12;
  }

  count(caption: string): number {
    if (this.#closed) throw new Error('CaptionCounts.count() called after close()');
    const [hi, lo] = fingerprint(normalizeCaption(caption));
    const b = bucketOf(hi, this.#shift);
    const keys = this.#keys[b]!;
    let low = 0;
    let high = keys.length / 2 - 1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      const h = keys[mid * 2]!;
      const l = keys[mid * 2 + 1]!;
      if (h === hi && l === lo) return this.#counts[b]![mid]!;
      if (h < hi || (h === hi && l < lo)) low = mid + 1;
      else high = mid - 1;
    }
    return this.keepAbove;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#keys = [];
    this.#counts = [];
    await rm(this.#tmp, { recursive: true, force: true });
  }
}

