// Seeded pseudo-random numbers for fixtures and benchmarks: the same seed gives the same sequence on
// every platform, so generated corpora are byte-identical from run to run.

import { mulberry32 } from '../core/random.js';

/** A small deterministic PRNG (mulberry32) with the helpers the generators need. */
export class Rng {
  /** Uniform in [0, 1). */
  readonly next: () => number;

  constructor(seed: number) {
    this.next = mulberry32(seed);
  }

  /** Uniform in [min, max). */
  float(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** Uniform integer in [min, max], both ends included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('Rng.pick: empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }

  /** Fisher-Yates shuffle of a copy. */
  shuffle<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }

  /** Fills a buffer with uniform bytes (4 per draw). */
  fillBytes(buf: Uint8Array): Uint8Array {
    let i = 0;
    for (; i + 4 <= buf.length; i += 4) {
      const v = Math.floor(this.next() * 4294967296);
      buf[i] = v & 255;
      buf[i + 1] = (v >>> 8) & 255;
      buf[i + 2] = (v >>> 16) & 255;
      buf[i + 3] = v >>> 24;
    }
    for (; i < buf.length; i++) buf[i] = Math.floor(this.next() * 256);
    return buf;
  }
}

/** Mixes a seed and a sub-index into a new 32-bit seed, so item i of a corpus can be made on its own. */
export function deriveSeed(seed: number, index: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (index + 0x85ebca6b), 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x27d4eb2f) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}
