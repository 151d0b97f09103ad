// Downloads one URL (http, https, file, or a plain path) into memory, politely and within bounds:
// a global and a per-host concurrency cap, connect/header/body timeouts plus a hard deadline per
// request, retries with backoff, manual redirects, a body-size cap and X-Robots-Tag opt-outs.
// Every per-URL problem comes back as `{ ok: false, reason }`; fetch() itself never throws.

import { setMaxListeners } from 'node:events';
import { resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import PQueue from 'p-queue';
import { Agent, interceptors, type Dispatcher } from 'undici';

import { backoffDelay, parseRetryAfter } from './backoff.js';
import { readFileCapped } from './file.js';
import { HostLimiter, hostKey } from './host-limiter.js';
import { resolveFetchOptions, userAgent, type FetchOptions } from './options.js';
import type { FetchReason, FetchResult } from './result.js';
import { robotsAgentNames, robotsDisallow } from './robots.js';

export { DEFAULT_FETCH_OPTIONS, resolveFetchOptions, userAgent, FILIP_VERSION } from './options.js';
export type { FetchOptions } from './options.js';
export { FETCH_REASONS } from './result.js';
export type { FetchFailure, FetchReason, FetchResult, FetchSuccess } from './result.js';
export { robotsDisallow, ROBOTS_DISALLOW_DIRECTIVES } from './robots.js';
export { backoffDelay, parseRetryAfter } from './backoff.js';

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
const TIMEOUT_CODES: ReadonlySet<string> = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
]);
/** Network errors that another try moments later will not fix: no such host, bad certificate, bad URL. */
const PERMANENT_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ENOTFOUND',
  'UND_ERR_INVALID_ARG',
  'ERR_INVALID_URL',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);
/** Most of an error response's body we read to keep its socket alive; past that, the socket is dropped. */
const DRAIN_LIMIT_BYTES = 64 * 1024;

/** Outcome of one HTTP request (one hop of one attempt). */
type Hop =
  | { readonly kind: 'ok'; readonly status: number; readonly bytes: Buffer; readonly contentType: string | undefined }
  | { readonly kind: 'redirect'; readonly status: number; readonly location: string }
  | {
      readonly kind: 'fail';
      readonly reason: FetchReason;
      readonly message: string;
      readonly status?: number;
      readonly retryable: boolean;
      readonly retryAfterMs?: number;
    };

type Target =
  | { readonly kind: 'http'; readonly url: URL }
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'fail'; readonly reason: FetchReason; readonly message: string };

const CLOSED_MESSAGE = 'the fetcher was closed before this fetch finished';
const CLOSED_HOP: Hop = { kind: 'fail', reason: 'network_error', message: CLOSED_MESSAGE, retryable: false };

export class Fetcher {
  /** The resolved options this fetcher runs with. */
  readonly options: FetchOptions;
  readonly #agent: Agent;
  readonly #dispatcher: Dispatcher;
  readonly #global: PQueue;
  readonly #hosts: HostLimiter;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #robotsAgents: readonly string[];
  /** Aborted by close(): wakes retry sleeps and drops queued work. */
  readonly #closer = new AbortController();
  /** One controller per running request, so close() can cut them. */
  readonly #inflight = new Set<AbortController>();
  readonly #pending = new Set<Promise<FetchResult>>();
  #closing: Promise<void> | undefined;

