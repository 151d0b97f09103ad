// Finds a stored 64-bit perceptual hash within a Hamming distance of a query without scanning them
// all: the index behind the `near_duplicate` and `contaminated` rules.
//
// Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012). The 64 bits are cut into CHUNKS = 4
// disjoint 16-bit chunks, each with its own table from chunk value to the hashes that have it.
// Generalised pigeonhole: write maxDistance d = 4r + a (0 <= a < 4); if two hashes differ in at
// most d bits, then one of chunks 0..a differs in at most r bits, or one of chunks a+1..3 in at
// most r - 1 (otherwise the differences add up to at least (a+1)(r+1) + (3-a)r = d + 1). So a query
// probes, in each chunk, every value within that radius and checks the hashes found there. Nothing
// is missed: the answers equal a linear scan's (tested).
//
// Why 4 chunks of 16 bits rather than d + 1 chunks matched exactly: d + 1 chunks are short (6 bits
// at d = 10), so each matches 1/64 of everything stored and a query checks ~200,000 candidates out
// of a million. 16 bits (about log2 of the sizes indexed) keeps a bucket at ~15 hashes per million
// stored and the probes of a chunk within radius 2 at 137. Cost still grows steeply with d: at a
// million random hashes a query checks ~800 candidates at d = 6, ~6,500 at d = 10, ~70,000 at 16.
//
// Layout. All hashes sit in add order in two Uint32Arrays (hi, lo). Each chunk's table is in CSR
// form over the hashes added before the last merge: bucket offsets, then per entry its insertion
// number and 32 more bits of its hash (the next two chunks). A candidate is screened with those 32
// bits, which rules out all but ~0.5% of non-matches at d = 10 while reading 4 bytes in order; only
// survivors are checked in full from hi/lo. Hashes added since the last merge form a tail, chained
// per bucket (with its own small copy of the hashes, so chain walks stay in cache). The tail is
// merged once it holds a sixteenth of the frozen hashes: each bucket's old run is copied as it is
// and the bucket's tail entries appended, so merging costs a sequential copy and the total work
// stays linear in the hashes added.
//
// Memory per stored hash: 8 (hi, lo) + 4 chunks x 8 (screen bits, insertion number) = 40 bytes, plus
// 24 per tail slot (a sixteenth as many: 1.5 a hash) and hi/lo's growth room; 2 MiB of bucket
// arrays on top. `bytes` gives the exact total of the typed arrays (41.8 a hash at a million).
//
// Speed (bench/phash-index.ts, 1,000,000 random hashes, one core of a shared 2-core Xeon VM): about
// 175,000 lookups/s at d = 4, 74,000 at 6, 24,000 at 8, 9,600 at 10, 1,100 at 16; 50-600x a linear
// scan below 12. The work is dominated by cache misses, one or two per probed bucket.
//
// Hashes are parsed from hex once per add or find; no string is kept.

import { intOption } from '../core/options.js';

/**
 * Default `maxDistance` of the near_duplicate and contaminated rules, in bits out of 64. Chosen from
 * scripts/near-dup-eval.ts, run on 271 distinct real photos and 1,897 transformed copies hashed as
 * ingest hashes them: 10 is the largest distance at which no two different photos matched (0 of
 * 2.3 million pairs). There JPEG re-encoding (q 50-95), resizing (0.5-2x), brightness (+-20%) and
 * overlaid text are all found (100%), crops of up to 10% a side in 73% of cases (98% when under
 * 2.5%, 50% when 7.5-10%): 86% recall overall. (pHash bits are 32 ones and 32 zeros, so distances
 * are even: 10 and 11 behave alike.)
 *
 * The target, recall 0.95 at a per-pair false-positive rate of 0.1%, is met only at 16
 * (97.6% at 3.3e-4), and it is the wrong yardstick for a filter: each image is compared with
 * everything kept, so 3.3e-4 a pair means ~330 false matches per image against a million kept
 * images (and a lookup at 16 is ~9x slower than at 10). Crops are what the DCT hash cannot absorb.
 *
 * Crop tolerance was measured too (the eval's "crop-tolerant alternatives", both orders of each
 * pair): storing for each kept picture the pHash of its central window and of shifted/shrunk windows
 * reaches the target at 12 with 9 stored hashes a picture (97.8%, FPR 3.7e-5) and at 10 with 27
 * (95.3%, 1.6e-5); a 35-bit key of low-frequency signs, which shifts barely turn over, reaches 95.0%
 * only at 7 with FPR 5e-4. None of them brings the distance down to where the index is fast (about
 * 6 or less: see the header): every stored window that absorbs part of a crop multiplies what the
 * index holds, and the fewer, more robust bits cost as much in bucket crowding as they save in
 * distance. So the rule keeps the ingest pHash at 10, where it is fast and has no false match seen.
 *
 * Probing instead the query's least reliable bits (every combination of the 5 in each chunk whose
 * coefficients lie closest to the median, accepted within 16) meets the recall target (95.1% at FPR
 * 5.2e-5, the eval's "weak-probes 5") and, scanned in WebAssembly, the speed target (~145k/s:
 * bench:phash-index --weak-probes 5); it is measured there as a prototype, not used here yet (what it
 * needs: ARCHITECTURE.md, the filter stage).
 */
