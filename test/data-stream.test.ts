// The trainer's shard stream (src/data): real training shards (Parquet by the lean writer, WebDataset .tar by
// TarWriter) holding real JPEGs, read back in seeded, worker-split, resumable order.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FilipError } from '../src/core/errors.js';
import type { Sample } from '../src/core/sample.js';
import { openShardStream, SIZES_FILE, type ShardStream, type ShardStreamInput, type StreamPosition } from '../src/data/index.js';
import { sampleToTrainingRow, shardName, trainingShardColumns, type ShardRow } from '../src/shard/schema.js';
import { TarWriter, webdatasetMembers } from '../src/shard/webdataset.js';
import { openShardWriter } from '../src/shard/writer.js';
import { noiseJpeg } from './helpers/images.js';

const ROWS = [7, 5, 9]; // three shards, 21 samples
const TOTAL = 21;
const GROUP = 3; // rows per row group
const VIEWS = 2;
const [W, H] = [256, 192]; // about 8 KB a JPEG: shards are mostly image bytes, as real ones are

interface Expected {
  caption: string;
  backTranslations: { pivot: string; engine: string; text: string }[];
  image: Buffer;
  views: Buffer[];
}

let root: string;
let dir: string; // Parquet shards, with sizes.json
let tarDir: string; // the same samples in WebDataset .tar shards
const expected = new Map<string, Expected>();

function trainingSample(n: number, image: Buffer, views: Buffer[]): Sample {
  return {
    key: `0000${String(n).padStart(9, '0')}`,
    index: n,
    url: `http://127.0.0.1/${n}.jpg`,
    caption: `a photo number ${n}`,
    source: { file: 'm.csv', row: n },
    extra: {},
    status: 'ok',
    image: { bytes: image, format: 'jpeg', width: W, height: H, originalWidth: W, originalHeight: H, sha256: 'ab'.repeat(32), phash: '0'.repeat(16) },
    backTranslations: n % 3 === 0 ? [] : [{ pivot: 'spa', engine: 'apertium', text: `a photo number ${n}, in Spanish and back` }],
    translationFailures: [],
    views,
  };
}

async function makeSample(n: number): Promise<Sample> {
  return trainingSample(n, await noiseJpeg(n, W, H), [await noiseJpeg(1000 + n, W, H), await noiseJpeg(2000 + n, W, H)]);
}

/**
 * Writes training shards of the given sizes in a format, as the shard command does (with sizes.json
 * unless told not to). `edit` may change a Parquet row, or the members of a tar sample, before writing.
 */
async function writeShards(
  into: string,
  counts: readonly number[],
  opts: {
    format?: 'parquet' | 'tar';
    sizes?: boolean;
    edit?: (row: ShardRow, shard: number, i: number) => void;
    editTar?: (members: { name: string; data: Uint8Array }[], shard: number, i: number) => void;
    record?: boolean;
  } = {},
): Promise<void> {
  await fs.mkdir(into, { recursive: true });
  const format = opts.format ?? 'parquet';
  const sizes: Record<string, number> = {};
  let n = 0;
  for (let s = 0; s < counts.length; s++) {
    const name = shardName(s, format);
    const file = path.join(into, name);
    const parquet = format === 'parquet' ? await openShardWriter(file, trainingShardColumns([], VIEWS), 'lean', { rowGroupSize: GROUP }) : undefined;
    const tar = format === 'tar' ? await TarWriter.open(file) : undefined;
    for (let i = 0; i < counts[s]!; i++) {
      const sample = await makeSample(n++);
      if (opts.record) {
        expected.set(sample.key, { caption: sample.caption, backTranslations: [...sample.backTranslations!], image: sample.image!.bytes, views: sample.views! });
      }
      if (parquet) {
        const row = sampleToTrainingRow(sample, [], VIEWS);
        opts.edit?.(row, s, i);
        await parquet.write(row);
      } else {
        const members = webdatasetMembers(sample, [], VIEWS);
        opts.editTar?.(members, s, i);
        for (const m of members) await tar!.add(m.name, m.data);
      }
    }
    if (parquet) await parquet.close();
    else await tar!.close();
    sizes[name] = counts[s]!;
  }
  if (opts.sizes !== false) await fs.writeFile(path.join(into, SIZES_FILE), JSON.stringify(sizes));
}

