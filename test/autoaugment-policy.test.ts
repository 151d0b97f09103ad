// AutoAugment as a whole: torchvision's policy tables and magnitude bins, the seeded application
// (which draws, in which order, signs), reproducible views from bytes, and the shard stage.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import {
  AUGMENT_POLICIES,
  POLICY_TABLES,
  SIGNED_OPS,
  augmentImageBytes,
  augmentStage,
  applyOp,
  augmentationSpace,
  autoAugment,
  decodeRgb,
  encodeRgb,
  magnitudeOf,
  planAutoAugment,
  resolveAugmentOptions,
  viewSeed,
  type RgbImage,
} from '../src/augment/index.js';
import { FilipError } from '../src/core/errors.js';
import { makeKey, type Sample, type SampleImage } from '../src/core/sample.js';
import { mulberry32 } from '../src/core/random.js';
import { noiseJpeg } from './helpers/images.js';

/** A generator that returns the given numbers in order and counts how many were drawn. */
function scripted(values: readonly number[]): { rng: () => number; drawn: () => number } {
  let i = 0;
  return {
    rng: () => {
      if (i >= values.length) throw new Error('drew more numbers than scripted');
      return values[i++]!;
    },
    drawn: () => i,
  };
}

// ---------------------------------------------------------------------------------------------
// Tables and bins

test('every policy has 25 sub-policies of two steps with probabilities in [0, 1] and bins 0-9', () => {
  assert.deepEqual([...AUGMENT_POLICIES], ['imagenet', 'cifar10', 'svhn']);
  for (const policy of AUGMENT_POLICIES) {
    const table = POLICY_TABLES[policy];
    assert.equal(table.length, 25, policy);
    for (const sub of table) {
      assert.equal(sub.length, 2);
      for (const [, p, bin] of sub) {
        assert.ok(p >= 0 && p <= 1);
        assert.ok(bin === null || (Number.isInteger(bin) && bin >= 0 && bin <= 9));
      }
    }
  }
});

test('policy tables match torchvision at spot checks (op, probability, magnitude bin)', () => {
  // Values read from torchvision/transforms/autoaugment.py, AutoAugment._get_policies.
  const checks: [keyof typeof POLICY_TABLES, number, unknown][] = [
    ['imagenet', 0, [['Posterize', 0.4, 8], ['Rotate', 0.6, 9]]],
    ['imagenet', 1, [['Solarize', 0.6, 5], ['AutoContrast', 0.6, null]]],
    ['imagenet', 12, [['Equalize', 0.0, null], ['Equalize', 0.8, null]]],
    ['imagenet', 14, [['Color', 0.6, 4], ['Contrast', 1.0, 8]]],
    ['imagenet', 17, [['Sharpness', 0.4, 7], ['Invert', 0.6, null]]],
    ['imagenet', 18, [['ShearX', 0.6, 5], ['Equalize', 1.0, null]]],
    ['imagenet', 24, [['Equalize', 0.8, null], ['Equalize', 0.6, null]]],
    ['cifar10', 0, [['Invert', 0.1, null], ['Contrast', 0.2, 6]]],
    ['cifar10', 1, [['Rotate', 0.7, 2], ['TranslateX', 0.3, 9]]],
    ['cifar10', 7, [['Sharpness', 0.3, 9], ['Brightness', 0.7, 9]]],
    ['cifar10', 21, [['TranslateY', 0.9, 9], ['TranslateY', 0.7, 9]]],
    ['cifar10', 24, [['TranslateY', 0.7, 9], ['AutoContrast', 0.9, null]]],
    ['svhn', 0, [['ShearX', 0.9, 4], ['Invert', 0.2, null]]],
    ['svhn', 14, [['Contrast', 0.3, 3], ['Rotate', 0.8, 4]]],
    ['svhn', 15, [['Invert', 0.8, null], ['TranslateY', 0.0, 2]]],
    ['svhn', 22, [['ShearX', 0.7, 9], ['TranslateY', 0.8, 3]]],
    ['svhn', 24, [['ShearX', 0.7, 2], ['Invert', 0.1, null]]],
  ];
  for (const [policy, index, expected] of checks) {
    assert.deepEqual(POLICY_TABLES[policy][index], expected, `${policy}[${index}]`);
  }
  // The ImageNet list repeats some pairs, as torchvision's does.
  assert.deepEqual(POLICY_TABLES.imagenet[1], POLICY_TABLES.imagenet[21]);
  assert.deepEqual(POLICY_TABLES.imagenet[14], POLICY_TABLES.imagenet[23]);
});

