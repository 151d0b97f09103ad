// The back-translation stage: order and count kept across batches in flight, rejected rows untouched,
// failures recorded with pivot and engine on kept rows, the cache hit rate on repeated captions, and a
// re-run over the same cache folder that sends nothing to the engine.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { FilipError } from '../src/core/errors.js';
import { reject, type Sample } from '../src/core/sample.js';
import { ApertiumTranslator } from '../src/translate/apertium.js';
import {
  backTranslateStage,
  createBackTranslator,
  resolveBackTranslateOptions,
  type BackTranslateOptions,
  type BackTranslator,
} from '../src/translate/backtranslate.js';
import { TRANSLATION_ENGINES, normalizeForTranslation, type Translator } from '../src/translate/engine.js';
import { captionSamples } from '../src/translate/measure.js';
import { makeTestCaptions } from '../src/translate/test-captions.js';

// A LibreTranslate-speaking server that marks its translations ("de|text") and counts what it is sent.
let server: { url: string; sent: { source: string; target: string; q: string[] }[]; refuse: Set<string>; close(): Promise<void> };
let root: string;
before(async () => {
  const sent: { source: string; target: string; q: string[] }[] = [];
  const refuse = new Set<string>();
  const srv = createServer(async (req, res) => {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw) as { q: string[]; source: string; target: string };
    sent.push(body);
    if (body.q.some((t) => refuse.has(t.replace(/^[a-z]{2}\|/, '')))) {
      res.statusCode = 400;
      res.end('{"error":"refused"}');
      return;
    }
    const out = body.q.map((t) => (body.target === 'en' ? t.replace(/^[a-z]{2}\|/, '') : `${body.target}|${t}`));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ translatedText: out }));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  server = {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    sent,
    refuse,
    close: async () => {
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
  root = await mkdtemp(join(tmpdir(), 'filip-bt-'));
});
after(async () => {
  await server.close();
  await rm(root, { recursive: true, force: true });
});

async function* toAsync<T>(xs: readonly T[]): AsyncGenerator<T> {
  yield* xs;
}
async function collect(bt: BackTranslator, samples: Sample[]): Promise<Sample[]> {
  const out: Sample[] = [];
  for await (const s of bt.stage(toAsync(samples))) out.push(s);
  return out;
}
const libre = (extra: BackTranslateOptions = {}): BackTranslateOptions => ({
  engine: 'http',
  httpUrl: server.url,
  httpRetries: 0,
  ...extra,
});

test('apertium (default): order and count kept, rejected rows untouched, each result is its own caption', async () => {
  const captions = makeTestCaptions(90, { seed: 11 });
  const samples = captionSamples(captions);
  samples.forEach((s, i) => {
    if (i % 4 === 1) reject(s, 'not_english', 'planted');
  });
  const bt = await createBackTranslator({ batchSize: 7, concurrency: 3 });
  try {
    const out = await collect(bt, samples);
    assert.deepEqual(out.map((s) => s.key), samples.map((s) => s.key));
    const solo = new ApertiumTranslator();
    try {
      for (const [i, s] of out.entries()) {
        if (i % 4 === 1) {
          assert.equal(s.status, 'rejected');
          assert.equal(s.backTranslations, undefined);
          assert.equal(s.translationFailures, undefined);
          continue;
        }
        assert.equal(s.status, 'ok');
        assert.equal(s.caption, captions[i], 'the original caption stays');
        assert.deepEqual(s.backTranslations?.map((b) => [b.pivot, b.engine]), [['spa', 'apertium'], ['cat', 'apertium']]);
        // The stored back-translation is that of this caption alone, not of a neighbour.
        for (const b of s.backTranslations!) {
          const [mid] = await solo.translate([captions[i]!], 'eng', b.pivot);
          const [back] = await solo.translate([mid as string], b.pivot, 'eng');
          assert.equal(b.text, back, `sample ${i} ${b.pivot}: ${captions[i]}`);
        }
      }
    } finally {
      await solo.close();
    }
    const okCount = out.filter((s) => s.status === 'ok').length;
    const st = bt.stats();
    assert.equal(st.captions, okCount);
    assert.equal(st.translated, okCount * 2);
    assert.equal(st.failures, 0);
    assert.equal(st.cacheHits + st.cacheMisses, okCount * 2);
  } finally {
    await bt.close();
  }
});

