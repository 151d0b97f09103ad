// Writes the image fixtures the tests decode: real files made with sharp (plus a few hand-built
// byte strings), one per case the image stage must handle. Tests call makeImageFixtures() into a temp
// folder; `tsx scripts/make-fixtures.ts OUTDIR` writes the same files for a look by eye.

import { mkdir, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
/** Deterministic PRNG (mulberry32): fixtures must be the same bytes on every run. */
import { mulberry32 as prng } from '../src/core/random.js';
export { prng };


/** A width x height x 3 layer of random values on a grid of `cell`-pixel squares, bilinearly smoothed. */
function noiseLayer(width: number, height: number, cell: number, random: () => number): Float32Array {
  const gw = Math.ceil(width / cell) + 2;
  const gh = Math.ceil(height / cell) + 2;
  const grid = Float32Array.from({ length: gw * gh * 3 }, () => random() * 255);
  const out = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const y0 = Math.floor(y / cell);
    const fy = y / cell - y0;
    for (let x = 0; x < width; x++) {
      const x0 = Math.floor(x / cell);
      const fx = x / cell - x0;
      const a = (y0 * gw + x0) * 3;
      const b = a + gw * 3;
      for (let c = 0; c < 3; c++) {
        out[(y * width + x) * 3 + c] =
          (grid[a + c]! * (1 - fx) + grid[a + 3 + c]! * fx) * (1 - fy) +
          (grid[b + c]! * (1 - fx) + grid[b + 3 + c]! * fx) * fy;
      }
    }
  }
  return out;
}

/**
 * Raw RGB pixels that look like a photo to an encoder and to a perceptual hash: large random blobs
 * (the composition), smaller blobs (detail), a diagonal gradient and fine grain, all from `seed`.
 * Flat colours would make JPEG timings and phash distances meaningless.
 */
export function photoPixels(width: number, height: number, seed: number): Buffer {
  const random = prng(seed);
  const coarse = noiseLayer(width, height, Math.max(width, height) / 5, random);
  const fine = noiseLayer(width, height, 24, random);
  const tilt = random() * 2 - 1;
  const out = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const gradient = ((x / width) * tilt + (y / height) * (1 - Math.abs(tilt))) * 50;
      for (let c = 0; c < 3; c++) {
        const i = (y * width + x) * 3 + c;
        const value = coarse[i]! * 0.55 + fine[i]! * 0.3 + gradient + (random() - 0.5) * 24;
        out[i] = Math.max(0, Math.min(255, Math.round(value)));
      }
    }
  }
  return out;
}

/** A photo-like picture as a sharp pipeline, ready for an encoder. */
export function photo(width: number, height: number, seed: number): sharp.Sharp {
  return sharp(photoPixels(width, height, seed), { raw: { width, height, channels: 3 } });
}

/** Raw RGB image split into vertical bands of solid colours, left to right. */
function bands(width: number, height: number, colours: readonly (readonly [number, number, number])[]): Buffer {
  const out = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const colour = colours[Math.min(colours.length - 1, Math.floor((x * colours.length) / width))]!;
      out.set(colour, (y * width + x) * 3);
    }
  }
  return out;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Buffer): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A valid-looking PNG of a few hundred bytes whose header declares `width` x `height` RGB pixels:
 * the IDAT holds only the first rows. Anything that decodes before checking the header would try
 * to allocate width x height x 3 bytes.
 */
export function pixelBombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filter, no interlace
  const rows = Buffer.alloc((width * 3 + 1) * 4); // four black scanlines, filter byte 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(rows)),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

const RED = [220, 30, 30] as const;
const GREEN = [30, 200, 40] as const;
const BLUE = [30, 40, 220] as const;
const CMYK_BLUE = [60, 90, 170] as const;

