// The Redis state across failures, driven through the library: a committer that dies after its
// dedupe insertions reached Redis but before its shard was committed must not make the redo reject
// the chunk's own rows, nor store its pHashes twice (bucketed index and replica log alike); a count
// job run twice must not count twice.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Fetcher, resolveFetchOptions } from '../src/fetch/fetcher.js';
import { prepareFilter } from '../src/filters/filter.js';
import { runIngest } from '../src/pipeline/ingest.js';
import { stageChunk } from '../src/scale/chunk.js';
import { commitChunk, decideChunk } from '../src/scale/commit.js';
import { connectRedis, parseQueueUrl } from '../src/scale/connection.js';
import { chunkRange, Keys, parseRun } from '../src/scale/plan.js';
import { enqueueIngest } from '../src/scale/producer.js';
import { NEAR_DUP_CHECK_BYTES } from '../src/image/near-dup-check.js';
import { PHASH_CHECKED_ENTRY_BYTES } from '../src/scale/phash-redis.js';
import { applyCounts, applyDecisions, captionSlot, lookupSlots, NEAR_DUP_RECORD_CHECKED_BYTES, tryLock } from '../src/scale/state.js';
import { runWorker } from '../src/scale/worker.js';
import { readOutput } from './helpers/read.js';
import { scaleCorpus, startRedis, type ScaleCorpus, type TestRedis } from './helpers/redis.js';

let redis: TestRedis;
let corpus: ScaleCorpus;
let tmp: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-scale-state-'));
  redis = await startRedis();
  corpus = await scaleCorpus(tmp, 48);
});

