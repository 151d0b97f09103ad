// Photo-like JPEGs for benchmarks: flat colours compress to nothing and decode in no time, which would
// make ingest benchmarks lie. These have photo statistics instead: a gradient "sky", fractal value
// noise, soft blobs and fine grain, in a random palette, 30-150 KB each at quality 90.
//
// Speed: the texture is drawn in JS at 1/4 resolution and upscaled bilinearly (the upscale is the blur)
// with grain from a few cached tiles added in the same pass; sharp only encodes. Image i depends only on (seed, i), so a corpus
// can be grown, and a file already there for the same seed is kept.
//
// Script: npx tsx bench/photos.ts OUTDIR COUNT [SEED]

import { availableParallelism } from 'node:os';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isMainThread, threadId, Worker, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { intOption } from '../src/core/options.js';
import { deriveSeed, Rng } from '../src/demo/random.js';

/** Bump when the images change, so cached corpora are remade. */
const VERSION = 1;
const MARKER = '.photos.json';
const SCALE = 4;
const GRAIN_TILE = 256;
export const PHOTO_QUALITY = 90;
export const PHOTO_LONG_SIDE = { min: 320, max: 1024 } as const;
export const PHOTO_ASPECT = { min: 0.5, max: 2 } as const;

type Rgb = [number, number, number];

function hsl(h: number, s: number, l: number): Rgb {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number): number => {
    const k = (n + h / 30) % 12;
    return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1)));
  };
  return [f(0), f(8), f(4)];
}

/** Fractal value noise in [-1, 1] roughly: `octaves` layers, each twice as fine and half as strong. */
function fractalNoise(rng: Rng, width: number, height: number, cell: number, octaves: number): Float32Array {
  const out = new Float32Array(width * height);
  let amp = 1;
  let norm = 0;
  for (let o = 0; o < octaves; o++, cell /= 2, amp /= 2) {
    const c = Math.max(1.5, cell);
    const gw = Math.ceil(width / c) + 2;
    const grid = new Float32Array(gw * (Math.ceil(height / c) + 2));
    for (let i = 0; i < grid.length; i++) grid[i] = rng.next() * 2 - 1;
    for (let y = 0; y < height; y++) {
      const fy = y / c;
      const iy = Math.floor(fy);
      const v = fy - iy;
      const sv = v * v * (3 - 2 * v);
      for (let x = 0; x < width; x++) {
        const fx = x / c;
        const ix = Math.floor(fx);
        const u = fx - ix;
        const su = u * u * (3 - 2 * u);
        const i0 = iy * gw + ix;
        const top = grid[i0]! + (grid[i0 + 1]! - grid[i0]!) * su;
        const bottom = grid[i0 + gw]! + (grid[i0 + gw + 1]! - grid[i0 + gw]!) * su;
        out[y * width + x]! += amp * (top + (bottom - top) * sv);
      }
    }
    norm += amp;
  }
  for (let i = 0; i < out.length; i++) out[i]! /= norm * 0.5;
  return out;
}

export interface PhotoSpec {
  readonly width: number;
  readonly height: number;
}

/** Size of photo i: long side 320-1024, aspect (w/h) log-uniform in 0.5-2. */
function photoSize(rng: Rng): PhotoSpec {
  const long = rng.int(PHOTO_LONG_SIDE.min, PHOTO_LONG_SIDE.max);
  const aspect = Math.exp(rng.float(Math.log(PHOTO_ASPECT.min), Math.log(PHOTO_ASPECT.max)));
  return aspect >= 1
    ? { width: long, height: Math.max(1, Math.round(long / aspect)) }
    : { width: Math.max(1, Math.round(long * aspect)), height: long };
}

/**
 * Low-resolution RGB of one photo: a "sky" gradient over a textured "ground" below a wavy horizon,
 * tinted fractal noise, and a few blobs (soft or crisp) in a random palette.
 */
