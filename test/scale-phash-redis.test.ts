// The bucketed pHash index in Redis (src/scale/phash-redis.ts), against a real redis-server: batch by
// batch it answers exactly what one PhashIndex fed every row in order answers, weak-bit masks and all
// (the same match reported, first seen wins inside a batch); a batch is a few commands, not one per probe; entries keep input
// indexes past 2^32; the commit script stores each kept hash once per table; bad arguments fail.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import { FilipError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/random.js';
import { PHASH_CHUNKS, PhashIndex } from '../src/filters/phash-index.js';
import { DEFAULT_NEAR_DUP_CHECK, NEAR_DUP_CHECK_BYTES } from '../src/image/near-dup-check.js';
import { connectRedis, parseQueueUrl } from '../src/scale/connection.js';
import { RedisPhashIndex, resolveRedisPhashOptions, PHASH_ENTRY_BYTES, nearDupIndexOption, phashBucketKey } from '../src/scale/phash-redis.js';
import { Keys } from '../src/scale/plan.js';
import { advance, applyDecisions, deleteState, tryLock } from '../src/scale/state.js';
import { startRedis, type TestRedis } from './helpers/redis.js';

let server: TestRedis;
let redis: Redis;

before(async () => {
  server = await startRedis();
  redis = await connectRedis(parseQueueUrl(server.url));
});

after(async () => {
  redis?.disconnect();
  await server?.stop();
});

function hex(hi: number, lo: number): string {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}

function randomHash(rand: () => number): string {
  return hex(Math.floor(rand() * 2 ** 32), Math.floor(rand() * 2 ** 32));
}

/** `h` with k distinct random bits flipped. */
function flip(h: string, k: number, rand: () => number): string {
  let hi = parseInt(h.slice(0, 8), 16);
  let lo = parseInt(h.slice(8), 16);
  const bits = new Set<number>();
  while (bits.size < k) bits.add(Math.floor(rand() * 64));
  for (const b of bits) {
    if (b < 32) hi ^= 1 << b;
    else lo ^= 1 << (b - 32);
  }
  return hex(hi, lo);
}

/** A weak-bit mask: 5 random bits in each 16-bit chunk, plus those of `extra` in chunk `c` (up to 8 there). */
function weakMask(rand: () => number, extra = 0, c = 0): string {
  let out = '';
  for (let k = 0; k < 4; k++) {
    let m = 0;
    while (bitCount(m) < 5) m |= 1 << Math.floor(rand() * 16);
    if (k === c && bitCount(m | extra) <= 8) m |= extra;
    out += m.toString(16).padStart(4, '0');
  }
  return out;
}

function bitCount(x: number): number {
  let n = 0;
  for (let v = x >>> 0; v !== 0; v &= v - 1) n++;
  return n;
}

/**
 * Rows in input order: families of hashes around a few bases (members differ from their base by
 * 0 to d + 2 bits, so a query often has several stored matches at different distances, some in its
 * own batch) mixed with unrelated hashes. Each row has a weak-bit mask, half of the time holding
 * the bits its chunk 0 differs from its base in (so weak probes reach matches far away). `index`
 * has gaps, as input indexes of candidate rows do; `otherRule` marks a row that another rule
 * rejects (it is looked up but never stored).
 */
function rows(count: number, d: number, seed: number): { hash: string; weak: string; index: number; otherRule: boolean; family: number }[] {
  const rand = mulberry32(seed);
  const bases = Array.from({ length: 40 }, () => randomHash(rand));
  const out: { hash: string; weak: string; index: number; otherRule: boolean; family: number }[] = [];
  let index = 0;
  for (let i = 0; i < count; i++) {
    index += 1 + Math.floor(rand() * 3);
    const family = Math.floor(rand() * bases.length);
    const base = bases[family]!;
    const hash = rand() < 0.6 ? flip(base, Math.floor(rand() * (d + 3)), rand) : randomHash(rand);
    const diff = (parseInt(hash.slice(0, 4), 16) ^ parseInt(base.slice(0, 4), 16)) & 0xffff;
    out.push({ hash, weak: weakMask(rand, rand() < 0.5 ? diff : 0), index, otherRule: rand() < 0.15, family });
  }
  return out;
}

/** Whether stored hash `s` matches query `q` with mask `weak` (PhashIndex's definition). */
function probedMatch(s: string, q: string, weak: string, d: number): boolean {
  if (hamming(s, q) > d) return false;
  for (let c = 0; c < 4; c++) {
    const x = parseInt(s.slice(4 * c, 4 * c + 4), 16) ^ parseInt(q.slice(4 * c, 4 * c + 4), 16);
    if ((x & ~parseInt(weak.slice(4 * c, 4 * c + 4), 16) & 0xffff) === 0) return true;
  }
  return false;
}