after(async () => {
  await corpus?.server.close();
  await redis?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

const quiet = { write: () => true } as unknown as NodeJS.WritableStream;

test('a committer killed after its Redis insertions: the redo reuses its decisions, keys equal one machine', async () => {
  const ingest = { inputs: [corpus.manifest], image: { size: 64 }, progress: 'none' as const, logStream: quiet };
  const single = await runIngest({ ...ingest, output: path.join(tmp, 'single') });
  const expected = await readOutput(single.output);

  const out = path.join(tmp, 'queued');
  await enqueueIngest({ ...ingest, output: out }, { queue: { url: redis.url, name: 'crash' }, rowsPerJob: 8 });
  const client = await connectRedis(parseQueueUrl(redis.url));
  const keys = new Keys('crash');
  const run = parseRun(await client.get(keys.run), redis.url, 'crash');
  const fetcher = new Fetcher(resolveFetchOptions({}));
  try {
    // Stage chunk 0, then play a committer that dies right after its atomic Redis step.
    await stageChunk({ redis: client, keys, run, output: out, fetcher, concurrency: 4 }, chunkRange(0, 8, run.total));
    const staged = JSON.parse(await fs.readFile(path.join(out, '.staging', 'chunk-000000.json'), 'utf8'));
    assert.ok(await tryLock(client, keys, 'dead-committer', 60_000));
    const first = await decideChunk(client, keys, run, staged);
    assert.equal(await applyDecisions(client, keys, 'dead-committer', 0, JSON.stringify(first.decisions), first.insertions), 'applied');
    // ...and left a half-written shard and a reject line that no commit covers.
    await fs.writeFile(path.join(out, '.00000.parquet.tmp'), 'partial');
    await fs.appendFile(path.join(out, 'rejects.jsonl'), '{"key":"half written"');

    // Deciding again now would be wrong: the chunk's own URLs are in Redis and its rows would look like duplicates.
    const naive = await decideChunk(client, keys, run, staged);
    const keptFirst = first.decisions.filter((d, i) => d === null && staged.rows[i].status === 'ok').length;
    assert.ok(keptFirst > 0);
    assert.ok(naive.decisions.filter((d) => d?.[0] === 'duplicate_url').length >= keptFirst, 'the hazard is real');

    // Another committer cannot take over while the dead one's lock lives...
    await assert.rejects(commitChunk({ redis: client, keys, run, output: out, token: 'someone-else' }, 0), /commit lock/);
    // ...and does once it expires (here: is removed), reusing the stored decisions.
    await client.del(keys.lock);
    await runWorker({ queue: { url: redis.url, name: 'crash' }, untilDone: true, lockDurationMs: 2000, stalledIntervalMs: 1000, logStream: quiet });
  } finally {
    await fetcher.close();
    client.disconnect();
  }
  const got = await readOutput(out);
  assert.deepEqual(got.rows.map((r) => String(r.key)), expected.rows.map((r) => String(r.key)));
  assert.deepEqual(got.rejects.map((r) => `${r.key} ${r.reason}`), expected.rejects.map((r) => `${r.key} ${r.reason}`));
  assert.deepEqual(got.names.filter((n) => n.endsWith('.tmp')), []);
});

// near_duplicate on (the filter without repeated_text, so no count jobs are needed before a commit).
const NEAR_DUP_FILTER = { disable: ['repeated_text' as const] };

/** Total bytes of the keys matching `pattern`. */
async function bytesOf(client: Awaited<ReturnType<typeof connectRedis>>, pattern: string): Promise<number> {
  let total = 0;
  for (const k of await client.keys(pattern)) total += await client.strlen(k);
  return total;
}

for (const index of ['redis', 'replica'] as const) {
  test(`near_duplicate with the ${index} index: a committer killed after its Redis insertions; each kept pHash stored once, keys equal one machine`, async () => {
    const ingest = { inputs: [corpus.manifest], image: { size: 64 }, filter: NEAR_DUP_FILTER, progress: 'none' as const, logStream: quiet };
    const single = await runIngest({ ...ingest, output: path.join(tmp, `single-near-${index}`) });
    const expected = await readOutput(single.output);
    assert.ok(expected.rejects.some((r) => r.reason === 'near_duplicate'), 'the corpus has near duplicates');

    const name = `crash-near-${index}`;
    const out = path.join(tmp, name);
    await enqueueIngest({ ...ingest, output: out }, { queue: { url: redis.url, name }, rowsPerJob: 8 });
    const client = await connectRedis(parseQueueUrl(redis.url));
    const keys = new Keys(name);
    if (index === 'replica') {
      // The run record's choice of index (plan.ts does not set the field yet: the default is 'redis').
      await client.set(keys.run, JSON.stringify({ ...JSON.parse((await client.get(keys.run))!), nearDupIndex: 'replica' }));
    }
    const run = parseRun(await client.get(keys.run), redis.url, name);
    const fetcher = new Fetcher(resolveFetchOptions({}));
    try {
      // Staged as a worker stages: with the per-sample rules.
      const rules = run.filter!.rules.filter((r) => r !== 'near_duplicate');
      const localFilter = await prepareFilter({ ...run.filter!, rules }, async function* () {}, path.join(tmp, `${name}-work`));
      await stageChunk({ redis: client, keys, run, output: out, fetcher, concurrency: 4, localFilter }, chunkRange(0, 8, run.total));
      await localFilter.close();
      const staged = JSON.parse(await fs.readFile(path.join(out, '.staging', 'chunk-000000.json'), 'utf8'));
      assert.ok(await tryLock(client, keys, 'dead-committer', 60_000));
      const first = await decideChunk(client, keys, run, staged);
      assert.equal(await applyDecisions(client, keys, 'dead-committer', 0, JSON.stringify(first.decisions), first.insertions), 'applied');
      assert.ok(first.kept > 0);
      await client.del(keys.lock);
      await runWorker({ queue: { url: redis.url, name }, untilDone: true, lockDurationMs: 2000, stalledIntervalMs: 1000, logStream: quiet });

      const got = await readOutput(out);
      assert.deepEqual(got.rows.map((r) => String(r.key)), expected.rows.map((r) => String(r.key)));
      assert.deepEqual(got.rejects.map((r) => `${r.key} ${r.reason}`), expected.rejects.map((r) => `${r.key} ${r.reason}`));
      // The messages name the same kept image as one machine does (the first match in input order).
      const messages = (o: typeof got) => o.rejects.filter((r) => r.reason === 'near_duplicate').map((r) => `${r.key} ${r.error_message}`);
      assert.deepEqual(messages(got), messages(expected));
      // Every kept row's pHash is stored exactly once, with its chroma hash (the filter's default check):
      // in each of the 4 tables of the bucketed index, its check data once beside them; or once on the log.
      const kept = got.rows.length;
      if (index === 'redis') {
        for (let c = 0; c < 4; c++) assert.equal(await bytesOf(client, `${keys.prefix}:h:${c}:*`), kept * PHASH_CHECKED_ENTRY_BYTES, `table ${c}`);
        assert.equal(await bytesOf(client, `${keys.prefix}:c:*`), kept * NEAR_DUP_CHECK_BYTES);
        assert.equal((await client.keys(`${keys.prefix}:c:*`)).length, kept);
        assert.equal(await client.exists(keys.nearDups), 0);
      } else {
        assert.equal(await client.strlen(keys.nearDups), kept * NEAR_DUP_RECORD_CHECKED_BYTES);
        assert.deepEqual(await client.keys(`${keys.prefix}:h:*`), []);
      }
    } finally {
      await fetcher.close();
      client.disconnect();
    }
  });
}

test('caption counts of a chunk are added once, however often its count job runs', async () => {
  const client = await connectRedis(parseQueueUrl(redis.url));
  const keys = new Keys('counts');
  try {
    const slot = captionSlot('A photo of a cat.', 16);
    const same = captionSlot('a photo of a CAT', 16);
    assert.deepEqual(same, slot, 'counted after normalising, as on one machine');
    const counts = new Map([['x', { slot, n: 3 }]]);
    assert.equal(await applyCounts(client, keys, 7, counts), true);
    assert.equal(await applyCounts(client, keys, 7, counts), false, 'a retried job adds nothing');
    assert.equal(await applyCounts(client, keys, 8, new Map([['x', { slot, n: 2 }]])), true);
    assert.deepEqual(await lookupSlots(client, keys, 'c', [slot, captionSlot('never seen', 16)]), [5, null]);
  } finally {
    client.disconnect();
  }
});
