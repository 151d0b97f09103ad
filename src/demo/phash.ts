// The demo generator keeps its distinct scenes far apart and its planted near duplicates close under
// THE hash the filter will see: the project's pHash of the picture as the demo's ingest stores it
// (keep-ratio 224, see DEMO_IMAGE_OPTIONS). A separate reference hash let one pair of "distinct"
// scenes land within the filter's distance once ingest had resized them.

import { PHASH_ONLY_DISTANCE } from '../filters/phash-index.js';
import { confirmNearDup, DEFAULT_NEAR_DUP_CHECK } from '../image/near-dup-check.js';
import { processImage, resolveImageOptions, type ImageOptions } from '../image/process.js';

/** Image options of the demo's ingest; the corpus is planned for exactly these. */
export const DEMO_IMAGE_OPTIONS: ImageOptions = resolveImageOptions({ resizeMode: 'keep-ratio', size: 224 });

/** The pHash ingest would store for these bytes, as a bigint (0n for bytes it would reject). */
export async function imageHash(input: Buffer): Promise<bigint> {
  return (await imageHashes(input)).hash;
}

/** What the near_duplicate rule sees of a picture: its pHash, weak-bit mask and check data. */
export interface RuleHashes {
  readonly hash: bigint;
  readonly weak: bigint;
  readonly check?: Uint8Array;
}

/** The pHash, its weak-bit mask and the check data ingest would store (0n, 0n and none for bytes it would reject). */
export async function imageHashes(input: Buffer): Promise<RuleHashes> {
  const r = await processImage(input, DEMO_IMAGE_OPTIONS);
  if (!r.ok) return { hash: 0n, weak: 0n };
  return { hash: BigInt(`0x${r.image.phash}`), weak: BigInt(`0x${r.image.phashWeak ?? '0'}`), ...(r.image.nearDupCheck ? { check: r.image.nearDupCheck } : {}) };
}

/**
 * Whether the near_duplicate rule (src/filters/phash-index.ts) with the filter's default check would
 * match these two pictures, either one kept and the other looked up: within `distance` bits and, in
 * some 16-bit chunk, different only in the looked-up one's weak bits; then, when both have check data,
 * passing DEFAULT_NEAR_DUP_CHECK, else within PHASH_ONLY_DISTANCE bits.
 */
export function matchUnderRule(a: RuleHashes, b: RuleHashes, distance: number): boolean {
  const bits = hammingDistance(a.hash, b.hash);
  if (bits > distance) return false;
  const diff = a.hash ^ b.hash;
  let reached = false;
  for (const weak of [a.weak, b.weak]) {
    const rest = diff & ~weak;
    for (let c = 0n; c < 4n; c++) if (((rest >> (16n * c)) & 0xffffn) === 0n) reached = true;
  }
  if (!reached) return false;
  if (a.check === undefined || b.check === undefined) return bits <= PHASH_ONLY_DISTANCE;
  return confirmNearDup(a.check, b.check, DEFAULT_NEAR_DUP_CHECK);
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
