// `filip-data shard` end to end: every kept row lands in exactly one fixed-size shard, the order is a
// seeded shuffle of the whole input, views and Apertium back-translations ride along, a bad image is
// rejected with augment_failed, and a SIGKILL in either phase followed by the same command gives the
// output of a run that was never interrupted.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { FilipError } from '../src/core/errors.js';
import { openShardStream } from '../src/data/index.js';
import { makeKey, type Sample } from '../src/core/sample.js';
import { openOutput, ShardSink, writeSummary } from '../src/pipeline/output.js';
import { resolveShardRunOptions, runShard, translationError, type ShardRunInput } from '../src/pipeline/shard-run.js';
import { startApy } from './helpers/apy.js';
import { noiseJpeg } from './helpers/images.js';
import { readShardFile } from './helpers/read.js';
import { killWhen, runCli } from './helpers/cli.js';

const CLI = path.resolve('bin/filip-data.js');
let tmp: string;
let input: string;
const inputImages = new Map<string, Buffer>();
const inputCaptions = new Map<string, string>();
const N = 90;

/** An ingest-like output folder written with the real ShardSink: `n` rows, optionally one corrupt image. */
async function makeInput(dir: string, n: number, { corruptRow = -1, shardSize = 25, size = 48 } = {}): Promise<Sample[]> {
  const state = await openOutput(dir, 'filip-data ingest', { test: true }, true, []);
  const sink = new ShardSink({ dir, shardSize, engine: 'lean', keepCols: ['license'], kind: 'ingest' }, state);
  const samples: Sample[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = i === corruptRow ? Buffer.from('this is not an image at all') : await noiseJpeg(500 + i, size, size);
    const s: Sample = {
      key: makeKey(0, i),
      index: i,
      url: `http://127.0.0.1/img/${i}.jpg`,
      caption: `a small red house number ${i}`,
      source: { file: 'manifest.tsv', row: i },
      extra: { license: i % 3 === 0 ? null : `cc-by-${i}` },
      status: 'ok',
      image: { bytes, format: 'jpeg', width: size, height: size, originalWidth: 400, originalHeight: 300, sha256: 'ab'.repeat(32), phash: (i * 7919).toString(16).padStart(16, '0') },
    };
    samples.push(s);
    await sink.write(s);
  }
  await sink.close();
  await writeSummary(dir, { test: true }); // a finished run
  return samples;
}

async function readAll(dir: string): Promise<{ shards: string[]; rows: Record<string, unknown>[]; perShard: Map<string, string[]> }> {
  const names = (await fs.readdir(dir)).sort();
  const shards = names.filter((n) => /^\d{5}\.parquet$/.test(n));
  const rows: Record<string, unknown>[] = [];
  const perShard = new Map<string, string[]>();
  for (const s of shards) {
    const r = await readShardFile(path.join(dir, s));
    rows.push(...r);
    perShard.set(s, r.map((x) => String(x.key)));
  }
  return { shards, rows, perShard };
}

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-shard-'));
  input = path.join(tmp, 'input');
  for (const s of await makeInput(input, N)) {
    inputImages.set(s.key, s.image!.bytes);
    inputCaptions.set(s.key, s.caption);
  }
});

after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

const quiet: Partial<ShardRunInput> = { progress: 'none', translate: { engine: 'none' } };

test('every input row lands in exactly one shard; shards are fixed size; sizes.json counts them', async () => {
  const out = path.join(tmp, 'plain');
  const summary = await runShard({ ...quiet, input, output: out, samplesPerShard: 8, seed: 3 });
  const { shards, rows, perShard } = await readAll(out);
  assert.equal(shards.length, Math.ceil(N / 8));
  shards.forEach((s, i) => assert.equal(perShard.get(s)!.length, i < shards.length - 1 ? 8 : N - 8 * (shards.length - 1), s));
  const keys = rows.map((r) => String(r.key));
  assert.equal(new Set(keys).size, N, 'no key twice');
  assert.deepEqual([...keys].sort(), [...inputImages.keys()].sort(), 'no key lost');
  for (const r of rows) {
    const key = String(r.key);
    assert.ok(Buffer.from(r.image as Uint8Array).equals(inputImages.get(key)!), `image of ${key} unchanged`);
    assert.equal(r.caption, inputCaptions.get(key));
    assert.equal(r.back_translations, '[]');
    assert.equal(r.translation_failures, '[]');
    const i = Number(key.slice(4));
    assert.equal(r.extra_license, i % 3 === 0 ? null : `cc-by-${i}`, 'kept manifest columns survive');
  }
  const sizes = JSON.parse(await fs.readFile(path.join(out, 'sizes.json'), 'utf8')) as Record<string, number>;
  assert.deepEqual(Object.keys(sizes), shards);
  for (const s of shards) assert.equal(sizes[s], perShard.get(s)!.length);
  assert.deepEqual(summary.sizes, sizes);
  const leftovers = (await fs.readdir(out)).filter((n) => n.endsWith('.tmp') || n === '.work');
  assert.deepEqual(leftovers, [], 'no temporary files or work folder left');
});