export const DEFAULT_NEAR_DUP_DISTANCE = 10;

/** Largest accepted maxDistance. From 16 on distinct photos match at rates that make the rules useless at scale. */
export const MAX_NEAR_DUP_DISTANCE = 16;

const CHUNKS = 4;
/** Number of 16-bit chunks a hash is cut into (chunk 0 = the top 16 bits). */
export const PHASH_CHUNKS = CHUNKS;
const BUCKETS = 1 << 16;
/** The tail is merged once it holds this many hashes or a sixteenth of the frozen ones, whichever is more. */
const MIN_TAIL = 4096;
const TAIL_SHIFT = 4;
const NONE = 0xffffffff;
const HEX = /^[0-9a-f]{16}$/;

export interface Probes {
  /** Every 16-bit mask with at most r bits set. */
  readonly masks: Uint16Array;
  /** Bits set in each mask: what the probed chunk already adds to the distance. */
  readonly weights: Uint8Array;
}

const probeCache = new Map<number, Probes>();
/** Every 16-bit value with at most r bits set, and each one's bit count (cached per r). */
export function probeMasksWithin(r: number): Probes {
  return probesWithin(r);
}

/**
 * The probes a search within maxDistance makes: per chunk, the radius around the query's chunk value
 * (chunks whose radius would be -1 are left out). The pigeonhole argument is in the header.
 */
export function phashProbePlan(maxDistance: number): { chunk: number; radius: number }[] {
  const r = Math.floor(maxDistance / CHUNKS);
  const a = maxDistance % CHUNKS;
  const plan: { chunk: number; radius: number }[] = [];
  for (let c = 0; c < CHUNKS; c++) if ((c <= a ? r : r - 1) >= 0) plan.push({ chunk: c, radius: c <= a ? r : r - 1 });
  return plan;
}

function probesWithin(r: number): Probes {
  let probes = probeCache.get(r);
  if (probes === undefined) {
    const masks: number[] = [];
    for (let m = 0; m < BUCKETS; m++) if (popcount32(m) <= r) masks.push(m);
    probes = { masks: Uint16Array.from(masks), weights: Uint8Array.from(masks, popcount32) };
    probeCache.set(r, probes);
  }
  return probes;
}

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

/** The screen bits of chunk c's table: chunks c + 1 and c + 2 (mod 4), as one 32-bit word. */
function screenOf(hi: number, lo: number, c: number): number {
  switch (c) {
    case 0:
      return ((hi << 16) | (lo >>> 16)) >>> 0;
    case 1:
      return lo >>> 0;
    case 2:
      return ((lo << 16) | (hi >>> 16)) >>> 0;
    default:
      return hi >>> 0;
  }
}

function hex32(word: number): string {
  return (word >>> 0).toString(16).padStart(8, '0');
}

/** One chunk's table: frozen CSR buckets plus the chained tail. */
interface ChunkTable {
  /** offsets[b] .. offsets[b + 1]: the frozen entries of bucket b, in insertion order. */
  offsets: Uint32Array;
  /** Per frozen entry: the screen bits (screenOf) of its hash. */
  screens: Uint32Array;
  /** Per frozen entry: its insertion number, an index into hi/lo. */
  ids: Uint32Array;
  /** Newest tail entry of each bucket (an index into the tail), or -1. */
  tailHead: Int32Array;
  /** Next older tail entry in the same bucket, or -1. */
  tailNext: Int32Array;
}

/** A set of 64-bit hashes (16 lower-case hex digits) that answers "is one within maxDistance bits?". */
export class PhashIndex {
  readonly maxDistance: number;
  /** Probe radius per chunk; -1: the chunk need not be probed. */
  readonly #radius: Int32Array;
  readonly #tables: ChunkTable[];
  #hi: Uint32Array = new Uint32Array(1024);
  #lo: Uint32Array = new Uint32Array(1024);
  #size = 0;
  /** Hashes 0 .. frozen - 1 are in the CSR parts; the rest are the tail. */
  #frozen = 0;
  /** The tail's hashes again, by tail position: chain walks stay within a small array. */
  #tailHi: Uint32Array = new Uint32Array(MIN_TAIL);
  #tailLo: Uint32Array = new Uint32Array(MIN_TAIL);

