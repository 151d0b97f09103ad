// Chunk jobs enter the manifests at recorded places (byte offsets in text, row groups in Parquet):
// a chunk read from its cursor must yield exactly the rows a full read yields for that range (keys,
// sources, captions, malformed rows), in every format, and the bytes a chunk reads must not grow with
// its position in the file (no re-reading from the start: total reading is linear).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';

import type { Sample } from '../src/core/sample.js';
import { gunzipFile, isGzipPath } from '../src/manifest/files.js';
import {
  listManifestFiles,
  readManifests,
  readManifestsFrom,
  resolveManifestOptions,
  scanManifests,
  type ManifestCursor,
  type ManifestOptions,
  type PlainCopies,
} from '../src/manifest/read.js';
import { textReadStats } from '../src/manifest/text.js';

interface ParquetWriterLite {
  appendRow(row: Record<string, unknown>): Promise<void>;
  setRowGroupSize(rows: number): void;
  close(): Promise<void>;
}
interface ParquetLite {
  ParquetSchema: new (fields: Record<string, { type: string; optional?: boolean }>) => unknown;
  ParquetWriter: { openFile(schema: unknown, path: string): Promise<ParquetWriterLite> };
}
const parquet = createRequire(import.meta.url)('parquetjs-lite') as ParquetLite;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'filip-offsets-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function put(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
  return path;
}

/** What a user relies on for a row: its key, where it came from, its values and its outcome. */
function view(s: Sample) {
  return [s.key, s.index, s.source.file, s.source.row, s.url, s.caption, s.status, s.errorMessage ?? '', JSON.stringify(s.extra)];
}

async function fullRead(options: ManifestOptions): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of readManifests(options)) out.push(s);
  return out;
}

async function cursorsOf(options: ManifestOptions, every: number, copies?: PlainCopies) {
  const cursors: ManifestCursor[] = [];
  const total = await scanManifests(options, every, (c) => void cursors.push(c), copies);
  return { cursors, total };
}

/** Checks that every chunk read from its cursor equals the full read's slice, for a few chunk sizes. */
async function checkChunks(inputs: string[], extra: Partial<ManifestOptions> = {}, copies?: PlainCopies): Promise<number> {
  const files = await listManifestFiles(inputs);
  const options = resolveManifestOptions({ inputs: files, ...extra });
  const full = await fullRead(options);
  assert.ok(full.length > 0);
  for (const every of [1, 3, 7, 1000]) {
    const { cursors, total } = await cursorsOf(options, every, copies);
    assert.equal(total, full.length, `scan counts every row (every ${every})`);
    assert.equal(cursors.length, Math.ceil(full.length / every));
    for (const [k, cursor] of cursors.entries()) {
      assert.equal(cursor.index, k * every);
      const end = Math.min(full.length, cursor.index + every);
      const got: Sample[] = [];
      for await (const s of readManifestsFrom(options, cursor, end, copies)) got.push(s);
      assert.deepEqual(got.map(view), full.slice(cursor.index, end).map(view), `chunk ${k} of ${every} rows (${JSON.stringify(cursor)})`);
    }
  }
  return full.length;
}

// Quoted newlines, doubled quotes, CRLF, a BOM, non-ASCII and invalid UTF-8, blank lines, a stray
// quote (a broken record that costs one row) and a row with too few fields.
const CSV =
  '\ufeffurl,caption,width\r\n' +
  'https://a/1.jpg,"two\nlines",1\r\n' +
  '\r\n' +
  'https://a/2.jpg,"say ""hi""",2\r\n' +
  'https://a/3.jpg,café crème 東京,3\r\n' +
  'https://a/4.jpg,"a,b\n\nc",4\r\n' +
  'https://a/5.jpg,bad "quote,5\r\n' +
  'https://a/6.jpg,"unclosed,6\r\n' +
  'https://a/7.jpg,seven,7\r\n' +
  'https://a/8.jpg,short\r\n' +
  'https://a/9.jpg,"é\n😀",9\r\n' +
  'https://a/10.jpg,last,10';

const TSV = ['url\tcaption\twidth', ...Array.from({ length: 40 }, (_, i) => (i === 5 ? '\tno url' : `https://t/${i}.jpg\tcaption ${i} ü\t${i}`)), ''].join('\n');
const CC3M = Array.from({ length: 23 }, (_, i) => `a photo number ${i} of a ${i % 2 ? 'cat' : 'dog'}\thttps://c/${i}.jpg`).join('\n') + '\n';
const JSONL = Array.from({ length: 25 }, (_, i) =>
  i === 4 ? 'not json' : i === 9 ? '   ' : JSON.stringify({ url: `https://j/${i}.jpg`, caption: `line ${i}\nwith newline escaped`, width: i }),
).join('\n');

