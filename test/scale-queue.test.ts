// Scale-out on Redis: three `filip-data worker` processes over one manifest, one killed with SIGKILL
// in the middle of a job. The output must hold exactly the keys (and reject reasons) of a
// single-process `ingest --filter` of the same manifest: none lost, none twice, nothing half-written.
// And `ingest --retry-failed --queue` re-attempts exactly what single-process `--retry-failed` does.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { noiseJpeg } from './helpers/images.js';
import { readOutput } from './helpers/read.js';
import { scaleCorpus, startRedis, type ScaleCorpus, type TestRedis } from './helpers/redis.js';
import { sendBytes, startServer } from './helpers/server.js';
import { gzipSync } from 'node:zlib';

const CLI = path.resolve('bin/filip-data.js');
let redis: TestRedis;
let corpus: ScaleCorpus;
let tmp: string;
const children: ChildProcess[] = [];

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-scale-queue-'));
  redis = await startRedis();
  // 40 ms an image and 2 downloads at a time: a 10-row job lasts ~0.2 s, long enough to be killed in.
  corpus = await scaleCorpus(tmp, 150, 40);
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await corpus?.server.close();
  await redis?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
});

// The filter's corpus-wide rules are on (repeated_text with a low limit, near_duplicate), so the test
// covers every piece of state kept in Redis.
const PIPELINE = ['--image-size', '64', '--concurrency', '2', '--filter', '--max-repeats', '3', '--progress', 'none'];

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

function keysOf(out: Awaited<ReturnType<typeof readOutput>>) {
  return {
    kept: out.rows.map((r) => String(r.key)),
    rejects: out.rejects.map((r) => `${r.key} ${r.reason}`).sort(),
  };
}

test('three workers, one killed mid-job: the same keys as a single-process run, none lost, none twice', async () => {
  const single = path.join(tmp, 'single');
  const one = await run(['ingest', corpus.manifest, '-o', single, ...PIPELINE]);
  assert.equal(one.code, 0, one.stderr);
  const expected = keysOf(await readOutput(single));
  // The corpus exercises what Redis must hold: every rule rejects something.
  for (const reason of ['duplicate_url', 'duplicate_image', 'near_duplicate', 'repeated_text', 'not_english', 'image_too_small', 'http_status', 'malformed_row']) {
    assert.ok(expected.rejects.some((r) => r.endsWith(` ${reason}`)), `the single run rejects some rows as ${reason}`);
  }

  const out = path.join(tmp, 'queued');
  const queued = await run(['ingest', corpus.manifest, '-o', out, ...PIPELINE, '--queue', redis.url, '--rows-per-job', '10']);
  assert.equal(queued.code, 0, queued.stderr);
  assert.match(queued.stdout, /15 chunk jobs of 10 rows/);

  const workerArgs = ['worker', '--queue', redis.url, '--lock-duration', '2', '--stalled-interval', '1', '--until-done'];
  const victim = spawn(process.execPath, [CLI, ...workerArgs], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(victim);
  const survivors = [run(workerArgs), run(workerArgs)];

  // Kill the victim as soon as it has started staging its second chunk: its job is active, its lock held.
  let log = '';
  let killedChunk: number | undefined;
  victim.stderr!.on('data', (d) => {
    log += d;
    const started = [...log.matchAll(/staging chunk (\d+):/g)];
    if (killedChunk === undefined && started.length >= 2) {
      killedChunk = Number(started[1]![1]);
      victim.kill('SIGKILL');
    }
  });
  await new Promise((r) => victim.once('exit', r));
  assert.equal(victim.signalCode, 'SIGKILL');
  assert.ok(killedChunk !== undefined, `the victim was killed mid-job: ${log}`);
  assert.doesNotMatch(log, new RegExp(`staged chunk ${killedChunk}:`), 'killed before it finished that chunk');

  const results = await Promise.all(survivors);
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  // BullMQ's stalled-job check gave the killed job to a surviving worker.
  assert.ok(
    results.some((r) => new RegExp(`staged chunk ${killedChunk}:`).test(r.stderr)),
    `chunk ${killedChunk} was redone by another worker`,
  );

  const got = await readOutput(out);
  const actual = keysOf(got);
  assert.equal(new Set(actual.kept).size, actual.kept.length, 'no kept key twice');
  assert.deepEqual(actual.kept, expected.kept, 'the same kept keys, in the same order');
  assert.deepEqual(actual.rejects, expected.rejects, 'the same rejected keys, for the same reasons');
  assert.equal(actual.kept.length + actual.rejects.length, corpus.rows, 'every row once, kept or rejected');
  assert.deepEqual(got.names.filter((n) => n.endsWith('.tmp')), [], 'nothing half-written is visible');
  const staging = await fs.readdir(path.join(out, '.staging')).catch(() => [] as string[]);
  assert.deepEqual(staging.filter((n) => !n.startsWith('.work')), [], 'staging files are gone once committed');
  // Shard numbers are chunk numbers: 15 commits, one per chunk, whatever worker wrote them.
  assert.equal(got.names.filter((n) => n.endsWith('_stats.json')).length, 15);
  // The committer of the last chunk marked the run finished, so the later stages take the folder.
  const summary = JSON.parse(await fs.readFile(path.join(out, '_summary.json'), 'utf8')) as { kind: string; total: { ok: number; rejected: number } };
  assert.deepEqual([summary.kind, summary.total.ok + summary.total.rejected], ['queue', corpus.rows]);

  // The same command again adds no job; with --wait it finds the run done and writes the funnel report,
  // with the counts of the single run's.
  const again = await run(['ingest', corpus.manifest, '-o', out, ...PIPELINE, '--queue', redis.url, '--rows-per-job', '10', '--wait']);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /all chunks committed .* kept, .* rejected, \d+ shards/);
  type Funnel = { input: number; kept: number; rules: { rule: string; rejected: number; failedAny: number; remaining: number }[] };
  const funnel = async (dir: string) => JSON.parse(await fs.readFile(path.join(dir, 'funnel.json'), 'utf8')) as Funnel;
  const [f1, f2] = [await funnel(single), await funnel(out)];
  assert.deepEqual({ input: f2.input, kept: f2.kept, rules: f2.rules }, { input: f1.input, kept: f1.kept, rules: f1.rules });

  const status = await run(['status', '--queue', redis.url]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /waiting 0, active 0, done 30, failed 0/);
  assert.match(status.stdout, /committed 15\/15/);
});

