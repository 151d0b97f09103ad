// Finds a stored 64-bit perceptual hash near a query without scanning them all: the index behind
// the `near_duplicate` and `contaminated` rules.
//
// What counts as a match. The 64 bits are cut into CHUNKS = 4 disjoint 16-bit chunks. A query comes
// with its weak-bit mask (src/image/phash.ts: per chunk, the 5 bits whose DCT coefficient lies
// closest to the median, the ones a transform turns over). A stored hash matches when it lies within
// maxDistance bits of the query AND, in at least one chunk, differs from the query only in the
// query's weak bits of that chunk. find() returns the first such hash in the order added.
// Without a mask (shards written before `phash_weak` existed) a chunk must match exactly; any two
// hashes within 3 bits still match, since one of the four chunks is then untouched.
// With a check (the filter's default, see DEFAULT_NEAR_DUP_DISTANCE), a stored hash that matches so
// far counts only when its picture and the query's pass confirmNearDup (src/image/near-dup-check.ts)
// on the check data given to add() and find(); find() then returns the first stored hash, in the
// order added, that passes. The scan gathers the entries within the distance, applies the chroma
// stage to them, and asks JavaScript (the module's imported `accept`, the aligned stage) about those
// that pass it, earliest first, until one is accepted.
//
// Why not "within maxDistance" alone: crops of a few percent move copies 10-20 bits away, and an
// exact search that far is slow (multi-index hashing, Norouzi et al. 2012, probes every value within
// a radius in each chunk: ~6,500 candidates per lookup against a million hashes at distance 10,
// ~70,000 at 16). The weak-bit probes are 4 x 2^5 = 128 a lookup at any distance, and on real photos
// they reach almost every copy that the distance alone would: see DEFAULT_NEAR_DUP_DISTANCE.
//
// Layout. All hashes sit in add order in two Uint32Arrays (hi, lo). Each chunk's table is in CSR
// form over the hashes added before the last merge, held in the memory of a small WebAssembly module
// (phash-scan.wat) that scans the probed buckets: bucket offsets, then per entry the full hash (i64)
// and, in a parallel array, its insertion number. Hashes added since the last merge form a tail in
// the same memory (its hashes, and per chunk a chain per bucket), which find() walks only when the
// tables hold no match (tail hashes came later; findMany walks the chains of every probe). The tail is merged once it holds a thirty-second of
// the frozen hashes (a sixteenth cost ~20% of the lookups that find nothing, in chain walks): each
// bucket's old run is copied as it is and the bucket's tail entries appended, so the total work
// stays linear (a million adds: ~2.7 s).
//
// Many lookups at once (findMany, how the filter asks). One find() waits on ~600 cache misses at
// random addresses (the 128 probed buckets' offsets and entries, the candidates' chroma lines).
// findMany gathers the probes of up to BATCH_QUERIES queries, sorts them by bucket (a counting sort
// in the module) and sweeps the tables in address order, each probe's bucket compared with its own
// query; the candidates come out in table order, so their chroma lines are read in order too. The
// aligned stage is then asked per query, earliest id first (#drain). The answers are find()'s.
//
// Memory per stored hash: 8 (hi, lo) + 4 chunks x 12 (hash, insertion number) = 56 bytes, plus 24 per
// tail slot (a thirty-second as many) and growth room; 2 MiB of bucket offsets and chain heads on
// top, and once findMany has run, its scratch (~16 bytes a probe, 1 MiB of counts: ~9 MiB for 4,096
// queries). A merge briefly holds the new tables twice. `bytes` gives the exact total.
//
// Speed (bench/phash-index.ts, 1,000,000 random hashes, queries with 5 random weak bits a chunk,
// one core of a shared 2-core VM, 2026-11-29): the default rule (20 bits and the check), findMany in
// batches of 4,096 113,000-116,000 lookups/s, find one at a time 62,000-68,000; the pHash alone at 10
// bits, 233,000 and 102,000.
//
// Hashes are parsed from hex once per add or find; no string is kept.

import { intOption, invalid, numberOption } from '../core/options.js';
import { alignedBelow, NEAR_DUP_CHECK_BYTES, type NearDupCheckThresholds } from '../image/near-dup-check.js';
import { PHASH_SCAN_WASM_BASE64 } from './phash-scan-wasm.js';

