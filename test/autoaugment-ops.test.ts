// Each AutoAugment op pixel for pixel on small images. Expected values come from the op's
// definition in torchvision (functional_tensor on uint8): hand-computed tables, or a few lines of
// independent arithmetic in this file. Nothing here calls the implementation to make an expectation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  autoContrast,
  brightness,
  color,
  contrast,
  equalize,
  grayscale,
  invert,
  posterize,
  rotate,
  sharpness,
  shearX,
  shearY,
  solarize,
  translateX,
  translateY,
  type RgbImage,
} from '../src/augment/index.js';

/** An image from a function of (x, y, channel). */
function makeImage(width: number, height: number, value: (x: number, y: number, c: number) => number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = value(x, y, c);
  }
  return { data, width, height };
}

/** An image whose pixels are given as [r, g, b] triples in row-major order. */
function fromPixels(width: number, height: number, pixels: readonly (readonly [number, number, number])[]): RgbImage {
  assert.equal(pixels.length, width * height);
  return makeImage(width, height, (x, y, c) => pixels[y * width + x]![c]!);
}

/** One channel as rows, for readable comparisons. */
function channel(img: RgbImage, c: number): number[][] {
  const rows: number[][] = [];
  for (let y = 0; y < img.height; y++) {
    const row: number[] = [];
    for (let x = 0; x < img.width; x++) row.push(img.data[(y * img.width + x) * 3 + c]!);
    rows.push(row);
  }
  return rows;
}

function pixels(img: RgbImage): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < img.data.length; i += 3) out.push([img.data[i]!, img.data[i + 1]!, img.data[i + 2]!]);
  return out;
}

/** A 4x5 image with distinct values in every channel: R = 1 + index, G = 100 + index, B = 250 - 10 * index. */
const grid = makeImage(4, 5, (x, y, c) => {
  const i = y * 4 + x;
  return c === 0 ? 1 + i : c === 1 ? 100 + i : 250 - 10 * i;
});

// ---------------------------------------------------------------------------------------------
// Point ops

test('Invert maps v to 255 - v in every channel', () => {
  const img = fromPixels(2, 2, [[0, 255, 1], [128, 127, 64], [200, 10, 33], [5, 250, 128]]);
  assert.deepEqual(pixels(invert(img)), [[255, 0, 254], [127, 128, 191], [55, 245, 222], [250, 5, 127]]);
});

test('Posterize keeps the top bits: 4 bits, 8 bits (identity), 0 bits (black)', () => {
  const img = fromPixels(2, 2, [[183, 255, 0], [15, 16, 240], [127, 128, 129], [1, 254, 77]]);
  // 183 = 1011_0111 -> 1011_0000 = 176; 77 = 0100_1101 -> 64; 254 -> 240; 129 -> 128.
  assert.deepEqual(pixels(posterize(img, 4)), [[176, 240, 0], [0, 16, 240], [112, 128, 128], [0, 240, 64]]);
  // 1 bit keeps only the 128 bit.
  assert.deepEqual(pixels(posterize(img, 1)), [[128, 128, 0], [0, 0, 128], [0, 128, 128], [0, 128, 0]]);
  assert.deepEqual(pixels(posterize(img, 8)), pixels(img));
  assert.deepEqual(pixels(posterize(img, 0)), [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]);
});

test('Solarize inverts values >= threshold; 255 touches only 255, 0 inverts everything', () => {
  const img = fromPixels(2, 2, [[0, 127, 128], [226, 227, 255], [254, 1, 170], [85, 84, 86]]);
  assert.deepEqual(pixels(solarize(img, 128)), [[0, 127, 127], [29, 28, 0], [1, 1, 85], [85, 84, 86]]);
  assert.deepEqual(pixels(solarize(img, 255)), [[0, 127, 128], [226, 227, 0], [254, 1, 170], [85, 84, 86]]);
  assert.deepEqual(pixels(solarize(img, 0)), pixels(invert(img)));
  // AutoAugment's bin 1 threshold 226.666...: 226 stays, 227 is inverted.
  assert.deepEqual(pixels(solarize(img, 226.6666717529297)), [[0, 127, 128], [226, 28, 0], [1, 1, 170], [85, 84, 86]]);
  // Bin 6 is exactly 85: 85 is inverted, 84 is not.
  assert.deepEqual(pixels(solarize(img, 85)), [[0, 128, 127], [29, 28, 0], [1, 1, 85], [170, 84, 169]]);
});