/** Commits a batch's insertions the way commit.ts does: the one Lua script, under the lock, in chunk order. */
async function commit(keys: Keys, chunk: number, insertions: { append: string; bytes: Buffer }[]): Promise<void> {
  assert.equal(await applyDecisions(redis, keys, 'test', chunk, '[]', insertions), 'applied');
  await advance(redis, keys, 'test', chunk);
}

for (const d of [0, 3, 6, 10, 16]) {
  test(`distance ${d}: batch by batch, the same answers and the same reported match as one PhashIndex fed every row in order`, async () => {
    const keys = new Keys(`equal-${d}`);
    assert.ok(await tryLock(redis, keys, 'test', 600_000));
    const index = new RedisPhashIndex(keys, { maxDistance: d });
    const single = new PhashIndex(d);
    const all = rows(1500, d, 100 + d);
    const rand = mulberry32(d);
    let matches = 0;
    let inBatch = 0;
    let notFirstStored = 0;
    for (let start = 0, chunk = 0; start < all.length; chunk++) {
      const batch = all.slice(start, start + 1 + Math.floor(rand() * 300));
      start += batch.length;
      const { index: local } = await index.lookup(redis, batch.map((r) => ({ phash: r.hash, weak: r.weak })));
      const insertions: { append: string; bytes: Buffer }[] = [];
      const addedHere = new Set<string>();
      for (const row of batch) {
        const expected = single.find(row.hash, row.weak);
        const got = local.find(row.hash, row.weak);
        assert.equal(got, expected, `row ${row.index} (${row.hash})`);
        if (expected !== undefined) {
          matches++;
          if (addedHere.has(expected)) inBatch++;
          let within = 0;
          for (const h of single.hashes()) if (probedMatch(h, row.hash, row.weak, d)) within++;
          if (within > 1) notFirstStored++;
        }
        if (expected === undefined && !row.otherRule) {
          single.add(row.hash);
          local.add(row.hash);
          addedHere.add(row.hash);
          insertions.push(...index.insertion(row.hash, row.index));
        }
      }
      await commit(keys, chunk, insertions);
    }
    // The data exercises what it should: matches in earlier batches and within the batch, queries
    // with several matches (at distance 0 kept hashes are distinct, so a query matches one at most).
    assert.ok(matches > 100, `${matches} matches`);
    assert.ok(inBatch > 5, `${inBatch} matches within their own batch`);
    if (d > 0) assert.ok(notFirstStored > 20, `${notFirstStored} queries with several stored matches`);
  });
}

/**
 * Check data for rows(): its hash family's picture (random chroma hash and thumbnail), of which a row gets
 * a copy (a few chroma bits and a little thumbnail noise off: passes), the chroma hash with a
 * different thumbnail (fails the aligned stage), another picture (fails the chroma stage), or none
 * (a row from an older shard: the pHash alone, within PHASH_ONLY_DISTANCE).
 */
function checks(rowsOf: readonly { family: number }[], seed: number): (Uint8Array | undefined)[] {
  const rand = mulberry32(seed);
  const picture = (): Uint8Array => Uint8Array.from({ length: NEAR_DUP_CHECK_BYTES }, () => Math.floor(rand() * 256));
  const families = Array.from({ length: 40 }, picture);
  return rowsOf.map((row) => {
    const base = families[row.family]!;
    const kind = rand();
    if (kind < 0.1) return undefined;
    if (kind < 0.25) return picture();
    const out = Uint8Array.from(base);
    if (kind < 0.4) {
      for (let i = 16; i < out.length; i++) out[i] = Math.floor(rand() * 256);
      return out;
    }
    for (let k = 0; k < 4; k++) out[Math.floor(rand() * 16)]! ^= 1 << Math.floor(rand() * 8);
    for (let i = 16; i < out.length; i++) out[i] = Math.max(0, Math.min(255, out[i]! + Math.floor(rand() * 7) - 3));
    return out;
  });
}

