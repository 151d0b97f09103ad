// Shard writers (parquetjs, duckdb, lean) and the hyparquet reader: every field round-trips, images
// byte-exact, and DuckDB reads every engine's files the same; abort leaves nothing; the parquetjs image
// column carries no statistics; the lean writer's pages, levels and snappy are readable by both readers;
// bad calls fail with stable codes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { DuckDBBlobValue, DuckDBInstance } from '@duckdb/node-api';
import { asyncBufferFromFile, parquetMetadataAsync, snappyUncompress } from 'hyparquet';
import { FilipError, type ErrorCode } from '../src/core/errors.js';
import { shardColumns, type ColumnSpec, type ShardRow } from '../src/shard/schema.js';
import { iterateShard, readShardRows, shardRowCount } from '../src/shard/reader.js';
import { openShardWriter, WRITER_ENGINES, type ShardWriterOptions, type WriterEngine } from '../src/shard/writer.js';
import { openParquetjsSinkWith } from '../src/shard/writer-parquetjs.js';
import { encodeLevels, snappyCompress } from '../src/shard/writer-lean.js';

const ENGINES = Object.keys(WRITER_ENGINES) as WriterEngine[];
const hasZstd = typeof (zlib as unknown as { zstdDecompressSync?: unknown }).zstdDecompressSync === 'function';

/** The real shard schema plus an int64 column, so every column type is covered. */
const COLUMNS: ColumnSpec[] = [
  ...shardColumns(['similarity', 'license']),
  { name: 'bytes_downloaded', type: 'int64', nullable: true, doc: 'test-only int64 column' },
];

const CAPTIONS = [
  'a plain caption',
  'emoji 🐱‍👤🚀 and a flag 🇯🇵',
  '東京の夜景、漢字とかな。한국어도',
  'line one\nline two\r\nline three\ttabbed',
  'combining: e\u0301 and ZWJ \u200d, RTL \u202e text',
  ' leading and trailing spaces ',
  '',
];

