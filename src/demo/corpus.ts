// The demo corpus: rendered shape scenes with true captions, plus deliberately bad rows, each labelled
// with the outcome a later stage must give it (ingest reason code or FILIP filter code). The demo server
// serves it on loopback, so the whole pipeline can be exercised, and checked, with no network.
//
// Deterministic: the same seed writes byte-identical files. One PRNG, read in a fixed order, plans the
// rows and gives each scene its own seed; scenes render in parallel but are accepted (caption unused,
// hash far from the others) strictly in order, so finishing order never changes a byte.

import { readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { FilipError } from '../core/errors.js';
import { makeDir } from '../core/make-dir.js';
import { intOption, rejectUnknownKeys } from '../core/options.js';
import type { ReasonCode } from '../core/reasons.js';
import { DEFAULT_NEAR_DUP_DISTANCE } from '../filters/phash-index.js';
import { DEFAULT_NEAR_DUP_CHECK } from '../image/near-dup-check.js';
import { hammingDistance, imageHash, imageHashes, matchUnderRule, type RuleHashes } from './phash.js';
import { deriveSeed, Rng } from './random.js';
import { planScene, renderScene, scaleObjects, type DemoBackground, type DemoObject, type SceneSpec } from './scene.js';
import { mapLimit } from '../pipeline/pool.js';

export {
  DEMO_COLOURS,
  DEMO_COLOUR_NAMES,
  DEMO_SHAPES,
  DEMO_SIZES,
  type BBox,
  type DemoBackground,
  type DemoColour,
  type DemoObject,
  type DemoShape,
  type DemoSize,
} from './scene.js';

/**
 * Codes the FILIP filter stage gives (rules from the FILIP paper, section 3.2). Defined here only to
 * label the demo rows; the filter stage owns the authoritative list and must use the same strings.
 */
export const DEMO_FILTER_REASONS = {
  image_too_small: 'the shorter side of the image is under 200 pixels',
  aspect_ratio: 'the longer side is more than 3 times the shorter side',
  not_english: 'the caption is not in English',
  meaningless_text: 'the caption is a file name, URL, hash or placeholder, not a description',
  repeated_text: 'the caption is used on more than 10 images',
  near_duplicate: 'the image is a near duplicate (perceptual hash) of an image kept earlier',
} as const;
export type DemoFilterReason = keyof typeof DEMO_FILTER_REASONS;

/** What a later stage must do with a manifest row. */
export type DemoExpected =
  | { readonly status: 'ok' }
  | { readonly status: 'rejected'; readonly stage: 'ingest'; readonly reason: ReasonCode }
  | { readonly status: 'rejected'; readonly stage: 'filter'; readonly reason: DemoFilterReason };

export type DemoImageFormat = 'jpeg' | 'png' | 'webp';

export interface DemoScene {
  /** Also the manifest's scene_id. */
  readonly id: string;
  /** Path relative to the corpus folder. */
  readonly file: string;
  readonly format: DemoImageFormat;
  readonly width: number;
  readonly height: number;
  readonly background: DemoBackground;
  /** objects[0] is the main object (the one a caption names first). Boxes are in stored pixels. */
  readonly objects: readonly DemoObject[];
  readonly main: DemoObject;
  /** A true English description of the picture, whatever caption its manifest row carries. */
  readonly description: string;
  /** For a planted near duplicate: the scene it was derived from. */
  readonly copyOf?: string;
}

/** How the demo server answers one URL path. */
export type DemoRoute =
  | {
      readonly kind: 'file';
      readonly path: string;
      readonly file: string;
      readonly contentType: string;
      /** Send without Content-Length (chunked), so only a streaming size cap can stop it. */
      readonly chunked?: boolean;
    }
  | { readonly kind: 'status'; readonly path: string; readonly status: number }
  /** Accepts the request and never answers: header deadline. */
  | { readonly kind: 'stall'; readonly path: string }
  /** Sends headers and half the body, then nothing: body deadline. */
  | { readonly kind: 'stall_body'; readonly path: string; readonly file: string; readonly contentType: string };

export interface DemoRow {
  /** 0-based data row of the manifest (the header is not counted). */
  readonly row: number;
  /** A path on the demo server ('/images/s0001.jpg') when served is true, else the literal URL field. */
  readonly url: string;
  readonly served: boolean;
  readonly caption: string;
  /** Scene shown by the row's image, or '' when the row has none. */
  readonly sceneId: string;
  readonly expected: DemoExpected;
  /** Why the row was planted, for people reading expected.json. */
  readonly note: string;
}

export interface DemoCorpus {
  /** Folder the corpus was written to. */
  readonly dir: string;
  readonly seed: number;
  /** The body-size cap the demo ingest uses; the planted oversized body exceeds it. */
  readonly maxBodyBytes: number;
  /** Fetch deadline the demo should use: the stall routes are only caught by a deadline. */
  readonly timeoutMs: number;
  readonly rows: readonly DemoRow[];
  readonly routes: readonly DemoRoute[];
  readonly scenes: readonly DemoScene[];
  /** Every file written, relative to dir, sorted. */
  readonly files: readonly string[];
  /** Rows per expected outcome: 'ok', 'ingest:<code>', 'filter:<code>'. */
  readonly summary: Readonly<Record<string, number>>;
  /**
   * The near_duplicate rule the scenes were planned for (demoNearDupRule()). A corpus planned for
   * another rule may hold distinct scenes that this one matches: the demo plans it again.
   */
  readonly nearDupRule?: string;
}

/** The near_duplicate rule a corpus is planned for, as a string (distance, then the check's thresholds). */
export function demoNearDupRule(): string {
  return `pHash <= ${DEFAULT_NEAR_DUP_DISTANCE} bits, chroma <= ${DEFAULT_NEAR_DUP_CHECK.maxChromaBits} bits, aligned < ${DEFAULT_NEAR_DUP_CHECK.maxAlignedDistance}`;
}

export interface DemoCorpusOptions {
  /** @default 1 */
  readonly seed?: number;
  /** Number of plain good scenes (the planted cases come on top). @default 300 */
  readonly scenes?: number;
}

const DEFAULTS: Required<DemoCorpusOptions> = { seed: 1, scenes: 300 };

/** The body cap the demo uses: 2 MiB. */
export const DEMO_MAX_BODY_BYTES = 2 * 1024 * 1024;
export const DEMO_TIMEOUT_MS = 1500;
/** Fewer good scenes than this may leave too few sources for the planted duplicates (12 needed). */
export const DEMO_MIN_SCENES = 30;

const CORPUS_FILE = 'corpus.json';
const EXPECTED_FILE = 'expected.json';

export const DEMO_NOT_ENGLISH = [
  'Ein roter Kreis liegt über einem kleinen blauen Quadrat auf weißem Hintergrund.',
  'Auf diesem Bild sieht man ein großes grünes Dreieck auf der linken Seite.',
  'Eine einfache Zeichnung mit bunten geometrischen Formen auf hellem Papier.',
  'Un cercle rouge au-dessus d’un petit carré bleu, sur un fond blanc.',
  'Sur cette image, on voit un grand triangle vert à gauche.',
  'Un dessin simple avec des formes géométriques colorées sur un fond clair.',
  'Un círculo rojo encima de un pequeño cuadrado azul sobre un fondo blanco.',
  'En esta imagen se ve un gran triángulo verde a la izquierda.',
  'Un dibujo sencillo con formas geométricas de colores sobre un fondo claro.',
  'Красный круг над маленьким синим квадратом на белом фоне.',
  'На этой картинке большой зелёный треугольник слева.',
  'Простой рисунок с яркими геометрическими фигурами на светлом фоне.',
] as const;

export const DEMO_MEANINGLESS = [
  'IMG_20190101_123456.jpg',
  'DSC_0123.JPG',
  'img 0.jpg',
  'untitled',
  'image',
  'P1010034.JPG',
  'https://example.com/uploads/2019/01/photo-1.jpg',
  'd41d8cd98f00b204e9800998ecf8427e',
  'Screenshot_20210304-102231.png',
] as const;

/** Used on 12 distinct images: more than 10, so the filter drops all 12. */
export const DEMO_REPEATED_CAPTION = 'colourful geometric shapes on a plain background';
export const DEMO_REPEATED_COUNT = 12;
/** Used on exactly 10 distinct images: not more than 10, so all are kept (boundary). */
export const DEMO_TEN_TIMES_CAPTION = 'a few simple shapes drawn on a light background';
export const DEMO_TEN_TIMES_COUNT = 10;

const CONTENT_TYPES: Record<DemoImageFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
};
const EXTENSIONS: Record<DemoImageFormat, string> = { jpeg: 'jpg', png: 'png', webp: 'webp' };

