// Benchmark of `filip-data shard`: each figure next to a baseline measured in the same run.
//
//   npm run bench:shard -- [--images 200] [--reps 3] [--captions 300] [--repeated 1000] [--rows 2000]
//
// 1. AutoAugment: images/s of the augment stage (one view per image, concurrency 4) on 224x224 photo-like
//    JPEGs, against a bare sharp decode -> JPEG encode of the same images at the same concurrency and
//    quality. Reps alternate baseline and stage; the median of the per-rep ratios is printed.
// 2. Back-translation with Apertium (spa, cat): captions/s through the stage batched, and one caption
//    at a time (the baseline); then a corpus where half the captions repeat an earlier one: the cache
//    hit rate and captions/s, and a second pass over it with the filled cache.
// 3. Shard writing: MB/s of the training-shard writers (lean Parquet and our tar) over in-memory samples
//    with one view, against writev of the same image and view buffers to a plain file (no fsync on
//    either side); and the whole `runShard` (scatter to buckets, gather, write; no translation, no
//    views) against reading the same input shards and writing their images to a plain file.
// MB are 10^6 bytes. The machine may be shared: ratios of back-to-back runs are the steadier figures.

import { mkdtemp, open, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { augmentStage, resolveAugmentOptions } from '../src/augment/index.js';
import { makeKey, type Sample } from '../src/core/sample.js';
import { openOutput, ShardSink } from '../src/pipeline/output.js';
import { mapLimit } from '../src/pipeline/pool.js';
import { runShard } from '../src/pipeline/shard-run.js';
import { committedShards, readShardSamples } from '../src/pipeline/shard-source.js';
import { sampleToTrainingRow, trainingShardColumns } from '../src/shard/schema.js';
import { TarWriter, webdatasetMembers } from '../src/shard/webdataset.js';
import { openShardWriter } from '../src/shard/writer.js';
import { measureBackTranslation } from '../src/translate/index.js';
import { renderPhoto } from './photos.js';

interface Args {
  images: number;
  reps: number;
  captions: number;
  repeated: number;
  rows: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { images: 200, reps: 3, captions: 300, repeated: 1000, rows: 2000 };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!.replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(flag in a) || !Number.isFinite(value) || value <= 0) throw new Error(`bad flag ${argv[i]} ${argv[i + 1] ?? ''}`);
    a[flag as keyof Args] = value;
  }
  return a;
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const fmt = (n: number, d = 1) => n.toFixed(d);

/** 224x224 photo-like JPEGs (quality 95, as the ingest default): centre crops of the bench photos. */
async function photos224(n: number): Promise<Buffer[]> {
  return mapLimit(Array.from({ length: n }, (_, i) => i), 2, async (i) => {
    const { bytes } = await renderPhoto(7, i);
    return sharp(bytes).resize(224, 224, { fit: 'cover' }).jpeg({ quality: 95 }).toBuffer();
  });
}

function sampleOf(i: number, bytes: Buffer, views: Buffer[] = []): Sample {
  return {
    key: makeKey(0, i),
    index: i,
    url: `http://127.0.0.1/photo/${i}.jpg`,
    caption: `a photo-like test image number ${i} with a sky and some texture`,
    source: { file: 'bench.tsv', row: i },
    extra: {},
    status: 'ok',
    image: { bytes, format: 'jpeg', width: 224, height: 224, originalWidth: 800, originalHeight: 600, sha256: '0'.repeat(64), phash: '0'.repeat(16) },
    ...(views.length > 0 ? { views } : {}),
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - t0) / 1000, value };
}

async function benchAugment(a: Args, images: Buffer[]): Promise<void> {
  const concurrency = 4;
  const baseline = () => mapLimit(images, concurrency, (b) => sharp(b).jpeg({ quality: 95 }).toBuffer());
  const stage = augmentStage(resolveAugmentOptions({ views: 1, seed: 0, policy: 'imagenet', concurrency, quality: 95 }));
  const augment = async () => {
    async function* src() {
      for (let i = 0; i < images.length; i++) yield sampleOf(i, images[i]!);
    }
    let n = 0;
    for await (const s of stage(src())) if (s.views) n++;
    if (n !== images.length) throw new Error(`augmented ${n} of ${images.length}`);
  };
  await baseline(); // warm up sharp and the JIT
  await augment();
  const ratios: number[] = [];
  const rates: [number, number][] = [];
  for (let r = 0; r < a.reps; r++) {
    const base = await timed(baseline);
    const aug = await timed(augment);
    rates.push([images.length / base.seconds, images.length / aug.seconds]);
    ratios.push(base.seconds / aug.seconds);
  }
  console.log(`1. AutoAugment, ${images.length} images 224x224, 1 view each, concurrency ${concurrency}, ${a.reps} reps`);
  for (const [i, [b, s]] of rates.entries()) console.log(`   rep ${i + 1}: sharp decode->encode ${fmt(b)} images/s, AutoAugment ${fmt(s)} images/s`);
  console.log(`   AutoAugment / bare sharp decode->encode: median ratio ${fmt(median(ratios), 2)}`);
}

