// Partitions without Redis: `ingest --partitions N --partition I` for every I, then `filip-data merge`,
// must keep exactly the keys of one single-machine run (plain, and with the filter), and reject bad
// partition flags with FILIP_ERR_INVALID_OPTION.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { partitionOf, rowsInPartition } from '../src/scale/partition.js';
import { readOutput } from './helpers/read.js';
import { scaleCorpus, type ScaleCorpus } from './helpers/redis.js';

const CLI = path.resolve('bin/filip-data.js');
let corpus: ScaleCorpus;
let tmp: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-scale-part-'));
  corpus = await scaleCorpus(tmp, 150);
});

after(async () => {
  await corpus?.server.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: tmp });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

async function keysOf(dir: string) {
  const out = await readOutput(dir);
  return { kept: out.rows.map((r) => String(r.key)), rejects: out.rejects.map((r) => `${r.key} ${r.reason}`).sort() };
}

const COMMON = ['--image-size', '64', '--progress', 'none'];
const FILTER = ['--filter', '--max-repeats', '3'];

test('partitions are every N-th block of rows, and their sizes add up', () => {
  assert.deepEqual([0, 9, 10, 29, 30, 31].map((i) => partitionOf(i, 10, 3)), [0, 0, 1, 2, 0, 0]);
  for (const total of [0, 1, 29, 30, 31, 150, 1234]) {
    const sizes = [0, 1, 2].map((p) => rowsInPartition(total, 10, 3, p));
    assert.equal(sizes.reduce((a, b) => a + b, 0), total, `total ${total}`);
  }
});

test('3 partitions + merge keep the keys of one machine, with and without the filter', async () => {
  const parts: string[] = [];
  for (let i = 0; i < 3; i++) {
    const dir = path.join(tmp, `part-${i}`);
    parts.push(dir);
    await ok(['ingest', corpus.manifest, '-o', dir, ...COMMON, '--partitions', '3', '--partition', String(i), '--rows-per-job', '10']);
  }
  // Each partition holds only its own rows.
  for (const [i, dir] of parts.entries()) {
    const { kept, rejects } = await keysOf(dir);
    for (const key of [...kept, ...rejects.map((r) => r.split(' ')[0]!)]) assert.equal(partitionOf(Number(key.slice(4)), 10, 3), i);
  }

  await ok(['ingest', corpus.manifest, '-o', path.join(tmp, 'single'), ...COMMON]);
  await ok(['merge', ...parts, '-o', path.join(tmp, 'merged'), '--progress', 'none']);
  const single = await keysOf(path.join(tmp, 'single'));
  const merged = await keysOf(path.join(tmp, 'merged'));
  assert.ok(single.rejects.some((r) => r.endsWith('duplicate_url')) && single.rejects.some((r) => r.endsWith('duplicate_image')));
  assert.deepEqual(merged.kept, single.kept, 'merge keeps the keys of a single-machine ingest');
  assert.deepEqual(merged.rejects, single.rejects, 'and rejects the others for the same reasons');

  await ok(['ingest', corpus.manifest, '-o', path.join(tmp, 'single-filtered'), ...COMMON, ...FILTER]);
  await ok(['merge', ...parts, '-o', path.join(tmp, 'merged-filtered'), '--progress', 'none', ...FILTER]);
  const singleF = await keysOf(path.join(tmp, 'single-filtered'));
  const mergedF = await keysOf(path.join(tmp, 'merged-filtered'));
  for (const reason of ['repeated_text', 'near_duplicate', 'not_english']) {
    assert.ok(singleF.rejects.some((r) => r.endsWith(reason)), `the filtered run rejects some rows as ${reason}`);
  }
  assert.deepEqual(mergedF.kept, singleF.kept, 'merge --filter keeps the keys of ingest --filter');
  assert.deepEqual(mergedF.rejects, singleF.rejects);

  // merge needs all partitions, each once.
  const cases: [string[], RegExp][] = [
    [[parts[0]!, parts[1]!], /missing: 2/],
    [[parts[0]!, parts[1]!, parts[1]!], /partition 1 of 3 given twice/],
  ];
  for (const [inputs, detail] of cases) {
    const r = await cli(['merge', ...inputs, '-o', path.join(tmp, 'bad-merge'), '--overwrite']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /FILIP_ERR_INVALID_OPTION/);
    assert.match(r.stderr, detail);
  }
});

test('bad partition flags are FILIP_ERR_INVALID_OPTION naming the flag', async () => {
  const base = ['ingest', corpus.manifest, '-o', path.join(tmp, 'bad'), ...COMMON];
  const cases: [string[], RegExp][] = [
    [['--partitions', '3', '--partition', '3'], /`partition`.*0 to 2/],
    [['--partitions', '3', '--partition', '-1'], /`partition`/],
    [['--partition', '1'], /`partition`.*0 to 0/],
    [['--partitions', '0'], /`partitions`/],
    [['--partitions', '2.5'], /`partitions`/],
    [['--partitions', '3', '--partition', '1', '--filter'], /`filter`.*merge/],
    [['--partitions', '2', '--queue', 'redis://127.0.0.1:1/0'], /`partitions`/],
  ];
  for (const [flags, detail] of cases) {
    const r = await cli([...base, ...flags]);
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /FILIP_ERR_INVALID_OPTION/, flags.join(' '));
    assert.match(r.stderr, detail, flags.join(' '));
  }
});
