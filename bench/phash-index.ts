// PhashIndex throughput: stores 1,000,000 random 64-bit hashes (with planted near neighbours), then
// times lookups on a mix of hits and misses, two ways in the same run: findMany in batches of
// FILTER_BATCH queries (how the filter asks), and find one query at a time; against a linear scan
// over the same hashes in typed arrays (on fewer queries: it is slow). Checks that both ways and the
// scan answer alike. Prints lookups/s, the speed-ups, build time and bytes per stored hash, for the
// default distance and any others asked for.
//
// Script: npx tsx bench/phash-index.ts [--size N] [--distances 4,8,10,16] [--seconds S] [--seed N]
//                                      [--per-image K] [--bits B] [--batch N] [--no-check]
// --batch N asks findMany N queries at a time (default FILTER_BATCH).
// --per-image K stores K hashes per image (its own and K - 1 variants 4-12 bits away, as a rule that
// stores crop variants would; see scripts/near-dup-eval.ts), so `size` images make K x size stored
// hashes, and a lookup is still one image's check. --bits B keeps only the top B bits of every hash
// random (the rest 0), as a key of B bits stored in the 64-bit index would be.
// Every query carries a weak-bit mask of WEAK_BITS random bits a chunk, as ingest stores one per
// image (src/image/phash.ts), so a lookup makes 4 x 2^5 = 128 probes; the scan applies the same
// definition (within the distance and, in some chunk, different only in the query's weak bits).
// The index is built as the filter builds it: with the near-duplicate check (DEFAULT_NEAR_DUP_CHECK)
// and check data for every stored hash and query (--no-check: the pHash alone). Check data here is
// synthetic: each image a random chroma hash and thumbnail; a planted copy, and a query near a stored
// hash, carry that hash's data with a little thumbnail noise (they pass the check); fresh queries carry
// their own (they fail its chroma stage, as unrelated photos mostly do). The linear scan applies the
// check the same way, in add order.
// Exits 1 when findMany at the default distance is slower than TARGET lookups/s.

