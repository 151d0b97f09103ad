// Turns downloaded bytes into the image a shard stores: decide from the bytes whether they are an
// image, refuse decompression bombs from the header alone, then one fused sharp pipeline per image
// (orient, shrink-on-load resize, flatten, 8-bit sRGB) to raw pixels, which feed both the phash and
// the encoder. Bad bytes are an outcome, never an exception: processImage resolves to a result union.

import { hash } from 'node:crypto';
import sharp from 'sharp';
import { choiceOption, boolOption, intOption, invalid, rejectUnknownKeys } from '../core/options.js';
import type { ReasonCode } from '../core/reasons.js';
import type { ImageFormat, SampleImage } from '../core/sample.js';
import { readJpegHeader } from './jpeg-header.js';
import { checkFromPixels } from './near-dup-check.js';
import { PHASH_GRID, lumaGrid, phashWithWeakBits } from './phash.js';
import { describeNonImage, sniffImageFormat, type SniffedFormat } from './sniff.js';

export { hamming, phashFromPixels, dct2d, lumaGrid } from './phash.js';

/** How the picture is fitted to `size`. Value = one-line description (docs, --help). */
export const RESIZE_MODES = {
  none: 'keep the downloaded bytes untouched (still decoded once to validate them and hash them)',
  'keep-ratio': 'scale so the side chosen by resizeSide equals size, keeping the aspect ratio',
  'center-crop': 'scale so the shorter side equals size, then crop the centre to a size x size square',
  border: 'scale so the longer side equals size, then pad with black to a size x size square',
} as const;
export type ResizeMode = keyof typeof RESIZE_MODES;

/** Which side `keep-ratio` sets to `size`. */
export const RESIZE_SIDES = {
  shorter: 'the shorter side becomes size (the longer one is larger), like img2dataset',
  longer: 'the longer side becomes size (the whole picture fits in a size x size box)',
} as const;
export type ResizeSide = keyof typeof RESIZE_SIDES;

/** Encodings of the stored image (`none` mode keeps the downloaded format instead). */
export const OUTPUT_FORMATS = {
  jpeg: 'JPEG, 4:2:0, at `quality`; smallest for photos, the usual choice',
  webp: 'lossy WebP at `quality`; smaller than JPEG at equal quality, slower to encode',
  png: 'lossless PNG; `quality` is ignored; large and slow, for tests and small sets',
} as const;
export type OutputFormat = keyof typeof OUTPUT_FORMATS;

export interface ImageOptions {
  /**
   * How the picture is fitted to `size`; see RESIZE_MODES.
   * @default 'keep-ratio'
   */
  readonly resizeMode: ResizeMode;
  /**
   * Target size in pixels (1 to 16383, WebP's limit).
   * @default 256
   */
  readonly size: number;
  /**
   * For `keep-ratio`: which side becomes `size`.
   * @default 'shorter'
   */
  readonly resizeSide: ResizeSide;
  /**
   * Enlarge pictures smaller than the target. When false (unlike img2dataset), a small picture keeps
   * its size: `keep-ratio` leaves it as is, `center-crop` crops a square of its shorter side and
   * `border` pads to a square of its longer side. Upscaling adds bytes, not information.
   * @default false
   */
  readonly upscale: boolean;
  /**
   * Encoding of the stored image; see OUTPUT_FORMATS. Ignored by `resizeMode: 'none'`.
   * @default 'jpeg'
   */
  readonly format: OutputFormat;
  /**
   * Encoder quality for jpeg and webp, 1 to 100; ignored for png.
   * @default 95
   */
  readonly quality: number;
  /**
   * Decompression-bomb limit: pictures with more pixels (width x height of one frame, read from
   * the header before decoding) are rejected with `pixel_limit`.
   * @default 100_000_000
   */
  readonly maxPixels: number;
}

export const DEFAULT_IMAGE_OPTIONS: ImageOptions = Object.freeze({
  resizeMode: 'keep-ratio',
  size: 256,
  resizeSide: 'shorter',
  upscale: false,
  format: 'jpeg',
  quality: 95,
  maxPixels: 100_000_000,
});

const MAX_SIZE = 16383;

/**
 * Applies defaults and validates. Keys set to `undefined` count as not given; unknown keys and wrong
 * values throw FilipError `FILIP_ERR_INVALID_OPTION` naming the option.
 */
export function resolveImageOptions(given: Partial<ImageOptions> = {}): ImageOptions {
  if (typeof given !== 'object' || given === null || Array.isArray(given)) {
    throw invalid('image options', 'an object', given);
  }
  rejectUnknownKeys('image', given, DEFAULT_IMAGE_OPTIONS);
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  const o: Record<keyof ImageOptions, unknown> = { ...DEFAULT_IMAGE_OPTIONS, ...defined };
  return Object.freeze({
    resizeMode: choiceOption('resizeMode', o.resizeMode, Object.keys(RESIZE_MODES) as ResizeMode[]),
    size: intOption('size', o.size, 1, MAX_SIZE),
    resizeSide: choiceOption('resizeSide', o.resizeSide, Object.keys(RESIZE_SIDES) as ResizeSide[]),
    upscale: boolOption('upscale', o.upscale),
    format: choiceOption('format', o.format, Object.keys(OUTPUT_FORMATS) as OutputFormat[]),
    quality: intOption('quality', o.quality, 1, 100),
    maxPixels: intOption('maxPixels', o.maxPixels, 1),
  });
}

