// The near-duplicate check (src/image/near-dup-check.ts) and PhashIndex with it: copies of a photo
// pass, different photos do not, each stage catches what the pHash misses, and the index returns the
// first stored picture that passes, in the order added.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { renderPhoto } from '../bench/photos.js';
import { FilipError } from '../src/core/errors.js';
import { PHASH_ONLY_DISTANCE, PHASH_SCAN_CANDIDATES, PhashIndex } from '../src/filters/phash-index.js';
import {
  alignedDistance,
  checkFromPixels,
  chromaDistance,
  confirmNearDup,
  DEFAULT_NEAR_DUP_CHECK,
  NEAR_DUP_CHECK_BYTES,
  THUMB_SIDE,
} from '../src/image/near-dup-check.js';
import { hamming } from '../src/image/phash.js';
import { processImage, resolveImageOptions } from '../src/image/process.js';

const OPTIONS = resolveImageOptions({ resizeMode: 'keep-ratio', size: 256 });

async function ingest(bytes: Buffer): Promise<{ phash: string; weak: string; check: Uint8Array }> {
  const r = await processImage(bytes, OPTIONS);
  assert.ok(r.ok, 'processImage accepts the picture');
  assert.ok(r.image.nearDupCheck && r.image.phashWeak);
  return { phash: r.image.phash, weak: r.image.phashWeak, check: r.image.nearDupCheck };
}