async function benchTranslation(a: Args): Promise<void> {
  const m = await measureBackTranslation({
    options: { engine: 'apertium', pivots: ['spa', 'cat'] },
    distinct: a.captions,
    repeated: a.repeated,
    repeatFraction: 0.5,
  });
  console.log(`2. Back-translation, ${m.engine} via ${m.pivots.join(', ')} (each caption: 2 pivots x 2 directions)`);
  console.log(`   ${m.captions} distinct captions, batch ${m.batchSize}: ${fmt(m.batchedPerSecond)} captions/s; one at a time (baseline): ${fmt(m.singlePerSecond)} captions/s; ratio ${fmt(m.ratio, 2)}`);
  console.log(
    `   ${m.repeated.captions} captions, half repeating an earlier one: cache hit rate ${fmt(100 * m.repeated.hitRate)}% ` +
      `(${m.repeated.stats.cacheHits} of ${m.repeated.stats.cacheHits + m.repeated.stats.cacheMisses} lookups), ${fmt(m.repeated.perSecond)} captions/s`,
  );
  console.log(`   second pass with the filled cache: ${fmt(m.rerun.perSecond)} captions/s, ${m.rerun.stats.cacheMisses} engine lookups`);
}

async function benchWriting(a: Args, images: Buffer[], dir: string): Promise<void> {
  // Samples with one view (a re-encode of another photo, so views do not repeat the image bytes).
  const samples = Array.from({ length: a.rows }, (_, i) => sampleOf(i, images[i % images.length]!, [images[(i * 7 + 3) % images.length]!]));
  let payload = 0;
  for (const s of samples) payload += s.image!.bytes.length + s.views![0]!.length;
  const mb = payload / 1e6;
  // The baseline writes the very buffers, no copy, in writev calls of 1,024 buffers (as the tar writer does).
  const plain = async () => {
    const parts: Buffer[] = [];
    for (const s of samples) parts.push(s.image!.bytes, s.views![0]!);
    const fh = await open(join(dir, 'plain.bin'), 'w');
    try {
      for (let i = 0; i < parts.length; i += 1024) await fh.writev(parts.slice(i, i + 1024));
    } finally {
      await fh.close();
    }
  };
  const parquet = async () => {
    const w = await openShardWriter(join(dir, 'w.parquet'), trainingShardColumns([], 1), 'lean');
    for (const s of samples) await w.write(sampleToTrainingRow(s, [], 1));
    await w.close();
  };
  const tar = async () => {
    const w = await TarWriter.open(join(dir, 'w.tar'));
    for (const s of samples) for (const m of webdatasetMembers(s, [], 1)) await w.add(m.name, m.data);
    await w.close();
  };
  await plain();
  const rows: Record<string, number[]> = { plain: [], parquet: [], tar: [] };
  for (let r = 0; r < a.reps; r++) {
    rows.plain!.push((await timed(plain)).seconds);
    rows.parquet!.push((await timed(parquet)).seconds);
    rows.tar!.push((await timed(tar)).seconds);
  }
  const base = median(rows.plain!);
  console.log(`3. Shard writing, ${a.rows} samples with 1 view, ${fmt(mb)} MB of image and view bytes, ${a.reps} reps (median)`);
  console.log(`   plain file, writev of the same buffers (baseline): ${fmt(mb / base)} MB/s`);
  for (const k of ['parquet', 'tar'] as const) {
    const t = median(rows[k]!);
    console.log(`   ${k === 'parquet' ? 'lean Parquet training shard' : 'WebDataset tar shard       '}: ${fmt(mb / t)} MB/s, ratio to plain ${fmt(base / t, 2)}`);
  }

  // The whole command: an input folder of the same images, scattered, gathered and written.
  const input = join(dir, 'input');
  const state = await openOutput(input, 'filip-data ingest', { bench: true }, true, []);
  const sink = new ShardSink({ dir: input, shardSize: 1000, engine: 'lean', keepCols: [], kind: 'ingest' }, state);
  for (const s of samples) await sink.write({ ...s, views: undefined });
  await sink.close();
  const inputFiles = (await readdir(input)).filter((n) => n.endsWith('.parquet'));
  let inputBytes = 0;
  for (const f of inputFiles) inputBytes += (await stat(join(input, f))).size;
  // Baseline: the least any shard command does: read the input shards with the same reader and write
  // their image bytes to one plain file.
  const readAndWrite = async (target: string) => {
    const fh = await open(target, 'w');
    try {
      let batch: Buffer[] = [];
      for await (const s of readShardSamples(await committedShards(input))) {
        batch.push(s.image!.bytes);
        if (batch.length === 1024) {
          await fh.writev(batch);
          batch = [];
        }
      }
      if (batch.length > 0) await fh.writev(batch);
    } finally {
      await fh.close();
    }
  };
  const copies: number[] = [];
  const runs: number[] = [];
  for (let r = 0; r < a.reps; r++) {
    copies.push((await timed(() => readAndWrite(join(dir, `copy-${r}.bin`)))).seconds);
    runs.push((await timed(() => runShard({ input, output: join(dir, `run-${r}`), progress: 'none', samplesPerShard: 1000, translate: { engine: 'none' } }))).seconds);
  }
  const inMb = inputBytes / 1e6;
  console.log(
    `   whole runShard (read, scatter to buckets, gather, write, fsync each shard; ${fmt(inMb)} MB of input shards): ${fmt(inMb / median(runs))} MB/s; ` +
      `reading the input and writing its images to a plain file (baseline): ${fmt(inMb / median(copies))} MB/s; ratio ${fmt(median(copies) / median(runs), 2)}`,
  );
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const dir = await mkdtemp(join(tmpdir(), 'filip-bench-shard-'));
  try {
    console.log(`bench:shard (node ${process.version}, sharp ${sharp.versions.vips ? `libvips ${sharp.versions.vips}` : ''})`);
    const images = await photos224(a.images);
    await benchAugment(a, images);
    await benchTranslation(a);
    await benchWriting(a, images, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
