// The on-disk translation cache: entries survive a reopen, files are per engine and pivot, a torn last
// line (a killed run) is ignored and cut so later appends stay readable, failures are never stored.
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { FilipError } from '../src/core/errors.js';
import { TranslationCache } from '../src/translate/cache.js';
import { normalizeForTranslation } from '../src/translate/engine.js';

let root: string;
let n = 0;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'filip-tcache-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});
const freshDir = () => join(root, `c${n++}`);

test('entries put in one run are there after a reopen, per engine and pivot', async () => {
  const dir = freshDir();
  const a = new TranslationCache(dir);
  await a.load('apertium', 'spa');
  await a.put('apertium', 'spa', [['a dog', 'A dog'], ['a "quoted"\\ cat', 'A cat']]);
  await a.put('marian', 'deu', [['a dog', 'a hound']]);
  await a.close();

  const b = new TranslationCache(dir);
  await b.load('apertium', 'spa');
  await b.load('marian', 'deu');
  await b.load('apertium', 'cat');
  assert.equal(b.get('apertium', 'spa', 'a dog'), 'A dog');
  assert.equal(b.get('apertium', 'spa', 'a "quoted"\\ cat'), 'A cat');
  assert.equal(b.get('marian', 'deu', 'a dog'), 'a hound');
  assert.equal(b.get('apertium', 'cat', 'a dog'), undefined);
  assert.equal(b.get('apertium', 'spa', 'A dog'), undefined, 'case is part of the key');
  await b.close();
  assert.deepEqual((await readdir(dir)).sort(), ['apertium.cat.jsonl', 'apertium.spa.jsonl', 'marian.deu.jsonl']);
});

test('a torn last line is ignored, cut off, and the next append starts a clean line', async () => {
  const dir = freshDir();
  const a = new TranslationCache(dir);
  await a.load('apertium', 'spa');
  await a.put('apertium', 'spa', [['one', 'One'], ['two', 'Two']]);
  await a.close();
  const file = join(dir, 'apertium.spa.jsonl');
  await appendFile(file, '["three", "Thr'); // killed mid-write

  const b = new TranslationCache(dir);
  await b.load('apertium', 'spa');
  assert.equal(b.get('apertium', 'spa', 'one'), 'One');
  assert.equal(b.get('apertium', 'spa', 'two'), 'Two');
  assert.equal(b.get('apertium', 'spa', 'three'), undefined);
  await b.put('apertium', 'spa', [['four', 'Four']]);
  await b.close();

  const lines = (await readFile(file, 'utf8')).split('\n');
  assert.equal(lines.at(-1), '', 'the file ends with a newline');
  for (const line of lines.slice(0, -1)) JSON.parse(line); // every line whole
  const c = new TranslationCache(dir);
  await c.load('apertium', 'spa');
  assert.equal(c.get('apertium', 'spa', 'four'), 'Four');
  assert.equal(c.size('apertium', 'spa'), 3);
  await c.close();
});

test('a complete but unreadable line is skipped, the rest loads', async () => {
  const dir = freshDir();
  const a = new TranslationCache(dir);
  await a.load('http', 'deu');
  await a.close();
  await writeFile(join(dir, 'http.deu.jsonl'), '["a", "A"]\n{"not": "an entry"}\nnot json\n["b", "B"]\n');
  const b = new TranslationCache(dir);
  await b.load('http', 'deu');
  assert.equal(b.size('http', 'deu'), 2);
  assert.equal(b.get('http', 'deu', 'b'), 'B');
  await b.close();
});

test('a repeated put does not grow the file; the in-memory cache writes nothing', async () => {
  const dir = freshDir();
  const a = new TranslationCache(dir);
  await a.load('apertium', 'spa');
  await a.put('apertium', 'spa', [['x', 'X']]);
  await a.put('apertium', 'spa', [['x', 'X']]);
  await a.close();
  assert.equal((await readFile(join(dir, 'apertium.spa.jsonl'), 'utf8')).split('\n').length, 2);

  const mem = new TranslationCache(null);
  await mem.load('apertium', 'spa');
  await mem.put('apertium', 'spa', [['x', 'X']]);
  assert.equal(mem.get('apertium', 'spa', 'x'), 'X');
  assert.equal(mem.file('apertium', 'spa'), null);
  await mem.close();
});

test('a cache folder that cannot be made is FILIP_ERR_TRANSLATOR naming the file', async () => {
  const blocker = join(root, 'a-file');
  await writeFile(blocker, 'x');
  const c = new TranslationCache(join(blocker, 'sub'));
  await assert.rejects(c.load('apertium', 'spa'), (err: unknown) => {
    assert.ok(err instanceof FilipError);
    assert.equal(err.code, 'FILIP_ERR_TRANSLATOR');
    assert.match(err.file ?? '', /apertium\.spa\.jsonl$/);
    return true;
  });
});

test('normalisation: whitespace runs, line breaks, NULs and ends collapse; case and punctuation stay', () => {
  const table: [string, string][] = [
    ['  a   dog\t on\nthe beach ', 'a dog on the beach'],
    ['a\u00a0dog', 'a dog'],
    ['a\0dog', 'a dog'],
    ['A Dog!', 'A Dog!'],
    ['', ''],
    [' \n\t ', ''],
  ];
  for (const [input, want] of table) assert.equal(normalizeForTranslation(input), want, JSON.stringify(input));
});