async function take(stream: ShardStream, n = Infinity): Promise<{ keys: string[]; positions: StreamPosition[] }> {
  const keys: string[] = [];
  const positions: StreamPosition[] = [];
  if (n <= 0) return { keys, positions };
  for await (const s of stream) {
    keys.push(s.key);
    positions.push(stream.position());
    if (keys.length >= n) break;
  }
  return { keys, positions };
}

async function keysOf(input: ShardStreamInput, n = Infinity, from = dir): Promise<string[]> {
  return (await take(await openShardStream(from, input), n)).keys;
}

const sorted = (keys: string[]) => [...keys].sort();

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-data-stream-'));
  dir = path.join(root, 'shards');
  await writeShards(dir, ROWS, { record: true });
  tarDir = path.join(root, 'tar');
  await writeShards(tarDir, ROWS, { format: 'tar' });
});

after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

describe('one epoch', () => {
  test('yields every sample exactly once, with what was written', async () => {
    for (const bufferSize of [0, 4, 50]) {
      for (const shuffleShards of [true, false]) {
        for (const epoch of [0, 3]) {
          const keys = await keysOf({ bufferSize, shuffleShards, epoch, seed: 7 });
          assert.deepEqual(sorted(keys), sorted([...expected.keys()]), `bufferSize ${bufferSize}, shuffleShards ${shuffleShards}, epoch ${epoch}`);
        }
      }
    }
    const stream = await openShardStream(dir, { bufferSize: 4 });
    let n = 0;
    for await (const s of stream) {
      const want = expected.get(s.key)!;
      assert.equal(s.caption, want.caption);
      assert.deepEqual(s.backTranslations, want.backTranslations);
      assert.ok(s.image.equals(want.image), `image of ${s.key}`);
      assert.equal(s.imageFormat, 'jpeg');
      assert.deepEqual([s.width, s.height], [W, H]);
      assert.equal(s.views.length, VIEWS);
      for (let v = 0; v < VIEWS; v++) assert.ok(s.views[v]!.equals(want.views[v]!), `view ${v} of ${s.key}`);
      assert.match(s.shard, /^\d{5}\.parquet$/);
      n++;
    }
    assert.equal(n, TOTAL);
    assert.deepEqual(stream.position(), { epoch: 0, consumed: TOTAL });
    assert.equal(stream.epochSize(0), TOTAL);
  });

  test('the same seed and epoch give the same order; another epoch or seed another order', async () => {
    const base = { bufferSize: 6, shuffleShards: true };
    const a = await keysOf({ ...base, seed: 1, epoch: 0 });
    assert.deepEqual(await keysOf({ ...base, seed: 1, epoch: 0 }), a);
    assert.notDeepEqual(await keysOf({ ...base, seed: 1, epoch: 1 }), a);
    assert.notDeepEqual(await keysOf({ ...base, seed: 2, epoch: 0 }), a);
    // Shard order alone also changes with the epoch (with 3 shards, some of epochs 0..5 must differ).
    const orders = new Set<string>();
    for (let epoch = 0; epoch < 6; epoch++) orders.add((await keysOf({ epoch, bufferSize: 0 }))[0]!);
    assert.ok(orders.size > 1, 'shard order changes across epochs');
  });

  test('the buffer mixes samples across shards', async () => {
    const shardOf = (key: string) => {
      const n = Number(key.slice(4));
      return n < 7 ? 0 : n < 12 ? 1 : 2;
    };
    const switches = (keys: string[]) => keys.slice(1).filter((k, i) => shardOf(k) !== shardOf(keys[i]!)).length;
    const plain = await keysOf({ shuffleShards: false, bufferSize: 0 });
    assert.equal(switches(plain), 2, 'without a buffer, shards come one after another');
    const mixed = await keysOf({ shuffleShards: false, bufferSize: 10, seed: 3 });
    assert.ok(switches(mixed) >= 6, `with a buffer of 10, shards interleave (${switches(mixed)} switches)`);
    const firstOfShard1 = mixed.findIndex((k) => shardOf(k) === 1);
    const lastOfShard0 = mixed.length - 1 - [...mixed].reverse().findIndex((k) => shardOf(k) === 0);
    assert.ok(firstOfShard1 < lastOfShard0, 'a sample of shard 1 comes out before shard 0 is done');
    // and rows within a shard are no longer in order
    const rowsOf0 = mixed.filter((k) => shardOf(k) === 0);
    assert.notDeepEqual(rowsOf0, sorted(rowsOf0));
  });

  test('columns: a caption-only stream reads no image bytes', async () => {
    const all = await openShardStream(dir, { shuffleShards: false });
    await take(all);
    const captions = await openShardStream(dir, { shuffleShards: false, columns: ['caption'] });
    let n = 0;
    for await (const s of captions) {
      assert.equal(s.caption, expected.get(s.key)!.caption);
      assert.equal('image' in s, false);
      assert.equal('views' in s, false);
      n++;
    }
    assert.equal(n, TOTAL);
    const imageBytes = [...expected.values()].reduce((a, e) => a + e.image.length + e.views[0]!.length + e.views[1]!.length, 0);
    assert.ok(all.stats().bytesRead > imageBytes, 'the full stream reads the images');
    assert.ok(captions.stats().bytesRead < imageBytes / 4, `caption-only read ${captions.stats().bytesRead} bytes, images are ${imageBytes}`);
  });

  test('reads no further ahead than the buffer and one row group', async () => {
    for (const bufferSize of [0, 4, 10]) {
      const stream = await openShardStream(dir, { bufferSize, loop: true, seed: 4 });
      let consumed = 0;
      for await (const s of stream) {
        void s;
        consumed++;
        assert.ok(stream.stats().rowsRead <= consumed + bufferSize + GROUP, `bufferSize ${bufferSize}: ${stream.stats().rowsRead} rows read for ${consumed} yielded`);
        if (consumed === 2 * TOTAL) break;
      }
    }
  });

  test('a folder without sizes.json is counted from the shard footers', async () => {
    const bare = path.join(root, 'bare');
    await writeShards(bare, [4, 6], { sizes: false });
    const stream = await openShardStream(bare, { bufferSize: 3 });
    assert.deepEqual(stream.shards.map((s) => [s.name, s.rows]), [['00000.parquet', 4], ['00001.parquet', 6]]);
    assert.equal((await take(stream)).keys.length, 10);
  });
});

