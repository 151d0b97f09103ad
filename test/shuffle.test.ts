// The external shuffle: records survive the bucket files byte for byte, the gather is a permutation of
// what was scattered, the same seed gives the same order, every item is equally likely at every
// position (the two-pass shuffle is uniform), a checkpoint cuts off appends made after it, and a gather
// started at position p yields exactly the tail of the full order.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { mulberry32 } from '../src/core/random.js';
import { makeKey, type Sample } from '../src/core/sample.js';
import { bucketOf, decodeSamples, encodeSample, gatherShuffled, shuffleInPlace, ShuffleScatter } from '../src/pipeline/shuffle.js';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-shuffle-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function sample(i: number, withExtras = false): Sample {
  const rand = mulberry32(i + 1);
  const bytes = Buffer.alloc(10 + (i % 7) * 100);
  for (let k = 0; k < bytes.length; k++) bytes[k] = Math.floor(rand() * 256);
  return {
    key: makeKey(i % 3, i),
    index: i,
    url: `http://example.test/${i}.jpg`,
    caption: `caption ${i} ✓ "q"\n`,
    source: { file: `m${i % 3}.tsv`, row: i },
    extra: { a: i % 2 ? null : `v${i}` },
    status: 'ok',
    image: { bytes, format: 'webp', width: 10 + i, height: 20, originalWidth: 100, originalHeight: 200, sha256: 'e'.repeat(64), phash: 'f'.repeat(16) },
    ...(withExtras
      ? {
          backTranslations: [{ pivot: 'spa', engine: 'apertium', text: `back ${i}` }],
          translationFailures: [{ pivot: 'cat', engine: 'apertium', reason: 'translation_failed' as const, message: 'boom' }],
          views: [Buffer.from(`view0-${i}`), Buffer.alloc(0), Buffer.from(`view2-${i}`)],
        }
      : {}),
  };
}

async function collect(it: AsyncIterable<Sample>): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of it) out.push(s);
  return out;
}

async function scatterAll(dir: string, samples: readonly Sample[], buckets: number, seed: number) {
  const sc = new ShuffleScatter(dir, buckets, seed, 4096);
  await sc.restore();
  for (const s of samples) if (sc.add(s)) await sc.flush();
  await sc.flush();
  return sc.state();
}

test('a record round-trips every field, image and view bytes included', () => {
  for (const extras of [false, true]) {
    const samples = [sample(1, extras), sample(2, extras), sample(3, extras)];
    const decoded = decodeSamples(Buffer.concat(samples.flatMap(encodeSample)));
    assert.deepEqual(decoded, samples);
  }
});

test('a truncated record is FILIP_ERR_SHARD, not a silent short read', () => {
  const buf = Buffer.concat(encodeSample(sample(5, true)));
  for (const cut of [3, 10, buf.length - 1]) {
    assert.throws(() => decodeSamples(buf.subarray(0, cut)), (e: unknown) => (e as { code?: string }).code === 'FILIP_ERR_SHARD', `cut at ${cut}`);
  }
});

test('bucketOf is stable, in range and about uniform', () => {
  const counts = new Array<number>(8).fill(0);
  for (let i = 0; i < 8000; i++) {
    const b = bucketOf(makeKey(0, i), 7, 8);
    assert.equal(b, bucketOf(makeKey(0, i), 7, 8));
    counts[b]!++;
  }
  for (const c of counts) assert.ok(c > 850 && c < 1150, `bucket sizes ${counts.join(',')}`);
  let moved = 0;
  for (let i = 0; i < 1000; i++) if (bucketOf(makeKey(0, i), 7, 8) !== bucketOf(makeKey(0, i), 8, 8)) moved++;
  assert.ok(moved > 800, 'another seed, other buckets');
});