test('magnitude bins follow _augmentation_space with 10 bins', () => {
  const space = augmentationSpace(331, 200);
  assert.deepEqual(space.Posterize, [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]);
  const close = (actual: readonly number[] | undefined, expected: number[]) => {
    assert.ok(actual !== undefined);
    assert.equal(actual.length, 10);
    actual.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-4, `bin ${i}: ${v} vs ${expected[i]}`));
  };
  const lin = (a: number, b: number) => Array.from({ length: 10 }, (_, i) => a + ((b - a) * i) / 9);
  close(space.ShearX, lin(0, 0.3));
  close(space.ShearY, lin(0, 0.3));
  close(space.Rotate, lin(0, 30));
  close(space.Brightness, lin(0, 0.9));
  close(space.Color, lin(0, 0.9));
  close(space.Contrast, lin(0, 0.9));
  close(space.Sharpness, lin(0, 0.9));
  close(space.Solarize, lin(255, 0));
  // Translate: up to 150/331 of the width (x) or the height (y).
  close(space.TranslateX, lin(0, 150));
  close(space.TranslateY, lin(0, (150 / 331) * 200));
  // Ends and the integer bins are exact.
  assert.equal(space.Solarize![0], 255);
  assert.equal(space.Solarize![6], 85);
  assert.equal(space.Solarize![9], 0);
  assert.equal(space.Rotate![9], 30);
  assert.equal(space.TranslateX![9], 150);
  assert.equal(magnitudeOf('Equalize', null, 10, 10), 0);
  assert.throws(() => magnitudeOf('Rotate', 10, 10, 10), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Policy application

test('applyOp passes magnitudes on as torchvision _apply_op does', () => {
  const px = (img: RgbImage) => [...img.data];
  const row: RgbImage = { data: Uint8Array.from([100, 10, 0, 183, 200, 255, 3, 4, 5]), width: 3, height: 1 };
  // Colour ops take 1 + magnitude: +0.5 multiplies by 1.5, -0.5 by 0.5.
  assert.deepEqual(px(applyOp(row, 'Brightness', 0.5)), [150, 15, 0, 255, 255, 255, 4, 6, 7]);
  assert.deepEqual(px(applyOp(row, 'Brightness', -0.5)), [50, 5, 0, 91, 100, 127, 1, 2, 2]);
  // Posterize takes int(magnitude) bits; Solarize the threshold itself.
  assert.deepEqual(px(applyOp(row, 'Posterize', 4)), [96, 0, 0, 176, 192, 240, 0, 0, 0]);
  assert.deepEqual(px(applyOp(row, 'Solarize', 128)), [100, 10, 0, 72, 55, 0, 3, 4, 5]);
  // Translate takes int(magnitude): 1.9 and -1.9 move by one pixel.
  assert.deepEqual(px(applyOp(row, 'TranslateX', 1.9)), [0, 0, 0, 100, 10, 0, 183, 200, 255]);
  assert.deepEqual(px(applyOp(row, 'TranslateX', -1.9)), [183, 200, 255, 3, 4, 5, 0, 0, 0]);
  assert.deepEqual(px(applyOp(row, 'Identity', 0)), px(row));
  assert.deepEqual(px(applyOp(row, 'Invert', 0)), [155, 245, 255, 72, 55, 0, 252, 251, 250]);
});

test('a draw picks the sub-policy uniformly, applies ops whose draw is <= p, negates signed ops on a coin < 1/2', () => {
  // imagenet[10] = (Rotate 0.8 bin 8, Color 0.4 bin 0); 10 / 25 = 0.4 selects index 10.
  const s = scripted([0.4, 0.5, 0.4, 0.2, 0.9]);
  const plan = planAutoAugment(s.rng, 'imagenet', 64, 64);
  assert.equal(s.drawn(), 5);
  assert.equal(plan.subPolicy, 10);
  assert.equal(plan.ops.length, 2);
  assert.equal(plan.ops[0]!.op, 'Rotate');
  assert.ok(Math.abs(plan.ops[0]!.magnitude - -26.666666) < 1e-4, 'Rotate bin 8 negated');
  assert.deepEqual(plan.ops[1], { op: 'Color', magnitude: 0 });

  // Same sub-policy, first draw above 0.8: only Color runs; the coin of 0.1 negates its 0 magnitude.
  const skip = planAutoAugment(scripted([0.4, 0.81, 0.0, 0.9, 0.1]).rng, 'imagenet', 64, 64);
  assert.deepEqual(skip.ops.map((o) => o.op), ['Color']);

  // Positive sign when the coin is >= 1/2.
  const pos = planAutoAugment(scripted([0.4, 0.0, 0.5, 0.5, 0.5]).rng, 'imagenet', 64, 64);
  assert.ok(pos.ops[0]!.magnitude > 26.6);
});

test('unsigned ops are never negated; probability-0 steps never run', () => {
  // imagenet[0] = (Posterize 0.4 bin 8 -> 4 bits, Rotate 0.6 bin 9 -> 30 degrees).
  const plan = planAutoAugment(scripted([0, 0.1, 0.1, 0.0, 0.0]).rng, 'imagenet', 32, 32);
  assert.deepEqual(plan.ops, [
    { op: 'Posterize', magnitude: 4 },
    { op: 'Rotate', magnitude: -30 },
  ]);
  // imagenet[12] = (Equalize 0.0, Equalize 0.8): the first never runs (a draw of 0.3 > 0).
  const eq = planAutoAugment(scripted([12 / 25, 0.3, 0.3, 0, 0]).rng, 'imagenet', 32, 32);
  assert.deepEqual(eq.ops, [{ op: 'Equalize', magnitude: 0 }]);
  for (const op of ['Posterize', 'Solarize', 'AutoContrast', 'Equalize', 'Invert'] as const) assert.ok(!SIGNED_OPS.has(op));
  // cifar10[1] TranslateX bin 9 on a 331-wide image: 150 pixels, negated by the coin.
  const tr = planAutoAugment(scripted([1 / 25, 0.9, 0.0, 0.9, 0.0]).rng, 'cifar10', 331, 100);
  assert.deepEqual(tr.ops, [{ op: 'TranslateX', magnitude: -150 }]);
});

test('autoAugment draws exactly five numbers whatever it applies, and never touches its input', () => {
  const img = photo(24, 16, 3);
  const before = img.data.slice();
  for (let sub = 0; sub < 25; sub++) {
    const s = scripted([sub / 25, 0, 0, 0.7, 0.2]);
    const out = autoAugment(img, s.rng, 'imagenet');
    assert.equal(s.drawn(), 5);
    assert.equal(out.width, 24);
    assert.equal(out.height, 16);
    assert.notEqual(out.data, img.data);
  }
  assert.deepEqual(img.data, before);
});

test('same generator seed gives identical pixels; the policies differ', () => {
  const img = photo(32, 32, 9);
  for (const policy of AUGMENT_POLICIES) {
    const a = autoAugment(img, mulberry32(1234), policy);
    const b = autoAugment(img, mulberry32(1234), policy);
    assert.deepEqual(a.data, b.data, policy);
  }
  // Over many seeds, each policy changes most images.
  for (const policy of AUGMENT_POLICIES) {
    let changed = 0;
    for (let seed = 0; seed < 40; seed++) {
      if (!sameBytes(autoAugment(img, mulberry32(seed), policy).data, img.data)) changed++;
    }
    assert.ok(changed >= 20, `${policy}: ${changed} of 40 changed`);
  }
});

// ---------------------------------------------------------------------------------------------
// Seeds and bytes

test('viewSeed is a pure 32-bit function of seed, key and view', () => {
  const a = viewSeed(7, '0000000000001', 0);
  assert.equal(a, viewSeed(7, '0000000000001', 0));
  assert.ok(Number.isInteger(a) && a >= 0 && a < 2 ** 32);
  const variants = new Set([
    a,
    viewSeed(8, '0000000000001', 0),
    viewSeed(7, '0000000000002', 0),
    viewSeed(7, '0000000000001', 1),
    viewSeed(7, '0000000000001', 2),
    viewSeed(0, '', 0),
  ]);
  assert.equal(variants.size, 6);
});

test('augmentImageBytes: same seed, key and view give identical bytes; other views differ', async () => {
  const bytes = await noiseJpeg(11, 64, 48);
  const opts = { seed: 5, key: makeKey(0, 3), policy: 'imagenet', format: 'png', quality: 90 } as const;
  const first = await augmentImageBytes(bytes, { ...opts, view: 0 });
  const again = await augmentImageBytes(bytes, { ...opts, view: 0 });
  assert.ok(first.equals(again));
  const views = await Promise.all([1, 2, 3, 4, 5, 6, 7].map((view) => augmentImageBytes(bytes, { ...opts, view })));
  const distinct = new Set([first, ...views].map((b) => b.toString('base64')));
  assert.ok(distinct.size >= 5, `${distinct.size} distinct of 8 views`);
  // The view is the same as augmenting the decoded pixels directly with the view's generator.
  const meta = await sharp(first).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 64);
  assert.equal(meta.height, 48);
  // JPEG and WebP outputs decode to the same size.
  for (const format of ['jpeg', 'webp'] as const) {
    const out = await augmentImageBytes(bytes, { ...opts, view: 0, format });
    const m = await sharp(out).metadata();
    assert.equal(m.format, format);
    assert.equal(m.width, 64);
  }
});