describe('loop', () => {
  test('epochs follow one another, each a full pass in a new order', async () => {
    const stream = await openShardStream(dir, { loop: true, bufferSize: 5, seed: 9 });
    const { keys, positions } = await take(stream, 3 * TOTAL);
    const epochs = [0, 1, 2].map((e) => keys.slice(e * TOTAL, (e + 1) * TOTAL));
    for (const e of epochs) assert.deepEqual(sorted(e), sorted([...expected.keys()]));
    assert.notDeepEqual(epochs[0], epochs[1]);
    assert.deepEqual(positions[TOTAL - 1], { epoch: 0, consumed: TOTAL });
    assert.deepEqual(positions[TOTAL], { epoch: 1, consumed: 1 });
    assert.deepEqual(positions[3 * TOTAL - 1], { epoch: 2, consumed: TOTAL });
    // epoch 1 of a looping stream is what a stream opened at epoch 1 yields
    assert.deepEqual(epochs[1], await keysOf({ epoch: 1, bufferSize: 5, seed: 9 }));
  });
});

describe('workers', () => {
  test('workers partition every epoch: union is everything, no sample twice (1..5 workers, 3 shards)', async () => {
    for (let workers = 1; workers <= 5; workers++) {
      for (const [epoch, bufferSize] of [[0, 0], [1, 4]] as const) {
        const seen = new Map<string, number>();
        let sizes = 0;
        for (let worker = 0; worker < workers; worker++) {
          const stream = await openShardStream(dir, { workers, worker, epoch, bufferSize, seed: 5 });
          sizes += stream.epochSize(epoch);
          for (const k of (await take(stream)).keys) {
            assert.equal(seen.has(k), false, `${k} went to workers ${seen.get(k)} and ${worker} of ${workers}`);
            seen.set(k, worker);
          }
        }
        assert.deepEqual(sorted([...seen.keys()]), sorted([...expected.keys()]), `${workers} workers, epoch ${epoch}`);
        assert.equal(sizes, TOTAL);
      }
    }
  });
});

