// The 64-bit DCT perceptual hash, as pure functions of pixel values so they can be tested without
// sharp. process.ts feeds them raw pixels; the dedupe stage compares hashes with hamming().
//
// Definition (the steps of Python's `imagehash.phash` but for the resampling in step 1):
//   1. grey  = a 32x32 grid of Rec. 601 luma (0.299 R + 0.587 G + 0.114 B), each cell the mean of
//              k x k points evenly spread over its area (lumaGrid). processImage samples the picture
//              it stores with k = 2; in `none` mode, a 32x32 lanczos3 resample of the decoded picture.
//   2. C     = 2-D DCT-II of the 32x32 grey grid, unnormalised (see dct2d), top-left 8x8 block only
//              (row index = vertical frequency u, column index = horizontal frequency v).
//   3. m     = median of all 64 coefficients of that block, DC included (mean of the 32nd and 33rd
//              smallest), as imagehash does. Coefficients within 1e-6 of zero count as zero, so flat
//              regions hash stably instead of by floating-point noise.
//   4. bit i = C[i >> 3][i & 7] > m, for i = 0..63 in row-major order; bit 0 is the most significant.
//   5. hash  = the 64 bits as 16 lower-case hex digits.
//
// The weak-bit mask (phashWithWeakBits) says which bits a transform is most likely to turn over:
// in each 16-bit chunk of the hash (bits 0-15, 16-31, 32-47, 48-63), the PHASH_WEAK_BITS bits whose
// coefficient lies closest to m (smallest |C - m|; ties to the lower bit), as 16 hex digits in the
// same bit order. The near-duplicate index probes those bits of a query (src/filters/phash-index.ts).

/** Side of the grey grid the hash is computed from. */
export const PHASH_GRID = 32;
/** Side of the low-frequency block kept from the DCT (8 x 8 = 64 bits). */
export const PHASH_BLOCK = 8;

const PHASH_PATTERN = /^[0-9a-f]{16}$/;

const cosTables = new Map<string, Float64Array>();

/** table[k * n + x] = cos(pi * k * (2x + 1) / 2n), for k < keep. */
function cosTable(n: number, keep: number): Float64Array {
  const id = `${n}:${keep}`;
  let table = cosTables.get(id);
  if (table === undefined) {
    table = new Float64Array(keep * n);
    for (let k = 0; k < keep; k++) {
      for (let x = 0; x < n; x++) table[k * n + x] = Math.cos((Math.PI * k * (2 * x + 1)) / (2 * n));
    }
    cosTables.set(id, table);
  }
  return table;
}

/**
 * Unnormalised 2-D DCT-II of an `n` x `n` row-major grid, returning only the top-left `keep` x `keep`
 * block, row-major:
 *
 *   X[u][v] = sum over y, x of f[y][x] * cos(pi u (2y + 1) / 2n) * cos(pi v (2x + 1) / 2n)
 *
 * Computed separably (rows, then columns) in O(n^2 * keep).
 */
export function dct2d(pixels: ArrayLike<number>, n: number, keep: number = n): Float64Array {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`dct2d: n must be a positive integer, got ${n}`);
  if (!Number.isInteger(keep) || keep < 1 || keep > n) {
    throw new RangeError(`dct2d: keep must be an integer from 1 to ${n}, got ${keep}`);
  }
  if (pixels.length !== n * n) throw new RangeError(`dct2d: expected ${n * n} values, got ${pixels.length}`);
  const table = cosTable(n, keep);
  // rows[y * keep + v] = sum over x of f[y][x] cos(v, x)
  const rows = new Float64Array(n * keep);
  for (let y = 0; y < n; y++) {
    for (let v = 0; v < keep; v++) {
      let sum = 0;
      for (let x = 0; x < n; x++) sum += pixels[y * n + x]! * table[v * n + x]!;
      rows[y * keep + v] = sum;
    }
  }
  const out = new Float64Array(keep * keep);
  for (let u = 0; u < keep; u++) {
    for (let v = 0; v < keep; v++) {
      let sum = 0;
      for (let y = 0; y < n; y++) sum += rows[y * keep + v]! * table[u * n + y]!;
      out[u * keep + v] = sum;
    }
  }
  return out;
}

/**
 * The 32x32 grey grid a hash is computed from: Rec. 601 luma of interleaved 8-bit pixels
 * (`channels` >= 3, extra channels ignored), each cell the mean of `samplesPerCell` x
 * `samplesPerCell` points spread evenly over its area (nearest pixel). Point sampling instead of a
 * full area average keeps the cost fixed (1024 k^2 samples) whatever the picture's size; the
 * pictures it gets are already resampled, so aliasing barely reaches the low frequencies the hash
 * keeps (on 200 photo-like pictures, k = 2 and k = 8 hashes differ by 0 bits at the median, 4 at most).
 */
export function lumaGrid(
  pixels: ArrayLike<number>,
  width: number,
  height: number,
  channels: number,
  samplesPerCell: number = 2,
): Float64Array {
  if (!Number.isInteger(samplesPerCell) || samplesPerCell < 1) {
    throw new RangeError(`lumaGrid: samplesPerCell must be a positive integer, got ${samplesPerCell}`);
  }
  if (channels < 3) throw new RangeError(`lumaGrid: need at least 3 channels, got ${channels}`);
  if (pixels.length < width * height * channels || width < 1 || height < 1) {
    throw new RangeError(`lumaGrid: ${pixels.length} values cannot hold ${width}x${height}x${channels}`);
  }
  return channelGrid(pixels, width, height, channels, PHASH_GRID, samplesPerCell, 0.299, 0.587, 0.114);
}

