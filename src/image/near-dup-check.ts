// The near-duplicate check: a second look at two pictures whose pHashes the index found close, so
// that the hash distance can be wide enough to reach crop copies (20 bits) without the hash
// collisions that come with it (scissors on a green cloth and swans on black water lie 14 bits apart).
//
// Each picture carries NEAR_DUP_CHECK_BYTES = 592 bytes, computed from the pixels ingest stores
// (checkFromPixels) and kept beside the pHash (the shard column `near_dup_check`):
//   bytes 0-15    the chroma hash: the pHash construction (phash.ts: a 32 x 32 grid, the 8 x 8 lowest
//                 DCT coefficients, one bit each for "above their median") applied to the two colour
//                 difference planes B - Y and R - Y instead of luma; 64 bits each, most significant
//                 bit first. Two photos alike only in light and dark seldom share it; a brightness
//                 change or a crop of a few percent moves it little.
//   bytes 16-591  a THUMB_SIDE x THUMB_SIDE grey thumbnail (Rec. 601 luma, row-major, 0-255), the
//                 whole frame squeezed to a square.
//
// Two pictures pass the check (confirmNearDup) when their chroma hashes differ in at most
// `maxChromaBits` bits AND their thumbnails line up: 1 minus the best normalised cross-correlation
// of one thumbnail, whole, with any window of the other that a crop of up to 10% a side leaves
// (each side 90-100% of the frame in steps of 2.5%, 15 windows per axis; both ways round, since
// either picture may be the crop), sampled on a CHECK_GRID x CHECK_GRID grid, is below
// `maxAlignedDistance`. Correlation ignores gain and offset, so brightness changes pass; a copy lines
// up with its original to within JPEG noise and an overlaid caption, two different photos do not line
// up anywhere. The chroma test is a few instructions and goes first; the aligned one first compares the
// two whole frames (~1 us; enough for a copy that was not cropped) and otherwise searches every window
// pair, 0.3-0.5 ms in this JavaScript (scripts/near-dup-eval.ts times it); only the few candidates that
// pass the chroma test reach it.
//
// The thresholds (DEFAULT_NEAR_DUP_CHECK) and the hash distance they go with are chosen by
// scripts/near-dup-eval.ts on transformed copies of real photos; see DEFAULT_NEAR_DUP_DISTANCE in
// src/filters/phash-index.ts.

import { channelGrid, dct2d, PHASH_BLOCK, PHASH_GRID } from './phash.js';

/** Side of the grey thumbnail. */
export const THUMB_SIDE = 24;
/** Samples per side of the grid the aligned check correlates. */
export const CHECK_GRID = 12;
const CHROMA_BYTES = 16;
/** Bytes of one picture's check data: the chroma hash, then the thumbnail. */
export const NEAR_DUP_CHECK_BYTES = CHROMA_BYTES + THUMB_SIDE * THUMB_SIDE;
/** Point samples per grid cell side for the chroma planes (as the pHash's luma grid) and the thumbnail. */
const CHROMA_SAMPLES = 2;
const THUMB_SAMPLES = 6;

/** What two pictures must meet, beyond their pHash distance, to be near duplicates. */
export interface NearDupCheckThresholds {
  /** Largest Hamming distance between the chroma hashes (0-128). */
  readonly maxChromaBits: number;
  /** The aligned distance must be below this (0-2: 1 minus a correlation). */
  readonly maxAlignedDistance: number;
}

/**
 * The thresholds of the near_duplicate and contaminated rules, chosen by scripts/near-dup-eval.ts
 * with DEFAULT_NEAR_DUP_DISTANCE (src/filters/phash-index.ts): among the operating points that keep
 * recall >= 0.95 with no false match, and no false match within 4 chroma bits and 0.04 of aligned
 * distance of the thresholds either, the one with the highest recall whose chroma stage lets at most
 * 5 false candidates a lookup per million kept pictures through to the aligned stage.
 */
