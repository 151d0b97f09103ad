// PhashIndex answers exactly what a linear scan applying its definition answers (within maxDistance
// and, in some chunk, different only in the query's weak bits; planted neighbours at every distance
// around the threshold, with and without weak-bit masks, adds interleaved with finds across merges,
// skewed hashes that crowd one bucket), and findMany answers as find does; the WebAssembly scan embedded in phash-scan-wasm.ts is the
// one its .wat source compiles to; bad arguments fail with stable codes; the decontamination index
// loads folders of images and shards.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { FilipError, type ErrorCode } from '../src/core/errors.js';
import { loadDecontaminationIndex } from '../src/filters/decontaminate.js';
import { BATCH_QUERIES, DEFAULT_NEAR_DUP_DISTANCE, MAX_NEAR_DUP_DISTANCE, MAX_WEAK_BITS_PER_CHUNK, PhashIndex } from '../src/filters/phash-index.js';
import { PHASH_SCAN_WASM_BASE64 } from '../src/filters/phash-scan-wasm.js';
import { compilePhashScan } from '../scripts/build-wasm.js';
import { DEFAULT_IMAGE_OPTIONS, hamming, processImage } from '../src/image/process.js';
import { shardColumns } from '../src/shard/schema.js';
import { hashRow } from './helpers/shard-rows.js';
import { openShardWriter } from '../src/shard/writer.js';
import { noiseJpeg, seededRandom } from './helpers/images.js';

function hasCode(code: ErrorCode) {
  return (err: unknown) => err instanceof FilipError && err.code === code;
}

// ---------------------------------------------------------------------------------------------
// Random hashes with planted neighbours

type Words = [number, number];

function hex(w: Words): string {
  return (w[0] >>> 0).toString(16).padStart(8, '0') + (w[1] >>> 0).toString(16).padStart(8, '0');
}

function randomWords(rand: () => number): Words {
  return [Math.floor(rand() * 2 ** 32), Math.floor(rand() * 2 ** 32)];
}

/** `w` with `k` distinct random bits flipped. */
function flip(w: Words, k: number, rand: () => number): Words {
  const bits = new Set<number>();
  while (bits.size < k) bits.add(Math.floor(rand() * 64));
  let [hi, lo] = w;
  for (const b of bits) {
    if (b < 32) hi ^= 1 << b;
    else lo ^= 1 << (b - 32);
  }
  return [hi >>> 0, lo >>> 0];
}

