// Synthetic scenes for the demo corpus: a few flat shapes on a light background, drawn as SVG and
// described by an English caption that is true of the picture (positions and relations are computed
// from the geometry). The layout keeps exact bounding boxes so a trainer can score localisation.

import sharp from 'sharp';
import { Rng } from './random.js';

/** Shape vocabulary. Kept small so zero-shot evaluation has a closed label set. */
export const DEMO_SHAPES = ['circle', 'square', 'triangle', 'star', 'diamond'] as const;
export type DemoShape = (typeof DEMO_SHAPES)[number];

/** Colour vocabulary: name -> base sRGB fill (jittered a little per object). */
export const DEMO_COLOURS = {
  red: [214, 39, 40],
  green: [44, 160, 44],
  blue: [31, 95, 191],
  yellow: [240, 196, 25],
  purple: [142, 68, 173],
  orange: [255, 127, 14],
} as const satisfies Record<string, readonly [number, number, number]>;
export type DemoColour = keyof typeof DEMO_COLOURS;
export const DEMO_COLOUR_NAMES = Object.keys(DEMO_COLOURS) as DemoColour[];

export const DEMO_SIZES = ['small', 'large'] as const;
export type DemoSize = (typeof DEMO_SIZES)[number];

/** Background fills: caption name -> sRGB. All light, so every shape colour stands out. */
const BACKGROUNDS = {
  white: [255, 255, 255],
  'light grey': [232, 232, 232],
  cream: [247, 241, 222],
  'pale blue': [226, 236, 248],
  'pale green': [228, 242, 228],
  'pale pink': [248, 230, 234],
} as const satisfies Record<string, readonly [number, number, number]>;
type BackgroundName = keyof typeof BACKGROUNDS;
const BACKGROUND_NAMES = Object.keys(BACKGROUNDS) as BackgroundName[];

export type BackgroundStyle = 'plain' | 'gradient' | 'texture';

/** Axis-aligned box in pixels of the image as stored: x, y of the top-left corner. */
export interface BBox {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
}

export interface DemoObject {
  readonly shape: DemoShape;
  readonly colour: DemoColour;
  readonly size: DemoSize;
  readonly bbox: BBox;
}

export interface DemoBackground {
  readonly style: BackgroundStyle;
  /** Caption name of the (main) background colour, e.g. "light grey". */
  readonly colour: string;
}

/** A drawable scene: what it shows and a caption that describes it. */
export interface SceneSpec {
  readonly width: number;
  readonly height: number;
  readonly background: DemoBackground;
  /** objects[0] is the main object: the caption names it first. */
  readonly objects: readonly DemoObject[];
  readonly caption: string;
  /** The picture; for a textured background only the shapes, over transparency. */
  readonly svg: string;
  readonly texture?: TextureSpec;
}

/** A light value-noise texture: base colour +- amplitude, features about `cell` pixels wide. */
export interface TextureSpec {
  readonly rgb: readonly [number, number, number];
  readonly seed: number;
  readonly cell: number;
  readonly amplitude: number;
}

interface Placed {
  readonly shape: DemoShape;
  readonly colour: DemoColour;
  readonly size: DemoSize;
  readonly rgb: readonly [number, number, number];
  /** Exact extent of the drawn geometry (floating point). */
  readonly x0: number;
  readonly y0: number;
  readonly x1: number;
  readonly y1: number;
  readonly points: readonly (readonly [number, number])[] | null;
}

/** Vertices of a polygon shape whose bounding box is [x0, x0+w] x [y0, y0+h]; null for a circle/square. */
function polygon(shape: DemoShape, x0: number, y0: number, w: number, h: number): [number, number][] | null {
  switch (shape) {
    case 'triangle':
      return [
        [x0 + w / 2, y0],
        [x0 + w, y0 + h],
        [x0, y0 + h],
      ];
    case 'diamond':
      return [
        [x0 + w / 2, y0],
        [x0 + w, y0 + h / 2],
        [x0 + w / 2, y0 + h],
        [x0, y0 + h / 2],
      ];
    case 'star': {
      // A regular 5-point star, then scaled to fill the box exactly.
      const raw: [number, number][] = [];
      for (let k = 0; k < 10; k++) {
        const r = k % 2 === 0 ? 1 : 0.45;
        const a = -Math.PI / 2 + (k * Math.PI) / 5;
        raw.push([r * Math.cos(a), r * Math.sin(a)]);
      }
      const xs = raw.map((p) => p[0]);
      const ys = raw.map((p) => p[1]);
      const minX = Math.min(...xs);
      const maxX = Math.max(...xs);
      const minY = Math.min(...ys);
      const maxY = Math.max(...ys);
      return raw.map(([px, py]) => [x0 + ((px - minX) / (maxX - minX)) * w, y0 + ((py - minY) / (maxY - minY)) * h]);
    }
    default:
      return null;
  }
}