test('AutoContrast scales each channel from [min, max] to [0, 255] in float32 and truncates', () => {
  // R: min 50, max 100: torch evaluates `255 / (max - min)` as reciprocal(50) * 255 in float32 =
  // 5.0999999; 10 * scale = 50.9999990 rounds to 51.0 in float32, so 60 -> 51 (float64 arithmetic
  // would truncate to 50); 75 -> 127.4999976 -> 127; 100 -> 254.999995 rounds to 255.0 -> 255.
  // G: constant 7 -> unchanged. B: 0..3 -> 0, 85, 170, 255.
  const img = fromPixels(2, 2, [[50, 7, 0], [60, 7, 1], [75, 7, 2], [100, 7, 3]]);
  assert.deepEqual(pixels(autoContrast(img)), [[0, 7, 0], [51, 7, 85], [127, 7, 170], [255, 7, 255]]);
  // The two float32 roundings show at the top of the range. R spans 61: reciprocal(61) * 255 =
  // 4.1803274 and 61 * that = 254.99997 -> 254 (a single division would give 4.1803279 -> 255).
  // G spans 7: 7 * float32(float32(1/7) * 255) = 255.00002 -> 255 (a single division: 254.99998 -> 254).
  const edge = fromPixels(2, 1, [[0, 10, 0], [61, 17, 0]]);
  assert.deepEqual(pixels(autoContrast(edge)), [[0, 0, 0], [254, 255, 0]]);
  // Independent recomputation of the definition for the 4x5 grid (R spans 1..20, B 60..250).
  const out = autoContrast(grid);
  for (let c = 0; c < 3; c++) {
    const values = channel(grid, c).flat();
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const scale = Math.fround(Math.fround(1 / (hi - lo)) * 255);
    const expected = values.map((v) => Math.min(255, Math.trunc(Math.fround((v - lo) * scale))));
    assert.deepEqual(channel(out, c).flat(), expected, `channel ${c}`);
  }
});

test('Equalize: torchvision lookup table with step = (pixels outside the last bin) // 255', () => {
  // 20x30 = 600 pixels.
  // R: 300 x 0, 250 x 128, 50 x 255: step = (300 + 250) // 255 = 2, step // 2 = 1:
  //    lut[0] = 0, lut[128] = (300 + 1) // 2 = 150, lut[255] = min(255, (550 + 1) // 2 = 275) = 255.
  // G: 160 x 10, 100 x 20, 340 x 30: step = 260 // 255 = 1, step // 2 = 0:
  //    lut[10] = cumsum[9] = 0, lut[20] = 160, lut[30] = min(255, 260) = 255.
  // B: every pixel 77: one non-empty bin, step = 0, channel unchanged.
  const img = makeImage(20, 30, (x, y, c) => {
    const p = y * 20 + x;
    if (c === 0) return p < 300 ? 0 : p < 550 ? 128 : 255;
    if (c === 1) return p < 160 ? 10 : p < 260 ? 20 : 30;
    return 77;
  });
  const out = equalize(img);
  const expectR = new Map([[0, 0], [128, 150], [255, 255]]);
  const expectG = new Map([[10, 0], [20, 160], [30, 255]]);
  for (let i = 0; i < img.data.length; i += 3) {
    assert.equal(out.data[i], expectR.get(img.data[i]!));
    assert.equal(out.data[i + 1], expectG.get(img.data[i + 1]!));
    assert.equal(out.data[i + 2], 77);
  }
});

test('Equalize leaves a channel unchanged when step is 0 (small image, or a single value)', () => {
  // 20 pixels: fewer than 255 outside the last bin, so step = 0 in every channel.
  assert.deepEqual(equalize(grid).data, grid.data);
  const flat = makeImage(20, 20, () => 200);
  assert.deepEqual(equalize(flat).data, flat.data);
});