function popcount(x: number): number {
  let v = x >>> 0;
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

/** The 16-bit chunk c of (hi, lo): chunk 0 is the top of hi. */
function chunk(w: Words, c: number): number {
  const word = c < 2 ? w[0] : w[1];
  return (c & 1) === 0 ? word >>> 16 : word & 0xffff;
}

/**
 * The reference: the first stored hash (in add order) within d bits that differs from the query, in
 * at least one chunk, only in the query's weak bits; by scanning them all.
 */
class LinearScan {
  readonly hi = new Uint32Array(65_536);
  readonly lo = new Uint32Array(65_536);
  size = 0;
  constructor(readonly d: number) {}
  add(w: Words): void {
    this.hi[this.size] = w[0];
    this.lo[this.size++] = w[1];
  }
  find(w: Words, weak: Words = [0, 0]): string | undefined {
    const [qh, ql] = w;
    for (let i = 0; i < this.size; i++) {
      const s: Words = [this.hi[i]!, this.lo[i]!];
      if (popcount(s[0] ^ qh) + popcount(s[1] ^ ql) > this.d) continue;
      let reached = false;
      for (let c = 0; c < 4; c++) if (((chunk(s, c) ^ chunk(w, c)) & ~chunk(weak, c) & 0xffff) === 0) reached = true;
      if (reached) return hex(s);
    }
    return undefined;
  }
}

/** A weak-bit mask with `k` random bits in each chunk, plus the bits in `extra` (where the chunk can take them). */
function weakMask(rand: () => number, k: number, extra: Words = [0, 0]): Words {
  const chunks: number[] = [];
  for (let c = 0; c < 4; c++) {
    let m = 0;
    while (popcount(m) < k) m |= 1 << Math.floor(rand() * 16);
    const more = chunk(extra, c);
    if (popcount(m | more) <= MAX_WEAK_BITS_PER_CHUNK) m |= more;
    chunks.push(m);
  }
  return [((chunks[0]! << 16) | chunks[1]!) >>> 0, ((chunks[2]! << 16) | chunks[3]!) >>> 0];
}

/**
 * Adds `total` hashes in rounds, querying after each round: a third of the stored hashes are near
 * copies of earlier ones (so several stored hashes match one query and "first" matters), queries are
 * stored hashes with 0..d+2 bits flipped, plus unrelated random ones. A query has no mask (a fifth),
 * or 5 random weak bits a chunk, to which half the time the flipped bits of chunk 0 are added (so
 * that chunk is reached through its weak bits, as on real photos). `skew` makes hashes whose top 24
 * bits are nearly constant, which piles them into a few buckets of the first chunks.
 */
function compareWithScan(d: number, seed: number, total: number, skew: boolean): { queries: number; hits: number } {
  const rand = seededRandom(seed);
  const index = new PhashIndex(d);
  const scan = new LinearScan(d);
  const stored: Words[] = [];
  const fresh = (): Words => {
    const w = randomWords(rand);
    if (skew) w[0] = (w[0] & 0xff) | (rand() < 0.5 ? 0 : 0x12345600);
    return w;
  };
  let queries = 0;
  let hits = 0;
  const rounds = 10;
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < total / rounds; i++) {
      const w = stored.length > 0 && rand() < 0.33 ? flip(stored[Math.floor(rand() * stored.length)]!, Math.floor(rand() * (d + 3)), rand) : fresh();
      stored.push(w);
      index.add(hex(w));
      scan.add(w);
    }
    const asked: string[] = [];
    const masks: (string | undefined)[] = [];
    const wanted: (string | undefined)[] = [];
    for (let q = 0; q < 250; q++) {
      const base = stored[Math.floor(rand() * stored.length)]!;
      const w = rand() < 0.8 ? flip(base, Math.floor(rand() * (d + 3)), rand) : fresh();
      const weak = rand() < 0.2 ? undefined : weakMask(rand, 5, rand() < 0.5 ? [(base[0] ^ w[0]) & 0xffff0000, 0] : [0, 0]);
      const want = scan.find(w, weak);
      const got = index.find(hex(w), weak && hex(weak));
      assert.equal(got, want, `maxDistance ${d}, ${stored.length} stored, query ${hex(w)} weak ${weak && hex(weak)}`);
      assert.equal(index.has(hex(w), weak && hex(weak)), want !== undefined);
      asked.push(hex(w));
      masks.push(weak && hex(weak));
      wanted.push(want);
      queries++;
      if (want !== undefined) hits++;
    }
    // The same queries at once (the tables and the tail as they are now).
    assert.deepEqual(index.findMany(asked, masks), wanted, `findMany, maxDistance ${d}, ${stored.length} stored`);
  }
  assert.equal(index.size, total);
  return { queries, hits };
}