function lowRes(rng: Rng, lw: number, lh: number): Buffer {
  const hue = rng.float(0, 360);
  const palette: Rgb[] = Array.from({ length: 5 }, (_, k) =>
    hsl((hue + k * rng.float(15, 120)) % 360, rng.float(0.1, 0.75), rng.float(0.2, 0.85)),
  );
  const [sky0, sky1, ground, tint] = palette as [Rgb, Rgb, Rgb, Rgb, Rgb];
  const horizon = rng.chance(0.7) ? rng.float(0.25, 0.75) * lh : -1;
  const wave = fractalNoise(rng, lw, 1, lw / rng.float(1, 4), 3);
  const waveAmp = rng.float(0.02, 0.15) * lh;
  const base = fractalNoise(rng, lw, lh, Math.max(lw, lh) / rng.float(1.5, 4), 4);
  const detail = fractalNoise(rng, lw, lh, rng.float(3, 8), 2);
  const tintMix = rng.float(0.2, 0.7);
  const skyNoise = rng.float(0.03, 0.1);
  const groundNoise = rng.float(0.15, 0.35);
  const blobs = Array.from({ length: rng.int(2, 7) }, () => ({
    x: rng.float(0, lw),
    y: rng.float(0, lh),
    rx: rng.float(0.04, 0.25) * lw,
    ry: rng.float(0.04, 0.25) * lh,
    colour: rng.pick(palette),
    alpha: rng.float(0.5, 0.95),
    crisp: rng.chance(0.5),
  }));
  const out = Buffer.alloc(lw * lh * 3);
  const pixel: Rgb = [0, 0, 0];
  for (let y = 0; y < lh; y++) {
    for (let x = 0; x < lw; x++) {
      const i = y * lw + x;
      const n = base[i]!;
      const d = detail[i]!;
      const below = horizon >= 0 && y > horizon + wave[x]! * waveAmp;
      let shade: number;
      if (below) {
        const t = Math.max(0, Math.min(1, 0.5 + 0.5 * n)) * tintMix;
        for (let ch = 0; ch < 3; ch++) pixel[ch] = ground[ch]! + (tint[ch]! - ground[ch]!) * t;
        shade = 1 + groundNoise * (0.5 * n + 0.5 * d);
      } else {
        const g = horizon >= 0 ? y / Math.max(1, horizon) : y / lh;
        for (let ch = 0; ch < 3; ch++) pixel[ch] = sky0[ch]! + (sky1[ch]! - sky0[ch]!) * g;
        shade = 1 + skyNoise * n;
      }
      for (const b of blobs) {
        const dx = (x - b.x) / b.rx;
        const dy = (y - b.y) / b.ry;
        const r = dx * dx + dy * dy + 0.15 * d;
        if (r >= 1) continue;
        const a = b.alpha * (b.crisp ? Math.min(1, (1 - r) * 6) : (1 - r) * (1 - r));
        for (let ch = 0; ch < 3; ch++) pixel[ch] = pixel[ch]! + (b.colour[ch]! - pixel[ch]!) * a;
      }
      for (let ch = 0; ch < 3; ch++) out[i * 3 + ch] = Math.max(0, Math.min(255, Math.round(pixel[ch]! * shade)));
    }
  }
  return out;
}

/** Grain strengths, strongest first: small photos get strong grain, big ones light grain, so file sizes
 * stay in a realistic band (30-150 KB) instead of growing with area. */
const GRAIN_SIGMAS = [9, 6, 4, 2.5];
const GRAIN_AREAS = [120_000, 300_000, 600_000];

/** Grain tiles (signed, per channel), one per strength, made once per seed. */
const grainCache = new Map<number, Int8Array[]>();
function grainTiles(seed: number): Int8Array[] {
  let tiles = grainCache.get(seed);
  if (tiles === undefined) {
    const rng = new Rng(deriveSeed(seed, 0x6a41));
    tiles = GRAIN_SIGMAS.map((sigma) => {
      const tile = new Int8Array(GRAIN_TILE * GRAIN_TILE * 3);
      for (let i = 0; i < GRAIN_TILE * GRAIN_TILE; i++) {
        // Sum of uniforms: near-Gaussian; mostly luminance with a little chroma, like sensor noise.
        const l = (rng.next() + rng.next() + rng.next() - 1.5) * 2 * sigma;
        for (let ch = 0; ch < 3; ch++) tile[i * 3 + ch] = Math.round(l + (rng.next() - 0.5) * sigma * 0.6);
      }
      return tile;
    });
    grainCache.set(seed, tiles);
  }
  return tiles;
}