/** Height / width of each shape's box, so a triangle or star looks regular, not squashed. */
const SHAPE_ASPECT: Record<DemoShape, number> = {
  circle: 1,
  square: 1,
  triangle: 0.87,
  star: 0.95,
  diamond: 1.2,
};

export interface ObjectRequest {
  readonly shape: DemoShape;
  readonly colour: DemoColour;
  readonly size: DemoSize;
}

export function randomObject(rng: Rng): ObjectRequest {
  return { shape: rng.pick(DEMO_SHAPES), colour: rng.pick(DEMO_COLOUR_NAMES), size: rng.pick(DEMO_SIZES) };
}

function jitter(rng: Rng, rgb: readonly [number, number, number], amount: number): [number, number, number] {
  return rgb.map((c) => Math.max(0, Math.min(255, Math.round(c + rng.float(-amount, amount))))) as [
    number,
    number,
    number,
  ];
}

function hex(rgb: readonly [number, number, number]): string {
  return '#' + rgb.map((c) => c.toString(16).padStart(2, '0')).join('');
}

function fmt(n: number): string {
  return (Math.round(n * 100) / 100).toString();
}

/**
 * Places the requested objects without overlap. Returns null if they do not fit after some tries;
 * the caller then asks for fewer or smaller objects.
 */
function place(rng: Rng, width: number, height: number, requests: readonly ObjectRequest[]): Placed[] | null {
  const short = Math.min(width, height);
  const margin = Math.max(4, Math.round(short * 0.03));
  const placed: Placed[] = [];
  for (const req of requests) {
    let done = false;
    for (let attempt = 0; attempt < 60 && !done; attempt++) {
      const extent = short * (req.size === 'large' ? rng.float(0.36, 0.5) : rng.float(0.16, 0.24));
      const aspect = SHAPE_ASPECT[req.shape];
      const w = aspect >= 1 ? extent / aspect : extent;
      const h = w * aspect;
      if (w + 2 * margin > width || h + 2 * margin > height) continue;
      const x0 = rng.float(margin, width - margin - w);
      const y0 = rng.float(margin, height - margin - h);
      const gap = margin;
      const clash = placed.some(
        (p) => x0 < p.x1 + gap && x0 + w > p.x0 - gap && y0 < p.y1 + gap && y0 + h > p.y0 - gap,
      );
      if (clash) continue;
      placed.push({
        ...req,
        rgb: jitter(rng, DEMO_COLOURS[req.colour], 12),
        x0,
        y0,
        x1: x0 + w,
        y1: y0 + h,
        points: polygon(req.shape, x0, y0, w, h),
      });
      done = true;
    }
    if (!done) return null;
  }
  return placed;
}

function shapeSvg(p: Placed): string {
  const fill = hex(p.rgb);
  if (p.shape === 'circle') {
    const r = (p.x1 - p.x0) / 2;
    return `<circle cx="${fmt(p.x0 + r)}" cy="${fmt(p.y0 + r)}" r="${fmt(r)}" fill="${fill}"/>`;
  }
  if (p.shape === 'square') {
    return `<rect x="${fmt(p.x0)}" y="${fmt(p.y0)}" width="${fmt(p.x1 - p.x0)}" height="${fmt(p.y1 - p.y0)}" fill="${fill}"/>`;
  }
  const pts = (p.points ?? []).map(([x, y]) => `${fmt(x)},${fmt(y)}`).join(' ');
  return `<polygon points="${pts}" fill="${fill}"/>`;
}

/** SVG for a plain or gradient background. (A texture is drawn as raw pixels by renderScene: SVG
 * feTurbulence costs about 100 ms a scene.) */
