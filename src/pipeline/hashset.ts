// A compact set of 64-bit fingerprints for the exact-dedupe indexes. Open addressing with linear
// probing over one Uint32Array (two words per slot), grown by doubling at 50% load: 8 bytes a slot,
// so 16 to 32 bytes per stored record, with no per-entry JS objects. A 64-bit fingerprint collides
// with probability about n^2 / 2^65 (3e-4 at 100 million records), which we accept for dedupe.

import { hash } from 'node:crypto';

const EMPTY_HI = 0;
const EMPTY_LO = 0;

export class HashSet64 {
  #table: Uint32Array;
  #mask: number;
  #size = 0;

  constructor(initialCapacity = 1 << 16) {
    let cap = 1;
    while (cap < initialCapacity) cap <<= 1;
    this.#table = new Uint32Array(cap * 2);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** Bytes held by the table (the whole memory cost of the set). */
  get bytes(): number {
    return this.#table.byteLength;
  }

  /** Adds the fingerprint; returns true if it was new. */
  add(hi: number, lo: number): boolean {
    // (0,0) marks an empty slot, so it is stored as (0,1): one more collision in 2^64.
    if (hi === EMPTY_HI && lo === EMPTY_LO) lo = 1;
    if ((this.#size + 1) * 2 > this.#mask + 1) this.#grow();
    return this.#insert(hi >>> 0, lo >>> 0);
  }

  has(hi: number, lo: number): boolean {
    if (hi === EMPTY_HI && lo === EMPTY_LO) lo = 1;
    hi >>>= 0;
    lo >>>= 0;
    const t = this.#table;
    let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.#mask;
    while (true) {
      const h = t[i * 2]!;
      const l = t[i * 2 + 1]!;
      if (h === EMPTY_HI && l === EMPTY_LO) return false;
      if (h === hi && l === lo) return true;
      i = (i + 1) & this.#mask;
    }
  }

  #insert(hi: number, lo: number): boolean {
    const t = this.#table;
    let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & this.#mask;
    while (true) {
      const h = t[i * 2]!;
      const l = t[i * 2 + 1]!;
      if (h === EMPTY_HI && l === EMPTY_LO) {
        t[i * 2] = hi;
        t[i * 2 + 1] = lo;
        this.#size++;
        return true;
      }
      if (h === hi && l === lo) return false;
      i = (i + 1) & this.#mask;
    }
  }

  #grow(): void {
    const old = this.#table;
    this.#table = new Uint32Array(old.length * 2);
    this.#mask = this.#table.length / 2 - 1;
    this.#size = 0;
    for (let i = 0; i < old.length; i += 2) {
      const h = old[i]!;
      const l = old[i + 1]!;
      if (h !== EMPTY_HI || l !== EMPTY_LO) this.#insert(h, l);
    }
  }
}

/** 64-bit fingerprint (two uint32 words) of a string, from sha1. */
export function fingerprint(text: string): [number, number] {
  // One-shot hash (Node >= 20.12): no Hash object per call.
  const d = hash('sha1', text, 'buffer');
  return [d.readUInt32LE(0), d.readUInt32LE(4)];
}

/** Fingerprint of an already-hex digest (e.g. a sha256): its first 64 bits. */
export function fingerprintHex(hex: string): [number, number] {
  return [Number.parseInt(hex.slice(0, 8), 16) >>> 0, Number.parseInt(hex.slice(8, 16), 16) >>> 0];
}
