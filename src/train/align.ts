// The word-patch alignment picture of the FILIP paper (its figure of "a photo of a {label}."): each
// image patch is labelled with the position of the prompt token it matches best (the largest cosine
// between the patch's token and the text's real tokens; [BOS] is position 0), and patches whose best
// token belongs to a highlighted word (by default the prompt's last word, the label in "a photo of a
// {label}.") get a coloured box, one colour per word. The picture is the image as the model sees it
// (cover-resized and centre-cropped), drawn at `cell` pixels per patch, with a legend strip below
// listing the prompt's tokens; written as PNG with sharp compositing an SVG overlay.

import { readFile, writeFile } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';

import sharp from 'sharp';

import { FilipError } from '../core/errors.js';
import { choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import { BACKEND_CHOICES, selectBackend, type BackendChoice } from './backend.js';
import { bestTokens, encodeImages, encodeTexts, imagePixels, loadTrainedModel, wordTokenPositions, type TrainedModel } from './eval.js';
import { makeDir } from '../core/make-dir.js';

/** Box colours of the highlighted words, in order; saturated hues the demo's shapes never use. */
export const HIGHLIGHT_COLOURS = ['#ff00ff', '#00ffff', '#00ff00', '#ff8800', '#0000ff', '#ffff00'] as const;

/** Height of one row of the legend strip under the picture, in pixels (long prompts wrap to more rows). */
export const LEGEND_HEIGHT = 36;

export interface AlignOptions {
  /** A run folder (its newest checkpoint) or a checkpoint folder. Required. */
  readonly checkpoint: string;
  /** Image files to draw (any format sharp reads). Required, at least one. */
  readonly images: readonly string[];
  /** The text whose tokens the patches are matched with, e.g. "a photo of a red circle.". Required. */
  readonly prompt: string;
  /**
   * Folder the pictures are written to, as `<image name>.align.png`.
   * @default '.'
   */
  readonly out: string;
  /**
   * Words of the prompt whose tokens get coloured boxes (at most 6); empty highlights the prompt's last word.
   * @default []
   */
  readonly highlight: readonly string[];
  /**
   * Output pixels per patch side.
   * @default 64
   */
  readonly cell: number;
  /**
   * Compute backend (`BACKEND_CHOICES`).
   * @default 'auto'
   */
  readonly backend: BackendChoice;
}

export type AlignInput = Partial<AlignOptions> & Pick<AlignOptions, 'checkpoint' | 'images' | 'prompt'>;

export const DEFAULT_ALIGN_OPTIONS: Omit<AlignOptions, 'checkpoint' | 'images' | 'prompt'> = Object.freeze({
  out: '.',
  highlight: Object.freeze([]) as readonly string[],
  cell: 64,
  backend: 'auto' as BackendChoice,
});

export function resolveAlignOptions(input: AlignInput): AlignOptions {
  if (input === null || typeof input !== 'object') throw invalid('align options', 'an object', input);
  rejectUnknownKeys('align', input, { checkpoint: '', images: [], prompt: '', ...DEFAULT_ALIGN_OPTIONS });
  const given = Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined));
  const o = { ...DEFAULT_ALIGN_OPTIONS, ...given } as AlignOptions;
  if (!Array.isArray(o.images) || o.images.length === 0) throw invalid('images', 'a non-empty list of image files', o.images);
  if (!Array.isArray(o.highlight) || o.highlight.length > HIGHLIGHT_COLOURS.length) {
    throw invalid('highlight', `a list of at most ${HIGHLIGHT_COLOURS.length} words`, o.highlight);
  }
  return Object.freeze({
    checkpoint: stringOption('checkpoint', o.checkpoint),
    images: Object.freeze(o.images.map((f, i) => stringOption(`images[${i}]`, f))),
    prompt: stringOption('prompt', o.prompt),
    out: stringOption('out', o.out),
    highlight: Object.freeze(o.highlight.map((w, i) => stringOption(`highlight[${i}]`, w))),
    cell: intOption('cell', o.cell, 8, 512),
    backend: choiceOption('backend', o.backend, BACKEND_CHOICES),
  });
}