/** The reasons this module can reject a sample with. */
export type ImageRejectReason = Extract<ReasonCode, 'not_an_image' | 'corrupt_image' | 'pixel_limit'>;

export type ImageResult =
  | { readonly ok: true; readonly image: SampleImage }
  | { readonly ok: false; readonly reason: ImageRejectReason; readonly message: string };

type ImageFailure = Extract<ImageResult, { ok: false }>;

function fail(reason: ImageRejectReason, message: string): ImageFailure {
  return { ok: false, reason, message };
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).trim();
}

/** A pipeline error is a bomb only if sharp's own pixel guard fired; anything else is bad data. */
function decodeFailure(error: unknown): ImageFailure {
  const text = errorText(error);
  if (/exceeds pixel limit/i.test(text)) return fail('pixel_limit', text);
  return fail('corrupt_image', `the image cannot be decoded: ${text}`);
}

/** Sample points per grid cell side for the phash; more changes hashes by a bit or two, costs 4x. */
const PHASH_SAMPLES = 2;

/**
 * libvips keeps recent operations and their buffers in an operation cache. Ingest sees every image
 * once, so the cache only holds memory and costs lookups: off, it measured 6-10% more images/s (a
 * process-wide setting, like the whole process is an ingest worker). Exported so benchmarks can give
 * their bare sharp baseline the same setting.
 */
export function configureSharpForStreaming(): void {
  sharp.cache(false);
}
configureSharpForStreaming();

const WHITE = { r: 255, g: 255, b: 255 };
const BLACK = { r: 0, g: 0, b: 0, alpha: 1 };

/** What the header says, read before any pixel is decoded. */
interface Header {
  readonly format: ImageFormat;
  /** Stored size of the first frame. */
  readonly width: number;
  readonly height: number;
  /** Size after EXIF orientation. */
  readonly orientedWidth: number;
  readonly orientedHeight: number;
  /** EXIF orientation, 1 when none. */
  readonly orientation: number;
  /**
   * Decodes straight to 8-bit 3-channel pixels (an ordinary colour JPEG): no alpha to flatten, no
   * grey, CMYK or 16-bit to convert. sharp applies any ICC profile to sRGB by itself. Skipping the
   * no-op conversions for these saves about 2% per image; everything else takes the full path.
   */
  readonly plainRgb: boolean;
}

type HeaderResult = { readonly ok: true; readonly header: Header } | ImageFailure;

async function readHeader(bytes: Buffer, sniffed: SniffedFormat): Promise<HeaderResult> {
  if (sniffed === 'jpeg') {
    const jpeg = readJpegHeader(bytes);
    if (jpeg !== undefined) {
      const turned = jpeg.orientation >= 5;
      const { width, height } = jpeg;
      const header: Header = {
        format: 'jpeg',
        width,
        height,
        orientedWidth: turned ? height : width,
        orientedHeight: turned ? width : height,
        orientation: jpeg.orientation,
        plainRgb: jpeg.components === 3 && jpeg.precision === 8,
      };
      return { ok: true, header };
    }
  }
  // sharp reads no pixel data for metadata(). Its pixel guard is off here because we apply our own
  // limit next, and its error would be indistinguishable from a bad header.
  let meta: sharp.Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    return fail('corrupt_image', `the ${sniffed} header cannot be read: ${errorText(error)}`);
  }
  const format = decodableFormat(meta);
  if (format === undefined) {
    return fail('not_an_image', `${meta.format} (${meta.compression ?? 'unknown'} compression) cannot be decoded`);
  }
  // For multi-frame input, metadata describes the first frame, the only one decoded.
  const header: Header = {
    format,
    width: meta.width,
    height: meta.height,
    orientedWidth: meta.autoOrient?.width ?? meta.width,
    orientedHeight: meta.autoOrient?.height ?? meta.height,
    orientation: meta.orientation ?? 1,
    plainRgb: false,
  };
  return { ok: true, header };
}

/** The format `none` mode stores, or undefined for a container this build cannot decode (HEIC). */
function decodableFormat(meta: sharp.Metadata): ImageFormat | undefined {
  switch (meta.format) {
    case 'jpeg':
    case 'png':
    case 'webp':
    case 'gif':
    case 'tiff':
      return meta.format;
    case 'heif':
      // The prebuilt libheif decodes AV1 only; HEVC (HEIC) pictures would fail later, so refuse now.
      return meta.compression === 'av1' ? 'avif' : undefined;
    default:
      return undefined;
  }
}