test('decodeRgb flattens alpha and converts grey to 3 channels; size crops the centre square', async () => {
  const rgba = await sharp({ create: { width: 5, height: 3, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .png()
    .toBuffer();
  const img = await decodeRgb(rgba);
  assert.equal(img.width, 5);
  assert.equal(img.data.length, 5 * 3 * 3);
  assert.ok(img.data.every((v) => v === 255), 'transparent black flattens onto white');
  const grey = await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 90, g: 90, b: 90 } } })
    .toColourspace('b-w')
    .png()
    .toBuffer();
  assert.equal((await decodeRgb(grey)).data.length, 4 * 4 * 3);
  const wide = await noiseJpeg(2, 80, 40);
  const sq = await decodeRgb(wide, 32);
  assert.deepEqual([sq.width, sq.height], [32, 32]);
  // encodeRgb (png) is lossless.
  const back = await decodeRgb(await encodeRgb(sq, 'png'));
  assert.deepEqual(back.data, sq.data);
  await assert.rejects(decodeRgb(Buffer.from('not an image at all')));
});

// ---------------------------------------------------------------------------------------------
// The stage

function sampleAt(i: number, image?: SampleImage): Sample {
  return {
    key: makeKey(0, i),
    index: i,
    url: `https://example.test/${i}.jpg`,
    caption: `caption ${i}`,
    source: { file: 'm.csv', row: i },
    extra: {},
    status: image ? 'ok' : 'pending',
    image,
  };
}