describe('resume', () => {
  const configs: ShardStreamInput[] = [
    { bufferSize: 0, seed: 1 },
    { bufferSize: 5, seed: 2 },
    { bufferSize: 30, seed: 3 }, // larger than an epoch
    { bufferSize: 4, seed: 4, workers: 2, worker: 1 },
    { bufferSize: 2, seed: 5, workers: 5, worker: 3 }, // fewer shards than workers: row ranges
    { bufferSize: 3, seed: 6, shuffleShards: false },
  ];

  test('from any position, the stream goes on with exactly what an uninterrupted run yields next', async () => {
    for (const config of configs) {
      const run = await take(await openShardStream(dir, { ...config, loop: true }), 45);
      for (let i = 0; i < run.keys.length; i++) {
        const want = run.keys.slice(i + 1, i + 1 + 12);
        const resumed = await keysOf({ ...config, loop: true, position: run.positions[i]! }, want.length);
        assert.deepEqual(resumed, want, `${JSON.stringify(config)} from ${JSON.stringify(run.positions[i])}`);
      }
      // from the very start, too
      assert.deepEqual(await keysOf({ ...config, loop: true, position: { epoch: 0, consumed: 0 } }, 10), run.keys.slice(0, 10));
    }
  });

  test('without loop, a resumed epoch ends where the epoch ends', async () => {
    const full = await keysOf({ bufferSize: 5, seed: 8, epoch: 2 });
    assert.deepEqual(await keysOf({ bufferSize: 5, seed: 8, position: { epoch: 2, consumed: 13 } }), full.slice(13));
    assert.deepEqual(await keysOf({ bufferSize: 5, seed: 8, position: { epoch: 2, consumed: TOTAL } }), []);
  });

  test('resuming reads only the buffered rows and the row group it goes on from', async () => {
    const bufferSize = 4;
    const stream = await openShardStream(dir, { bufferSize, loop: true, position: { epoch: 2, consumed: 15 } });
    await take(stream, 1);
    // An uninterrupted run would have read 2 x 21 + 15 + 4 rows by now.
    assert.ok(stream.stats().rowsRead <= (bufferSize + 1) * GROUP, `read ${stream.stats().rowsRead} rows`);
  });
});

describe('WebDataset .tar shards', () => {
  test('the same samples, in the same order as from Parquet shards, with the same content', async () => {
    for (const input of [
      { bufferSize: 0 },
      { bufferSize: 6, seed: 3, epoch: 2 },
      { bufferSize: 4, workers: 2, worker: 1 },
      { bufferSize: 2, workers: 5, worker: 4 },
    ] as ShardStreamInput[]) {
      assert.deepEqual(await keysOf(input, Infinity, tarDir), await keysOf(input), JSON.stringify(input));
    }
    let n = 0;
    for await (const s of await openShardStream(tarDir, { bufferSize: 5 })) {
      const want = expected.get(s.key)!;
      assert.equal(s.caption, want.caption);
      assert.deepEqual(s.backTranslations, want.backTranslations);
      assert.ok(s.image.equals(want.image), `image of ${s.key}`);
      assert.deepEqual([s.imageFormat, s.width, s.height], ['jpeg', W, H]);
      assert.equal(s.views.length, VIEWS);
      for (let v = 0; v < VIEWS; v++) assert.ok(s.views[v]!.equals(want.views[v]!), `view ${v} of ${s.key}`);
      assert.match(s.shard, /^\d{5}\.tar$/);
      n++;
    }
    assert.equal(n, TOTAL);
  });

  test('resume goes on with exactly what an uninterrupted run yields next', async () => {
    const config: ShardStreamInput = { bufferSize: 4, seed: 11, workers: 2, worker: 0, loop: true };
    const run = await take(await openShardStream(tarDir, config), 30);
    for (let i = 0; i < run.keys.length; i += 3) {
      const want = run.keys.slice(i + 1, i + 1 + 8);
      assert.deepEqual(await keysOf({ ...config, position: run.positions[i]! }, want.length, tarDir), want, JSON.stringify(run.positions[i]));
    }
  });

  test('a caption-only stream reads no image bytes; a folder without sizes.json is counted from the headers', async () => {
    const captions = await openShardStream(tarDir, { columns: ['caption', 'backTranslations'] });
    let n = 0;
    for await (const s of captions) {
      assert.equal(s.caption, expected.get(s.key)!.caption);
      assert.deepEqual(s.backTranslations, expected.get(s.key)!.backTranslations);
      n++;
    }
    assert.equal(n, TOTAL);
    const imageBytes = [...expected.values()].reduce((a, e) => a + e.image.length + e.views[0]!.length + e.views[1]!.length, 0);
    // Opening a tar walks its member headers (a small read per image and view), so with these 8 KB test
    // images the saving is smaller than with Parquet; it grows with the image size.
    assert.ok(captions.stats().bytesRead < imageBytes / 2, `caption-only read ${captions.stats().bytesRead} bytes, images are ${imageBytes}`);

    const bare = path.join(root, 'tar-bare');
    await writeShards(bare, [4, 6], { format: 'tar', sizes: false });
    const stream = await openShardStream(bare, { bufferSize: 3 });
    assert.deepEqual(stream.shards.map((s) => [s.name, s.rows]), [['00000.tar', 4], ['00001.tar', 6]]);
    assert.equal((await take(stream)).keys.length, 10);
  });
});

