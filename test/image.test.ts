// The image stage on real files: every fixture's outcome, pixel checks for the conversions that are
// easy to get silently wrong (alpha, EXIF, CMYK, animation), each resize mode's geometry, and the
// options factory's validation.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { makeImageFixtures, photo } from '../scripts/make-fixtures.js';
import { FilipError } from '../src/core/errors.js';
import { readJpegHeader } from '../src/image/jpeg-header.js';
import {
  DEFAULT_IMAGE_OPTIONS,
  OUTPUT_FORMATS,
  RESIZE_MODES,
  processImage,
  resolveImageOptions,
  type ImageOptions,
  type ImageResult,
} from '../src/image/process.js';
import type { SampleImage } from '../src/core/sample.js';

let dir: string;
let paths: Record<string, string>;
const bytesOf = (name: string): Promise<Buffer> => readFile(paths[name]!);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'filip-image-'));
  paths = await makeImageFixtures(dir);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function expectOk(result: ImageResult): SampleImage {
  if (!result.ok) assert.fail(`expected ok, got ${result.reason}: ${result.message}`);
  return result.image;
}

async function pixelAt(image: SampleImage, x: number, y: number): Promise<[number, number, number]> {
  const { data, info } = await sharp(image.bytes).raw().toBuffer({ resolveWithObject: true });
  const p = (y * info.width + x) * info.channels;
  return [data[p]!, data[p + 1]!, data[p + 2]!];
}

function assertColour(actual: readonly number[], expected: readonly number[], tolerance: number, what: string): void {
  const off = actual.some((v, i) => Math.abs(v - expected[i]!) > tolerance);
  assert.ok(!off, `${what}: got rgb(${actual.join(', ')}), expected about rgb(${expected.join(', ')})`);
}

const PNG_OUT = resolveImageOptions({ format: 'png' });

describe('processImage: every fixture with default options', () => {
  // [file, stored/oriented size, expected output size] or [file, reason]
  const table: ReadonlyArray<
    | { file: string; original: [number, number]; output: [number, number] }
    | { file: string; reason: 'not_an_image' | 'corrupt_image' | 'pixel_limit' }
  > = [
    { file: 'baseline.jpg', original: [640, 427], output: [384, 256] },
    { file: 'progressive.jpg', original: [400, 600], output: [256, 384] },
    { file: 'cmyk.jpg', original: [200, 200], output: [200, 200] },
    { file: 'exif-rotated.jpg', original: [200, 300], output: [200, 300] },
    { file: 'greyscale.jpg', original: [320, 240], output: [320, 240] },
    { file: '16bit.png', original: [300, 300], output: [256, 256] },
    { file: 'palette.png', original: [256, 192], output: [256, 192] },
    { file: 'alpha.png', original: [200, 100], output: [200, 100] },
    { file: 'photo.webp', original: [500, 500], output: [256, 256] },
    { file: 'photo.avif', original: [96, 64], output: [96, 64] },
    { file: 'photo.tiff', original: [120, 90], output: [120, 90] },
    { file: 'animated.gif', original: [64, 48], output: [64, 48] },
    { file: 'animated.webp', original: [64, 48], output: [64, 48] },
    { file: 'truncated.jpg', reason: 'corrupt_image' },
    { file: 'truncated.png', reason: 'corrupt_image' },
    { file: 'pixel-bomb.png', reason: 'pixel_limit' },
    { file: 'page.html', reason: 'not_an_image' },
    { file: 'empty.jpg', reason: 'not_an_image' },
    { file: 'notes.txt', reason: 'not_an_image' },
  ];

  it('covers every fixture the script writes', () => {
    assert.deepEqual(table.map((row) => row.file).sort(), Object.keys(paths).sort());
  });

  for (const row of table) {
    it(row.file, async () => {
      const input = await bytesOf(row.file);
      const result = await processImage(input, DEFAULT_IMAGE_OPTIONS);
      if ('reason' in row) {
        assert.equal(result.ok, false);
        assert.equal(!result.ok && result.reason, row.reason);
        assert.ok(!result.ok && result.message.length > 0);
        return;
      }
      const image = expectOk(result);
      assert.deepEqual([image.originalWidth, image.originalHeight], row.original);
      assert.deepEqual([image.width, image.height], row.output);
      assert.equal(image.format, 'jpeg');
      assert.equal(image.sha256, createHash('sha256').update(input).digest('hex'));
      assert.match(image.phash, /^[0-9a-f]{16}$/);
      const meta = await sharp(image.bytes).metadata();
      assert.equal(meta.format, 'jpeg');
      assert.deepEqual([meta.width, meta.height], row.output);
      assert.equal(meta.channels, 3, 'always 3-channel');
      assert.equal(meta.space, 'srgb');
      assert.equal(meta.depth, 'uchar');
      assert.equal(meta.orientation, undefined, 'orientation applied, tag dropped');
    });
  }

  it('rejects a declared 30000x30000 PNG from its header, fast', async () => {
    const input = await bytesOf('pixel-bomb.png');
    const started = performance.now();
    const result = await processImage(input, DEFAULT_IMAGE_OPTIONS);
    assert.equal(!result.ok && result.reason, 'pixel_limit');
    assert.ok(performance.now() - started < 500, 'no decode of 900 Mpx');
  });

  it('applies maxPixels to ordinary images too', async () => {
    const result = await processImage(await bytesOf('baseline.jpg'), resolveImageOptions({ maxPixels: 640 * 427 - 1 }));
    assert.equal(!result.ok && result.reason, 'pixel_limit');
    const atLimit = await processImage(await bytesOf('baseline.jpg'), resolveImageOptions({ maxPixels: 640 * 427 }));
    assert.equal(atLimit.ok, true);
  });

  it('never throws on garbage behind a valid magic number', async () => {
    const garbage = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 73 + 11) & 0xff));
    const cases: Array<[string, Buffer]> = [
      ['jpeg magic', Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), garbage])],
      ['png signature only', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])],
      ['png magic', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), garbage])],
      ['gif magic', Buffer.concat([Buffer.from('GIF89a'), garbage])],
      ['webp magic', Buffer.concat([Buffer.from('RIFF\x00\x01\x00\x00WEBP', 'latin1'), garbage])],
      ['tiff magic', Buffer.concat([Buffer.from([0x49, 0x49, 0x2a, 0x00]), garbage])],
      ['ftyp box', Buffer.concat([Buffer.from('\x00\x00\x00\x18ftypavif', 'latin1'), garbage])],
    ];
    for (const [what, input] of cases) {
      const result = await processImage(input, DEFAULT_IMAGE_OPTIONS);
      assert.equal(result.ok, false, what);
      const reason = !result.ok && result.reason;
      assert.ok(reason === 'corrupt_image' || reason === 'not_an_image', `${what}: ${JSON.stringify(result)}`);
    }
  });

  it('refuses SVG and other markup even though sharp could render SVG', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10"/></svg>');
    const result = await processImage(svg, DEFAULT_IMAGE_OPTIONS);
    assert.equal(!result.ok && result.reason, 'not_an_image');
  });
});

