// PhashIndex throughput: stores 1,000,000 random 64-bit hashes (with planted near neighbours), then
// times find() on a mix of hits and misses, against a linear scan over the same hashes in typed
// arrays measured in the same run (on fewer queries: it is slow). Prints lookups/s, the speed-up,
// build time and bytes per stored hash, for the default distance and any others asked for.
//
// Script: npx tsx bench/phash-index.ts [--size N] [--distances 4,8,10,16] [--seconds S] [--seed N]
//                                      [--per-image K] [--bits B] [--weak-probes U]
// --per-image K stores K hashes per image (its own and K - 1 variants 4-12 bits away, as a rule that
// stores crop variants would; see scripts/near-dup-eval.ts), so `size` images make K x size stored
// hashes, and a lookup is still one image's check. --bits B keeps only the top B bits of every hash
// random (the rest 0), as a key of B bits stored in the 64-bit index would be.
// --weak-probes U measures instead the probing that scripts/near-dup-eval.ts scores as "weak-probes
// U": in each 16-bit chunk, every combination of the query's U least reliable bits (4 x 2^U probes),
// each stored hash found there accepted within the distance. It is a prototype kept here, not the
// rule's index: a table per chunk in CSR form holding the full hashes (32 bytes a hash), scanned by
// the WebAssembly kernel bench/weak-probe.wat (compiled at start with wabt); queries get U random
// weak bits a chunk, and every lookup checks all its candidates (no stop at the first match), as a
// query with no near duplicate does. Spot-checked against a scan that applies the same definition.
// Exits 1 when the default distance is slower than TARGET lookups/s.

import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import wabt from 'wabt';
import { Rng } from '../src/demo/random.js';
import { DEFAULT_NEAR_DUP_DISTANCE, PhashIndex } from '../src/filters/phash-index.js';

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
    if (n > 0 && rng.chance(PLANTED_SHARE)) {
      const j = rng.int(0, n - 1);
      [h, l] = flip(rng, hi[j]!, lo[j]!, rng.int(0, 8));
    }
    const base = n;
    put(h, l);
    for (let v = 1; v < perImage; v++) put(...flip(rng, hi[base]!, lo[base]!, rng.int(4, 12)));
  }
  return { hi, lo, hex };
}

/** Half near copies of stored hashes (0..d bits flipped: hits), half fresh random hashes (mostly misses). */
function makeQueries(corpus: Corpus, d: number, bits: number, count: number, seed: number): string[] {
  const rng = new Rng(seed);
  const [hiMask, loMask] = keepMasks(bits);
  const out: string[] = [];
  for (let q = 0; q < count; q++) {
    let [h, l] = [Math.floor(rng.next() * 2 ** 32), Math.floor(rng.next() * 2 ** 32)];
    if (q % 2 === 0) {
      const j = rng.int(0, corpus.hi.length - 1);
      [h, l] = flip(rng, corpus.hi[j]!, corpus.lo[j]!, rng.int(0, d));
    }
    out.push(hex32(h & hiMask) + hex32(l & loMask));
  }
  return out;
}

/** The same question answered by scanning every stored hash in add order. */
function linearFind(corpus: Corpus, d: number, query: string): number {
  const qh = parseInt(query.slice(0, 8), 16) >>> 0;
  const ql = parseInt(query.slice(8), 16) >>> 0;
  const { hi, lo } = corpus;
  for (let i = 0; i < hi.length; i++) {
    if (popcount32(hi[i]! ^ qh) + popcount32(lo[i]! ^ ql) <= d) return i;
  }
  return -1;
}

/** Chunk c (0 = top 16 bits) of a hash. */
function chunkOf(hi: number, lo: number, c: number): number {
  return c === 0 ? hi >>> 16 : c === 1 ? hi & 0xffff : c === 2 ? lo >>> 16 : lo & 0xffff;
}

/** Bytes of one chunk's bucket offsets in the kernel's memory (u32[65537]), as bench/weak-probe.wat assumes. */
const OFFSETS_BYTES = 65537 * 4;

/**
 * The --weak-probes prototype: per chunk, bucket offsets and the full hashes sorted by chunk value,
 * in the memory of the WebAssembly kernel bench/weak-probe.wat that scans the probed buckets.
 */
class WeakProbeTable {
  readonly #weak: number;
  readonly #count: (...args: number[]) => number;
  readonly #probes: Uint32Array;
  readonly #probesAt: number;
  readonly #entriesAt: number;
  readonly #stride: number;
  readonly bytes: number;