/**
 * Default `maxDistance` of the near_duplicate and contaminated rules, in bits out of 64, with the
 * weak-bit probes above and the near-duplicate check (DEFAULT_NEAR_DUP_CHECK, src/image/near-dup-check.ts)
 * on every candidate. Chosen by scripts/near-dup-eval.ts (271 distinct real photos, 1,897 transformed
 * copies: JPEG q 50-95, resize 0.5-2x, crops of up to 10% a side, brightness +-20%, overlaid text,
 * all chained; hashed as ingest hashes them; both orders of each pair; 4,682,880 pairs of distinct
 * photos):
 *
 *   rule                      recall   false matches   per image against a million kept (FP@1M)
 *   pHash alone, 10 bits      85.9%    0               < 0.6
 *   pHash alone, 16 bits      95.3%    233             50
 *   pHash 20 bits + check     95.3%    0               < 0.6; 3 checks a lookup per million kept
 *
 * The pHash alone reaches the target recall (0.95) only at 16 bits, where its false matches, rare per
 * pair, add up against a large kept set: a CC3M-sized run would reject nearly every image once a few
 * tens of thousands were kept. Those false matches are hash collisions between unlike photos, which
 * the check (a chroma hash, then grey thumbnails compared with the crop undone) tells apart; with it
 * the distance can go to 20, where crop copies are reached. The eval picks the distance and the
 * check's thresholds together (see measureCheckedRule there).
 */
export const DEFAULT_NEAR_DUP_DISTANCE = 20;

/**
 * With a check, pairs of which one has no check data (shards written before the `near_dup_check`
 * column) match on the pHash alone within this many bits: the largest distance at which the eval
 * saw no false match of the pHash alone.
 */
export const PHASH_ONLY_DISTANCE = 10;

/** Largest accepted maxDistance. */
export const MAX_NEAR_DUP_DISTANCE = 24;

const CHUNKS = 4;
/** Number of 16-bit chunks a hash is cut into (chunk 0 = the top 16 bits). */
export const PHASH_CHUNKS = CHUNKS;
/** Most weak bits a query may have in one chunk (2^8 probes there). */
export const MAX_WEAK_BITS_PER_CHUNK = 8;
const BUCKETS = 1 << 16;
/** The tail is merged once it holds this many hashes or a thirty-second of the frozen ones, whichever is more. */
const MIN_TAIL = 4096;
const TAIL_SHIFT = 5;
const NONE = 0xffffffff;
/** Ids per block of check data (2^12: 2.4 MB a block). */
const CHECK_BLOCK_SHIFT = 12;
const CHECK_BLOCK_MASK = (1 << CHECK_BLOCK_SHIFT) - 1;
/** Bit 31 of a table id: the picture has check data (the scan masks it off the insertion number). */
const HAS_CHECK = 0x80000000;
/** Bytes of one chunk's bucket offsets (u32[65537]), as phash-scan.wat assumes. */
const OFFSETS_BYTES = (BUCKETS + 1) * 4;
/** Most probes of one lookup. */
const MAX_PROBES = CHUNKS << MAX_WEAK_BITS_PER_CHUNK;
/** Where the query's chroma hash goes (16 bytes), after the probes. */
const QUERY_CHROMA_AT = 4 * MAX_PROBES;
/** Bytes of a chroma hash: the start of the check data (src/image/near-dup-check.ts). */
const CHROMA_BYTES = 16;
/**
 * Entries within the distance that the checked scan holds at once (phash-scan.wat's candidate list,
 * 8 bytes each, after the query's chroma hash); when it fills, they are settled and the scan goes on.
 */
export const PHASH_SCAN_CANDIDATES = 4096;
const CANDIDATES = PHASH_SCAN_CANDIDATES;
const CANDIDATES_AT = QUERY_CHROMA_AT + CHROMA_BYTES;
/** Queries findMany scans at once (its scratch in the module: 16 bytes a probe, 128 probes a query, and 1 MiB of counts). */
export const BATCH_QUERIES = 8192;
/** findMany asks fewer queries than this one at a time (find). */
const MIN_BATCH = 32;
/** Candidates the batch scan holds at once (8 bytes each) before it settles them. */
const BATCH_CANDIDATES = 16384;
/** Where the bucket offsets start in the module's memory: after the probes, the query's chroma hash and the candidate list. */
const OFFSETS_AT = CANDIDATES_AT + 8 * CANDIDATES;

let scanModule: WebAssembly.Module | undefined;

