// The dataset card of `filip-data shard` run on a real filter output: its schema is the shards' columns
// (as an independent reader sees them), its rules and funnel are the filter's, its counts add up, it
// names the seed, engine, pivots, policy and views and the tool version, and it is byte-identical when
// the same run is made again.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { asyncBufferFromFile, parquetMetadataAsync, parquetSchema } from 'hyparquet';
import { makeKey } from '../src/core/sample.js';
import type { FunnelJson } from '../src/filters/funnel.js';
import type { DatasetCard } from '../src/pipeline/dataset-card.js';
import { runFilter } from '../src/pipeline/filter-run.js';
import { openOutput, ShardSink, writeSummary } from '../src/pipeline/output.js';
import { runShard } from '../src/pipeline/shard-run.js';
import { noiseJpeg } from './helpers/images.js';

let tmp: string;
let ingest: string;
let filtered: string;

const ENGLISH = [
  'a red bicycle leaning against a brick wall',
  'two children playing football in the park',
  'an old lighthouse on a rocky coast at sunset',
  'a bowl of fresh fruit on a kitchen table',
  'snow covered mountains under a clear blue sky',
  'a black cat sleeping on a wooden chair',
];

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-card-'));
  ingest = path.join(tmp, 'ingest');
  const state = await openOutput(ingest, 'filip-data ingest', { test: true }, true, []);
  const sink = new ShardSink({ dir: ingest, shardSize: 10, engine: 'lean', keepCols: [], kind: 'ingest' }, state);
  for (let i = 0; i < 30; i++) {
    // Rows 0-3 too small, 4-5 too wide, 6-8 not English, the rest kept.
    const [ow, oh] = i < 4 ? [120, 120] : i < 6 ? [1200, 300] : [640, 480];
    const caption = i >= 6 && i < 9 ? ['un perro marrón corriendo en la playa', 'ein alter Mann liest die Zeitung im Garten', 'une petite maison au bord du lac'][i - 6]! : `${ENGLISH[i % ENGLISH.length]} number ${i}`;
    await sink.write({
      key: makeKey(0, i),
      index: i,
      url: `http://127.0.0.1/${i}.jpg`,
      caption,
      source: { file: 'm.tsv', row: i },
      extra: {},
      status: 'ok',
      image: {
        bytes: await noiseJpeg(70 + i, 32, 24),
        format: 'jpeg',
        width: 32,
        height: 24,
        originalWidth: ow,
        originalHeight: oh,
        sha256: String(i).padStart(64, '0'),
        // Far apart hashes, so near_duplicate keeps them all.
        phash: (BigInt(i + 1) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn).toString(16).padStart(16, '0'),
      },
    });
  }
  await sink.close();
  await writeSummary(ingest, { test: true }); // a finished run
  filtered = path.join(tmp, 'filtered');
  await runFilter({ input: ingest, output: filtered, shardSize: 10, progress: 'none' });
});

after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

async function shard(output: string, overwrite = false) {
  return runShard({
    input: filtered,
    output,
    overwrite,
    progress: 'none',
    samplesPerShard: 8,
    seed: 7,
    augment: { views: 1, policy: 'cifar10' },
    translate: { engine: 'apertium', pivots: ['cat'], cacheDir: null },
  });
}

