// The near-duplicate index of queue mode, kept in Redis itself: the kept rows' 64-bit pHashes,
// bucketed as src/filters/phash-index.ts buckets them, so that every worker decides `near_duplicate`
// against the same state without holding it.
//
// Layout (under `filip:<queue>:`). A hash is cut into PHASH_CHUNKS 16-bit chunks; chunk c's table has
// one Redis string per chunk value v that occurs,
//
//   h:<c>:<v hex>  string  one ENTRY_BYTES entry per kept hash whose chunk c is v, appended in commit order:
//                          6 bytes  the hash's other three chunks, in chunk order
//                          5 bytes  the input index of the row that kept it (big-endian; up to 2^40)
//
// so a hash is stored once per table (4 entries) and a bucket holds ~15 entries at a million hashes.
// With the near-duplicate check (the run's filter option; fixed for the queue's life), an entry also
// holds a flag (1: the row has check data) and the row's 16-byte chroma hash (PHASH_CHECKED_ENTRY_BYTES
// = 28), and the row's whole check data (592 bytes) sits under `c:<input index hex>`.
// The input index orders the entries as a single machine would have added them (chunks commit in
// order, rows in a chunk in order): the first stored match is the one with the smallest index.
//
// A lookup takes a whole batch of queries (a chunk's candidate rows, each a pHash and its weak-bit
// mask). It gathers the distinct bucket keys that the probes of src/filters/phash-index.ts name for
// every query (phashWeakProbes: 128 a query), reads them with MGETs sent in pipelines of at most
// `keysPerRoundTrip` keys (a few round trips for a 1,000-row chunk), and checks the entries locally
// by the same rule as PhashIndex.find (with the check: chroma hash from the entry, then the aligned
// comparison on the check data read with MGETs, earliest first). What it returns is a local PhashIndex
// holding, in index order, the earliest stored match of each query. Searching that index and adding
// the batch's own kept hashes to it in row order gives exactly the answers (and the reported match)
// of one PhashIndex fed the whole run in order: a query's earliest stored match is in it, and the
// other hashes in it are stored matches of other queries, which come later if they match at all.
//
// Inserts are appends made by the commit's one Lua script (state.ts applyDecisions), with the rest of
// the chunk's state, so a chunk's hashes are stored exactly once even when its committer dies. They
// rewrite the bucket at its new length (GET, SET) rather than APPEND: APPEND leaves each of the
// 262,144 small buckets up to twice its size, a third more memory in all (state.ts appendExactLua).

import type { Redis } from 'ioredis';
import { intOption, invalid, rejectUnknownKeys } from '../core/options.js';
import {
  DEFAULT_NEAR_DUP_DISTANCE,
  MAX_NEAR_DUP_DISTANCE,
  PHASH_CHUNKS,
  PHASH_ONLY_DISTANCE,
  PhashIndex,
  parsePhashWords,
  phashChunkOf,
  phashWeakProbes,
  MAX_WEAK_BITS_PER_CHUNK,
  resolveCheckThresholds,
} from '../filters/phash-index.js';
import { alignedBelow, NEAR_DUP_CHECK_BYTES, type NearDupCheckThresholds } from '../image/near-dup-check.js';
import type { Keys } from './plan.js';
import { queueError } from './state.js';

/**
 * Where queue mode keeps the kept pHashes. `redis`: the bucketed index of this file (every committer
 * reads what a chunk needs). `replica`: an append-only log in Redis, mirrored in full by each
 * committer in a local PhashIndex (state.ts NearDupReplica).
 */
export const NEAR_DUP_INDEXES = ['redis', 'replica'] as const;
export type NearDupIndexKind = (typeof NEAR_DUP_INDEXES)[number];
export const DEFAULT_NEAR_DUP_INDEX: NearDupIndexKind = 'redis';