describe('bad input', () => {
  async function drain(from: string, input: ShardStreamInput = {}): Promise<void> {
    for await (const s of await openShardStream(from, input)) void s;
  }

  test('bad options are FILIP_ERR_INVALID_OPTION naming the option', async () => {
    const table: [unknown, string][] = [
      [{ seed: -1 }, 'seed'],
      [{ seed: 1.5 }, 'seed'],
      [{ seed: 2 ** 32 }, 'seed'],
      [{ epoch: -1 }, 'epoch'],
      [{ bufferSize: -1 }, 'bufferSize'],
      [{ bufferSize: '10' }, 'bufferSize'],
      [{ workers: 0 }, 'workers'],
      [{ workers: 3, worker: 3 }, 'worker'],
      [{ worker: -1 }, 'worker'],
      [{ columns: ['pixels'] }, 'columns'],
      [{ columns: [] }, 'columns'],
      [{ columns: 'caption' }, 'columns'],
      [{ loop: 'yes' }, 'loop'],
      [{ shuffleShards: 1 }, 'shuffleShards'],
      [{ position: { epoch: -1, consumed: 0 } }, 'position.epoch'],
      [{ position: { epoch: 0 } }, 'position.consumed'],
      [{ position: { epoch: 0, consumed: 0, step: 3 } }, 'step'],
      [{ position: { epoch: 0, consumed: TOTAL + 1 } }, 'position.consumed'],
      [{ epoch: 1, position: { epoch: 2, consumed: 0 } }, 'epoch'],
      [{ bufferSzie: 10 }, 'bufferSzie'],
    ];
    for (const [input, field] of table) {
      await assert.rejects(
        openShardStream(dir, input as ShardStreamInput),
        (err: unknown) => err instanceof FilipError && err.code === 'FILIP_ERR_INVALID_OPTION' && err.field === field,
        JSON.stringify(input),
      );
    }
  });

  test('missing, empty and corrupt folders and files name the file', async () => {
    const bad = path.join(root, 'bad');
    const make = async (name: string, fill: (d: string) => Promise<void>) => {
      const d = path.join(bad, name);
      await fs.mkdir(d, { recursive: true });
      await fill(d);
      return d;
    };
    const good = path.join(dir, '00000.parquet');
    const goodBytes = await fs.readFile(good);
    const table: { name: string; dir: string; code: string; file: string; row?: number; field?: string }[] = [
      { name: 'missing folder', dir: path.join(bad, 'nope'), code: 'FILIP_ERR_NO_INPUT', file: path.join(bad, 'nope') },
      { name: 'a file, not a folder', dir: good, code: 'FILIP_ERR_NO_INPUT', file: good },
      { name: 'empty folder', dir: await make('empty', async () => {}), code: 'FILIP_ERR_NO_INPUT', file: path.join(bad, 'empty') },
      {
        name: 'garbage named like a tar shard',
        dir: await make('tar-garbage', (d) => fs.writeFile(path.join(d, '00000.tar'), Buffer.alloc(2048, 'not a tar header '))),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'tar-garbage', '00000.tar'),
      },
      {
        name: 'truncated tar shard',
        dir: await make('tar-truncated', async (d) => {
          const bytes = await fs.readFile(path.join(tarDir, '00001.tar'));
          await fs.writeFile(path.join(d, '00000.tar'), bytes.subarray(0, 20_000));
        }),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'tar-truncated', '00000.tar'),
      },
      {
        name: 'bad JSON in a tar sample',
        dir: await (async () => {
          const d = path.join(bad, 'tar-json');
          await writeShards(d, [5], {
            format: 'tar',
            editTar: (members, _s, i) => {
              if (i === 3) members.find((m) => m.name.endsWith('.json'))!.data = Buffer.from('{"key": ');
            },
          });
          return d;
        })(),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'tar-json', '00000.tar'),
        row: 3,
        field: '0000000000003.json',
      },
      {
        name: 'a tar sample without its caption',
        dir: await (async () => {
          const d = path.join(bad, 'tar-no-txt');
          await writeShards(d, [4], {
            format: 'tar',
            editTar: (members, _s, i) => {
              if (i === 1) members.splice(members.findIndex((m) => m.name.endsWith('.txt')), 1);
            },
          });
          return d;
        })(),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'tar-no-txt', '00000.tar'),
        row: 1,
        field: '0000000000001.txt',
      },
      {
        name: 'garbage named like a shard',
        dir: await make('garbage', (d) => fs.writeFile(path.join(d, '00000.parquet'), 'this is not parquet at all')),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'garbage', '00000.parquet'),
      },
      {
        name: 'truncated shard',
        dir: await make('truncated', (d) => fs.writeFile(path.join(d, '00000.parquet'), goodBytes.subarray(0, goodBytes.length - 100))),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'truncated', '00000.parquet'),
      },
      {
        name: 'sizes.json names a missing shard',
        dir: await make('sizes-missing', (d) => fs.writeFile(path.join(d, SIZES_FILE), JSON.stringify({ '00000.parquet': 7 }))),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'sizes-missing', '00000.parquet'),
      },
      {
        name: 'sizes.json is not JSON',
        dir: await make('sizes-bad', async (d) => {
          await fs.copyFile(good, path.join(d, '00000.parquet'));
          await fs.writeFile(path.join(d, SIZES_FILE), '{"00000.parquet": 7');
        }),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'sizes-bad', SIZES_FILE),
      },
      {
        name: 'sizes.json count differs from the shard',
        dir: await make('sizes-wrong', async (d) => {
          await fs.copyFile(good, path.join(d, '00000.parquet'));
          await fs.writeFile(path.join(d, SIZES_FILE), JSON.stringify({ '00000.parquet': 8 }));
        }),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'sizes-wrong', '00000.parquet'),
      },
      {
        name: 'bad JSON in back_translations',
        dir: await (async () => {
          const d = path.join(bad, 'json');
          await writeShards(d, [3, 5], { edit: (row, s, i) => void (s === 1 && i === 4 && (row.back_translations = '[{"pivot": "spa"')) });
          return d;
        })(),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'json', '00001.parquet'),
        row: 4,
        field: 'back_translations',
      },
      {
        name: 'back_translations not a list of {pivot, engine, text}',
        dir: await (async () => {
          const d = path.join(bad, 'json-shape');
          await writeShards(d, [4], { edit: (row, _s, i) => void (i === 2 && (row.back_translations = '[{"pivot": "spa", "text": 3}]')) });
          return d;
        })(),
        code: 'FILIP_ERR_SHARD',
        file: path.join(bad, 'json-shape', '00000.parquet'),
        row: 2,
        field: 'back_translations',
      },
    ];
    for (const t of table) {
      await assert.rejects(
        drain(t.dir, { shuffleShards: false }),
        (err: unknown) => {
          assert.ok(err instanceof FilipError, `${t.name}: ${String(err)}`);
          assert.equal(err.code, t.code, `${t.name}: ${err.message}`);
          assert.equal(err.file, t.file, t.name);
          if (t.row !== undefined) assert.equal(err.row, t.row, t.name);
          if (t.field !== undefined) assert.equal(err.field, t.field, t.name);
          return true;
        },
        t.name,
      );
    }
  });
});