function imageOf(bytes: Buffer, format: SampleImage['format'] = 'jpeg'): SampleImage {
  return { bytes, format, width: 48, height: 40, originalWidth: 48, originalHeight: 40, sha256: 'x', phash: '0' };
}

async function* fromArray<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

test('the stage adds K views to ok samples, keeps order, passes others through, rejects bad images', async () => {
  const options = resolveAugmentOptions({ views: 3, seed: 42, concurrency: 4, quality: 80 });
  const samples: Sample[] = [];
  for (let i = 0; i < 14; i++) {
    samples.push(sampleAt(i, imageOf(await noiseJpeg(100 + i, 48, 40), i === 5 ? 'png' : 'jpeg')));
  }
  // A png-format sample must carry png bytes.
  samples[5]!.image = imageOf(await sharp(samples[5]!.image!.bytes).png().toBuffer(), 'png');
  // Already rejected: untouched. Ok without image: untouched. Corrupt bytes: augment_failed.
  samples[3]!.status = 'rejected';
  samples[3]!.reason = 'near_duplicate';
  samples[7] = { ...sampleAt(7), status: 'ok' };
  const good = samples[9]!.image!.bytes;
  samples[9]!.image = imageOf(good.subarray(0, 200));
  samples[11]!.image = imageOf(Buffer.from('definitely not a picture'));

  const out: Sample[] = [];
  for await (const s of augmentStage(options)(fromArray(samples))) out.push(s);

  assert.deepEqual(out.map((s) => s.index), samples.map((_, i) => i), 'input order kept');
  assert.equal(out[3]!.status, 'rejected');
  assert.equal(out[3]!.reason, 'near_duplicate');
  assert.equal(out[3]!.views, undefined);
  assert.equal(out[7]!.status, 'ok');
  assert.equal(out[7]!.views, undefined);
  for (const i of [9, 11]) {
    assert.equal(out[i]!.status, 'rejected', `sample ${i}`);
    assert.equal(out[i]!.reason, 'augment_failed');
    assert.ok(out[i]!.errorMessage);
    assert.equal(out[i]!.views, undefined);
  }
  for (const i of [0, 1, 2, 4, 5, 6, 8, 10, 12, 13]) {
    const s = out[i]!;
    assert.equal(s.status, 'ok');
    assert.equal(s.views?.length, 3, `sample ${i}`);
    for (const [v, view] of s.views!.entries()) {
      const meta = await sharp(view).metadata();
      assert.equal(meta.format, i === 5 ? 'png' : 'jpeg');
      assert.deepEqual([meta.width, meta.height], [48, 40]);
      // Each stored view is exactly what the byte helper makes for this seed, key and view.
      const expected = await augmentImageBytes(s.image!.bytes, {
        seed: 42,
        key: s.key,
        view: v,
        policy: 'imagenet',
        format: i === 5 ? 'png' : 'jpeg',
        quality: 80,
      });
      assert.ok(view.equals(expected), `sample ${i} view ${v}`);
    }
  }
});