function makeRows(n: number): ShardRow[] {
  const sizes = [1, 200 * 1024, 2, 50_000, 3];
  return Array.from({ length: n }, (_, i) => ({
    key: `0000${String(i).padStart(9, '0')}`,
    url: `https://example.com/img/${i}.jpg?q=ü&x=${i}`,
    caption: CAPTIONS[i % CAPTIONS.length]!,
    image: randomBytes(sizes[i % sizes.length]!),
    image_format: i % 3 === 0 ? 'webp' : 'jpeg',
    width: i === 1 ? 2 ** 31 - 1 : 256 + i,
    height: i === 2 ? -(2 ** 31) : 0,
    original_width: 1024,
    original_height: 768 + i,
    sha256: 'ab'.repeat(32),
    phash: '0123456789abcdef',
    // Null in rows from shards older than the column.
    phash_weak: i % 5 === 4 ? null : '001f001f001f001f',
    near_dup_check: i % 5 === 4 ? null : randomBytes(592),
    source: `manifest-ü.tsv:${i}`,
    extra_similarity: i % 2 === 0 ? null : `0.${300 + i}`,
    extra_license: i % 3 === 0 ? 'CC-BY 4.0 — ©' : null,
    bytes_downloaded: i === 3 ? Number.MAX_SAFE_INTEGER : i % 4 === 0 ? null : i * 1000,
  }));
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'filip-shard-writer-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let counter = 0;
const freshPath = (name: string): string => join(dir, `${counter++}-${name}.parquet`);

async function writeAll(path: string, engine: WriterEngine, rows: ShardRow[], opts?: ShardWriterOptions, columns = COLUMNS) {
  const w = await openShardWriter(path, columns, engine, opts);
  for (const r of rows) await w.write(r);
  return w.close();
}

async function codeOf(p: Promise<unknown>): Promise<ErrorCode | 'resolved' | string> {
  try {
    await p;
    return 'resolved';
  } catch (err) {
    return err instanceof FilipError ? err.code : `not a FilipError: ${String(err)}`;
  }
}

async function metadata(path: string) {
  return parquetMetadataAsync(await asyncBufferFromFile(path));
}

/** Reads the file with DuckDB: a second, independent reader. */
async function readWithDuckdb(path: string): Promise<Record<string, unknown>[]> {
  const inst = await DuckDBInstance.create(':memory:');
  const con = await inst.connect();
  try {
    const result = await con.runAndReadAll(`SELECT * FROM read_parquet('${path.replaceAll("'", "''")}')`);
    return result.getRowObjects().map((row) =>
      Object.fromEntries(
        Object.entries(row).map(([k, v]) => [
          k,
          v instanceof DuckDBBlobValue ? Buffer.from(v.bytes) : typeof v === 'bigint' ? Number(v) : v,
        ]),
      ),
    );
  } finally {
    con.closeSync();
    inst.closeSync();
  }
}

for (const engine of ENGINES) {
  describe(`${engine} engine`, () => {
    test('every field round-trips through readShardRows; images byte-exact', async () => {
      const rows = makeRows(23);
      const path = freshPath(engine);
      const { rows: n, bytes } = await writeAll(path, engine, rows);
      assert.equal(n, rows.length);
      assert.equal(bytes, readFileSync(path).byteLength);
      assert.equal(await shardRowCount(path), rows.length);
      const back = await readShardRows(path);
      assert.equal(back.length, rows.length);
      for (let i = 0; i < rows.length; i++) {
        assert.ok(Buffer.isBuffer(back[i]!['image']), 'image comes back as a Buffer');
        assert.deepStrictEqual(back[i], rows[i], `row ${i}`);
      }
      // no temporary files (DuckDB spill folder) left beside the shard
      assert.deepEqual((await readdir(dir)).filter((f) => f.includes(`-${engine}.`) && !f.endsWith('.parquet')), []);
    });

    test('row ranges, column selection and iterateShard agree with the full read', async () => {
      const rows = makeRows(17);
      const path = freshPath(engine);
      await writeAll(path, engine, rows);
      assert.deepStrictEqual(await readShardRows(path, { rowStart: 5, rowEnd: 9 }), rows.slice(5, 9));
      assert.deepStrictEqual(await readShardRows(path, { rowStart: 15, rowEnd: 1000 }), rows.slice(15));
      const keysAndImages = await readShardRows(path, { columns: ['key', 'image'] });
      assert.deepStrictEqual(keysAndImages, rows.map((r) => ({ key: r['key'], image: r['image'] })));
      const iterated: Record<string, unknown>[] = [];
      for await (const r of iterateShard(path, { batchRows: 4 })) iterated.push(r);
      assert.deepStrictEqual(iterated, rows);
    });

    test('DuckDB reads the file back identically (interop)', async () => {
      const rows = makeRows(9);
      const path = freshPath(engine);
      await writeAll(path, engine, rows);
      assert.deepStrictEqual(await readWithDuckdb(path), rows);
    });

    test('abort() removes the partial file and leaves nothing behind; a second abort is a no-op', async () => {
      const sub = await mkdtemp(join(dir, `abort-${engine}-`));
      const path = join(sub, '00000.parquet.tmp');
      const w = await openShardWriter(path, COLUMNS, engine);
      for (const r of makeRows(6)) await w.write(r);
      await w.abort();
      await w.abort();
      assert.equal(existsSync(path), false);
      assert.deepEqual(await readdir(sub), []);
      assert.equal(await codeOf(w.write(makeRows(1)[0]!)), 'FILIP_ERR_SHARD');
      assert.equal(await codeOf(w.close()), 'FILIP_ERR_SHARD');
    });

    test('abort() after close() keeps the finished file; an empty shard is valid', async () => {
      const path = freshPath(`${engine}-empty`);
      const w = await openShardWriter(path, COLUMNS, engine);
      assert.equal((await w.close()).rows, 0);
      await w.abort();
      assert.equal(await shardRowCount(path), 0);
      assert.deepEqual(await readShardRows(path), []);
    });

    test('writes that are not awaited are kept in call order', async () => {
      const rows = makeRows(12);
      const path = freshPath(engine);
      const w = await openShardWriter(path, COLUMNS, engine);
      await Promise.all(rows.map((r) => w.write(r)));
      await w.close();
      assert.deepStrictEqual(await readShardRows(path), rows);
    });

    test('writes that are not awaited stay in order across row-group flushes', async () => {
      const rows = makeRows(30);
      const path = freshPath(`${engine}-flushes`);
      const w = await openShardWriter(path, COLUMNS, engine, { rowGroupSize: 4 });
      const writes = rows.map((r) => w.write(r));
      const closed = w.close(); // queued behind the writes
      await Promise.all(writes);
      assert.equal((await closed).rows, rows.length);
      assert.deepStrictEqual(await readShardRows(path), rows);
    });

    test(engine === 'parquetjs' ? 'int64 refuses a bigint (parquetjs-lite would round it)' : 'int64 takes a bigint over 2^53; it reads back as a bigint', async () => {
      if (engine === 'parquetjs') {
        const w = await openShardWriter(freshPath('bad'), COLUMNS, engine);
        assert.equal(await codeOf(w.write({ ...makeRows(1)[0]!, bytes_downloaded: (2n ** 62n + 1n) as unknown as number })), 'FILIP_ERR_SHARD');
        await w.abort();
        return;
      }
      const rows = makeRows(4).map(
        (r, i): ShardRow => ({ ...r, bytes_downloaded: [2n ** 62n + 1n, -(2n ** 63n), 2n ** 63n - 1n, 5n][i] as unknown as number }),
      );
      const path = freshPath(`${engine}-bigint`);
      await writeAll(path, engine, rows);
      const back = await readShardRows(path, { columns: ['bytes_downloaded'] });
      assert.deepStrictEqual(
        back.map((r) => r['bytes_downloaded']),
        [2n ** 62n + 1n, -(2n ** 63n), 2n ** 63n - 1n, 5], // a safe value comes back as a number
      );
      const inst = await DuckDBInstance.create(':memory:');
      const con = await inst.connect();
      try {
        const result = await con.runAndReadAll(`SELECT bytes_downloaded FROM read_parquet('${path.replaceAll("'", "''")}')`);
        assert.deepStrictEqual(result.getColumns()[0], [2n ** 62n + 1n, -(2n ** 63n), 2n ** 63n - 1n, 5n]);
      } finally {
        con.closeSync();
        inst.closeSync();
      }
      const w = await openShardWriter(freshPath('bad'), COLUMNS, engine);
      assert.equal(await codeOf(w.write({ ...rows[0]!, bytes_downloaded: (2n ** 63n) as unknown as number })), 'FILIP_ERR_SHARD');
      await w.abort();
    });

    test('a rejected row does not stop the writer', async () => {
      const rows = makeRows(3);
      const path = freshPath(engine);
      const w = await openShardWriter(path, COLUMNS, engine);
      await w.write(rows[0]!);
      await assert.rejects(w.write({ ...rows[1]!, width: 'wide' }), (err: unknown) => {
        assert.ok(err instanceof FilipError);
        assert.equal(err.code, 'FILIP_ERR_SHARD');
        assert.equal(err.field, 'width');
        assert.equal(err.row, 1);
        assert.equal(err.file, path);
        return true;
      });
      await w.write(rows[2]!);
      assert.equal((await w.close()).rows, 2);
      assert.deepStrictEqual(await readShardRows(path), [rows[0], rows[2]]);
    });
  });
}

test('parquetjs: no statistics and no compression on the image column, statistics kept elsewhere', async () => {
  const rows = makeRows(40);
  const path = freshPath('parquetjs-stats');
  const { bytes } = await writeAll(path, 'parquetjs', rows, { rowGroupSize: 16 });
  const md = await metadata(path);
  assert.equal(md.row_groups.length, 3);
  const repetition = Object.fromEntries(md.schema.slice(1).map((e) => [e.name, e.repetition_type]));
  assert.equal(repetition['key'], 'REQUIRED');
  assert.equal(repetition['extra_similarity'], 'OPTIONAL');
  for (const group of md.row_groups) {
    for (const chunk of group.columns) {
      const name = chunk.meta_data!.path_in_schema.join('.');
      if (name === 'image') {
        assert.equal(chunk.meta_data!.statistics, undefined, 'image column has no statistics');
        assert.equal(chunk.column_index_offset, undefined, 'image column has no column index');
        assert.equal(chunk.meta_data!.codec, 'UNCOMPRESSED');
      } else if (name === 'key') {
        assert.ok(chunk.meta_data!.statistics?.min_value !== undefined, 'key column keeps min/max');
        assert.equal(chunk.meta_data!.codec, 'SNAPPY');
      }
    }
  }
  // With min/max on images every page would carry two extra images; the file is about the payload.
  const imageBytes = rows.reduce((n, r) => n + (r['image'] as Buffer).byteLength, 0);
  assert.ok(bytes < imageBytes * 1.02 + 20_000, `file ${bytes} bytes for ${imageBytes} image bytes`);
  assert.deepStrictEqual(await readShardRows(path), rows);
});

test('parquetjs: row groups are cut by bytes as well as rows', async () => {
  const rows = makeRows(30); // every 5th image is 200 KB
  const path = freshPath('parquetjs-bytes');
  await writeAll(path, 'parquetjs', rows, { rowGroupBytes: 250_000 });
  const md = await metadata(path);
  assert.ok(md.row_groups.length >= 5, `${md.row_groups.length} row groups`);
  for (const g of md.row_groups) assert.ok(Number(g.total_byte_size) < 250_000 + 210_000);
  const iterated: Record<string, unknown>[] = [];
  for await (const r of iterateShard(path, { batchRows: 2 })) iterated.push(r);
  assert.deepStrictEqual(iterated, rows);
});

test('parquetjs: writing row groups column by column gives the same bytes as parquetjs-lite', async () => {
  const rows = makeRows(20);
  const opts = { rowGroupSize: 7, rowGroupBytes: 32 << 20, compression: 'snappy' as const, duckdbMemoryLimitMb: 256 };
  const files: Buffer[] = [];
  for (const columnByColumn of [false, true]) {
    const path = freshPath(`parquetjs-cbc-${columnByColumn}`);
    const sink = await openParquetjsSinkWith(path, COLUMNS, opts, columnByColumn);
    for (const r of rows) await sink.append(r);
    await sink.finish();
    files.push(readFileSync(path));
  }
  assert.ok(files[0]!.equals(files[1]!));
});

test('duckdb: more than one row group (2,048 rows each) reads back in order', async () => {
  const rows = makeRows(2100).map((r): ShardRow => ({ ...r, image: Buffer.from([1, 2, 3]) }));
  const path = freshPath('duckdb-groups');
  await writeAll(path, 'duckdb', rows);
  const md = await metadata(path);
  assert.deepEqual(md.row_groups.map((g) => Number(g.num_rows)), [2048, 52]);
  let i = 0;
  for await (const r of iterateShard(path, { columns: ['key', 'extra_similarity'] })) {
    assert.deepStrictEqual(r, { key: rows[i]!['key'], extra_similarity: rows[i]!['extra_similarity'] });
    i++;
  }
  assert.equal(i, rows.length);
});

test('duckdb: compression none and zstd', async () => {
  const rows = makeRows(8);
  for (const compression of ['none', 'zstd'] as const) {
    const path = freshPath(`duckdb-${compression}`);
    await writeAll(path, 'duckdb', rows, { compression });
    assert.deepStrictEqual(await readWithDuckdb(path), rows);
    if (compression === 'none' || hasZstd) assert.deepStrictEqual(await readShardRows(path), rows);
    else assert.equal(await codeOf(readShardRows(path)), 'FILIP_ERR_SHARD'); // Node < 22.15 has no zstd
  }
});

describe('lean engine internals', () => {
  test('flat schema: REQUIRED/OPTIONAL, UTF8 strings, plain pages, no statistics; snappy only off binary', async () => {
    const rows = makeRows(40);
    const path = freshPath('lean-meta');
    const { bytes } = await writeAll(path, 'lean', rows, { rowGroupSize: 16 });
    const md = await metadata(path);
    assert.equal(md.created_by, 'filip-data lean writer');
    assert.deepEqual(md.row_groups.map((g) => Number(g.num_rows)), [16, 16, 8]);
    const byName = Object.fromEntries(md.schema.slice(1).map((e) => [e.name, e]));
    assert.equal(byName['key']!.repetition_type, 'REQUIRED');
    assert.equal(byName['key']!.converted_type, 'UTF8');
    assert.equal(byName['key']!.logical_type?.type, 'STRING');
    assert.equal(byName['extra_similarity']!.repetition_type, 'OPTIONAL');
    assert.equal(byName['image']!.type, 'BYTE_ARRAY');
    assert.equal(byName['image']!.converted_type, undefined);
    assert.equal(byName['width']!.type, 'INT32');
    assert.equal(byName['bytes_downloaded']!.type, 'INT64');
    for (const group of md.row_groups) {
      for (const chunk of group.columns) {
        const meta = chunk.meta_data!;
        const name = meta.path_in_schema.join('.');
        assert.equal(meta.statistics, undefined, `${name} has no statistics`);
        assert.equal(meta.dictionary_page_offset, undefined);
        // Binary columns (the image, the near-duplicate check data) are not compressed.
        assert.equal(meta.codec, byName[name]!.type === 'BYTE_ARRAY' && byName[name]!.converted_type === undefined ? 'UNCOMPRESSED' : 'SNAPPY', name);
        assert.equal(Number(meta.num_values), Number(group.num_rows));
      }
    }
    const imageBytes = rows.reduce((n, r) => n + (r['image'] as Buffer).byteLength + ((r['near_dup_check'] as Buffer | null)?.byteLength ?? 0), 0);
    assert.ok(bytes < imageBytes + 20_000, `file ${bytes} bytes for ${imageBytes} bytes of images and check data`);
  });

  test('row groups are cut by bytes as well as rows', async () => {
    const rows = makeRows(30); // every 5th image is 200 KB
    const path = freshPath('lean-bytes');
    await writeAll(path, 'lean', rows, { rowGroupBytes: 250_000 });
    const md = await metadata(path);
    assert.ok(md.row_groups.length >= 5, `${md.row_groups.length} row groups`);
    for (const g of md.row_groups) assert.ok(Number(g.total_byte_size) < 250_000 + 210_000);
    const iterated: Record<string, unknown>[] = [];
    for await (const r of iterateShard(path, { batchRows: 2 })) iterated.push(r);
    assert.deepStrictEqual(iterated, rows);
    assert.deepStrictEqual(await readWithDuckdb(path), rows);
  });

  test('text pages cut at 1 MiB, with nulls on both sides of a cut, read back by hyparquet and DuckDB', async () => {
    const columns: ColumnSpec[] = [
      { name: 'id', type: 'int32', nullable: false, doc: '' },
      { name: 'text', type: 'utf8', nullable: true, doc: '' },
      { name: 'blob', type: 'binary', nullable: true, doc: '' },
    ];
    // ~300 KB strings: a page holds 4 of them; the nulls fall on page boundaries and inside pages
    const rows: ShardRow[] = Array.from({ length: 23 }, (_, i) => ({
      id: i,
      text: i % 5 === 3 || i === 4 ? null : `${i}:` + 'ü€🐱 caption text '.repeat(15_000 + i),
      blob: i % 2 === 0 ? null : Buffer.alloc(i * 10, i),
    }));
    for (const compression of ['none', 'snappy'] as const) {
      const path = freshPath(`lean-pages-${compression}`);
      await writeAll(path, 'lean', rows, { compression, rowGroupBytes: 64 << 20 }, columns);
      const md = await metadata(path);
      assert.equal(md.row_groups.length, 1);
      const text = md.row_groups[0]!.columns[1]!.meta_data!;
      assert.ok(Number(text.total_uncompressed_size) > 5 * (1 << 20), 'several MiB of text in one chunk');
      assert.deepStrictEqual(await readShardRows(path, { columns: ['id', 'text', 'blob'] }), rows);
      assert.deepStrictEqual(await readWithDuckdb(path), rows);
    }
  });

  test('definition levels: long runs and mixed runs past 504 values (one bit-packed header byte each)', async () => {
    const columns: ColumnSpec[] = [
      { name: 'a', type: 'utf8', nullable: true, doc: '' },
      { name: 'b', type: 'int64', nullable: true, doc: '' },
      { name: 'c', type: 'int32', nullable: true, doc: '' },
    ];
    const rows: ShardRow[] = Array.from({ length: 3000 }, (_, i) => ({
      a: i % 7 === 0 ? null : `v${i}`,
      b: null, // all null: one RLE run
      c: i < 1000 ? i : i % 997 === 0 ? null : -i, // a long defined run, then sparse nulls
    }));
    const path = freshPath('lean-levels');
    await writeAll(path, 'lean', rows, { rowGroupSize: 2500, compression: 'none' }, columns);
    assert.deepStrictEqual(await readShardRows(path), rows);
    const duck = await readWithDuckdb(path);
    assert.deepStrictEqual(duck, rows);
  });

  test('encodeLevels: RLE for a uniform range, bit-packed otherwise, with the 4-byte length prefix', () => {
    assert.deepEqual([...encodeLevels(Uint8Array.from([1, 1, 1, 1, 1]), 0, 5)], [2, 0, 0, 0, 5 << 1, 1]);
    assert.deepEqual([...encodeLevels(Uint8Array.from([0, 1, 0, 0, 0, 0]), 2, 6)], [2, 0, 0, 0, 4 << 1, 0]);
    // 10 values 1,0,1,0,...: two groups of 8, LSB first, padded with zeros
    const mixed = Uint8Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? 1 : 0));
    assert.deepEqual([...encodeLevels(mixed, 0, 10)], [3, 0, 0, 0, (2 << 1) | 1, 0b01010101, 0b01]);
  });

  test('snappyCompress round-trips through hyparquet\'s decoder (empty, tiny, repetitive, random, > 64 KiB)', () => {
    const text = Buffer.from(makeRows(200).map((r) => `${r['url']}${r['caption']}${r['sha256']}`).join('\n'));
    const inputs = [
      Buffer.alloc(0),
      Buffer.from('a'),
      Buffer.alloc(15, 7),
      Buffer.alloc(16, 7),
      Buffer.alloc(200_000, 7),
      randomBytes(70_000),
      text,
      Buffer.concat([text, randomBytes(1000), text, text]),
    ];
    for (const input of inputs) {
      const compressed = snappyCompress(input);
      const out = new Uint8Array(input.byteLength);
      snappyUncompress(compressed, out);
      assert.ok(Buffer.from(out).equals(input), `${input.byteLength} bytes`);
    }
    assert.ok(snappyCompress(Buffer.alloc(200_000, 7)).byteLength < 10_000);
    assert.ok(snappyCompress(text).byteLength < text.byteLength * 0.7);
  });

  test('a column that does not compress is stored uncompressed from the next row group on', async () => {
    const rows = makeRows(300).map((r): ShardRow => ({ ...r, image: Buffer.from([1]), sha256: randomBytes(32).toString('hex') }));
    const path = freshPath('lean-adaptive');
    await writeAll(path, 'lean', rows, { rowGroupSize: 100 });
    const md = await metadata(path);
    const codecs = (name: string): string[] =>
      md.row_groups.map((g) => g.columns.find((c) => c.meta_data!.path_in_schema[0] === name)!.meta_data!.codec);
    assert.deepEqual(codecs('sha256'), ['SNAPPY', 'UNCOMPRESSED', 'UNCOMPRESSED']);
    assert.deepEqual(codecs('caption'), ['SNAPPY', 'SNAPPY', 'SNAPPY']);
    assert.deepStrictEqual(await readShardRows(path), rows);
    assert.deepStrictEqual(await readWithDuckdb(path), rows);
  });

  test('images are written from the caller\'s buffers, never copied', async () => {
    const image = randomBytes(100_000);
    const path = freshPath('lean-memory');
    const w = await openShardWriter(path, COLUMNS, 'lean', { rowGroupBytes: 2 << 20, compression: 'none' });
    const row = makeRows(1)[0]!;
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    for (let i = 0; i < 400; i++) {
      await w.write({ ...row, image }); // 40 MB in all, in ~2 MB row groups
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    }
    await w.close();
    // One image, written 400 times: referencing it costs nothing, copying it would cost a row group (2 MB).
    assert.ok(peak < 1 << 20, `buffers grew by ${(peak / 1e6).toFixed(1)} MB`);
    assert.equal(await shardRowCount(path), 400);
    const [last] = await readShardRows(path, { rowStart: 399, columns: ['image'] });
    assert.ok(image.equals(last!['image'] as Buffer));
  });
});