test('apertium gives English back: a simple caption keeps its nouns through spa and cat', async () => {
  const out = [];
  for await (const s of backTranslateStage(toAsync(captionSamples(['a dog on the beach'])))) out.push(s);
  for (const b of out[0]!.backTranslations!) assert.match(b.text, /dog/i, `${b.pivot}: ${b.text}`);
});

test('cache hit rate on a corpus with repeated captions: each distinct caption goes to the engine once', async () => {
  server.sent.length = 0;
  const base = makeTestCaptions(300, { seed: 3, repeatFraction: 0.5 });
  // Whitespace variants are the same caption once normalised.
  const captions = base.map((c, i) => (i % 10 === 0 ? `  ${c.replace(/ /g, '   ')} ` : c));
  const distinct = new Set(captions.map(normalizeForTranslation)).size;
  assert.ok(distinct < captions.length * 0.7, 'the corpus really repeats');
  const bt = await createBackTranslator(libre({ batchSize: 16, concurrency: 1, pivots: ['deu', 'rus'] }));
  try {
    const out = await collect(bt, captionSamples(captions));
    const st = bt.stats();
    assert.equal(st.cacheMisses, distinct * 2);
    assert.equal(st.cacheHits, captions.length * 2 - distinct * 2);
    assert.equal(st.translated, captions.length * 2);
    for (const pivot of ['de', 'ru']) {
      const sentThere = server.sent.filter((r) => r.target === pivot).flatMap((r) => r.q);
      assert.equal(sentThere.length, distinct, `${pivot}: one request text per distinct caption`);
    }
    // Every sample got the translation of its own (normalised) caption, hits included.
    for (const [i, s] of out.entries()) {
      assert.deepEqual(s.backTranslations?.map((b) => b.text), [normalizeForTranslation(captions[i]!), normalizeForTranslation(captions[i]!)]);
    }
  } finally {
    await bt.close();
  }
});

test('a re-run with the same cache folder sends nothing to the engine and gives the same captions', async () => {
  const cacheDir = join(root, 'rerun');
  const captions = makeTestCaptions(120, { seed: 8, repeatFraction: 0.2 });
  const first = await createBackTranslator(libre({ cacheDir, pivots: ['deu'] }));
  const a = await collect(first, captionSamples(captions));
  await first.close();
  assert.ok(first.stats().cacheMisses > 0);

  server.sent.length = 0;
  const second = await createBackTranslator(libre({ cacheDir, pivots: ['deu'] }));
  const b = await collect(second, captionSamples(captions));
  await second.close();
  assert.equal(server.sent.length, 0, 'no request reached the server');
  assert.deepEqual(second.stats(), { captions: 120, translated: 120, cacheHits: 120, cacheMisses: 0, failures: 0, firstFailure: null });
  assert.deepEqual(b.map((s) => s.backTranslations), a.map((s) => s.backTranslations));
});

test('a re-run with apertium and the same cache folder misses nothing', async () => {
  const cacheDir = join(root, 'rerun-apertium');
  const samples = () => captionSamples(makeTestCaptions(40, { seed: 21 }));
  const first = await createBackTranslator({ cacheDir });
  const a = await collect(first, samples());
  await first.close();
  const second = await createBackTranslator({ cacheDir });
  const b = await collect(second, samples());
  await second.close();
  assert.equal(second.stats().cacheMisses, 0);
  assert.equal(second.stats().cacheHits, 80);
  assert.deepEqual(b.map((s) => s.backTranslations), a.map((s) => s.backTranslations));
});