test('the order is a seeded shuffle of the whole input, not of a window', async (t) => {
  const order = async (seed: number, bucketBytes: number) => {
    const out = path.join(tmp, `order-${seed}-${bucketBytes}`);
    const summary = await runShard({ ...quiet, input, output: out, samplesPerShard: 30, seed, bucketBytes });
    return { keys: (await readAll(out)).rows.map((r) => Number(String(r.key).slice(4))), buckets: summary.buckets, largest: summary.largestBucketBytes };
  };
  // About 3 KB per sample: 20 KB buckets give many buckets, so the external path is the one tested.
  const a = await order(1, 20_000);
  const again = await order(1, 20_000);
  const b = await order(2, 20_000);
  assert.ok(a.buckets >= 5, `several buckets (${a.buckets})`);
  // Bounded memory: the gather holds one bucket, about bucketBytes, not the input.
  let inputBytes = 0;
  for (const b of inputImages.values()) inputBytes += b.length;
  t.diagnostic(`${a.buckets} buckets of 20,000 bytes asked; the largest holds ${a.largest} bytes; ${inputBytes} bytes of images in all`);
  assert.ok(a.largest <= 3 * 20_000 && a.largest < inputBytes / 3, `largest bucket ${a.largest} bytes of ${inputBytes} bytes of images`);
  assert.deepEqual(a.keys, again.keys, 'same seed, same order');
  assert.notDeepEqual(a.keys, b.keys, 'another seed, another order');
  assert.notDeepEqual(a.keys, [...a.keys].sort((x, y) => x - y), 'not the input order');
  // The first shard draws from the whole input: rows from each third of it.
  const first = a.keys.slice(0, 30);
  for (const [lo, hi] of [[0, 30], [30, 60], [60, 90]] as const) {
    assert.ok(first.some((k) => k >= lo && k < hi), `first shard has rows from [${lo}, ${hi}): ${first.join(',')}`);
  }
  // Rank correlation with the input order stays small (a windowed shuffle would keep it near 1).
  const n = a.keys.length;
  let d2 = 0;
  a.keys.forEach((k, pos) => (d2 += (k - pos) ** 2));
  const spearman = 1 - (6 * d2) / (n * (n * n - 1));
  assert.ok(Math.abs(spearman) < 0.5, `rank correlation ${spearman.toFixed(2)}`);
});