test('Brightness blends with black: v * factor in float32, clamped, truncated', () => {
  const img = fromPixels(2, 2, [[0, 10, 100], [171, 200, 255], [11, 1, 3], [99, 101, 128]]);
  // 1.5: 171 * 1.5 = 256.5 and 200 * 1.5 = 300 clamp to 255; 11 * 1.5 = 16.5 -> 16.
  assert.deepEqual(pixels(brightness(img, 1.5)), [[0, 15, 150], [255, 255, 255], [16, 1, 4], [148, 151, 192]]);
  // 0.5: halves truncate: 11 -> 5, 1 -> 0, 3 -> 1, 99 -> 49, 101 -> 50.
  assert.deepEqual(pixels(brightness(img, 0.5)), [[0, 5, 50], [85, 100, 127], [5, 0, 1], [49, 50, 64]]);
  assert.deepEqual(pixels(brightness(img, 0)), [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]);
});

test('Brightness uses the factor as float32: 1 + bin 1 (1.09999999) times 10 gives 11, not 10', () => {
  // AutoAugment passes 1 + 0.09999999403953552; torch multiplies by it as float32 1.1 -> 11.0 exactly.
  const img = fromPixels(1, 1, [[10, 20, 30]]);
  assert.deepEqual(pixels(brightness(img, 1 + 0.09999999403953552)), [[11, 22, 33]]);
});

test('grayscale is float32 0.2989 R + 0.587 G + 0.114 B truncated (white becomes 254)', () => {
  const img = fromPixels(2, 2, [[255, 255, 255], [100, 150, 200], [10, 20, 30], [100, 100, 100]]);
  // 0.9999 * 255 = 254.97 -> 254; 29.89 + 88.05 + 22.8 = 140.74 -> 140; 2.989 + 11.74 + 3.42 = 18.149 -> 18; 99.99 -> 99.
  assert.deepEqual([...grayscale(img)], [254, 140, 18, 99]);
});

test('Color blends with the uint8 grayscale image', () => {
  const img = fromPixels(2, 1, [[100, 150, 200], [255, 255, 255]]);
  // factor 0 is the grayscale itself (white is 254, because the grey image is truncated first).
  assert.deepEqual(pixels(color(img, 0)), [[140, 140, 140], [254, 254, 254]]);
  // factor 2: 2v - gray: 200 - 140, 300 - 140, 400 - 140 (clamped); 510 - 254 = 256 -> 255.
  assert.deepEqual(pixels(color(img, 2)), [[60, 160, 255], [255, 255, 255]]);
  // factor 0.5: (v + gray) / 2 truncated: 120, 145, 170; (255 + 254) / 2 = 254.5 -> 254.
  assert.deepEqual(pixels(color(img, 0.5)), [[120, 145, 170], [254, 254, 254]]);
});

test('Contrast blends with the mean of the truncated grayscale image', () => {
  // grays 140, 0, 254, 18 -> mean 412 / 4 = 103.
  const img = fromPixels(2, 2, [[100, 150, 200], [0, 0, 0], [255, 255, 255], [10, 20, 30]]);
  // 0.5 v + 51.5, truncated.
  assert.deepEqual(pixels(contrast(img, 0.5)), [[101, 126, 151], [51, 51, 51], [179, 179, 179], [56, 61, 66]]);
  // 0: every pixel is the mean.
  assert.deepEqual(pixels(contrast(img, 0)), [[103, 103, 103], [103, 103, 103], [103, 103, 103], [103, 103, 103]]);
  // 2: 2v - 103, clamped.
  assert.deepEqual(pixels(contrast(img, 2)), [[97, 197, 255], [0, 0, 0], [255, 255, 255], [0, 0, 0]]);
});