test('failures are recorded per pivot and engine on kept rows; failed captions are not cached', async () => {
  const cacheDir = join(root, 'failures');
  server.refuse.add('a poisoned caption');
  try {
    const samples = captionSamples(['a dog', 'a poisoned caption', '   ', 'a cat']);
    const bt = await createBackTranslator(libre({ cacheDir, pivots: ['deu', 'rus'] }));
    const out = await collect(bt, samples);
    await bt.close();
    assert.deepEqual(out.map((s) => s.status), ['ok', 'ok', 'ok', 'ok']);
    assert.deepEqual(out[0]!.backTranslations?.map((b) => b.text), ['a dog', 'a dog']);
    assert.equal(out[0]!.translationFailures, undefined);
    for (const k of [1, 2]) {
      assert.deepEqual(out[k]!.backTranslations, []);
      assert.deepEqual(out[k]!.translationFailures?.map((f) => [f.pivot, f.engine, f.reason]), [
        ['deu', 'http', 'translation_failed'],
        ['rus', 'http', 'translation_failed'],
      ]);
    }
    assert.match(out[1]!.translationFailures![0]!.message, /HTTP 400/);
    assert.match(out[2]!.translationFailures![0]!.message, /empty caption/);
    assert.equal(bt.stats().failures, 4);

    // The refused caption is tried again by the next run (and now succeeds).
    server.refuse.clear();
    server.sent.length = 0;
    const again = await createBackTranslator(libre({ cacheDir, pivots: ['deu', 'rus'] }));
    const out2 = await collect(again, captionSamples(['a dog', 'a poisoned caption']));
    await again.close();
    assert.deepEqual(out2[1]!.backTranslations?.map((b) => b.text), ['a poisoned caption', 'a poisoned caption']);
    const outbound = server.sent.filter((r) => r.source === 'en').map((r) => [r.target, r.q]);
    assert.deepEqual(outbound.sort(), [['de', ['a poisoned caption']], ['ru', ['a poisoned caption']]], 'only the uncached caption is sent');
    assert.equal(again.stats().cacheMisses, 2);
  } finally {
    server.refuse.clear();
  }
});

test('a translator given by the caller: its name is recorded, a plain throw fails the batch, a FilipError stops', async () => {
  let calls = 0;
  const shaky: Translator = {
    engine: 'shaky',
    async translate(texts, _from, to) {
      calls++;
      if (texts.includes('explode')) throw new Error('engine crashed');
      if (texts.includes('stop')) throw new FilipError('FILIP_ERR_TRANSLATOR', 'engine gone');
      return texts.map((t) => (to === 'eng' ? t.split('~')[0]! : `${t}~${to}`));
    },
    async close() {},
  };
  const bt = await createBackTranslator({ pivots: ['deu'], batchSize: 1 }, shaky);
  const out = await collect(bt, captionSamples(['one', 'explode', 'two']));
  assert.deepEqual(out.map((s) => s.backTranslations?.map((b) => [b.engine, b.text])), [[['shaky', 'one']], [], [['shaky', 'two']]]);
  assert.match(out[1]!.translationFailures![0]!.message, /engine crashed/);
  assert.equal(calls, 5, 'one: there and back; explode: there only; two: there and back');
  await assert.rejects(collect(bt, captionSamples(['stop'])), { code: 'FILIP_ERR_TRANSLATOR' });
  await bt.close();
});

test('engine none passes every sample through untouched', async () => {
  const bt = await createBackTranslator({ engine: 'none' });
  const samples = captionSamples(['a dog', 'a cat']);
  const out = await collect(bt, samples);
  assert.deepEqual(out, captionSamples(['a dog', 'a cat']));
  assert.deepEqual(bt.stats(), { captions: 0, translated: 0, cacheHits: 0, cacheMisses: 0, failures: 0, firstFailure: null });
  assert.equal(bt.translator, null);
  await bt.close();
});