import { availableParallelism, cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { Rng } from '../src/demo/random.js';
import { FILTER_BATCH } from '../src/filters/filter.js';
import { DEFAULT_NEAR_DUP_DISTANCE, PhashIndex, phashChunkOf } from '../src/filters/phash-index.js';
import { confirmNearDup, DEFAULT_NEAR_DUP_CHECK, NEAR_DUP_CHECK_BYTES } from '../src/image/near-dup-check.js';
import { PHASH_WEAK_BITS } from '../src/image/phash.js';

const TARGET = 100_000;
/** Stored hashes that are copies of an earlier one with a few bits flipped. */
const PLANTED_SHARE = 0.05;

function hex32(w: number): string {
  return (w >>> 0).toString(16).padStart(8, '0');
}

function popcount32(word: number): number {
  let v = word >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

function flip(rng: Rng, hi: number, lo: number, k: number): [number, number] {
  for (let i = 0; i < k; i++) {
    const b = rng.int(0, 63);
    if (b < 32) hi ^= 1 << b;
    else lo ^= 1 << (b - 32);
  }
  return [hi >>> 0, lo >>> 0];
}

interface Corpus {
  readonly hi: Uint32Array;
  readonly lo: Uint32Array;
  readonly hex: string[];
  /** Check data of stored hash i at i * NEAR_DUP_CHECK_BYTES. */
  readonly checks: Uint8Array;
}

function randomCheck(rng: Rng, out: Uint8Array, at: number): void {
  for (let i = 0; i < NEAR_DUP_CHECK_BYTES; i += 4) {
    const w = Math.floor(rng.next() * 2 ** 32);
    for (let k = 0; k < 4 && i + k < NEAR_DUP_CHECK_BYTES; k++) out[at + i + k] = (w >>> (8 * k)) & 0xff;
  }
}

/** Stored check data j, with a little noise on the thumbnail (a copy of the same picture). */
function copyCheck(rng: Rng, checks: Uint8Array, j: number, out: Uint8Array, at: number): void {
  out.set(checks.subarray(j * NEAR_DUP_CHECK_BYTES, (j + 1) * NEAR_DUP_CHECK_BYTES), at);
  for (let i = 16; i < NEAR_DUP_CHECK_BYTES; i += 7) out[at + i] = Math.max(0, Math.min(255, out[at + i]! + rng.int(-3, 3)));
}

/** Masks that keep the top `bits` bits of (hi, lo). */
function keepMasks(bits: number): [number, number] {
  const hiMask = bits >= 32 ? 0xffffffff : bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const loMask = bits >= 64 ? 0xffffffff : bits <= 32 ? 0 : (0xffffffff << (64 - bits)) >>> 0;
  return [hiMask, loMask];
}

function makeCorpus(images: number, perImage: number, bits: number, seed: number): Corpus {
  const rng = new Rng(seed);
  const size = images * perImage;
  const [hiMask, loMask] = keepMasks(bits);
  const hi = new Uint32Array(size);
  const lo = new Uint32Array(size);
  const hex: string[] = new Array(size);
  const checks = new Uint8Array(size * NEAR_DUP_CHECK_BYTES);
  let n = 0;
  const put = (h: number, l: number): void => {
    hi[n] = (h & hiMask) >>> 0;
    lo[n] = (l & loMask) >>> 0;
    hex[n] = hex32(hi[n]!) + hex32(lo[n]!);
    n++;
  };
  for (let i = 0; i < images; i++) {
    let h = Math.floor(rng.next() * 2 ** 32);
    let l = Math.floor(rng.next() * 2 ** 32);
    let copyOf = -1;
    if (n > 0 && rng.chance(PLANTED_SHARE)) {
      copyOf = rng.int(0, n - 1);
      [h, l] = flip(rng, hi[copyOf]!, lo[copyOf]!, rng.int(0, 8));
    }
    const base = n;
    if (copyOf >= 0) copyCheck(rng, checks, copyOf, checks, n * NEAR_DUP_CHECK_BYTES);
    else randomCheck(rng, checks, n * NEAR_DUP_CHECK_BYTES);
    put(h, l);
    for (let v = 1; v < perImage; v++) {
      copyCheck(rng, checks, base, checks, n * NEAR_DUP_CHECK_BYTES);
      put(...flip(rng, hi[base]!, lo[base]!, rng.int(4, 12)));
    }
  }
  return { hi, lo, hex, checks };
}

/** Weak bits a chunk in every query's mask, as ingest makes them (PHASH_WEAK_BITS). */
const WEAK_BITS = PHASH_WEAK_BITS;

interface Query {
  readonly hash: string;
  readonly weak: string;
  readonly words: readonly [number, number, number, number];
  readonly check: Uint8Array;
}

/**
 * Half near copies of stored hashes (0..d bits flipped), half fresh random hashes; each with a mask
 * of WEAK_BITS random bits a chunk.
 */
function makeQueries(corpus: Corpus, d: number, bits: number, count: number, seed: number): Query[] {
  const rng = new Rng(seed);
  const [hiMask, loMask] = keepMasks(bits);
  const out: Query[] = [];
  for (let q = 0; q < count; q++) {
    let [h, l] = [Math.floor(rng.next() * 2 ** 32), Math.floor(rng.next() * 2 ** 32)];
    const check = new Uint8Array(NEAR_DUP_CHECK_BYTES);
    if (q % 2 === 0) {
      const j = rng.int(0, corpus.hi.length - 1);
      [h, l] = flip(rng, corpus.hi[j]!, corpus.lo[j]!, rng.int(0, d));
      copyCheck(rng, corpus.checks, j, check, 0);
    } else randomCheck(rng, check, 0);
    const chunks: number[] = [];
    for (let c = 0; c < 4; c++) {
      let m = 0;
      while (popcount32(m) < WEAK_BITS) m |= 1 << rng.int(0, 15);
      chunks.push(m);
    }
    const wh = ((chunks[0]! << 16) | chunks[1]!) >>> 0;
    const wl = ((chunks[2]! << 16) | chunks[3]!) >>> 0;
    h = (h & hiMask) >>> 0;
    l = (l & loMask) >>> 0;
    out.push({ hash: hex32(h) + hex32(l), weak: hex32(wh) + hex32(wl), words: [h, l, wh, wl], check });
  }
  return out;
}

/** The same question answered by scanning every stored hash in add order, with the index's definition. */
function linearFind(corpus: Corpus, d: number, query: Query, check: boolean): number {
  const [qh, ql, wh, wl] = query.words;
  const { hi, lo } = corpus;
  for (let i = 0; i < hi.length; i++) {
    if (popcount32(hi[i]! ^ qh) + popcount32(lo[i]! ^ ql) > d) continue;
    for (let c = 0; c < 4; c++) {
      if (((phashChunkOf(hi[i]!, lo[i]!, c) ^ phashChunkOf(qh, ql, c)) & ~phashChunkOf(wh, wl, c) & 0xffff) !== 0) continue;
      if (!check || confirmNearDup(corpus.checks.subarray(i * NEAR_DUP_CHECK_BYTES, (i + 1) * NEAR_DUP_CHECK_BYTES), query.check, DEFAULT_NEAR_DUP_CHECK)) return i;
      break;
    }
  }
  return -1;
}

/**
 * Runs `pass` (one pass over `count` queries; returns its hits) once to warm up, then until `seconds`
 * have passed; lookups per second of wall-clock time and of the process's CPU time.
 */
function time(seconds: number, count: number, pass: () => number): { perSecond: number; done: number; hits: number; text: string } {
  pass();
  let done = 0;
  let hits = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    hits += pass();
    done += count;
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  return { perSecond: (done / ms) * 1000, done, hits, text: `${rate(done, ms)} (${rate(done, cpuMs)} per CPU-second)` };
}

function rate(count: number, ms: number): string {
  return `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '1000000' },
      distances: { type: 'string', default: String(DEFAULT_NEAR_DUP_DISTANCE) },
      seconds: { type: 'string', default: '2' },
      seed: { type: 'string', default: '7' },
      'per-image': { type: 'string', default: '1' },
      bits: { type: 'string', default: '64' },
      'no-check': { type: 'boolean', default: false },
      batch: { type: 'string', default: String(FILTER_BATCH) },
    },
  });
  const batch = Number(values.batch);
  const check = !values['no-check'];
  const images = Number(values.size);
  const perImage = Number(values['per-image']);
  const bits = Number(values.bits);
  const size = images * perImage;
  const seconds = Number(values.seconds);
  const seed = Number(values.seed);
  const distances = values.distances.split(',').map(Number);
  if (!distances.includes(DEFAULT_NEAR_DUP_DISTANCE)) distances.unshift(DEFAULT_NEAR_DUP_DISTANCE);

  console.log(`${cpus()[0]?.model ?? 'unknown CPU'} x ${availableParallelism()}; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} (other work on the machine slows the wall-clock rate)`);
  console.log(
    `node ${process.version}; ${images.toLocaleString('en-US')} images x ${perImage} stored hashes each = ${size.toLocaleString('en-US')} ` +
      `(${PLANTED_SHARE * 100}% of images planted near copies${bits < 64 ? `; only the top ${bits} bits random` : ''}); default distance ${DEFAULT_NEAR_DUP_DISTANCE}; ` +
      (check ? `with the near-duplicate check (chroma <= ${DEFAULT_NEAR_DUP_CHECK.maxChromaBits}, aligned < ${DEFAULT_NEAR_DUP_CHECK.maxAlignedDistance})` : 'the pHash alone (--no-check)'),
  );
  const corpus = makeCorpus(images, perImage, bits, seed);
  let failed = false;
  for (const d of distances) {
    const index = check ? new PhashIndex(d, DEFAULT_NEAR_DUP_CHECK) : new PhashIndex(d);
    const t0 = performance.now();
    for (let i = 0; i < size; i++) index.add(corpus.hex[i]!, check ? corpus.checks.subarray(i * NEAR_DUP_CHECK_BYTES, (i + 1) * NEAR_DUP_CHECK_BYTES) : undefined);
    const buildMs = performance.now() - t0;

    const queries = makeQueries(corpus, d, bits, 20_000, seed + d);
    // Each way of asking: a warm-up, then whole passes over the queries until `seconds` have passed.
    const hashes = queries.map((q) => q.hash);
    const weaks = queries.map((q) => q.weak);
    const checks = queries.map((q) => q.check);
    const one = time(seconds, queries.length, () => {
      let hits = 0;
      for (const q of queries) if (index.find(q.hash, q.weak, q.check) !== undefined) hits++;
      return hits;
    });
    const many = time(seconds, queries.length, () => {
      let hits = 0;
      for (let from = 0; from < queries.length; from += batch) {
        const to = Math.min(queries.length, from + batch);
        for (const a of index.findMany(hashes.slice(from, to), weaks.slice(from, to), checks.slice(from, to))) if (a !== undefined) hits++;
      }
      return hits;
    });
    // Both ways answer alike on every query.
    const answers = index.findMany(hashes, weaks, checks);
    for (let i = 0; i < queries.length; i++) {
      const a = index.find(hashes[i]!, weaks[i], checks[i]);
      if (a !== answers[i]) throw new Error(`find and findMany disagree on query ${i} (${hashes[i]}, weak ${weaks[i]}): ${a} against ${answers[i]}`);
    }

    // The scan on a slice of the same queries; spot-check that it agrees with the index on them.
    const scanCount = Math.max(20, Math.min(400, Math.round(4e8 / size / 16)));
    const t2 = performance.now();
    let scanHits = 0;
    for (let i = 0; i < scanCount; i++) if (linearFind(corpus, d, queries[i]!, check) >= 0) scanHits++;
    const scanMs = performance.now() - t2;
    for (let i = 0; i < scanCount; i++) {
      const j = linearFind(corpus, d, queries[i]!, check);
      if ((j >= 0 ? corpus.hex[j] : undefined) !== answers[i]) throw new Error(`index and scan disagree on ${queries[i]!.hash} (weak ${queries[i]!.weak})`);
    }

    const scanPerSecond = (scanCount / scanMs) * 1000;
    const ok = many.perSecond >= TARGET;
    if (d === DEFAULT_NEAR_DUP_DISTANCE && !ok) failed = true;
    console.log(
      `maxDistance ${String(d).padStart(2)}: findMany in batches of ${batch.toLocaleString('en-US')} ${many.text} lookups, ` +
        `find one at a time ${one.text} -> ${(many.perSecond / one.perSecond).toFixed(2)}x; ${((100 * many.hits) / many.done).toFixed(1)}% hits; ` +
        `linear scan ${rate(scanCount, scanMs)} (${scanHits}/${scanCount} hits) -> ${(many.perSecond / scanPerSecond).toFixed(0)}x; ` +
        `build ${(buildMs / 1000).toFixed(2)} s; ${(index.bytes / index.size).toFixed(1)} bytes/hash` +
        (d === DEFAULT_NEAR_DUP_DISTANCE ? `  [default, findMany: ${ok ? 'meets' : 'MISSES'} ${TARGET.toLocaleString('en-US')}/s]` : ''),
    );
  }
  process.exitCode = failed ? 1 : 0;
}

main();
