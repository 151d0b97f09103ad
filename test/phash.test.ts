// The perceptual hash: the DCT against its textbook definition, the bit layout, Hamming distance,
// and the property dedupe relies on (near-copies close, different pictures far) through processImage.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { photo, prng } from '../scripts/make-fixtures.js';
import { PHASH_BLOCK, PHASH_GRID, PHASH_WEAK_BITS, dct2d, hamming, lumaGrid, phashFromPixels, phashWithWeakBits } from '../src/image/phash.js';
import { DEFAULT_IMAGE_OPTIONS, processImage } from '../src/image/process.js';

/** The DCT-II straight from its definition, O(n^4). */
function bruteDct(f: ArrayLike<number>, n: number, keep: number): number[] {
  const out: number[] = [];
  for (let u = 0; u < keep; u++) {
    for (let v = 0; v < keep; v++) {
      let sum = 0;
      for (let y = 0; y < n; y++) {
        for (let x = 0; x < n; x++) {
          const cu = Math.cos((Math.PI * u * (2 * y + 1)) / (2 * n));
          const cv = Math.cos((Math.PI * v * (2 * x + 1)) / (2 * n));
          sum += f[y * n + x]! * cu * cv;
        }
      }
      out.push(sum);
    }
  }
  return out;
}

function randomGrid(n: number, seed: number): Float64Array {
  const random = prng(seed);
  return Float64Array.from({ length: n * n }, () => random() * 255);
}

async function phashOf(bytes: Buffer): Promise<string> {
  const result = await processImage(bytes, DEFAULT_IMAGE_OPTIONS);
  if (!result.ok) assert.fail(`${result.reason}: ${result.message}`);
  return result.image.phash;
}

describe('dct2d', () => {
  for (const [n, keep] of [
    [6, 6],
    [7, 3],
    [8, 8],
    [32, 8],
  ] as const) {
    it(`matches the definition for n=${n}, keep=${keep}`, () => {
      const f = randomGrid(n, n * 100 + keep);
      const fast = dct2d(f, n, keep);
      const slow = bruteDct(f, n, keep);
      assert.equal(fast.length, keep * keep);
      fast.forEach((value, i) => {
        assert.ok(Math.abs(value - slow[i]!) < 1e-7, `coefficient ${i}: ${value} vs ${slow[i]}`);
      });
    });
  }

  it('puts all of a flat grid in DC', () => {
    const c = dct2d(new Float64Array(16).fill(3), 4);
    assert.ok(Math.abs(c[0]! - 48) < 1e-12);
    for (let i = 1; i < c.length; i++) assert.ok(Math.abs(c[i]!) < 1e-12);
  });

  it('rejects a wrong-sized input', () => {
    assert.throws(() => dct2d([1, 2, 3], 2), RangeError);
    assert.throws(() => dct2d([1, 2, 3, 4], 2, 3), RangeError);
  });
});

describe('phashFromPixels', () => {
  it('is 16 lower-case hex digits with exactly half the bits set for distinct coefficients', () => {
    for (let seed = 1; seed <= 5; seed++) {
      const hash = phashFromPixels(randomGrid(PHASH_GRID, seed));
      assert.match(hash, /^[0-9a-f]{16}$/);
      assert.equal(hamming(hash, '0000000000000000'), (PHASH_BLOCK * PHASH_BLOCK) / 2);
    }
  });

  it('sets bit i (from the most significant) when coefficient i of the 8x8 block exceeds the median', () => {
    const grid = randomGrid(PHASH_GRID, 9);
    const block = dct2d(grid, PHASH_GRID, PHASH_BLOCK);
    const sorted = [...block].sort((a, b) => a - b);
    const median = (sorted[31]! + sorted[32]!) / 2;
    const bits = [...block].map((c) => (c > median ? '1' : '0')).join('');
    assert.equal(phashFromPixels(grid), BigInt(`0b${bits}`).toString(16).padStart(16, '0'));
  });

  it('hashes a flat picture stably: only the DC bit', () => {
    assert.equal(phashFromPixels(new Float64Array(PHASH_GRID * PHASH_GRID).fill(77)), '8000000000000000');
  });

  it('does not depend on the scale of the grey values', () => {
    const grid = randomGrid(PHASH_GRID, 4);
    assert.equal(phashFromPixels(grid.map((v) => v * 3 + 10)), phashFromPixels(grid));
  });
});

describe('lumaGrid', () => {
  it('is the Rec. 601 luma of a 32x32 picture', () => {
    const rgb = Buffer.from(Array.from({ length: 32 * 32 * 3 }, (_, i) => (i * 37) & 0xff));
    const grid = lumaGrid(rgb, 32, 32, 3);
    for (const i of [0, 100, 1023]) {
      const expected = 0.299 * rgb[i * 3]! + 0.587 * rgb[i * 3 + 1]! + 0.114 * rgb[i * 3 + 2]!;
      assert.ok(Math.abs(grid[i]! - expected) < 1e-9);
    }
  });

  it('averages each cell exactly when the samples cover it (64x64, 2x2 samples), skipping alpha', () => {
    const rgba = Buffer.alloc(64 * 64 * 4);
    for (let p = 0; p < 64 * 64; p++) rgba.set([p % 251, (p * 7) % 253, (p * 13) % 255, 9], p * 4);
    const grid = lumaGrid(rgba, 64, 64, 4, 2);
    const luma = (x: number, y: number): number => {
      const p = (y * 64 + x) * 4;
      return 0.299 * rgba[p]! + 0.587 * rgba[p + 1]! + 0.114 * rgba[p + 2]!;
    };
    const [cx, cy] = [5, 17];
    const [x, y] = [2 * cx, 2 * cy];
    const mean = (luma(x, y) + luma(x + 1, y) + luma(x, y + 1) + luma(x + 1, y + 1)) / 4;
    assert.ok(Math.abs(grid[cy * 32 + cx]! - mean) < 1e-9);
  });

  it('gives a flat grid for a flat picture of any size', () => {
    const grid = lumaGrid(Buffer.alloc(37 * 291 * 3, 200), 37, 291, 3);
    assert.ok(grid.every((v) => Math.abs(v - 200) < 1e-9));
  });
});