/**
 * Bilinear upscale of the low-resolution picture to width x height, plus grain from a tile at a
 * random offset. In JS: sharp's upscale of a raw buffer is several times slower than this loop.
 */
function upscaleWithGrain(low: Buffer, lw: number, lh: number, width: number, height: number, grain: Int8Array, ox: number, oy: number): Buffer {
  // Separable, in 1/16 fixed point: each low row is stretched horizontally once (x16), then each output
  // row blends two stretched rows (x16 again, hence >> 8) and adds grain.
  const stride = width * 3;
  const xi = new Int32Array(width);
  const xw = new Int32Array(width);
  for (let x = 0; x < width; x++) {
    const sx = Math.max(0, (x + 0.5) / SCALE - 0.5);
    const i = Math.min(lw - 2, Math.floor(sx));
    xi[x] = i * 3;
    xw[x] = Math.round((sx - i) * 16);
  }
  const wide = new Uint16Array(lh * stride);
  for (let ly = 0; ly < lh; ly++) {
    const src = ly * lw * 3;
    let d = ly * stride;
    for (let x = 0; x < width; x++) {
      const s0 = src + xi[x]!;
      const w = xw[x]!;
      const v = 16 - w;
      wide[d++] = low[s0]! * v + low[s0 + 3]! * w;
      wide[d++] = low[s0 + 1]! * v + low[s0 + 4]! * w;
      wide[d++] = low[s0 + 2]! * v + low[s0 + 5]! * w;
    }
  }
  const grainCol = new Int32Array(width);
  for (let x = 0; x < width; x++) grainCol[x] = ((x + ox) % GRAIN_TILE) * 3;
  const out = Buffer.alloc(height * stride);
  let o = 0;
  for (let y = 0; y < height; y++) {
    const sy = Math.max(0, (y + 0.5) / SCALE - 0.5);
    const y0 = Math.min(lh - 2, Math.floor(sy));
    const w = Math.round((sy - y0) * 16);
    const v = 16 - w;
    let r0 = y0 * stride;
    let r1 = r0 + stride;
    const g = ((y + oy) % GRAIN_TILE) * GRAIN_TILE * 3;
    for (let x = 0; x < width; x++) {
      const gi = g + grainCol[x]!;
      let a = ((wide[r0++]! * v + wide[r1++]! * w) >> 8) + grain[gi]!;
      out[o++] = a < 0 ? 0 : a > 255 ? 255 : a;
      a = ((wide[r0++]! * v + wide[r1++]! * w) >> 8) + grain[gi + 1]!;
      out[o++] = a < 0 ? 0 : a > 255 ? 255 : a;
      a = ((wide[r0++]! * v + wide[r1++]! * w) >> 8) + grain[gi + 2]!;
      out[o++] = a < 0 ? 0 : a > 255 ? 255 : a;
    }
  }
  return out;
}

/** Encodes photo i of a corpus with this seed. */
export async function renderPhoto(seed: number, index: number): Promise<{ bytes: Buffer } & PhotoSpec> {
  const rng = new Rng(deriveSeed(seed, index));
  const { width, height } = photoSize(rng);
  const lw = Math.ceil(width / SCALE) + 2;
  const lh = Math.ceil(height / SCALE) + 2;
  const low = lowRes(rng, lw, lh);
  const area = width * height;
  const level = GRAIN_AREAS.filter((a) => area >= a).length;
  const grain = grainTiles(seed)[level]!;
  const pixels = upscaleWithGrain(low, lw, lh, width, height, grain, rng.int(0, GRAIN_TILE - 1), rng.int(0, GRAIN_TILE - 1));
  const bytes = await sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: PHOTO_QUALITY, optimiseCoding: false }).toBuffer();
  return { bytes, width, height };
}

function photoName(index: number): string {
  return `photo-${String(index).padStart(6, '0')}.jpg`;
}