for (const d of [10, 20]) {
  test(`with the near-duplicate check, distance ${d}: the same answers as one PhashIndex with the check`, async () => {
    const keys = new Keys(`check-${d}`);
    assert.ok(await tryLock(redis, keys, 'test', 600_000));
    const index = new RedisPhashIndex(keys, { maxDistance: d, check: DEFAULT_NEAR_DUP_CHECK });
    const single = new PhashIndex(d, DEFAULT_NEAR_DUP_CHECK);
    const plain = new PhashIndex(d);
    const all = rows(800, d, 300 + d);
    const data = checks(all, 400 + d);
    const rand = mulberry32(d + 1);
    let matches = 0;
    let refused = 0;
    let aligned = 0;
    for (let start = 0, chunk = 0; start < all.length; chunk++) {
      const batch = all.slice(start, start + 1 + Math.floor(rand() * 200));
      const batchChecks = data.slice(start, start + batch.length);
      start += batch.length;
      const { index: local, stats } = await index.lookup(
        redis,
        batch.map((r, i) => ({ phash: r.hash, weak: r.weak, ...(batchChecks[i] ? { check: batchChecks[i] } : {}) })),
      );
      aligned += stats.alignedChecks ?? 0;
      const insertions: { append: string; bytes: Buffer }[] = [];
      batch.forEach((row, i) => {
        const check = batchChecks[i];
        const expected = single.find(row.hash, row.weak, check);
        assert.equal(local.find(row.hash, row.weak, check), expected, `row ${row.index} (${row.hash})`);
        if (expected !== undefined) matches++;
        else if (plain.find(row.hash, row.weak) !== undefined) refused++;
        if (expected === undefined && !row.otherRule) {
          single.add(row.hash, check);
          plain.add(row.hash);
          local.add(row.hash, check);
          insertions.push(...index.insertion(row.hash, row.index, check));
        }
      });
      await commit(keys, chunk, insertions);
    }
    // Matches found, candidates the check refused, and aligned comparisons made in Redis mode.
    assert.ok(matches > 50, `${matches} matches`);
    assert.ok(refused > 20, `${refused} pHash matches the check refused`);
    assert.ok(aligned > 20, `${aligned} aligned comparisons`);
    // Each kept row with check data stored it once, under its input index.
    const stored = await redis.keys(`${keys.prefix}:c:*`);
    assert.equal(stored.length, [...single.entries()].filter((e) => e.check !== undefined).length);
  });
}

function hamming(a: string, b: string): number {
  let n = 0;
  for (let i = 0; i < 16; i += 8) {
    let x = (parseInt(a.slice(i, i + 8), 16) ^ parseInt(b.slice(i, i + 8), 16)) >>> 0;
    for (; x !== 0; x &= x - 1) n++;
  }
  return n;
}

async function commandCalls(): Promise<{ total: number; mget: number }> {
  const stats = await redis.info('stats');
  const commands = await redis.info('commandstats');
  return {
    total: Number(/total_commands_processed:(\d+)/.exec(stats)![1]),
    mget: Number(/cmdstat_mget:calls=(\d+)/.exec(commands)?.[1] ?? 0),
  };
}

test('a batch of 1,000 queries costs a few MGETs in one or a few round trips, not a command per probe', async () => {
  const keys = new Keys('trips');
  assert.ok(await tryLock(redis, keys, 'test', 600_000));
  const rand = mulberry32(5);
  const stored = Array.from({ length: 20_000 }, () => randomHash(rand));
  const writer = new RedisPhashIndex(keys);
  for (let c = 0; c * 5000 < stored.length; c++) {
    await commit(keys, c, stored.slice(c * 5000, (c + 1) * 5000).flatMap((h, i) => writer.insertion(h, c * 5000 + i)));
  }
  const queries = Array.from({ length: 1000 }, (_, i) => ({ phash: i % 2 === 0 ? flip(stored[i * 7]!, 3, rand) : randomHash(rand), weak: weakMask(rand) }));
  for (const d of [6, 16]) {
    const index = new RedisPhashIndex(keys, { maxDistance: d });
    const before = await commandCalls();
    const { index: local, stats } = await index.lookup(redis, queries);
    const afterCalls = await commandCalls();
    // Measured by Redis: every command of the lookup was an MGET, and there were at most 4 x 65,536 / 8,192 of them.
    const commands = afterCalls.total - before.total - 1; // the INFO stats call of `before`'s pair
    assert.ok(commands <= 2 + stats.mgets, `${commands} commands for ${stats.probes} probes`);
    assert.equal(afterCalls.mget - before.mget, stats.mgets);
    assert.ok(stats.mgets <= (PHASH_CHUNKS * 65_536) / 8192, `${stats.mgets} MGETs`);
    assert.ok(stats.probes > 20 * stats.mgets, 'probes are merged into few commands');
    assert.equal(stats.roundTrips, Math.ceil(stats.keys / 65_536));
    // 128 probes a query, shared between queries: about 100,000 distinct keys, 2 round trips.
    assert.ok(stats.roundTrips <= 4, `${stats.roundTrips} round trips for ${stats.keys} keys`);
    // The planted neighbours (3 bits away, so one chunk untouched) are all found.
    for (let i = 0; i < queries.length; i += 2) assert.notEqual(local.find(queries[i]!.phash, queries[i]!.weak), undefined);
  }
});