describe('hamming', () => {
  it('counts differing bits', () => {
    assert.equal(hamming('0123456789abcdef', '0123456789abcdef'), 0);
    assert.equal(hamming('0000000000000000', 'ffffffffffffffff'), 64);
    assert.equal(hamming('8000000000000001', '0000000000000000'), 2);
    assert.equal(hamming('00000000f0000000', '0000000000000000'), 4);
  });

  it('rejects anything but 16 lower-case hex digits', () => {
    for (const bad of ['', '0123', '0123456789ABCDEF', '0123456789abcdeg', '0123456789abcdef0']) {
      assert.throws(() => hamming(bad, '0000000000000000'), TypeError, bad);
    }
  });
});

describe('phash through processImage', () => {
  it('is the same for the same bytes, close for near-copies, far for different pictures', async () => {
    const original = await photo(640, 480, 1).jpeg({ quality: 90 }).toBuffer();
    const hash = await phashOf(original);
    assert.equal(await phashOf(Buffer.from(original)), hash);

    const reencoded = await sharp(original).jpeg({ quality: 60 }).toBuffer();
    const halfSize = await sharp(original).resize(320).jpeg({ quality: 90 }).toBuffer();
    assert.ok(hamming(hash, await phashOf(reencoded)) <= 10, 're-encoded at q60');
    assert.ok(hamming(hash, await phashOf(halfSize)) <= 10, 'resized to 0.5x');

    for (const seed of [2, 3]) {
      const other = await phashOf(await photo(640, 480, seed).jpeg({ quality: 90 }).toBuffer());
      assert.ok(hamming(hash, other) > 20, `different picture (seed ${seed}): ${hamming(hash, other)}`);
    }
  });
});

describe('phashWithWeakBits', () => {
  /** Bit i (0 = the most significant) of a 16-hex-digit word pair. */
  const bit = (hex: string, i: number): number => (parseInt(hex[i >> 2]!, 16) >> (3 - (i & 3))) & 1;

  for (const seed of [1, 2, 3, 4, 5]) {
    it(`marks, in each 16-bit chunk, the ${PHASH_WEAK_BITS} coefficients closest to the median (grid ${seed})`, () => {
      const grid = randomGrid(PHASH_GRID, seed);
      const { phash, weak } = phashWithWeakBits(grid);
      assert.equal(phash, phashFromPixels(grid));
      const block = Array.from(dct2d(grid, PHASH_GRID, PHASH_BLOCK));
      const sorted = [...block].sort((a, b) => a - b);
      const median = (sorted[31]! + sorted[32]!) / 2;
      for (let c = 0; c < 4; c++) {
        const marked = Array.from({ length: 16 }, (_, j) => c * 16 + j).filter((i) => bit(weak, i) === 1);
        assert.equal(marked.length, PHASH_WEAK_BITS, `chunk ${c}`);
        const margin = (i: number): number => Math.abs(block[i]! - median);
        const unmarked = Array.from({ length: 16 }, (_, j) => c * 16 + j).filter((i) => bit(weak, i) === 0);
        // Every marked coefficient is at least as close to the median as every unmarked one.
        assert.ok(Math.max(...marked.map(margin)) <= Math.min(...unmarked.map(margin)), `chunk ${c}`);
      }
    });
  }

  it('processImage stores the mask; the bits transformed copies turn over are mostly weak bits', async () => {
    let flipped = 0;
    let weakFlipped = 0;
    for (let seed = 0; seed < 12; seed++) {
      const bytes = await photo(480, 360, 500 + seed).jpeg({ quality: 90 }).toBuffer();
      const copy = await sharp(bytes).resize(300).modulate({ brightness: 1.15 }).jpeg({ quality: 40 }).toBuffer();
      const a = await processImage(bytes, DEFAULT_IMAGE_OPTIONS);
      const b = await processImage(copy, DEFAULT_IMAGE_OPTIONS);
      assert.ok(a.ok && b.ok);
      assert.match(b.image.phashWeak ?? '', /^[0-9a-f]{16}$/);
      for (let i = 0; i < 64; i++) {
        if (bit(a.image.phash, i) === bit(b.image.phash, i)) continue;
        flipped++;
        if (bit(b.image.phashWeak!, i) === 1) weakFlipped++;
      }
    }
    // 20 of 64 bits are weak: chance alone would put under a third of the flips there.
    assert.ok(flipped >= 6, `${flipped} bits flipped in 12 copies`);
    assert.ok(weakFlipped >= 0.7 * flipped, `${weakFlipped} of ${flipped} flipped bits are weak bits of the copy`);
  });
});