function popcount32(word: number): number {
  let v = word >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

/** Chunk c of a hash: chunk 0 is the top 16 bits of `hi`, chunk 3 the bottom 16 bits of `lo`. */
export function phashChunkOf(hi: number, lo: number, c: number): number {
  return chunkOf(hi, lo, c);
}

function chunkOf(hi: number, lo: number, c: number): number {
  const word = c < 2 ? hi : lo;
  return (c & 1) === 0 ? word >>> 16 : word & 0xffff;
}

function hex32(word: number): string {
  return (word >>> 0).toString(16).padStart(8, '0');
}

/**
 * The buckets a query probes: for each chunk, the query's chunk value with every combination of its
 * weak bits there flipped. Writes (chunk << 16) | value to `out` and the number of flipped bits to
 * `flips` (either may be omitted), and returns the count. Throws TypeError when a chunk of the mask
 * has more than MAX_WEAK_BITS_PER_CHUNK bits.
 */
export function phashWeakProbes(hi: number, lo: number, weakHi: number, weakLo: number, out: Uint32Array, flips?: Uint8Array): number {
  let n = 0;
  for (let c = 0; c < CHUNKS; c++) {
    const weak = chunkOf(weakHi, weakLo, c);
    const bits = popcount32(weak);
    if (bits > MAX_WEAK_BITS_PER_CHUNK) {
      throw new TypeError(`PhashIndex: a weak-bit mask may mark at most ${MAX_WEAK_BITS_PER_CHUNK} bits of a chunk, chunk ${c} has ${bits}`);
    }
    const key = (c << 16) | chunkOf(hi, lo, c);
    // Every subset of `weak`, by the usual (s - weak) & weak walk, starting with the empty one.
    let subset = 0;
    do {
      out[n] = key ^ subset;
      if (flips) flips[n] = popcount32(subset);
      n++;
      subset = (subset - weak) & weak;
    } while (subset !== 0);
  }
  return n;
}

/** The words of a 16-hex-digit hash or mask; throws TypeError naming `what` otherwise. */
export function parsePhashWords(value: string, what: string): [number, number] {
  parseInto(value, what);
  return [parsedHi, parsedLo];
}

// parseInto() leaves its two words here: find() and add() parse without allocating.
let parsedHi = 0;
let parsedLo = 0;

function parseInto(value: string, what: string): void {
  if (typeof value === 'string' && value.length === 16) {
    let hi = 0;
    let lo = 0;
    let ok = true;
    for (let i = 0; i < 16; i++) {
      const ch = value.charCodeAt(i);
      // '0'-'9' are 48-57, 'a'-'f' 97-102.
      const digit = ch >= 48 && ch <= 57 ? ch - 48 : ch >= 97 && ch <= 102 ? ch - 87 : -1;
      if (digit < 0) ok = false;
      if (i < 8) hi = (hi << 4) | (digit & 15);
      else lo = (lo << 4) | (digit & 15);
    }
    if (ok) {
      parsedHi = hi >>> 0;
      parsedLo = lo >>> 0;
      return;
    }
  }
  throw new TypeError(`PhashIndex: ${what} must be 16 lower-case hex digits, got ${JSON.stringify(value)}`);
}

/** A set of 64-bit hashes (16 lower-case hex digits) that answers "is one a near duplicate of this?". */
export class PhashIndex {
  readonly maxDistance: number;
  #hi: Uint32Array = new Uint32Array(1024);
  #lo: Uint32Array = new Uint32Array(1024);
  #size = 0;
  /** Hashes 0 .. frozen - 1 are in the tables; the rest are the tail. */
  #frozen = 0;
  /** Tail slots before the next merge. */
  #cap = MIN_TAIL;
  readonly #memory: WebAssembly.Memory;
  readonly #first: (...args: number[]) => number;
  readonly #batch: (...args: number[]) => void;
  /**
   * The arguments both scans (first, batch) take after their own: the distance, then where the
   * tables and the tail lie and their sizes (see #layout and phash-scan.wat).
   */
  #tables: number[] = [];
  /** Where the index's part of the module's memory ends: findMany's scratch goes after it. */
  #endAt = 0;
  /** findMany's probes before they go into the module's memory: bucket keys and query numbers. */
  #batchKeys = new Uint32Array(0);
  #batchQueries = new Uint32Array(0);
  /** During findMany: the batch's check data (per query), its answers' and its candidates' byte offsets. */
  #batchChecks: readonly (Uint8Array | undefined)[] = [];
  #batchFrom = 0;
  #batchBestAt = 0;
  #batchCandAt = 0;
  /** Views of the module's memory (renewed when it grows). */
  #probes!: Uint32Array;
  #words!: Uint32Array;
  #ints!: Int32Array;
  /** Byte offsets in the module's memory; see #layout and phash-scan.wat. */
  #hashesAt = 0;
  #idsAt = 0;
  #headsAt = 0;
  #linksAt = 0;
  #tailAt = 0;
  /** With a check: the tables' chroma hashes, the tail's and its check-data flags (see #layout). */
  #chromaAt = 0;
  #tailChromaAt = 0;
  #tailFlagsAt = 0;
  #bytesView!: Uint8Array;

  /** The check candidates must pass, or undefined (the pHash alone decides). */
  readonly check: NearDupCheckThresholds | undefined;
  /**
   * Check data per insertion number, in blocks of CHECK_BLOCK ids (NEAR_DUP_CHECK_BYTES each: one
   * array would pass the 4 GiB an ArrayBuffer may hold at ~7 million pictures), and whether it was
   * given; only with `check`.
   */
  #checks: Uint8Array[] = [];
  #hasCheck: Uint8Array = new Uint8Array(0);
  /** The check data of the query being looked up (find). */
  #query: Uint8Array | undefined;

  /**
   * @param maxDistance - largest Hamming distance (0 to MAX_NEAR_DUP_DISTANCE bits) that counts as a match.
   * @param check - when given, a stored hash within `maxDistance` matches only if it and the query
   *   pass confirmNearDup on their check data (add's and find's `check`); when either lacks check
   *   data, only if they lie within PHASH_ONLY_DISTANCE bits (or maxDistance, if smaller).
   */
  constructor(maxDistance: number, check?: NearDupCheckThresholds) {
    this.maxDistance = intOption('maxDistance', maxDistance, 0, MAX_NEAR_DUP_DISTANCE);
    this.check = check === undefined ? undefined : resolveCheckThresholds(check);
    scanModule ??= new WebAssembly.Module(Buffer.from(PHASH_SCAN_WASM_BASE64, 'base64'));
    const instance = new WebAssembly.Instance(scanModule, {
      env: { accept: (id: number) => (this.#accept(id) ? 1 : 0), drain: (n: number) => this.#drain(n) },
    });
    const exports = instance.exports as {
      memory: WebAssembly.Memory;
      first: (...args: number[]) => number;
      batch: (...args: number[]) => void;
    };
    this.#memory = exports.memory;
    this.#first = exports.first;
    this.#batch = exports.batch;
    this.#layout(0, MIN_TAIL);
  }

  /** Number of hashes added (a hash added twice counts twice). */
  get size(): number {
    return this.#size;
  }

  /** Bytes held by the index: its two arrays of hashes, the check data and the WebAssembly memory. */
  get bytes(): number {
    const checks = this.#checks.reduce((n, b) => n + b.byteLength, 0);
    return this.#hi.byteLength + this.#lo.byteLength + checks + this.#hasCheck.byteLength + this.#memory.buffer.byteLength;
  }

  /**
   * Stores a hash, with the picture's check data when the index has a check (ignored otherwise).
   * Throws TypeError unless the hash is 16 lower-case hex digits and `check` (if given)
   * NEAR_DUP_CHECK_BYTES bytes.
   */
  add(hash: string, check?: Uint8Array): void {
    parseInto(hash, 'a hash');
    const h = parsedHi;
    const l = parsedLo;
    const id = this.#size;
    if (this.check !== undefined && check !== undefined) assertCheckBytes(check);
    if (id === this.#hi.length) {
      const grown = Math.ceil(id * 1.5);
      this.#hi = copyInto(new Uint32Array(grown), this.#hi);
      this.#lo = copyInto(new Uint32Array(grown), this.#lo);
    }
    if (this.check !== undefined) {
      if (id >= this.#hasCheck.length) {
        const grown = Math.max(1024, Math.ceil(id * 1.5));
        const has = new Uint8Array(grown);
        has.set(this.#hasCheck);
        this.#hasCheck = has;
      }
      if (check !== undefined) {
        const block = id >>> CHECK_BLOCK_SHIFT;
        while (this.#checks.length <= block) this.#checks.push(new Uint8Array(NEAR_DUP_CHECK_BYTES << CHECK_BLOCK_SHIFT));
        this.#checks[block]!.set(check, (id & CHECK_BLOCK_MASK) * NEAR_DUP_CHECK_BYTES);
        this.#hasCheck[id] = 1;
      }
    }
    this.#hi[id] = h;
    this.#lo[id] = l;
    this.#size = id + 1;
    const slot = id - this.#frozen;
    const words = this.#words;
    const ints = this.#ints;
    // Little-endian i64 (hi << 32 | lo): the low word first.
    words[this.#tailAt / 4 + 2 * slot] = l;
    words[this.#tailAt / 4 + 2 * slot + 1] = h;
    if (this.check !== undefined) {
      // The scan's copy for the tail slot (the tables get theirs at the merge).
      const bytes = this.#bytesView;
      bytes[this.#tailFlagsAt + slot] = check !== undefined ? 1 : 0;
      if (check !== undefined) for (let i = 0; i < CHROMA_BYTES; i++) bytes[this.#tailChromaAt + slot * CHROMA_BYTES + i] = check[i]!;
    }
    for (let c = 0; c < CHUNKS; c++) {
      const head = this.#headsAt / 4 + c * BUCKETS + chunkOf(h, l, c);
      ints[this.#linksAt / 4 + c * this.#cap + slot] = ints[head]!;
      ints[head] = slot;
    }
    if (slot + 1 === this.#cap) this.#merge();
  }

  /**
   * The first stored hash (in the order added) that matches `hash` probed with its weak-bit mask
   * `weak` (see the header) and, when the index has a check, passes it with the query's `check`
   * data (see the constructor), or undefined. Throws TypeError unless both are 16 lower-case hex
   * digits, the mask marks at most MAX_WEAK_BITS_PER_CHUNK bits per chunk and `check` (if given) is
   * NEAR_DUP_CHECK_BYTES bytes.
   */
  find(hash: string, weak?: string, check?: Uint8Array): string | undefined {
    if (this.check !== undefined && check !== undefined) assertCheckBytes(check);
    parseInto(hash, 'a hash');
    const qhi = parsedHi;
    const qlo = parsedLo;
    let whi = 0;
    let wlo = 0;
    if (weak !== undefined) {
      parseInto(weak, 'a weak-bit mask');
      whi = parsedHi;
      wlo = parsedLo;
    }
    const n = phashWeakProbes(qhi, qlo, whi, wlo, this.#probes);
    this.#query = check;
    if (this.check !== undefined && check !== undefined) {
      const bytes = this.#bytesView;
      for (let i = 0; i < CHROMA_BYTES; i++) bytes[QUERY_CHROMA_AT + i] = check[i]!;
    }
    const best =
      this.#first(
        0,
        n,
        qhi,
        qlo,
        ...this.#tables,
        this.check === undefined ? 0 : 1,
        check === undefined ? 0 : 1,
        this.check?.maxChromaBits ?? 0,
        PHASH_ONLY_DISTANCE,
        this.#chromaAt,
        this.#tailChromaAt,
        this.#tailFlagsAt,
        QUERY_CHROMA_AT,
        CANDIDATES_AT,
        CANDIDATES,
      ) >>> 0;
    this.#query = undefined;
    return best === NONE ? undefined : hex32(this.#hi[best]!) + hex32(this.#lo[best]!);
  }

  /**
   * find() for many queries at once: the same answers, in the same order (`weaks[i]` and
   * `checks[i]` go with `hashes[i]`). Faster per query than find() for batches of hundreds or more:
   * the probes of up to BATCH_QUERIES queries are sorted by bucket, so the tables are read in address
   * order instead of at random. Throws TypeError as find() does, naming the query's position.
   */
  findMany(
    hashes: readonly string[],
    weaks?: readonly (string | undefined)[],
    checks?: readonly (Uint8Array | undefined)[],
  ): (string | undefined)[] {
    const out: (string | undefined)[] = new Array(hashes.length);
    if (hashes.length < MIN_BATCH) {
      // Too few to pay for the sort's clearing of its 1 MiB of counts: one at a time.
      for (let i = 0; i < hashes.length; i++) {
        try {
          out[i] = this.find(hashes[i]!, weaks?.[i], checks?.[i]);
        } catch (error) {
          throw new TypeError(`PhashIndex: query ${i}: ${(error as Error).message.replace(/^PhashIndex: /, '')}`);
        }
      }
      return out;
    }
    for (let from = 0; from < hashes.length; from += BATCH_QUERIES) {
      const ids = this.#findBatch(hashes, weaks, checks, from, Math.min(hashes.length, from + BATCH_QUERIES));
      for (let i = 0; i < ids.length; i++) {
        const best = ids[i]!;
        out[from + i] = best === NONE ? undefined : hex32(this.#hi[best]!) + hex32(this.#lo[best]!);
      }
    }
    return out;
  }

  /** Insertion numbers of the answers to queries from .. to - 1 of findMany (NONE: no match). */
  #findBatch(
    hashes: readonly string[],
    weaks: readonly (string | undefined)[] | undefined,
    checks: readonly (Uint8Array | undefined)[] | undefined,
    from: number,
    to: number,
  ): Uint32Array {
    const nq = to - from;
    const checked = this.check !== undefined;
    // Parse and probe every query first (a bad one throws before the scan starts).
    const qh = new Uint32Array(2 * nq);
    let np = 0;
    for (let q = 0; q < nq; q++) {
      const at = from + q;
      const check = checks?.[at];
      if (checked && check !== undefined) assertCheckBytes(check, `query ${at}: `);
      parseInto(hashes[at]!, `query ${at}: a hash`);
      const hi = parsedHi;
      const lo = parsedLo;
      let whi = 0;
      let wlo = 0;
      const weak = weaks?.[at];
      if (weak !== undefined) {
        parseInto(weak, `query ${at}: a weak-bit mask`);
        whi = parsedHi;
        wlo = parsedLo;
      }
      if (this.#batchKeys.length < np + MAX_PROBES) {
        const grown = Math.max(np + MAX_PROBES, 2 * this.#batchKeys.length);
        this.#batchKeys = copyInto(new Uint32Array(grown), this.#batchKeys);
        this.#batchQueries = copyInto(new Uint32Array(grown), this.#batchQueries);
      }
      let n: number;
      try {
        n = phashWeakProbes(hi, lo, whi, wlo, this.#batchKeys.subarray(np));
      } catch (error) {
        throw new TypeError(`PhashIndex: query ${at}: ${(error as Error).message.replace(/^PhashIndex: /, '')}`);
      }
      this.#batchQueries.fill(q, np, np + n);
      np += n;
      // Little-endian i64 (hi << 32 | lo).
      qh[2 * q] = lo;
      qh[2 * q + 1] = hi;
    }
    // The batch's scratch after the index: keys, query numbers, counts, sorted probes, the queries'
    // hashes, chroma hashes and flags, the answers, the candidates.
    const keysAt = align8(this.#endAt);
    const qidxAt = keysAt + 4 * np;
    const countsAt = align8(qidxAt + 4 * np);
    const sortedAt = align8(countsAt + 4 * (CHUNKS * BUCKETS + 1));
    const qhAt = sortedAt + 8 * np;
    const qcAt = qhAt + 8 * nq;
    const qhasAt = qcAt + CHROMA_BYTES * nq;
    const bestAt = align8(qhasAt + nq);
    const candAt = align8(bestAt + 4 * nq);
    const end = candAt + 8 * BATCH_CANDIDATES;
    const have = this.#memory.buffer.byteLength;
    if (end > have) {
      this.#memory.grow(Math.ceil((end - have) / 65536));
      this.#views();
    }
    const words = this.#words;
    const bytes = this.#bytesView;
    words.set(this.#batchKeys.subarray(0, np), keysAt / 4);
    words.set(this.#batchQueries.subarray(0, np), qidxAt / 4);
    words.set(qh, qhAt / 4);
    for (let q = 0; q < nq; q++) {
      const check = checked ? checks?.[from + q] : undefined;
      bytes[qhasAt + q] = check !== undefined ? 1 : 0;
      if (check !== undefined) bytes.set(check.subarray(0, CHROMA_BYTES), qcAt + CHROMA_BYTES * q);
    }
    this.#batchChecks = checks ?? [];
    this.#batchFrom = from;
    this.#batchBestAt = bestAt;
    this.#batchCandAt = candAt;
    try {
      this.#batch(
        nq,
        np,
        keysAt,
        qidxAt,
        countsAt,
        sortedAt,
        qhAt,
        qcAt,
        qhasAt,
        bestAt,
        ...this.#tables,
        checked ? 1 : 0,
        this.check?.maxChromaBits ?? 0,
        PHASH_ONLY_DISTANCE,
        this.#chromaAt,
        this.#tailChromaAt,
        this.#tailFlagsAt,
        candAt,
        BATCH_CANDIDATES,
      );
    } finally {
      this.#batchChecks = [];
    }
    return this.#words.slice(bestAt / 4, bestAt / 4 + nq);
  }

  /**
   * The batch scan's waiting candidates: `n` (query, id) pairs at the front of its candidate list
   * that passed the chroma stage. Asks the aligned stage about each query's ids below its answer so
   * far, smallest first, and lowers the answer at the first yes.
   */
  #drain(n: number): void {
    const words = this.#words;
    const pairs = this.#batchCandAt / 4;
    const best = this.#batchBestAt / 4;
    const order = new Float64Array(n);
    for (let i = 0; i < n; i++) order[i] = words[pairs + 2 * i]! * 2 ** 32 + words[pairs + 2 * i + 1]!;
    order.sort();
    let refused = -1;
    for (let i = 0; i < n; i++) {
      const key = order[i]!;
      if (key === refused) continue;
      const q = Math.floor(key / 2 ** 32);
      const id = key - q * 2 ** 32;
      if (id >= words[best + q]!) continue;
      const query = this.#batchChecks[this.#batchFrom + q]!;
      if (alignedBelow(this.#checkOf(id)!, query, this.check!.maxAlignedDistance)) words[best + q] = id;
      else refused = key;
    }
  }

  /** Whether a stored hash matches `hash` probed with `weak` (see find). */
  has(hash: string, weak?: string, check?: Uint8Array): boolean {
    return this.find(hash, weak, check) !== undefined;
  }

  /** The stored hashes, in the order they were added. */
  *hashes(): IterableIterator<string> {
    for (let id = 0; id < this.#size; id++) yield hex32(this.#hi[id]!) + hex32(this.#lo[id]!);
  }

  /** The stored hashes with their check data (undefined when not given, or the index has no check), in the order added. */
  *entries(): IterableIterator<{ hash: string; check: Uint8Array | undefined }> {
    for (let id = 0; id < this.#size; id++) yield { hash: hex32(this.#hi[id]!) + hex32(this.#lo[id]!), check: this.#checkOf(id) };
  }

  #checkOf(id: number): Uint8Array | undefined {
    if (this.check === undefined || this.#hasCheck[id] !== 1) return undefined;
    const at = (id & CHECK_BLOCK_MASK) * NEAR_DUP_CHECK_BYTES;
    return this.#checks[id >>> CHECK_BLOCK_SHIFT]!.subarray(at, at + NEAR_DUP_CHECK_BYTES);
  }

  /**
   * The scan's question about stored hash `id`: asked only with a check, when both have check data
   * and their chroma hashes passed (phash-scan.wat), so what is left is the aligned stage of
   * confirmNearDup.
   */
  #accept(id: number): boolean {
    return alignedBelow(this.#checkOf(id)!, this.#query!, this.check!.maxAlignedDistance);
  }

  /**
   * Places the tables for `frozen` hashes and a tail of `cap` slots in the module's memory, growing
   * it as needed; renews the views and empties the tail's chains. In bytes: probes at 0, the query's
   * chroma hash, the candidate list, bucket offsets at OFFSETS_AT, then hashes, ids, (with a check) the tables' chroma
   * hashes, tail heads, tail links, tail hashes and (with a check) the tail's chroma hashes and flags.
   */
  #layout(frozen: number, cap: number): void {
    const checked = this.check !== undefined;
    this.#hashesAt = OFFSETS_AT + CHUNKS * OFFSETS_BYTES; // a multiple of 8: the i64s are aligned
    this.#idsAt = this.#hashesAt + CHUNKS * 8 * (frozen + 1);
    this.#chromaAt = align8(this.#idsAt + CHUNKS * 4 * frozen);
    this.#headsAt = this.#chromaAt + (checked ? CHUNKS * CHROMA_BYTES * frozen : 0);
    this.#linksAt = this.#headsAt + CHUNKS * 4 * BUCKETS;
    this.#tailAt = this.#linksAt + CHUNKS * 4 * cap;
    this.#tailChromaAt = this.#tailAt + 8 * cap;
    this.#tailFlagsAt = this.#tailChromaAt + (checked ? CHROMA_BYTES * cap : 0);
    const end = this.#tailFlagsAt + (checked ? cap : 0);
    const have = this.#memory.buffer.byteLength;
    if (end > have) this.#memory.grow(Math.ceil((end - have) / 65536));
    this.#endAt = end;
    this.#cap = cap;
    this.#tables = [
      this.maxDistance,
      OFFSETS_AT,
      this.#hashesAt,
      8 * (frozen + 1),
      this.#idsAt,
      4 * frozen,
      frozen,
      this.#tailAt,
      this.#headsAt,
      this.#linksAt,
      cap,
    ];
    this.#views();
    this.#ints.fill(-1, this.#headsAt / 4, this.#linksAt / 4);
  }

  /** Renews the views of the module's memory (a grown memory has a new buffer). */
  #views(): void {
    this.#probes = new Uint32Array(this.#memory.buffer, 0, MAX_PROBES);
    this.#words = new Uint32Array(this.#memory.buffer);
    this.#ints = new Int32Array(this.#memory.buffer);
    this.#bytesView = new Uint8Array(this.#memory.buffer);
  }

  /**
   * Moves the tail into the tables: per chunk, each bucket's old run is copied as it is and its tail
   * entries (walked down the chain, newest first) are written after it, so insertion order within a
   * bucket is kept. The new tables are built aside, then copied into the module's memory.
   */
  #merge(): void {
    const n = this.#size;
    const frozen = this.#frozen;
    const words = this.#words;
    const ints = this.#ints;
    const tail = this.#tailAt / 4;
    const checked = this.check !== undefined;
    const built: { offsets: Uint32Array; hashes: Uint32Array; ids: Uint32Array; chroma: Uint32Array }[] = [];
    for (let c = 0; c < CHUNKS; c++) {
      const oldOffsets = (OFFSETS_AT + c * OFFSETS_BYTES) / 4;
      const oldHashes = (this.#hashesAt + c * 8 * (frozen + 1)) / 4;
      const oldIds = (this.#idsAt + c * 4 * frozen) / 4;
      const heads = this.#headsAt / 4 + c * BUCKETS;
      const links = this.#linksAt / 4 + c * this.#cap;
      const offsets = new Uint32Array(BUCKETS + 1);
      for (let b = 0; b < BUCKETS; b++) {
        let count = words[oldOffsets + b + 1]! - words[oldOffsets + b]!;
        for (let i = ints[heads + b]!; i >= 0; i = ints[links + i]!) count++;
        offsets[b + 1] = offsets[b]! + count;
      }
      // One spare hash at the end: the scan touches the "last plus one" entry of a bucket.
      const hashes = new Uint32Array(2 * (n + 1));
      const ids = new Uint32Array(n);
      // With a check, bit 31 of an id says the picture has check data, and its chroma hash follows the
      // entry's order (phash-scan.wat): copied with the entry from the old table or the tail slot.
      const chroma = new Uint32Array(checked ? (CHROMA_BYTES / 4) * n : 0);
      const oldChroma = (this.#chromaAt + c * CHROMA_BYTES * frozen) / 4;
      const tailChroma = this.#tailChromaAt / 4;
      const tailFlags = this.#tailFlagsAt;
      const bytes = this.#bytesView;
      for (let b = 0; b < BUCKETS; b++) {
        let at = offsets[b]!;
        for (let j = words[oldOffsets + b]!, end = words[oldOffsets + b + 1]!; j < end; j++, at++) {
          hashes[2 * at] = words[oldHashes + 2 * j]!;
          hashes[2 * at + 1] = words[oldHashes + 2 * j + 1]!;
          ids[at] = words[oldIds + j]!;
          if (checked) for (let k = 0; k < 4; k++) chroma[4 * at + k] = words[oldChroma + 4 * j + k]!;
        }
        at = offsets[b + 1]!;
        for (let i = ints[heads + b]!; i >= 0; i = ints[links + i]!) {
          at--;
          hashes[2 * at] = words[tail + 2 * i]!;
          hashes[2 * at + 1] = words[tail + 2 * i + 1]!;
          ids[at] = frozen + i;
          if (checked && bytes[tailFlags + i] === 1) {
            ids[at] = (ids[at]! | HAS_CHECK) >>> 0;
            for (let k = 0; k < 4; k++) chroma[4 * at + k] = words[tailChroma + 4 * i + k]!;
          }
        }
      }
      built.push({ offsets, hashes, ids, chroma });
    }
    this.#frozen = n;
    this.#layout(n, Math.max(MIN_TAIL, n >>> TAIL_SHIFT));
    built.forEach(({ offsets, hashes, ids, chroma }, c) => {
      this.#words.set(offsets, (OFFSETS_AT + c * OFFSETS_BYTES) / 4);
      this.#words.set(hashes, (this.#hashesAt + c * 8 * (n + 1)) / 4);
      this.#words.set(ids, (this.#idsAt + c * 4 * n) / 4);
      if (checked) this.#words.set(chroma, (this.#chromaAt + c * CHROMA_BYTES * n) / 4);
    });
  }
}

/** Validates check thresholds (the PhashIndex constructor's and the filter's). */
export function resolveCheckThresholds(t: NearDupCheckThresholds): NearDupCheckThresholds {
  if (typeof t !== 'object' || t === null) throw invalid('check', 'an object with maxChromaBits and maxAlignedDistance', t);
  return {
    maxChromaBits: intOption('maxChromaBits', t.maxChromaBits, 0, 128),
    maxAlignedDistance: numberOption('maxAlignedDistance', t.maxAlignedDistance, 0, 2),
  };
}

function assertCheckBytes(check: Uint8Array, where = ''): void {
  if (!(check instanceof Uint8Array) || check.length !== NEAR_DUP_CHECK_BYTES) {
    const got = check instanceof Uint8Array ? `${check.length} bytes` : JSON.stringify(check);
    throw new TypeError(`PhashIndex: ${where}check data must be ${NEAR_DUP_CHECK_BYTES} bytes, got ${got}`);
  }
}

function align8(x: number): number {
  return Math.ceil(x / 8) * 8;
}

function copyInto<T extends Uint32Array>(to: T, from: Uint32Array): T {
  to.set(from);
  return to;
}
