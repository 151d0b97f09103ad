// Manifest reader: every format (and its .gz), header detection, stable keys across files, resume by
// startIndex, malformed rows as data, file-level errors by code, and flat memory on a long manifest.

import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { createGzip, gzipSync } from 'node:zlib';

import { FilipError, type ErrorCode } from '../src/core/errors.js';
import type { Sample } from '../src/core/sample.js';
import { openParquet, parquetWindows, readParquetRows } from '../src/manifest/parquet.js';
import {
  DEFAULT_MANIFEST_OPTIONS,
  countManifestRows,
  detectTsvLayout,
  listManifestFiles,
  readManifests,
  resolveManifestOptions,
  type ManifestOptions,
} from '../src/manifest/read.js';
import { CsvParser, MAX_RECORD_CHARS, type TextRecord } from '../src/manifest/text.js';

// parquetjs-lite ships no types; only the few calls the fixtures need are described here.
interface ParquetWriterLite {
  appendRow(row: Record<string, unknown>): Promise<void>;
  setRowGroupSize(rows: number): void;
  close(): Promise<void>;
}
interface ParquetLite {
  ParquetSchema: new (fields: Record<string, { type: string; optional?: boolean }>) => unknown;
  ParquetWriter: { openFile(schema: unknown, path: string, opts?: { pageSize?: number }): Promise<ParquetWriterLite> };
}
const parquet = createRequire(import.meta.url)('parquetjs-lite') as ParquetLite;

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'filip-manifest-test-'));
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

async function putGz(name: string, content: string): Promise<string> {
  return put(name, gzipSync(content));
}

interface LaionRow {
  URL: string | null;
  TEXT: string | null;
  similarity: number;
  width: number;
}

async function putParquet(name: string, rows: readonly LaionRow[], rowGroupSize = 1000, pageSize = 8192): Promise<string> {
  const path = join(dir, name);
  await mkdir(join(path, '..'), { recursive: true });
  const schema = new parquet.ParquetSchema({
    URL: { type: 'UTF8', optional: true },
    TEXT: { type: 'UTF8', optional: true },
    similarity: { type: 'DOUBLE' },
    width: { type: 'INT32' },
  });
  const writer = await parquet.ParquetWriter.openFile(schema, path, { pageSize });
  writer.setRowGroupSize(rowGroupSize);
  for (const row of rows) {
    const record: Record<string, unknown> = { similarity: row.similarity, width: row.width };
    if (row.URL !== null) record['URL'] = row.URL;
    if (row.TEXT !== null) record['TEXT'] = row.TEXT;
    await writer.appendRow(record);
  }
  await writer.close();
  return path;
}

function laionRows(n: number, prefix = 'p'): LaionRow[] {
  return Array.from({ length: n }, (_, i) => ({
    URL: `https://img.example/${prefix}${i}.jpg`,
    TEXT: `${prefix} caption ${i}`,
    similarity: 0.25 + i / 1000,
    width: 100 + i,
  }));
}

function options(inputs: string[], rest: Partial<ManifestOptions> = {}): ManifestOptions {
  return resolveManifestOptions({ inputs, ...rest });
}

async function collect(opts: ManifestOptions, startIndex = 0): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of readManifests(opts, startIndex)) out.push(s);
  return out;
}

