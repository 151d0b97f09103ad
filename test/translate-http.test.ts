// The HTTP engine against a real apertium-apy server the test starts, and a small node:http server
// speaking LibreTranslate's API: batches, language codes, retries, and failures (500, garbage JSON,
// timeout, one refused text) that become per-text errors / translation_failed with the row kept.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';

import { FilipError } from '../src/core/errors.js';
import type { Sample } from '../src/core/sample.js';
import { ApertiumTranslator } from '../src/translate/apertium.js';
import { createBackTranslator } from '../src/translate/backtranslate.js';
import { HttpTranslator, resolveHttpTranslatorOptions } from '../src/translate/http.js';
import { captionSamples } from '../src/translate/measure.js';
import { makeTestCaptions } from '../src/translate/test-captions.js';
import { startApy, type ApyServer } from './helpers/apy.js';

// --- a LibreTranslate-compatible server whose behaviour each test sets --------------------------

interface LibreRequest {
  q: string | string[];
  source: string;
  target: string;
  format: string;
  api_key?: string;
}
type Behaviour = (body: LibreRequest, attempt: number, res: ServerResponse) => void;

/** Marks a translation so the test can tell what was asked: "<target>|<text>"; to English it strips. */
function fakeTranslate(text: string, target: string): string {
  return target === 'en' ? text.replace(/^[a-z]{2}\|/, '') : `${target}|${text}`;
}

const answer: Behaviour = (body, _attempt, res) => {
  const qs = Array.isArray(body.q) ? body.q : [body.q];
  const out = qs.map((t) => fakeTranslate(t, body.target));
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ translatedText: Array.isArray(body.q) ? out : out[0] }));
};

let libre: { url: string; requests: LibreRequest[]; behaviour: Behaviour; close(): Promise<void> };
let apy: ApyServer;