function backgroundSvg(rng: Rng, width: number, height: number, style: 'plain' | 'gradient', base: BackgroundName): string {
  const rgb = jitter(rng, BACKGROUNDS[base], 4);
  if (style === 'plain') return `<rect width="${width}" height="${height}" fill="${hex(rgb)}"/>`;
  const other = jitter(rng, BACKGROUNDS[rng.pick(BACKGROUND_NAMES)], 4);
  const angle = rng.float(0, Math.PI * 2);
  const dx = Math.cos(angle) / 2;
  const dy = Math.sin(angle) / 2;
  return (
    `<defs><linearGradient id="g" x1="${fmt(0.5 - dx)}" y1="${fmt(0.5 - dy)}" x2="${fmt(0.5 + dx)}" y2="${fmt(0.5 + dy)}">` +
    `<stop offset="0" stop-color="${hex(rgb)}"/><stop offset="1" stop-color="${hex(other)}"/></linearGradient></defs>` +
    `<rect width="${width}" height="${height}" fill="url(#g)"/>`
  );
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

function nounPhrase(p: Placed, withSize: boolean): string {
  const words = withSize ? `${p.size} ${p.colour} ${p.shape}` : `${p.colour} ${p.shape}`;
  return `${article(words)} ${words}`;
}

/** Where an object's centre lies, in thirds of the image. */
function positionPhrase(p: Placed, width: number, height: number): string {
  const cx = (p.x0 + p.x1) / 2 / width;
  const cy = (p.y0 + p.y1) / 2 / height;
  const col = cx < 1 / 3 ? 'left' : cx > 2 / 3 ? 'right' : 'centre';
  const row = cy < 1 / 3 ? 'top' : cy > 2 / 3 ? 'bottom' : 'middle';
  if (row === 'middle') return col === 'centre' ? 'in the centre' : `on the ${col}`;
  if (col === 'centre') return `at the ${row}`;
  return `in the ${row} ${col} corner`;
}

/** Relation of a to b, or null when neither axis clearly dominates (the caption then avoids one). */
function relation(a: Placed, b: Placed): string | null {
  const dx = (b.x0 + b.x1) / 2 - (a.x0 + a.x1) / 2;
  const dy = (b.y0 + b.y1) / 2 - (a.y0 + a.y1) / 2;
  if (Math.abs(dy) > 1.5 * Math.abs(dx)) return dy > 0 ? 'above' : 'below';
  if (Math.abs(dx) > 1.5 * Math.abs(dy)) return dx > 0 ? 'to the left of' : 'to the right of';
  return null;
}

const PREFIXES = ['', '', '', 'a drawing of ', 'an illustration of ', 'a simple picture of ', 'clip art of ', 'a diagram with '];

function describe(rng: Rng, objects: readonly Placed[], width: number, height: number, bg: DemoBackground): string {
  const [a, b, c] = objects as [Placed, Placed | undefined, Placed | undefined];
  let text: string;
  if (b === undefined) {
    text = `${nounPhrase(a, true)} ${positionPhrase(a, width, height)}`;
  } else {
    const rel = relation(a, b);
    const first = nounPhrase(a, rng.chance(0.5));
    const second = nounPhrase(b, rng.chance(0.6));
    text = rel === null ? `${first} and ${second}` : `${first} ${rel} ${second}`;
    if (c !== undefined) text += `, and ${nounPhrase(c, rng.chance(0.5))} ${positionPhrase(c, width, height)}`;
  }
  if (rng.chance(0.5)) {
    const name = bg.style === 'gradient' ? 'soft gradient' : bg.style === 'texture' ? `textured ${bg.colour}` : bg.colour;
    text += ` on ${article(name)} ${name} background`;
  }
  return rng.pick(PREFIXES) + text;
}

/** Random objects, no two with the same shape and colour, so "the red circle" names one thing. */
function distinctObjects(rng: Rng, count: number): ObjectRequest[] {
  const out: ObjectRequest[] = [];
  while (out.length < count) {
    const o = randomObject(rng);
    if (!out.some((p) => p.shape === o.shape && p.colour === o.colour)) out.push(o);
  }
  return out;
}

export interface SceneRequest {
  readonly width: number;
  readonly height: number;
  /** Objects to draw; when absent, 1-3 random ones. */
  readonly objects?: readonly ObjectRequest[];
}

/** Lays out and describes one scene. Consumes a variable number of draws from rng (deterministically). */
export function planScene(rng: Rng, req: SceneRequest): SceneSpec {
  const { width, height } = req;
  const style: BackgroundStyle = rng.pick(['plain', 'plain', 'gradient', 'texture'] as const);
  const base = rng.pick(BACKGROUND_NAMES);
  const background: DemoBackground = { style, colour: base };
  let bgSvg = '';
  let texture: TextureSpec | undefined;
  if (style === 'texture') {
    texture = { rgb: jitter(rng, BACKGROUNDS[base], 4), seed: rng.int(1, 2 ** 31), cell: rng.int(6, 24), amplitude: rng.int(8, 16) };
  } else {
    bgSvg = backgroundSvg(rng, width, height, style, base);
  }
  let wanted: ObjectRequest[] =
    req.objects !== undefined ? [...req.objects] : distinctObjects(rng, rng.pick([1, 2, 2, 3]));
  let placed = place(rng, width, height, wanted);
  for (let tries = 0; placed === null; tries++) {
    if (tries > 20) throw new RangeError(`cannot lay out any shape in ${width}x${height}`);
    // Too crowded: drop the last object, or shrink everything once only one is left.
    wanted = wanted.length > 1 ? wanted.slice(0, -1) : [{ ...wanted[0]!, size: 'small' }];
    placed = place(rng, width, height, wanted);
  }
  const caption = describe(rng, placed, width, height, background);
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    bgSvg +
    placed.map(shapeSvg).join('') +
    `</svg>`;
  const objects: DemoObject[] = placed.map((p) => ({
    shape: p.shape,
    colour: p.colour,
    size: p.size,
    bbox: toBox(p, width, height),
  }));
  return { width, height, background, objects, caption, svg, ...(texture !== undefined ? { texture } : {}) };
}

function toBox(p: Placed, width: number, height: number): BBox {
  const x = Math.max(0, Math.floor(p.x0));
  const y = Math.max(0, Math.floor(p.y0));
  const x1 = Math.min(width, Math.ceil(p.x1));
  const y1 = Math.min(height, Math.ceil(p.y1));
  return { x, y, width: x1 - x, height: y1 - y };
}

/** Scales boxes for a resized copy of a scene. */
export function scaleObjects(objects: readonly DemoObject[], sx: number, sy: number): DemoObject[] {
  return objects.map((o) => {
    const x = Math.floor(o.bbox.x * sx);
    const y = Math.floor(o.bbox.y * sy);
    return {
      ...o,
      bbox: { x, y, width: Math.ceil((o.bbox.x + o.bbox.width) * sx) - x, height: Math.ceil((o.bbox.y + o.bbox.height) * sy) - y },
    };
  });
}

/** Adds weight x smooth value noise with features about `cell` pixels wide into `acc` (width x height). */
function addValueNoise(rng: Rng, acc: Float32Array, width: number, height: number, cell: number, weight: number): void {
  const gw = Math.ceil(width / cell) + 2;
  const gh = Math.ceil(height / cell) + 2;
  const grid = new Float32Array(gw * gh);
  for (let i = 0; i < grid.length; i++) grid[i] = (rng.next() * 2 - 1) * weight;
  const ix = new Int32Array(width);
  const su = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const f = x / cell;
    ix[x] = Math.floor(f);
    const u = f - ix[x]!;
    su[x] = u * u * (3 - 2 * u);
  }
  for (let y = 0; y < height; y++) {
    const f = y / cell;
    const iy = Math.floor(f);
    const v = f - iy;
    const sv = v * v * (3 - 2 * v);
    const r0 = iy * gw;
    const r1 = r0 + gw;
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const i = ix[x]!;
      const u = su[x]!;
      const top = grid[r0 + i]! + (grid[r0 + i + 1]! - grid[r0 + i]!) * u;
      const bottom = grid[r1 + i]! + (grid[r1 + i + 1]! - grid[r1 + i]!) * u;
      acc[row + x]! += top + (bottom - top) * sv;
    }
  }
}

