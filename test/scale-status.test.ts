// `filip-data status` and the queue's bad inputs: an unreachable Redis is FILIP_ERR_QUEUE naming the
// URL, for every command that takes --queue.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, startRedis, type TestRedis } from './helpers/redis.js';
import { scaleBed, type ScaleBed } from './helpers/scale-cli.js';

let redis: TestRedis;
let bed: ScaleBed;
let tmp: string;

before(async () => {
  bed = await scaleBed('scale-status', 40);
  tmp = bed.tmp;
  redis = await startRedis();
});

after(async () => {
  await bed?.close();
  await redis?.stop();
});

const cli = (args: string[]) => bed.cli(args);

test('status: jobs waiting before any worker, then done, and rows/s per worker', async () => {
  const out = path.join(tmp, 'out');
  const q = await cli(['ingest', bed.corpus.manifest, '-o', out, '--image-size', '64', '--queue', redis.url, '--queue-name', 'st', '--rows-per-job', '8']);
  assert.equal(q.code, 0, q.stderr);

  const before = await cli(['status', '--queue', redis.url, '--queue-name', 'st']);
  assert.equal(before.code, 0, before.stderr);
  assert.match(before.stdout, /jobs: waiting 5, active 0, done 0, failed 0/);
  assert.match(before.stdout, /run: 40 rows in 5 chunks of 8/);
  assert.match(before.stdout, /committed 0\/5/);
  assert.match(before.stdout, /workers: 0/);

  const w = await cli(['worker', '--queue', redis.url, '--queue-name', 'st', '--until-done']);
  assert.equal(w.code, 0, w.stderr);
  const done = await cli(['status', '--queue', redis.url, '--queue-name', 'st', '--json']);
  assert.equal(done.code, 0, done.stderr);
  const s = JSON.parse(done.stdout) as {
    jobs: Record<string, number>;
    chunks: { staged: number; committed: number };
    workers: { rows: number; jobs: number; rowsPerSecond: number }[];
  };
  assert.deepEqual(s.jobs, { waiting: 0, active: 0, done: 5, failed: 0, delayed: 0 });
  assert.deepEqual(s.chunks, { staged: 5, counted: null, committed: 5 });
  assert.equal(s.workers.length, 1);
  assert.equal(s.workers[0]!.rows, 40, 'the worker reports every row it staged');
  assert.ok(s.workers[0]!.rowsPerSecond > 0);

  const text = await cli(['status', '--queue', redis.url, '--queue-name', 'st']);
  assert.match(text.stdout, /worker\s+jobs\s+rows\s+rows\/s/);
  assert.match(text.stdout, /\s5\s+40\s+\d+\.\d\s/);
});

test('ingest --queue again with other options is refused; the same command adds nothing', async () => {
  const out = path.join(tmp, 'out');
  const same = await cli(['ingest', bed.corpus.manifest, '-o', out, '--image-size', '64', '--queue', redis.url, '--queue-name', 'st', '--rows-per-job', '8']);
  assert.equal(same.code, 0, same.stderr);
  const status = await cli(['status', '--queue', redis.url, '--queue-name', 'st']);
  assert.match(status.stdout, /waiting 0, active 0, done 5/, 'no job added twice');
  const other = await cli(['ingest', bed.corpus.manifest, '-o', out, '--image-size', '96', '--queue', redis.url, '--queue-name', 'st']);
  assert.equal(other.code, 2);
  assert.match(other.stderr, /FILIP_ERR_QUEUE.*holds another run/);
});

test('an unreachable Redis or a bad queue URL is FILIP_ERR_QUEUE naming the URL', async () => {
  const dead = `redis://127.0.0.1:${await freePort()}/0`;
  const cases: [string[], string][] = [
    [['ingest', bed.corpus.manifest, '-o', path.join(tmp, 'x'), '--queue', dead], dead],
    [['worker', '--queue', dead], dead],
    [['status', '--queue', dead], dead],
    [['status', '--queue', 'http://127.0.0.1/0'], 'http://127.0.0.1/0'],
    [['status', '--queue', 'redis://127.0.0.1:6379/x'], 'redis://127.0.0.1:6379/x'],
  ];
  for (const [args, url] of cases) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /FILIP_ERR_QUEUE/, args.join(' '));
    assert.ok(r.stderr.includes(url), `${args.join(' ')} names ${url}: ${r.stderr}`);
  }
  const noQueue = await cli(['status']);
  assert.equal(noQueue.code, 1, 'status without --queue is a usage error');
});
