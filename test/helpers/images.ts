// Small distinct textured JPEGs for end-to-end tests (real encodes by sharp, seeded noise).
import sharp from 'sharp';
import { mulberry32 as seededRandom } from '../../src/core/random.js';

export { seededRandom };

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