test('shuffleInPlace: all 6 orders of 3 items about equally often', () => {
  const rand = mulberry32(11);
  const seen = new Map<string, number>();
  for (let t = 0; t < 60_000; t++) {
    const k = shuffleInPlace([0, 1, 2], rand).join('');
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  assert.equal(seen.size, 6);
  for (const [k, n] of seen) assert.ok(n > 9500 && n < 10500, `${k}: ${n}`);
});

test('gather: a permutation of the scattered samples, fixed by the seed', async () => {
  const samples = Array.from({ length: 300 }, (_, i) => sample(i));
  const state = await scatterAll(path.join(tmp, 'p1'), samples, 6, 42);
  assert.equal(state.rows.reduce((a, n) => a + n, 0), 300);
  assert.ok(state.rows.every((n) => n > 20), `every bucket used: ${state.rows.join(',')}`);
  const out = await collect(gatherShuffled(path.join(tmp, 'p1'), state, 42));
  assert.deepEqual(out.map((s) => s.index), out.map((_, i) => i), 'index is the output position');
  const byKey = new Map(samples.map((s) => [s.key, s]));
  assert.deepEqual(out.map((s) => s.key).sort(), samples.map((s) => s.key).sort());
  for (const s of out) assert.ok(s.image!.bytes.equals(byKey.get(s.key)!.image!.bytes));
  const again = await collect(gatherShuffled(path.join(tmp, 'p1'), state, 42));
  assert.deepEqual(again.map((s) => s.key), out.map((s) => s.key));
  // Scattered in another order, the result is the same: buckets are put in key order first.
  const state2 = await scatterAll(path.join(tmp, 'p2'), [...samples].reverse(), 6, 42);
  const reversed = await collect(gatherShuffled(path.join(tmp, 'p2'), state2, 42));
  assert.deepEqual(reversed.map((s) => s.key), out.map((s) => s.key));
  const other = await scatterAll(path.join(tmp, 'p3'), samples, 6, 43);
  assert.notDeepEqual((await collect(gatherShuffled(path.join(tmp, 'p3'), other, 43))).map((s) => s.key), out.map((s) => s.key));
});

test('gather from position p is the tail of the full order', async () => {
  const samples = Array.from({ length: 120 }, (_, i) => sample(i));
  const state = await scatterAll(path.join(tmp, 'tail'), samples, 5, 3);
  const full = (await collect(gatherShuffled(path.join(tmp, 'tail'), state, 3))).map((s) => `${s.index}:${s.key}`);
  for (const p of [0, 1, state.rows[0]!, state.rows[0]! + 1, 77, 119, 120]) {
    const tail = (await collect(gatherShuffled(path.join(tmp, 'tail'), state, 3, p))).map((s) => `${s.index}:${s.key}`);
    assert.deepEqual(tail, full.slice(p), `from ${p}`);
  }
});

test('the two-pass shuffle is uniform: each item equally likely at each position', async () => {
  // 4 items, 3 buckets, 1,200 seeds: each item should be first about 300 times, and last about 300 times.
  const samples = Array.from({ length: 4 }, (_, i) => sample(i));
  const first = new Map<string, number>();
  const last = new Map<string, number>();
  const dir = path.join(tmp, 'uniform');
  for (let seed = 0; seed < 1200; seed++) {
    const state = await scatterAll(dir, samples, 3, seed);
    const keys = (await collect(gatherShuffled(dir, state, seed))).map((s) => s.key);
    first.set(keys[0]!, (first.get(keys[0]!) ?? 0) + 1);
    last.set(keys[3]!, (last.get(keys[3]!) ?? 0) + 1);
  }
  for (const m of [first, last]) {
    assert.equal(m.size, 4);
    for (const [k, n] of m) assert.ok(n > 230 && n < 370, `${k}: ${n} of 1200 (expected about 300)`);
  }
});

test('restore cuts off appends made after the checkpoint', async () => {
  const dir = path.join(tmp, 'restore');
  const sc = new ShuffleScatter(dir, 4, 9, 1 << 20);
  await sc.restore();
  const first = Array.from({ length: 40 }, (_, i) => sample(i));
  for (const s of first) sc.add(s);
  await sc.flush();
  const checkpoint = sc.state();
  // Appended and flushed, but the process died before recording a new checkpoint.
  for (let i = 40; i < 60; i++) sc.add(sample(i));
  await sc.flush();
  const resumed = new ShuffleScatter(dir, 4, 9, 1 << 20);
  await resumed.restore(checkpoint);
  for (let i = 40; i < 60; i++) resumed.add(sample(i));
  await resumed.flush();
  const out = await collect(gatherShuffled(dir, resumed.state(), 9));
  const keys = out.map((s) => s.key);
  assert.equal(keys.length, 60);
  assert.equal(new Set(keys).size, 60, 'no sample twice');
  // A checkpoint longer than the files (data lost with the machine) is refused.
  const big = { bytes: checkpoint.bytes.map((b) => b + 1_000_000), rows: checkpoint.rows };
  await assert.rejects(new ShuffleScatter(dir, 4, 9).restore(big), (e: unknown) => (e as { code?: string }).code === 'FILIP_ERR_SHARD');
  await assert.rejects(new ShuffleScatter(dir, 5, 9).restore(checkpoint), (e: unknown) => (e as { code?: string }).code === 'FILIP_ERR_RESUME_MISMATCH');
});