function brief(s: Sample): [string, string, string] {
  return [s.status, s.url, s.caption];
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<FilipError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof FilipError, `expected a FilipError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  return caught;
}

describe('options', () => {
  test('defaults and a valid resolve', () => {
    assert.equal(DEFAULT_MANIFEST_OPTIONS.format, 'auto');
    assert.equal(DEFAULT_MANIFEST_OPTIONS.urlCol, 'url');
    assert.equal(DEFAULT_MANIFEST_OPTIONS.captionCol, 'caption');
    const o = resolveManifestOptions({ inputs: ['a.tsv'], urlCol: 'URL', captionCol: 'TEXT', keepCols: ['width'] });
    assert.deepEqual({ ...o }, { inputs: ['a.tsv'], format: 'auto', urlCol: 'URL', captionCol: 'TEXT', keepCols: ['width'] });
    assert.ok(Object.isFrozen(o));
  });

  const bad: Array<[string, unknown]> = [
    ['inputs missing', {}],
    ['inputs empty', { inputs: [] }],
    ['inputs not an array', { inputs: 'a.tsv' }],
    ['inputs with an empty path', { inputs: [''] }],
    ['inputs with a number', { inputs: [3] }],
    ['unknown format', { inputs: ['a'], format: 'xml' }],
    ['format not a string', { inputs: ['a'], format: 1 }],
    ['empty urlCol', { inputs: ['a'], urlCol: '' }],
    ['urlCol not a string', { inputs: ['a'], urlCol: 5 }],
    ['captionCol null', { inputs: ['a'], captionCol: null }],
    ['keepCols not an array', { inputs: ['a'], keepCols: 'width' }],
    ['keepCols with an empty name', { inputs: ['a'], keepCols: [''] }],
    ['keepCols with duplicates', { inputs: ['a'], keepCols: ['w', 'w'] }],
    ['unknown key', { inputs: ['a'], urlColumn: 'URL' }],
    ['not an object', null],
  ];
  for (const [name, given] of bad) {
    test(`rejects ${name}`, () => {
      assert.throws(
        () => resolveManifestOptions(given as Partial<ManifestOptions>),
        (err: unknown) => err instanceof FilipError && err.code === 'FILIP_ERR_INVALID_OPTION',
      );
    });
  }

  test('readManifests validates its options and startIndex', async () => {
    await rejectsWith(collect({ ...DEFAULT_MANIFEST_OPTIONS, inputs: ['x'], format: 'xml' as 'tsv' }), 'FILIP_ERR_INVALID_OPTION');
    await rejectsWith(collect(options([join(dir, 'nowhere.tsv')]), -1), 'FILIP_ERR_INVALID_OPTION');
  });
});

describe('detectTsvLayout', () => {
  const cases: Array<[string[], string, 'tsv' | 'cc3m' | 'cc12m']> = [
    [['caption', 'url'], 'url', 'tsv'],
    [['URL', 'TEXT', 'width'], 'url', 'tsv'],
    [['a dog on a beach', 'https://x.example/1.jpg'], 'url', 'cc3m'],
    [['a dog', 'HTTP://x.example/1.jpg'], 'url', 'cc3m'],
    [['https://x.example/1.jpg', 'a dog on a beach'], 'url', 'cc12m'],
    [['image', 'text'], 'url', 'tsv'],
    [['https://a', 'https://b'], 'url', 'tsv'],
    [['a', 'https://x', 'c'], 'url', 'tsv'],
    [['link', 'https://x.example/1.jpg'], 'link', 'tsv'],
  ];
  for (const [fields, urlCol, expected] of cases) {
    test(`${JSON.stringify(fields)} with urlCol ${urlCol} -> ${expected}`, () => {
      assert.equal(detectTsvLayout(fields, urlCol), expected);
    });
  }
});

describe('formats', () => {
  const tsv = 'url\tcaption\twidth\nhttps://a.example/1.jpg\t  first caption \t10\nhttps://a.example/2.jpg\tsecond\t20\n';

  test('tsv with header, extras kept, url and caption trimmed', async () => {
    const file = await put('fmt/a.tsv', tsv);
    const rows = await collect(options([file], { keepCols: ['width'] }));
    assert.deepEqual(rows.map(brief), [
      ['pending', 'https://a.example/1.jpg', 'first caption'],
      ['pending', 'https://a.example/2.jpg', 'second'],
    ]);
    assert.deepEqual(rows[0]!.extra, { width: '10' });
    assert.deepEqual(rows[1]!.source, { file, row: 1 });
    assert.equal(rows[1]!.key, '0000000000001');
    assert.equal(rows[0]!.reason, undefined);
    assert.equal('errorMessage' in rows[0]!, false);
  });

  test('tsv.gz reads the same as tsv', async () => {
    const file = await putGz('fmt/a.tsv.gz', tsv);
    const rows = await collect(options([file], { keepCols: ['width'] }));
    assert.deepEqual(rows.map(brief), [
      ['pending', 'https://a.example/1.jpg', 'first caption'],
      ['pending', 'https://a.example/2.jpg', 'second'],
    ]);
  });

  test('tsv with CRLF, a BOM and blank lines', async () => {
    const file = await put('fmt/crlf.tsv', '\uFEFFurl\tcaption\r\nhttps://x/1\tone\r\n\r\nhttps://x/2\ttwo\r\n');
    const rows = await collect(options([file]));
    assert.deepEqual(rows.map(brief), [
      ['pending', 'https://x/1', 'one'],
      ['pending', 'https://x/2', 'two'],
    ]);
    assert.deepEqual(rows.map((r) => r.source.row), [0, 1]);
  });

  const cc3m = 'a dog on a beach\thttps://c.example/1.jpg\nsome "quoted" caption, with comma\thttp://c.example/2.jpg\n';

  test('headerless cc3m .tsv is detected (no row lost to a header)', async () => {
    const file = await put('fmt/cc3m.tsv', cc3m);
    const rows = await collect(options([file]));
    assert.deepEqual(rows.map(brief), [
      ['pending', 'https://c.example/1.jpg', 'a dog on a beach'],
      ['pending', 'http://c.example/2.jpg', 'some "quoted" caption, with comma'],
    ]);
    assert.equal(rows[0]!.key, '0000000000000');
  });

  test('headerless cc3m .tsv.gz, and format cc3m forced on another extension', async () => {
    const gz = await putGz('fmt/cc3m-gz.tsv.gz', cc3m);
    assert.equal((await collect(options([gz]))).length, 2);
    const txt = await put('fmt/cc3m.txt', cc3m);
    const rows = await collect(options([txt], { format: 'cc3m' }));
    assert.deepEqual(rows.map((r) => r.url), ['https://c.example/1.jpg', 'http://c.example/2.jpg']);
  });

  test('headerless cc12m (url first) is detected', async () => {
    const file = await put('fmt/cc12m.tsv', 'https://d.example/1.jpg\t<PERSON> walks a dog\n');
    const rows = await collect(options([file]));
    assert.deepEqual(rows.map(brief), [['pending', 'https://d.example/1.jpg', '<PERSON> walks a dog']]);
  });

  test('a tsv header with the url column is never taken as data', async () => {
    const file = await put('fmt/hdr.tsv', 'caption\turl\nhello\thttps://e.example/1.jpg\n');
    const rows = await collect(options([file]));
    assert.deepEqual(rows.map(brief), [['pending', 'https://e.example/1.jpg', 'hello']]);
  });

  const csv =
    'id,url,caption\r\n' +
    '1,https://b.example/1.jpg,plain\r\n' +
    '2,"https://b.example/2.jpg","with ""doubled"" quotes, and a comma"\r\n' +
    '3,https://b.example/3.jpg,"two\r\nlines"\r\n' +
    '4,https://b.example/4.jpg,5" screen\r\n' +
    '5,https://b.example/5.jpg,\r\n';

  test('csv: RFC 4180 quoting, doubled quotes, newline in quotes, CRLF', async () => {
    const file = await put('fmt/b.csv', csv);
    const rows = await collect(options([file], { keepCols: ['id'] }));
    assert.deepEqual(rows.map(brief), [
      ['pending', 'https://b.example/1.jpg', 'plain'],
      ['pending', 'https://b.example/2.jpg', 'with "doubled" quotes, and a comma'],
      ['pending', 'https://b.example/3.jpg', 'two\r\nlines'],
      ['pending', 'https://b.example/4.jpg', '5" screen'],
      ['pending', 'https://b.example/5.jpg', ''],
    ]);
    assert.deepEqual(rows.map((r) => r.extra['id']), ['1', '2', '3', '4', '5']);
    assert.deepEqual(rows.map((r) => r.source.row), [0, 1, 2, 3, 4]);
  });

  test('csv.gz reads the same as csv', async () => {
    const file = await putGz('fmt/b.csv.gz', csv);
    assert.equal((await collect(options([file]))).length, 5);
  });

  const jsonl =
    '{"url":" https://j.example/1.jpg ","caption":"one","score":0.5,"nsfw":false}\n' +
    '\n' +
    '{"url":"https://j.example/2.jpg","caption":null,"score":null,"nsfw":true}\n';

  test('jsonl: values stringified, null caption -> empty, null extra -> null', async () => {
    const file = await put('fmt/c.jsonl', jsonl);
    const rows = await collect(options([file], { keepCols: ['score', 'nsfw'] }));
    assert.deepEqual(rows.map(brief), [
      ['pending', 'https://j.example/1.jpg', 'one'],
      ['pending', 'https://j.example/2.jpg', ''],
    ]);
    assert.deepEqual(rows[0]!.extra, { score: '0.5', nsfw: 'false' });
    assert.deepEqual(rows[1]!.extra, { score: null, nsfw: 'true' });
    assert.deepEqual(rows.map((r) => r.source.row), [0, 1]);
  });

  test('jsonl.gz and .json (JSON Lines) read; a JSON array file is refused', async () => {
    const gz = await putGz('fmt/c.jsonl.gz', jsonl);
    assert.equal((await collect(options([gz]))).length, 2);
    const json = await put('fmt/c.json', jsonl);
    assert.equal((await collect(options([json]))).length, 2);
    const array = await put('fmt/array.json', '[{"url":"https://x/1","caption":"a"}]\n');
    await rejectsWith(collect(options([array])), 'FILIP_ERR_MANIFEST');
  });

  test('LAION-style parquet with URL/TEXT, keepCols, null TEXT', async () => {
    const rows = laionRows(5);
    rows[2] = { ...rows[2]!, TEXT: null };
    const file = await putParquet('fmt/laion.parquet', rows, 2);
    const out = await collect(options([file], { urlCol: 'URL', captionCol: 'TEXT', keepCols: ['similarity', 'width'] }));
    assert.equal(out.length, 5);
    assert.deepEqual(out[0]!.extra, { similarity: '0.25', width: '100' });
    assert.deepEqual(brief(out[2]!), ['pending', 'https://img.example/p2.jpg', '']);
    assert.deepEqual(
      out.map((s) => [s.key, s.index, s.source.row]),
      [0, 1, 2, 3, 4].map((i) => [`0000${String(i).padStart(9, '0')}`, i, i]),
    );
    assert.equal(out[4]!.caption, 'p caption 4');
  });

  test('parquet columns match case-insensitively after exact', async () => {
    const file = await putParquet('fmt/laion-ci.parquet', laionRows(2));
    const out = await collect(options([file], { captionCol: 'text', keepCols: ['WIDTH'] }));
    assert.deepEqual(out.map(brief), [
      ['pending', 'https://img.example/p0.jpg', 'p caption 0'],
      ['pending', 'https://img.example/p1.jpg', 'p caption 1'],
    ]);
    assert.deepEqual(out[1]!.extra, { WIDTH: '101' });
  });

  test('parquet.gz is gunzipped to a temporary file and read', async () => {
    const plain = await putParquet('fmt/tmp-plain.parquet', laionRows(3));
    const { readFile } = await import('node:fs/promises');
    const file = await put('fmt/laion.parquet.gz', gzipSync(await readFile(plain)));
    const out = await collect(options([file], { urlCol: 'URL', captionCol: 'TEXT' }));
    assert.deepEqual(out.map((s) => s.url), laionRows(3).map((r) => r.URL));
  });

  test('parquetWindows splits big row groups and starts mid-group', () => {
    const meta = { row_groups: [{ num_rows: 100_000n }, { num_rows: 10n }] } as unknown as Parameters<typeof parquetWindows>[0];
    assert.deepEqual(parquetWindows(meta, 0), [
      [0, 65536],
      [65536, 100_000],
      [100_000, 100_010],
    ]);
    assert.deepEqual(parquetWindows(meta, 99_999), [
      [99_999, 100_000],
      [100_000, 100_010],
    ]);
    assert.deepEqual(parquetWindows(meta, 100_005), [[100_005, 100_010]]);
  });

  test('readParquetRows reads windows inside one row group of many pages, from any start', async () => {
    const file = await putParquet('fmt/one-group.parquet', laionRows(10, 'w'), 100, 2);
    const open = await openParquet(file);
    try {
      assert.equal(open.metadata.row_groups.length, 1);
      const seen: Array<[number, string[]]> = [];
      for await (const { rowStart, rows } of readParquetRows(file, open, ['URL'], 4, 3)) {
        seen.push([rowStart, rows.map((r) => String(r['URL']).replace('https://img.example/', ''))]);
      }
      assert.deepEqual(seen, [
        [4, ['w4.jpg', 'w5.jpg', 'w6.jpg']],
        [7, ['w7.jpg', 'w8.jpg', 'w9.jpg']],
      ]);
    } finally {
      await open.close();
    }
  });
});

describe('files, order, keys and resume', () => {
  let folder: string;
  before(async () => {
    folder = join(dir, 'tree');
    await put('tree/b.tsv', 'url\tcaption\nhttps://t/b0\tb0\nhttps://t/b1\tb1\n');
    await put('tree/a.csv', 'url,caption\nhttps://t/a0,a0\nhttps://t/a1,a1\nhttps://t/a2,a2\n');
    await put('tree/sub/c.jsonl', '{"url":"https://t/c0","caption":"c0"}\n');
    await put('tree/sub/deeper/d.tsv.gz', gzipSync('url\tcaption\nhttps://t/d0\td0\n'));
    await put('tree/readme.txt', 'not a manifest');
    await put('tree/.hidden.tsv', 'url\tcaption\nhttps://t/h\th\n');
    await put('tree/_SUCCESS', '');
  });

  test('folders are listed recursively, known extensions only, sorted', async () => {
    const files = await listManifestFiles([folder]);
    assert.deepEqual(files, [
      join(folder, 'a.csv'),
      join(folder, 'b.tsv'),
      join(folder, 'sub', 'c.jsonl'),
      join(folder, 'sub', 'deeper', 'd.tsv.gz'),
    ]);
    // The order does not depend on the order of the inputs, and a file named twice counts once.
    const again = await listManifestFiles([join(folder, 'sub'), join(folder, 'b.tsv'), join(folder, 'a.csv'), folder]);
    assert.deepEqual(again, files);
  });

  test('keys, index and source across files', async () => {
    const rows = await collect(options([folder]));
    assert.deepEqual(
      rows.map((r) => [r.key, r.index, r.source.file.slice(folder.length + 1), r.source.row, r.caption]),
      [
        ['0000000000000', 0, 'a.csv', 0, 'a0'],
        ['0000000000001', 1, 'a.csv', 1, 'a1'],
        ['0000000000002', 2, 'a.csv', 2, 'a2'],
        ['0001000000000', 3, 'b.tsv', 0, 'b0'],
        ['0001000000001', 4, 'b.tsv', 1, 'b1'],
        ['0002000000000', 5, join('sub', 'c.jsonl'), 0, 'c0'],
        ['0003000000000', 6, join('sub', 'deeper', 'd.tsv.gz'), 0, 'd0'],
      ],
    );
  });

  test('startIndex skips within the first file and into later files', async () => {
    const all = await collect(options([folder]));
    for (const start of [0, 1, 3, 4, 6, 7, 100]) {
      const rows = await collect(options([folder]), start);
      assert.deepEqual(rows, all.slice(start), `startIndex ${start}`);
    }
  });

  test('startIndex in parquet: whole files and row groups skipped, keys unchanged', async () => {
    const p1 = await putParquet('pq/1.parquet', laionRows(7, 'x'), 3);
    const p2 = await putParquet('pq/2.parquet', laionRows(5, 'y'), 2);
    const o = options([join(dir, 'pq')], { urlCol: 'URL', captionCol: 'TEXT', keepCols: ['width'] });
    const all = await collect(o);
    assert.equal(all.length, 12);
    assert.deepEqual(all.map((s) => s.source.file), [...Array(7).fill(p1), ...Array(5).fill(p2)]);
    for (const start of [1, 3, 4, 7, 8, 11, 12]) {
      assert.deepEqual(await collect(o, start), all.slice(start), `startIndex ${start}`);
    }
    assert.equal(all[9]!.key, '0001000000002');
    assert.equal(await countManifestRows([p1, p2]), 12);
  });

  test('a consumer may stop early', async () => {
    let n = 0;
    for await (const s of readManifests(options([folder]))) {
      n++;
      if (s.index === 3) break;
    }
    assert.equal(n, 4);
  });
});

describe('malformed rows are data', () => {
  // `url`: the URL the reject keeps, when it came before the fault.
  const cases: Array<{ name: string; file: string; content: string; bad: number[]; field?: string; keepCols?: string[]; url?: string }> = [
    {
      name: 'csv text after a closing quote',
      file: 'bad/quote-after.csv',
      content: 'url,caption\nhttps://m/0,ok\nhttps://m/1,"broken"x\nhttps://m/2,fine\n',
      bad: [1],
      field: 'caption',
      url: 'https://m/1',
    },
    {
      name: 'csv unterminated quote (resyncs on the next line)',
      file: 'bad/unterminated.csv',
      content: 'url,caption\nhttps://m/0,ok\nhttps://m/1,"never closed\nhttps://m/2,fine\nhttps://m/3,also fine\n',
      bad: [1],
      field: 'caption',
      url: 'https://m/1',
    },
    {
      name: 'csv unterminated quote in the url column (nothing parsed before it)',
      file: 'bad/unterminated-url.csv',
      content: 'url,caption\nhttps://m/0,ok\n"https://m/1,never closed\nhttps://m/2,fine\n',
      bad: [1],
      field: 'url',
      url: '',
    },
    {
      name: 'tsv http URL that does not parse',
      file: 'bad/unparseable-url.tsv',
      content: 'url\tcaption\nhttps://m/0\tok\nhttp://exa mple.com:99999/x.jpg\tbad host and port\nhttps://m/2\tfine\n',
      bad: [1],
      field: 'url',
    },
    {
      name: 'csv too few fields',
      file: 'bad/few.csv',
      content: 'url,caption,width\nhttps://m/0,ok,1\nhttps://m/1,short\nhttps://m/2,fine,3\n',
      bad: [1],
      field: 'width',
      keepCols: ['width'],
    },
    {
      name: 'csv empty url',
      file: 'bad/empty-url.csv',
      content: 'url,caption\nhttps://m/0,ok\n  ,no url\nhttps://m/2,fine\n',
      bad: [1],
      field: 'url',
    },
    {
      name: 'tsv too few fields',
      file: 'bad/few.tsv',
      content: 'url\tcaption\nhttps://m/0\tok\nhttps://m/1\nhttps://m/2\tfine\n',
      bad: [1],
      field: 'caption',
    },
    {
      name: 'tsv too many fields',
      file: 'bad/many.tsv',
      content: 'url\tcaption\nhttps://m/0\tok\nhttps://m/1\ta\tb\nhttps://m/2\tfine\n',
      bad: [1],
    },
    {
      name: 'cc3m line without a tab',
      file: 'bad/cc3m.tsv',
      content: 'a caption\thttps://m/0\njust text\nanother\thttps://m/2\n',
      bad: [1],
      field: 'url',
    },
    {
      name: 'jsonl invalid JSON',
      file: 'bad/invalid.jsonl',
      content: '{"url":"https://m/0","caption":"ok"}\n{"url": oops}\n{"url":"https://m/2","caption":"fine"}\n',
      bad: [1],
    },
    {
      name: 'jsonl line that is not an object',
      file: 'bad/array-line.jsonl',
      content: '{"url":"https://m/0","caption":"ok"}\n["https://m/1","x"]\n42\n{"url":"https://m/3","caption":"fine"}\n',
      bad: [1, 2],
    },
    {
      name: 'jsonl url not a string',
      file: 'bad/url-number.jsonl',
      content: '{"url":"https://m/0","caption":"ok"}\n{"url":12,"caption":"x"}\n{"url":"https://m/2","caption":"fine"}\n',
      bad: [1],
      field: 'url',
    },
    {
      name: 'jsonl url null',
      file: 'bad/url-null.jsonl',
      content: '{"url":"https://m/0","caption":"ok"}\n{"url":null,"caption":"x"}\n{"url":"https://m/2","caption":"fine"}\n',
      bad: [1],
      field: 'url',
    },
    {
      name: 'jsonl missing url key',
      file: 'bad/no-url.jsonl',
      content: '{"url":"https://m/0","caption":"ok"}\n{"caption":"x"}\n{"url":"https://m/2","caption":"fine"}\n',
      bad: [1],
      field: 'url',
    },
    {
      name: 'jsonl missing keepCol key',
      file: 'bad/no-keep.jsonl',
      content: '{"url":"https://m/0","caption":"ok","w":1}\n{"url":"https://m/1","caption":"x"}\n{"url":"https://m/2","caption":"fine","w":2}\n',
      bad: [1],
      field: 'w',
      keepCols: ['w'],
    },
    {
      name: 'jsonl caption is an object',
      file: 'bad/caption-object.jsonl',
      content: '{"url":"https://m/0","caption":"ok"}\n{"url":"https://m/1","caption":{"en":"x"}}\n{"url":"https://m/2","caption":"fine"}\n',
      bad: [1],
      field: 'caption',
    },
    {
      name: 'a line longer than the record limit',
      file: 'bad/long.tsv',
      content: `url\tcaption\nhttps://m/0\tok\nhttps://m/1\t${'x'.repeat(MAX_RECORD_CHARS + 10)}\nhttps://m/2\tfine\n`,
      bad: [1],
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const file = await put(c.file, c.content);
      const rows = await collect(options([file], { keepCols: c.keepCols ?? [] }));
      const rejected = rows.filter((r) => r.status === 'rejected');
      assert.deepEqual(
        rejected.map((r) => r.source.row),
        c.bad,
      );
      for (const r of rejected) {
        assert.equal(r.reason, 'malformed_row');
        assert.ok(r.errorMessage!.includes(file), r.errorMessage);
        assert.ok(r.errorMessage!.includes(`row ${r.source.row}`), r.errorMessage);
        if (c.field !== undefined) assert.ok(r.errorMessage!.includes(`field "${c.field}"`), r.errorMessage);
        if (c.url !== undefined) assert.equal(r.url, c.url, 'the reject keeps the URL when it parsed');
      }
      // Every other row is read, the last good one included, with rows and keys in sequence.
      assert.ok(rows.length >= c.bad.length + 2);
      assert.deepEqual(
        rows.map((r) => r.source.row),
        rows.map((_, i) => i),
      );
      const last = rows.at(-1)!;
      assert.equal(last.status, 'pending');
      assert.match(last.url, /^https:\/\/m\/\d$/);
    });
  }

  test('parquet null and empty URLs are malformed, the rest read', async () => {
    const rows = laionRows(4);
    rows[1] = { ...rows[1]!, URL: null };
    rows[2] = { ...rows[2]!, URL: '   ' };
    const file = await putParquet('bad/null-url.parquet', rows);
    const out = await collect(options([file], { urlCol: 'URL', captionCol: 'TEXT' }));
    assert.deepEqual(out.map((s) => s.status), ['pending', 'rejected', 'rejected', 'pending']);
    assert.ok(out[1]!.errorMessage!.includes(`${file}, row 1, field "URL"`), out[1]!.errorMessage);
  });

  test('CsvParser: a stray quote costs one row, even inside a long run of lines', () => {
    const parser = new CsvParser();
    const out: TextRecord[] = [];
    const lines = ['a,"open', ...Array.from({ length: 5000 }, (_, i) => `b${i},c`)];
    lines.forEach((text, i) => parser.push({ text, number: i + 1, offset: 0, overflow: false }, out));
    parser.end(out);
    assert.equal(out.length, 5001);
    assert.equal(out[0]!.error !== undefined, true);
    assert.deepEqual(out[1]!.fields, ['b0', 'c']);
    assert.deepEqual(out[5000]!.fields, ['b4999', 'c']);
  });
});

