// The Marian engine (opus-mt ONNX models through transformers.js): missing model files are named
// before anything loads, a missing transformers.js says what to install, broken files are
// FILIP_ERR_TRANSLATOR. A real translation runs only where FILIP_MARIAN_DIR points at a model folder.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';

import { FilipError } from '../src/core/errors.js';
import { createBackTranslator } from '../src/translate/backtranslate.js';
import {
  MarianTranslator,
  checkMarianFiles,
  loadTransformers,
  marianModelName,
  marianRequiredFiles,
  resolveMarianOptions,
} from '../src/translate/marian.js';
import { captionSamples } from '../src/translate/measure.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'filip-marian-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A model folder for from -> to holding every required file except `leave` (contents are junk). */
async function modelDir(name: string, from: string, to: string, leave: readonly string[], dtype: 'fp32' | 'q8' = 'fp32') {
  const dir = join(root, name);
  for (const f of marianRequiredFiles(dtype)) {
    if (leave.includes(f)) continue;
    const p = join(dir, marianModelName(from, to), f);
    await mkdir(dirname(p), { recursive: true });
    await writeFile(p, f.endsWith('.json') ? '{}' : 'not an onnx graph');
  }
  await mkdir(dir, { recursive: true });
  return dir;
}

test('model folder names use the two-letter codes of opus-mt', () => {
  assert.equal(marianModelName('eng', 'deu'), 'opus-mt-en-de');
  assert.equal(marianModelName('rus', 'eng'), 'opus-mt-ru-en');
});

test('FILIP_ERR_MODEL_FILES names every missing file (table of folders)', async () => {
  const table: { leave: string[]; dtype?: 'fp32' | 'q8' }[] = [
    { leave: ['config.json'] },
    { leave: ['tokenizer.json', 'tokenizer_config.json'] },
    { leave: ['onnx/encoder_model.onnx'] },
    { leave: ['onnx/decoder_model_merged.onnx'] },
    { leave: ['onnx/encoder_model_quantized.onnx', 'onnx/decoder_model_merged_quantized.onnx'], dtype: 'q8' },
    { leave: marianRequiredFiles('fp32') },
  ];
  for (const [k, { leave, dtype = 'fp32' }] of table.entries()) {
    const dir = await modelDir(`missing-${k}`, 'eng', 'deu', leave, dtype);
    await assert.rejects(checkMarianFiles(dir, 'eng', 'deu', dtype), (err: unknown) => {
      assert.ok(err instanceof FilipError);
      assert.equal(err.code, 'FILIP_ERR_MODEL_FILES');
      assert.equal(err.file, join(dir, 'opus-mt-en-de'));
      for (const f of leave) assert.ok(err.message.includes(f), `${f} named in: ${err.message}`);
      for (const f of marianRequiredFiles(dtype).filter((f) => !leave.includes(f))) {
        assert.ok(!err.message.includes(` ${f}`) && !err.message.includes(`lacks ${f}`), `${f} not named`);
      }
      return true;
    });
  }
  await assert.doesNotReject(checkMarianFiles(await modelDir('complete', 'eng', 'deu', []), 'eng', 'deu'));
});

test('the stage checks both directions of every pivot before the first sample', async () => {
  const dir = await modelDir('one-way', 'eng', 'deu', []); // opus-mt-de-en and the Russian pair absent
  await assert.rejects(createBackTranslator({ engine: 'marian', marianDir: dir, pivots: ['deu'] }), (err: unknown) => {
    assert.ok(err instanceof FilipError);
    assert.equal(err.code, 'FILIP_ERR_MODEL_FILES');
    assert.match(err.file ?? '', /opus-mt-de-en$/);
    return true;
  });
});

test('transformers.js absent: FILIP_ERR_TRANSLATOR saying what to install', async () => {
  await assert.rejects(loadTransformers('@huggingface/not-transformers-at-all'), (err: unknown) => {
    assert.ok(err instanceof FilipError);
    assert.equal(err.code, 'FILIP_ERR_TRANSLATOR');
    assert.match(err.message, /npm install @huggingface\/transformers/);
    return true;
  });
  const dir = await modelDir('for-absent', 'eng', 'rus', []);
  const t = new MarianTranslator({ dir, moduleName: '@huggingface/not-transformers-at-all' });
  await assert.rejects(t.translate(['a dog'], 'eng', 'rus'), { code: 'FILIP_ERR_TRANSLATOR' });
  await t.close();
});

test('files present but not a model: FILIP_ERR_TRANSLATOR naming the folder, nothing fetched', async () => {
  const dir = await modelDir('junk', 'eng', 'rus', []);
  const t = new MarianTranslator({ dir });
  try {
    await assert.doesNotReject(t.check('eng', 'rus'), 'the files are there and transformers.js loads');
    await assert.rejects(t.translate(['a dog'], 'eng', 'rus'), (err: unknown) => {
      assert.ok(err instanceof FilipError);
      assert.equal(err.code, 'FILIP_ERR_TRANSLATOR');
      assert.equal(err.file, join(dir, 'opus-mt-en-ru'));
      return true;
    });
  } finally {
    await t.close();
  }
});

test('bad marian options are FILIP_ERR_INVALID_OPTION naming the option', () => {
  const table: [object, string][] = [
    [{}, 'dir'],
    [{ dir: '' }, 'dir'],
    [{ dir: '/m', dtype: 'fp16' }, 'dtype'],
    [{ dir: '/m', maxNewTokens: 0 }, 'maxNewTokens'],
    [{ dir: '/m', device: 'cuda' }, 'device'],
  ];
  for (const [given, field] of table) {
    assert.throws(() => resolveMarianOptions(given as never), (err: unknown) => {
      assert.ok(err instanceof FilipError);
      assert.equal(err.code, 'FILIP_ERR_INVALID_OPTION');
      assert.equal(err.field, field);
      return true;
    });
  }
});

// The one test the issue allows to skip: opus-mt weights cannot be fetched here (no hub access).
const realDir = process.env['FILIP_MARIAN_DIR'];
test(
  'a real opus-mt model folder back-translates eng -> deu -> eng',
  { skip: realDir ? false : 'FILIP_MARIAN_DIR is not set: no opus-mt model folder (opus-mt-en-de/, opus-mt-de-en/) to run on' },
  async () => {
    const bt = await createBackTranslator({ engine: 'marian', marianDir: realDir!, pivots: ['deu'], batchSize: 4 });
    try {
      const captions = ['a dog running on the beach', 'a red car parked in front of a house', 'two children playing football'];
      const out = [];
      for await (const s of bt.stage(toAsync(captionSamples(captions)))) out.push(s);
      for (const [i, s] of out.entries()) {
        assert.equal(s.translationFailures, undefined, JSON.stringify(s.translationFailures));
        assert.equal(s.backTranslations?.[0]?.engine, 'marian');
        assert.equal(s.backTranslations?.[0]?.pivot, 'deu');
        const words = new Set(s.backTranslations![0]!.text.toLowerCase().match(/[a-z]+/g));
        const key = ['dog', 'car', 'children'][i]!;
        assert.ok(words.has(key), `${captions[i]} -> ${s.backTranslations![0]!.text}`);
      }
    } finally {
      await bt.close();
    }
  },
);

async function* toAsync<T>(xs: readonly T[]): AsyncGenerator<T> {
  yield* xs;
}