/** Bytes of one bucket entry: the other 48 bits of the hash, then a 5-byte input index. */
export const PHASH_ENTRY_BYTES = 11;
/** Chroma-hash bytes at the start of the check data (src/image/near-dup-check.ts). */
const CHROMA_BYTES = 16;
/** Bytes of a bucket entry with a check: PHASH_ENTRY_BYTES, a flag (1: the row has check data), its chroma hash. */
export const PHASH_CHECKED_ENTRY_BYTES = PHASH_ENTRY_BYTES + 1 + CHROMA_BYTES;
const REST_BYTES = 6;
/** Largest input index an entry can hold. */
export const MAX_PHASH_ROW_INDEX = 2 ** 40 - 1;
/** Keys per MGET command (a pipeline holds several). */
const MGET_KEYS = 8192;
const BUCKET_VALUES = 1 << 16;
const HEX = /^[0-9a-f]{16}$/;
// An entry holds the three chunks outside its bucket in 6 bytes: the layout assumes 4 x 16 bits.
if (PHASH_CHUNKS !== 4) throw new Error(`phash-redis.ts assumes 4 chunks of 16 bits, phash-index.ts has ${PHASH_CHUNKS}`);

export interface RedisPhashOptions {
  /** Largest Hamming distance, in bits, at which two hashes are near duplicates. @default DEFAULT_NEAR_DUP_DISTANCE (10) */
  readonly maxDistance: number;
  /**
   * Bucket keys read per round trip (a pipeline of MGETs). Bounds the reply Redis buffers at once:
   * about 65,536 x 165 bytes at a million stored hashes. @default 65536
   */
  readonly keysPerRoundTrip: number;
  /**
   * The near-duplicate check, as PhashIndex's: candidates must pass it on their check data (the
   * queries', and the stored rows' kept under `c:<input index>`). Fixed for a queue's life: it sets
   * the entry layout (PHASH_CHECKED_ENTRY_BYTES). @default undefined (the pHash alone)
   */
  readonly check?: NearDupCheckThresholds;
}

const DEFAULTS: RedisPhashOptions = { maxDistance: DEFAULT_NEAR_DUP_DISTANCE, keysPerRoundTrip: 65_536 };

export function resolveRedisPhashOptions(input: Partial<RedisPhashOptions> = {}): RedisPhashOptions {
  rejectUnknownKeys('redis pHash index', input, { ...DEFAULTS, check: undefined });
  const o = { ...DEFAULTS, ...input };
  return {
    maxDistance: intOption('maxDistance', o.maxDistance, 0, MAX_NEAR_DUP_DISTANCE),
    keysPerRoundTrip: intOption('keysPerRoundTrip', o.keysPerRoundTrip, 1),
    ...(o.check !== undefined ? { check: resolveCheckThresholds(o.check) } : {}),
  };
}

export function nearDupIndexOption(value: unknown): NearDupIndexKind {
  if (typeof value !== 'string' || !(NEAR_DUP_INDEXES as readonly string[]).includes(value)) {
    throw invalid('nearDupIndex', `one of ${NEAR_DUP_INDEXES.map((k) => JSON.stringify(k)).join(', ')}`, value);
  }
  return value as NearDupIndexKind;
}

/** One lookup: a kept-candidate's pHash, its weak-bit mask and check data (each absent for rows from older shards). */
export interface PhashQuery {
  readonly phash: string;
  readonly weak?: string;
  readonly check?: Uint8Array;
}

/** What one batch lookup cost. */
export interface PhashLookupStats {
  readonly queries: number;
  /** Bucket probes over all queries, before merging the ones queries share. */
  readonly probes: number;
  /** Distinct bucket keys read. */
  readonly keys: number;
  readonly mgets: number;
  readonly roundTrips: number;
  /** Bytes of bucket data received. */
  readonly bytes: number;
  /** Entries compared with a query. */
  readonly candidates: number;
  /** Queries with a stored match. */
  readonly matched: number;
  /** With a check: stored rows whose check data was read, and aligned comparisons made. */
  readonly checkReads?: number;
  readonly alignedChecks?: number;
}

/** One append of an insertion: `bytes` go at the end of the bucket named `append`, without slack (`exact`). */
export interface PhashAppend {
  readonly append: string;
  readonly bytes: Buffer;
  readonly exact: true;
}

/** The pHash bucket key of chunk `c`, value `v`. */
export function phashBucketKey(keys: Keys, c: number, v: number): string {
  return `${keys.prefix}:h:${c}:${hex16(v)}`;
}

/** The key holding the check data of the row with input index `rowIndex` (runs with a check). */
export function phashCheckKey(keys: Keys, rowIndex: number): string {
  return `${keys.prefix}:c:${rowIndex.toString(16)}`;
}