test('views and Apertium back-translations are stored; a corrupt image is rejected with augment_failed', async () => {
  const src = path.join(tmp, 'input-corrupt');
  await makeInput(src, 6, { corruptRow: 2, size: 64 });
  const out = path.join(tmp, 'augmented');
  const summary = await runShard({
    input: src,
    output: out,
    progress: 'none',
    samplesPerShard: 4,
    seed: 5,
    augment: { views: 2 },
    translate: { engine: 'apertium', pivots: ['spa', 'cat'], cacheDir: null },
  });
  const { rows } = await readAll(out);
  assert.equal(rows.length, 5);
  assert.ok(!rows.some((r) => r.key === makeKey(0, 2)), 'the corrupt row is not in a shard');
  const rejects = (await fs.readFile(path.join(out, 'rejects.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(rejects.map((r) => [r.key, r.reason]), [[makeKey(0, 2), 'augment_failed']]);
  assert.equal(summary.counts.byReason.augment_failed, 1);
  for (const r of rows) {
    for (const v of ['view_0', 'view_1']) {
      const bytes = Buffer.from(r[v] as Uint8Array);
      const meta = await sharp(bytes).metadata();
      assert.equal(meta.format, 'jpeg', `${r.key} ${v} is a JPEG`);
      assert.deepEqual([meta.width, meta.height], [r.width, r.height], 'a view keeps the image size');
    }
    const bt = JSON.parse(String(r.back_translations)) as { pivot: string; engine: string; text: string }[];
    assert.deepEqual(bt.map((t) => [t.pivot, t.engine]), [['spa', 'apertium'], ['cat', 'apertium']]);
    for (const t of bt) assert.match(t.text, /\b(house|home)\b/i, `back-translation of "${r.caption}" via ${t.pivot}: ${t.text}`);
    // Every back-translation keeps its own caption's number: no caption got another one's text.
    for (const t of bt) assert.ok(t.text.includes(String(Number(String(r.key).slice(4)))), `${t.text} belongs to ${r.caption}`);
    assert.equal(r.translation_failures, '[]');
  }
  assert.deepEqual(summary.counts.backTranslations, { spa: 5, cat: 5 });
  // Views are seeded by (seed, key, view): another run with the same seed stores the same bytes.
  const again = path.join(tmp, 'augmented-again');
  await runShard({ input: src, output: again, progress: 'none', samplesPerShard: 4, seed: 5, augment: { views: 2 }, translate: { engine: 'none' } });
  const views = new Map((await readAll(again)).rows.map((r) => [String(r.key), Buffer.from(r.view_1 as Uint8Array)]));
  for (const r of rows) assert.ok(Buffer.from(r.view_1 as Uint8Array).equals(views.get(String(r.key))!), 'same seed, same view');
  assert.ok(rows.some((r) => !Buffer.from(r.view_0 as Uint8Array).equals(Buffer.from(r.image as Uint8Array))), 'views are not copies');
});

test('bad options fail with FILIP_ERR_INVALID_OPTION naming the option', () => {
  const cases: [Partial<ShardRunInput>, string][] = [
    [{ samplesPerShard: 0 }, 'samplesPerShard'],
    [{ samplesPerShard: 2.5 }, 'samplesPerShard'],
    [{ seed: -1 }, 'seed'],
    [{ seed: 2 ** 32 }, 'seed'],
    [{ format: 'zip' as never }, 'format'],
    [{ writer: 'arrow' as never }, 'writer'],
    [{ augment: { views: 65 } }, 'augment.views'],
    [{ augment: { policy: 'mnist' as never } }, 'augment.policy'],
    [{ augment: { frames: 2 } as never }, 'frames'],
    [{ translate: { engine: 'google' as never } }, 'engine'],
    [{ translate: { engine: 'http' } }, 'httpUrl'],
    [{ bucketBytes: 0 }, 'bucketBytes'],
    [{ shuffle: true } as never, 'shuffle'],
  ];
  for (const [given, field] of cases) {
    assert.throws(
      () => resolveShardRunOptions({ input: 'x', ...given }),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field,
      JSON.stringify(given),
    );
  }
});

test('a rerun with another seed on a committed output is a resume mismatch', async () => {
  const out = path.join(tmp, 'mismatch');
  await runShard({ ...quiet, input, output: out, samplesPerShard: 50, seed: 1 });
  await assert.rejects(
    runShard({ ...quiet, input, output: out, samplesPerShard: 50, seed: 2 }),
    (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_RESUME_MISMATCH' && e.field === 'seed',
  );
  // --overwrite starts again with the new seed.
  await runShard({ ...quiet, input, output: out, samplesPerShard: 50, seed: 2, overwrite: true });
  assert.equal((await readAll(out)).rows.length, N);
});

test('defaults: 10,000 samples per shard, Parquet, seed 0, no views, Apertium', () => {
  const o = resolveShardRunOptions({ input: 'x' });
  assert.equal(o.samplesPerShard, 10_000);
  assert.equal(o.format, 'parquet');
  assert.equal(o.seed, 0);
  assert.equal(o.augment.views, 0);
  assert.equal(o.translate.engine, 'apertium');
});

test('the trainer\'s stream reads ingest/filter shards (no back_translations column) as empty lists, shard output with its back-translations', async () => {
  // The input folder is an ingest output: its shards have no back_translations and no view columns.
  const seen = new Map<string, { caption: string; bt: unknown; views: number; image: Buffer }>();
  for await (const s of await openShardStream(input, { shuffleShards: false })) {
    seen.set(s.key, { caption: s.caption, bt: s.backTranslations, views: s.views.length, image: s.image });
  }
  assert.equal(seen.size, N);
  for (const [key, s] of seen) {
    assert.deepEqual(s.bt, [], `${key}: no back-translations`);
    assert.equal(s.views, 0, `${key}: no views`);
    assert.equal(s.caption, inputCaptions.get(key));
    assert.ok(s.image.equals(inputImages.get(key)!), `${key}: image`);
  }
  // A caption-only read of the same folder works too (what a tokenizer trainer asks for).
  let n = 0;
  for await (const s of await openShardStream(input, { columns: ['caption', 'backTranslations'] })) n += s.backTranslations.length === 0 ? 1 : 0;
  assert.equal(n, N);

  // A shard output: the stream gives the stored back-translations, as hyparquet reads them.
  const src = path.join(tmp, 'input-stream');
  await makeInput(src, 3);
  const out = path.join(tmp, 'stream-out');
  await runShard({ input: src, output: out, progress: 'none', translate: { engine: 'apertium', pivots: ['spa'], cacheDir: null } });
  const stored = new Map((await readAll(out)).rows.map((r) => [String(r.key), JSON.parse(String(r.back_translations))]));
  let read = 0;
  for await (const s of await openShardStream(out, { columns: ['caption', 'backTranslations'] })) {
    read++;
    assert.deepEqual(s.backTranslations, stored.get(s.key), s.key);
    assert.deepEqual(s.backTranslations.map((t) => [t.pivot, t.engine]), [['spa', 'apertium']]);
    assert.match(s.backTranslations[0]!.text, /house|home/i);
  }
  assert.equal(read, 3);
});

// ---- kill -9 and rerun, with the real CLI ----

function cliArgs(src: string, out: string): string[] {
  // A small scatter buffer makes the scatter checkpoint every few rows, so a kill there resumes mid-way.
  return [CLI, 'shard', src, '-o', out, '--samples-per-shard', '10', '--seed', '9', '--augment-views', '1', '--translate', 'none', '--bucket-mb', '0.05', '--scatter-buffer-mb', '0.02', '--progress', 'log'];
}


async function countStats(dir: string): Promise<number> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('_stats.json')).length;
}

async function scatterProgress(dir: string): Promise<{ done: boolean; inputEnd: number } | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dir, '_shuffle.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

test('SIGKILL in the scatter and in the shard writing, then the same command: the uninterrupted output', async () => {
  const src = path.join(tmp, 'input-kill');
  await makeInput(src, 200, { shardSize: 50, size: 96 });
  const clean = path.join(tmp, 'kill-clean');
  await runCli(cliArgs(src, clean));
  const expected = await readAll(clean);
  assert.equal(expected.rows.length, 200);

  // 1. Killed while scattering: after a checkpoint, before the scatter is done.
  const killed = path.join(tmp, 'kill-resumed');
  await killWhen(cliArgs(src, killed), async () => {
    const p = await scatterProgress(killed);
    return p !== undefined && p.inputEnd >= 40;
  });
  const mid = await scatterProgress(killed);
  assert.ok(mid && !mid.done && mid.inputEnd < 200, `killed mid-scatter (${JSON.stringify(mid && { done: mid.done, inputEnd: mid.inputEnd })})`);
  assert.equal(await countStats(killed), 0);

  // 2. Resumed, and killed again once a few shards are committed.
  await killWhen(cliArgs(src, killed), async () => (await countStats(killed)) >= 3);
  const partial = await countStats(killed);
  assert.ok(partial >= 3 && partial < expected.shards.length, `killed while writing shards (${partial} of ${expected.shards.length})`);

  // 3. Finished by the same command.
  await runCli(cliArgs(src, killed));
  const resumed = await readAll(killed);
  const keys = resumed.rows.map((r) => String(r.key));
  assert.equal(new Set(keys).size, keys.length, 'no key twice');
  assert.deepEqual(resumed.shards, expected.shards, 'same shard files');
  assert.deepEqual([...resumed.perShard], [...expected.perShard], 'same keys in the same shards in the same order');
  for (let i = 0; i < keys.length; i++) {
    for (const col of ['image', 'view_0']) {
      assert.ok(Buffer.from(resumed.rows[i]![col] as Uint8Array).equals(Buffer.from(expected.rows[i]![col] as Uint8Array)), `${keys[i]} ${col}`);
    }
  }
  for (const f of ['sizes.json', 'dataset_card.json', 'dataset_card.md']) {
    assert.equal(await fs.readFile(path.join(killed, f), 'utf8'), await fs.readFile(path.join(clean, f), 'utf8'), f);
  }
  const names = await fs.readdir(killed);
  assert.deepEqual(names.filter((n) => n.endsWith('.tmp') || n === '.work'), []);
});

test('the CLI: errors come out with their code; --pivots takes a comma list', async () => {
  const { spawnSync } = await import('node:child_process');
  const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: tmp, timeout: 120_000 });
  const cases: [string[], string, RegExp][] = [
    [['shard', 'no-such-folder', '-o', 'x1'], 'FILIP_ERR_NO_INPUT', /no-such-folder/],
    [['shard', input, '-o', 'x2', '--samples-per-shard', '0'], 'FILIP_ERR_INVALID_OPTION', /--samples-per-shard/],
    [['shard', input, '-o', 'x3', '--pivots', 'spa,xx'], 'FILIP_ERR_INVALID_OPTION', /pivots/],
    [['shard', input, '-o', 'x4', '--translate', 'marian'], 'FILIP_ERR_INVALID_OPTION', /--marian-dir/],
    [['shard', input, '-o', 'x5', '--translate', 'marian', '--marian-dir', 'no-models-here'], 'FILIP_ERR_MODEL_FILES', /opus-mt-en-de/],
  ];
  for (const [args, code, detail] of cases) {
    const r = cli(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.includes(code), `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, detail);
  }
  const src = path.join(tmp, 'input-cli');
  await makeInput(src, 5);
  const r = cli('shard', src, '-o', 'cli-out', '--pivots', 'spa,cat', '--samples-per-shard', '2', '--progress', 'none');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /5 samples in 3 parquet shard\(s\)/);
  assert.match(r.stdout, /back-translations: spa 5, cat 5/);
  const { rows } = await readAll(path.join(tmp, 'cli-out'));
  for (const row of rows) assert.deepEqual(JSON.parse(String(row.back_translations)).map((t: { pivot: string }) => t.pivot), ['spa', 'cat']);
});

test('--translate http through a real apertium-apy server; an unreachable server keeps every row with its failure', async () => {
  const src = path.join(tmp, 'input-http');
  await makeInput(src, 4);
  const apy = await startApy();
  try {
    const out = path.join(tmp, 'http-out');
    await runCli([CLI, 'shard', src, '-o', out, '--translate', 'http', '--translate-url', apy.baseUrl, '--translate-flavour', 'apertium-apy', '--pivots', 'spa', '--progress', 'none']);
    const { rows } = await readAll(out);
    assert.equal(rows.length, 4);
    for (const r of rows) {
      const [t] = JSON.parse(String(r.back_translations)) as { pivot: string; engine: string; text: string }[];
      assert.equal(t?.pivot, 'spa');
      assert.match(t!.text, /house/i, `${r.caption} -> ${t!.text}`);
    }
  } finally {
    await apy.stop();
  }
  // A closed port: every back-translation fails, every row is kept with its caption and the reason.
  const { createServer } = await import('node:net');
  const port = await new Promise<number>((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as { port: number }).port;
      srv.close(() => resolve(p));
    });
  });
  const out = path.join(tmp, 'http-down');
  const summary = await runShard({
    input: src,
    output: out,
    progress: 'none',
    translate: { engine: 'http', httpUrl: `http://127.0.0.1:${port}`, httpFlavour: 'apertium-apy', pivots: ['spa'], httpRetries: 0, cacheDir: null },
  });
  const { rows } = await readAll(out);
  assert.equal(rows.length, 4, 'no row dropped');
  for (const r of rows) {
    assert.equal(r.back_translations, '[]');
    const [f] = JSON.parse(String(r.translation_failures)) as { pivot: string; engine: string; reason: string; message: string }[];
    assert.deepEqual([f?.pivot, f?.reason], ['spa', 'translation_failed']);
    assert.ok(f!.message.length > 0);
  }
  assert.deepEqual(summary.counts.translationFailures, { spa: { translation_failed: 4 } });
  assert.match(await fs.readFile(path.join(out, 'dataset_card.md'), 'utf8'), /failed back-translations via spa \(translation_failed; row kept\) \| 4 \|/);
  // Every translation failed: the stage says so, and the command fails after writing the output.
  const failed = translationError(summary);
  assert.ok(failed instanceof FilipError && failed.code === 'FILIP_ERR_TRANSLATOR');
  assert.match(failed.message, /every back-translation of this run failed \(4 of 4; the first: spa: .+\).*4 rows are written/);
  const viaCli = spawnSync(process.execPath, [CLI, 'shard', src, '-o', path.join(tmp, 'http-down-cli'), '--translate', 'http', '--translate-url', `http://127.0.0.1:${port}`,
    '--translate-flavour', 'apertium-apy', '--pivots', 'spa', '--progress', 'none'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(viaCli.status, 2, viaCli.stderr);
  assert.match(viaCli.stdout, /failed back-translations \(rows kept\): spa 4/, 'the summary is printed first');
  assert.match(viaCli.stderr, /FILIP_ERR_TRANSLATOR: .*every back-translation of this run failed \(4 of 4/);
  assert.equal((await readAll(path.join(tmp, 'http-down-cli'))).rows.length, 4, 'the rows are written');
  // Some translations failing is a per-row outcome, not an error of the run.
  assert.equal(translationError({ ...summary, translation: { ...summary.translation!, translated: 1 } }), undefined);
});
