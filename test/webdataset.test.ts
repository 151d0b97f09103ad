// WebDataset shards: our ustar writer is read by the system `tar` and by Python's tarfile in stream
// mode (what the webdataset package uses under open_clip) byte for byte; `shard --format webdataset`
// writes KEY.jpg / KEY.txt / KEY.json / KEY.view0.jpg members grouped by key, the same images, views and
// captions as the Parquet format, and sizes.json counts the tar samples.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { makeKey } from '../src/core/sample.js';
import { openOutput, ShardSink } from '../src/pipeline/output.js';
import { runShard } from '../src/pipeline/shard-run.js';
import { tarHeader, TarWriter } from '../src/shard/webdataset.js';
import { noiseJpeg, seededRandom } from './helpers/images.js';
import { readShardFile } from './helpers/read.js';

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
  const state = await openOutput(input, 'filip-data ingest', { test: true }, true);
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
});