// A batch names up to 4 x 65,536 keys: formatting the values once saves a third of the naming time.
let hexTable: string[] | undefined;
function hex16(v: number): string {
  hexTable ??= Array.from({ length: BUCKET_VALUES }, (_, i) => i.toString(16));
  return hexTable[v]!;
}

/** The bucketed pHash index of one queue, in Redis. Holds no state of its own besides its options. */
export class RedisPhashIndex {
  readonly options: RedisPhashOptions;

  constructor(
    readonly keys: Keys,
    options: Partial<RedisPhashOptions> = {},
  ) {
    this.options = resolveRedisPhashOptions(options);
  }

  /**
   * Reads the buckets the queries probe and returns the earliest stored match of each query (those
   * with one), as a local PhashIndex in commit order: see the header for why searching it, and adding
   * the batch's kept hashes to it in row order, answers as one machine would. Throws TypeError on a
   * query that is not 16 lower-case hex digits, FILIP_ERR_QUEUE when Redis fails.
   */
  async lookup(redis: Redis, queries: readonly PhashQuery[]): Promise<{ index: PhashIndex; stats: PhashLookupStats }> {
    const d = this.options.maxDistance;
    const n = queries.length;
    const hi = new Uint32Array(n);
    const lo = new Uint32Array(n);
    const weakHi = new Uint32Array(n);
    const weakLo = new Uint32Array(n);
    for (let q = 0; q < n; q++) {
      const { phash, weak } = queries[q]!;
      [hi[q], lo[q]] = parsePhashWords(phash, 'a hash');
      if (weak !== undefined) [weakHi[q], weakLo[q]] = parsePhashWords(weak, 'a weak-bit mask');
    }

    // The distinct buckets of the whole batch: slot[c << 16 | v] is the bucket's place in `ids`.
    const slot = new Int32Array(PHASH_CHUNKS * BUCKET_VALUES).fill(-1);
    const ids: number[] = [];
    const probe = new Uint32Array(PHASH_CHUNKS << MAX_WEAK_BITS_PER_CHUNK);
    const flips = new Uint8Array(probe.length);
    let probes = 0;
    for (let q = 0; q < n; q++) {
      const count = phashWeakProbes(hi[q]!, lo[q]!, weakHi[q]!, weakLo[q]!, probe);
      probes += count;
      for (let m = 0; m < count; m++) {
        const id = probe[m]!;
        if (slot[id] === -1) {
          slot[id] = ids.length;
          ids.push(id);
        }
      }
    }

    // Read them: MGETs of MGET_KEYS keys, pipelined keysPerRoundTrip keys at a time.
    const buckets: (Buffer | null)[] = new Array(ids.length);
    let mgets = 0;
    let roundTrips = 0;
    let bytes = 0;
    const perTrip = this.options.keysPerRoundTrip;
    for (let start = 0; start < ids.length; start += perTrip) {
      const end = Math.min(start + perTrip, ids.length);
      const p = redis.pipeline();
      for (let s = start; s < end; s += MGET_KEYS) {
        const names: string[] = [];
        const base = `${this.keys.prefix}:h:`;
        for (let i = s; i < Math.min(s + MGET_KEYS, end); i++) names.push(`${base}${ids[i]! >>> 16}:${hex16(ids[i]! & 0xffff)}`);
        p.mgetBuffer(names);
        mgets++;
      }
      let replies: [Error | null, unknown][];
      try {
        replies = (await p.exec()) ?? [];
      } catch (err) {
        throw queueError('pHash bucket read failed', err);
      }
      roundTrips++;
      let at = start;
      for (const [err, values] of replies) {
        if (err) throw queueError('pHash bucket read failed', err);
        for (const b of values as (Buffer | null)[]) {
          buckets[at++] = b;
          if (b) bytes += b.length;
        }
      }
    }

    // Check the entries: per query, the smallest input index within d bits (that passes the check,
    // when there is one: entries that need the aligned comparison wait in `pending`).
    const check = this.options.check;
    const entryBytes = check ? PHASH_CHECKED_ENTRY_BYTES : PHASH_ENTRY_BYTES;
    const bestIndex = new Float64Array(n).fill(Infinity);
    const bestHash: string[] = new Array(n);
    const pending: { q: number; index: number; hash: string }[] = [];
    /** Input index -> whether the stored row has check data (entries found or pending, with a check). */
    const flagged = new Map<number, boolean>();
    let candidates = 0;
    for (let q = 0; q < n; q++) {
      const qhi = hi[q]!;
      const qlo = lo[q]!;
      const qcheck = queries[q]!.check;
      const count = phashWeakProbes(qhi, qlo, weakHi[q]!, weakLo[q]!, probe, flips);
      for (let m = 0; m < count; m++) {
        const b = buckets[slot[probe[m]!]!];
        if (!b) continue;
        const c = probe[m]! >>> 16;
        const [qa, qb] = restOf(qhi, qlo, c);
        // The bucket's chunk already differs in flips[m] bits.
        const budget = d - flips[m]!;
        candidates += b.length / entryBytes;
        for (let o = 0; o + entryBytes <= b.length; o += entryBytes) {
          const a = ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
          const r = (b[o + 4]! << 8) | b[o + 5]!;
          const rest = popcount32(a ^ qa) + popcount32(r ^ qb);
          if (rest > budget) continue;
          const i = REST_BYTES;
          const index = b[o + i]! * 2 ** 32 + (((b[o + i + 1]! << 24) | (b[o + i + 2]! << 16) | (b[o + i + 3]! << 8) | b[o + i + 4]!) >>> 0);
          if (index >= bestIndex[q]!) continue;
          if (check) {
            const has = b[o + PHASH_ENTRY_BYTES] === 1;
            flagged.set(index, has);
            if (!has || qcheck === undefined) {
              if (rest + flips[m]! > PHASH_ONLY_DISTANCE) continue;
            } else {
              const chroma = b.subarray(o + PHASH_ENTRY_BYTES + 1, o + PHASH_CHECKED_ENTRY_BYTES);
              if (chromaBits(chroma, qcheck) > check.maxChromaBits) continue;
              pending.push({ q, index, hash: hashOf(c, probe[m]! & 0xffff, a, r) });
              continue;
            }
          }
          bestIndex[q] = index;
          bestHash[q] = hashOf(c, probe[m]! & 0xffff, a, r);
        }
      }
    }

    let checkReads = 0;
    let alignedChecks = 0;
    const checks = new Map<number, Buffer>();
    if (check) {
      // The aligned comparisons, earliest first per query, on check data read for the entries that
      // could still be a query's earliest match.
      const wanted = pending.filter((p) => p.index < bestIndex[p.q]!);
      checkReads += await this.#readChecks(redis, [...new Set(wanted.map((p) => p.index))], checks);
      wanted.sort((x, y) => x.q - y.q || x.index - y.index);
      for (const p of wanted) {
        if (p.index >= bestIndex[p.q]!) continue;
        alignedChecks++;
        if (alignedBelow(checks.get(p.index)!, queries[p.q]!.check!, check.maxAlignedDistance)) {
          bestIndex[p.q] = p.index;
          bestHash[p.q] = p.hash;
        }
      }
    }

    const found = new Map<number, string>();
    let matched = 0;
    for (let q = 0; q < n; q++) {
      if (bestIndex[q] === Infinity) continue;
      matched++;
      found.set(bestIndex[q]!, bestHash[q]!);
    }
    const order = [...found.keys()].sort((x, y) => x - y);
    // The local index answers as PhashIndex with the same check would: each stored match goes in
    // with its check data (read now for those that passed on the pHash alone).
    if (check) checkReads += await this.#readChecks(redis, order.filter((i) => flagged.get(i) === true && !checks.has(i)), checks);
    const index = new PhashIndex(d, check);
    for (const i of order) index.add(found.get(i)!, checks.get(i));
    return {
      index,
      stats: { queries: n, probes, keys: ids.length, mgets, roundTrips, bytes, candidates, matched, ...(check ? { checkReads, alignedChecks } : {}) },
    };
  }

