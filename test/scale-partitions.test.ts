// Partitions without Redis: `ingest --partitions N --partition I` for every I, then `filip-data merge`,
// must keep exactly the keys of one single-machine run (plain, and with the filter), and reject bad
// partition flags with FILIP_ERR_INVALID_OPTION.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { existsSync, promises as fs } from 'node:fs';
import type { Sample } from '../src/core/sample.js';
import { readManifests, resolveManifestOptions } from '../src/manifest/read.js';
import { textReadStats } from '../src/manifest/text.js';
import { onlyPartition, partitionOf, readPartition, rowsInPartition, writeCursorIndex } from '../src/scale/partition.js';
import { readOutput } from './helpers/read.js';
import { scaleBed, type ScaleBed } from './helpers/scale-cli.js';

let bed: ScaleBed;
let tmp: string;

before(async () => {
  bed = await scaleBed('scale-part', 150);
  tmp = bed.tmp;
});

after(async () => {
  await bed?.close();
});

const cli = (args: string[]) => bed.cli(args);

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
    // Partition 0 writes the block index, partition 2 reads it, partition 1 scans the manifest instead.
    const index = i === 1 ? [] : ['--partition-index', path.join(tmp, 'blocks.jsonl')];
    await ok(['ingest', bed.corpus.manifest, '-o', dir, ...COMMON, '--partitions', '3', '--partition', String(i), '--rows-per-job', '10', ...index]);
  }
  assert.ok(existsSync(path.join(tmp, 'blocks.jsonl')), 'the first partition given --partition-index writes it');
  // Each partition holds only its own rows.
  for (const [i, dir] of parts.entries()) {
    const { kept, rejects } = await keysOf(dir);
    for (const key of [...kept, ...rejects.map((r) => r.split(' ')[0]!)]) assert.equal(partitionOf(Number(key.slice(4)), 10, 3), i);
  }

  await ok(['ingest', bed.corpus.manifest, '-o', path.join(tmp, 'single'), ...COMMON]);
  await ok(['merge', ...parts, '-o', path.join(tmp, 'merged'), '--progress', 'none']);
  const single = await keysOf(path.join(tmp, 'single'));
  const merged = await keysOf(path.join(tmp, 'merged'));
  assert.ok(single.rejects.some((r) => r.endsWith('duplicate_url')) && single.rejects.some((r) => r.endsWith('duplicate_image')));
  assert.deepEqual(merged.kept, single.kept, 'merge keeps the keys of a single-machine ingest');
  assert.deepEqual(merged.rejects, single.rejects, 'and rejects the others for the same reasons');

  await ok(['ingest', bed.corpus.manifest, '-o', path.join(tmp, 'single-filtered'), ...COMMON, ...FILTER]);
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
  const base = ['ingest', bed.corpus.manifest, '-o', path.join(tmp, 'bad'), ...COMMON];
  const cases: [string[], RegExp][] = [
    [['--partitions', '3', '--partition', '3'], /`--partition`.*0 to 2/],
    [['--partitions', '3', '--partition', '-1'], /`--partition`/],
    [['--partition', '1'], /`--partition`.*0 to 0/],
    [['--partitions', '0'], /`--partitions`/],
    [['--partitions', '2.5'], /`--partitions`/],
    [['--partitions', '3', '--partition', '1', '--filter'], /`--filter`.*merge/],
    [['--partitions', '2', '--queue', 'redis://127.0.0.1:1/0'], /`--partitions`/],
  ];
  for (const [flags, detail] of cases) {
    const r = await cli([...base, ...flags]);
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /FILIP_ERR_INVALID_OPTION/, flags.join(' '));
    assert.match(r.stderr, detail, flags.join(' '));
  }
});

async function collect(rows: AsyncIterable<Sample>): Promise<string[]> {
  const out: string[] = [];
  for await (const s of rows) out.push([s.key, s.index, s.source.row, s.status, s.url, s.caption].join(' '));
  return out;
}

test('readPartition enters its own blocks only, and yields what filtering a full read yields', async () => {
  const dir = path.join(tmp, 'lib');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'a.csv'), 'url,caption\n' + Array.from({ length: 23 }, (_, i) => `https://a/${i}.jpg,"row ${i}\nsecond line"`).join('\n'));
  await fs.writeFile(path.join(dir, 'b.jsonl'), Array.from({ length: 17 }, (_, i) => (i === 3 ? '{bad' : JSON.stringify({ url: `https://b/${i}.jpg`, caption: `b ${i}` }))).join('\n'));
  await fs.writeFile(path.join(dir, 'c.tsv'), 'url\tcaption\n' + Array.from({ length: 19 }, (_, i) => `https://c/${i}.jpg\tc ${i}`).join('\n'));
  const options = resolveManifestOptions({ inputs: [dir] });
  const index = path.join(tmp, 'lib.index');
  assert.equal(await writeCursorIndex(options, 7, index), 59);
  for (const start of [0, 10, 30]) {
    for (let p = 0; p < 3; p++) {
      const spec = { rowsPerJob: 7, partitions: 3, partition: p };
      const expected = await collect(onlyPartition(readManifests(options, start), 7, 3, p));
      assert.ok(expected.length > 0);
      assert.deepEqual(await collect(readPartition(options, spec, start)), expected, `partition ${p} from ${start}, scanned`);
      assert.deepEqual(await collect(readPartition(options, spec, start, index)), expected, `partition ${p} from ${start}, from the index`);
    }
  }
  await assert.rejects(collect(readPartition(options, { rowsPerJob: 8, partitions: 3, partition: 0 }, 0, index)), /FILIP_ERR_INVALID_OPTION|rowsPerJob/);

  // With the index, N partitions together read the manifest about once (counted bytes, not time).
  const lines = ['url\tcaption'];
  for (let i = 0; i < 40_000; i++) lines.push(`https://example.com/${i}.jpg\ta caption for row ${i} of a long manifest`);
  const long = path.join(tmp, 'long.tsv');
  await fs.writeFile(long, `${lines.join('\n')}\n`);
  const size = (await fs.stat(long)).size;
  const longOptions = resolveManifestOptions({ inputs: [long] });
  const longIndex = path.join(tmp, 'long.index');
  await writeCursorIndex(longOptions, 1000, longIndex);
  const read: number[] = [];
  for (let p = 0; p < 4; p++) {
    const before = textReadStats.bytes;
    let n = 0;
    for await (const _ of readPartition(longOptions, { rowsPerJob: 1000, partitions: 4, partition: p }, 0, longIndex)) n++;
    assert.equal(n, 10_000);
    read.push(textReadStats.bytes - before);
  }
  const slack = 10 * (4096 + 2 * 65536); // per block: the header block and one block past its end
  for (const [p, bytes] of read.entries()) assert.ok(bytes <= size / 4 + slack, `partition ${p} read ${bytes} of ${size} bytes`);
  const before = textReadStats.bytes;
  for await (const _ of onlyPartition(readManifests(longOptions), 1000, 4, 3)) void _;
  const filtering = textReadStats.bytes - before;
  assert.ok(filtering >= size, 'filtering a full read reads the whole file for every partition');
  process.stdout.write(`# partitions: 4 partitions read ${read.reduce((a, b) => a + b, 0)} bytes of a ${size}-byte manifest with the index; filtering a full read: ${4 * filtering}\n`);
});
