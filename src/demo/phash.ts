// The demo generator keeps its distinct scenes far apart and its planted near duplicates close under
// THE hash the filter will see: the project's pHash of the picture as the demo's ingest stores it
// (keep-ratio 224, see DEMO_IMAGE_OPTIONS). A separate reference hash let one pair of "distinct"
// scenes land within the filter's distance once ingest had resized them.

import { processImage, resolveImageOptions, type ImageOptions } from '../image/process.js';

/** Image options of the demo's ingest; the corpus is planned for exactly these. */
export const DEMO_IMAGE_OPTIONS: ImageOptions = resolveImageOptions({ resizeMode: 'keep-ratio', size: 224 });

/** The pHash ingest would store for these bytes, as a bigint (0n for bytes it would reject). */
export async function imageHash(input: Buffer): Promise<bigint> {
  return (await imageHashes(input)).hash;
}

/** The pHash and its weak-bit mask ingest would store, as bigints (0n, 0n for bytes it would reject). */
export async function imageHashes(input: Buffer): Promise<{ hash: bigint; weak: bigint }> {
  const r = await processImage(input, DEMO_IMAGE_OPTIONS);
  return r.ok ? { hash: BigInt(`0x${r.image.phash}`), weak: BigInt(`0x${r.image.phashWeak ?? '0'}`) } : { hash: 0n, weak: 0n };
}

/**
 * Whether the near_duplicate rule (src/filters/phash-index.ts) would match these two pictures, either
 * one kept and the other looked up: within `distance` bits and, in some 16-bit chunk, different only
 * in the looked-up one's weak bits.
 */
export function matchUnderRule(a: { hash: bigint; weak: bigint }, b: { hash: bigint; weak: bigint }, distance: number): boolean {
  if (hammingDistance(a.hash, b.hash) > distance) return false;
  const diff = a.hash ^ b.hash;
  for (const weak of [a.weak, b.weak]) {
    const rest = diff & ~weak;
    for (let c = 0n; c < 4n; c++) if (((rest >> (16n * c)) & 0xffffn) === 0n) return true;
  }
  return false;
}

export function hammingDistance(a: bigint, b: bigint): number {
  let x = a ^ b;
  let n = 0;
  while (x > 0n) {
    n += Number(x & 1n);
    x >>= 1n;
  }
  return n;
}