test('apertium with a pivot Debian has no pair for is FILIP_ERR_TRANSLATOR before any sample', async () => {
  await assert.rejects(createBackTranslator({ pivots: ['deu'] }), (err: unknown) => {
    assert.ok(err instanceof FilipError);
    assert.equal(err.code, 'FILIP_ERR_TRANSLATOR');
    assert.match(err.message, /eng-deu/);
    return true;
  });
});

test('defaults: engine apertium with spa and cat; marian and LibreTranslate deu and rus; apy spa and cat', () => {
  assert.deepEqual([...TRANSLATION_ENGINES], ['apertium', 'marian', 'http', 'none']);
  const d = resolveBackTranslateOptions();
  assert.equal(d.engine, 'apertium');
  assert.deepEqual(d.pivots, ['spa', 'cat']);
  assert.equal(d.cacheDir, null);
  assert.deepEqual(resolveBackTranslateOptions({ engine: 'marian', marianDir: '/m' }).pivots, ['deu', 'rus']);
  assert.deepEqual(resolveBackTranslateOptions({ engine: 'http', httpUrl: 'http://h' }).pivots, ['deu', 'rus']);
  assert.deepEqual(resolveBackTranslateOptions({ engine: 'http', httpUrl: 'http://h', httpFlavour: 'apertium-apy' }).pivots, ['spa', 'cat']);
  assert.deepEqual(resolveBackTranslateOptions({ engine: 'none' }).pivots, []);
});

test('bad options are FILIP_ERR_INVALID_OPTION naming the option', () => {
  const table: [object, string][] = [
    [{ engine: 'google' }, 'engine'],
    [{ pivots: [] }, 'pivots'],
    [{ pivots: ['fra'] }, 'pivots[0]'],
    [{ pivots: ['spa', 'spa'] }, 'pivots'],
    [{ pivots: 'spa' }, 'pivots'],
    [{ batchSize: 0 }, 'batchSize'],
    [{ concurrency: 0.5 }, 'concurrency'],
    [{ engine: 'http' }, 'httpUrl'],
    [{ engine: 'marian' }, 'marianDir'],
    [{ httpFlavour: 'deepl' }, 'httpFlavour'],
    [{ marianDtype: 'int4' }, 'marianDtype'],
    [{ timeoutMs: -1 }, 'timeoutMs'],
    [{ cacheDir: '' }, 'cacheDir'],
    [{ cache_dir: '/x' }, 'cache_dir'],
  ];
  for (const [given, field] of table) {
    assert.throws(() => resolveBackTranslateOptions(given as never), (err: unknown) => {
      assert.ok(err instanceof FilipError, String(err));
      assert.equal(err.code, 'FILIP_ERR_INVALID_OPTION');
      assert.equal(err.field, field);
      return true;
    }, JSON.stringify(given));
  }
});

test('batches in flight never exceed `concurrency`, and batches do overlap up to it', async () => {
  for (const concurrency of [1, 3]) {
    let inFlight = 0;
    let most = 0;
    const slow: Translator = {
      engine: 'slow',
      async translate(texts, _from, to) {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 15));
        inFlight--;
        return texts.map((t) => (to === 'eng' ? t.split('~')[0]! : `${t}~${to}`));
      },
      async close() {},
    };
    // one pivot: each batch makes two sequential calls (there, back), so calls in flight = batches in flight
    const bt = await createBackTranslator({ pivots: ['deu'], batchSize: 2, concurrency }, slow);
    const captions = Array.from({ length: 24 }, (_, i) => `caption number ${i}`);
    const out = await collect(bt, captionSamples(captions));
    assert.deepEqual(out.map((s) => s.backTranslations?.[0]?.text), captions, 'order and results kept');
    assert.ok(most <= concurrency, `concurrency ${concurrency}: ${most} calls were in flight`);
    assert.equal(most, concurrency, `concurrency ${concurrency}: batches should overlap up to the limit`);
    await bt.close();
  }
});