test('resolveAugmentOptions applies defaults and refuses bad values with FILIP_ERR_INVALID_OPTION', () => {
  const d = resolveAugmentOptions();
  assert.deepEqual({ ...d }, { views: 2, seed: 0, policy: 'imagenet', concurrency: 4, quality: 95 });
  assert.equal(resolveAugmentOptions({ policy: 'svhn', views: undefined }).policy, 'svhn');
  const bad: [string, unknown][] = [
    ['views', 0],
    ['views', 1.5],
    ['views', 65],
    ['seed', -1],
    ['seed', 2 ** 32],
    ['seed', '7'],
    ['policy', 'ImageNet'],
    ['policy', 'rand'],
    ['concurrency', 0],
    ['quality', 0],
    ['quality', 101],
    ['colour', 1],
  ];
  for (const [key, value] of bad) {
    assert.throws(
      () => resolveAugmentOptions({ [key]: value } as never),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === key,
      `${key}=${String(value)}`,
    );
  }
});

// ---------------------------------------------------------------------------------------------

/** A small photo-like image: smooth gradients plus seeded noise. */
function photo(width: number, height: number, seed: number): RgbImage {
  const rand = mulberry32(seed);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = Math.min(255, Math.floor((x / width) * 200 + rand() * 50));
      data[i + 1] = Math.min(255, Math.floor((y / height) * 180 + rand() * 60));
      data[i + 2] = Math.floor(rand() * 256);
    }
  }
  return { data, width, height };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