/** The picture with its colour-difference planes negated and its luma kept: the pHash barely moves. */
async function chromaInverted(bytes: Buffer): Promise<Buffer> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const out = Buffer.alloc(data.length);
  for (let p = 0; p < data.length; p += 3) {
    const [r, g, b] = [data[p]!, data[p + 1]!, data[p + 2]!];
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    const r2 = 2 * y - r;
    const b2 = 2 * y - b;
    out[p] = Math.max(0, Math.min(255, Math.round(r2)));
    out[p + 1] = Math.max(0, Math.min(255, Math.round((y - 0.299 * r2 - 0.114 * b2) / 0.587)));
    out[p + 2] = Math.max(0, Math.min(255, Math.round(b2)));
  }
  return sharp(out, { raw: { width: info.width, height: info.height, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
}

/** The picture under a grey checkerboard of `cells` squares a side: new detail, same low frequencies and colour. */
async function checkered(bytes: Buffer, cells: number): Promise<Buffer> {
  const { data, info } = await sharp(bytes).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const out = Buffer.from(data);
  for (let y = 0; y < info.height; y++) {
    for (let x = 0; x < info.width; x++) {
      const on = (Math.floor((x * cells) / info.width) + Math.floor((y * cells) / info.height)) % 2 === 0;
      for (let c = 0; c < 3; c++) {
        const p = (y * info.width + x) * 3 + c;
        out[p] = Math.max(0, Math.min(255, data[p]! + (on ? 70 : -70)));
      }
    }
  }
  return sharp(out, { raw: { width: info.width, height: info.height, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
}

describe('checkFromPixels', () => {
  test('a chroma hash and a grey thumbnail, NEAR_DUP_CHECK_BYTES bytes', () => {
    // A flat grey picture: every thumbnail cell is its grey level.
    const grey = Buffer.alloc(40 * 30 * 3, 77);
    const check = checkFromPixels(grey, 40, 30, 3);
    assert.equal(check.length, NEAR_DUP_CHECK_BYTES);
    assert.equal(NEAR_DUP_CHECK_BYTES, 16 + THUMB_SIDE * THUMB_SIDE);
    assert.ok(check.subarray(16).every((v) => v === 77));
    // A fourth channel is ignored.
    const rgba = Buffer.alloc(40 * 30 * 4, 77);
    assert.deepEqual(checkFromPixels(rgba, 40, 30, 4), check);
  });

  test('bad pixel buffers are RangeErrors', () => {
    const bad: [ArrayLike<number>, number, number, number][] = [
      [Buffer.alloc(12), 2, 2, 2],
      [Buffer.alloc(11), 2, 2, 3],
      [Buffer.alloc(12), 0, 2, 3],
    ];
    for (const [pixels, w, h, ch] of bad) assert.throws(() => checkFromPixels(pixels, w, h, ch), RangeError, `${w}x${h}x${ch}`);
  });

  test('check data of the wrong size is a TypeError naming its size', () => {
    const ok = new Uint8Array(NEAR_DUP_CHECK_BYTES);
    for (const wrong of [new Uint8Array(0), new Uint8Array(NEAR_DUP_CHECK_BYTES - 1), new Uint8Array(NEAR_DUP_CHECK_BYTES + 1)]) {
      assert.throws(() => chromaDistance(ok, wrong), new RegExp(`got ${wrong.length} bytes`));
      assert.throws(() => alignedDistance(wrong, ok), TypeError);
    }
  });
});

describe('on rendered photos, as ingest stores them', () => {
  const photos: Buffer[] = [];

  test('copies (crop, JPEG quality 55, resize, brightness, a caption) pass the check', async () => {
    for (let i = 0; i < 10; i++) photos.push((await renderPhoto(7, i)).bytes);
    for (const photo of photos) {
      const { width: w, height: h } = await sharp(photo).metadata();
      const original = await ingest(photo);
      const copies = {
        crop: await sharp(photo).extract({ left: Math.round(w! * 0.05), top: 0, width: w! - Math.round(w! * 0.05), height: h! - Math.round(h! * 0.03) }).jpeg({ quality: 55 }).toBuffer(),
        resize: await sharp(photo).resize(Math.round(w! * 0.6)).jpeg({ quality: 80 }).toBuffer(),
        brightness: await sharp(photo).modulate({ brightness: 1.18 }).jpeg({ quality: 85 }).toBuffer(),
        caption: await sharp(photo)
          .composite([{ input: Buffer.from(`<svg width="${w}" height="${h}"><text x="8" y="${h! - 10}" font-size="${Math.round(h! / 14)}" fill="white">example.com</text></svg>`) }])
          .jpeg({ quality: 85 })
          .toBuffer(),
      };
      for (const [name, bytes] of Object.entries(copies)) {
        const copy = await ingest(bytes);
        assert.ok(confirmNearDup(original.check, copy.check, DEFAULT_NEAR_DUP_CHECK), `${name} copy passes`);
        assert.ok(confirmNearDup(copy.check, original.check, DEFAULT_NEAR_DUP_CHECK), `${name} copy passes the other way round`);
        assert.ok(alignedDistance(original.check, copy.check) < DEFAULT_NEAR_DUP_CHECK.maxAlignedDistance / 2, `${name}: lines up well within the threshold`);
      }
    }
  });

  test('different photos do not', async () => {
    const checks = await Promise.all(photos.map(async (p) => (await ingest(p)).check));
    for (let i = 0; i < checks.length; i++) {
      for (let j = i + 1; j < checks.length; j++) assert.ok(!confirmNearDup(checks[i]!, checks[j]!, DEFAULT_NEAR_DUP_CHECK), `photos ${i} and ${j}`);
    }
  });

  test('the chroma stage tells apart pictures alike in light and dark only', async () => {
    const original = await ingest(photos[0]!);
    const inverted = await ingest(await chromaInverted(photos[0]!));
    assert.ok(hamming(original.phash, inverted.phash) <= 6, 'the pHash barely moves');
    assert.ok(chromaDistance(original.check, inverted.check) > 90, `chroma hashes far apart: ${chromaDistance(original.check, inverted.check)}`);
    assert.ok(!confirmNearDup(original.check, inverted.check, DEFAULT_NEAR_DUP_CHECK));
  });

  test('the aligned stage tells apart pictures alike in their pHash and colour but not their detail', async () => {
    const original = await ingest(photos[1]!);
    const other = await ingest(await checkered(photos[1]!, 9));
    assert.ok(hamming(original.phash, other.phash) <= 20, `pHashes ${hamming(original.phash, other.phash)} bits apart`);
    assert.ok(chromaDistance(original.check, other.check) <= DEFAULT_NEAR_DUP_CHECK.maxChromaBits, 'the chroma hash lets it through');
    assert.ok(alignedDistance(original.check, other.check) >= DEFAULT_NEAR_DUP_CHECK.maxAlignedDistance, `aligned ${alignedDistance(original.check, other.check)}`);
  });

  test('PhashIndex with the check: the first stored picture that passes wins; the pHash alone would take the first within reach', async () => {
    const original = await ingest(photos[2]!);
    const inverted = await ingest(await chromaInverted(photos[2]!));
    const copy = await ingest(await sharp(photos[2]!).resize(300).jpeg({ quality: 60 }).toBuffer());
    const checked = new PhashIndex(20, DEFAULT_NEAR_DUP_CHECK);
    const plain = new PhashIndex(20);
    for (const index of [checked, plain]) {
      index.add(inverted.phash, inverted.check); // first: near in pHash, another picture
      index.add(original.phash, original.check);
    }
    assert.equal(plain.find(copy.phash, copy.weak, copy.check), inverted.phash);
    assert.equal(checked.find(copy.phash, copy.weak, copy.check), original.phash);
    assert.deepEqual(
      [...checked.entries()].map((e) => [e.hash, e.check?.length]),
      [
        [inverted.phash, NEAR_DUP_CHECK_BYTES],
        [original.phash, NEAR_DUP_CHECK_BYTES],
      ],
    );
    // Only the inverted picture stored: nothing passes.
    const alone = new PhashIndex(20, DEFAULT_NEAR_DUP_CHECK);
    alone.add(inverted.phash, inverted.check);
    assert.equal(alone.find(copy.phash, copy.weak, copy.check), undefined);
  });
});

describe('PhashIndex: rows without check data', () => {
  const check = new Uint8Array(NEAR_DUP_CHECK_BYTES);
  const flip = (hex: string, bits: number): string => {
    let v = BigInt(`0x${hex}`);
    // Flip the lowest bits of chunks 1-3, leaving chunk 0 intact so the probes reach it.
    for (let i = 0; i < bits; i++) v ^= 1n << BigInt((i % 3) * 16 + Math.floor(i / 3));
    return v.toString(16).padStart(16, '0');
  };
  const base = '8badf00d12345678';

  test('match on the pHash alone, within PHASH_ONLY_DISTANCE, whichever side lacks it', () => {
    for (const bits of [0, PHASH_ONLY_DISTANCE, PHASH_ONLY_DISTANCE + 1, 20]) {
      const want = bits <= PHASH_ONLY_DISTANCE ? base : undefined;
      const storedWithout = new PhashIndex(20, DEFAULT_NEAR_DUP_CHECK);
      storedWithout.add(base);
      assert.equal(storedWithout.find(flip(base, bits), undefined, check), want, `stored without, ${bits} bits`);
      const queryWithout = new PhashIndex(20, DEFAULT_NEAR_DUP_CHECK);
      queryWithout.add(base, check);
      assert.equal(queryWithout.find(flip(base, bits)), want, `query without, ${bits} bits`);
      // Without a check, the distance alone.
      const plain = new PhashIndex(20);
      plain.add(base);
      assert.equal(plain.find(flip(base, bits)), base);
    }
  });

  test('bad check data and thresholds are refused', () => {
    const index = new PhashIndex(20, DEFAULT_NEAR_DUP_CHECK);
    assert.throws(() => index.add(base, new Uint8Array(10)), /check data must be 592 bytes, got 10 bytes/);
    assert.throws(() => index.find(base, undefined, new Uint8Array(600)), /got 600 bytes/);
    for (const n of [3, 60]) {
      const checks = Array.from({ length: n }, (_, i) => (i === n - 1 ? new Uint8Array(600) : undefined));
      assert.throws(() => index.findMany(Array.from({ length: n }, () => base), undefined, checks), new RegExp(`query ${n - 1}: check data must be 592 bytes, got 600 bytes`));
    }
    const bad: [object, string][] = [
      [{ maxChromaBits: -1, maxAlignedDistance: 0.1 }, 'maxChromaBits'],
      [{ maxChromaBits: 129, maxAlignedDistance: 0.1 }, 'maxChromaBits'],
      [{ maxChromaBits: 40, maxAlignedDistance: Number.NaN }, 'maxAlignedDistance'],
      [{ maxChromaBits: 40 }, 'maxAlignedDistance'],
    ];
    for (const [t, field] of bad) {
      assert.throws(
        () => new PhashIndex(20, t as never),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
        JSON.stringify(t),
      );
    }
  });
});

describe('PhashIndex with the check, across merges', () => {
  // Families of hashes near a few bases, each family one picture: a row carries a copy of it (passes),
  // its chroma hash with another thumbnail (fails the aligned stage), another picture (fails the chroma
  // stage) or no check data (the pHash alone, within PHASH_ONLY_DISTANCE). 12,000 rows: the tables
  // are rebuilt from the tail twice, so both the tables' and the tail's chroma copies are read.
  // At the end, every manyEvery-th row is asked again through findMany, which must answer as find.
  // Returns the most entries within the distance that one lookup met (an entry counted once per
  // chunk that reaches it, as the scan meets it).
  function againstDefinition(baseCount: number, lookupEvery: number, manyEvery: number, seed: number): number {
    const rand = (): number => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const word = (): number => Math.floor(rand() * 2 ** 32);
    const hex = (hi: number, lo: number): string => (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
    const picture = (): Uint8Array => Uint8Array.from({ length: NEAR_DUP_CHECK_BYTES }, () => Math.floor(rand() * 256));
    const bases = Array.from({ length: baseCount }, () => ({ hi: word(), lo: word(), picture: picture() }));
    const rows = Array.from({ length: 12_000 }, () => {
      const base = bases[Math.floor(rand() * bases.length)]!;
      let { hi, lo } = base;
      for (let k = Math.floor(rand() * 22); k > 0; k--) {
        const b = Math.floor(rand() * 64);
        if (b < 32) hi ^= 1 << b;
        else lo ^= 1 << (b - 32);
      }
      const kind = rand();
      let check: Uint8Array | undefined;
      if (kind < 0.5) {
        check = Uint8Array.from(base.picture);
        for (let i = 16; i < check.length; i += 5) check[i] = Math.max(0, Math.min(255, check[i]! + Math.floor(rand() * 7) - 3));
        check[Math.floor(rand() * 16)]! ^= 1 << Math.floor(rand() * 8);
      } else if (kind < 0.6) {
        check = Uint8Array.from(base.picture);
        for (let i = 16; i < check.length; i++) check[i] = Math.floor(rand() * 256);
      } else if (kind < 0.9) check = picture();
      const weak = hex(0x001f001f, 0x001f001f);
      return { hash: hex(hi, lo), weak, check };
    });
    const index = new PhashIndex(20, DEFAULT_NEAR_DUP_CHECK);
    const stored: typeof rows = [];
    const bits = (a: string, b: string): number => hamming(a, b);
    const reached = (s: string, q: string, weak: string): boolean => {
      for (let c = 0; c < 4; c++) {
        const x = parseInt(s.slice(4 * c, 4 * c + 4), 16) ^ parseInt(q.slice(4 * c, 4 * c + 4), 16);
        if ((x & ~parseInt(weak.slice(4 * c, 4 * c + 4), 16) & 0xffff) === 0) return true;
      }
      return false;
    };
    const reachedBy = (s: string, q: string, weak: string): number => {
      let n = 0;
      for (let c = 0; c < 4; c++) {
        const x = parseInt(s.slice(4 * c, 4 * c + 4), 16) ^ parseInt(q.slice(4 * c, 4 * c + 4), 16);
        if ((x & ~parseInt(weak.slice(4 * c, 4 * c + 4), 16) & 0xffff) === 0) n++;
      }
      return n;
    };
    let most = 0;
    const definition = (q: (typeof rows)[number]): string | undefined => {
      most = Math.max(most, stored.reduce((n, s) => n + (bits(s.hash, q.hash) <= 20 ? reachedBy(s.hash, q.hash, q.weak) : 0), 0));
      for (const s of stored) {
        const d = bits(s.hash, q.hash);
        if (d > 20 || !reached(s.hash, q.hash, q.weak)) continue;
        const pass = s.check === undefined || q.check === undefined ? d <= PHASH_ONLY_DISTANCE : confirmNearDup(s.check, q.check, DEFAULT_NEAR_DUP_CHECK);
        if (pass) return s.hash;
      }
      return undefined;
    };
    let asked = 0;
    let found = 0;
    rows.forEach((row, i) => {
      // Every row is stored; some are also looked up first (the definition is a scan).
      if (i % lookupEvery === 0) {
        const want = definition(row);
        assert.equal(index.find(row.hash, row.weak, row.check), want, `row ${i}`);
        asked++;
        if (want !== undefined) found++;
      }
      index.add(row.hash, row.check);
      stored.push(row);
    });
    assert.equal(index.size, rows.length);
    assert.ok(found > asked / 6 && found < asked - asked / 12, `${found} of ${asked} lookups match`);
    // Every manyEvery-th row, asked at once (findMany), answers as find does now that all are stored.
    const some = rows.filter((_, i) => i % manyEvery === 0);
    const many = index.findMany(
      some.map((r) => r.hash),
      some.map((r) => r.weak),
      some.map((r) => r.check),
    );
    let earlier = 0;
    some.forEach((row, i) => {
      assert.equal(many[i], index.find(row.hash, row.weak, row.check), `findMany, row ${i * manyEvery}`);
      if (many[i] !== undefined && many[i] !== row.hash) earlier++;
    });
    assert.ok(earlier > some.length / 10, `${earlier} of ${some.length} rows find an earlier copy`);
    return most;
  }

  test('answers as the definition applied to every stored picture in the order added', () => {
    againstDefinition(60, 20, 4, 99);
  });

  test('the same with more entries within the distance than the scan holds as candidates at once', () => {
    // One family: a lookup meets thousands of entries within 20 bits, so the scan's candidate list
    // fills and is settled more than once in one lookup (and findMany's, of 16,384, several times
    // in one batch).
    const most = againstDefinition(1, 100, 40, 7);
    assert.ok(most > 2 * PHASH_SCAN_CANDIDATES, `at most ${most} entries within the distance in a lookup`);
  });
});

describe('shards written before the near_dup_check column', () => {
  test('an evaluation set of such shards loads, and its rows match on the pHash alone', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { openShardWriter } = await import('../src/shard/writer.js');
    const { shardColumns } = await import('../src/shard/schema.js');
    const { iterateShard } = await import('../src/shard/reader.js');
    const { loadDecontaminationIndex } = await import('../src/filters/decontaminate.js');
    const dir = await mkdtemp(join(tmpdir(), 'filip-old-shard-'));
    try {
      const file = join(dir, '00000.parquet');
      const writer = await openShardWriter(file, shardColumns([]).filter((c) => c.name !== 'near_dup_check'), 'lean');
      const hash = '8badf00d12345678';
      await writer.write({
        key: '0000000000000', url: 'u', caption: 'c', image: Buffer.from([1]), image_format: 'jpeg', width: 1, height: 1,
        original_width: 1, original_height: 1, sha256: 'a'.repeat(64), phash: hash, phash_weak: null, source: 'm.tsv:0',
      });
      await writer.close();
      // The reader: an optional column the file lacks is left out; asking for it outright fails.
      const records = [];
      for await (const r of iterateShard(file, { columns: ['phash'], optionalColumns: ['near_dup_check'] })) records.push(r);
      assert.deepEqual(records, [{ phash: hash }]);
      await assert.rejects(async () => {
        for await (const _ of iterateShard(file, { columns: ['phash', 'near_dup_check'] })) void _;
      }, /near_dup_check/);

      const index = await loadDecontaminationIndex(file, 20, DEFAULT_NEAR_DUP_CHECK);
      assert.deepEqual([...index.entries()], [{ hash, check: undefined }]);
      const check = new Uint8Array(NEAR_DUP_CHECK_BYTES);
      // Chunk 0 intact (so the probes reach it); 10 and 11 bits flipped elsewhere.
      const near = (bits: number): string => {
        let v = BigInt(`0x${hash}`);
        for (let i = 0; i < bits; i++) v ^= 1n << BigInt((i % 3) * 16 + Math.floor(i / 3));
        return v.toString(16).padStart(16, '0');
      };
      assert.equal(index.find(near(PHASH_ONLY_DISTANCE), undefined, check), hash);
      assert.equal(index.find(near(PHASH_ONLY_DISTANCE + 1), undefined, check), undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