/** Writes every image fixture into `dir` (created if needed) and returns name -> absolute path. */
export async function makeImageFixtures(dir: string): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true });
  const files: Record<string, Buffer> = {};

  files['baseline.jpg'] = await photo(640, 427, 1).jpeg({ quality: 90 }).toBuffer();
  files['progressive.jpg'] = await photo(400, 600, 2).jpeg({ quality: 90, progressive: true }).toBuffer();
  // Left half red, right half a blue inside the CMYK gamut (pure sRGB blue is not), stored as CMYK
  // without ICC: sharp converts both ways with its built-in profile.
  files['cmyk.jpg'] = await sharp(bands(200, 200, [RED, CMYK_BLUE]), { raw: { width: 200, height: 200, channels: 3 } })
    .toColourspace('cmyk')
    .jpeg({ quality: 95 })
    .toBuffer();
  // Stored 300x200 with a red left third; orientation 6 (rotate 90 degrees clockwise to display) makes
  // it a 200x300 picture whose top third is red and the rest blue.
  files['exif-rotated.jpg'] = await sharp(bands(300, 200, [RED, BLUE, BLUE]), {
    raw: { width: 300, height: 200, channels: 3 },
  })
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
  files['greyscale.jpg'] = await photo(320, 240, 3).greyscale().toColourspace('b-w').jpeg().toBuffer();
  files['16bit.png'] = await photo(300, 300, 4).toColourspace('rgb16').png().toBuffer();
  files['palette.png'] = await photo(256, 192, 5).png({ palette: true, colours: 32 }).toBuffer();
  // 200x100: left half fully transparent, right half opaque green.
  const rgba = Buffer.alloc(200 * 100 * 4);
  for (let i = 0; i < 200 * 100; i++) {
    if (i % 200 >= 100) rgba.set([...GREEN, 255], i * 4);
  }
  files['alpha.png'] = await sharp(rgba, { raw: { width: 200, height: 100, channels: 4 } }).png().toBuffer();
  files['photo.webp'] = await photo(500, 500, 6).webp({ quality: 85 }).toBuffer();
  files['photo.avif'] = await photo(96, 64, 9).avif({ quality: 60, effort: 0 }).toBuffer();
  files['photo.tiff'] = await photo(120, 90, 10).tiff({ compression: 'lzw' }).toBuffer();
  // Two 64x48 frames, red then blue, stacked vertically and split by pageHeight.
  const frames = Buffer.concat([bands(64, 48, [RED]), bands(64, 48, [BLUE])]);
  const framesRaw = { raw: { width: 64, height: 96, channels: 3 as const, pageHeight: 48 } };
  files['animated.gif'] = await sharp(frames, framesRaw).gif({ delay: [200, 200], loop: 0 }).toBuffer();
  files['animated.webp'] = await sharp(frames, framesRaw).webp({ delay: [200, 200], loop: 0 }).toBuffer();

  const wholeJpeg = await photo(500, 400, 7).jpeg({ quality: 90 }).toBuffer();
  files['truncated.jpg'] = wholeJpeg.subarray(0, wholeJpeg.length >> 1);
  const wholePng = await photo(300, 200, 8).png().toBuffer();
  files['truncated.png'] = wholePng.subarray(0, wholePng.length >> 1);
  files['pixel-bomb.png'] = pixelBombPng(30000, 30000);

  files['page.html'] = Buffer.from(
    '<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n',
  );
  files['empty.jpg'] = Buffer.alloc(0);
  files['notes.txt'] = Buffer.from('This is plain text that a server sent with Content-Type: image/jpeg.\n');

  const paths: Record<string, string> = {};
  for (const [name, bytes] of Object.entries(files)) {
    const path = resolve(dir, name);
    await writeFile(path, bytes);
    paths[name] = path;
  }
  return paths;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outDir = process.argv[2];
  if (outDir === undefined) {
    console.error('usage: tsx scripts/make-fixtures.ts OUTDIR');
    process.exit(2);
  }
  const written = await makeImageFixtures(outDir);
  for (const path of Object.values(written)) console.log(path);
}