/** Renders and writes photos i = first, first + step, ... below count; skips existing files when `keep`. */
async function writePhotos(dir: string, seed: number, count: number, first: number, step: number, keep: boolean): Promise<void> {
  let next = first;
  // Two renders in flight per thread: one encodes in sharp's pool while the other draws in JS.
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next;
      next += step;
      const path = join(dir, photoName(i));
      if (keep && (await stat(path).catch(() => null))?.isFile()) continue;
      const { bytes } = await renderPhoto(seed, i);
      const tmp = `${path}.tmp-${process.pid}-${threadId}`;
      await writeFile(tmp, bytes);
      await rename(tmp, path);
    }
  };
  await Promise.all([lane(), lane()]);
}

interface WorkerJob {
  readonly kind: 'filip-photos';
  readonly dir: string;
  readonly seed: number;
  readonly count: number;
  readonly first: number;
  readonly step: number;
  readonly keep: boolean;
}

/** This module as a worker entry; run from TypeScript, the worker first registers tsx's loader. */
function workerEntry(): URL {
  if (!import.meta.url.endsWith('.ts')) return new URL(import.meta.url);
  const api = import.meta.resolve('tsx/esm/api');
  const code = `import { register } from ${JSON.stringify(api)}; register(); await import(${JSON.stringify(import.meta.url)});`;
  return new URL('data:text/javascript,' + encodeURIComponent(code));
}

/** Runs writePhotos in `threads` worker threads (the drawing is JS, so one thread would be the bottleneck). */
async function writePhotosInWorkers(job: Omit<WorkerJob, 'kind' | 'first' | 'step'>, threads: number): Promise<void> {
  await Promise.all(
    Array.from({ length: threads }, (_, k) => {
      const data: WorkerJob = { kind: 'filip-photos', ...job, first: k, step: threads };
      const worker = new Worker(workerEntry(), { workerData: data });
      return new Promise<void>((done, fail) => {
        worker.once('error', fail);
        worker.once('exit', (code) => (code === 0 ? done() : fail(new Error(`photo worker ${k} exited with code ${code}`))));
      });
    }),
  );
}

/**
 * Writes `count` photo-like JPEGs into `dir` (photo-000000.jpg, ...) and returns their paths. Files
 * already there from the same seed and version are kept, so re-running a benchmark costs nothing.
 */
export async function makePhotoCorpus(dir: string, count: number, seed = 1): Promise<string[]> {
  intOption('count', count, 0);
  intOption('seed', seed, 0, 2 ** 32 - 1);
  await mkdir(dir, { recursive: true });
  const markerPath = join(dir, MARKER);
  const marker = JSON.stringify({ version: VERSION, seed });
  const keep = (await readFile(markerPath, 'utf8').catch(() => '')) === marker;
  // Written first: files are only ever in place complete (renamed), and the marker says whose they are.
  if (!keep) await writeFile(markerPath, marker);
  const threads = Math.min(availableParallelism(), Math.ceil(count / 50));
  if (threads > 1) await writePhotosInWorkers({ dir, seed, count, keep }, threads);
  else await writePhotos(dir, seed, count, 0, 1, keep);
  return Array.from({ length: count }, (_, i) => join(dir, photoName(i)));
}

async function main(argv: readonly string[]): Promise<void> {
  const [out, countText, seedText] = argv;
  if (out === undefined || countText === undefined) {
    console.error('usage: npx tsx bench/photos.ts OUTDIR COUNT [SEED]');
    process.exitCode = 2;
    return;
  }
  const started = performance.now();
  const paths = await makePhotoCorpus(resolve(out), Number(countText), seedText === undefined ? 1 : Number(seedText));
  const seconds = (performance.now() - started) / 1000;
  let bytes = 0;
  for (const p of paths) bytes += (await stat(p)).size;
  console.log(
    `${paths.length} photos in ${resolve(out)}: ${(bytes / 2 ** 20).toFixed(1)} MiB, ` +
      `${paths.length > 0 ? Math.round(bytes / paths.length / 1024) : 0} KiB average, ${seconds.toFixed(1)} s`,
  );
}

if (!isMainThread && (workerData as Partial<WorkerJob> | null)?.kind === 'filip-photos') {
  const job = workerData as WorkerJob;
  await writePhotos(job.dir, job.seed, job.count, job.first, job.step, job.keep);
} else if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main(process.argv.slice(2));
}