/**
 * Distinct scenes differ in at least this many of 64 hash bits (unrelated images average 32), and no
 * two of them match under the near_duplicate rule at its default distance (matchUnderRule).
 */
export const DEMO_MIN_HASH_DISTANCE = 14;
/** A planted near duplicate is at most this many bits from its original. */
export const DEMO_MAX_COPY_DISTANCE = 2;

// ---------------------------------------------------------------------------------------------------
// Planning: every random draw happens here, in a fixed order, and every body is rendered here too (the
// hash checks need the pixels). Only the file names wait for the final row order.

/** Encoded bytes a route serves. */
interface Body {
  readonly bytes: Buffer;
  readonly ext: string;
  readonly contentType: string;
}

interface SceneImage extends Body {
  readonly spec: Pick<SceneSpec, 'width' | 'height' | 'background' | 'objects' | 'caption'>;
  readonly format: DemoImageFormat;
}

type Source =
  | { readonly kind: 'scene'; readonly image: SceneImage; readonly copyOf?: Plan }
  | { readonly kind: 'same_url'; readonly from: Plan }
  | { readonly kind: 'same_bytes'; readonly from: Plan }
  | { readonly kind: 'status'; readonly status: number }
  | { readonly kind: 'stall' }
  | { readonly kind: 'stall_body'; readonly body: Body }
  | { readonly kind: 'blob'; readonly body: Body; readonly chunked?: boolean }
  | { readonly kind: 'literal'; readonly url: string };

