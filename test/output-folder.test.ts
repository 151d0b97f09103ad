// An output folder that is one of the run's inputs is refused before anything is written or deleted:
// with --overwrite the run would otherwise delete its own input first.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { makeKey } from '../src/core/sample.js';
import { runFilter } from '../src/pipeline/filter-run.js';
import { runIngest } from '../src/pipeline/ingest.js';
import { openOutput, ShardSink, writeSummary } from '../src/pipeline/output.js';
import { runShard } from '../src/pipeline/shard-run.js';
import { noiseJpeg } from './helpers/images.js';

let tmp: string;
let shards: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-output-folder-'));
  shards = path.join(tmp, 'ingested');
  const state = await openOutput(shards, 'filip-data ingest', { test: true }, true, []);
  const sink = new ShardSink({ dir: shards, shardSize: 4, engine: 'lean', keepCols: [], kind: 'ingest' }, state);
  for (let i = 0; i < 6; i++) {
    const bytes = await noiseJpeg(40 + i, 240, 220);
    await sink.write({
      key: makeKey(0, i),
      index: i,
      url: `http://127.0.0.1/${i}.jpg`,
      caption: `a blue door number ${i}`,
      source: { file: 'manifest.tsv', row: i },
      extra: {},
      status: 'ok',
      image: { bytes, format: 'jpeg', width: 240, height: 220, originalWidth: 240, originalHeight: 220, sha256: String(i).repeat(64), phash: (i * 7919).toString(16).padStart(16, '0') },
    });
  }
  await sink.close();
  await writeSummary(shards, { test: true }); // a finished run
});

after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function listing(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}

const refused = (input: string) => (e: unknown) =>
  e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'output' && e.file === input && e.message.includes(input);

test('filter and shard refuse an output folder that is their input, with or without --overwrite', async () => {
  const before = await listing(shards);
  assert.ok(before.includes('00000.parquet') && before.includes('00001_stats.json'));
  const runs: [string, () => Promise<unknown>][] = [
    ['filter --overwrite', () => runFilter({ input: shards, output: shards, overwrite: true, progress: 'none' })],
    ['filter', () => runFilter({ input: shards, output: shards, progress: 'none' })],
    ['filter, the same folder spelled differently', () => runFilter({ input: shards, output: `${shards}/./`, overwrite: true, progress: 'none' })],
    ['shard --overwrite', () => runShard({ input: shards, output: shards, overwrite: true, progress: 'none' })],
  ];
  for (const [name, run] of runs) {
    await assert.rejects(run(), refused(shards), name);
    assert.deepEqual(await listing(shards), before, `${name}: the input is untouched`);
  }
});

test('ingest refuses an output folder holding its manifest under a name the run manages', async () => {
  const out = path.join(tmp, 'ingest-out');
  await fs.mkdir(out);
  // A LAION-style Parquet manifest that happens to be named like a shard, inside the output folder.
  const manifest = path.join(out, '00000.parquet');
  await fs.copyFile(path.join(shards, '00000.parquet'), manifest);
  await assert.rejects(runIngest({ inputs: [manifest], output: out, overwrite: true, progress: 'none' }), refused(manifest));
  assert.deepEqual(await listing(out), ['00000.parquet']);
  // Any other manifest name inside the output folder is left alone by --overwrite, so it is allowed.
  const tsv = path.join(out, 'list.tsv');
  await fs.writeFile(tsv, 'url\tcaption\n');
  await runIngest({ inputs: [tsv], output: out, overwrite: true, progress: 'none' });
  assert.ok((await listing(out)).includes('list.tsv'));
});

test("another tool's output folder (shard-like names, no _run.json) is refused and left as it was", async () => {
  const cases: [string, Record<string, string>][] = [
    ['img2dataset-style', { '00000.tar': 'tar bytes', '00000_stats.json': '{"successes":5}', 'rejects.jsonl': '{"x":1}\n' }],
    ['a stray shard, no stats', { '00007.parquet': 'not ours' }],
  ];
  for (const [name, files] of cases) {
    const dir = path.join(tmp, `foreign-${name.replace(/\W+/g, '-')}`);
    await fs.mkdir(dir);
    for (const [f, text] of Object.entries(files)) await fs.writeFile(path.join(dir, f), text);
    for (const run of [
      () => runFilter({ input: shards, output: dir, progress: 'none' }),
      () => runShard({ input: shards, output: dir, progress: 'none' }),
    ]) {
      await assert.rejects(run(), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_RESUME_MISMATCH' && e.message.includes('left untouched'), name);
      for (const [f, text] of Object.entries(files)) assert.equal(await fs.readFile(path.join(dir, f), 'utf8'), text, `${name}: ${f} untouched`);
    }
  }
});