export const DEFAULT_NEAR_DUP_CHECK: NearDupCheckThresholds = Object.freeze({ maxChromaBits: 40, maxAlignedDistance: 0.14 });

/**
 * The check's data for a picture given as interleaved 8-bit pixels (`channels` >= 3; extra channels
 * ignored): NEAR_DUP_CHECK_BYTES bytes. Throws RangeError on a buffer too small for its size.
 */
export function checkFromPixels(pixels: ArrayLike<number>, width: number, height: number, channels: number): Uint8Array {
  if (channels < 3) throw new RangeError(`checkFromPixels: need at least 3 channels, got ${channels}`);
  if (!(width >= 1 && height >= 1) || pixels.length < width * height * channels) {
    throw new RangeError(`checkFromPixels: ${pixels.length} values cannot hold ${width}x${height}x${channels}`);
  }
  const out = new Uint8Array(NEAR_DUP_CHECK_BYTES);
  // B - Y and R - Y, Y = 0.299 R + 0.587 G + 0.114 B.
  const blue = channelGrid(pixels, width, height, channels, PHASH_GRID, CHROMA_SAMPLES, -0.299, -0.587, 0.886);
  const red = channelGrid(pixels, width, height, channels, PHASH_GRID, CHROMA_SAMPLES, 0.701, -0.587, -0.114);
  packSignBits(blue, out, 0);
  packSignBits(red, out, 8);
  const thumb = channelGrid(pixels, width, height, channels, THUMB_SIDE, THUMB_SAMPLES, 0.299, 0.587, 0.114);
  for (let i = 0; i < thumb.length; i++) out[CHROMA_BYTES + i] = Math.max(0, Math.min(255, Math.round(thumb[i]!)));
  return out;
}

/** The signs of the grid's 8 x 8 lowest DCT coefficients against their median, 8 bytes at `at`. */
function packSignBits(g: Float64Array, out: Uint8Array, at: number): void {
  const block = dct2d(g, PHASH_GRID, PHASH_BLOCK);
  for (let i = 0; i < block.length; i++) if (Math.abs(block[i]!) < 1e-6) block[i] = 0;
  const sorted = Float64Array.from(block).sort();
  const median = (sorted[31]! + sorted[32]!) / 2;
  for (let i = 0; i < 64; i++) if (block[i]! > median) out[at + (i >> 3)]! |= 0x80 >> (i & 7);
}

function assertCheck(value: Uint8Array, what: string): void {
  if (!(value instanceof Uint8Array) || value.length !== NEAR_DUP_CHECK_BYTES) {
    const got = value instanceof Uint8Array ? `${value.length} bytes` : typeof value;
    throw new TypeError(`near-duplicate check: ${what} must be ${NEAR_DUP_CHECK_BYTES} bytes, got ${got}`);
  }
}

/** Hamming distance between the chroma hashes of two check values (0-128). */
export function chromaDistance(a: Uint8Array, b: Uint8Array): number {
  assertCheck(a, 'a');
  assertCheck(b, 'b');
  let d = 0;
  for (let i = 0; i < CHROMA_BYTES; i++) d += BYTE_BITS[a[i]! ^ b[i]!]!;
  return d;
}

const BYTE_BITS = Uint8Array.from({ length: 256 }, (_, v) => {
  let n = 0;
  for (let x = v; x !== 0; x &= x - 1) n++;
  return n;
});

/** Windows (offset, side) along one axis, as fractions of the frame: sides 90-100% in steps of 2.5%. */
const CROP_WINDOWS: readonly (readonly [number, number])[] = (() => {
  const out: [number, number][] = [];
  for (let k = 0; k <= 4; k++) {
    const side = 1 - 0.025 * k;
    for (let j = 0; j <= k; j++) out.push([0.025 * j, side]);
  }
  return out;
})();
const WHOLE = CROP_WINDOWS.findIndex(([, side]) => side === 1);