  constructor(options?: Partial<FetchOptions>) {
    this.options = resolveFetchOptions(options);
    const o = this.options;
    // Every queued task and sleeping retry listens on this one signal; thousands is normal here.
    setMaxListeners(0, this.#closer.signal);
    this.#agent = new Agent({
      connect: { timeout: o.connectTimeoutMs },
      headersTimeout: o.headersTimeoutMs,
      bodyTimeout: o.bodyTimeoutMs,
    });
    this.#dispatcher = this.#agent.compose(interceptors.dns({ maxTTL: o.dnsCacheTtlMs }));
    this.#global = new PQueue({ concurrency: o.concurrency });
    this.#hosts = new HostLimiter(o.perHostConcurrency);
    this.#headers = Object.freeze({ 'user-agent': userAgent(o.userAgentToken), accept: 'image/*,*/*;q=0.8' });
    this.#robotsAgents = robotsAgentNames(o.userAgentToken);
  }

  /** Hosts (`host:port`) with a request queued, running or between retries. Drops to 0 when idle. */
  get activeHosts(): number {
    return this.#hosts.size;
  }

  /** Fetches `url` (http, https, file URL, or a filesystem path). Never rejects. */
  fetch(url: string): Promise<FetchResult> {
    const pending = this.#fetch(url).catch(
      (err: unknown): FetchResult => ({
        ok: false,
        reason: 'network_error',
        message: `unexpected error: ${describeError(err)}`,
        attempts: 1,
      }),
    );
    this.#pending.add(pending);
    void pending.then(() => this.#pending.delete(pending));
    return pending;
  }

  /**
   * Cuts every request in flight, wakes retry sleeps, destroys the sockets and waits for the pending
   * fetch() calls to settle (as `network_error`). Later fetch() calls fail the same way. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const reason = new Error(CLOSED_MESSAGE);
    reason.name = 'AbortError';
    this.#closer.abort(reason);
    for (const controller of this.#inflight) controller.abort(reason);
    await this.#agent.destroy().catch(() => undefined);
    await Promise.allSettled([...this.#pending]);
  }

  async #fetch(input: string): Promise<FetchResult> {
    if (this.#closer.signal.aborted) return failure('network_error', CLOSED_MESSAGE, 0);
    const target = classify(input);
    if (target.kind === 'fail') return failure(target.reason, target.message, 0);
    if (target.kind === 'file') {
      try {
        return await this.#global.add(() => readFileCapped(target.path, this.options.maxBodyBytes), {
          signal: this.#closer.signal,
        });
      } catch {
        return failure('network_error', CLOSED_MESSAGE, 0);
      }
    }

    const { retries, maxRedirects, retryBaseDelayMs, retryMaxDelayMs } = this.options;
    let url = target.url;
    const seen = new Set([withoutHash(url)]);
    let redirects = 0;
    let attempts = 1;
    for (;;) {
      const hop = await this.#hop(url);
      if (hop.kind === 'ok') {
        return { ok: true, bytes: hop.bytes, status: hop.status, finalUrl: url.href, contentType: hop.contentType, attempts };
      }
      if (hop.kind === 'redirect') {
        let next: URL;
        try {
          next = new URL(hop.location, url);
        } catch {
          return failure('http_status', `HTTP ${hop.status} with an invalid Location ${JSON.stringify(hop.location)}`, attempts, hop.status);
        }
        // Never let a remote server point us at local files (or anything but the web).
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          return failure('unsupported_scheme', `redirect to unsupported scheme "${next.protocol}" (${next.href})`, attempts, hop.status);
        }
        const key = withoutHash(next);
        if (seen.has(key)) {
          return failure('redirect_limit', `redirect loop: ${url.href} -> ${next.href}, already visited`, attempts, hop.status);
        }
        if (++redirects > maxRedirects) {
          return failure('redirect_limit', `more than maxRedirects (${maxRedirects}) redirects, next ${next.href}`, attempts, hop.status);
        }
        seen.add(key);
        url = next;
        continue;
      }
      if (!hop.retryable || attempts > retries || this.#closer.signal.aborted) {
        const message = attempts > 1 ? `${hop.message} (after ${attempts} attempts)` : hop.message;
        return failure(hop.reason, message, attempts, hop.status);
      }
      // The wait happens outside both queues: a sleeping retry holds no concurrency slot.
      const delay =
        hop.retryAfterMs !== undefined
          ? Math.min(hop.retryAfterMs, retryMaxDelayMs)
          : backoffDelay(attempts, retryBaseDelayMs, retryMaxDelayMs);
      try {
        await sleep(delay, undefined, { signal: this.#closer.signal });
      } catch {
        return failure('network_error', CLOSED_MESSAGE, attempts);
      }
      attempts++;
    }
  }

  /** One request to `url`, once a per-host slot and then a global slot are free. */
  async #hop(url: URL): Promise<Hop> {
    const signal = this.#closer.signal;
    try {
      // Host slot first, global slot second: waiting for a busy host must not block other hosts.
      return await this.#hosts.run(hostKey(url), () => this.#global.add(() => this.#request(url), { signal }), signal);
    } catch (err) {
      if (signal.aborted) return CLOSED_HOP;
      return { kind: 'fail', reason: 'network_error', message: describeError(err), retryable: false };
    }
  }

  /** Runs the exchange under the hard deadline: whatever the server does, this settles by totalTimeoutMs. */
  async #request(url: URL): Promise<Hop> {
    const { totalTimeoutMs } = this.options;
    const controller = new AbortController();
    this.#inflight.add(controller);
    let timer: NodeJS.Timeout | undefined;
    // Settles the race on our own abort even if the library were slow to notice it.
    const cut = new Promise<Hop>((resolve) => {
      controller.signal.addEventListener(
        'abort',
        () =>
          resolve(
            this.#closer.signal.aborted
              ? CLOSED_HOP
              : {
                  kind: 'fail',
                  reason: 'timeout',
                  message: `no complete response within totalTimeoutMs (${totalTimeoutMs} ms)`,
                  retryable: true,
                },
          ),
        { once: true },
      );
      timer = setTimeout(() => {
        const reason = new Error(`totalTimeoutMs (${totalTimeoutMs} ms) passed`);
        reason.name = 'TimeoutError';
        controller.abort(reason);
      }, totalTimeoutMs);
    });
    try {
      return await Promise.race([this.#exchange(url, controller.signal), cut]);
    } finally {
      clearTimeout(timer);
      this.#inflight.delete(controller);
    }
  }

  /** Sends the GET and reads the answer. Resolves with a Hop in every case, never rejects. */
  async #exchange(url: URL, signal: AbortSignal): Promise<Hop> {
    let response: Dispatcher.ResponseData;
    try {
      response = await this.#dispatcher.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { ...this.#headers },
        signal,
      });
    } catch (err) {
      return this.#errorHop(err, signal);
    }
    const { statusCode: status, headers, body } = response;
    try {
      const location = first(headers.location);
      if (REDIRECT_STATUSES.has(status) && location !== undefined) {
        await drain(body);
        return { kind: 'redirect', status, location };
      }
      if (status === 429 || status >= 500) {
        await drain(body);
        const retryAfterMs = parseRetryAfter(headers['retry-after']);
        return {
          kind: 'fail',
          reason: status === 429 ? 'rate_limited' : 'http_server_error',
          message: `HTTP ${status}`,
          status,
          retryable: true,
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        };
      }
      if (status < 200 || status >= 300) {
        await drain(body);
        return { kind: 'fail', reason: 'http_status', message: `HTTP ${status}`, status, retryable: false };
      }
      if (this.options.respectRobots) {
        const directive = robotsDisallow(headers['x-robots-tag'], this.#robotsAgents);
        if (directive !== undefined) {
          discard(body);
          return { kind: 'fail', reason: 'robots_disallowed', message: `X-Robots-Tag: ${directive}`, status, retryable: false };
        }
      }
      const { maxBodyBytes } = this.options;
      const declared = first(headers['content-length']);
      if (declared !== undefined && /^\d+$/.test(declared.trim()) && Number(declared) > maxBodyBytes) {
        discard(body);
        return tooLarge(`Content-Length ${declared.trim()}`, maxBodyBytes, status);
      }
      const chunks: Buffer[] = [];
      let total = 0;
      for await (const chunk of body as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > maxBodyBytes) {
          discard(body);
          return tooLarge('body', maxBodyBytes, status);
        }
        chunks.push(chunk);
      }
      return { kind: 'ok', status, bytes: Buffer.concat(chunks, total), contentType: first(headers['content-type']) };
    } catch (err) {
      discard(body);
      return this.#errorHop(err, signal);
    }
  }

  #errorHop(err: unknown, signal: AbortSignal): Hop {
    if (this.#closer.signal.aborted) return CLOSED_HOP;
    if (signal.aborted) {
      return { kind: 'fail', reason: 'timeout', message: describeError(signal.reason), retryable: true };
    }
    const code = errorCode(err);
    if (code !== undefined && TIMEOUT_CODES.has(code)) {
      return { kind: 'fail', reason: 'timeout', message: describeError(err), retryable: true };
    }
    return {
      kind: 'fail',
      reason: 'network_error',
      message: describeError(err),
      retryable: code === undefined || !PERMANENT_NETWORK_CODES.has(code),
    };
  }
}

