// A reference 64-bit DCT perceptual hash, used by the demo corpus generator to keep its distinct scenes
// far apart and its planted near duplicates close: flat shapes on plain backgrounds are low-energy
// images whose hashes can collide by chance, and a corpus with accidental near duplicates would make
// the filter's expected outcomes wrong. Method: grey, 32x32, 2-D DCT-II, the 8x8 lowest frequencies,
// each bit = coefficient above the median of the 63 AC coefficients.

import sharp from 'sharp';

const N = 32;
const K = 8;
const COS: Float64Array[] = Array.from({ length: K }, (_, u) => {
  const row = new Float64Array(N);
  for (let x = 0; x < N; x++) row[x] = Math.cos(((2 * x + 1) * u * Math.PI) / (2 * N));
  return row;
});

/** The hash of 32x32 grey pixels (row-major), as a bigint with bit (u*8+v) for frequency (u, v). */
export function dctHash(pixels: Uint8Array): bigint {
  // Separable DCT: rows first (v), then columns (u).
  const rows = new Float64Array(N * K);
  for (let y = 0; y < N; y++) {
    for (let v = 0; v < K; v++) {
      let s = 0;
      const c = COS[v]!;
      for (let x = 0; x < N; x++) s += pixels[y * N + x]! * c[x]!;
      rows[y * K + v] = s;
    }
  }
  const coef = new Float64Array(K * K);
  for (let u = 0; u < K; u++) {
    const c = COS[u]!;
    for (let v = 0; v < K; v++) {
      let s = 0;
      for (let y = 0; y < N; y++) s += rows[y * K + v]! * c[y]!;
      coef[u * K + v] = s;
    }
  }
  const ac = Array.from(coef.subarray(1)).sort((a, b) => a - b);
  const median = (ac[31]! + ac[32]!) / 2;
  let hash = 0n;
  for (let i = 0; i < K * K; i++) if (coef[i]! > median) hash |= 1n << BigInt(i);
  return hash;
}

export async function imageHash(input: Buffer): Promise<bigint> {
  const px = await sharp(input).greyscale().resize(N, N, { fit: 'fill' }).raw().toBuffer();
  return dctHash(px);
}

export function hammingDistance(a: bigint, b: bigint): number {
  let x = a ^ b;
  let n = 0;
  while (x !== 0n) {
    x &= x - 1n;
    n++;
  }
  return n;
}