describe('bad calls', () => {
  const row = makeRows(1)[0]!;
  const cases: { name: string; code: ErrorCode; run: (path: string) => Promise<unknown> }[] = [
    { name: 'unknown engine', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, COLUMNS, 'arrow' as WriterEngine) },
    { name: 'unknown compression', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, COLUMNS, 'parquetjs', { compression: 'lz4' as 'none' }) },
    { name: 'zstd with parquetjs', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, COLUMNS, 'parquetjs', { compression: 'zstd' }) },
    { name: 'zstd with lean', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, COLUMNS, 'lean', { compression: 'zstd' }) },
    { name: 'rowGroupSize 0', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, COLUMNS, 'duckdb', { rowGroupSize: 0 }) },
    { name: 'unknown option', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, COLUMNS, 'parquetjs', { rowgroupsize: 5 } as ShardWriterOptions) },
    { name: 'no columns', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, [], 'parquetjs') },
    { name: 'duplicate column', code: 'FILIP_ERR_INVALID_OPTION', run: (p) => openShardWriter(p, [...COLUMNS, COLUMNS[0]!], 'parquetjs') },
    { name: 'empty path', code: 'FILIP_ERR_INVALID_OPTION', run: () => openShardWriter('', COLUMNS, 'parquetjs') },
    { name: 'missing folder', code: 'FILIP_ERR_SHARD', run: (p) => openShardWriter(join(p, 'no', 'such', 'x.parquet'), COLUMNS, 'parquetjs') },
    { name: 'missing folder (duckdb)', code: 'FILIP_ERR_SHARD', run: (p) => openShardWriter(join(p, 'no', 'such', 'x.parquet'), COLUMNS, 'duckdb') },
    { name: 'missing folder (lean)', code: 'FILIP_ERR_SHARD', run: (p) => openShardWriter(join(p, 'no', 'such', 'x.parquet'), COLUMNS, 'lean') },
    { name: 'read a missing file', code: 'FILIP_ERR_SHARD', run: (p) => readShardRows(`${p}.missing`) },
    { name: 'read a file that is not parquet', code: 'FILIP_ERR_SHARD', run: () => shardRowCount(new URL(import.meta.url).pathname) },
  ];
  for (const engine of ENGINES) {
    const misuse: [string, (w: Awaited<ReturnType<typeof openShardWriter>>) => Promise<unknown>][] = [
      ['write after close', async (w) => (await w.close(), w.write(row))],
      ['write after abort', async (w) => (await w.abort(), w.write(row))],
      ['close twice', async (w) => (await w.close(), w.close())],
      ['null in a non-nullable column', (w) => w.write({ ...row, caption: null })],
      ['missing column', (w) => w.write(Object.fromEntries(Object.entries(row).filter(([k]) => k !== 'url')))],
      ['unknown column', (w) => w.write({ ...row, extra_nope: 'x' })],
      ['string image', (w) => w.write({ ...row, image: 'not bytes' })],
      ['int32 out of range', (w) => w.write({ ...row, width: 2 ** 31 })],
      ['fractional int', (w) => w.write({ ...row, height: 1.5 })],
      ['unsafe int64', (w) => w.write({ ...row, bytes_downloaded: 2 ** 60 })],
      ['number for a string', (w) => w.write({ ...row, sha256: 5 })],
    ];
    for (const [name, run] of misuse) {
      cases.push({
        name: `${engine}: ${name}`,
        code: 'FILIP_ERR_SHARD',
        run: async (p) => {
          const w = await openShardWriter(p, COLUMNS, engine);
          try {
            return await run(w);
          } finally {
            await w.abort();
          }
        },
      });
    }
  }
  for (const c of cases) {
    test(c.name, async () => {
      assert.equal(await codeOf(c.run(freshPath('bad'))), c.code);
    });
  }
});