before(async () => {
  const requests: LibreRequest[] = [];
  const state = { behaviour: answer };
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    if (req.method !== 'POST' || req.url !== '/translate' || req.headers['content-type'] !== 'application/json') {
      res.statusCode = 404;
      res.end('{}');
      return;
    }
    const body = JSON.parse(raw) as LibreRequest;
    requests.push(body);
    state.behaviour(body, requests.length, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  libre = {
    url: `http://127.0.0.1:${port}`,
    requests,
    get behaviour() {
      return state.behaviour;
    },
    set behaviour(b: Behaviour) {
      state.behaviour = b;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  apy = await startApy();
});

after(async () => {
  await libre.close();
  await apy.stop();
});

function reset(b: Behaviour = answer): void {
  libre.requests.length = 0;
  libre.behaviour = b;
}

// --- apertium-apy ------------------------------------------------------------------------------

test('apertium-apy: the test server lists the installed pairs', () => {
  for (const p of ['eng-spa', 'spa-eng', 'eng-cat', 'cat-eng']) assert.ok(apy.pairs.includes(p), p);
});

test('apertium-apy: each caption comes back as Apertium translates it alone', async () => {
  const captions = makeTestCaptions(40, { seed: 5 });
  const http = new HttpTranslator({ url: apy.baseUrl, flavour: 'apertium-apy', concurrency: 4 });
  const local = new ApertiumTranslator();
  try {
    const got = await http.translate(captions, 'eng', 'spa');
    const want = await local.translate(captions, 'eng', 'spa');
    assert.equal(got.length, captions.length);
    for (const [i, g] of got.entries()) assert.equal(g, want[i], `caption ${i}: ${captions[i]}`);
  } finally {
    await http.close();
    await local.close();
  }
});

test('apertium-apy: a pair the server lacks fails those texts only, as data', async () => {
  const http = new HttpTranslator({ url: apy.baseUrl, flavour: 'apertium-apy', retries: 0 });
  try {
    const out = await http.translate(['a dog', ''], 'eng', 'deu');
    assert.ok(out[0] instanceof Error);
    assert.match(out[0].message, /HTTP 400/);
    assert.equal(out[1], '');
  } finally {
    await http.close();
  }
});

test('apertium-apy: the stage back-translates through the server', async () => {
  const bt = await createBackTranslator({ engine: 'http', httpUrl: apy.baseUrl, httpFlavour: 'apertium-apy' });
  try {
    const samples = captionSamples(['a dog on the beach', 'the red car']);
    const out: Sample[] = [];
    for await (const s of bt.stage(toAsync(samples))) out.push(s);
    assert.deepEqual(out.map((s) => s.backTranslations?.map((b) => [b.pivot, b.engine])), [
      [['spa', 'http'], ['cat', 'http']],
      [['spa', 'http'], ['cat', 'http']],
    ]);
    assert.match(out[0]!.backTranslations![0]!.text, /dog/i);
    assert.equal(bt.stats().translated, 4);
  } finally {
    await bt.close();
  }
});

// --- LibreTranslate ----------------------------------------------------------------------------

test('libretranslate: one request per batch, two-letter codes, format text, api_key when set', async () => {
  reset();
  const http = new HttpTranslator({ url: `${libre.url}/`, apiKey: 'k1' });
  try {
    const out = await http.translate(['a dog', '  two   cats ', ''], 'eng', 'deu');
    assert.deepEqual(out, ['de|a dog', 'de|two cats', '']);
    assert.equal(libre.requests.length, 1);
    assert.deepEqual(libre.requests[0], { q: ['a dog', 'two cats'], source: 'en', target: 'de', format: 'text', api_key: 'k1' });
  } finally {
    await http.close();
  }
});

test('libretranslate: a 5xx is retried and the retry answer used', async () => {
  reset((body, attempt, res) => {
    if (attempt === 1) {
      res.statusCode = 503;
      res.end('busy');
    } else answer(body, attempt, res);
  });
  const http = new HttpTranslator({ url: libre.url, retries: 2, retryDelayMs: 1 });
  try {
    assert.deepEqual(await http.translate(['a dog'], 'eng', 'rus'), ['ru|a dog']);
    assert.equal(libre.requests.length, 2);
  } finally {
    await http.close();
  }
});

test('libretranslate: 500 on every attempt fails every text after 1 + retries requests', async () => {
  reset((_b, _a, res) => {
    res.statusCode = 500;
    res.end('boom');
  });
  const http = new HttpTranslator({ url: libre.url, retries: 2, retryDelayMs: 1 });
  try {
    const out = await http.translate(['a dog', 'a cat'], 'eng', 'deu');
    for (const o of out) assert.ok(o instanceof Error && /HTTP 500/.test(o.message), String(o));
    assert.equal(libre.requests.length, 3);
  } finally {
    await http.close();
  }
});

test('libretranslate: garbage JSON and wrong shapes fail as data', async () => {
  const bodies = ['not json at all', '{"translatedText": 5}', '{"translatedText": ["one", "two", "three"]}', '{}'];
  for (const raw of bodies) {
    reset((_b, _a, res) => res.end(raw));
    const http = new HttpTranslator({ url: libre.url, retries: 0 });
    try {
      const out = await http.translate(['a dog', 'a cat'], 'eng', 'deu');
      assert.equal(out.length, 2);
      for (const o of out) assert.ok(o instanceof Error, `${raw} -> ${String(o)}`);
    } finally {
      await http.close();
    }
  }
});

test('libretranslate: a server that never answers times out, each attempt, and fails the texts', async () => {
  reset(() => {
    // never answer
  });
  const http = new HttpTranslator({ url: libre.url, timeoutMs: 200, retries: 1, retryDelayMs: 1 });
  try {
    const out = await http.translate(['a dog'], 'eng', 'deu');
    assert.ok(out[0] instanceof Error && /TIMEOUT|timeout/i.test(out[0].message), String(out[0]));
    assert.equal(libre.requests.length, 2);
  } finally {
    await http.close();
  }
});

test('libretranslate: a batch refused for one text is asked text by text, so the others succeed', async () => {
  reset((body, attempt, res) => {
    const qs = Array.isArray(body.q) ? body.q : [body.q];
    if (qs.includes('poison')) {
      res.statusCode = 400;
      res.end('{"error": "bad text"}');
    } else answer(body, attempt, res);
  });
  const http = new HttpTranslator({ url: libre.url, retries: 0 });
  try {
    const out = await http.translate(['a dog', 'poison', 'a cat'], 'eng', 'deu');
    assert.equal(out[0], 'de|a dog');
    assert.ok(out[1] instanceof Error && /HTTP 400/.test(out[1].message));
    assert.equal(out[2], 'de|a cat');
  } finally {
    await http.close();
  }
});

test('libretranslate: a refused pivot in the stage is translation_failed on a kept row, other pivots fine', async () => {
  reset((body, attempt, res) => {
    if (body.target === 'ru' || body.source === 'ru') {
      res.statusCode = 500;
      res.end('no russian today');
    } else answer(body, attempt, res);
  });
  const bt = await createBackTranslator({ engine: 'http', httpUrl: libre.url, httpRetries: 0, pivots: ['deu', 'rus'] });
  try {
    const samples = captionSamples(['a dog', 'a cat']);
    const out: Sample[] = [];
    for await (const s of bt.stage(toAsync(samples))) out.push(s);
    assert.equal(out.length, 2);
    for (const [i, s] of out.entries()) {
      assert.equal(s.status, 'ok');
      assert.equal(s.caption, ['a dog', 'a cat'][i]);
      assert.deepEqual(s.backTranslations, [{ pivot: 'deu', engine: 'http', text: s.caption }]);
      assert.equal(s.translationFailures?.length, 1);
      assert.equal(s.translationFailures![0]!.pivot, 'rus');
      assert.equal(s.translationFailures![0]!.engine, 'http');
      assert.equal(s.translationFailures![0]!.reason, 'translation_failed');
      assert.match(s.translationFailures![0]!.message, /HTTP 500/);
    }
    assert.deepEqual(bt.stats(), { captions: 2, translated: 2, cacheHits: 0, cacheMisses: 4, failures: 2, firstFailure: 'rus: http libretranslate eng->rus: HTTP 500 after all retries' });
  } finally {
    await bt.close();
  }
});

test('http options: bad values are FILIP_ERR_INVALID_OPTION naming the option', () => {
  const table: [object, string][] = [
    [{}, 'url'],
    [{ url: '' }, 'url'],
    [{ url: 'ftp://x' }, 'url'],
    [{ url: 'not a url' }, 'url'],
    [{ url: 'http://x', flavour: 'deepl' }, 'flavour'],
    [{ url: 'http://x', timeoutMs: 0 }, 'timeoutMs'],
    [{ url: 'http://x', retries: -1 }, 'retries'],
    [{ url: 'http://x', concurrency: 0 }, 'concurrency'],
    [{ url: 'http://x', apiKey: '' }, 'apiKey'],
    [{ url: 'http://x', retry: 2 }, 'retry'],
  ];
  for (const [given, field] of table) {
    assert.throws(() => resolveHttpTranslatorOptions(given as never), (err: unknown) => {
      assert.ok(err instanceof FilipError, String(err));
      assert.equal(err.code, 'FILIP_ERR_INVALID_OPTION');
      assert.equal(err.field, field);
      return true;
    }, JSON.stringify(given));
  }
  assert.equal(resolveHttpTranslatorOptions({ url: 'http://h:1' }).url, 'http://h:1/translate');
  assert.equal(resolveHttpTranslatorOptions({ url: 'http://h:1/api/translate' }).url, 'http://h:1/api/translate');
});

async function* toAsync<T>(xs: readonly T[]): AsyncGenerator<T> {
  yield* xs;
}