  private constructor(weak: number, memory: WebAssembly.Memory, count: (...args: number[]) => number, corpus: Corpus) {
    this.#weak = weak;
    this.#count = count;
    const n = corpus.hi.length;
    // Offsets of the 4 chunks, then each chunk's entries (with a spare i64: a bucket's "last plus
    // one" entry is touched), then the probe list.
    this.#stride = 8 * (n + 1);
    this.#entriesAt = 4 * OFFSETS_BYTES + 4; // keeps the entries 8-byte aligned
    this.#probesAt = this.#entriesAt + 4 * this.#stride;
    const total = this.#probesAt + 4 * (4 << weak);
    memory.grow(Math.ceil((total - memory.buffer.byteLength) / 65536));
    const words = new Uint32Array(memory.buffer);
    for (let c = 0; c < 4; c++) {
      const offsets = new Uint32Array(memory.buffer, c * OFFSETS_BYTES, 65537);
      for (let i = 0; i < n; i++) offsets[chunkOf(corpus.hi[i]!, corpus.lo[i]!, c) + 1]++;
      for (let k = 0; k < 65536; k++) offsets[k + 1]! += offsets[k]!;
      const next = offsets.slice(0, 65536);
      const base = (this.#entriesAt + c * this.#stride) / 4;
      for (let i = 0; i < n; i++) {
        const at = next[chunkOf(corpus.hi[i]!, corpus.lo[i]!, c)]!++;
        // Little-endian i64 (hi << 32 | lo): the low word first.
        words[base + 2 * at] = corpus.lo[i]!;
        words[base + 2 * at + 1] = corpus.hi[i]!;
      }
    }
    this.#probes = new Uint32Array(memory.buffer, this.#probesAt, 4 << weak);
    this.bytes = total;
  }

  static async build(corpus: Corpus, weak: number): Promise<WeakProbeTable> {
    const wat = await readFile(new URL('./weak-probe.wat', import.meta.url), 'utf8');
    const module = (await wabt()).parseWat('weak-probe.wat', wat);
    const instance = new WebAssembly.Instance(new WebAssembly.Module(Uint8Array.from(module.toBinary({}).buffer)));
    module.destroy();
    const { memory, count } = instance.exports as { memory: WebAssembly.Memory; count: (...args: number[]) => number };
    return new WeakProbeTable(weak, memory, count, corpus);
  }

  /**
   * Stored hashes within `d` of (hi, lo) found by the probes; `bits[at + c * weak + j]` is the
   * single-bit 16-bit mask of the query's j-th weak bit in chunk c. Checks every candidate; a hash
   * reached through two chunks counts twice.
   */
  count(hi: number, lo: number, bits: Uint16Array, at: number, d: number): number {
    const weak = this.#weak;
    const probes = this.#probes;
    let n = 0;
    for (let c = 0; c < 4; c++) {
      let v = chunkOf(hi, lo, c);
      for (let s = 0; s < 1 << weak; s++) {
        // Gray-code order: each probe flips one weak bit of the previous one.
        if (s > 0) v ^= bits[at + c * weak + (31 - Math.clz32(s & -s))]!;
        probes[n++] = (c << 16) | v;
      }
    }
    return this.#count(this.#probesAt, n, hi, lo, d, 0, this.#entriesAt, this.#stride);
  }
}

/**
 * The same definition by a scan: hashes within d that equal the query in a chunk outside its weak
 * bits, counted once per such chunk as the table finds them (once through each chunk's probes).
 */
function weakScanCount(corpus: Corpus, hi: number, lo: number, bits: Uint16Array, at: number, weak: number, d: number): number {
  const masks = [0, 1, 2, 3].map((c) => {
    let m = 0;
    for (let j = 0; j < weak; j++) m |= bits[at + c * weak + j]!;
    return m;
  });
  let found = 0;
  for (let i = 0; i < corpus.hi.length; i++) {
    let probed = 0;
    for (let c = 0; c < 4; c++) {
      if (((chunkOf(corpus.hi[i]!, corpus.lo[i]!, c) ^ chunkOf(hi, lo, c)) & ~masks[c]! & 0xffff) === 0) probed++;
    }
    if (probed && popcount32(corpus.hi[i]! ^ hi) + popcount32(corpus.lo[i]! ^ lo) <= d) found += probed;
  }
  return found;
}

async function benchWeakProbes(corpus: Corpus, weak: number, distances: readonly number[], seconds: number, seed: number): Promise<void> {
  const t0 = performance.now();
  const table = await WeakProbeTable.build(corpus, weak);
  const buildMs = performance.now() - t0;
  for (const d of distances) {
    const rng = new Rng(seed + d);
    const count = 20_000;
    const queries = makeQueries(corpus, d, 64, count, seed + d).map((q) => [parseInt(q.slice(0, 8), 16) >>> 0, parseInt(q.slice(8), 16) >>> 0] as const);
    const bits = new Uint16Array(count * 4 * weak);
    for (let q = 0; q < count; q++) {
      for (let c = 0; c < 4; c++) {
        let used = 0;
        for (let j = 0; j < weak; j++) {
          let b: number;
          do b = rng.int(0, 15);
          while (used & (1 << b));
          used |= 1 << b;
          bits[(q * 4 + c) * weak + j] = 1 << b;
        }
      }
    }
    const at = (q: number): number => q * 4 * weak;
    for (let q = 0; q < 2000; q++) table.count(queries[q]![0], queries[q]![1], bits, at(q), d);
    let done = 0;
    let matched = 0;
    const cpu1 = process.cpuUsage();
    const t1 = performance.now();
    while (performance.now() - t1 < seconds * 1000) {
      for (let q = 0; q < count; q++) if (table.count(queries[q]![0], queries[q]![1], bits, at(q), d) > 0) matched++;
      done += count;
    }
    const ms = performance.now() - t1;
    const cpu = process.cpuUsage(cpu1);
    for (let q = 0; q < 10; q++) {
      const want = weakScanCount(corpus, queries[q]![0], queries[q]![1], bits, at(q), weak, d);
      const got = table.count(queries[q]![0], queries[q]![1], bits, at(q), d);
      if (want !== got) throw new Error(`weak probes: table found ${got} and scan ${want} for query ${q}`);
    }
    const perSecond = (done / ms) * 1000;
    console.log(
      `weak-probes ${weak} (${4 << weak} probes), maxDistance ${String(d).padStart(2)}: ${rate(done, ms).padStart(11)} lookups ` +
        `(${rate(done, (cpu.user + cpu.system) / 1000)} per CPU-second; ${((100 * matched) / done).toFixed(1)}% with a match), ` +
        `build ${(buildMs / 1000).toFixed(2)} s; ${(table.bytes / corpus.hi.length).toFixed(1)} bytes/hash; ` +
        `${perSecond >= TARGET ? 'meets' : 'MISSES'} ${TARGET.toLocaleString('en-US')}/s`,
    );
  }
}

function rate(count: number, ms: number): string {
  return `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '1000000' },
      distances: { type: 'string', default: String(DEFAULT_NEAR_DUP_DISTANCE) },
      seconds: { type: 'string', default: '2' },
      seed: { type: 'string', default: '7' },
      'per-image': { type: 'string', default: '1' },
      bits: { type: 'string', default: '64' },
      'weak-probes': { type: 'string' },
    },
  });
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
      `(${PLANTED_SHARE * 100}% of images planted near copies${bits < 64 ? `; only the top ${bits} bits random` : ''}); default distance ${DEFAULT_NEAR_DUP_DISTANCE}`,
  );
  const corpus = makeCorpus(images, perImage, bits, seed);
  if (values['weak-probes'] !== undefined) {
    const weak = Number(values['weak-probes']);
    if (!Number.isInteger(weak) || weak < 0 || weak > 8) throw new RangeError(`--weak-probes must be an integer from 0 to 8, got ${values['weak-probes']}`);
    await benchWeakProbes(corpus, weak, values.distances.split(',').map(Number), seconds, seed);
    return;
  }
  let failed = false;
  for (const d of distances) {
    const index = new PhashIndex(d);
    const t0 = performance.now();
    for (let i = 0; i < size; i++) index.add(corpus.hex[i]!);
    const buildMs = performance.now() - t0;

    const queries = makeQueries(corpus, d, bits, 20_000, seed + d);
    // Warm up, then run whole passes over the queries until `seconds` have passed.
    for (let i = 0; i < 2000; i++) index.find(queries[i]!);
    let done = 0;
    let hits = 0;
    const cpu1 = process.cpuUsage();
    const t1 = performance.now();
    while (performance.now() - t1 < seconds * 1000) {
      for (const q of queries) if (index.find(q) !== undefined) hits++;
      done += queries.length;
    }
    const findMs = performance.now() - t1;
    const cpu = process.cpuUsage(cpu1);
    const findCpuMs = (cpu.user + cpu.system) / 1000;

    // The scan on a slice of the same queries; spot-check that both agree on them.
    const scanCount = Math.max(20, Math.min(400, Math.round(4e8 / size / 16)));
    const t2 = performance.now();
    let scanHits = 0;
    for (let i = 0; i < scanCount; i++) if (linearFind(corpus, d, queries[i]!) >= 0) scanHits++;
    const scanMs = performance.now() - t2;
    for (let i = 0; i < scanCount; i++) {
      const j = linearFind(corpus, d, queries[i]!);
      if ((j >= 0 ? corpus.hex[j] : undefined) !== index.find(queries[i]!)) throw new Error(`index and scan disagree on ${queries[i]}`);
    }

    const perSecond = (done / findMs) * 1000;
    const scanPerSecond = (scanCount / scanMs) * 1000;
    const ok = perSecond >= TARGET;
    if (d === DEFAULT_NEAR_DUP_DISTANCE && !ok) failed = true;
    console.log(
      `maxDistance ${String(d).padStart(2)}: ${rate(done, findMs).padStart(11)} lookups (${rate(done, findCpuMs)} per CPU-second; ${((100 * hits) / done).toFixed(1)}% hits), ` +
        `linear scan ${rate(scanCount, scanMs)} (${scanHits}/${scanCount} hits) -> ${(perSecond / scanPerSecond).toFixed(0)}x; ` +
        `build ${(buildMs / 1000).toFixed(2)} s; ${(index.bytes / index.size).toFixed(1)} bytes/hash` +
        (d === DEFAULT_NEAR_DUP_DISTANCE ? `  [default: ${ok ? 'meets' : 'MISSES'} ${TARGET.toLocaleString('en-US')}/s]` : ''),
    );
  }
  process.exitCode = failed ? 1 : 0;
}

await main();