/** What the picture shows, as data. */
export interface AlignmentMap {
  /** Patches per side. */
  readonly grid: number;
  /** The prompt's real tokens in order ([BOS] first, [EOS] last), as text. */
  readonly tokens: readonly string[];
  /** For each patch (row-major), the position of its best token in `tokens`. */
  readonly best: readonly number[];
  /** Highlighted words, their token positions and box colours. */
  readonly highlights: readonly { readonly word: string; readonly positions: readonly number[]; readonly colour: string }[];
}

/** The prompt's last word: the label in "a photo of a {label}.". */
function lastWord(prompt: string): string {
  const words = prompt.match(/[\p{L}\p{N}]+/gu) ?? [];
  return words.at(-1) ?? prompt;
}

/** Computes the alignment of one encoded image with the prompt. */
export async function alignImage(model: TrainedModel, image: Buffer, prompt: string, highlight: readonly string[] = []): Promise<AlignmentMap> {
  const { net, tokenizer, config } = model;
  const imgCodes = encodeImages(net, await imagePixels([image], config.imageSize), 1);
  const txtCodes = encodeTexts(net, tokenizer, [prompt]);
  const best = bestTokens(imgCodes, 0, txtCodes, 0);
  const n = txtCodes.lengths[0]!;
  const ids = tokenizer.tokenize([prompt], config.text.contextLength).ids.subarray(0, n);
  const tokens = Array.from(ids, (id, k) => (k === 0 ? '<start>' : k === n - 1 ? '<end>' : tokenizer.decode([id]).trim()));
  const words = highlight.length > 0 ? highlight : [lastWord(prompt)];
  const highlights = words.map((word, k) => {
    const positions = wordTokenPositions(tokenizer, prompt, word, config.text.contextLength);
    if (positions.length === 0) {
      throw new FilipError('FILIP_ERR_INVALID_OPTION', `the word "${word}" is not in the prompt "${prompt}"`, { field: 'highlight' });
    }
    return { word, positions, colour: HIGHLIGHT_COLOURS[k]! };
  });
  return { grid: config.imageSize / config.patchSize, tokens, best: Array.from(best), highlights };
}

const escapeXml = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The overlay: grid lines, every patch's token position as a number in its centre, a box (stroke
 * inside the cell) around patches matched to a highlighted word, and the legend below.
 */
const LEGEND_FONT = 14;
/** Estimated width of a legend character in DejaVu Sans at LEGEND_FONT (its average advance is ~0.6 em). */
const LEGEND_CHAR = LEGEND_FONT * 0.7;

/**
 * Where the legend's labels go: left to right, a new row of LEGEND_HEIGHT pixels when the next label
 * would pass the picture's width (a label wider than the picture gets a row to itself). `height` is
 * the legend strip's, at least one row.
 */
export function legendLayout(tokens: readonly string[], side: number): { items: { pos: number; label: string; x: number; row: number; width: number }[]; height: number } {
  const items: { pos: number; label: string; x: number; row: number; width: number }[] = [];
  let x = 6;
  let row = 0;
  tokens.forEach((text, pos) => {
    const label = `${pos}:${text}`;
    const width = label.length * LEGEND_CHAR;
    if (x > 6 && x + width > side - 4) {
      row++;
      x = 6;
    }
    items.push({ pos, label, x, row, width });
    x += width + 12;
  });
  return { items, height: (row + 1) * LEGEND_HEIGHT };
}

