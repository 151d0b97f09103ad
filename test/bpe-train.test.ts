// Learning merges from shard captions: the merge order worked out by hand on a small corpus, the
// stopping rules, shards in and a merges file out that the tokenizer loads, determinism, bad inputs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { FilipError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/random.js';
import { trainingShardColumns, type ShardRow } from '../src/shard/schema.js';
import { openShardWriter } from '../src/shard/writer.js';
import { trainBpe, trainTokenizer, WordCounts } from '../src/train/bpe-train.js';
import { BpeTokenizer } from '../src/train/tokenizer.js';

const CLI = fileURLToPath(new URL('../bin/filip.js', import.meta.url));

function counts(texts: string[]): Map<string, number> {
  const c = new WordCounts();
  for (const t of texts) c.add(t);
  return c.counts;
}

const repeat = (word: string, n: number) => Array<string>(n).fill(word);
// Sennrich et al.'s example: low x5, lower x2, newest x6, widest x3.
const CLASSIC = [...repeat('low', 5), ...repeat('lower', 2), ...repeat('newest', 6), ...repeat('widest', 3)];
const OPTS = { vocabSize: 49408, minPairCount: 2, onProgress: undefined, progressEvery: 1000 };

describe('trainBpe', () => {
  test('learns the merges worked out by hand, most frequent pair first', () => {
    // Pair counts (weighted by word count): e+s 9, s+t</w> 9, w+e 8, l+o 7, ... Ties go to the pair
    // whose left symbol was created first: bytes in CLIP's order ("e" < "n" < "s" < "w"), merges after them.
    const want = [
      'e s', //         9 (ties with s t</w>; "e" is before "s")
      'es t</w>', //    9
      'l o', //         7
      'e w', //         6 (ties with n e and w est</w>; "e" first)
      'n ew', //        6 (ties with ew est</w>; "n" is a byte, "ew" a merge)
      'new est</w>', // 6
      'lo w</w>', //    5
      'd est</w>', //   3 (ties with w i, i d; "d" first)
      'i dest</w>', //  3
      'w idest</w>', // 3
      'e r</w>', //     2 (ties with lo w, w e; "e" first)
      'w er</w>', //    2
      'lo wer</w>', //  2
    ];
    const r = trainBpe(counts(CLASSIC), OPTS);
    assert.deepEqual(r.merges.map((m) => m.join(' ')), want);
    assert.equal(r.stoppedBy, 'no_frequent_pair');
    assert.equal(r.vocabSize, 512 + want.length + 2);
    // every word is now one token
    const tok = BpeTokenizer.fromMerges(r.merges);
    for (const w of ['low', 'lower', 'newest', 'widest']) assert.equal(tok.encode(w).length, 1, w);
  });

  test('stops at the vocabulary size asked for', () => {
    const r = trainBpe(counts(CLASSIC), { ...OPTS, vocabSize: 512 + 3 + 2 });
    assert.deepEqual(r.merges.map((m) => m.join(' ')), ['e s', 'es t</w>', 'l o']);
    assert.equal(r.stoppedBy, 'vocab_size');
    assert.equal(r.vocabSize, 517);
  });

  test('a pair seen once is never merged; minPairCount raises the bar', () => {
    assert.deepEqual(trainBpe(counts(['abc def']), OPTS).merges, []);
    const r = trainBpe(counts(CLASSIC), { ...OPTS, minPairCount: 6 });
    assert.deepEqual(r.merges.map((m) => m.join(' ')), ['e s', 'es t</w>', 'l o', 'e w', 'n ew', 'new est</w>']);
  });

  test('uses the tokenizer\'s pre-tokenization: digits, contractions, punctuation runs, case', () => {
    const r = trainBpe(counts([...repeat("DON'T 2019 !!!", 3)]), OPTS);
    const tok = BpeTokenizer.fromMerges(r.merges);
    // "don" and "'t" are words of their own; digits are single-byte words (nothing to merge); "!!!" is one word
    assert.equal(tok.encode("don't 2019 !!!").length, 2 + 4 + 1);
    assert.ok(!r.merges.some(([a, b]) => /\d/.test(a + b)), 'no merge joins digits');
    assert.ok(!r.merges.some(([a, b]) => (a + b).includes('n\'')), 'no merge crosses a contraction');
  });

  test('the same words in any order give the same merges', () => {
    const rnd = mulberry32(11);
    const words = ['a', 'red', 'circle', 'on', 'the', 'left', 'of', 'blue', 'square', 'large', 'small', 'green', 'triangle'];
    const texts = Array.from({ length: 400 }, () => Array.from({ length: 6 }, () => words[Math.floor(rnd() * words.length)]).join(' '));
    const shuffled = [...texts];
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    const a = trainBpe(counts(texts), OPTS);
    const b = trainBpe(counts(shuffled), OPTS);
    assert.ok(a.merges.length > 20);
    assert.deepEqual(a.merges, b.merges);
  });
});