test('the card: schema, filter rules and funnel, counts, settings, version', async () => {
  const out = path.join(tmp, 'final');
  const summary = await shard(out);
  const card = JSON.parse(await fs.readFile(path.join(out, 'dataset_card.json'), 'utf8')) as DatasetCard;
  const funnel = JSON.parse(await fs.readFile(path.join(filtered, 'funnel.json'), 'utf8')) as FunnelJson;
  const pkg = JSON.parse(await fs.readFile('package.json', 'utf8')) as { name: string; version: string };

  assert.deepEqual(card.tool, { name: pkg.name, version: pkg.version });
  assert.equal(card.seed, 7);
  assert.equal(card.format, 'parquet');
  assert.equal(card.samples_per_shard, 8);
  assert.deepEqual(card.translation, { engine: 'apertium', pivots: ['cat'] });
  assert.deepEqual(card.augmentation, { policy: 'cifar10', views: 1 });

  // Counts: what the filter kept is what the shards hold, and sizes.json agrees.
  assert.ok(funnel.kept > 0 && funnel.kept < 30, `the filter dropped some rows (${funnel.kept} kept)`);
  assert.equal(card.counts.input, funnel.kept);
  assert.equal(card.counts.samples, funnel.kept);
  assert.equal(card.counts.back_translations.cat, funnel.kept);
  const sizes = JSON.parse(await fs.readFile(path.join(out, 'sizes.json'), 'utf8')) as Record<string, number>;
  assert.deepEqual(card.shards.map((s) => [s.file, s.samples]), Object.entries(sizes));
  assert.equal(Object.values(sizes).reduce((a, n) => a + n, 0), funnel.kept);
  assert.deepEqual(summary.sizes, sizes);

  // Filter: the rules in the order they ran, with the funnel's numbers and their settings.
  assert.ok(card.filter);
  assert.equal(card.filter.preset, 'filip');
  assert.deepEqual(card.filter.rules.map((r) => r.rule), funnel.rules.map((r) => r.rule));
  for (const r of card.filter.rules) {
    const f = funnel.rules.find((x) => x.rule === r.rule)!;
    assert.deepEqual([r.rejected, r.remaining], [f.rejected, f.remaining], r.rule);
  }
  assert.equal(card.filter.rules.find((r) => r.rule === 'image_too_small')!.rejected, 4);
  assert.match(card.filter.rules.find((r) => r.rule === 'image_too_small')!.setting, /200/);
  assert.match(card.filter.rules.find((r) => r.rule === 'aspect_ratio')!.setting, /\b3\b/);
  assert.deepEqual(card.lineage.map((s) => s.tool), ['filip-data filter', 'filip-data ingest']);

  // Schema: exactly the shard's columns, in order, as hyparquet reads them, each documented.
  const meta = await parquetMetadataAsync(await asyncBufferFromFile(path.join(out, '00000.parquet')));
  const columns = parquetSchema(meta).children.map((c) => c.element.name);
  assert.deepEqual(card.schema.map((s) => s.name), columns);
  assert.ok(columns.includes('back_translations') && columns.includes('view_0'));
  for (const s of card.schema) assert.ok(s.doc.length > 10, `${s.name} is documented`);

  const md = await fs.readFile(path.join(out, 'dataset_card.md'), 'utf8');
  for (const r of card.filter.rules) assert.match(md, new RegExp(`\\| ${r.rule} \\| .* \\| ${r.rejected} \\| ${r.remaining} \\|`), r.rule);
  for (const c of columns) assert.ok(md.includes(`| \`${c}\` |`), `column ${c} in the Markdown card`);
  assert.match(md, new RegExp(`${pkg.name} ${pkg.version.replace(/\./g, '\\.')}`));
  assert.match(md, /seed 7/);
  assert.match(md, /apertium, English -> cat -> English/);
  assert.match(md, /1 view\(s\) per sample, cifar10 policy/);
});

test('the card is byte-identical when the same run is made again', async () => {
  const a = path.join(tmp, 'again-a');
  await shard(a);
  const first = await fs.readFile(path.join(a, 'dataset_card.json'));
  const firstMd = await fs.readFile(path.join(a, 'dataset_card.md'));
  await shard(a, true);
  assert.ok((await fs.readFile(path.join(a, 'dataset_card.json'))).equals(first));
  assert.ok((await fs.readFile(path.join(a, 'dataset_card.md'))).equals(firstMd));
});

test('an ingest output as input: the card says no filter ran', async () => {
  const out = path.join(tmp, 'from-ingest');
  await runShard({ input: ingest, output: out, progress: 'none', translate: { engine: 'none' } });
  const card = JSON.parse(await fs.readFile(path.join(out, 'dataset_card.json'), 'utf8')) as DatasetCard;
  assert.equal(card.filter, null);
  assert.equal(card.counts.samples, 30);
  assert.deepEqual(card.translation, { engine: 'none', pivots: [] });
  assert.deepEqual(card.augmentation, { policy: 'none', views: 0 });
  assert.match(await fs.readFile(path.join(out, 'dataset_card.md'), 'utf8'), /No filter run was found/);
});