describe('file-level errors', () => {
  const missing: Array<[string, string, string, Partial<ManifestOptions>]> = [
    ['csv', 'miss/a.csv', 'link,text\nhttps://x,y\n', {}],
    ['tsv', 'miss/a.tsv', 'link\ttext\nhttps://x\ty\n', {}],
    ['csv keepCols', 'miss/k.csv', 'url,caption\nhttps://x,y\n', { keepCols: ['width'] }],
    // JSON Lines: the first object's keys play the header.
    ['jsonl', 'miss/a.jsonl', '{"link":"https://x","text":"y"}\n{"link":"https://z","text":"w"}\n', {}],
    ['jsonl keepCols', 'miss/k.jsonl', '{"url":"https://x","caption":"y"}\n', { keepCols: ['width'] }],
  ];
  for (const [name, path, content, extra] of missing) {
    test(`missing column: ${name}`, async () => {
      const file = await put(path, content);
      const err = await rejectsWith(collect(options([file], extra)), 'FILIP_ERR_MISSING_COLUMN');
      assert.ok(err.message.includes(file));
      const present = name.endsWith('keepCols') ? ['"url"', '"caption"'] : ['"link"', '"text"'];
      for (const column of present) assert.ok(err.message.includes(column), err.message);
      // The role of the missing column in words, not an option's name (urlCol, keepCols).
      assert.match(err.message, name.endsWith('keepCols') ? /"width" \(a column to keep\)/ : /"url" \(the URL column\)/);
    });
  }

  test('missing column: parquet lists its schema', async () => {
    const file = await putParquet('miss/laion.parquet', laionRows(2));
    const err = await rejectsWith(collect(options([file], { captionCol: 'caption_en' })), 'FILIP_ERR_MISSING_COLUMN');
    assert.ok(err.message.includes(file));
    for (const column of ['"URL"', '"TEXT"', '"similarity"', '"width"']) assert.ok(err.message.includes(column), err.message);
  });

  test('jsonl: a key only some rows lack is a malformed row, not a file error', async () => {
    const file = await put('miss/sparse.jsonl', '{"url":"https://x/1","caption":"one"}\n{"url":"https://x/2"}\n{"URL":"https://x/3","Caption":"three"}\n');
    const rows = await collect(options([file]));
    assert.deepEqual(rows.map((r) => r.status), ['pending', 'rejected', 'pending']);
    assert.equal(rows[1]!.reason, 'malformed_row');
  });

  test('a missing column in a later file stops the run before any row is yielded', async () => {
    const good = await put('late/a.tsv', 'url\tcaption\nhttps://x\ty\n');
    await put('late/b.tsv', 'link\ttext\nhttps://x\ty\n');
    const it = readManifests(options([join(dir, 'late')]));
    await rejectsWith(it.next(), 'FILIP_ERR_MISSING_COLUMN');
    assert.ok(good);
  });

  test('no input', async () => {
    await rejectsWith(listManifestFiles([]), 'FILIP_ERR_NO_INPUT');
    const nowhere = join(dir, 'does-not-exist');
    const err = await rejectsWith(listManifestFiles([nowhere]), 'FILIP_ERR_NO_INPUT');
    assert.ok(err.message.includes(nowhere));
    await mkdir(join(dir, 'empty-folder', 'sub'), { recursive: true });
    await put('empty-folder/notes.txt', 'x');
    const empty = join(dir, 'empty-folder');
    const err2 = await rejectsWith(collect(options([empty])), 'FILIP_ERR_NO_INPUT');
    assert.ok(err2.message.includes(empty));
  });

  test('unreadable files: corrupt gzip, corrupt parquet, unknown extension', async () => {
    const gz = await put('broken/a.tsv.gz', Buffer.concat([gzipSync('url\tcaption\n'), Buffer.from('garbage')]).subarray(0, 30));
    const gzErr = await rejectsWith(collect(options([gz])), 'FILIP_ERR_MANIFEST');
    assert.ok(gzErr.message.includes(gz));
    const pq = await put('broken/a.parquet', 'PAR1 this is not parquet at all');
    const pqErr = await rejectsWith(collect(options([pq])), 'FILIP_ERR_MANIFEST');
    assert.ok(pqErr.message.includes(pq));
    const txt = await put('broken/a.txt', 'url\tcaption\n');
    await rejectsWith(collect(options([txt])), 'FILIP_ERR_MANIFEST');
  });

  test('a gzip stream that breaks mid-file is a FILIP_ERR_MANIFEST, not a crash', async () => {
    const lines = Array.from({ length: 20000 }, (_, i) => `https://x/${i}\tcaption number ${i} ${Math.random()}`).join('\n');
    const whole = gzipSync(`url\tcaption\n${lines}\n`);
    const file = await put('broken/truncated.tsv.gz', whole.subarray(0, Math.floor(whole.length * 0.8)));
    await rejectsWith(collect(options([file])), 'FILIP_ERR_MANIFEST');
  });

  test('an empty file has no rows', async () => {
    const file = await put('empty/a.csv', '');
    assert.deepEqual(await collect(options([file])), []);
  });
});

