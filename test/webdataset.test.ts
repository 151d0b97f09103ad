// WebDataset shards: our ustar writer is read by the system `tar` and by Python's tarfile in stream
// mode (what the webdataset package uses under open_clip) byte for byte; `shard --format webdataset`
// writes KEY.jpg / KEY.txt / KEY.json / KEY.view0.jpg members grouped by key, the same images, views and
// captions as the Parquet format, and sizes.json counts the tar samples; a SIGKILL in either phase
// followed by the same command gives the tars of an uninterrupted run; and the trainer's stream reads an
// img2dataset-style tar (no back_translations in KEY.json) with empty back-translation lists.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { makeKey } from '../src/core/sample.js';
import { openShardStream } from '../src/data/index.js';
import { openOutput, ShardSink, writeSummary } from '../src/pipeline/output.js';
import { runShard } from '../src/pipeline/shard-run.js';
import { tarHeader, TarWriter } from '../src/shard/webdataset.js';
import { noiseJpeg, seededRandom } from './helpers/images.js';
import { readShardFile } from './helpers/read.js';
import { killWhen, runCli } from './helpers/cli.js';
import { trainTokenizer } from '../src/train/bpe-train.js';

let tmp: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-wds-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function randomBytes(n: number, seed: number): Buffer {
  const rand = seededRandom(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Members listed by Python's tarfile reading the archive as a stream, as webdataset does. */
function pythonMembers(file: string): { name: string; size: number; sha: string }[] {
  const script = [
    'import sys, tarfile, hashlib, json',
    'out = []',
    "with tarfile.open(sys.argv[1], mode='r|') as t:",
    '    for m in t:',
    '        data = t.extractfile(m).read()',
    "        out.append({'name': m.name, 'size': m.size, 'sha': hashlib.sha256(data).hexdigest()})",
    'print(json.dumps(out))',
  ].join('\n');
  return JSON.parse(execFileSync('python3', ['-c', script, file], { encoding: 'utf8' }));
}

test('TarWriter: the system tar and Python read back every member byte for byte', async () => {
  const file = path.join(tmp, 'a.tar');
  const w = await TarWriter.open(file);
  // Sizes around the 512-byte block edges, an empty member, a large one and a 100-byte name.
  // Over 4 MiB in all, so batches are written while later members are still being added.
  const sizes = [0, 1, 511, 512, 513, 1024, 3000, 1 << 20, 3 << 20, 3 << 20, 5, 3 << 20];
  const members = sizes.map((n, i) => ({ name: `${makeKey(0, i)}.bin${i}`, data: randomBytes(n, i + 1) }));
  members.push({ name: `${'n'.repeat(96)}.txt`, data: Buffer.from('longest name\n') });
  members.push({ name: 'café-ü.txt', data: Buffer.from('utf-8 name') });
  for (const m of members) await w.add(m.name, m.data);
  const { bytes, members: count } = await w.close();
  assert.equal(count, members.length);
  const stat = await fs.stat(file);
  assert.equal(stat.size, bytes);
  assert.equal(stat.size % 10240, 0, 'padded to a whole tar record');

  const listing = execFileSync('tar', ['-tf', file], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listing, members.map((m) => m.name), 'tar lists every member in order');
  const dir = path.join(tmp, 'a');
  await fs.mkdir(dir);
  execFileSync('tar', ['-xf', file, '-C', dir]);
  for (const m of members) assert.ok((await fs.readFile(path.join(dir, m.name))).equals(m.data), m.name);

  const py = pythonMembers(file);
  assert.deepEqual(
    py.map((m) => [m.name, m.size]),
    members.map((m) => [m.name, m.data.length]),
  );
  const { createHash } = await import('node:crypto');
  py.forEach((m, i) => assert.equal(m.sha, createHash('sha256').update(members[i]!.data).digest('hex'), m.name));
});

test('tar headers: POSIX checksum, octal fields, ustar magic', () => {
  const h = tarHeader('0000000000042.jpg', 1234, 1_700_000_000);
  assert.equal(h.length, 512);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  assert.equal(parseInt(h.subarray(148, 154).toString('ascii'), 8), sum, 'checksum over the header with its field as spaces');
  assert.equal(parseInt(h.subarray(124, 135).toString('ascii'), 8), 1234);
  assert.equal(parseInt(h.subarray(136, 147).toString('ascii'), 8), 1_700_000_000);
  assert.equal(h.subarray(257, 263).toString('latin1'), 'ustar\0');
  assert.equal(h.subarray(263, 265).toString('latin1'), '00');
  assert.equal(String.fromCharCode(h[156]!), '0', 'regular file');
});

test('bad names and misuse fail with FILIP_ERR_SHARD; abort removes the file', async () => {
  for (const name of ['', 'x'.repeat(101), 'é'.repeat(51)]) {
    assert.throws(() => tarHeader(name, 1), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_SHARD', JSON.stringify(name));
  }
  const file = path.join(tmp, 'b.tar');
  const w = await TarWriter.open(file);
  await w.add('a.txt', Buffer.from('a'));
  await assert.rejects(w.add('y'.repeat(200), Buffer.from('b')), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_SHARD');
  await w.abort();
  await assert.rejects(fs.stat(file), { code: 'ENOENT' });
  await assert.rejects(w.add('c.txt', Buffer.from('c')), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_SHARD');
  const closed = await TarWriter.open(path.join(tmp, 'c.tar'));
  await closed.close();
  await assert.rejects(closed.close(), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_SHARD');
});

test('shard --format webdataset: img2dataset members, grouped by key, same content as Parquet', async () => {
  const input = path.join(tmp, 'input');
  const state = await openOutput(input, 'filip-data ingest', { test: true }, true, []);
  const sink = new ShardSink({ dir: input, shardSize: 20, engine: 'lean', keepCols: ['license'], kind: 'ingest' }, state);
  const images = new Map<string, Buffer>();
  for (let i = 0; i < 45; i++) {
    const key = makeKey(1, i);
    const bytes = await noiseJpeg(900 + i, 40, 32);
    images.set(key, bytes);
    await sink.write({
      key,
      index: i,
      url: `http://127.0.0.1/${i}.jpg`,
      caption: `caption ${i} with "quotes" and ünïcode`,
      source: { file: 'm.tsv', row: i },
      extra: { license: `L${i}` },
      status: 'ok',
      image: { bytes, format: 'jpeg', width: 40, height: 32, originalWidth: 400, originalHeight: 320, sha256: 'cd'.repeat(32), phash: '0123456789abcdef' },
    });
  }
  await sink.close();
  await writeSummary(input, { test: true }); // a finished run
  const common = { input, progress: 'none' as const, samplesPerShard: 16, seed: 4, augment: { views: 1 }, translate: { engine: 'none' as const } };
  const wds = path.join(tmp, 'wds');
  const pq = path.join(tmp, 'pq');
  await runShard({ ...common, output: wds, format: 'webdataset' });
  await runShard({ ...common, output: pq, format: 'parquet' });

  const sizes = JSON.parse(await fs.readFile(path.join(wds, 'sizes.json'), 'utf8')) as Record<string, number>;
  assert.deepEqual(sizes, { '00000.tar': 16, '00001.tar': 16, '00002.tar': 13 });
  const pqRows = new Map<string, Record<string, unknown>>();
  const pqOrder: string[] = [];
  for (const f of ['00000.parquet', '00001.parquet', '00002.parquet']) {
    for (const r of await readShardFile(path.join(pq, f))) {
      pqRows.set(String(r.key), r);
      pqOrder.push(String(r.key));
    }
  }
  const tarOrder: string[] = [];
  for (const [file, count] of Object.entries(sizes)) {
    const tarFile = path.join(wds, file);
    const names = execFileSync('tar', ['-tf', tarFile], { encoding: 'utf8' }).trim().split('\n');
    // webdataset groups consecutive members by the name up to the first dot.
    const keys: string[] = [];
    for (const n of names) {
      const key = n.slice(0, n.indexOf('.'));
      if (keys.at(-1) !== key) keys.push(key);
    }
    assert.equal(keys.length, count, `${file}: sizes.json counts its samples`);
    assert.equal(new Set(keys).size, keys.length, `${file}: each sample's members are consecutive`);
    tarOrder.push(...keys);
    const dir = path.join(tmp, `x-${file}`);
    await fs.mkdir(dir);
    execFileSync('tar', ['-xf', tarFile, '-C', dir]);
    for (const key of keys) {
      assert.deepEqual(names.filter((n) => n.startsWith(`${key}.`)), [`${key}.jpg`, `${key}.txt`, `${key}.json`, `${key}.view0.jpg`]);
      const row = pqRows.get(key)!;
      assert.ok((await fs.readFile(path.join(dir, `${key}.jpg`))).equals(images.get(key)!), `${key}.jpg is the stored image`);
      assert.ok((await fs.readFile(path.join(dir, `${key}.view0.jpg`))).equals(Buffer.from(row.view_0 as Uint8Array)), `${key} view as in Parquet`);
      assert.equal(await fs.readFile(path.join(dir, `${key}.txt`), 'utf8'), row.caption);
      const json = JSON.parse(await fs.readFile(path.join(dir, `${key}.json`), 'utf8'));
      for (const col of ['key', 'url', 'caption', 'width', 'height', 'original_width', 'original_height', 'sha256', 'phash', 'source', 'extra_license']) {
        assert.equal(json[col], row[col], `${key}.json ${col}`);
      }
      assert.equal(json.image_format, 'jpeg');
      assert.deepEqual(json.back_translations, []);
      assert.deepEqual(json.translation_failures, []);
    }
  }
  assert.deepEqual(tarOrder, pqOrder, 'both formats hold the same shuffled order');
  const card = JSON.parse(await fs.readFile(path.join(wds, 'dataset_card.json'), 'utf8'));
  assert.equal(card.format, 'webdataset');
  assert.ok(card.schema.some((s: { name: string }) => s.name === 'KEY.view0.jpg' || s.name === 'KEY.viewN.jpg'));

  // The trainer's tokenizer learns from either format alike (it read only Parquet).
  const fromTar = await trainTokenizer({ shards: wds, out: path.join(tmp, 'tok-wds.txt'), vocabSize: 700 });
  const fromParquet = await trainTokenizer({ shards: pq, out: path.join(tmp, 'tok-pq.txt'), vocabSize: 700 });
  assert.deepEqual([fromTar.files, fromTar.rows], [3, 45]);
  assert.deepEqual(fromTar.merges, fromParquet.merges);
  assert.ok(fromTar.merges.length > 0);
});

// ---- kill -9 and rerun, with the real CLI ----

const CLI = path.resolve('bin/filip-data.js');

/** An ingest-like output folder of `n` rows, written with the real ShardSink. */
async function makeInput(dir: string, n: number, shardSize: number, size: number): Promise<void> {
  const state = await openOutput(dir, 'filip-data ingest', { test: true }, true, []);
  const sink = new ShardSink({ dir, shardSize, engine: 'lean', keepCols: [], kind: 'ingest' }, state);
  for (let i = 0; i < n; i++) {
    await sink.write({
      key: makeKey(0, i),
      index: i,
      url: `http://127.0.0.1/img/${i}.jpg`,
      caption: `a small red house number ${i}`,
      source: { file: 'manifest.tsv', row: i },
      extra: {},
      status: 'ok',
      image: { bytes: await noiseJpeg(3000 + i, size, size), format: 'jpeg', width: size, height: size, originalWidth: 400, originalHeight: 300, sha256: 'ef'.repeat(32), phash: '0123456789abcdef' },
    });
  }
  await sink.close();
  await writeSummary(dir, { test: true }); // a finished run
}

function cliArgs(src: string, out: string): string[] {
  // Small buckets and scatter buffer: the scatter checkpoints every few rows, so a kill there resumes mid-way.
  return [CLI, 'shard', src, '-o', out, '--format', 'webdataset', '--samples-per-shard', '10', '--seed', '9', '--augment-views', '1', '--translate', 'none', '--bucket-mb', '0.05', '--scatter-buffer-mb', '0.02', '--progress', 'log'];
}


async function names(dir: string): Promise<string[]> {
  return (await fs.readdir(dir).catch(() => [] as string[])).sort();
}

async function countStats(dir: string): Promise<number> {
  return (await names(dir)).filter((n) => n.endsWith('_stats.json')).length;
}

async function scatterProgress(dir: string): Promise<{ done: boolean; inputEnd: number } | undefined> {
  try {
    return JSON.parse(await fs.readFile(path.join(dir, '_shuffle.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** Every tar shard of a folder as the system tar sees it: member names in order, and each member's bytes. */
async function tarContents(dir: string, into: string): Promise<Map<string, { members: string[]; data: Map<string, Buffer> }>> {
  const out = new Map<string, { members: string[]; data: Map<string, Buffer> }>();
  for (const file of (await names(dir)).filter((n) => /^\d{5}\.tar$/.test(n))) {
    const members = execFileSync('tar', ['-tf', path.join(dir, file)], { encoding: 'utf8' }).trim().split('\n');
    const x = path.join(into, file);
    await fs.mkdir(x, { recursive: true });
    execFileSync('tar', ['-xf', path.join(dir, file), '-C', x]);
    const data = new Map<string, Buffer>();
    for (const m of members) data.set(m, await fs.readFile(path.join(x, m)));
    out.set(file, { members, data });
  }
  return out;
}

test('SIGKILL in the scatter and in the tar writing, then the same command: the tars of an uninterrupted run', async (t) => {
  const src = path.join(tmp, 'input-kill');
  await makeInput(src, 200, 50, 96);
  const clean = path.join(tmp, 'kill-clean');
  await runCli(cliArgs(src, clean));
  const expected = await tarContents(clean, path.join(tmp, 'x-clean'));
  assert.equal(expected.size, 20, '200 samples in tars of 10');

  // 1. Killed while scattering: after a checkpoint, before the scatter is done.
  const killed = path.join(tmp, 'kill-resumed');
  await killWhen(cliArgs(src, killed), async () => {
    const p = await scatterProgress(killed);
    return p !== undefined && p.inputEnd >= 40;
  });
  const mid = await scatterProgress(killed);
  assert.ok(mid && !mid.done && mid.inputEnd < 200, `killed mid-scatter (${JSON.stringify(mid && { done: mid.done, inputEnd: mid.inputEnd })})`);
  assert.equal(await countStats(killed), 0);

  // 2. Resumed, and killed again once a few tars are committed, preferably while the next one is being
  // written (a .NNNNN.tar.tmp on disk).
  await killWhen(cliArgs(src, killed), async () => {
    const n = await names(killed);
    const stats = n.filter((x) => x.endsWith('_stats.json')).length;
    return (stats >= 3 && n.some((x) => /^\.\d{5}\.tar\.tmp$/.test(x))) || stats >= 8;
  });
  const partial = await countStats(killed);
  assert.ok(partial >= 3 && partial < expected.size, `killed while writing tars (${partial} of ${expected.size})`);
  const leftAfterKill = (await names(killed)).filter((x) => x.endsWith('.tmp'));
  t.diagnostic(`second kill after ${partial} committed tars; temporary files left by it: ${leftAfterKill.join(', ') || 'none'}`);

  // 3. Finished by the same command.
  await runCli(cliArgs(src, killed));
  const resumed = await tarContents(killed, path.join(tmp, 'x-resumed'));
  assert.deepEqual([...resumed.keys()], [...expected.keys()], 'same tar files');
  const keys = new Set<string>();
  for (const [file, want] of expected) {
    const got = resumed.get(file)!;
    assert.deepEqual(got.members, want.members, `${file}: same members in the same order`);
    for (const m of want.members) assert.ok(got.data.get(m)!.equals(want.data.get(m)!), `${file}: ${m} byte for byte`);
    for (const m of got.members) keys.add(m.slice(0, m.indexOf('.')));
    assert.ok((await fs.readFile(path.join(killed, file))).equals(await fs.readFile(path.join(clean, file))), `${file}: the whole archive is identical`);
  }
  assert.equal(keys.size, 200, 'every input row once');
  for (const f of ['sizes.json', 'dataset_card.json', 'dataset_card.md']) {
    assert.equal(await fs.readFile(path.join(killed, f), 'utf8'), await fs.readFile(path.join(clean, f), 'utf8'), f);
  }
  const left = (await names(killed)).filter((n) => n.endsWith('.tmp') || n === '.work');
  assert.deepEqual(left, [], `no temporary files or work folder left (after the kill: ${leftAfterKill.join(', ') || 'none'})`);
});

test('the trainer\'s stream reads an img2dataset-style tar: KEY.json without back_translations gives an empty list', async () => {
  const dir = path.join(tmp, 'img2dataset');
  await fs.mkdir(dir);
  const images: Buffer[] = [];
  const w = await TarWriter.open(path.join(dir, '00000.tar'));
  for (let i = 0; i < 4; i++) {
    const key = String(i).padStart(9, '0'); // img2dataset's keys: shard and row, 9 digits
    images.push(await noiseJpeg(4000 + i, 40, 30));
    await w.add(`${key}.jpg`, images[i]!);
    await w.add(`${key}.txt`, Buffer.from(`a caption ${i}`));
    const meta = { url: `http://x/${i}.jpg`, caption: `a caption ${i}`, key, status: 'success', error_message: null, width: 40, height: 30, original_width: 400, original_height: 300, exif: '{}', sha256: 'ab'.repeat(32) };
    await w.add(`${key}.json`, Buffer.from(JSON.stringify(meta)));
  }
  await w.close();
  const got: { key: string; caption: string; bt: unknown; views: number; image: Buffer; size: [number, number]; format: string }[] = [];
  for await (const s of await openShardStream(dir, { shuffleShards: false })) {
    got.push({ key: s.key, caption: s.caption, bt: s.backTranslations, views: s.views.length, image: s.image, size: [s.width, s.height], format: s.imageFormat });
  }
  assert.deepEqual(got.map((g) => g.key), ['000000000', '000000001', '000000002', '000000003']);
  got.forEach((g, i) => {
    assert.deepEqual(g.bt, [], `${g.key}: no back-translations`);
    assert.equal(g.views, 0);
    assert.equal(g.caption, `a caption ${i}`);
    assert.ok(g.image.equals(images[i]!));
    assert.deepEqual(g.size, [40, 30]);
    assert.equal(g.format, 'jpeg');
  });
});