test('--retry-failed with --queue re-attempts the transient rejects as a single-process retry does', async () => {
  // Rows under /flaky/ answer 503 until the server "recovers". Among them: a repeated URL (the second
  // use stays duplicate_url), an image that an earlier row already kept (duplicate_image once it loads)
  // and, for contrast, a 404 (not transient: never retried).
  const images = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => noiseJpeg(500 + i)));
  let healthy = false;
  const server = await startServer((p) => {
    const m = /^\/(ok|flaky)\/(\d+)\.jpg$/.exec(p);
    if (!m) return undefined;
    if (m[1] === 'flaky' && !healthy) return (_req, res) => void res.writeHead(503).end('busy');
    return sendBytes(images[Number(m[2])]!);
  });
  try {
    const base = server.baseUrl;
    const rows = [
      [`${base}/ok/0.jpg`, 'a red barn'],
      [`${base}/flaky/1.jpg`, 'a small boat'],
      [`${base}/ok/2.jpg`, 'an old house'],
      [`${base}/flaky/1.jpg`, 'the same boat again'],
      [`${base}/flaky/0.jpg?copy`, 'the red barn under another URL'],
      [`${base}/missing.jpg`, 'gone for good'],
      [`${base}/flaky/3.jpg`, 'a quiet bridge'],
      [`${base}/ok/4.jpg`, 'a tall tower'],
      [`${base}/flaky/5.jpg`, 'a sunny market'],
      [`${base}/ok/6.jpg`, 'a narrow street'],
      [`${base}/flaky/7.jpg`, 'an empty school'],
    ];
    const manifest = path.join(tmp, 'flaky.tsv');
    await fs.writeFile(manifest, ['url\tcaption', ...rows.map((r) => r.join('\t'))].join('\n'));
    const flags = ['--image-size', '64', '--retries', '0', '--progress', 'none'];
    const q = ['--queue', redis.url, '--queue-name', 'retry', '--rows-per-job', '4'];
    const worker = ['worker', '--queue', redis.url, '--queue-name', 'retry', '--until-done'];
    const must = async (args: string[]) => {
      const r = await run(args);
      assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
      return r.stdout;
    };

    const single = path.join(tmp, 'retry-single');
    const queued = path.join(tmp, 'retry-queued');
    await must(['ingest', manifest, '-o', single, ...flags]);
    await must(['ingest', manifest, '-o', queued, ...flags, ...q]);
    await must(worker);
    const transient = (await readOutput(queued)).rejects.filter((r) => r.reason === 'http_server_error').length;
    assert.equal(transient, 5, 'every flaky row but the repeated URL failed with a 503');

    healthy = true;
    await must(['ingest', manifest, '-o', single, ...flags, '--retry-failed']);
    const stdout = await must(['ingest', manifest, '-o', queued, ...flags, ...q, '--retry-failed']);
    assert.match(stdout, /queued 5 rows rejected for transient reasons/);
    await assert.rejects(fs.access(path.join(queued, '_summary.json')), 'unfinished again while the retry round is queued');
    const early = await run(['filter', queued, '-o', path.join(tmp, 'retry-early'), '--progress', 'none']);
    assert.equal(early.code, 2, early.stderr);
    assert.match(early.stderr, /FILIP_ERR_INPUT_UNFINISHED: .*start \(or wait for\) `filip-data worker --queue redis:\/\/[^ ]+ --queue-name retry`/);
    await must(worker);
    await fs.access(path.join(queued, '_summary.json'));

    const expected = await readOutput(single);
    const actual = await readOutput(queued);
    const kept = (o: typeof expected) => o.rows.map((r) => String(r.key));
    const latest = (o: typeof expected) => {
      const last = new Map<string, string>();
      for (const r of o.rejects) last.set(r.key, r.reason);
      for (const k of kept(o)) last.delete(k);
      return [...last].map(([k, reason]) => `${k} ${reason}`).sort();
    };
    assert.deepEqual(kept(actual), kept(expected), 'the same kept keys, in the same order');
    assert.deepEqual(latest(actual), latest(expected), 'the same final reason for every other row');
    assert.ok(latest(actual).some((r) => r.endsWith('duplicate_image')), 'a retried row can be a duplicate of a kept one');
    assert.ok(latest(actual).some((r) => r.endsWith('duplicate_url')) && latest(actual).some((r) => r.endsWith('http_status')));
    assert.equal(new Set(kept(actual)).size, kept(actual).length, 'no key kept twice');
    assert.equal(kept(actual).length, 8, '8 distinct images load once the server recovers');

    // Nothing transient is left: a second retry queues nothing, and the run stays done.
    const again = await must(['ingest', manifest, '-o', queued, ...flags, ...q, '--retry-failed']);
    assert.match(again, /queued 0 rows/);
    const status = await run(['status', '--queue', redis.url, '--queue-name', 'retry']);
    assert.match(status.stdout, /committed 5\/5/);
  } finally {
    await server.close();
  }
});