describe('a chunk read from its cursor equals the full read of that range', () => {
  test('CSV with quoted newlines, CRLF, BOM, non-ASCII, broken records', async () => {
    const file = await put('csv/a.csv', Buffer.concat([Buffer.from(CSV.slice(0, 60)), Buffer.from([0xff, 0xfe]), Buffer.from(CSV.slice(60))]));
    await checkChunks([file], { keepCols: ['width'] });
  });

  test('TSV with header, a malformed row, non-ASCII', async () => {
    await checkChunks([await put('tsv/a.tsv', TSV)], { keepCols: ['width'] });
  });

  test('headerless CC3M', async () => {
    const n = await checkChunks([await put('cc3m/train.tsv', CC3M)]);
    assert.equal(n, 23, 'no row lost to a header');
  });

  test('JSONL with bad and blank lines', async () => {
    await checkChunks([await put('jsonl/a.jsonl', JSONL)], { keepCols: ['width'] });
  });

  test('Parquet with several row groups, and several files of mixed formats', async () => {
    const path = join(dir, 'mix', 'b.parquet');
    await mkdir(join(dir, 'mix'), { recursive: true });
    const schema = new parquet.ParquetSchema({ url: { type: 'UTF8', optional: true }, caption: { type: 'UTF8' }, width: { type: 'INT32' } });
    const writer = await parquet.ParquetWriter.openFile(schema, path);
    writer.setRowGroupSize(6);
    for (let i = 0; i < 29; i++) await writer.appendRow({ ...(i === 13 ? {} : { url: `https://p/${i}.jpg` }), caption: `parquet ${i}`, width: i });
    await writer.close();
    await put('mix/a.tsv', TSV);
    await put('mix/c.jsonl', JSONL);
    await put('mix/d.csv', CSV);
    await checkChunks([join(dir, 'mix')], { keepCols: ['width'] });
    const { cursors } = await cursorsOf(resolveManifestOptions({ inputs: [path] }), 5);
    assert.deepEqual(
      cursors.map((c) => [c.rowGroup, c.groupRow]),
      [[0, 0], [0, 5], [1, 4], [2, 3], [3, 2], [4, 1]],
      'parquet cursors name the row group and the row in it',
    );
  });

  test('gzip: read through (inflating the prefix) and from a plain copy, both exact', async () => {
    const gz = [
      await put('gz/a.tsv.gz', gzipSync(TSV)),
      await put('gz/b.csv.gz', gzipSync(CSV)),
      await put('gz/c.jsonl.gz', gzipSync(JSONL)),
      await put('gz/d.tsv.gz', gzipSync(CC3M)),
    ];
    await checkChunks([join(dir, 'gz')], { keepCols: [] });
    const copies: Record<string, string> = {};
    for (const [i, file] of gz.entries()) {
      copies[file] = join(dir, 'gz-plain', `${i}.plain`);
      await mkdir(join(dir, 'gz-plain'), { recursive: true });
      await gunzipFile(file, copies[file]!);
    }
    assert.ok(gz.every(isGzipPath));
    await checkChunks([join(dir, 'gz')], { keepCols: [] }, copies);
  });
});

test('reading is linear: a chunk reads about its own bytes, wherever it is in the file', async () => {
  const rows = 40_000;
  const perChunk = 1000;
  const lines = ['url\tcaption'];
  for (let i = 0; i < rows; i++) lines.push(`https://example.com/images/${i}.jpg\ta caption for row ${i} of the long manifest`);
  const file = await put('long/a.tsv', `${lines.join('\n')}\n`);
  const size = (await stat(file)).size;
  const options = resolveManifestOptions({ inputs: [file] });
  const { cursors, total } = await cursorsOf(options, perChunk);
  assert.equal(total, rows);

  const perJob: number[] = [];
  for (const cursor of cursors) {
    const before = textReadStats.bytes;
    let n = 0;
    for await (const _ of readManifestsFrom(options, cursor, cursor.index + perChunk)) n++;
    assert.equal(n, perChunk);
    perJob.push(textReadStats.bytes - before);
  }
  const sum = perJob.reduce((a, b) => a + b, 0);
  // A chunk holds size/40 bytes (~70 KiB); each job may also read the header block and one block past
  // its end. Re-reading from the start would make the last job read the whole file (~2.8 MB).
  const chunkBytes = size / cursors.length;
  const slack = 4096 + 2 * 65536;
  for (const [k, bytes] of perJob.entries()) assert.ok(bytes <= chunkBytes + slack, `job ${k} read ${bytes} bytes, a chunk is ${chunkBytes.toFixed(0)}`);
  assert.ok(sum <= size + cursors.length * slack, `all jobs read ${sum} bytes for a ${size}-byte file`);

  // The same chunks read by skipping from the start (how jobs read before): the last one reads everything.
  const before = textReadStats.bytes;
  for await (const s of readManifests(options, rows - perChunk)) void s;
  const fromStart = textReadStats.bytes - before;
  assert.ok(fromStart >= size * 0.99, `a skip from the start reads the whole file (${fromStart} of ${size})`);
  process.stdout.write(`# linear read: ${cursors.length} jobs read ${sum} bytes of a ${size}-byte file (ratio ${(sum / size).toFixed(2)}); skipping from the start would read ${((cursors.length + 1) / 2).toFixed(1)}x the file\n`);
});