export function alignmentSvg(map: AlignmentMap, cell: number): string {
  const side = map.grid * cell;
  const colourOf = new Map<number, string>();
  for (const h of map.highlights) for (const p of h.positions) if (!colourOf.has(p)) colourOf.set(p, h.colour);
  const stroke = Math.max(2, Math.round(cell / 16));
  const font = Math.max(8, Math.round(cell * 0.38));
  const parts: string[] = [];
  for (let k = 1; k < map.grid; k++) {
    parts.push(`<line x1="${k * cell}" y1="0" x2="${k * cell}" y2="${side}" stroke="#ffffff" stroke-opacity="0.6" stroke-width="1"/>`);
    parts.push(`<line x1="0" y1="${k * cell}" x2="${side}" y2="${k * cell}" stroke="#ffffff" stroke-opacity="0.6" stroke-width="1"/>`);
  }
  map.best.forEach((pos, p) => {
    const x = (p % map.grid) * cell;
    const y = Math.floor(p / map.grid) * cell;
    const colour = colourOf.get(pos);
    if (colour !== undefined) {
      const h = stroke / 2;
      parts.push(`<rect x="${x + h}" y="${y + h}" width="${cell - stroke}" height="${cell - stroke}" fill="${colour}" fill-opacity="0.25" stroke="${colour}" stroke-width="${stroke}"/>`);
    }
    // A dark tab behind a white number stays readable over any picture.
    const tab = font * (String(pos).length * 0.62 + 0.5);
    parts.push(`<rect x="${x + (cell - tab) / 2}" y="${y + cell / 2 - font * 0.65}" width="${tab}" height="${font * 1.3}" rx="${font * 0.25}" fill="#000000" fill-opacity="0.55"/>`);
    parts.push(
      `<text class="patch" data-patch="${p}" x="${x + cell / 2}" y="${y + cell / 2}" font-family="DejaVu Sans, sans-serif" font-size="${font}" font-weight="bold" ` +
        `text-anchor="middle" dominant-baseline="central" fill="#ffffff">${pos}</text>`,
    );
  });
  // Legend: "0:<start>  1:a  2:red ..." with highlighted tokens in their colour, wrapped to the width.
  const legend = legendLayout(map.tokens, side);
  for (const item of legend.items) {
    const y = side + item.row * LEGEND_HEIGHT;
    parts.push(
      `<text x="${item.x}" y="${y + LEGEND_HEIGHT / 2}" font-family="DejaVu Sans, sans-serif" font-size="${LEGEND_FONT}" dominant-baseline="central" ` +
        `fill="#000000"${colourOf.has(item.pos) ? ' font-weight="bold"' : ''}>${escapeXml(item.label)}</text>`,
    );
    if (colourOf.has(item.pos)) {
      parts.push(`<rect x="${item.x - 2}" y="${y + 6}" width="${item.width + 4}" height="${LEGEND_HEIGHT - 12}" fill="none" stroke="${colourOf.get(item.pos)}" stroke-width="2"/>`);
    }
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${side}" height="${side + legend.height}">${parts.join('')}</svg>`;
}

/** The picture as PNG: the image cover-resized and centre-cropped to grid*cell, the overlay on top. */
export async function renderAlignment(image: Buffer, map: AlignmentMap, cell: number): Promise<Buffer> {
  const side = map.grid * cell;
  return sharp(image, { failOn: 'none' })
    .rotate()
    .resize(side, side, { fit: 'cover', position: 'centre', kernel: 'cubic' })
    .flatten({ background: '#ffffff' })
    .extend({ bottom: legendLayout(map.tokens, side).height, background: '#ffffff' })
    .composite([{ input: Buffer.from(alignmentSvg(map, cell)), top: 0, left: 0 }])
    .png()
    .toBuffer();
}

export interface AlignResult {
  readonly image: string;
  /** The PNG written. */
  readonly file: string;
  readonly map: AlignmentMap;
}

/** `filip align`: one picture per image, written into `out`. */
export async function runAlign(input: AlignInput, log: (line: string) => void = () => undefined): Promise<AlignResult[]> {
  const o = resolveAlignOptions(input);
  const backend = await selectBackend(o.backend);
  log(backend.reason);
  const model = await loadTrainedModel(o.checkpoint);
  try {
    await makeDir(o.out, 'out');
    const results: AlignResult[] = [];
    for (const file of o.images) {
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (error) {
        throw new FilipError('FILIP_ERR_NO_INPUT', `cannot read the image: ${(error as Error).message}`, { file }, { cause: error });
      }
      let map: AlignmentMap;
      try {
        map = await alignImage(model, bytes, o.prompt, o.highlight);
      } catch (error) {
        if (!(error instanceof FilipError) || error.code !== 'FILIP_ERR_SHARD') throw error;
        throw new FilipError('FILIP_ERR_NO_INPUT', `not an image that can be decoded: ${(error.cause as Error | undefined)?.message ?? error.message}`, { file }, { cause: error });
      }
      const outFile = join(o.out, `${basename(file, extname(file))}.align.png`);
      await writeFile(outFile, await renderAlignment(bytes, map, o.cell));
      const counts = map.highlights.map((h) => `${h.word} ${map.best.filter((b) => h.positions.includes(b)).length}`).join(', ');
      log(`${outFile}: ${map.grid}x${map.grid} patches; patches on the highlighted words: ${counts} of ${map.best.length}`);
      results.push({ image: file, file: outFile, map });
    }
    return results;
  } finally {
    model.net.dispose();
  }
}
