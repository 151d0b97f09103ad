// The 14 AutoAugment operations on 8-bit RGB pixels, with the semantics of torchvision's tensor
// functional ops on uint8 images (torchvision.transforms.functional and _functional_tensor), so a
// view made here matches what `transforms.AutoAugment` makes of the same tensor.
//
// torchvision computes in float32 and converts back to uint8 by truncation. The arithmetic is
// repeated here one float32 rounding at a time (Math.fround after every multiply, add and divide),
// because a pixel that lands on 199.99998 instead of 200 truncates to 199: blends and autocontrast
// depend on it. Known places where exact agreement is not guaranteed are listed at each op and in
// the module's ARCHITECTURE section:
//   - affine/rotate sampling: shears by bins 2 and 6 (1/15, 1/5) put whole rows of source
//     coordinates exactly half-way between two pixels in real arithmetic, so float32 rounding
//     inside torch's grid decides which neighbour is read. The grid's matrix product is repeated
//     here as a BLAS sgemm computes it on AVX2 (the second product fused into the first with one
//     rounding); this agrees pixel for pixel with numpy/OpenBLAS float32 on 812 op x magnitude x
//     size cases up to 224x224, but torch's own BLAS (MKL on x86 CPUs, cuBLAS on GPUs) was not
//     available to compare with, and a BLAS that rounds each product would move those rows by one.
//   - contrast: the image mean is an exact integer sum divided in float32; torch sums float32
//     values, which is the same while the sum of the grey image stays under 2^24 (every image up to
//     256x256, more when not all white).

/** An 8-bit, 3-channel image, interleaved RGB, row-major (HWC). */
export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

const f32 = Math.fround;

export function createImage(width: number, height: number): RgbImage {
  return { data: new Uint8Array(width * height * 3), width, height };
}

function sameSize(img: RgbImage): RgbImage {
  return createImage(img.width, img.height);
}

/** float32 -> uint8 as torch does it for images: clamp to [0, 255] first, then truncate. */
function toUint8(x: number): number {
  if (!(x > 0)) return 0; // also NaN
  if (x >= 255) return 255;
  return Math.trunc(x);
}

/** torch.round / nearbyint: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

// ---------------------------------------------------------------------------------------------
// Colour ops (torchvision _blend and friends)

/**
 * torchvision `_blend` for uint8: `(ratio * img1 + (1 - ratio) * img2).clamp(0, 255).to(uint8)`,
 * each product and the sum rounded to float32; `1 - ratio` is computed in double first (Python).
 * `other` is a constant (brightness: 0, contrast: the mean) or an image with `channels` values per
 * pixel (1: the grayscale image broadcast over R, G and B; 3: a full image).
 */
function blend(img: RgbImage, other: number | Uint8Array, channels: 1 | 3, ratio: number): RgbImage {
  const out = sameSize(img);
  const a = img.data;
  const o = out.data;
  const r = f32(ratio);
  const s = f32(1 - ratio);
  if (typeof other === 'number') {
    const sb = f32(s * other);
    for (let i = 0; i < a.length; i++) o[i] = toUint8(f32(f32(r * a[i]!) + sb));
  } else if (channels === 3) {
    for (let i = 0; i < a.length; i++) o[i] = toUint8(f32(f32(r * a[i]!) + f32(s * other[i]!)));
  } else {
    for (let p = 0, i = 0; p < other.length; p++, i += 3) {
      const sb = f32(s * other[p]!);
      o[i] = toUint8(f32(f32(r * a[i]!) + sb));
      o[i + 1] = toUint8(f32(f32(r * a[i + 1]!) + sb));
      o[i + 2] = toUint8(f32(f32(r * a[i + 2]!) + sb));
    }
  }
  return out;
}

/** torchvision rgb_to_grayscale on uint8: float32 `0.2989 R + 0.587 G + 0.114 B`, truncated to uint8. */
export function grayscale(img: RgbImage): Uint8Array {
  const { data } = img;
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  const cr = f32(0.2989);
  const cg = f32(0.587);
  const cb = f32(0.114);
  for (let p = 0, i = 0; p < n; p++, i += 3) {
    const sum = f32(f32(f32(cr * data[i]!) + f32(cg * data[i + 1]!)) + f32(cb * data[i + 2]!));
    out[p] = toUint8(sum);
  }
  return out;
}

