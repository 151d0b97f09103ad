// The fetch stage against real loopback HTTP servers: statuses, retries and Retry-After, timeouts,
// redirects, size caps, X-Robots-Tag, local files, concurrency caps, keep-alive and close().
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import { FilipError } from '../src/core/errors.js';
import {
  DEFAULT_FETCH_OPTIONS,
  Fetcher,
  backoffDelay,
  parseRetryAfter,
  resolveFetchOptions,
  robotsDisallow,
  type FetchOptions,
  type FetchResult,
} from '../src/fetch/fetcher.js';

// ---------------------------------------------------------------------------------------------
// A loopback server whose routes are registered per test. It records every request.

interface Hit {
  readonly path: string;
  readonly at: number;
  readonly headers: http.IncomingHttpHeaders;
}
type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number, url: URL) => void;

class TestServer {
  readonly server = http.createServer((req, res) => this.#handle(req, res));
  readonly routes = new Map<string, Handler>();
  readonly hits: Hit[] = [];
  connections = 0;
  inflight = 0;
  maxInflight = 0;
  /** Shared in-flight counter across servers, for the global cap test. */
  shared: { inflight: number; max: number } | undefined;
  base = '';

  async start(): Promise<this> {
    this.server.on('connection', () => this.connections++);
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  route(path: string, handler: Handler): string {
    this.routes.set(path, handler);
    return `${this.base}${path}`;
  }

  hitsOf(path: string): Hit[] {
    return this.hits.filter((h) => h.path === path);
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', this.base);
    this.hits.push({ path: url.pathname, at: Date.now(), headers: req.headers });
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    if (this.shared !== undefined) {
      this.shared.inflight++;
      this.shared.max = Math.max(this.shared.max, this.shared.inflight);
    }
    res.on('close', () => {
      this.inflight--;
      if (this.shared !== undefined) this.shared.inflight--;
    });
    const handler = this.routes.get(url.pathname);
    if (handler === undefined) {
      res.writeHead(404).end('no route');
      return;
    }
    handler(req, res, this.hitsOf(url.pathname).length, url);
  }
}

const PNG_ISH = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

function sendOk(res: http.ServerResponse, body: Buffer = PNG_ISH, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(200, { 'content-type': 'image/png', 'content-length': body.length, ...headers }).end(body);
}

/** Small timeouts and delays so the whole file runs in seconds. */
const FAST: Partial<FetchOptions> = {
  connectTimeoutMs: 1000,
  headersTimeoutMs: 1000,
  bodyTimeoutMs: 1000,
  totalTimeoutMs: 3000,
  retries: 2,
  retryBaseDelayMs: 5,
  retryMaxDelayMs: 50,
};

/** Runs `body` with a fetcher that is always closed afterwards. */
async function withFetcher<T>(options: Partial<FetchOptions>, body: (f: Fetcher) => Promise<T>): Promise<T> {
  const fetcher = new Fetcher({ ...FAST, ...options });
  try {
    return await body(fetcher);
  } finally {
    await fetcher.close();
  }
}

function assertFail(result: FetchResult, reason: string, label = ''): asserts result is Extract<FetchResult, { ok: false }> {
  assert.equal(result.ok, false, `${label} expected failure ${reason}, got ok`);
  if (!result.ok) assert.equal(result.reason, reason, `${label} ${result.message}`);
}

function assertOk(result: FetchResult, label = ''): asserts result is Extract<FetchResult, { ok: true }> {
  assert.ok(result.ok, `${label} expected ok, got ${result.ok ? '' : `${result.reason}: ${result.message}`}`);
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let srv: TestServer;
let tmp: string;

before(async () => {
  srv = await new TestServer().start();
  tmp = await mkdtemp(join(tmpdir(), 'filip-fetch-'));
});

after(async () => {
  await srv.stop();
  await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('resolveFetchOptions', () => {
  test('defaults', () => {
    const o = resolveFetchOptions();
    assert.deepEqual(o, DEFAULT_FETCH_OPTIONS);
    assert.equal(o.concurrency, 64);
    assert.equal(o.perHostConcurrency, 16);
    assert.equal(o.maxBodyBytes, 20 * 1024 * 1024);
    assert.deepEqual(resolveFetchOptions({ retries: undefined }), DEFAULT_FETCH_OPTIONS);
  });

  const bad: [string, Record<string, unknown>][] = [
    ['concurrency 0', { concurrency: 0 }],
    ['concurrency fractional', { concurrency: 1.5 }],
    ['concurrency string', { concurrency: '4' }],
    ['perHostConcurrency 0', { perHostConcurrency: 0 }],
    ['connectTimeoutMs negative', { connectTimeoutMs: -1 }],
    ['headersTimeoutMs 0', { headersTimeoutMs: 0 }],
    ['bodyTimeoutMs NaN', { bodyTimeoutMs: Number.NaN }],
    ['totalTimeoutMs too big for a timer', { totalTimeoutMs: 2 ** 31 }],
    ['retries negative', { retries: -1 }],
    ['retries fractional', { retries: 0.5 }],
    ['retryBaseDelayMs Infinity', { retryBaseDelayMs: Number.POSITIVE_INFINITY }],
    ['retryMaxDelayMs negative', { retryMaxDelayMs: -5 }],
    ['retryBaseDelayMs above retryMaxDelayMs', { retryBaseDelayMs: 2000, retryMaxDelayMs: 1000 }],
    ['maxRedirects negative', { maxRedirects: -1 }],
    ['maxBodyBytes 0', { maxBodyBytes: 0 }],
    ['userAgentToken number', { userAgentToken: 5 }],
    ['userAgentToken with newline', { userAgentToken: 'bot\r\nX-Evil: 1' }],
    ['userAgentToken padded', { userAgentToken: ' bot ' }],
    ['respectRobots string', { respectRobots: 'yes' }],
    ['dnsCacheTtlMs negative', { dnsCacheTtlMs: -1 }],
    ['unknown key', { timeout: 1000 }],
    ['null options', null as unknown as Record<string, unknown>],
  ];
  for (const [label, value] of bad) {
    test(`rejects ${label}`, () => {
      assert.throws(
        () => resolveFetchOptions(value as Partial<FetchOptions>),
        (err: unknown) => err instanceof FilipError && err.code === 'FILIP_ERR_INVALID_OPTION',
      );
    });
  }

  test('the Fetcher constructor validates too', () => {
    assert.throws(() => new Fetcher({ perHostConcurrency: 0 }), { code: 'FILIP_ERR_INVALID_OPTION' });
  });
});

describe('pure helpers', () => {
  test('backoffDelay: full jitter under an exponential, capped ceiling', () => {
    assert.equal(backoffDelay(1, 500, 10_000, () => 0.999999), 499);
    assert.equal(backoffDelay(3, 500, 10_000, () => 0.5), 1000);
    assert.equal(backoffDelay(10, 500, 10_000, () => 0.5), 5000);
    assert.equal(backoffDelay(2, 500, 10_000, () => 0), 0);
  });

  test('parseRetryAfter: seconds, HTTP-date, garbage', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    const cases: [string | undefined, number | undefined][] = [
      ['1', 1000],
      [' 120 ', 120_000],
      ['0', 0],
      ['Wed, 21 Oct 2015 07:28:05 GMT', 5000],
      ['Wed, 21 Oct 2015 07:27:00 GMT', 0],
      ['-3', undefined],
      ['1.5', undefined],
      ['soon', undefined],
      ['', undefined],
      [undefined, undefined],
    ];
    for (const [value, expected] of cases) assert.equal(parseRetryAfter(value, now), expected, String(value));
  });

  test('robotsDisallow: directives, agent prefixes, multiple headers', () => {
    const agents = ['filip-data', 'mybot'];
    const cases: [string | string[], string | undefined][] = [
      ['noai', 'noai'],
      ['NoImageAI', 'noimageai'],
      ['noindex, nofollow', 'noindex'],
      ['nofollow, noarchive', undefined],
      ['noimageindex', 'noimageindex'],
      ['none', 'none'],
      ['googlebot: noindex', undefined],
      ['googlebot: noindex, nofollow', undefined],
      ['*: noai', 'noai'],
      ['Filip-Data: noimageai', 'noimageai'],
      ['mybot: noai', 'noai'],
      ['googlebot: nofollow, *: noindex', 'noindex'],
      ['unavailable_after: Wednesday, 03-Nov-2010 15:00:00 PST', undefined],
      ['max-image-preview: large, noai', 'noai'],
      [['googlebot: noindex', 'otherbot: noai'], undefined],
      [['googlebot: noindex', 'noai'], 'noai'],
      ['', undefined],
    ];
    for (const [header, expected] of cases) assert.equal(robotsDisallow(header, agents), expected, JSON.stringify(header));
    assert.equal(robotsDisallow(undefined, agents), undefined);
  });
});

describe('HTTP statuses and retries', () => {
  test('200 returns the bytes, status, final URL and Content-Type', async () => {
    const url = srv.route('/ok', (_req, res) => sendOk(res));
    await withFetcher({}, async (f) => {
      const r = await f.fetch(url);
      assertOk(r);
      assert.deepEqual(r.bytes, PNG_ISH);
      assert.equal(r.status, 200);
      assert.equal(r.finalUrl, url);
      assert.equal(r.contentType, 'image/png');
      assert.equal(r.attempts, 1);
      assert.equal(f.activeHosts, 0, 'the idle host queue is dropped');
    });
  });

  test('a hostname goes through the DNS cache (localhost)', async () => {
    const url = srv.route('/dns', (_req, res) => sendOk(res));
    await withFetcher({}, async (f) => {
      const local = url.replace('127.0.0.1', 'localhost');
      assertOk(await f.fetch(local));
      assertOk(await f.fetch(local));
    });
  });

  test('404 is not retried', async () => {
    const url = srv.route('/missing', (_req, res) => res.writeHead(404).end('nope'));
    await withFetcher({}, async (f) => {
      const r = await f.fetch(url);
      assertFail(r, 'http_status');
      assert.equal(r.status, 404);
      assert.equal(r.attempts, 1);
      assert.equal(srv.hitsOf('/missing').length, 1);
    });
  });

  test('500 then 200 is retried and succeeds', async () => {
    const url = srv.route('/flaky', (_req, res, n) => (n === 1 ? res.writeHead(500).end('oops') : sendOk(res)));
    await withFetcher({}, async (f) => {
      const r = await f.fetch(url);
      assertOk(r);
      assert.equal(r.attempts, 2);
      assert.equal(srv.hitsOf('/flaky').length, 2);
    });
  });

  test('always 503 gives http_server_error after retries+1 attempts', async () => {
    const url = srv.route('/down', (_req, res) => res.writeHead(503).end());
    await withFetcher({ retries: 2 }, async (f) => {
      const r = await f.fetch(url);
      assertFail(r, 'http_server_error');
      assert.equal(r.status, 503);
      assert.equal(r.attempts, 3);
      assert.equal(srv.hitsOf('/down').length, 3);
    });
  });

  test('429 with Retry-After: 1 waits about a second, then rate_limited', async () => {
    const url = srv.route('/busy', (_req, res) => res.writeHead(429, { 'retry-after': '1' }).end());
    await withFetcher({ retries: 1, retryMaxDelayMs: 5000 }, async (f) => {
      const r = await f.fetch(url);
      assertFail(r, 'rate_limited');
      assert.equal(r.status, 429);
      const hits = srv.hitsOf('/busy');
      assert.equal(hits.length, 2);
      const gap = hits[1]!.at - hits[0]!.at;
      assert.ok(gap >= 900, `second request came ${gap} ms after the first`);
    });
  });

  test('a Retry-After HTTP-date is honoured, capped at retryMaxDelayMs', async () => {
    const url = srv.route('/busy-date', (_req, res, n) =>
      n === 1 ? res.writeHead(503, { 'retry-after': new Date(Date.now() + 3_600_000).toUTCString() }).end() : sendOk(res),
    );
    await withFetcher({ retries: 1, retryBaseDelayMs: 1, retryMaxDelayMs: 250 }, async (f) => {
      assertOk(await f.fetch(url));
      const hits = srv.hitsOf('/busy-date');
      const gap = hits[1]!.at - hits[0]!.at;
      // Backoff alone would wait at most 1 ms; an uncapped date an hour.
      assert.ok(gap >= 200 && gap < 5000, `second request came ${gap} ms after the first`);
    });
  });

  test('a retry sleeping on backoff holds no per-host slot', async () => {
    const flaky = srv.route('/slot-flaky', (_req, res, n) =>
      n === 1 ? res.writeHead(503, { 'retry-after': '1' }).end() : sendOk(res),
    );
    const other = srv.route('/slot-other', (_req, res) => sendOk(res));
    await withFetcher({ perHostConcurrency: 1, retries: 1, retryMaxDelayMs: 400 }, async (f) => {
      const first = f.fetch(flaky);
      await delay(50); // the first request has been answered 503 and its retry is sleeping
      const second = f.fetch(other);
      const [a, b] = await Promise.all([first, second]);
      assertOk(a);
      assertOk(b);
      const otherAt = srv.hitsOf('/slot-other')[0]!.at;
      const retryAt = srv.hitsOf('/slot-flaky')[1]!.at;
      assert.ok(otherAt < retryAt, 'the other request ran while the first one slept');
    });
  });
});

describe('TLS', () => {
  // A fixed self-signed certificate for 127.0.0.1 (test/fixtures; openssl req -x509, 100 years).
  const fixture = (name: string) => readFile(join(import.meta.dirname, 'fixtures', name));

  test('a certificate nobody vouches for, or a plain-HTTP port, is tls_error, tried once', async () => {
    let handshakes = 0;
    const tlsServer = https.createServer({ key: await fixture('self-signed.key'), cert: await fixture('self-signed.crt') }, (_req, res) => {
      res.end('never reached');
    });
    tlsServer.on('secureConnection', () => handshakes++);
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    const { port } = tlsServer.address() as AddressInfo;
    const plainPort = new URL(srv.route('/plain', (_req, res) => res.end())).port;
    try {
      const cases: [string, string, number][] = [
        ['self-signed certificate', `https://127.0.0.1:${port}/a.jpg`, 1],
        ['https to a server that speaks plain HTTP', `https://127.0.0.1:${plainPort}/a.jpg`, 0],
      ];
      for (const [name, url, expectedHandshakes] of cases) {
        handshakes = 0;
        await withFetcher({ retries: 3 }, async (f) => {
          const r = await f.fetch(url);
          assertFail(r, 'tls_error', name);
          assert.equal(r.attempts, 1, `${name}: not retried`);
        });
        assert.ok(handshakes <= expectedHandshakes, `${name}: ${handshakes} handshakes`);
      }
    } finally {
      await new Promise<void>((r) => tlsServer.close(() => r()));
    }
  });
});

describe('timeouts and broken connections', () => {
  test('headers that never come: timeout', async () => {
    const url = srv.route('/no-headers', () => undefined);
    await withFetcher({ headersTimeoutMs: 150, retries: 0 }, async (f) => {
      assertFail(await f.fetch(url), 'timeout');
    });
  });

  test('a stalled server costs at most retries+1 attempts of totalTimeoutMs each', async () => {
    const url = srv.route('/stall-retry', () => undefined);
    await withFetcher({ headersTimeoutMs: 5000, totalTimeoutMs: 150, retries: 2 }, async (f) => {
      const started = Date.now();
      const r = await f.fetch(url);
      assertFail(r, 'timeout');
      assert.equal(r.attempts, 3);
      assert.equal(srv.hitsOf('/stall-retry').length, 3);
      // (retries+1) * totalTimeoutMs + two backoffs of at most 50 ms, with generous slack for a busy CI box
      assert.ok(Date.now() - started < 3 * 150 + 2 * 50 + 1500, `took ${Date.now() - started} ms`);
    });
  });

  test('a body that stalls mid-way: timeout', async () => {
    const url = srv.route('/stall-body', (_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(Buffer.alloc(10));
    });
    await withFetcher({ bodyTimeoutMs: 150, retries: 0 }, async (f) => {
      assertFail(await f.fetch(url), 'timeout');
    });
  });

  test('a body trickling one byte at a time is cut at totalTimeoutMs', async () => {
    let closedAt = 0;
    let timer: NodeJS.Timeout | undefined;
    const url = srv.route('/trickle', (_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      timer = setInterval(() => res.write('x'), 40); // would take 40 s to finish
      res.on('close', () => {
        clearInterval(timer);
        closedAt = Date.now();
      });
    });
    await withFetcher({ bodyTimeoutMs: 1000, totalTimeoutMs: 400, retries: 0 }, async (f) => {
      const r = await f.fetch(url);
      assertFail(r, 'timeout');
      assert.match(r.message, /totalTimeoutMs/);
      await delay(50);
      assert.ok(closedAt > 0, 'the client dropped the connection');
      clearInterval(timer);
    });
  });

  test('connection reset by the server: network_error, retried', async () => {
    const url = srv.route('/reset', (req) => req.socket.destroy());
    await withFetcher({ retries: 1 }, async (f) => {
      const r = await f.fetch(url);
      assertFail(r, 'network_error');
      assert.equal(r.attempts, 2);
      assert.equal(srv.hitsOf('/reset').length, 2);
    });
  });

  test('connection refused: network_error', async () => {
    const gone = await new TestServer().start();
    const url = `${gone.base}/x`;
    await gone.stop();
    await withFetcher({ retries: 1 }, async (f) => {
      assertFail(await f.fetch(url), 'network_error');
    });
  });

  test('a Content-Length longer than the body, then the server closes: network_error', async () => {
    const url = srv.route('/lying-close', (_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.write(Buffer.alloc(10), () => res.socket?.end());
    });
    await withFetcher({ retries: 0 }, async (f) => {
      assertFail(await f.fetch(url), 'network_error');
    });
  });

  test('a Content-Length longer than the body, connection left open: timeout, not a hang', async () => {
    const url = srv.route('/lying-open', (_req, res) => {
      res.writeHead(200, { 'content-length': 1000 });
      res.end(Buffer.alloc(10));
    });
    await withFetcher({ bodyTimeoutMs: 150, retries: 0 }, async (f) => {
      assertFail(await f.fetch(url), 'timeout');
    });
  });
});

describe('redirects', () => {
  test('a chain of relative and absolute Locations is followed', async () => {
    srv.route('/r1', (_req, res) => res.writeHead(302, { location: 'r2?x=1' }).end());
    srv.route('/r2', (_req, res) => res.writeHead(301, { location: `${srv.base}/r3` }).end());
    srv.route('/r3', (_req, res) => res.writeHead(303, { location: '/r4' }).end());
    srv.route('/r4', (_req, res) => res.writeHead(307, { location: '/r5' }).end());
    srv.route('/r5', (_req, res) => res.writeHead(308, { location: '/r-final#frag' }).end());
    srv.route('/r-final', (_req, res) => sendOk(res));
    await withFetcher({ maxRedirects: 5 }, async (f) => {
      const r = await f.fetch(`${srv.base}/r1`);
      assertOk(r);
      assert.equal(r.finalUrl, `${srv.base}/r-final#frag`);
      assert.equal(r.attempts, 1);
      assert.equal(srv.hitsOf('/r2').length, 1);
    });
  });

  test('a loop gives redirect_limit', async () => {
    srv.route('/loop-a', (_req, res) => res.writeHead(302, { location: '/loop-b' }).end());
    srv.route('/loop-b', (_req, res) => res.writeHead(302, { location: '/loop-a' }).end());
    await withFetcher({ maxRedirects: 20 }, async (f) => {
      const r = await f.fetch(`${srv.base}/loop-a`);
      assertFail(r, 'redirect_limit');
      assert.match(r.message, /loop/);
      assert.equal(srv.hitsOf('/loop-a').length, 1);
    });
  });

  test('more than maxRedirects gives redirect_limit; exactly maxRedirects is fine', async () => {
    srv.route('/hop', (_req, res, _n, u) => {
      const left = Number(u.searchParams.get('left'));
      if (left === 0) sendOk(res);
      else res.writeHead(302, { location: `/hop?left=${left - 1}` }).end();
    });
    await withFetcher({ maxRedirects: 2 }, async (f) => {
      assertOk(await f.fetch(`${srv.base}/hop?left=2`));
      assertFail(await f.fetch(`${srv.base}/hop?left=3`), 'redirect_limit');
    });
    await withFetcher({ maxRedirects: 0 }, async (f) => {
      assertFail(await f.fetch(`${srv.base}/hop?left=1`), 'redirect_limit');
    });
  });

  test('a redirect to file:// is not followed', async () => {
    const url = srv.route('/to-file', (_req, res) => res.writeHead(302, { location: 'file:///etc/passwd' }).end());
    await withFetcher({}, async (f) => {
      assertFail(await f.fetch(url), 'unsupported_scheme');
    });
  });
});

describe('body size cap', () => {
  test('Content-Length above the cap is rejected before the body arrives', async () => {
    const url = srv.route('/huge-declared', (_req, res) => {
      res.writeHead(200, { 'content-length': 100_000 });
      res.flushHeaders(); // and then never send the body: only an early reject can answer
    });
    await withFetcher({ maxBodyBytes: 1000, totalTimeoutMs: 5000, bodyTimeoutMs: 5000 }, async (f) => {
      const r = await f.fetch(url);
      assertFail(r, 'body_too_large');
      assert.equal(r.status, 200);
    });
  });

  test('an endless chunked body is cut as soon as it passes the cap', async () => {
    let timer: NodeJS.Timeout | undefined;
    const url = srv.route('/endless', (_req, res) => {
      res.writeHead(200, { 'content-type': 'image/jpeg' }); // chunked, no length
      timer = setInterval(() => res.write(Buffer.alloc(300)), 5);
      res.on('close', () => clearInterval(timer));
    });
    await withFetcher({ maxBodyBytes: 1000, totalTimeoutMs: 5000, bodyTimeoutMs: 5000 }, async (f) => {
      assertFail(await f.fetch(url), 'body_too_large');
    });
    clearInterval(timer);
  });

  test('a body of exactly the cap is accepted, one byte more is not', async () => {
    srv.route('/sized', (_req, res, _n, u) => {
      const body = Buffer.alloc(Number(u.searchParams.get('n')), 7);
      if (u.searchParams.has('chunked')) {
        res.writeHead(200);
        res.end(body);
      } else sendOk(res, body);
    });
    await withFetcher({ maxBodyBytes: 1000 }, async (f) => {
      const r = await f.fetch(`${srv.base}/sized?n=1000`);
      assertOk(r);
      assert.equal(r.bytes.length, 1000);
      assertFail(await f.fetch(`${srv.base}/sized?n=1001`), 'body_too_large');
      assertFail(await f.fetch(`${srv.base}/sized?n=1001&chunked`), 'body_too_large');
    });
  });
});

describe('X-Robots-Tag', () => {
  const cases: [string | string[], boolean][] = [
    ['noai', false],
    ['noimageai', false],
    ['NOINDEX', false],
    ['noimageindex, nofollow', false],
    ['nofollow', true],
    ['googlebot: noindex', true],
    ['*: noai', false],
    ['filip-data: noimageai', false],
    ['testbot: noai', false],
    [['otherbot: noai', 'nosnippet'], true],
  ];
  test('disallowing directives give robots_disallowed; respectRobots=false fetches anyway', async () => {
    srv.route('/robots', (_req, res, _n, u) => {
      const tags = u.searchParams.getAll('tag');
      sendOk(res, PNG_ISH, { 'x-robots-tag': tags.length === 1 ? tags[0]! : tags });
    });
    const urlFor = (tag: string | string[]) =>
      `${srv.base}/robots?${(Array.isArray(tag) ? tag : [tag]).map((t) => `tag=${encodeURIComponent(t)}`).join('&')}`;
    await withFetcher({ userAgentToken: 'testbot/2.0' }, async (f) => {
      for (const [tag, allowed] of cases) {
        const r = await f.fetch(urlFor(tag));
        if (allowed) assertOk(r, JSON.stringify(tag));
        else {
          assertFail(r, 'robots_disallowed', JSON.stringify(tag));
          assert.equal(r.status, 200);
        }
      }
    });
    await withFetcher({ respectRobots: false }, async (f) => {
      for (const [tag] of cases) assertOk(await f.fetch(urlFor(tag)), JSON.stringify(tag));
    });
  });
});

describe('local files and schemes', () => {
  test('file:// URLs, absolute and relative paths; missing file; cap; directory', async () => {
    const file = join(tmp, 'img one.bin');
    await writeFile(file, PNG_ISH);
    await writeFile(join(tmp, 'big.bin'), Buffer.alloc(2000));
    await mkdir(join(tmp, 'dir'));
    await withFetcher({ maxBodyBytes: 1000 }, async (f) => {
      for (const input of [pathToFileURL(file).href, file, relative(process.cwd(), file)]) {
        const r = await f.fetch(input);
        assertOk(r, input);
        assert.deepEqual(r.bytes, PNG_ISH);
        assert.equal(r.finalUrl, pathToFileURL(file).href);
        assert.equal(r.contentType, undefined);
      }
      assertFail(await f.fetch(join(tmp, 'missing.jpg')), 'file_error');
      assertFail(await f.fetch(pathToFileURL(join(tmp, 'missing.jpg')).href), 'file_error');
      assertFail(await f.fetch(join(tmp, 'big.bin')), 'body_too_large');
      assertFail(await f.fetch(join(tmp, 'dir')), 'file_error');
    });
  });

  test('other schemes and malformed URLs', async () => {
    await withFetcher({}, async (f) => {
      assertFail(await f.fetch('ftp://example.com/a.jpg'), 'unsupported_scheme');
      assertFail(await f.fetch('data:image/png;base64,iVBORw0KGgo='), 'unsupported_scheme');
      assertFail(await f.fetch('http://[not-a-host/a.jpg'), 'network_error');
    });
  });
});

describe('concurrency, headers, connections, close', () => {
  test('never more than perHostConcurrency requests in flight to one host', async () => {
    const url = srv.route('/slow', (_req, res) => setTimeout(() => sendOk(res), 60));
    srv.maxInflight = 0;
    await withFetcher({ perHostConcurrency: 2, concurrency: 10 }, async (f) => {
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => f.fetch(`${url}?i=${i}`)));
      for (const r of results) assertOk(r);
      assert.ok(srv.maxInflight <= 2, `max in flight ${srv.maxInflight}`);
      assert.equal(srv.maxInflight, 2);
      assert.equal(f.activeHosts, 0);
    });
  });

  test('never more than concurrency requests in flight over all hosts', async () => {
    const other = await new TestServer().start();
    const shared = { inflight: 0, max: 0 };
    srv.shared = shared;
    other.shared = shared;
    try {
      const a = srv.route('/slow-a', (_req, res) => setTimeout(() => sendOk(res), 60));
      const b = other.route('/slow-b', (_req, res) => setTimeout(() => sendOk(res), 60));
      await withFetcher({ perHostConcurrency: 3, concurrency: 3 }, async (f) => {
        const jobs = Array.from({ length: 5 }, (_, i) => [f.fetch(`${a}?i=${i}`), f.fetch(`${b}?i=${i}`)]).flat();
        for (const r of await Promise.all(jobs)) assertOk(r);
      });
      assert.ok(shared.max <= 3, `max in flight ${shared.max}`);
    } finally {
      srv.shared = undefined;
      await other.stop();
    }
  });

  test('User-Agent names filip-data and the token', async () => {
    const url = srv.route('/ua', (_req, res) => sendOk(res));
    await withFetcher({ userAgentToken: 'mylab-crawler/1.0' }, async (f) => {
      assertOk(await f.fetch(url));
    });
    await withFetcher({}, async (f) => {
      assertOk(await f.fetch(url));
    });
    const [withToken, plain] = srv.hitsOf('/ua').map((h) => h.headers['user-agent'] ?? '');
    assert.match(withToken!, /^filip-data\/\d+\.\d+\.\d+ \(\+https:\/\/github\.com\/filip-data\/filip-data\) mylab-crawler\/1\.0$/);
    assert.match(plain!, /^filip-data\/\S+ \(\+https:\/\/github\.com\/filip-data\/filip-data\)$/);
  });

  test('keep-alive: sequential requests share a socket', async () => {
    const ka = await new TestServer().start();
    try {
      const url = ka.route('/ka', (_req, res) => sendOk(res));
      ka.route('/ka-404', (_req, res) => res.writeHead(404).end('small body'));
      await withFetcher({}, async (f) => {
        for (let i = 0; i < 4; i++) assertOk(await f.fetch(url));
        for (let i = 0; i < 2; i++) assertFail(await f.fetch(`${ka.base}/ka-404`), 'http_status');
      });
      assert.equal(ka.hits.length, 6);
      assert.ok(ka.connections < ka.hits.length, `${ka.connections} sockets for ${ka.hits.length} requests`);
    } finally {
      await ka.stop();
    }
  });

  test('close() returns promptly while a request is stalled, and settles it', async () => {
    const url = srv.route('/stall-close', () => undefined);
    const f = new Fetcher({ ...FAST, headersTimeoutMs: 10_000, totalTimeoutMs: 10_000 });
    const pending = f.fetch(url);
    const queued = f.fetch(`${url}?2`);
    while (srv.hitsOf('/stall-close').length === 0) await delay(5);
    const started = Date.now();
    await f.close();
    const [r1, r2] = await Promise.all([pending, queued]);
    assert.ok(Date.now() - started < 2000, `close took ${Date.now() - started} ms`);
    assertFail(r1, 'network_error');
    assertFail(r2, 'network_error');
    assertFail(await f.fetch(url), 'network_error');
    await f.close(); // idempotent
  });

  test('close() wakes a fetch sleeping between retries', async () => {
    const url = srv.route('/close-sleep', (_req, res) => res.writeHead(503, { 'retry-after': '30' }).end());
    const f = new Fetcher({ ...FAST, retries: 3, retryMaxDelayMs: 30_000 });
    const pending = f.fetch(url);
    while (srv.hitsOf('/close-sleep').length === 0) await delay(5);
    await delay(20);
    const started = Date.now();
    await f.close();
    assertFail(await pending, 'network_error');
    assert.ok(Date.now() - started < 2000);
  });
});

describe('response edge cases and slot hand-over', () => {
  test('informational 103 Early Hints before the 200 are skipped', async () => {
    const url = srv.route('/early-hints', (_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      setTimeout(() => sendOk(res, PNG_ISH, { 'x-robots-tag': 'nofollow' }), 10);
    });
    await withFetcher({}, async (f) => {
      const r = await f.fetch(url);
      assertOk(r);
      assert.equal(r.status, 200);
      assert.deepEqual(r.bytes, PNG_ISH);
    });
  });

  test('a big error body is not read to the end, and the fetcher goes on working', async () => {
    const big = srv.route('/big-404', (_req, res) => res.writeHead(404).end(Buffer.alloc(1024 * 1024, 1)));
    const ok = srv.route('/after-big-404', (_req, res) => sendOk(res));
    await withFetcher({}, async (f) => {
      const r = await f.fetch(big);
      assertFail(r, 'http_status');
      assert.equal(r.status, 404);
      assertOk(await f.fetch(ok));
    });
  });

  test('a redirect body is drained and the Location still followed', async () => {
    const target = srv.route('/drained-target', (_req, res) => sendOk(res));
    const url = srv.route('/drained-redirect', (_req, res) =>
      res.writeHead(302, { location: '/drained-target' }).end(Buffer.alloc(10_000, 2)),
    );
    await withFetcher({}, async (f) => {
      const r = await f.fetch(url);
      assertOk(r);
      assert.equal(r.finalUrl, target);
    });
  });

  test('with concurrency 1, requests run one at a time, in order, and all finish', async () => {
    const order: number[] = [];
    srv.route('/one-at-a-time', (_req, res, _n, u) => {
      order.push(Number(u.searchParams.get('i')));
      setTimeout(() => sendOk(res), 5);
    });
    srv.maxInflight = 0;
    await withFetcher({ concurrency: 1 }, async (f) => {
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => f.fetch(`${srv.base}/one-at-a-time?i=${i}`)));
      for (const r of results) assertOk(r);
    });
    assert.equal(srv.maxInflight, 1);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
  });

  test('close() settles fetches still waiting for a global slot', async () => {
    const url = srv.route('/stall-global', () => undefined);
    const f = new Fetcher({ ...FAST, concurrency: 1, headersTimeoutMs: 10_000, totalTimeoutMs: 10_000 });
    const running = f.fetch(url);
    const waiting = [f.fetch(`${url}?2`), f.fetch(`file://${join(tmp, 'no-such-file')}`)];
    while (srv.hitsOf('/stall-global').length === 0) await delay(5);
    const started = Date.now();
    await f.close();
    for (const r of await Promise.all([running, ...waiting])) assertFail(r, 'network_error');
    assert.ok(Date.now() - started < 2000, `close took ${Date.now() - started} ms`);
    assert.equal(srv.hitsOf('/stall-global').length, 1);
  });
});