  /** Reads the check data of the given rows into `into` (MGETs of MGET_KEYS keys). Returns how many were read. */
  async #readChecks(redis: Redis, indices: readonly number[], into: Map<number, Buffer>): Promise<number> {
    for (let s = 0; s < indices.length; s += MGET_KEYS) {
      const part = indices.slice(s, s + MGET_KEYS);
      let values: (Buffer | null)[];
      try {
        values = await redis.mgetBuffer(part.map((i) => phashCheckKey(this.keys, i)));
      } catch (err) {
        throw queueError('near-duplicate check data read failed', err);
      }
      part.forEach((i, k) => {
        const v = values[k];
        if (!v || v.length !== NEAR_DUP_CHECK_BYTES) {
          throw queueError('near-duplicate check data read failed', new Error(`row ${i}: ${v ? `${v.length} bytes` : 'missing'}, expected ${NEAR_DUP_CHECK_BYTES} bytes`));
        }
        into.set(i, v);
      });
    }
    return indices.length;
  }

  /**
   * The APPENDs that store `hash`, kept by the row with input index `rowIndex`: one entry per table,
   * and with a check, the row's check data (`check`, when it has some) under phashCheckKey.
   */
  insertion(hash: string, rowIndex: number, check?: Uint8Array): PhashAppend[] {
    if (typeof hash !== 'string' || !HEX.test(hash)) throw new TypeError(`RedisPhashIndex: a hash must be 16 lower-case hex digits, got ${JSON.stringify(hash)}`);
    intOption('rowIndex', rowIndex, 0, MAX_PHASH_ROW_INDEX);
    const withCheck = this.options.check !== undefined;
    if (withCheck && check !== undefined && check.length !== NEAR_DUP_CHECK_BYTES) {
      throw new TypeError(`RedisPhashIndex: check data must be ${NEAR_DUP_CHECK_BYTES} bytes, got ${check.length}`);
    }
    const hi = parseInt(hash.slice(0, 8), 16) >>> 0;
    const lo = parseInt(hash.slice(8), 16) >>> 0;
    const out: PhashAppend[] = [];
    for (let c = 0; c < PHASH_CHUNKS; c++) {
      const [a, r] = restOf(hi, lo, c);
      const bytes = Buffer.alloc(withCheck ? PHASH_CHECKED_ENTRY_BYTES : PHASH_ENTRY_BYTES);
      bytes.writeUInt32BE(a, 0);
      bytes.writeUInt16BE(r, 4);
      bytes.writeUInt8(Math.floor(rowIndex / 2 ** 32), REST_BYTES);
      bytes.writeUInt32BE(rowIndex % 2 ** 32, REST_BYTES + 1);
      if (withCheck && check !== undefined) {
        bytes[PHASH_ENTRY_BYTES] = 1;
        bytes.set(check.subarray(0, CHROMA_BYTES), PHASH_ENTRY_BYTES + 1);
      }
      out.push({ append: phashBucketKey(this.keys, c, phashChunkOf(hi, lo, c)), bytes, exact: true });
    }
    if (withCheck && check !== undefined) {
      out.push({ append: phashCheckKey(this.keys, rowIndex), bytes: Buffer.from(check.buffer, check.byteOffset, check.byteLength), exact: true });
    }
    return out;
  }
}

/** The three chunks other than c, in chunk order: the first two as one 32-bit word, the last alone. */
function restOf(hi: number, lo: number, c: number): [number, number] {
  const rest: number[] = [];
  for (let j = 0; j < PHASH_CHUNKS; j++) if (j !== c) rest.push(phashChunkOf(hi, lo, j));
  return [((rest[0]! << 16) | rest[1]!) >>> 0, rest[2]!];
}

/** The hash (hex) whose chunk c is v and whose other chunks are (a, r) as restOf gives them. */
function hashOf(c: number, v: number, a: number, r: number): string {
  const rest = [a >>> 16, a & 0xffff, r];
  let hex = '';
  for (let j = 0, k = 0; j < PHASH_CHUNKS; j++) hex += (j === c ? v : rest[k++]!).toString(16).padStart(4, '0');
  return hex;
}

/** Bits that differ between a bucket entry's chroma hash and the start of a query's check data. */
function chromaBits(entry: Uint8Array, query: Uint8Array): number {
  let d = 0;
  for (let i = 0; i < CHROMA_BYTES; i++) d += popcount32(entry[i]! ^ query[i]!);
  return d;
}

function popcount32(word: number): number {
  let v = word >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