/** Per axis window, where its CHECK_GRID samples fall on the thumbnail: the lower pixel and the weight of the next. */
const AXIS_AT: readonly Int32Array[] = [];
const AXIS_FRAC: readonly Float32Array[] = [];
for (const [offset, side] of CROP_WINDOWS) {
  const at = new Int32Array(CHECK_GRID);
  const frac = new Float32Array(CHECK_GRID);
  for (let g = 0; g < CHECK_GRID; g++) {
    const f = (offset + ((g + 0.5) / CHECK_GRID) * side) * THUMB_SIDE - 0.5;
    at[g] = Math.max(0, Math.min(THUMB_SIDE - 2, Math.floor(f)));
    frac[g] = Math.max(0, Math.min(1, f - at[g]!));
  }
  (AXIS_AT as Int32Array[]).push(at);
  (AXIS_FRAC as Float32Array[]).push(frac);
}

/**
 * rows[(w * THUMB_SIDE + y) * CHECK_GRID + g]: thumbnail row y interpolated at sample g of axis
 * window w. Each 2-D window's samples are then one vertical interpolation of two of these.
 */
function rowSamples(check: Uint8Array): Float32Array {
  const rows = new Float32Array(CROP_WINDOWS.length * THUMB_SIDE * CHECK_GRID);
  for (let w = 0; w < CROP_WINDOWS.length; w++) {
    const at = AXIS_AT[w]!;
    const frac = AXIS_FRAC[w]!;
    for (let y = 0; y < THUMB_SIDE; y++) {
      const base = (w * THUMB_SIDE + y) * CHECK_GRID;
      const row = CHROMA_BYTES + y * THUMB_SIDE;
      for (let g = 0; g < CHECK_GRID; g++) {
        const p = row + at[g]!;
        rows[base + g] = check[p]! + (check[p + 1]! - check[p]!) * frac[g]!;
      }
    }
  }
  return rows;
}

function windowSamples(rows: Float32Array, wx: number, wy: number, out: Float32Array): Float32Array {
  const at = AXIS_AT[wy]!;
  const frac = AXIS_FRAC[wy]!;
  for (let gy = 0; gy < CHECK_GRID; gy++) {
    const top = (wx * THUMB_SIDE + at[gy]!) * CHECK_GRID;
    const f = frac[gy]!;
    for (let gx = 0; gx < CHECK_GRID; gx++) {
      const a = rows[top + gx]!;
      out[gy * CHECK_GRID + gx] = a + (rows[top + CHECK_GRID + gx]! - a) * f;
    }
  }
  return out;
}

/** The whole thumbnail on the check grid, less its mean, scaled to unit length (zero if flat). */
function wholeUnit(rows: Float32Array, scratch: Float32Array): Float32Array {
  const out = Float32Array.from(windowSamples(rows, WHOLE, WHOLE, scratch));
  let mean = 0;
  for (let i = 0; i < out.length; i++) mean += out[i]!;
  mean /= out.length;
  let norm = 0;
  for (let i = 0; i < out.length; i++) {
    out[i] = out[i]! - mean;
    norm += out[i]! * out[i]!;
  }
  norm = Math.sqrt(norm) || 1;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! / norm;
  return out;
}

/** The best correlation of any crop window of `rows` with `unit` (a wholeUnit). */
function bestWindow(rows: Float32Array, unit: Float32Array, scratch: Float32Array): number {
  const n = CHECK_GRID * CHECK_GRID;
  let best = -1;
  for (let wx = 0; wx < CROP_WINDOWS.length; wx++) {
    for (let wy = 0; wy < CROP_WINDOWS.length; wy++) {
      windowSamples(rows, wx, wy, scratch);
      // unit has mean 0, so the dot product needs no centring of the window; its spread does.
      let sum = 0;
      let squares = 0;
      let dot = 0;
      for (let i = 0; i < n; i++) {
        const v = scratch[i]!;
        sum += v;
        squares += v * v;
        dot += v * unit[i]!;
      }
      const spread = Math.sqrt(Math.max(squares - (sum * sum) / n, 0) + 1e-9);
      const r = dot / spread;
      if (r > best) best = r;
    }
  }
  return best;
}