test('entries keep input indexes past 2^32: the match with the smaller index is the one reported', async () => {
  const keys = new Keys('wide');
  assert.ok(await tryLock(redis, keys, 'test', 600_000));
  const index = new RedisPhashIndex(keys, { maxDistance: 6 });
  const q = 'f0f0f0f00f0f0f0f';
  // Both differ from q in chunk 0 only: 2 and 4 bits.
  const near1 = 'f0f3f0f00f0f0f0f';
  const near2 = 'fff0f0f00f0f0f0f';
  // Stored out of index order on purpose: order comes from the indexes, not from where an entry sits.
  await commit(keys, 0, [...index.insertion(near1, 2 ** 33 + 1), ...index.insertion(near2, 2 ** 32 + 7)]);
  const { index: local, stats } = await index.lookup(redis, [{ phash: q }]);
  assert.equal(local.find(q), near2);
  assert.equal(stats.matched, 1);
});

test('a committed chunk stores each kept hash once in every table, and deleteState removes the buckets', async () => {
  const keys = new Keys('once');
  assert.ok(await tryLock(redis, keys, 'test', 600_000));
  const index = new RedisPhashIndex(keys);
  const rand = mulberry32(9);
  const hashes = Array.from({ length: 200 }, () => randomHash(rand));
  const insertions = hashes.flatMap((h, i) => index.insertion(h, i));
  assert.equal(await applyDecisions(redis, keys, 'test', 0, '[]', insertions), 'applied');
  // A committer that died after the script and retries it: nothing is appended twice.
  assert.equal(await applyDecisions(redis, keys, 'test', 0, '[]', insertions), 'already');
  for (let c = 0; c < PHASH_CHUNKS; c++) {
    let bytes = 0;
    for (const name of await redis.keys(`${keys.prefix}:h:${c}:*`)) bytes += await redis.strlen(name);
    assert.equal(bytes, hashes.length * PHASH_ENTRY_BYTES, `table ${c}`);
  }
  assert.equal((await index.lookup(redis, hashes.map((phash) => ({ phash })))).stats.matched, hashes.length);
  assert.ok(await deleteState(redis, keys) > 0);
  assert.deepEqual(await redis.keys(`${keys.prefix}:*`), []);
  assert.equal(phashBucketKey(keys, 2, 0xbeef), 'filip:once:h:2:beef');
});

test('bad options, hashes and row indexes fail with stable codes', async () => {
  const keys = new Keys('bad');
  for (const input of [
    { maxDistance: -1 },
    { maxDistance: 25 },
    { maxDistance: 2.5 },
    { maxDistance: '10' },
    { keysPerRoundTrip: 0 },
    { keysPerRoundTrip: Number.NaN },
    { maxDistanc: 4 },
  ]) {
    assert.throws(() => resolveRedisPhashOptions(input as never), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION', JSON.stringify(input));
    assert.throws(() => new RedisPhashIndex(keys, input as never), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION');
  }
  for (const value of ['Redis', '', 3, undefined]) {
    assert.throws(() => nearDupIndexOption(value), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION');
  }
  const index = new RedisPhashIndex(keys);
  for (const hash of ['F0F0F0F00F0F0F0F', '0123', 'zz23456789abcdef', '0123456789abcdef0']) {
    await assert.rejects(index.lookup(redis, [{ phash: hash }]), TypeError, hash);
    await assert.rejects(index.lookup(redis, [{ phash: '0123456789abcdef', weak: hash }]), TypeError, hash);
    assert.throws(() => index.insertion(hash, 0), TypeError);
  }
  // A weak-bit mask may mark at most 8 bits of a chunk.
  await assert.rejects(index.lookup(redis, [{ phash: '0123456789abcdef', weak: '01ff000000000000' }]), TypeError);
  for (const rowIndex of [-1, 1.5, 2 ** 40, Number.NaN]) {
    assert.throws(() => index.insertion('0123456789abcdef', rowIndex), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION');
  }
  const empty = await index.lookup(redis, []);
  assert.equal(empty.index.size, 0);
  assert.equal(empty.stats.roundTrips, 0);
});