describe('countManifestRows', () => {
  test('parquet from footers, small text by reading, gz text unknown', async () => {
    const p = await putParquet('count/a.parquet', laionRows(6), 4);
    const t = await put('count/b.csv', 'url,caption\nhttps://x/1,"a\nb"\n\nhttps://x/2,c\n');
    const cc = await put('count/c.tsv', 'cap\thttps://x/1\ncap2\thttps://x/2\n');
    assert.equal(await countManifestRows([p]), 6);
    assert.equal(await countManifestRows([p, t, cc]), 10);
    const gz = await putGz('count/d.tsv.gz', 'url\tcaption\nhttps://x\ty\n');
    assert.equal(await countManifestRows([p, gz]), undefined);
    // The count is the number of rows the reader yields.
    assert.equal(await countManifestRows([t, cc]), (await collect(options([t, cc]))).length);
  });
});

describe('streaming', () => {
  test('1,000,000-row gzipped TSV reads end to end in flat memory', async () => {
    const n = 1_000_000;
    const file = join(dir, 'big.tsv.gz');
    const gzip = createGzip({ level: 1 });
    const sink = createWriteStream(file);
    gzip.pipe(sink);
    gzip.write('url\tcaption\n');
    const block: string[] = [];
    for (let i = 0; i < n; i++) {
      block.push(`https://img.example.com/some/longish/path/${i}.jpg\ta moderately long caption for row ${i} of the big manifest`);
      if (block.length === 10_000) {
        if (!gzip.write(block.join('\n') + '\n')) await once(gzip, 'drain');
        block.length = 0;
      }
    }
    gzip.end();
    await once(sink, 'close');

    const baseline = process.memoryUsage().heapUsed;
    let peakGrowth = 0;
    let count = 0;
    let lastIndex = -1;
    for await (const s of readManifests(options([file]))) {
      if (s.index !== lastIndex + 1 || s.status !== 'pending') assert.fail(`unexpected sample ${JSON.stringify(s)}`);
      lastIndex = s.index;
      count++;
      if (count % 50_000 === 0) peakGrowth = Math.max(peakGrowth, process.memoryUsage().heapUsed - baseline);
    }
    assert.equal(count, n);
    assert.ok(peakGrowth < 150 * 1024 * 1024, `heap grew by ${Math.round(peakGrowth / 1048576)} MB`);
  });
});