test('Sharpness: factor 0 is the smoothed image, interior rounded, border pixels unchanged', () => {
  // R: a 130 at (x=1, y=1), a 200 in the corner (0, 0), a 7 at (x=3, y=2) on the border.
  // Interior smoothing: round((sum of 3x3 + 4 x centre) / 13).
  //   (1,1): 5*130 + 200 = 850 -> 65.38 -> 65      (2,1): 130 + 7 = 137 -> 10.54 -> 11 (rounded, not truncated)
  //   (1,2): 130 -> 10                             (2,2): 130 + 7 = 137 -> 11
  // G: constant 50 everywhere stays 50. B: 0 except 7 at (1, 2): (1,2): 35/13 = 2.69 -> 3, (1,1),(2,1),(2,2): 7/13 = 0.54 -> 1.
  const img = makeImage(4, 4, (x, y, c) => {
    if (c === 0) return x === 1 && y === 1 ? 130 : x === 0 && y === 0 ? 200 : x === 3 && y === 2 ? 7 : 0;
    if (c === 1) return 50;
    return x === 1 && y === 2 ? 7 : 0;
  });
  const out = sharpness(img, 0);
  assert.deepEqual(channel(out, 0), [
    [200, 0, 0, 0],
    [0, 65, 11, 0],
    [0, 10, 11, 7],
    [0, 0, 0, 0],
  ]);
  assert.deepEqual(channel(out, 1), channel(img, 1));
  assert.deepEqual(channel(out, 2), [
    [0, 0, 0, 0],
    [0, 1, 1, 0],
    [0, 3, 1, 0],
    [0, 0, 0, 0],
  ]);
  // factor 2: 2v - smooth, clamped; border pixels blend with themselves and stay.
  assert.deepEqual(channel(sharpness(img, 2), 0), [
    [200, 0, 0, 0],
    [0, 195, 0, 0],
    [0, 0, 0, 7],
    [0, 0, 0, 0],
  ]);
});

test('blends round each term to float32: factor 0.9 on a flat 3 gives 2, as in torch', () => {
  // Sharpness at bin 1 with a negative sign: factor 1 - 0.09999999403953552. In float32,
  // r = 0.89999998, 1 - r = 0.099999994: 3r = 2.6999999, 3(1 - r) = 0.29999998, sum 2.99999976,
  // truncated to 2. The smoothed image of a flat picture is the picture itself, border or not.
  const flat = makeImage(3, 3, () => 3);
  assert.ok(sharpness(flat, 1 - 0.09999999403953552).data.every((v) => v === 2));
  // With factor exactly 1 nothing changes.
  assert.deepEqual(sharpness(flat, 1).data, flat.data);
});

test('Sharpness leaves images with a side of 2 or less unchanged', () => {
  const thin = makeImage(2, 5, (x, y, c) => (x * 31 + y * 17 + c * 5) % 256);
  assert.deepEqual(sharpness(thin, 0).data, thin.data);
  const flat = makeImage(6, 1, (x) => x * 40);
  assert.deepEqual(sharpness(flat, 1.9).data, flat.data);
});