/** F.adjust_brightness: blend with black. factor = 1 + magnitude in AutoAugment. */
export function brightness(img: RgbImage, factor: number): RgbImage {
  checkFactor('brightness', factor);
  return blend(img, 0, 1, factor);
}

/** F.adjust_saturation ("Color"): blend with the grayscale image. */
export function color(img: RgbImage, factor: number): RgbImage {
  checkFactor('color', factor);
  return blend(img, grayscale(img), 1, factor);
}

/** F.adjust_contrast: blend with the mean of the (uint8, truncated) grayscale image. */
export function contrast(img: RgbImage, factor: number): RgbImage {
  checkFactor('contrast', factor);
  const gray = grayscale(img);
  let sum = 0;
  for (let i = 0; i < gray.length; i++) sum += gray[i]!;
  const mean = gray.length === 0 ? 0 : f32(sum / gray.length);
  return blend(img, mean, 1, factor);
}

/**
 * F.adjust_sharpness: blend with a smoothed image, the 3x3 kernel [[1,1,1],[1,5,1],[1,1,1]] / 13
 * on interior pixels (rounded to the nearest integer, as torch rounds before its uint8 cast) and
 * the original on the one-pixel border. Images with a side of 2 or less are returned unchanged.
 * The blend itself runs over every pixel, so a border pixel can move by one where float32 rounding
 * of `r*v + (1-r)*v` lands just under v, exactly as in torch.
 */
export function sharpness(img: RgbImage, factor: number): RgbImage {
  checkFactor('sharpness', factor);
  const { width: w, height: h, data } = img;
  if (w <= 2 || h <= 2) return { data: data.slice(), width: w, height: h };
  const smooth = data.slice();
  const row = w * 3;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      for (let c = 0; c < 3; c++) {
        const i = y * row + x * 3 + c;
        const s =
          data[i - row - 3]! + data[i - row]! + data[i - row + 3]! +
          data[i - 3]! + 5 * data[i]! + data[i + 3]! +
          data[i + row - 3]! + data[i + row]! + data[i + row + 3]!;
        // s / 13 is never exactly half-way between integers, so float32 error cannot flip this.
        smooth[i] = Math.floor((2 * s + 13) / 26);
      }
    }
  }
  return blend(img, smooth, 3, factor);
}

function checkFactor(op: string, factor: number): void {
  // torchvision raises ValueError for a negative factor; AutoAugment's factors are 0.1 to 1.9.
  if (!(factor >= 0)) throw new RangeError(`${op} factor must be a non-negative number, got ${factor}`);
}

/** F.invert: 255 - v. */
export function invert(img: RgbImage): RgbImage {
  const out = sameSize(img);
  const { data } = img;
  const o = out.data;
  for (let i = 0; i < data.length; i++) o[i] = 255 - data[i]!;
  return out;
}

/** F.posterize: keep the top `bits` bits of every channel (0 bits gives black, 8 the identity). */
export function posterize(img: RgbImage, bits: number): RgbImage {
  if (!Number.isInteger(bits) || bits < 0 || bits > 8) throw new RangeError(`posterize bits must be 0 to 8, got ${bits}`);
  const mask = (0xff << (8 - bits)) & 0xff;
  const out = sameSize(img);
  const { data } = img;
  const o = out.data;
  for (let i = 0; i < data.length; i++) o[i] = data[i]! & mask;
  return out;
}

/** F.solarize: invert every value >= threshold (compared in float32, as torch does). */
export function solarize(img: RgbImage, threshold: number): RgbImage {
  if (!(threshold <= 255)) throw new RangeError(`solarize threshold must be at most 255, got ${threshold}`);
  const t = f32(threshold);
  const out = sameSize(img);
  const { data } = img;
  const o = out.data;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    o[i] = v >= t ? 255 - v : v;
  }
  return out;
}

/**
 * F.autocontrast: per channel, map [min, max] onto [0, 255]: `(v - min) * scale` with
 * scale = 255 / (max - min), all in float32, clamped and truncated. A constant channel is left as
 * it is (torch's scale is infinite there and is replaced by 1, the minimum by 0).
 */