describe('processImage: pixels', () => {
  it('flattens transparency onto white', async () => {
    const image = expectOk(await processImage(await bytesOf('alpha.png'), PNG_OUT));
    assert.equal((await sharp(image.bytes).metadata()).channels, 3);
    assertColour(await pixelAt(image, 40, 50), [255, 255, 255], 2, 'transparent half');
    assertColour(await pixelAt(image, 160, 50), [30, 200, 40], 2, 'opaque half');
  });

  it('applies EXIF orientation 6 (rotate 90 degrees clockwise)', async () => {
    const image = expectOk(await processImage(await bytesOf('exif-rotated.jpg'), PNG_OUT));
    assert.deepEqual([image.width, image.height], [200, 300]);
    // Stored left third (red) becomes the top third; orientation 8 would put it at the bottom.
    assertColour(await pixelAt(image, 100, 40), [220, 30, 30], 30, 'top');
    assertColour(await pixelAt(image, 100, 260), [30, 40, 220], 30, 'bottom');
  });

  it('converts CMYK to sRGB with about the right colours', async () => {
    const image = expectOk(await processImage(await bytesOf('cmyk.jpg'), PNG_OUT));
    // The fixture's colours lie inside the CMYK gamut, so the round trip lands close to them.
    assertColour(await pixelAt(image, 50, 100), [220, 30, 30], 30, 'left (red)');
    assertColour(await pixelAt(image, 150, 100), [60, 90, 170], 30, 'right (blue)');
  });

  it('keeps the first frame of an animated GIF and WebP', async () => {
    for (const file of ['animated.gif', 'animated.webp']) {
      const image = expectOk(await processImage(await bytesOf(file), PNG_OUT));
      assert.deepEqual([image.width, image.height], [64, 48], file);
      assertColour(await pixelAt(image, 32, 24), [220, 30, 30], 20, `${file} centre`);
    }
  });

  it('turns greyscale into 3 equal channels and 16-bit into 8-bit', async () => {
    const grey = expectOk(await processImage(await bytesOf('greyscale.jpg'), PNG_OUT));
    const [r, g, b] = await pixelAt(grey, 100, 100);
    assert.ok(Math.abs(r - g) <= 1 && Math.abs(g - b) <= 1, `grey pixel rgb(${r}, ${g}, ${b})`);
    for (const file of ['greyscale.jpg', '16bit.png', 'palette.png']) {
      const meta = await sharp(expectOk(await processImage(await bytesOf(file), PNG_OUT)).bytes).metadata();
      assert.deepEqual([meta.channels, meta.depth, meta.isPalette], [3, 'uchar', false], file);
    }
  });

  it('encodes webp and png when asked', async () => {
    for (const format of Object.keys(OUTPUT_FORMATS) as Array<keyof typeof OUTPUT_FORMATS>) {
      const image = expectOk(await processImage(await bytesOf('photo.webp'), resolveImageOptions({ format })));
      assert.equal(image.format, format);
      assert.equal((await sharp(image.bytes).metadata()).format, format);
    }
  });
});