/**
 * Validates, resizes and re-encodes one downloaded image; resolves to `{ ok: false, reason }` for
 * bytes that are not a decodable image, are truncated or corrupt, or exceed `maxPixels`. Never rejects
 * for bad bytes. `options` must come from resolveImageOptions.
 *
 * Cost: one decode-and-resize pipeline to raw pixels, the phash from those pixels in JS, one encode
 * pipeline; about 1.1x the CPU of a bare sharp resize-and-encode, the split into two sharp calls
 * being most of the difference. Decoding the encoded output again for the hash would cost 1.3x.
 */
export async function processImage(bytes: Buffer, options: ImageOptions): Promise<ImageResult> {
  const sniffed = sniffImageFormat(bytes);
  if (sniffed === undefined) return fail('not_an_image', describeNonImage(bytes));
  const read = await readHeader(bytes, sniffed);
  if (!read.ok) return read;
  const { header } = read;
  const { width, height } = header;
  if (!(width > 0 && height > 0)) {
    return fail('corrupt_image', `the ${header.format} header declares ${width}x${height} pixels`);
  }
  if (width * height > options.maxPixels) {
    const count = width * height;
    return fail('pixel_limit', `${width}x${height} = ${count} pixels exceeds the limit of ${options.maxPixels}`);
  }
  const originalWidth = header.orientedWidth;
  const originalHeight = header.orientedHeight;

  // failOn 'truncated' rejects cut-off files but tolerates the minor warnings (stray bytes before a
  // marker, odd ICC) that browsers ignore and that scraped data is full of.
  const pipeline = sharp(bytes, { failOn: 'truncated', limitInputPixels: options.maxPixels });
  if (header.orientation !== 1) pipeline.autoOrient();
  // Alpha onto white, then grey, CMYK, 16-bit and palette input to 3-channel 8-bit sRGB. sharp
  // orders its operations itself: the flatten happens before the border's black padding.
  if (!header.plainRgb) pipeline.flatten({ background: WHITE }).toColourspace('srgb').removeAlpha();
  const { size, upscale } = options;
  switch (options.resizeMode) {
    case 'none':
      // Only validates the whole file and feeds the hash: JPEG shrink-on-load still reads every scan.
      pipeline.resize({ width: PHASH_GRID, height: PHASH_GRID, fit: 'fill' });
      break;
    case 'keep-ratio':
      pipeline.resize({
        width: size,
        height: size,
        fit: options.resizeSide === 'shorter' ? 'outside' : 'inside',
        withoutEnlargement: !upscale,
      });
      break;
    case 'center-crop': {
      const side = upscale ? size : Math.min(size, originalWidth, originalHeight);
      pipeline.resize({ width: side, height: side, fit: 'cover', position: 'centre' });
      break;
    }
    case 'border': {
      const side = upscale ? size : Math.min(size, Math.max(originalWidth, originalHeight));
      pipeline.resize({ width: side, height: side, fit: 'contain', background: BLACK });
      break;
    }
  }

  // JS work is done while sharp works on its own thread: the hash while decoding, the phash while
  // encoding. On a machine with spare cores that hides it; on a saturated one it costs the same.
  const decoding = pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const sha256 = hash('sha256', bytes, 'hex');
  let pixels: { data: Buffer; info: sharp.OutputInfo };
  try {
    pixels = await decoding;
  } catch (error) {
    return decodeFailure(error);
  }
  const { data, info } = pixels;
  if (info.channels !== 3) {
    // Cannot happen for the formats sniffed above; refuse rather than store a surprise.
    return fail('corrupt_image', `the image decoded to ${info.channels} channels instead of 3`);
  }

  if (options.resizeMode === 'none') {
    const image: SampleImage = {
      bytes,
      format: header.format,
      width: originalWidth,
      height: originalHeight,
      originalWidth,
      originalHeight,
      sha256,
      ...phashOfPixels(data, info),
      nearDupCheck: checkFromPixels(data, info.width, info.height, info.channels),
    };
    return { ok: true, image };
  }

  const encoder = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
  if (options.format === 'jpeg') encoder.jpeg({ quality: options.quality });
  else if (options.format === 'webp') encoder.webp({ quality: options.quality });
  else encoder.png();
  const encoding = encoder.toBuffer();
  const { phash, phashWeak } = phashOfPixels(data, info);
  const nearDupCheck = checkFromPixels(data, info.width, info.height, info.channels);
  let encoded: Buffer;
  try {
    encoded = await encoding;
  } catch (error) {
    // Raw pixels we just produced always encode; reaching this means a bug or memory exhaustion.
    return fail('corrupt_image', `the resized image cannot be encoded: ${errorText(error)}`);
  }

  const image: SampleImage = {
    bytes: encoded,
    format: options.format,
    width: info.width,
    height: info.height,
    originalWidth,
    originalHeight,
    sha256,
    phash,
    phashWeak,
    nearDupCheck,
  };
  return { ok: true, image };
}

/** The phash and its weak-bit mask from a pipeline's raw pixels: 2 x 2 samples per grid cell suffice (see lumaGrid). */
function phashOfPixels(data: Buffer, info: sharp.OutputInfo): { phash: string; phashWeak: string } {
  const { phash, weak } = phashWithWeakBits(lumaGrid(data, info.width, info.height, info.channels, PHASH_SAMPLES));
  return { phash, phashWeak: weak };
}