// ---- shards in, merges file out ----

const COLUMNS = trainingShardColumns([], 0);

function row(i: number, caption: string, backTranslations: string[]): ShardRow {
  return {
    key: String(i).padStart(13, '0'),
    url: `http://127.0.0.1/${i}.jpg`,
    caption,
    image: Buffer.from([0xff, 0xd8, 0xff, 0xd9]),
    image_format: 'jpeg',
    width: 1,
    height: 1,
    original_width: 1,
    original_height: 1,
    sha256: '0'.repeat(64),
    phash: '0'.repeat(16),
    source: `m.tsv:${i}`,
    back_translations: JSON.stringify(backTranslations.map((text) => ({ pivot: 'deu', engine: 'apertium', text }))),
    translation_failures: '[]',
  };
}

async function writeShard(file: string, rows: ShardRow[]): Promise<void> {
  const w = await openShardWriter(file, COLUMNS, 'lean');
  for (const r of rows) await w.write(r);
  await w.close();
}

let dir: string;
let shards: string;
const CAPTIONS = [
  'a large yellow triangle on the left',
  'a small red circle to the right of a blue square',
  'A photo of a green star',
  "the dog's ball, 2019!!!",
];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'filip-bpe-'));
  shards = join(dir, 'shards');
  await mkdir(join(shards, 'part'), { recursive: true });
  const rows: ShardRow[] = [];
  for (let i = 0; i < 60; i++) {
    // "zebracorn" is only in the back-translations: it can be learned only if they are read
    rows.push(row(i, CAPTIONS[i % CAPTIONS.length]!, i % 2 === 0 ? ['a zebracorn in a field'] : []));
  }
  await writeShard(join(shards, '00000.parquet'), rows.slice(0, 30));
  await writeShard(join(shards, 'part', '00001.parquet'), rows.slice(30));
  await writeFile(join(shards, '00000_stats.json'), '{}'); // other files are ignored
});
after(() => rm(dir, { recursive: true, force: true }));