describe('processImage: resize modes', () => {
  const inputs: Record<string, Buffer> = {};
  before(async () => {
    for (const [name, w, h, seed] of [
      ['landscape', 640, 480, 21],
      ['portrait', 480, 640, 22],
      ['square', 500, 500, 23],
      ['small', 100, 150, 24],
    ] as const) {
      inputs[name] = await photo(w, h, seed).jpeg({ quality: 90 }).toBuffer();
    }
  });

  // [input, options, expected output width x height]
  const table: ReadonlyArray<[string, Partial<ImageOptions>, [number, number]]> = [
    ['landscape', { resizeMode: 'keep-ratio' }, [341, 256]],
    ['portrait', { resizeMode: 'keep-ratio' }, [256, 341]],
    ['square', { resizeMode: 'keep-ratio' }, [256, 256]],
    ['landscape', { resizeMode: 'keep-ratio', resizeSide: 'longer' }, [256, 192]],
    ['portrait', { resizeMode: 'keep-ratio', resizeSide: 'longer' }, [192, 256]],
    ['square', { resizeMode: 'keep-ratio', resizeSide: 'longer' }, [256, 256]],
    ['landscape', { resizeMode: 'center-crop' }, [256, 256]],
    ['portrait', { resizeMode: 'center-crop' }, [256, 256]],
    ['square', { resizeMode: 'center-crop', size: 128 }, [128, 128]],
    ['landscape', { resizeMode: 'border' }, [256, 256]],
    ['portrait', { resizeMode: 'border' }, [256, 256]],
    ['square', { resizeMode: 'border' }, [256, 256]],
    ['landscape', { resizeMode: 'none' }, [640, 480]],
    ['portrait', { resizeMode: 'none' }, [480, 640]],
    // No upscaling by default: a small picture keeps its size, crops and borders stay square.
    ['small', { resizeMode: 'keep-ratio' }, [100, 150]],
    ['small', { resizeMode: 'keep-ratio', resizeSide: 'longer' }, [100, 150]],
    ['small', { resizeMode: 'center-crop' }, [100, 100]],
    ['small', { resizeMode: 'border' }, [150, 150]],
    ['small', { resizeMode: 'keep-ratio', upscale: true }, [256, 384]],
    ['small', { resizeMode: 'keep-ratio', resizeSide: 'longer', upscale: true }, [171, 256]],
    ['small', { resizeMode: 'center-crop', upscale: true }, [256, 256]],
    ['small', { resizeMode: 'border', upscale: true }, [256, 256]],
  ];

  for (const [name, given, expected] of table) {
    it(`${name} ${JSON.stringify(given)} -> ${expected.join('x')}`, async () => {
      const image = expectOk(await processImage(inputs[name]!, resolveImageOptions(given)));
      assert.deepEqual([image.width, image.height], expected);
      const meta = await sharp(image.bytes).metadata();
      assert.deepEqual([meta.width, meta.height], expected);
    });
  }

  it('border pads with black, centring the picture', async () => {
    const options = resolveImageOptions({ resizeMode: 'border', format: 'png' });
    const image = expectOk(await processImage(inputs.landscape!, options));
    // 640x480 fits as 256x192: 32 rows of padding above and below.
    assertColour(await pixelAt(image, 128, 5), [0, 0, 0], 0, 'top padding');
    assertColour(await pixelAt(image, 128, 250), [0, 0, 0], 0, 'bottom padding');
    const middle = await pixelAt(image, 128, 128);
    assert.ok(middle.some((v) => v > 20), 'picture in the middle');
  });

  it('border flattens transparency onto white but pads with black', async () => {
    const given = { resizeMode: 'border', format: 'png', size: 100 } as const;
    const image = expectOk(await processImage(await bytesOf('alpha.png'), resolveImageOptions(given)));
    assert.deepEqual([image.width, image.height], [100, 100]);
    assertColour(await pixelAt(image, 50, 2), [0, 0, 0], 0, 'padding');
    assertColour(await pixelAt(image, 10, 50), [255, 255, 255], 2, 'transparent half');
    assertColour(await pixelAt(image, 90, 50), [30, 200, 40], 2, 'opaque half');
  });

  it('none keeps the bytes byte-identical and reports the detected format', async () => {
    const none = resolveImageOptions({ resizeMode: 'none' });
    for (const [file, format, size] of [
      ['baseline.jpg', 'jpeg', [640, 427]],
      ['exif-rotated.jpg', 'jpeg', [200, 300]],
      ['16bit.png', 'png', [300, 300]],
      ['photo.webp', 'webp', [500, 500]],
      ['photo.avif', 'avif', [96, 64]],
      ['photo.tiff', 'tiff', [120, 90]],
      ['animated.gif', 'gif', [64, 48]],
    ] as const) {
      const input = await bytesOf(file);
      const image = expectOk(await processImage(input, none));
      assert.ok(image.bytes.equals(input), `${file} bytes untouched`);
      assert.equal(image.format, format);
      assert.deepEqual([image.width, image.height, image.originalWidth, image.originalHeight], [...size, ...size]);
    }
  });

  it('none still decodes, so it still rejects broken files', async () => {
    const none = resolveImageOptions({ resizeMode: 'none' });
    for (const [file, reason] of [
      ['truncated.jpg', 'corrupt_image'],
      ['truncated.png', 'corrupt_image'],
      ['pixel-bomb.png', 'pixel_limit'],
      ['page.html', 'not_an_image'],
    ] as const) {
      const result = await processImage(await bytesOf(file), none);
      assert.equal(!result.ok && result.reason, reason, file);
    }
  });
});