export function autoContrast(img: RgbImage): RgbImage {
  const out = sameSize(img);
  const { data } = img;
  const o = out.data;
  for (let c = 0; c < 3; c++) {
    let min = 255;
    let max = 0;
    for (let i = c; i < data.length; i += 3) {
      const v = data[i]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (max === min) {
      for (let i = c; i < data.length; i += 3) o[i] = data[i]!;
      continue;
    }
    // `255 / t` on a tensor is `t.reciprocal() * 255` in torch: two float32 roundings, not one.
    const scale = f32(f32(1 / (max - min)) * 255);
    for (let i = c; i < data.length; i += 3) o[i] = toUint8(f32((data[i]! - min) * scale));
  }
  return out;
}

/**
 * F.equalize, per channel, with torchvision's lookup table: histogram h; step = (number of pixels
 * outside the last non-empty bin) // 255; when step is 0 the channel is unchanged; otherwise
 * lut[0] = 0 and lut[v] = min(255, (cumsum(h)[v-1] + step // 2) // step).
 */
export function equalize(img: RgbImage): RgbImage {
  const out = sameSize(img);
  const { data } = img;
  const o = out.data;
  const hist = new Float64Array(256);
  const lut = new Uint8Array(256);
  for (let c = 0; c < 3; c++) {
    hist.fill(0);
    for (let i = c; i < data.length; i += 3) hist[data[i]!]!++;
    let total = 0;
    let last = 0;
    for (let v = 0; v < 256; v++) {
      if (hist[v]! > 0) last = hist[v]!;
      total += hist[v]!;
    }
    const step = Math.floor((total - last) / 255);
    if (step === 0) {
      for (let i = c; i < data.length; i += 3) o[i] = data[i]!;
      continue;
    }
    const half = Math.floor(step / 2);
    let cum = 0;
    for (let v = 0; v < 256; v++) {
      lut[v] = v === 0 ? 0 : Math.min(255, Math.floor((cum + half) / step));
      cum += hist[v]!;
    }
    for (let i = c; i < data.length; i += 3) o[i] = lut[data[i]!]!;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Geometric ops (torchvision F.affine / F.rotate on tensors, nearest, fill 0)

/** A 2x3 inverse affine matrix [a, b, c, d, e, f]: output (x, y) samples input (ax+by+c, dx+ey+f). */
export type AffineMatrix = readonly [number, number, number, number, number, number];

const DEG_TO_RAD = Math.PI / 180;
const RAD_TO_DEG = 180 / Math.PI;

/** Python's math.degrees / math.radians (one multiply by a rounded constant). */
export const degrees = (rad: number): number => rad * RAD_TO_DEG;
export const radians = (deg: number): number => deg * DEG_TO_RAD;

/**
 * torchvision `_get_inverse_affine_matrix` (double precision, same operation order). Coordinates
 * have (0, 0) at the image centre; `center` is given in those coordinates.
 */
export function inverseAffineMatrix(
  center: readonly [number, number],
  angle: number,
  translate: readonly [number, number],
  scale: number,
  shear: readonly [number, number],
): AffineMatrix {
  const rot = radians(angle);
  const sx = radians(shear[0]);
  const sy = radians(shear[1]);
  const [cx, cy] = center;
  const [tx, ty] = translate;
  // Rotation-scale-shear without the scale.
  const a = Math.cos(rot - sy) / Math.cos(sy);
  const b = (-Math.cos(rot - sy) * Math.tan(sx)) / Math.cos(sy) - Math.sin(rot);
  const c = Math.sin(rot - sy) / Math.cos(sy);
  const d = (-Math.sin(rot - sy) * Math.tan(sx)) / Math.cos(sy) + Math.cos(rot);
  // Its inverse (the determinant is 1), then the translations around it.
  const m = [d, -b, 0, -c, a, 0].map((x) => x / scale) as [number, number, number, number, number, number];
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
  m[2] += cx;
  m[5] += cy;
  return m;
}

/**
 * F_t.affine / F_t.rotate (no expand) with nearest interpolation and zero fill: the float32 path
 * of torch's `_gen_affine_grid` and CPU `grid_sample(align_corners=False)`. Output pixel (j, i) has
 * centred coordinates x = j - w/2 + 0.5, y = i - h/2 + 0.5; the grid value is
 * (m0 x + m1 y + m2) / (w/2), unnormalised as (g + 1) * (w/2) - 0.5 and rounded half to even.
 */
export function affineNearest(img: RgbImage, matrix: AffineMatrix): RgbImage {
  const { width: w, height: h, data } = img;
  const out = sameSize(img);
  const o = out.data;
  const halfW = f32(0.5 * w);
  const halfH = f32(0.5 * h);
  const t = matrix.map(f32);
  const r0 = f32(t[0]! / halfW);
  const r1 = f32(t[1]! / halfW);
  const r2 = f32(t[2]! / halfW);
  const r3 = f32(t[3]! / halfH);
  const r4 = f32(t[4]! / halfH);
  const r5 = f32(t[5]! / halfH);
  const scaleX = f32(w / 2);
  const scaleY = f32(h / 2);
  for (let i = 0; i < h; i++) {
    const y = -h * 0.5 + 0.5 + i;
    // Exact in double (a half-integer times a float32), so adding it to the rounded first product
    // and rounding once is the fused multiply-add of an sgemm kernel.
    const yx = y * r1;
    const yy = y * r4;
    for (let j = 0; j < w; j++) {
      const x = -w * 0.5 + 0.5 + j;
      const gx = f32(f32(f32(x * r0) + yx) + r2);
      const gy = f32(f32(f32(x * r3) + yy) + r5);
      const ix = roundHalfEven(f32(f32(f32(gx + 1) * scaleX) - 0.5));
      const iy = roundHalfEven(f32(f32(f32(gy + 1) * scaleY) - 0.5));
      if (ix >= 0 && ix <= w - 1 && iy >= 0 && iy <= h - 1) {
        const src = (iy * w + ix) * 3;
        const dst = (i * w + j) * 3;
        o[dst] = data[src]!;
        o[dst + 1] = data[src + 1]!;
        o[dst + 2] = data[src + 2]!;
      }
    }
  }
  return out;
}

/**
 * AutoAugment ShearX: F.affine(shear=[degrees(atan(m)), 0], center=[0, 0]), i.e. about the top-left
 * corner of the image: output (j, i) samples input column j + m * (i + 0.5).
 */
export function shearX(img: RgbImage, magnitude: number): RgbImage {
  const center = [-img.width * 0.5, -img.height * 0.5] as const;
  return affineNearest(img, inverseAffineMatrix(center, 0, [0, 0], 1, [degrees(Math.atan(magnitude)), 0]));
}

/** AutoAugment ShearY: the same about the top-left corner, along y: row i + m * (j + 0.5). */
export function shearY(img: RgbImage, magnitude: number): RgbImage {
  const center = [-img.width * 0.5, -img.height * 0.5] as const;
  return affineNearest(img, inverseAffineMatrix(center, 0, [0, 0], 1, [0, degrees(Math.atan(magnitude))]));
}

/** AutoAugment TranslateX: F.affine(translate=[trunc(pixels), 0]); positive moves the picture right. */
export function translateX(img: RgbImage, pixels: number): RgbImage {
  return affineNearest(img, inverseAffineMatrix([0, 0], 0, [Math.trunc(pixels), 0], 1, [0, 0]));
}

/** AutoAugment TranslateY: positive moves the picture down. */
export function translateY(img: RgbImage, pixels: number): RgbImage {
  return affineNearest(img, inverseAffineMatrix([0, 0], 0, [0, Math.trunc(pixels)], 1, [0, 0]));
}

/**
 * F.rotate(angle) about the image centre, same size, no expand; positive angles turn the picture
 * counter-clockwise (torchvision's convention: rotate passes -angle to the affine matrix).
 */
export function rotate(img: RgbImage, angle: number): RgbImage {
  return affineNearest(img, inverseAffineMatrix([0, 0], -angle, [0, 0], 1, [0, 0]));
}

export function identity(img: RgbImage): RgbImage {
  return { data: img.data.slice(), width: img.width, height: img.height };
}