interface Plan {
  readonly caption: string;
  readonly expected: DemoExpected;
  readonly note: string;
  readonly source: Source;
}

type Size = { readonly width: number; readonly height: number };

function normaliseCaption(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

function goodSize(rng: Rng): Size {
  if (rng.chance(0.85)) return { width: rng.int(256, 480), height: rng.int(256, 480) };
  const short = rng.int(200, 300);
  const long = Math.min(rng.int(480, 640), short * 3);
  return rng.chance(0.5) ? { width: long, height: short } : { width: short, height: long };
}

function pickFormat(rng: Rng): { format: DemoImageFormat; quality: number } {
  const r = rng.next();
  if (r < 0.7) return { format: 'jpeg', quality: rng.int(82, 95) };
  if (r < 0.9) return { format: 'png', quality: 100 };
  return { format: 'webp', quality: rng.int(80, 92) };
}

const OK: DemoExpected = { status: 'ok' };
const ingest = (reason: ReasonCode): DemoExpected => ({ status: 'rejected', stage: 'ingest', reason });
const filter = (reason: DemoFilterReason): DemoExpected => ({ status: 'rejected', stage: 'filter', reason });

async function encode(input: sharp.Sharp, format: DemoImageFormat, quality: number): Promise<Buffer> {
  if (format === 'jpeg') return input.jpeg({ quality }).toBuffer();
  if (format === 'png') return input.png().toBuffer();
  return input.webp({ quality }).toBuffer();
}

function body(bytes: Buffer, format: DemoImageFormat): Body {
  return { bytes, ext: EXTENSIONS[format], contentType: CONTENT_TYPES[format] };
}

/** One scene to make. Candidates for it are seeded by (seed, attempt), so they can be rendered in parallel. */
interface SceneJob {
  readonly size: Size;
  /** Must be far, in hash bits, from every other distinct scene (it reaches the filter as its own image). */
  readonly distinct: boolean;
  /** Only the description is used (a bad row's caption): skip rendering. */
  readonly captionOnly: boolean;
  readonly seed: number;
}

interface Candidate {
  readonly image: SceneImage;
  readonly hash: bigint;
  /** The hash's weak-bit mask, as ingest computes it. */
  readonly weak: bigint;
  /** The near-duplicate check data ingest stores (absent for caption-only jobs). */
  readonly check?: Uint8Array;
}

async function makeCandidate(job: SceneJob, attempt: number): Promise<Candidate> {
  const rng = new Rng(deriveSeed(job.seed, attempt));
  const spec = planScene(rng, job.size);
  const { format, quality } = pickFormat(rng);
  if (job.captionOnly) return { image: { ...body(Buffer.alloc(0), format), spec, format }, hash: 0n, weak: 0n };
  const bytes = await encode(renderScene(spec), format, quality);
  return { image: { ...body(bytes, format), spec, format }, ...(await imageHashes(bytes)) };
}

/** Accepts scenes in job order, so the outcome does not depend on which render finished first. */
class SceneMaker {
  /** Normalised captions in use: a good row's caption must not repeat. */
  private readonly captions = new Set<string>();
  /** Hashes (and weak-bit masks) of the scenes that must stay apart from one another. */
  private readonly hashes: RuleHashes[] = [];
  private readonly jobs: SceneJob[] = [];
  private first: Candidate[] = [];
  private next = 0;

  constructor(private readonly rng: Rng) {}

  /** Queues a scene; returns its ticket for take(). */
  add(size: Size, distinct: boolean, captionOnly = false): number {
    this.jobs.push({ size, distinct, captionOnly, seed: this.rng.int(0, 2 ** 32 - 1) });
    return this.jobs.length - 1;
  }

  /** Renders every queued scene's first candidate, a few at a time. */
  async renderAll(concurrency: number): Promise<void> {
    this.first = await mapLimit(this.jobs, concurrency, (job) => makeCandidate(job, 0));
  }

  /** Reserves a caption; false if it (normalised) is taken already. */
  claim(text: string): boolean {
    const key = normaliseCaption(text);
    if (this.captions.has(key)) return false;
    this.captions.add(key);
    return true;
  }

  /** The accepted scene of the next ticket (tickets must be taken in order). */
  async take(ticket: number): Promise<Candidate> {
    if (ticket !== this.next++) throw new Error(`scene ticket ${ticket} taken out of order`);
    const job = this.jobs[ticket]!;
    for (let attempt = 0; attempt < 200; attempt++) {
      const c = attempt === 0 ? this.first[ticket]! : await makeCandidate(job, attempt);
      if (this.captions.has(normaliseCaption(c.image.spec.caption))) continue;
      if (job.distinct && this.hashes.some((h) => hammingDistance(h.hash, c.hash) < DEMO_MIN_HASH_DISTANCE || matchUnderRule(h, c, DEFAULT_NEAR_DUP_DISTANCE))) continue;
      this.claim(c.image.spec.caption);
      if (job.distinct) this.hashes.push({ hash: c.hash, weak: c.weak, ...(c.check ? { check: c.check } : {}) });
      return c;
    }
    throw new Error(`cannot plan a distinct ${job.size.width}x${job.size.height} scene`);
  }
}

interface Layout {
  readonly plans: Plan[];
  /** Plans that must come after another one (copies of it), with that one. */
  readonly dependents: { plan: Plan; after: Plan }[];
}

const PREFIX_RE = /^(a drawing of|an illustration of|a simple picture of|clip art of|a diagram with) /;

interface RowRequest {
  readonly ticket: number;
  readonly caption: string | null;
  readonly expected: DemoExpected;
  readonly note: string;
}

async function planCorpus(rng: Rng, sceneCount: number): Promise<Layout> {
  const maker = new SceneMaker(rng);
  const requests: RowRequest[] = [];
  const ask = (size: Size, caption: string | null, expected: DemoExpected, note: string): void => {
    requests.push({ ticket: maker.add(size, true), caption, expected, note });
  };

  for (let i = 0; i < sceneCount; i++) ask(goodSize(rng), null, OK, 'good scene');
  // Boundaries the filter must keep: shorter side exactly 200, aspect ratio exactly 3, caption on 10 images.
  ask({ width: 200, height: 300 }, null, OK, 'boundary: shorter side exactly 200, kept');
  ask({ width: 600, height: 200 }, null, OK, 'boundary: aspect ratio exactly 3, kept');
  for (let i = 0; i < DEMO_TEN_TIMES_COUNT; i++) {
    ask(goodSize(rng), DEMO_TEN_TIMES_CAPTION, OK, `boundary: caption used on exactly ${DEMO_TEN_TIMES_COUNT} images, kept`);
  }
  // Filter stage: each row fails exactly one rule.
  for (const size of [
    { width: 150, height: 120 },
    { width: 199, height: 320 },
    { width: 180, height: 180 },
  ]) {
    ask(size, null, filter('image_too_small'), `too small: ${size.width}x${size.height}`);
  }
  for (const size of [
    { width: 960, height: 240 },
    { width: 230, height: 700 },
    { width: 1000, height: 300 },
  ]) {
    ask(size, null, filter('aspect_ratio'), `panorama: ${size.width}x${size.height}`);
  }
  for (const text of DEMO_NOT_ENGLISH) ask(goodSize(rng), text, filter('not_english'), 'caption not in English');
  for (const text of DEMO_MEANINGLESS) {
    ask(goodSize(rng), text, filter('meaningless_text'), 'caption is a file name, URL, hash or placeholder');
  }
  for (let i = 0; i < DEMO_REPEATED_COUNT; i++) {
    ask(goodSize(rng), DEMO_REPEATED_CAPTION, filter('repeated_text'), `caption used on ${DEMO_REPEATED_COUNT} images`);
  }
  // Ingest-stage rows only borrow a description as caption; three scenes become broken bodies.
  const badCaptions = Array.from({ length: 13 }, () => maker.add(goodSize(rng), false, true));
  const broken = Array.from({ length: 3 }, () => maker.add(goodSize(rng), false));
  const noiseSeed = rng.int(1, 2 ** 31);

  await maker.renderAll(4);

  const plans: Plan[] = [];
  const dependents: { plan: Plan; after: Plan }[] = [];
  const hashOf = new Map<Plan, bigint>();
  const ruleOf = new Map<Plan, RuleHashes>();
  const good: Plan[] = [];
  for (const r of requests) {
    const { image, hash, weak, check } = await maker.take(r.ticket);
    const plan: Plan = { caption: r.caption ?? image.spec.caption, expected: r.expected, note: r.note, source: { kind: 'scene', image } };
    hashOf.set(plan, hash);
    ruleOf.set(plan, { hash, weak, ...(check ? { check } : {}) });
    plans.push(plan);
    if (r.note === 'good scene') good.push(plan);
  }
  const badCaption: string[] = [];
  for (const t of badCaptions) badCaption.push((await maker.take(t)).image.spec.caption);
  const brokenScenes: SceneImage[] = [];
  for (const t of broken) brokenScenes.push((await maker.take(t)).image);

  // Duplicates of good scenes, each from its own source. A near duplicate is only accepted if its hash
  // stays within DEMO_MAX_COPY_DISTANCE of the original's.
  const sources = rng.shuffle(good);
  const nextSource = (): Plan => {
    const from = sources.shift();
    if (from === undefined) throw new RangeError('not enough good scenes for the planted duplicates');
    return from;
  };
  const sceneOf = (plan: Plan): SceneImage => (plan.source as { image: SceneImage }).image;
  const rephrase = (from: Plan): string => {
    const text = sceneOf(from).spec.caption.replace(PREFIX_RE, '');
    for (const prefix of ['a copy of ', 'another view of ', 'a reposted picture of ', 'the same picture of ']) {
      if (maker.claim(prefix + text)) return prefix + text;
    }
    throw new Error(`no unused rephrasing left for "${text}"`);
  };
  const nearCopies: { op: 'requality' | 'resize'; count: number }[] = [
    { op: 'requality', count: 4 },
    { op: 'resize', count: 4 },
  ];
  for (const { op, count } of nearCopies) {
    let made = 0;
    while (made < count) {
      const from = nextSource();
      const original = sceneOf(from);
      const { width, height } = original.spec;
      const scale = op === 'resize' ? rng.pick([0.75, 0.8, 0.85]) : 1;
      const quality = op === 'requality' ? rng.int(25, 40) : rng.int(70, 85);
      const size = { width: Math.round(width * scale), height: Math.round(height * scale) };
      if (Math.min(size.width, size.height) < 200) {
        sources.push(from); // still fine for another kind of copy
        continue;
      }
      let img = sharp(original.bytes);
      if (op === 'resize') img = img.resize(size.width, size.height);
      const bytes = await encode(img, 'jpeg', quality);
      const copy = await imageHashes(bytes);
      if (hammingDistance(copy.hash, hashOf.get(from)!) > DEMO_MAX_COPY_DISTANCE || !matchUnderRule(ruleOf.get(from)!, copy, DEFAULT_NEAR_DUP_DISTANCE)) continue;
      const objects = scaleObjects(original.spec.objects, size.width / width, size.height / height);
      const image: SceneImage = { ...body(bytes, 'jpeg'), format: 'jpeg', spec: { ...original.spec, ...size, objects } };
      const plan: Plan = {
        caption: rephrase(from),
        expected: filter('near_duplicate'),
        note:
          op === 'requality'
            ? `near duplicate: re-encoded as JPEG quality ${quality}`
            : `near duplicate: resized to ${size.width}x${size.height}, JPEG quality ${quality}`,
        source: { kind: 'scene', image, copyOf: from },
      };
      dependents.push({ plan, after: from });
      made++;
    }
  }
  for (let i = 0; i < 2; i++) {
    const from = nextSource();
    dependents.push({
      plan: { caption: from.caption, expected: ingest('duplicate_url'), note: 'the same URL as an earlier row', source: { kind: 'same_url', from } },
      after: from,
    });
  }
  for (let i = 0; i < 2; i++) {
    const from = nextSource();
    dependents.push({
      plan: {
        caption: rephrase(from),
        expected: ingest('duplicate_image'),
        note: 'the same bytes as an earlier row, under another URL',
        source: { kind: 'same_bytes', from },
      },
      after: from,
    });
  }

  // Ingest stage: the fetch, decode or manifest parse must fail. Captions are good ones, so only the
  // body (or URL) is at fault.
  const bad = (expected: DemoExpected, note: string, source: Source): void => {
    plans.push({ caption: badCaption.shift()!, expected, note, source });
  };
  const truncated = async (image: SceneImage, format: 'jpeg' | 'png', keep: number): Promise<Body> => {
    const full = await encode(sharp(image.bytes), format, 90);
    return body(full.subarray(0, Math.floor(full.length * keep)), format);
  };
  bad(ingest('http_status'), '404 Not Found', { kind: 'status', status: 404 });
  bad(ingest('http_status'), '404 Not Found', { kind: 'status', status: 404 });
  bad(ingest('http_status'), '403 Forbidden', { kind: 'status', status: 403 });
  bad(ingest('timeout'), 'the server never answers', { kind: 'stall' });
  bad(ingest('timeout'), 'the server sends headers and half the body, then nothing', {
    kind: 'stall_body',
    body: await truncated(brokenScenes[0]!, 'jpeg', 1),
  });
  bad(ingest('not_an_image'), 'an HTML page (text/html) behind an image URL', {
    kind: 'blob',
    body: {
      bytes: Buffer.from(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Photo not available</title></head>\n' +
          '<body><h1>This photo is no longer available</h1><p>It may have been removed by its owner.</p></body></html>\n',
      ),
      ext: 'html',
      contentType: 'text/html; charset=utf-8',
    },
  });
  bad(ingest('not_an_image'), 'plain text served as image/jpeg', {
    kind: 'blob',
    body: { bytes: Buffer.from('Access denied: hotlinking is not allowed.\n'), ext: 'txt', contentType: 'image/jpeg' },
  });
  bad(ingest('corrupt_image'), 'JPEG cut after half its bytes', { kind: 'blob', body: await truncated(brokenScenes[1]!, 'jpeg', 0.5) });
  bad(ingest('corrupt_image'), 'PNG cut after 60% of its bytes', { kind: 'blob', body: await truncated(brokenScenes[2]!, 'png', 0.6) });
  // Uniform noise does not compress: a real, decodable PNG of about 3 bytes a pixel, well over the cap.
  const [ow, oh] = [1100, 900];
  const noise = new Rng(noiseSeed).fillBytes(Buffer.alloc(ow * oh * 3));
  const oversized = body(await sharp(noise, { raw: { width: ow, height: oh, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer(), 'png');
  const mib = (oversized.bytes.length / 2 ** 20).toFixed(1);
  bad(ingest('body_too_large'), `a ${mib} MiB PNG, with Content-Length`, { kind: 'blob', body: oversized });
  bad(ingest('body_too_large'), `the same ${mib} MiB PNG sent chunked, without Content-Length`, {
    kind: 'blob',
    body: oversized,
    chunked: true,
  });
  bad(ingest('malformed_row'), 'empty URL field', { kind: 'literal', url: '' });
  bad(ingest('malformed_row'), 'URL field that does not parse', { kind: 'literal', url: 'http://[bad host/photo.jpg' });
  if (badCaption.length !== 0) throw new Error('bad-row caption count out of step');

  return { plans, dependents };
}


/** Shuffles, then puts each copy in the last quarter, after its original, so "seen first" is clear. */
function order(rng: Rng, layout: Layout): Plan[] {
  const out = rng.shuffle(layout.plans);
  for (const { plan, after } of layout.dependents) {
    const total = out.length;
    const lo = Math.max(out.indexOf(after) + 1, Math.floor(total * 0.75));
    out.splice(rng.int(lo, total), 0, plan);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Writing.

function pad(n: number): string {
  return String(n).padStart(4, '0');
}

/**
 * Writes the demo corpus into `dir` (its `images/` and `bad/` folders are replaced) and returns its
 * description. Files: images, bad bodies, `corpus.json` (this description, without `dir`) and
 * `expected.json` (one outcome per manifest row). Write the manifest itself with writeDemoManifest
 * once the server's base URL is known.
 */
export async function generateDemoCorpus(dir: string, opts: DemoCorpusOptions = {}): Promise<DemoCorpus> {
  rejectUnknownKeys('demo corpus', opts, DEFAULTS);
  const o = { ...DEFAULTS, ...opts };
  const seed = intOption('seed', o.seed, 0, 2 ** 32 - 1);
  const sceneCount = intOption('scenes', o.scenes, DEMO_MIN_SCENES, 100_000);

  const rng = new Rng(seed);
  const plans = order(rng, await planCorpus(rng, sceneCount));

  await rm(join(dir, 'images'), { recursive: true, force: true });
  await rm(join(dir, 'bad'), { recursive: true, force: true });
  await makeDir(join(dir, 'images'), 'dir');
  await makeDir(join(dir, 'bad'), 'dir');

  const toWrite = new Map<string, Buffer>();
  const fileOf = new Map<Body, string>();
  /** Names a body's file after the first row that serves it. */
  const fileFor = (b: Body, folder: 'images' | 'bad', stem: string): string => {
    let file = fileOf.get(b);
    if (file === undefined) {
      file = `${folder}/${stem}.${b.ext}`;
      fileOf.set(b, file);
      toWrite.set(file, b.bytes);
    }
    return file;
  };

  const scenes: DemoScene[] = [];
  const sceneOf = new Map<Plan, DemoScene>();
  const urlOf = new Map<Plan, string>();
  const routes: DemoRoute[] = [];
  const rows: DemoRow[] = [];
  plans.forEach((plan, i) => {
    const s = plan.source;
    let url = `/images/s${pad(i)}.jpg`;
    let served = true;
    let sceneId = '';
    switch (s.kind) {
      case 'scene': {
        sceneId = `s${pad(i)}`;
        const file = fileFor(s.image, 'images', sceneId);
        url = '/' + file;
        const { spec } = s.image;
        const scene: DemoScene = {
          id: sceneId,
          file,
          format: s.image.format,
          width: spec.width,
          height: spec.height,
          background: spec.background,
          objects: spec.objects,
          main: spec.objects[0]!,
          description: spec.caption,
          ...(s.copyOf !== undefined ? { copyOf: sceneOf.get(s.copyOf)!.id } : {}),
        };
        scenes.push(scene);
        sceneOf.set(plan, scene);
        routes.push({ kind: 'file', path: url, file, contentType: s.image.contentType });
        break;
      }
      case 'same_url':
        url = urlOf.get(s.from)!;
        sceneId = sceneOf.get(s.from)!.id;
        break;
      case 'same_bytes': {
        const scene = sceneOf.get(s.from)!;
        const image = (s.from.source as { image: SceneImage }).image;
        url = `/images/s${pad(i)}.${image.ext}`;
        sceneId = scene.id;
        routes.push({ kind: 'file', path: url, file: scene.file, contentType: image.contentType });
        break;
      }
      case 'status':
        // Any unknown path is a 404 anyway; listing it keeps the server's table complete.
        routes.push({ kind: 'status', path: url, status: s.status });
        break;
      case 'stall':
        routes.push({ kind: 'stall', path: url });
        break;
      case 'stall_body':
        routes.push({ kind: 'stall_body', path: url, file: fileFor(s.body, 'bad', `r${pad(i)}`), contentType: s.body.contentType });
        break;
      case 'blob': {
        const file = fileFor(s.body, 'bad', `r${pad(i)}`);
        routes.push({ kind: 'file', path: url, file, contentType: s.body.contentType, ...(s.chunked ? { chunked: true } : {}) });
        break;
      }
      case 'literal':
        url = s.url;
        served = false;
        break;
    }
    urlOf.set(plan, url);
    if (/[\t\r\n]/.test(plan.caption)) throw new Error(`caption of row ${i} contains a tab or newline`);
    rows.push({ row: i, url, served, caption: plan.caption, sceneId, expected: plan.expected, note: plan.note });
  });

  await Promise.all([...toWrite].map(([file, bytes]) => writeFile(join(dir, file), bytes)));

  const summary: Record<string, number> = {};
  for (const r of rows) {
    const k = r.expected.status === 'ok' ? 'ok' : `${r.expected.stage}:${r.expected.reason}`;
    summary[k] = (summary[k] ?? 0) + 1;
  }
  const files = [...toWrite.keys(), CORPUS_FILE, EXPECTED_FILE].sort();
  const corpus: DemoCorpus = {
    dir,
    seed,
    maxBodyBytes: DEMO_MAX_BODY_BYTES,
    timeoutMs: DEMO_TIMEOUT_MS,
    rows,
    routes,
    scenes,
    files,
    summary,
    nearDupRule: demoNearDupRule(),
  };
  const { dir: _dir, ...stored } = corpus;
  await writeFile(join(dir, CORPUS_FILE), JSON.stringify(stored, null, 1) + '\n');
  const expected = rows.map((r) => ({ row: r.row, scene_id: r.sceneId, ...r.expected, note: r.note }));
  await writeFile(join(dir, EXPECTED_FILE), JSON.stringify(expected, null, 1) + '\n');
  return corpus;
}

/** Reads back a corpus written by generateDemoCorpus. */
export async function loadDemoCorpus(dir: string): Promise<DemoCorpus> {
  const path = join(dir, CORPUS_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new FilipError('FILIP_ERR_MANIFEST', 'no demo corpus here (generate one first)', { file: path }, { cause });
  }
  return { ...(JSON.parse(text) as Omit<DemoCorpus, 'dir'>), dir };
}

/** The URL a row's manifest line carries, for a server at baseUrl (no trailing slash needed). */
export function demoRowUrl(row: DemoRow, baseUrl: string): string {
  return row.served ? baseUrl.replace(/\/+$/, '') + row.url : row.url;
}

export const DEMO_MANIFEST_COLUMNS = ['url', 'caption', 'scene_id'] as const;

/** Writes the manifest TSV (header url, caption, scene_id) with real URLs on baseUrl. */
export async function writeDemoManifest(corpus: DemoCorpus, baseUrl: string, path: string): Promise<void> {
  const lines = [DEMO_MANIFEST_COLUMNS.join('\t')];
  for (const row of corpus.rows) lines.push([demoRowUrl(row, baseUrl), row.caption, row.sceneId].join('\t'));
  await makeDir(dirname(path), 'dir');
  await writeFile(path, lines.join('\n') + '\n');
}