/** Raw RGB pixels of a texture: two octaves of value noise plus a little per-pixel grain, in grey. */
function textureRaw(t: TextureSpec, width: number, height: number): Buffer {
  const rng = new Rng(t.seed);
  const acc = new Float32Array(width * height);
  addValueNoise(rng, acc, width, height, t.cell, 0.65 * t.amplitude);
  addValueNoise(rng, acc, width, height, Math.max(2, t.cell / 3), 0.35 * t.amplitude);
  const out = Buffer.alloc(width * height * 3);
  const [r, g, b] = t.rgb;
  for (let i = 0, o = 0; i < acc.length; i++) {
    const n = acc[i]! + (rng.next() * 2 - 1) * 0.25 * t.amplitude;
    out[o++] = Math.max(0, Math.min(255, Math.round(r + n)));
    out[o++] = Math.max(0, Math.min(255, Math.round(g + n)));
    out[o++] = Math.max(0, Math.min(255, Math.round(b + n)));
  }
  return out;
}

/** The scene as an unencoded sharp pipeline (the caller picks the format). */
export function renderScene(spec: SceneSpec): sharp.Sharp {
  const svg = Buffer.from(spec.svg);
  if (spec.texture === undefined) return sharp(svg);
  const raw = textureRaw(spec.texture, spec.width, spec.height);
  return sharp(raw, { raw: { width: spec.width, height: spec.height, channels: 3 } }).composite([{ input: svg }]);
}
