// The demo generator keeps its distinct scenes far apart and its planted near duplicates close under
// THE hash the filter will see: the project's pHash of the picture as the demo's ingest stores it
// (keep-ratio 224, see DEMO_IMAGE_OPTIONS). A separate reference hash let one pair of "distinct"
// scenes land within the filter's distance once ingest had resized them.

import { processImage, resolveImageOptions, type ImageOptions } from '../image/process.js';

/** Image options of the demo's ingest; the corpus is planned for exactly these. */
export const DEMO_IMAGE_OPTIONS: ImageOptions = resolveImageOptions({ resizeMode: 'keep-ratio', size: 224 });

/** The pHash ingest would store for these bytes, as a bigint (0n for bytes it would reject). */
export async function imageHash(input: Buffer): Promise<bigint> {
  const r = await processImage(input, DEMO_IMAGE_OPTIONS);
  return r.ok ? BigInt(`0x${r.image.phash}`) : 0n;
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