describe('readJpegHeader', () => {
  it('agrees with sharp metadata on every JPEG fixture', async () => {
    for (const file of ['baseline.jpg', 'progressive.jpg', 'cmyk.jpg', 'exif-rotated.jpg', 'greyscale.jpg']) {
      const input = await bytesOf(file);
      const meta = await sharp(input).metadata();
      const expected = { width: meta.width, height: meta.height, orientation: meta.orientation ?? 1 };
      assert.deepEqual(readJpegHeader(input), { ...expected, precision: 8, components: meta.channels }, file);
    }
  });

  it('gives up (undefined) instead of guessing', async () => {
    const jpeg = await bytesOf('baseline.jpg');
    assert.equal(readJpegHeader(Buffer.alloc(0)), undefined);
    assert.equal(readJpegHeader(jpeg.subarray(0, 20)), undefined);
    assert.equal(readJpegHeader(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x02])), undefined);
    assert.equal(readJpegHeader(await bytesOf('alpha.png')), undefined);
  });
});

describe('resolveImageOptions', () => {
  it('fills defaults and keeps what is given', () => {
    assert.deepEqual(resolveImageOptions(), DEFAULT_IMAGE_OPTIONS);
    assert.deepEqual(resolveImageOptions({ resizeMode: 'border', size: undefined }), {
      ...DEFAULT_IMAGE_OPTIONS,
      resizeMode: 'border',
    });
    assert.equal(resolveImageOptions({ quality: 1 }).quality, 1);
    assert.deepEqual(Object.keys(RESIZE_MODES), ['none', 'keep-ratio', 'center-crop', 'border']);
  });

  const bad: ReadonlyArray<[string, unknown, string]> = [
    ['unknown mode', { resizeMode: 'stretch' }, 'resizeMode'],
    ['size 0', { size: 0 }, 'size'],
    ['fractional size', { size: 255.5 }, 'size'],
    ['size as string', { size: '256' }, 'size'],
    ['size over the WebP limit', { size: 20000 }, 'size'],
    ['unknown side', { resizeSide: 'left' }, 'resizeSide'],
    ['upscale not boolean', { upscale: 'yes' }, 'upscale'],
    ['unsupported format', { format: 'gif' }, 'format'],
    ['quality 0', { quality: 0 }, 'quality'],
    ['quality 101', { quality: 101 }, 'quality'],
    ['fractional quality', { quality: 90.5 }, 'quality'],
    ['quality NaN', { quality: Number.NaN }, 'quality'],
    ['maxPixels 0', { maxPixels: 0 }, 'maxPixels'],
    ['maxPixels negative', { maxPixels: -1 }, 'maxPixels'],
    ['maxPixels infinite', { maxPixels: Number.POSITIVE_INFINITY }, 'maxPixels'],
    ['typo in a key', { sise: 256 }, 'sise'],
    ['null', null, 'image options'],
    ['a string', 'big', 'image options'],
    ['an array', [], 'image options'],
  ];
  for (const [what, given, field] of bad) {
    it(`rejects ${what}`, () => {
      assert.throws(
        () => resolveImageOptions(given as Partial<ImageOptions>),
        (error: unknown) => {
          assert.ok(error instanceof FilipError);
          assert.equal(error.code, 'FILIP_ERR_INVALID_OPTION');
          assert.equal(error.field, field);
          return true;
        },
      );
    });
  }
});