  /** @param maxDistance - largest Hamming distance (0 to MAX_NEAR_DUP_DISTANCE bits) that counts as a match. */
  constructor(maxDistance: number) {
    this.maxDistance = intOption('maxDistance', maxDistance, 0, MAX_NEAR_DUP_DISTANCE);
    const r = Math.floor(maxDistance / CHUNKS);
    const a = maxDistance % CHUNKS;
    this.#radius = Int32Array.from({ length: CHUNKS }, (_, c) => (c <= a ? r : r - 1));
    for (const radius of this.#radius) if (radius >= 0) probesWithin(radius);
    this.#tables = Array.from({ length: CHUNKS }, () => ({
      offsets: new Uint32Array(BUCKETS + 1),
      screens: new Uint32Array(1),
      ids: new Uint32Array(0),
      tailHead: new Int32Array(BUCKETS).fill(-1),
      tailNext: new Int32Array(MIN_TAIL),
    }));
  }

  /** Number of hashes added (a hash added twice counts twice). */
  get size(): number {
    return this.#size;
  }

  /** Bytes held by the index's typed arrays: all of its memory but a few small objects. */
  get bytes(): number {
    let total = this.#hi.byteLength + this.#lo.byteLength + this.#tailHi.byteLength + this.#tailLo.byteLength;
    for (const t of this.#tables) {
      total += t.offsets.byteLength + t.screens.byteLength + t.ids.byteLength + t.tailHead.byteLength + t.tailNext.byteLength;
    }
    return total;
  }

  /** Stores a hash. Throws TypeError unless it is 16 lower-case hex digits. */
  add(hash: string): void {
    parse(hash);
    const id = this.#size;
    if (id === this.#hi.length) {
      const grown = Math.ceil(id * 1.5);
      this.#hi = copyInto(new Uint32Array(grown), this.#hi);
      this.#lo = copyInto(new Uint32Array(grown), this.#lo);
    }
    this.#hi[id] = parsedHi;
    this.#lo[id] = parsedLo;
    this.#size = id + 1;
    const tail = id - this.#frozen;
    this.#tailHi[tail] = parsedHi;
    this.#tailLo[tail] = parsedLo;
    for (let c = 0; c < CHUNKS; c++) {
      const t = this.#tables[c]!;
      const b = chunkOf(parsedHi, parsedLo, c);
      t.tailNext[tail] = t.tailHead[b]!;
      t.tailHead[b] = tail;
    }
    if (tail + 1 === this.#tailHi.length) this.#merge();
  }

  /**
   * The first stored hash (in the order added) within maxDistance bits of `hash`, or undefined.
   * Throws TypeError unless `hash` is 16 lower-case hex digits.
   */
  find(hash: string): string | undefined {
    parse(hash);
    const qhi = parsedHi;
    const qlo = parsedLo;
    const d = this.maxDistance;
    const hi = this.#hi;
    const lo = this.#lo;
    const tailHi = this.#tailHi;
    const tailLo = this.#tailLo;
    const frozen = this.#frozen;
    let best = NONE;
    for (let c = 0; c < CHUNKS; c++) {
      const radius = this.#radius[c]!;
      if (radius < 0) continue;
      const { offsets, screens, ids, tailHead, tailNext } = this.#tables[c]!;
      const key = chunkOf(qhi, qlo, c);
      const screen = screenOf(qhi, qlo, c);
      const { masks, weights } = probeCache.get(radius)!;
      const probes = masks.length;
      // Three passes over the probed buckets. The first reads their bounds (small, cached tables);
      // the second only loads each bucket's first and last entry: those loads are independent, so
      // the CPU overlaps their cache misses instead of waiting for them one bucket at a time as the
      // third pass, which does the work, would. This alone makes lookups ~1.4x faster.
      for (let m = 0; m < probes; m++) {
        const b = key ^ masks[m]!;
        starts[m] = offsets[b]!;
        ends[m] = offsets[b + 1]!;
      }
      let touched = 0;
      for (let m = 0; m < probes; m++) {
        const s = starts[m]!;
        const e = ends[m]!;
        touched ^= screens[s]! ^ screens[e > s ? e - 1 : s]!;
      }
      sink ^= touched;
      for (let m = 0; m < probes; m++) {
        // The chunk itself differs in weights[m] bits; the screen bits may add at most the rest.
        const budget = d - weights[m]!;
        const end = ends[m]!;
        for (let j = starts[m]!; j < end; j++) {
          if (popcount32(screens[j]! ^ screen) > budget) continue;
          const id = ids[j]!;
          // Entries of a bucket are in insertion order: none after this one can beat `best`.
          if (id >= best) break;
          if (popcount32(hi[id]! ^ qhi) + popcount32(lo[id]! ^ qlo) <= d) {
            best = id;
            break;
          }
        }
        if (best < frozen) continue; // tail hashes came later than any frozen match
        for (let i = tailHead[key ^ masks[m]!]!; i >= 0; i = tailNext[i]!) {
          if (frozen + i < best && popcount32(tailHi[i]! ^ qhi) + popcount32(tailLo[i]! ^ qlo) <= d) best = frozen + i;
        }
      }
    }
    return best === NONE ? undefined : hex32(hi[best]!) + hex32(lo[best]!);
  }

  /** Whether a stored hash lies within maxDistance bits of `hash`. */
  has(hash: string): boolean {
    return this.find(hash) !== undefined;
  }

  /** The stored hashes, in the order they were added. */
  *hashes(): IterableIterator<string> {
    for (let id = 0; id < this.#size; id++) yield hex32(this.#hi[id]!) + hex32(this.#lo[id]!);
  }

  /**
   * Moves the tail into the CSR parts: per chunk, each bucket's old run is copied as it is and its
   * tail entries (walked down the chain, newest first) are written after it, so insertion order
   * within a bucket is kept. One chunk at a time: peak memory grows by one table, not four.
   */
  #merge(): void {
    const n = this.#size;
    const frozen = this.#frozen;
    const tailSize = n - frozen;
    const tailHi = this.#tailHi;
    const tailLo = this.#tailLo;
    for (let c = 0; c < CHUNKS; c++) {
      const t = this.#tables[c]!;
      const old = t.offsets;
      const offsets = new Uint32Array(BUCKETS + 1);
      for (let i = 0; i < tailSize; i++) offsets[chunkOf(tailHi[i]!, tailLo[i]!, c) + 1]++;
      for (let b = 0; b < BUCKETS; b++) offsets[b + 1] += offsets[b]! + old[b + 1]! - old[b]!;
      // One spare entry: find() may load screens[n] for an empty last bucket.
      const screens = new Uint32Array(n + 1);
      const ids = new Uint32Array(n);
      for (let b = 0; b < BUCKETS; b++) {
        let at = offsets[b]!;
        for (let j = old[b]!, end = old[b + 1]!; j < end; j++, at++) {
          screens[at] = t.screens[j]!;
          ids[at] = t.ids[j]!;
        }
        at = offsets[b + 1]!;
        for (let i = t.tailHead[b]!; i >= 0; i = t.tailNext[i]!) {
          at--;
          screens[at] = screenOf(tailHi[i]!, tailLo[i]!, c);
          ids[at] = frozen + i;
        }
      }
      t.offsets = offsets;
      t.screens = screens;
      t.ids = ids;
      t.tailHead.fill(-1);
    }
    this.#frozen = n;
    const tailLength = Math.max(MIN_TAIL, n >>> TAIL_SHIFT);
    if (tailLength !== this.#tailHi.length) {
      this.#tailHi = new Uint32Array(tailLength);
      this.#tailLo = new Uint32Array(tailLength);
      for (const t of this.#tables) t.tailNext = new Int32Array(tailLength);
    }
  }
}

function copyInto(to: Uint32Array, from: Uint32Array): Uint32Array {
  to.set(from);
  return to;
}

// Scratch for find(): the bounds of the probed buckets (at most C(16, <= 4) = 2517 per chunk), and
// a sink for the loads that only warm the cache, so the compiler cannot drop them.
const starts = new Int32Array(2517);
const ends = new Int32Array(2517);
let sink = 0;

// parse() leaves its two words here rather than allocating a pair on every call.
let parsedHi = 0;
let parsedLo = 0;

function parse(hash: string): void {
  if (typeof hash !== 'string' || !HEX.test(hash)) {
    throw new TypeError(`PhashIndex: a hash must be 16 lower-case hex digits, got ${JSON.stringify(hash)}`);
  }
  parsedHi = parseInt(hash.slice(0, 8), 16) >>> 0;
  parsedLo = parseInt(hash.slice(8), 16) >>> 0;
}