describe('trainTokenizer (shards -> merges file)', () => {
  test('an output path under a file is FILIP_ERR_TOKENIZER naming it, not a raw ENOTDIR', async () => {
    await writeFile(join(dir, 'a-file'), 'x');
    const out = join(dir, 'a-file', 'merges.txt');
    await assert.rejects(trainTokenizer({ shards, out, vocabSize: 600 }), (e: unknown) => {
      assert.ok(e instanceof FilipError && e.code === 'FILIP_ERR_TOKENIZER' && e.file === out, String(e));
      assert.match(e.message, /cannot write the merges file/);
      return true;
    });
  });

  test('reads captions and back-translations, writes a merges file the tokenizer loads', async () => {
    const out = join(dir, 'out', 'merges.txt.gz');
    const s = await trainTokenizer({ shards, out, vocabSize: 49408 });
    assert.equal(s.files, 2);
    assert.equal(s.rows, 60);
    assert.equal(s.texts, 60 + 30, 'captions plus the back-translations');
    assert.equal(s.stoppedBy, 'no_frequent_pair', 'the data supports far fewer than 49,408');
    assert.equal(s.vocabSize, 512 + s.merges.length + 2);

    const text = zlib.gunzipSync(await readFile(out)).toString('utf8');
    const lines = text.split('\n');
    assert.equal(lines[0], '#version: 0.2');
    assert.equal(lines.length, 1 + s.merges.length + 1, 'header, one line per merge, final newline');

    const tok = await BpeTokenizer.fromMergesFile(out);
    assert.equal(tok.vocabSize, s.vocabSize);
    assert.deepEqual(tok.merges, s.merges);
    // frequent words became single tokens, the back-translation's word too
    for (const w of ['triangle', 'circle', 'square', 'zebracorn']) assert.equal(tok.encode(w).length, 1, w);
    // words never seen still encode, as bytes
    assert.equal(tok.decode(tok.encode('quixotic')), 'quixotic ');
    assert.equal(tok.decode(tok.encode(CAPTIONS[0]!)), `${CAPTIONS[0]} `);
  });

  test('training twice gives the same file, byte for byte; a plain .txt name is not gzipped', async () => {
    const a = join(dir, 'a.txt');
    const b = join(dir, 'b.txt');
    await trainTokenizer({ shards, out: a });
    await trainTokenizer({ shards, out: b });
    const bytes = await readFile(a);
    assert.deepEqual(bytes, await readFile(b));
    assert.ok(bytes.toString('utf8').startsWith('#version: 0.2\n'));
  });

  test('a small vocabulary size caps the merges', async () => {
    const s = await trainTokenizer({ shards, out: join(dir, 'small.txt'), vocabSize: 520 });
    assert.equal(s.merges.length, 6);
    assert.equal(s.vocabSize, 520);
    assert.equal(s.stoppedBy, 'vocab_size');
  });

  const bad: [string, () => Promise<unknown>, string][] = [
    ['vocabulary below 514', () => trainTokenizer({ shards, out: join(dir, 'x.txt'), vocabSize: 513 }), 'FILIP_ERR_INVALID_OPTION'],
    ['minPairCount below 2', () => trainTokenizer({ shards, out: join(dir, 'x.txt'), minPairCount: 1 }), 'FILIP_ERR_INVALID_OPTION'],
    ['unknown option', () => trainTokenizer({ shards, out: join(dir, 'x.txt'), vocab: 600 } as never), 'FILIP_ERR_INVALID_OPTION'],
    ['no out', () => trainTokenizer({ shards, out: '' }), 'FILIP_ERR_INVALID_OPTION'],
    ['missing folder', () => trainTokenizer({ shards: join(dir, 'nope'), out: join(dir, 'x.txt') }), 'FILIP_ERR_NO_INPUT'],
    ['folder without shards', () => trainTokenizer({ shards: join(dir, 'out'), out: join(dir, 'x.txt') }), 'FILIP_ERR_NO_INPUT'],
  ];
  for (const [name, run, code] of bad) {
    test(`${name} -> ${code}`, async () => {
      await assert.rejects(run(), (e: FilipError) => e.code === code);
    });
  }

  test('a broken back_translations cell -> FILIP_ERR_SHARD naming file, row and column', async () => {
    const broken = join(dir, 'broken');
    await mkdir(broken);
    const file = join(broken, '00000.parquet');
    await writeShard(file, [row(0, 'ok', []), { ...row(1, 'bad', []), back_translations: '[{"text": ' }]);
    await assert.rejects(trainTokenizer({ shards: broken, out: join(dir, 'x.txt') }), (e: FilipError) => {
      assert.equal(e.code, 'FILIP_ERR_SHARD');
      assert.equal(e.file, file);
      assert.equal(e.row, 1);
      assert.equal(e.field, 'back_translations');
      return true;
    });
  });
});

describe('filip tokenizer (CLI)', () => {
  test('train writes the file and reports the final size; encode uses it', () => {
    const out = join(dir, 'cli.txt.gz');
    const r = spawnSync(process.execPath, [CLI, 'tokenizer', 'train', '--shards', shards, '--out', out, '--vocab-size', '49408'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    const size = /vocabulary size (\d+) \(asked for 49408\)/.exec(r.stdout);
    assert.ok(size, r.stdout);
    const e = spawnSync(process.execPath, [CLI, 'tokenizer', 'encode', '--merges', out, 'a large triangle'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(e.status, 0, e.stderr);
    const line = JSON.parse(e.stdout) as { ids: number[]; pieces: string[] };
    assert.deepEqual(line.pieces, ['<|startoftext|>', 'a</w>', 'large</w>', 'triangle</w>', '<|endoftext|>']);
    assert.equal(line.ids[0], Number(size[1]) - 2);
    assert.equal(line.ids.at(-1), Number(size[1]) - 1);
  });

  test('an error prints its code and exits 2', () => {
    const r = spawnSync(process.execPath, [CLI, 'tokenizer', 'encode', '--merges', join(dir, 'nope.txt'), 'x'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /FILIP_ERR_TOKENIZER/);
  });
});