describe('PhashIndex', () => {
  test('the embedded WebAssembly scan is what phash-scan.wat compiles to (npm run build:wasm)', async () => {
    assert.equal(PHASH_SCAN_WASM_BASE64, Buffer.from(await compilePhashScan()).toString('base64'));
  });

  for (const d of [0, 1, 4, 7, 10, 13, DEFAULT_NEAR_DUP_DISTANCE, 20, MAX_NEAR_DUP_DISTANCE]) {
    test(`agrees with a linear scan at maxDistance ${d} (20,000 hashes, finds between adds)`, () => {
      const { queries, hits } = compareWithScan(d, 1000 + d, 20_000, false);
      // Both outcomes must be well represented, or the comparison proves little.
      assert.ok(hits > queries * 0.15 && hits < queries * 0.95, `${hits} hits of ${queries}`);
    });
  }

  for (const d of [3, DEFAULT_NEAR_DUP_DISTANCE]) {
    test(`agrees with a linear scan on skewed hashes that crowd a few buckets (maxDistance ${d})`, () => {
      compareWithScan(d, 77 + d, 6_000, true);
    });
  }

  test('find returns the first of several matches in add order, across merges', () => {
    const index = new PhashIndex(4);
    const a = '00000000000000ff';
    index.add('ffffffffffffffff');
    index.add(a); // distance 8 from the query below
    index.add('000000000000000f'); // distance 4
    const rand = seededRandom(3);
    for (let i = 0; i < 10_000; i++) index.add(hex([(rand() * 2 ** 32) | 0x0f0f0f0f, rand() * 2 ** 32])); // far; forces merges
    index.add('0000000000000000'); // distance 0, but added last
    assert.equal(index.find('0000000000000000'), '000000000000000f');
    // 4 bits from the last one, 8 from 000000000000000f, 12 from 00000000000000ff.
    assert.equal(index.find('f000000000000000'), '0000000000000000');
    assert.equal(index.find('ff00ff00ff00ff00'), undefined);
  });

  test('hashes() yields every stored hash in add order; size and bytes', () => {
    const index = new PhashIndex(2);
    const rand = seededRandom(5);
    const added = Array.from({ length: 9_000 }, () => hex(randomWords(rand)));
    added.push(added[0]!); // a duplicate is stored twice
    for (const h of added) index.add(h);
    assert.deepEqual([...index.hashes()], added);
    assert.equal(index.size, added.length);
    // 56 bytes a hash plus growth room, over ~2 MiB of fixed bucket arrays (tail chains, offsets).
    assert.ok(index.bytes > 56 * added.length && index.bytes < 2_300_000 + 120 * added.length, `${index.bytes} bytes`);
  });

  test(`findMany answers as find does for more queries than one batch (${BATCH_QUERIES}), in their order`, () => {
    const rand = seededRandom(11);
    const index = new PhashIndex(12);
    const stored: Words[] = [];
    for (let i = 0; i < 30_000; i++) {
      const w = stored.length > 0 && rand() < 0.3 ? flip(stored[Math.floor(rand() * stored.length)]!, Math.floor(rand() * 12), rand) : randomWords(rand);
      stored.push(w);
      index.add(hex(w));
    }
    const count = 2 * BATCH_QUERIES + 123;
    const hashes: string[] = [];
    const weaks: (string | undefined)[] = [];
    for (let q = 0; q < count; q++) {
      const w = rand() < 0.6 ? flip(stored[Math.floor(rand() * stored.length)]!, Math.floor(rand() * 16), rand) : randomWords(rand);
      hashes.push(hex(w));
      weaks.push(rand() < 0.2 ? undefined : hex(weakMask(rand, 5)));
    }
    const one = hashes.map((h, q) => index.find(h, weaks[q]));
    const hits = one.filter((a) => a !== undefined).length;
    assert.ok(hits > count * 0.2 && hits < count * 0.8, `${hits} hits of ${count}`);
    assert.deepEqual(index.findMany(hashes, weaks), one);
    // Without masks (every query probes its 4 chunk values only).
    assert.deepEqual(index.findMany(hashes), hashes.map((h) => index.find(h)));
    assert.deepEqual(index.findMany([]), []);
  });

  // [name, the bad query's hash, its mask, the message after "query N: "]
  const badQueries: [string, string, string | undefined, RegExp][] = [
    ['a bad hash', '0123456789ABCDEF', undefined, /a hash must be 16 lower-case hex digits/],
    ['a bad mask', '0123456789abcdef', 'xyz', /a weak-bit mask must be 16 lower-case hex digits/],
    ['a mask of 9 bits in a chunk', '0123456789abcdef', '000001ff00000000', /a weak-bit mask may mark at most 8 bits of a chunk, chunk 1 has 9/],
  ];
  // Few queries are asked one at a time, many in a batch: both name the query.
  for (const before of [2, 100]) {
    for (const [name, hash, weak, message] of badQueries) {
      test(`findMany names query ${before} of ${before + 1} with ${name} (TypeError)`, () => {
        const index = new PhashIndex(4);
        index.add('0123456789abcdef');
        const hashes = [...Array.from({ length: before }, () => '0123456789abcdef'), hash];
        const weaks = [...Array.from({ length: before }, () => undefined), weak];
        assert.throws(
          () => index.findMany(hashes, weaks),
          (err: unknown) => err instanceof TypeError && err.message.startsWith(`PhashIndex: query ${before}: `) && message.test(err.message),
        );
        // The index still answers.
        assert.deepEqual(index.findMany(hashes.slice(0, before)), hashes.slice(0, before));
      });
    }
  }

  test('an empty index finds nothing', () => {
    const index = new PhashIndex(MAX_NEAR_DUP_DISTANCE);
    assert.equal(index.find('0123456789abcdef'), undefined);
    assert.deepEqual(index.findMany(['0123456789abcdef', 'fedcba9876543210']), [undefined, undefined]);
    assert.equal(index.size, 0);
    assert.deepEqual([...index.hashes()], []);
  });

  const badDistances: [string, unknown][] = [
    ['negative', -1],
    ['above the maximum', MAX_NEAR_DUP_DISTANCE + 1],
    ['fractional', 2.5],
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['a string', '4'],
    ['undefined', undefined],
    ['null', null],
  ];
  for (const [name, value] of badDistances) {
    test(`constructor rejects maxDistance ${name}`, () => {
      assert.throws(() => new PhashIndex(value as number), hasCode('FILIP_ERR_INVALID_OPTION'));
    });
  }

  const badHashes: [string, unknown][] = [
    ['upper case', '0123456789ABCDEF'],
    ['15 digits', '0123456789abcde'],
    ['17 digits', '0123456789abcdef0'],
    ['not hex', '0123456789abcdeg'],
    ['a 0x prefix', '0x23456789abcdef'],
    ['a number', 1234],
    ['undefined', undefined],
  ];
  for (const [name, value] of badHashes) {
    test(`add and find reject a hash that is ${name}; find, a weak-bit mask that is ${name}`, () => {
      const index = new PhashIndex(4);
      assert.throws(() => index.add(value as string), TypeError);
      assert.throws(() => index.find(value as string), TypeError);
      // An absent mask is allowed (rows from shards without phash_weak); anything else bad is not.
      if (value !== undefined) assert.throws(() => index.find('0123456789abcdef', value as string), TypeError);
      assert.equal(index.size, 0);
    });
  }

  test(`find rejects a weak-bit mask with more than ${MAX_WEAK_BITS_PER_CHUNK} bits in a chunk`, () => {
    const index = new PhashIndex(4);
    assert.equal(index.find('0123456789abcdef', '00ff00ff00ff00ff'), undefined);
    assert.throws(() => index.find('0123456789abcdef', '000001ff00000000'), /at most 8 bits of a chunk, chunk 1 has 9/);
  });

  test("a copy that differs in one chunk's weak bits only is found far beyond an exact chunk match", () => {
    const index = new PhashIndex(16);
    index.add('0000000000000000');
    // 5 bits flipped in every chunk (20 in all): beyond 16.
    assert.equal(index.find('001f001f001f001f', '001f001f001f001f'), undefined);
    // 5 bits in chunks 0-2, none in chunk 3: 15 bits, chunk 3 equal.
    assert.equal(index.find('001f001f001f0000'), '0000000000000000');
    // 4 bits in each chunk (16): no chunk equal, so only the weak bits reach it.
    assert.equal(index.find('000f000f000f000f'), undefined);
    assert.equal(index.find('000f000f000f000f', '000f000000000000'), '0000000000000000');
    assert.equal(index.find('000f000f000f000f', '0007000000000000'), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Decontamination

async function phashOf(bytes: Buffer): Promise<string> {
  return (await hashesOf(bytes)).phash;
}

async function hashesOf(bytes: Buffer): Promise<{ phash: string; weak: string }> {
  const r = await processImage(bytes, DEFAULT_IMAGE_OPTIONS);
  assert.ok(r.ok);
  assert.ok(r.image.phashWeak !== undefined);
  return { phash: r.image.phash, weak: r.image.phashWeak };
}

async function writeShard(path: string, hashes: string[]): Promise<void> {
  const writer = await openShardWriter(path, shardColumns([]), 'parquetjs');
  for (let i = 0; i < hashes.length; i++) await writer.write(hashRow(i, hashes[i]!));
  await writer.close();
}

describe('loadDecontaminationIndex', () => {
  let dir: string;
  const evalImages: Buffer[] = [];
  const evalHashes: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'filip-decontam-'));
    for (let i = 0; i < 4; i++) {
      evalImages.push(await noiseJpeg(900 + i, 320, 240));
      evalHashes.push(await phashOf(evalImages[i]!));
    }
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('a folder of images (searched recursively, non-images skipped) finds re-encoded copies, not others', async () => {
    const folder = join(dir, 'images');
    await mkdir(join(folder, 'nested'), { recursive: true });
    await writeFile(join(folder, 'a.jpg'), evalImages[0]!);
    await writeFile(join(folder, 'b.png'), await sharp(evalImages[1]!).png().toBuffer());
    await writeFile(join(folder, 'nested', 'c.jpg'), evalImages[2]!);
    await writeFile(join(folder, 'README.txt'), 'labels and notes\n');
    await writeFile(join(folder, '.hidden.jpg'), Buffer.from('not even read'));
    let stats;
    const index = await loadDecontaminationIndex(folder, DEFAULT_NEAR_DUP_DISTANCE, undefined, (s) => (stats = s));
    assert.deepEqual(stats, { images: 3, shards: 0, shardRows: 0, skipped: 1 });
    assert.equal(index.size, 3);
    assert.deepEqual([...index.hashes()].sort(), evalHashes.slice(0, 3).sort());

    // A training copy of c: smaller, re-encoded at a low quality. Hashed as ingest would.
    const copy = await sharp(evalImages[2]!).resize(200).jpeg({ quality: 55 }).toBuffer();
    const { phash: copyHash, weak } = await hashesOf(copy);
    assert.ok(hamming(copyHash, evalHashes[2]!) <= DEFAULT_NEAR_DUP_DISTANCE);
    assert.equal(index.find(copyHash, weak), evalHashes[2]);
    // The fourth image was never in the set.
    assert.ok(hamming(evalHashes[3]!, evalHashes[2]!) > DEFAULT_NEAR_DUP_DISTANCE);
    assert.equal(index.find(evalHashes[3]!), undefined);
  });

  test('a single image file', async () => {
    const file = join(dir, 'one.jpg');
    await writeFile(file, evalImages[3]!);
    const index = await loadDecontaminationIndex(file, 0);
    assert.deepEqual([...index.hashes()], [evalHashes[3]]);
  });

  test('a shard file, and a folder holding shards and images', async () => {
    const shardHashes = ['0123456789abcdef', 'fedcba9876543210', evalHashes[0]!];
    const file = join(dir, 'eval-shard.parquet');
    await writeShard(file, shardHashes);
    const fromFile = await loadDecontaminationIndex(file, 3);
    assert.deepEqual([...fromFile.hashes()], shardHashes);
    assert.equal(fromFile.find('0123456789abcdee'), '0123456789abcdef');

    const mixed = join(dir, 'mixed');
    await mkdir(mixed);
    await writeShard(join(mixed, '00000.parquet'), shardHashes.slice(0, 2));
    await writeFile(join(mixed, 'x.jpg'), evalImages[1]!);
    let stats;
    const index = await loadDecontaminationIndex(mixed, 3, undefined, (s) => (stats = s));
    assert.deepEqual(stats, { images: 1, shards: 1, shardRows: 2, skipped: 0 });
    assert.deepEqual([...index.hashes()], [...shardHashes.slice(0, 2), evalHashes[1]]);
  });

  test('nothing usable: missing path, empty folder, only non-images: FILIP_ERR_INVALID_OPTION naming the path', async () => {
    const missing = join(dir, 'no-such-folder');
    await assert.rejects(loadDecontaminationIndex(missing, 4), (err: unknown) => hasCode('FILIP_ERR_INVALID_OPTION')(err) && (err as FilipError).file === missing);
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await assert.rejects(loadDecontaminationIndex(empty, 4), (err: unknown) => hasCode('FILIP_ERR_INVALID_OPTION')(err) && (err as FilipError).file === empty);
    const text = join(dir, 'text-only');
    await mkdir(text);
    await writeFile(join(text, 'notes.md'), '# not images\n');
    await assert.rejects(loadDecontaminationIndex(text, 4), hasCode('FILIP_ERR_INVALID_OPTION'));
  });

  test('a corrupt image, a bad phash in a shard, a bad distance: stable codes', async () => {
    const corrupt = join(dir, 'corrupt');
    await mkdir(corrupt);
    const bad = join(corrupt, 'broken.jpg');
    await writeFile(bad, evalImages[0]!.subarray(0, 600)); // truncated JPEG
    await assert.rejects(loadDecontaminationIndex(corrupt, 4), (err: unknown) => hasCode('FILIP_ERR_INVALID_OPTION')(err) && (err as FilipError).file === bad);

    const shard = join(dir, 'bad-phash.parquet');
    await writeShard(shard, ['0123456789abcdef', 'NOT-A-HASH']);
    await assert.rejects(loadDecontaminationIndex(shard, 4), (err: unknown) => hasCode('FILIP_ERR_SHARD')(err) && (err as FilipError).row === 1);

    await assert.rejects(loadDecontaminationIndex(shard, 99), hasCode('FILIP_ERR_INVALID_OPTION'));
  });
});