test('a gzipped manifest: chunk jobs read a plain copy from their offsets, with the keys of a single run', async () => {
  const dir = path.join(tmp, 'gz');
  await fs.mkdir(dir, { recursive: true });
  const small = await scaleCorpus(dir, 45);
  try {
    const gz = path.join(dir, 'manifest.tsv.gz');
    await fs.writeFile(gz, gzipSync(await fs.readFile(small.manifest)));
    const flags = ['--image-size', '64', '--progress', 'none'];
    const single = path.join(dir, 'single');
    const out = path.join(dir, 'queued');
    for (const args of [
      ['ingest', gz, '-o', single, ...flags],
      ['ingest', gz, '-o', out, ...flags, '--queue', redis.url, '--queue-name', 'gz', '--rows-per-job', '7'],
      ['worker', '--queue', redis.url, '--queue-name', 'gz', '--until-done'],
    ]) {
      const r = await run(args);
      assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
    }
    const copies = await fs.readdir(path.join(out, '.staging', 'manifests'));
    assert.deepEqual(copies, ['0000-manifest.tsv'], 'the producer gunzipped the manifest once');
    const [a, b] = [keysOf(await readOutput(single)), keysOf(await readOutput(out))];
    assert.deepEqual(b.kept, a.kept);
    assert.deepEqual(b.rejects, a.rejects);
    const sources = (await readOutput(out)).rejects.map((r) => (r as unknown as { source: string }).source);
    assert.ok(sources.every((s) => s.startsWith(`${gz}:`)), 'sources name the gzipped manifest, not its copy');
  } finally {
    await small.server.close();
  }
});
