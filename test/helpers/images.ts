// Small distinct textured JPEGs for end-to-end tests (real encodes by sharp, seeded noise).
import sharp from 'sharp';

export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A width x height JPEG of blurred seeded noise: distinct per seed, photo-like enough to dedupe and hash. */
export async function noiseJpeg(seed: number, width = 240, height = 200): Promise<Buffer> {
  const rand = seededRandom(seed);
  const w = 16;
  const h = 16;
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(rand() * 256);
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .resize(width, height, { kernel: 'cubic' })
    .jpeg({ quality: 85 })
    .toBuffer();
}
