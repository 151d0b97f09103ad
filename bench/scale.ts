// npm run bench:scale — scale-out on Redis: rows/s of `ingest` on one process against the same
// manifest run as chunk jobs by 1 and by 2 `filip-data worker` processes, in the same run; then the
// Redis memory per record of each structure the workers share, measured at a million records.
//
// Throughput: N photo-like JPEGs (bench/photos.ts) served from memory by a loopback server in this
// process; each mode runs as CLI child processes, timed from the first command to the last exit
// (the queue modes include `ingest --queue`, the workers' start-up and every commit). Printed: rows/s
// and the ratio to single-process mode, and for the queue modes the same for the workers alone (from
// their start, after `ingest --queue` has returned, to their exit). On a 2-core machine the workers compete for the same cores
// as each other; the figure that carries over to separate machines is the 1-worker ratio (the cost
// of the queue, staging and ordered commits), with 2 workers showing what sharing costs on one box.
//
// Memory: `--records` synthetic records go into a fresh redis-server through the same slot functions
// and keys the committer uses (src/scale/state.ts), one structure at a time, with INFO memory
// (used_memory) read before and after each; the near-duplicate structures without and with the
// check (the filter's default; random check data). Then the cost of near_duplicate at that size, for a chunk
// of 100 and of 1,000 rows at the default distance and 6: with the bucketed index in Redis (the
// default; round trips, keys and bytes read, seconds, median of 3), and with a committer's replica of
// the pHash log (its load on a worker's first commit, then per chunk a sync and local lookups).
//
// Usage: npx tsx bench/scale.ts [--count 1000] [--concurrency 16] [--rows-per-job 100] [--records 1000000]
// (--count 0 skips the throughput part, --records 0 the memory part)

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { mulberry32 } from '../src/core/random.js';
import { connectRedis, parseQueueUrl } from '../src/scale/connection.js';
import { Keys } from '../src/scale/plan.js';
import { DEFAULT_NEAR_DUP_DISTANCE } from '../src/filters/phash-index.js';
import { DEFAULT_NEAR_DUP_CHECK, NEAR_DUP_CHECK_BYTES } from '../src/image/near-dup-check.js';
import { PHASH_CHECKED_ENTRY_BYTES, PHASH_ENTRY_BYTES, RedisPhashIndex } from '../src/scale/phash-redis.js';
import {
  appendExactLua,
  captionSlot,
  DEFAULT_BUCKET_BITS,
  imageSlot,
  NEAR_DUP_RECORD_CHECKED_BYTES,
  NearDupReplica,
  pairSlot,
  urlSlot,
  type Slot,
} from '../src/scale/state.js';
import { startRedis } from '../test/helpers/redis.js';
import { memoryServer } from './memory-server.js';
import { makePhotoCorpus } from './photos.js';

const CLI = path.resolve('bin/filip-data.js');