test('colour factors below 0 are refused', () => {
  for (const op of [brightness, color, contrast, sharpness]) {
    assert.throws(() => op(grid, -0.1), RangeError);
  }
  assert.throws(() => posterize(grid, 9), RangeError);
  assert.throws(() => solarize(grid, 256), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Geometric ops: nearest neighbour, fill 0

test('TranslateX/Y move the picture by whole pixels and fill with 0', () => {
  const R = channel(grid, 0); // 1..20 in a 4-wide, 5-tall grid
  assert.deepEqual(R, [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]]);
  assert.deepEqual(channel(translateX(grid, 1), 0), [[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15], [0, 17, 18, 19]]);
  assert.deepEqual(channel(translateX(grid, -2), 0), [[3, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0], [15, 16, 0, 0], [19, 20, 0, 0]]);
  assert.deepEqual(channel(translateY(grid, 2), 0), [[0, 0, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]);
  assert.deepEqual(channel(translateY(grid, -1), 0), [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20], [0, 0, 0, 0]]);
  // Fractional magnitudes truncate toward zero, as int() does: 1.9 -> 1, -1.9 -> -1.
  assert.deepEqual(translateX(grid, 1.9).data, translateX(grid, 1).data);
  assert.deepEqual(translateX(grid, -1.9).data, translateX(grid, -1).data);
  // Every channel moves together.
  assert.deepEqual(channel(translateX(grid, 1), 2)[0], [0, 250, 240, 230]);
  // Beyond the image everything is fill.
  assert.ok(translateX(grid, 4).data.every((v) => v === 0));
});

/** Independent nearest-neighbour shear about the top-left corner: output (x, y) reads (x + m (y + 0.5), y) for X. */
function referenceShear(img: RgbImage, m: number, axis: 'x' | 'y'): number[][] {
  const R = channel(img, 0);
  return R.map((row, y) =>
    row.map((_, x) => {
      const sx = axis === 'x' ? Math.round(x + m * (y + 0.5)) : x;
      const sy = axis === 'y' ? Math.round(y + m * (x + 0.5)) : y;
      return sx >= 0 && sx < img.width && sy >= 0 && sy < img.height ? R[sy]![sx]! : 0;
    }),
  );
}

test('ShearX shears about the top-left corner (torchvision center=[0, 0]), both signs', () => {
  // m = 0.3: rows shift by round(0.3 (y + 0.5)) = 0, 0, 1, 1, 1 (0.15, 0.45, 0.75, 1.05, 1.35).
  assert.deepEqual(channel(shearX(grid, 0.3), 0), [[1, 2, 3, 4], [5, 6, 7, 8], [10, 11, 12, 0], [14, 15, 16, 0], [18, 19, 20, 0]]);
  assert.deepEqual(channel(shearX(grid, -0.3), 0), [[1, 2, 3, 4], [5, 6, 7, 8], [0, 9, 10, 11], [0, 13, 14, 15], [0, 17, 18, 19]]);
  for (const m of [0.1666666716337204, -0.2666666805744171, 0.7]) {
    assert.deepEqual(channel(shearX(grid, m), 0), referenceShear(grid, m, 'x'), `m=${m}`);
  }
});

test('ShearY shears about the top-left corner along y, both signs', () => {
  // m = 0.3: column x shifts by round(0.3 (x + 0.5)) = 0, 0, 1, 1.
  assert.deepEqual(channel(shearY(grid, 0.3), 0), [[1, 2, 7, 8], [5, 6, 11, 12], [9, 10, 15, 16], [13, 14, 19, 20], [17, 18, 0, 0]]);
  assert.deepEqual(channel(shearY(grid, -0.3), 0), [[1, 2, 0, 0], [5, 6, 3, 4], [9, 10, 7, 8], [13, 14, 11, 12], [17, 18, 15, 16]]);
  for (const m of [0.1666666716337204, -0.2666666805744171, 0.7]) {
    assert.deepEqual(channel(shearY(grid, m), 0), referenceShear(grid, m, 'y'), `m=${m}`);
  }
});

test('Rotate turns counter-clockwise about the image centre, same size, fill 0', () => {
  const sq = makeImage(4, 4, (x, y) => 1 + y * 4 + x);
  // 90 degrees counter-clockwise: the right column becomes the top row.
  assert.deepEqual(channel(rotate(sq, 90), 0), [[4, 8, 12, 16], [3, 7, 11, 15], [2, 6, 10, 14], [1, 5, 9, 13]]);
  assert.deepEqual(channel(rotate(sq, -90), 0), [[13, 9, 5, 1], [14, 10, 6, 2], [15, 11, 7, 3], [16, 12, 8, 4]]);
  assert.deepEqual(channel(rotate(sq, 180), 0), [[16, 15, 14, 13], [12, 11, 10, 9], [8, 7, 6, 5], [4, 3, 2, 1]]);
  // A non-square image turned by 180 keeps its size and reads back to front.
  assert.deepEqual(channel(rotate(grid, 180), 0), [[20, 19, 18, 17], [16, 15, 14, 13], [12, 11, 10, 9], [8, 7, 6, 5], [4, 3, 2, 1]]);
});

test('Rotate by 30 degrees matches an independent inverse-rotation sampler', () => {
  const img = makeImage(6, 6, (x, y) => 1 + y * 6 + x);
  for (const angle of [30, -30, 23.33333396911621]) {
    const t = (angle * Math.PI) / 180;
    const expected: number[][] = [];
    for (let y = 0; y < 6; y++) {
      const row: number[] = [];
      for (let x = 0; x < 6; x++) {
        // Centred coordinates of the output pixel (y down). A counter-clockwise turn on screen
        // moves the content at the upper right to the top: the source of (cx, cy) is
        // (cos t cx - sin t cy, sin t cx + cos t cy).
        const cx = x - 2.5;
        const cy = y - 2.5;
        const sx = Math.round(Math.cos(t) * cx - Math.sin(t) * cy + 2.5);
        const sy = Math.round(Math.sin(t) * cx + Math.cos(t) * cy + 2.5);
        row.push(sx >= 0 && sx < 6 && sy >= 0 && sy < 6 ? 1 + sy * 6 + sx : 0);
      }
      expected.push(row);
    }
    const out = rotate(img, angle);
    assert.deepEqual(channel(out, 0), expected, `angle ${angle}`);
    // The corners come from outside the picture: fill 0.
    assert.equal(out.data[0], 0);
  }
});