/**
 * 1 minus the best correlation of either picture's thumbnail, whole, with a crop window of the
 * other's (0 = identical up to gain and offset; about 1 for unrelated pictures).
 */
export function alignedDistance(a: Uint8Array, b: Uint8Array): number {
  assertCheck(a, 'a');
  assertCheck(b, 'b');
  const scratch = new Float32Array(CHECK_GRID * CHECK_GRID);
  const rowsA = rowSamples(a);
  const rowsB = rowSamples(b);
  return 1 - Math.max(bestWindow(rowsA, wholeUnit(rowsB, scratch), scratch), bestWindow(rowsB, wholeUnit(rowsA, scratch), scratch));
}

/**
 * Whether alignedDistance(a, b) < threshold, answered first from the two whole thumbnails (one of
 * the window pairs the full search compares, so when it passes the search would too) and only
 * otherwise by the full search: a copy that was not cropped costs ~1 us instead of 300-500. The same
 * decision as alignedDistance(a, b) < threshold, up to floating-point rounding.
 */
export function alignedBelow(a: Uint8Array, b: Uint8Array, threshold: number): boolean {
  assertCheck(a, 'a');
  assertCheck(b, 'b');
  if (1 - correlation(wholeSamples(a, WHOLE_A), wholeSamples(b, WHOLE_B)) < threshold) return true;
  return alignedDistance(a, b) < threshold;
}

// Scratch for alignedBelow's first look (it runs once per confirmed candidate: no allocation).
const WHOLE_A = new Float32Array(CHECK_GRID * CHECK_GRID);
const WHOLE_B = new Float32Array(CHECK_GRID * CHECK_GRID);
const WHOLE_ROWS = new Float32Array(2 * CHECK_GRID);

/** The whole thumbnail on the check grid, as windowSamples(rowSamples(check), WHOLE, WHOLE) gives it, into `out`. */
function wholeSamples(check: Uint8Array, out: Float32Array): Float32Array {
  const at = AXIS_AT[WHOLE]!;
  const frac = AXIS_FRAC[WHOLE]!;
  const rows = WHOLE_ROWS;
  for (let gy = 0; gy < CHECK_GRID; gy++) {
    // The two thumbnail rows this grid row falls between, each interpolated along x as rowSamples does.
    for (let k = 0; k < 2; k++) {
      const row = CHROMA_BYTES + (at[gy]! + k) * THUMB_SIDE;
      for (let gx = 0; gx < CHECK_GRID; gx++) {
        const p = row + at[gx]!;
        rows[k * CHECK_GRID + gx] = check[p]! + (check[p + 1]! - check[p]!) * frac[gx]!;
      }
    }
    const f = frac[gy]!;
    for (let gx = 0; gx < CHECK_GRID; gx++) {
      const top = rows[gx]!;
      out[gy * CHECK_GRID + gx] = top + (rows[CHECK_GRID + gx]! - top) * f;
    }
  }
  return out;
}

/** Pearson correlation of two equal-length sample grids (0 when either is flat). */
function correlation(x: Float32Array, y: Float32Array): number {
  const n = x.length;
  let sx = 0;
  let sy = 0;
  for (let i = 0; i < n; i++) {
    sx += x[i]!;
    sy += y[i]!;
  }
  const mx = sx / n;
  const my = sy / n;
  let xy = 0;
  let xx = 0;
  let yy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    xy += dx * dy;
    xx += dx * dx;
    yy += dy * dy;
  }
  return xx > 0 && yy > 0 ? xy / Math.sqrt(xx * yy) : 0;
}

/** Whether two pictures whose pHashes are close pass the check: chroma first, then aligned. */
export function confirmNearDup(a: Uint8Array, b: Uint8Array, t: NearDupCheckThresholds): boolean {
  return chromaDistance(a, b) <= t.maxChromaBits && alignedBelow(a, b, t.maxAlignedDistance);
}