/**
 * An n x n row-major grid of the weighted channel sum wr R + wg G + wb B of interleaved 8-bit pixels
 * (`channels` >= 3), each cell the mean of k x k points spread evenly over its area (nearest pixel):
 * lumaGrid's sampling for any grid side and weights. Arguments are not checked (lumaGrid and
 * near-dup-check.ts check them).
 */
export function channelGrid(
  pixels: ArrayLike<number>,
  width: number,
  height: number,
  channels: number,
  n: number,
  k: number,
  wr: number,
  wg: number,
  wb: number,
): Float64Array {
  const xs = samplePositions(width, n, k);
  const ys = samplePositions(height, n, k);
  const grid = new Float64Array(n * n);
  for (let cy = 0; cy < n; cy++) {
    for (let sy = 0; sy < k; sy++) {
      const rowStart = ys[cy * k + sy]! * width;
      for (let cx = 0; cx < n; cx++) {
        let sum = 0;
        for (let sx = 0; sx < k; sx++) {
          const p = (rowStart + xs[cx * k + sx]!) * channels;
          sum += wr * pixels[p]! + wg * pixels[p + 1]! + wb * pixels[p + 2]!;
        }
        grid[cy * n + cx] += sum;
      }
    }
  }
  const scale = 1 / (k * k);
  for (let i = 0; i < grid.length; i++) grid[i] *= scale;
  return grid;
}

/** Pixel index of sample s of cell c, at (c + (s + 0.5) / k) / n of the side. */
function samplePositions(side: number, n: number, k: number): Int32Array {
  const positions = new Int32Array(n * k);
  for (let i = 0; i < positions.length; i++) {
    positions[i] = Math.min(side - 1, Math.floor(((i + 0.5) * side) / (n * k)));
  }
  return positions;
}

/**
 * Perceptual hash of a `PHASH_GRID` x `PHASH_GRID` row-major grid of grey values (any scale), as 16
 * lower-case hex digits. See the definition at the top of this file.
 */
export function phashFromPixels(grey: ArrayLike<number>): string {
  return phashWithWeakBits(grey).phash;
}

/** Bits per 16-bit chunk marked in the weak-bit mask (see the top of this file). */
export const PHASH_WEAK_BITS = 5;

/**
 * The perceptual hash of a grey grid (as phashFromPixels) and its weak-bit mask: in each 16-bit
 * chunk, the `weakBits` (default PHASH_WEAK_BITS) bits whose coefficient lies closest to the median.
 * Both 16 hex digits.
 */
export function phashWithWeakBits(grey: ArrayLike<number>, weakBits: number = PHASH_WEAK_BITS): { phash: string; weak: string } {
  if (!Number.isInteger(weakBits) || weakBits < 0 || weakBits > 16) {
    throw new RangeError(`phashWithWeakBits: weakBits must be an integer from 0 to 16, got ${weakBits}`);
  }
  const block = dct2d(grey, PHASH_GRID, PHASH_BLOCK);
  for (let i = 0; i < block.length; i++) if (Math.abs(block[i]!) < 1e-6) block[i] = 0;
  const sorted = Float64Array.from(block).sort();
  const mid = sorted.length >> 1;
  const median = (sorted[mid - 1]! + sorted[mid]!) / 2;
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < 32; i++) {
    hi = (hi << 1) | (block[i]! > median ? 1 : 0);
    lo = (lo << 1) | (block[i + 32]! > median ? 1 : 0);
  }
  // Per chunk, pick the PHASH_WEAK_BITS smallest margins by repeated minimum (16 candidates each).
  let weakHi = 0;
  let weakLo = 0;
  for (let c = 0; c < 4; c++) {
    let taken = 0;
    for (let k = 0; k < weakBits; k++) {
      let best = -1;
      let bestMargin = Infinity;
      for (let j = 0; j < 16; j++) {
        if (taken & (1 << j)) continue;
        const margin = Math.abs(block[c * 16 + j]! - median);
        if (margin < bestMargin) {
          bestMargin = margin;
          best = j;
        }
      }
      taken |= 1 << best;
    }
    // Bit j of the chunk is hash bit c * 16 + j, counted from the most significant.
    let chunkMask = 0;
    for (let j = 0; j < 16; j++) if (taken & (1 << j)) chunkMask |= 1 << (15 - j);
    if (c < 2) weakHi |= chunkMask << (c === 0 ? 16 : 0);
    else weakLo |= chunkMask << (c === 2 ? 16 : 0);
  }
  return { phash: hex32(hi) + hex32(lo), weak: hex32(weakHi) + hex32(weakLo) };
}

function hex32(word: number): string {
  return (word >>> 0).toString(16).padStart(8, '0');
}

/** Number of differing bits between two 16-hex-digit hashes (0 = same, 64 = all bits differ). */
export function hamming(a: string, b: string): number {
  for (const [name, value] of [['a', a], ['b', b]] as const) {
    if (typeof value !== 'string' || !PHASH_PATTERN.test(value)) {
      throw new TypeError(`hamming: \`${name}\` must be 16 lower-case hex digits, got ${JSON.stringify(value)}`);
    }
  }
  return (
    popcount32(parseInt(a.slice(0, 8), 16) ^ parseInt(b.slice(0, 8), 16)) +
    popcount32(parseInt(a.slice(8), 16) ^ parseInt(b.slice(8), 16))
  );
}

function popcount32(word: number): number {
  let v = word >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