/** Sorts an input into http(s), a local file, or an immediate failure. */
function classify(input: string): Target {
  if (typeof input !== 'string') return { kind: 'fail', reason: 'network_error', message: `not a URL: ${String(input)}` };
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(input)?.[1]?.toLowerCase();
  // No scheme, or a Windows drive letter ("C:\x"): a filesystem path, relative to the working directory.
  if (scheme === undefined || (scheme.length === 1 && process.platform === 'win32')) {
    return input === '' ? { kind: 'fail', reason: 'file_error', message: 'empty path' } : { kind: 'file', path: resolvePath(input) };
  }
  if (scheme === 'http' || scheme === 'https') {
    try {
      return { kind: 'http', url: new URL(input) };
    } catch {
      return { kind: 'fail', reason: 'network_error', message: `invalid URL ${JSON.stringify(input)}` };
    }
  }
  if (scheme === 'file') {
    try {
      return { kind: 'file', path: fileURLToPath(input) };
    } catch (err) {
      return { kind: 'fail', reason: 'file_error', message: describeError(err) };
    }
  }
  return { kind: 'fail', reason: 'unsupported_scheme', message: `unsupported URL scheme "${scheme}:"` };
}

function failure(reason: FetchReason, message: string, attempts: number, status?: number): FetchResult {
  return status === undefined ? { ok: false, reason, message, attempts } : { ok: false, reason, message, status, attempts };
}

function tooLarge(what: string, maxBodyBytes: number, status: number): Hop {
  return {
    kind: 'fail',
    reason: 'body_too_large',
    message: `${what} exceeds maxBodyBytes (${maxBodyBytes})`,
    status,
    retryable: false,
  };
}

/** Drops a body we will not read, and its socket. The stream's abort error has no one to hear it. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Reads (and discards) a small error body so the socket can be reused; drops the socket if it is big. */
async function drain(body: Dispatcher.ResponseData['body']): Promise<void> {
  await body.dump({ limit: DRAIN_LIMIT_BYTES }).catch(() => undefined);
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function withoutHash(url: URL): string {
  return url.hash === '' ? url.href : url.href.slice(0, -url.hash.length);
}

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null | undefined;
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return undefined;
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = errorCode(err);
  const cause = err.cause instanceof Error && err.cause.message !== err.message ? ` (${err.cause.message})` : '';
  const text = `${err.message}${cause}`;
  return code !== undefined && !text.includes(code) ? `${code}: ${text}` : text;
}
