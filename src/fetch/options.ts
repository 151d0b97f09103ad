// Options of the fetch stage: one typed, defaulted and validated object, resolved once by
// resolveFetchOptions(). Also builds the User-Agent every request sends.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { FilipError } from '../core/errors.js';
import { boolOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';

/** Largest delay Node's timers accept (about 24.8 days); longer values would fire at once. */
const MAX_TIMER_MS = 2_147_483_647;

export interface FetchOptions {
  /**
   * Most requests (and file reads) in flight at once, over all hosts.
   * @default 64
   */
  readonly concurrency: number;
  /**
   * Most requests in flight at once to one `host:port`. Politeness towards a single server.
   * @default 16
   */
  readonly perHostConcurrency: number;
  /**
   * How long the TCP (and TLS) connect may take, in ms.
   * @default 10000
   */
  readonly connectTimeoutMs: number;
  /**
   * How long to wait for the complete response headers once the request is sent, in ms.
   * undici checks this and `bodyTimeoutMs` on a coarse clock (about 0.5 to 1 s resolution), so small
   * values fire late; `totalTimeoutMs` is an exact timer.
   * @default 10000
   */
  readonly headersTimeoutMs: number;
  /**
   * Longest silence allowed between two body chunks, in ms.
   * @default 10000
   */
  readonly bodyTimeoutMs: number;
  /**
   * Hard deadline for one request (one redirect hop of one attempt), from the moment it holds a
   * concurrency slot until its last body byte, in ms. Cuts servers that trickle bytes forever.
   * @default 30000
   */
  readonly totalTimeoutMs: number;
  /**
   * Extra attempts after a transient failure (network error, timeout, 5xx, 429). 0 disables retries.
   * @default 2
   */
  readonly retries: number;
  /**
   * Base of the exponential backoff between attempts, in ms: attempt n waits a random time in
   * [0, min(retryMaxDelayMs, retryBaseDelayMs * 2^(n-1))] ("full jitter").
   * @default 500
   */
  readonly retryBaseDelayMs: number;
  /**
   * Longest wait between two attempts, in ms. Also caps a server's `Retry-After`.
   * @default 10000
   */
  readonly retryMaxDelayMs: number;
  /**
   * Redirects followed per URL before giving up with `redirect_limit`. 0 follows none.
   * @default 5
   */
  readonly maxRedirects: number;
  /**
   * Largest body (or file) accepted, in bytes. Enforced from `Content-Length` and while streaming.
   * @default 20971520 (20 MiB)
   */
  readonly maxBodyBytes: number;
  /**
   * Appended to the User-Agent after a space, e.g. `mylab-crawler/1.0`, so site owners can reach you
   * and target you in `X-Robots-Tag`. Printable ASCII only.
   * @default ''
   */
  readonly userAgentToken: string;
  /**
   * Drop responses whose `X-Robots-Tag` says `noai`, `noimageai`, `noindex`, `noimageindex` (or `none`)
   * for all agents or for this one.
   * @default true
   */
  readonly respectRobots: boolean;
  /**
   * How long a DNS answer is reused, in ms. 0 looks every host up again on each new connection.
   * @default 60000
   */
  readonly dnsCacheTtlMs: number;
}

export const DEFAULT_FETCH_OPTIONS: FetchOptions = Object.freeze({
  concurrency: 64,
  perHostConcurrency: 16,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 10_000,
  totalTimeoutMs: 30_000,
  retries: 2,
  retryBaseDelayMs: 500,
  retryMaxDelayMs: 10_000,
  maxRedirects: 5,
  maxBodyBytes: 20 * 1024 * 1024,
  userAgentToken: '',
  respectRobots: true,
  dnsCacheTtlMs: 60_000,
});

/** Applies the defaults to `partial` and validates every field; throws FILIP_ERR_INVALID_OPTION. */
export function resolveFetchOptions(partial: Partial<FetchOptions> = {}): FetchOptions {
  if (partial === null || typeof partial !== 'object') throw invalid('fetch options', 'an object', partial);
  rejectUnknownKeys('fetch', partial, DEFAULT_FETCH_OPTIONS);
  // A key given as `undefined` means "use the default", as with a spread of optional CLI flags.
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const o: FetchOptions = { ...DEFAULT_FETCH_OPTIONS, ...given };

  const resolved: FetchOptions = {
    concurrency: intOption('concurrency', o.concurrency, 1),
    perHostConcurrency: intOption('perHostConcurrency', o.perHostConcurrency, 1),
    connectTimeoutMs: intOption('connectTimeoutMs', o.connectTimeoutMs, 1, MAX_TIMER_MS),
    headersTimeoutMs: intOption('headersTimeoutMs', o.headersTimeoutMs, 1, MAX_TIMER_MS),
    bodyTimeoutMs: intOption('bodyTimeoutMs', o.bodyTimeoutMs, 1, MAX_TIMER_MS),
    totalTimeoutMs: intOption('totalTimeoutMs', o.totalTimeoutMs, 1, MAX_TIMER_MS),
    retries: intOption('retries', o.retries, 0, 100),
    retryBaseDelayMs: intOption('retryBaseDelayMs', o.retryBaseDelayMs, 0, MAX_TIMER_MS),
    retryMaxDelayMs: intOption('retryMaxDelayMs', o.retryMaxDelayMs, 0, MAX_TIMER_MS),
    maxRedirects: intOption('maxRedirects', o.maxRedirects, 0, 100),
    // Buffers above 2 GiB - 1 cannot be built on every platform Node 20 supports.
    maxBodyBytes: intOption('maxBodyBytes', o.maxBodyBytes, 1, 2 ** 31 - 1),
    userAgentToken: stringOption('userAgentToken', o.userAgentToken, { allowEmpty: true }),
    respectRobots: boolOption('respectRobots', o.respectRobots),
    dnsCacheTtlMs: intOption('dnsCacheTtlMs', o.dnsCacheTtlMs, 0, MAX_TIMER_MS),
  };
  // A header value with control characters would be rejected by undici on every request (or, worse,
  // split the header): refuse it here, once.
  if (!/^[\x20-\x7e]*$/.test(resolved.userAgentToken) || resolved.userAgentToken !== resolved.userAgentToken.trim()) {
    throw invalid('userAgentToken', 'printable ASCII without leading or trailing spaces', resolved.userAgentToken);
  }
  if (resolved.retryBaseDelayMs > resolved.retryMaxDelayMs) {
    throw new FilipError(
      'FILIP_ERR_INVALID_OPTION',
      `Expected \`retryBaseDelayMs\` (${resolved.retryBaseDelayMs}) to be at most \`retryMaxDelayMs\` (${resolved.retryMaxDelayMs})`,
      { field: 'retryBaseDelayMs' },
    );
  }
  return Object.freeze(resolved);
}

/** Where site owners can read what this crawler is and how to opt out. */
export const PROJECT_URL = 'https://github.com/filip-data/filip-data';

/**
 * The package version, read from the nearest `package.json` named filip-data above this module, so the
 * same code works from `src/` (tsx) and from `dist/src/` (compiled).
 */
export const FILIP_VERSION: string = findPackageVersion();

function findPackageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'filip-data' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // no package.json here: keep walking up
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return '0.0.0';
}

/** `filip-data/<version> (+<project url>)`, then ` <token>` when a token is given. */
export function userAgent(token: string): string {
  const base = `filip-data/${FILIP_VERSION} (+${PROJECT_URL})`;
  return token === '' ? base : `${base} ${token}`;
}