function cli(args: string[]): Promise<void> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args[0]} exit ${code}: ${err}`)))));
}

async function throughput(count: number, concurrency: number, rowsPerJob: number, work: string, redisUrl: string) {
  const files = (await makePhotoCorpus(path.resolve('.cache/bench-photos'), count)).slice(0, count);
  const server = await memoryServer(files);
  const manifest = path.join(work, 'manifest.tsv');
  const lines = ['url\tcaption', ...files.map((_, i) => `${server.baseUrl}/${i}\ta photo number ${i} of a quiet street`)];
  await fs.writeFile(manifest, `${lines.join('\n')}\n`);
  const common = ['--concurrency', String(concurrency), '--progress', 'none', '--overwrite'];
  // seconds: first command to last exit; workerSeconds: the workers alone (queue modes, without `ingest --queue`).
  const results: { mode: string; seconds: number; workerSeconds?: number }[] = [];
  try {
    for (const [mode, workers] of [['single process', 0], ['queue, 1 worker', 1], ['queue, 2 workers', 2]] as const) {
      const out = path.join(work, `out-${workers}`);
      const t0 = performance.now();
      if (workers === 0) {
        await cli(['ingest', manifest, '-o', out, ...common]);
      } else {
        await cli(['ingest', manifest, '-o', out, ...common, '--queue', redisUrl, '--queue-name', `bench-${workers}`, '--rows-per-job', String(rowsPerJob)]);
        const t1 = performance.now();
        const w = ['worker', '--queue', redisUrl, '--queue-name', `bench-${workers}`, '--until-done'];
        await Promise.all(Array.from({ length: workers }, () => cli(w)));
        results.push({ mode, seconds: (performance.now() - t0) / 1000, workerSeconds: (performance.now() - t1) / 1000 });
      }
      if (workers === 0) results.push({ mode, seconds: (performance.now() - t0) / 1000 });
      process.stderr.write(`${mode}: ${results.at(-1)!.seconds.toFixed(1)} s\n`);
    }
  } finally {
    await server.close();
  }
  const base = count / results[0]!.seconds;
  console.log(`\nthroughput: ${count} rows (photo-like JPEGs, long side 320-1024), concurrency ${concurrency}, ${rowsPerJob} rows per job, ${os.cpus().length} cores`);
  console.log('mode               seconds   rows/s   vs single   workers alone: seconds   rows/s   vs single');
  for (const r of results) {
    const rate = count / r.seconds;
    const alone = r.workerSeconds === undefined ? '' : `   ${r.workerSeconds.toFixed(1).padStart(20)}  ${(count / r.workerSeconds).toFixed(1).padStart(7)}   ${(count / r.workerSeconds / base).toFixed(2)}`;
    console.log(`${r.mode.padEnd(17)}  ${r.seconds.toFixed(1).padStart(7)}  ${rate.toFixed(1).padStart(7)}   ${(rate / base).toFixed(2).padStart(9)}${alone}`);
  }
}

async function usedMemory(redis: Awaited<ReturnType<typeof connectRedis>>): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)![1]);
}

async function memory(records: number, redisUrl: string) {
  const redis = await connectRedis(parseQueueUrl(redisUrl));
  const keys = new Keys('mem');
  const bits = DEFAULT_BUCKET_BITS;
  const rand = mulberry32(7);
  const hex = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join('');
  /** A weak-bit mask as ingest makes one: 5 random bits in each 16-bit chunk. */
  const weakMask = (): string => {
    let out = '';
    for (let c = 0; c < 4; c++) {
      let chunk = 0;
      while (chunk.toString(2).replace(/0/g, '').length < 5) chunk |= 1 << Math.floor(rand() * 16);
      out += chunk.toString(16).padStart(4, '0');
    }
    return out;
  };
  // Per record: a URL, a sha256, a caption and a pHash, all distinct (the worst case for dedupe).
  const record = (i: number) => ({
    url: `https://images.example.com/${i}/${hex(12)}.jpg`,
    sha: createHash('sha256').update(String(i)).digest('hex'),
    caption: `a photo number ${i} ${hex(6)}`,
    phash: hex(16),
  });
  type Op = (p: ReturnType<typeof redis.pipeline>, i: number, r: ReturnType<typeof record>) => void;
  const h = (kind: 'u' | 'i' | 'p', slot: Slot, p: ReturnType<typeof redis.pipeline>, i: number) => p.hsetnx(keys.bucket(kind, slot.bucket), slot.field, i);
  const structures: [string, Op][] = [
    ['URL dedupe (u)', (p, i, r) => h('u', urlSlot(r.url, bits), p, i)],
    ['image sha256 dedupe (i)', (p, i, r) => h('i', imageSlot(r.sha, bits), p, i)],
    ['image+caption pair dedupe (p)', (p, i, r) => h('p', pairSlot(r.sha, r.caption, bits), p, i)],
    ['caption counts (c)', (p, _i, r) => {
      const s = captionSlot(r.caption, bits);
      p.hincrby(keys.bucket('c', s.bucket), s.field, 1);
    }],
    ['near-dup pHash index (h, 4 x 11 B)', (p, i, r) => {
      // As the commit script appends (state.ts appendExactLua), one EVALSHA per entry.
      for (const a of bucketed.insertion(r.phash, i)) p.evalsha(appendSha, 1, a.append, a.bytes);
    }],
    ['near-dup pHash log (n, replica only)', (p, _i, r) => {
      p.append(keys.nearDups, Buffer.from(r.phash, 'hex'));
    }],
    // With the near-duplicate check (the filter's default), under their own keys.
    [`index + check (4 x ${PHASH_CHECKED_ENTRY_BYTES} B, c:<i> ${NEAR_DUP_CHECK_BYTES} B)`, (p, i, r) => {
      for (const a of checked.insertion(r.phash, i, checkOf(i))) p.evalsha(appendSha, 1, a.append, a.bytes);
    }],
    [`log + check (n, ${NEAR_DUP_RECORD_CHECKED_BYTES} B a record)`, (p, i, r) => {
      p.append(checkedKeys.nearDups, checkedReplica.record(r.phash, checkOf(i)));
    }],
  ];
  const bucketed = new RedisPhashIndex(keys);
  const checkedKeys = new Keys('memc');
  const checked = new RedisPhashIndex(checkedKeys, { check: DEFAULT_NEAR_DUP_CHECK });
  const checkedReplica = new NearDupReplica(DEFAULT_NEAR_DUP_DISTANCE, DEFAULT_NEAR_DUP_CHECK);
  /** Synthetic check data (random bytes: the size is what counts here). */
  const checkOf = (i: number): Uint8Array => {
    const out = new Uint8Array(NEAR_DUP_CHECK_BYTES);
    const r = mulberry32(i + 1);
    for (let k = 0; k < out.length; k++) out[k] = Math.floor(r() * 256);
    return out;
  };
  const appendSha = String(await redis.script('LOAD', appendExactLua('KEYS[1]', 'ARGV[1]')));
  console.log(`\nRedis memory at ${records.toLocaleString('en')} records, ${2 ** bits} buckets per structure (redis-server ${(await redis.info('server')).match(/redis_version:(\S+)/)![1]})`);
  console.log(`structure                            MB   bytes/record   (pHash index entry: ${PHASH_ENTRY_BYTES} B per table, ${PHASH_CHECKED_ENTRY_BYTES} B with the check)`);
  const perRecord = new Map<string, number>();
  for (const [name, op] of structures) {
    const before = await usedMemory(redis);
    for (let start = 0; start < records; start += 20_000) {
      const p = redis.pipeline();
      for (let i = start; i < Math.min(start + 20_000, records); i++) op(p, i, record(i));
      await p.exec();
    }
    const bytes = (await usedMemory(redis)) - before;
    perRecord.set(name, bytes / records);
    console.log(`${name.padEnd(34)} ${(bytes / 1e6).toFixed(1).padStart(6)}   ${(bytes / records).toFixed(1).padStart(6)}`);
  }
  const all = [...perRecord.values()];
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  // A kept row has one of each of the first four, with one of the near-duplicate structures.
  const base = sum(all.slice(0, 4));
  const line = (name: string, perRow: number) => console.log(`${name.padEnd(34)} ${((perRow * records) / 1e6).toFixed(1).padStart(6)}   ${perRow.toFixed(1).padStart(6)}`);
  line('all, one kept row (index + check)', base + all[6]!);
  line('all, one kept row (log + check)', base + all[7]!);
  line('all, one kept row (index, no check)', base + all[4]!);
  line('all, one kept row (log, no check)', base + all[5]!);

  // What a committer pays for near_duplicate per chunk. Queries are random hashes: at this size a
  // random hash has no match, so the work is the probing itself (what every row costs).
  console.log(`\nnear_duplicate per chunk against ${records.toLocaleString('en')} kept pHashes, seconds (median of 3):`);
  console.log('index                distance  rows   seconds   round trips   keys read   MB read   candidates/row');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  for (const distance of [DEFAULT_NEAR_DUP_DISTANCE, 6]) {
    const index = new RedisPhashIndex(keys, { maxDistance: distance });
    for (const rows of [100, 1000]) {
      const times: number[] = [];
      let stats: Awaited<ReturnType<typeof index.lookup>>['stats'] | undefined;
      for (let rep = 0; rep < 3; rep++) {
        const queries = Array.from({ length: rows }, () => ({ phash: hex(16), weak: weakMask() }));
        const t0 = performance.now();
        const found = await index.lookup(redis, queries);
        // The walk in row order that decideChunk does with the result (first seen wins inside the chunk).
        for (const q of queries) if (found.index.find(q.phash, q.weak) === undefined) found.index.add(q.phash);
        times.push((performance.now() - t0) / 1000);
        stats = found.stats;
      }
      console.log(
        `${'redis (bucketed)'.padEnd(20)} ${String(distance).padStart(8)}  ${String(rows).padStart(4)}   ${median(times).toFixed(3).padStart(7)}   ${String(stats!.roundTrips).padStart(11)}   ${String(stats!.keys).padStart(9)}   ${(stats!.bytes / 1e6).toFixed(1).padStart(7)}   ${(stats!.candidates / rows).toFixed(0).padStart(14)}`,
      );
    }
  }
  // The same with the check (entries 28 B; random check data, so the chroma stage refuses the candidates).
  for (const rows of [100, 1000]) {
    const times: number[] = [];
    let stats: Awaited<ReturnType<typeof checked.lookup>>['stats'] | undefined;
    for (let rep = 0; rep < 3; rep++) {
      const queries = Array.from({ length: rows }, (_, k) => ({ phash: hex(16), weak: weakMask(), check: checkOf(records + rep * rows + k) }));
      const t0 = performance.now();
      const found = await checked.lookup(redis, queries);
      for (const q of queries) if (found.index.find(q.phash, q.weak, q.check) === undefined) found.index.add(q.phash, q.check);
      times.push((performance.now() - t0) / 1000);
      stats = found.stats;
    }
    console.log(
      `${'redis + check'.padEnd(20)} ${String(DEFAULT_NEAR_DUP_DISTANCE).padStart(8)}  ${String(rows).padStart(4)}   ${median(times).toFixed(3).padStart(7)}   ${String(stats!.roundTrips).padStart(11)}   ${String(stats!.keys).padStart(9)}   ${(stats!.bytes / 1e6).toFixed(1).padStart(7)}   ${(stats!.candidates / rows).toFixed(0).padStart(14)}`,
    );
  }
  // The replica: loaded once per worker (its first commit), then per chunk one sync round trip and local lookups.
  for (const distance of [DEFAULT_NEAR_DUP_DISTANCE, 6]) {
    const replica = new NearDupReplica(distance);
    let t0 = performance.now();
    await replica.sync(redis, keys);
    const loadMs = performance.now() - t0;
    for (const rows of [100, 1000]) {
      const times: number[] = [];
      for (let rep = 0; rep < 3; rep++) {
        t0 = performance.now();
        await replica.sync(redis, keys);
        for (let i = 0; i < rows; i++) replica.index.find(hex(16));
        times.push((performance.now() - t0) / 1000);
      }
      console.log(`${'replica (local)'.padEnd(20)} ${String(distance).padStart(8)}  ${String(rows).padStart(4)}   ${median(times).toFixed(3).padStart(7)}             1`);
    }
    console.log(`  replica at distance ${distance}: loaded in ${(loadMs / 1000).toFixed(1)} s on a worker's first commit, ${(replica.index.bytes / 1e6).toFixed(0)} MB in each committing worker`);
  }
  redis.disconnect();
}

async function main() {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '16' },
      'rows-per-job': { type: 'string', default: '100' },
      records: { type: 'string', default: '1000000' },
    },
  });
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-bench-scale-'));
  const redis = await startRedis();
  try {
    if (Number(values.count) > 0) await throughput(Number(values.count), Number(values.concurrency), Number(values['rows-per-job']), work, redis.url);
    if (Number(values.records) > 0) await memory(Number(values.records), redis.url);
  } finally {
    await redis.stop();
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
