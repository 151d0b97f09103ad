// Downloads one URL (http, https, file, or a plain path) into memory, politely and within bounds:
// a global and a per-host concurrency cap, connect/header/body timeouts plus a hard deadline per
// request, retries with backoff, manual redirects, a body-size cap and X-Robots-Tag opt-outs.
// Every per-URL problem comes back as `{ ok: false, reason }`; fetch() itself never throws.

import { setMaxListeners } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { resolve as resolvePath } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

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
/** Network errors that another try moments later will not fix: no such host, bad URL. */
const PERMANENT_NETWORK_CODES: ReadonlySet<string> = new Set(['ENOTFOUND', 'UND_ERR_INVALID_ARG', 'ERR_INVALID_URL']);

/**
 * TLS failures: reason tls_error, never retried, not even by --retry-failed (a certificate does not
 * mend itself between attempts).
 */
const TLS_CODES: ReadonlySet<string> = new Set([
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

/** A caller waiting for a global slot (a FIFO linked list: no array shifting under load). */
interface Waiter {
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
  next: Waiter | undefined;
}

export class Fetcher {
  /** The resolved options this fetcher runs with. */
  readonly options: FetchOptions;
  readonly #agent: Agent;
  readonly #dispatcher: Dispatcher;
  /** Global slots in use (requests and file reads running). */
  #active = 0;
  /** Callers waiting for a global slot, oldest first. */
  #waitHead: Waiter | undefined;
  #waitTail: Waiter | undefined;
  readonly #hosts: HostLimiter;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #ctx: ExchangeContext;
  /** Aborted by close(): wakes retry sleeps and drops queued work. */
  readonly #closer = new AbortController();
  /** Every running request, so close() can cut them. */
  readonly #inflight = new Set<Exchange>();
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
    this.#hosts = new HostLimiter(o.perHostConcurrency);
    this.#headers = Object.freeze({ 'user-agent': userAgent(o.userAgentToken), accept: 'image/*,*/*;q=0.8' });
    this.#ctx = {
      options: o,
      robotsAgents: robotsAgentNames(o.userAgentToken),
      closer: this.#closer.signal,
      inflight: this.#inflight,
    };
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
    // Queued callers get no slot: they settle as closed without running.
    let waiter = this.#waitHead;
    this.#waitHead = this.#waitTail = undefined;
    for (; waiter !== undefined; waiter = waiter.next) waiter.reject(reason);
    for (const exchange of this.#inflight) exchange.cut(CLOSED_HOP, reason);
    await this.#agent.destroy().catch(() => undefined);
    await Promise.allSettled([...this.#pending]);
  }

  async #fetch(input: string): Promise<FetchResult> {
    if (this.#closer.signal.aborted) return failure('network_error', CLOSED_MESSAGE, 0);
    const target = classify(input);
    if (target.kind === 'fail') return failure(target.reason, target.message, 0);
    if (target.kind === 'file') {
      try {
        return await this.#withGlobalSlot(() => readFileCapped(target.path, this.options.maxBodyBytes));
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
      return await this.#hosts.run(hostKey(url), () => this.#withGlobalSlot(() => this.#request(url)), signal);
    } catch (err) {
      if (signal.aborted) return CLOSED_HOP;
      return { kind: 'fail', reason: 'network_error', message: describeError(err), retryable: false };
    }
  }

  /**
   * Runs `task` holding one of the `concurrency` global slots, FIFO among waiters. A plain counter
   * rather than a queue object: this runs once per request. Rejects, without running `task`, once
   * close() has started.
   */
  async #withGlobalSlot<T>(task: () => Promise<T>): Promise<T> {
    if (this.#closer.signal.aborted) throw this.#closer.signal.reason;
    if (this.#active < this.options.concurrency) {
      this.#active++;
    } else {
      // A releasing task hands its slot straight to us (#active stays the same).
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = { resolve, reject, next: undefined };
        if (this.#waitTail === undefined) this.#waitHead = waiter;
        else this.#waitTail.next = waiter;
        this.#waitTail = waiter;
      });
    }
    try {
      return await task();
    } finally {
      const next = this.#waitHead;
      if (next === undefined) {
        this.#active--;
      } else {
        this.#waitHead = next.next;
        if (this.#waitHead === undefined) this.#waitTail = undefined;
        next.resolve();
      }
    }
  }

  /**
   * Sends the GET and reads the answer under the hard deadline: whatever the server does, this
   * settles by totalTimeoutMs. Resolves with a Hop in every case, never rejects.
   */
  #request(url: URL): Promise<Hop> {
    if (this.#closer.signal.aborted) return Promise.resolve(CLOSED_HOP);
    return new Promise<Hop>((resolve) => {
      const exchange = new Exchange(this.#ctx, resolve);
      this.#inflight.add(exchange);
      try {
        this.#dispatcher.dispatch(
          { origin: url.origin, path: `${url.pathname}${url.search}`, method: 'GET', headers: { ...this.#headers } },
          exchange,
        );
      } catch (err) {
        exchange.onResponseError(undefined, err as Error);
      }
    });
  }
}

/** What every Exchange of one Fetcher shares (one object per Fetcher, not per request). */
interface ExchangeContext {
  readonly options: FetchOptions;
  readonly robotsAgents: readonly string[];
  /** Aborted by close(). */
  readonly closer: AbortSignal;
  /** Running exchanges; each removes itself when it settles. */
  readonly inflight: Set<Exchange>;
}

// Where an Exchange is in the response.
/** No final response head yet. */
const PHASE_HEAD = 0;
/** Collecting a 2xx body. */
const PHASE_BODY = 1;
/** Reading a small redirect or error body so the socket can be reused; the hop is decided. */
const PHASE_DRAIN = 2;

/**
 * One HTTP exchange, consumed through undici's handler API: chunks are collected straight from the
 * parser (no stream, no promise per chunk), the size cap is checked on each chunk, and the hard
 * deadline is one timer. Settles exactly once; whatever undici reports after that is ignored.
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly #ctx: ExchangeContext;
  readonly #resolve: (hop: Hop) => void;
  readonly #timer: NodeJS.Timeout;
  #controller: Dispatcher.DispatchController | undefined;
  /** Abort asked for before undici handed us a controller: applied in onRequestStart. */
  #cancel: Error | undefined;
  #settled = false;
  #phase: number = PHASE_HEAD;
  #status = 0;
  #contentType: string | undefined;
  /** Drain: the hop already decided. */
  #decided: Hop | undefined;
  #chunks: Buffer[] = [];
  #total = 0;

  constructor(ctx: ExchangeContext, resolve: (hop: Hop) => void) {
    this.#ctx = ctx;
    this.#resolve = resolve;
    const { totalTimeoutMs } = ctx.options;
    this.#timer = setTimeout(() => {
      const reason = new Error(`totalTimeoutMs (${totalTimeoutMs} ms) passed`);
      reason.name = 'TimeoutError';
      this.cut(
        {
          kind: 'fail',
          reason: 'timeout',
          message: `no complete response within totalTimeoutMs (${totalTimeoutMs} ms)`,
          retryable: true,
        },
        reason,
      );
    }, totalTimeoutMs);
  }

  /** Settles with `hop` now and drops the request (and its socket). */
  cut(hop: Hop, reason: Error): void {
    if (this.#settled) return;
    this.#settle(hop);
    this.#abort(reason);
  }

  #settle(hop: Hop): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    this.#chunks = [];
    this.#ctx.inflight.delete(this);
    this.#resolve(hop);
  }

  #abort(reason: Error): void {
    const controller = this.#controller;
    if (controller === undefined) {
      this.#cancel ??= reason;
      return;
    }
    if (!controller.aborted) controller.abort(reason);
  }

  /** Settles with `hop` and drops the rest of the body with its socket. */
  #discard(hop: Hop): void {
    this.#settle(hop);
    const reason = new Error('response dropped');
    reason.name = 'AbortError';
    this.#abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#cancel !== undefined) controller.abort(this.#cancel);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
  ): void {
    this.#controller = controller;
    if (this.#settled) {
      this.#abort(this.#cancel ?? new Error('response no longer wanted'));
      return;
    }
    // Informational (1xx) heads come before the real one: wait for it, as request() does.
    if (status < 200) return;
    this.#status = status;
    const location = first(headers.location);
    if (REDIRECT_STATUSES.has(status) && location !== undefined) {
      this.#drain({ kind: 'redirect', status, location });
      return;
    }
    if (status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(headers['retry-after']);
      this.#drain({
        kind: 'fail',
        reason: status === 429 ? 'rate_limited' : 'http_server_error',
        message: `HTTP ${status}`,
        status,
        retryable: true,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      });
      return;
    }
    if (status >= 300) {
      this.#drain({ kind: 'fail', reason: 'http_status', message: `HTTP ${status}`, status, retryable: false });
      return;
    }
    const { respectRobots, maxBodyBytes } = this.#ctx.options;
    if (respectRobots) {
      const directive = robotsDisallow(headers['x-robots-tag'], this.#ctx.robotsAgents);
      if (directive !== undefined) {
        this.#discard({ kind: 'fail', reason: 'robots_disallowed', message: `X-Robots-Tag: ${directive}`, status, retryable: false });
        return;
      }
    }
    const declared = first(headers['content-length']);
    if (declared !== undefined && /^\d+$/.test(declared.trim()) && Number(declared) > maxBodyBytes) {
      this.#discard(tooLarge(`Content-Length ${declared.trim()}`, maxBodyBytes, status));
      return;
    }
    this.#contentType = first(headers['content-type']);
    this.#phase = PHASE_BODY;
  }

  #drain(hop: Hop): void {
    this.#decided = hop;
    this.#phase = PHASE_DRAIN;
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    this.#total += chunk.length;
    if (this.#phase === PHASE_BODY) {
      const { maxBodyBytes } = this.#ctx.options;
      if (this.#total > maxBodyBytes) {
        this.#discard(tooLarge('body', maxBodyBytes, this.#status));
        return;
      }
      this.#chunks.push(chunk);
    } else if (this.#phase === PHASE_DRAIN && this.#total > DRAIN_LIMIT_BYTES) {
      // Too big to be worth reading: drop the socket instead.
      this.#discard(this.#decided!);
    }
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    if (this.#phase === PHASE_BODY) {
      this.#settle({
        kind: 'ok',
        status: this.#status,
        bytes: Buffer.concat(this.#chunks, this.#total),
        contentType: this.#contentType,
      });
    } else if (this.#phase === PHASE_DRAIN) {
      this.#settle(this.#decided!);
    } else {
      this.onResponseError(undefined, new Error('the response ended before its head'));
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    if (this.#settled) return;
    // An error while draining a redirect or error body does not change the hop.
    if (this.#phase === PHASE_DRAIN) this.#settle(this.#decided!);
    else this.#settle(errorHop(err, this.#ctx.closer.aborted));
  }
}

function errorHop(err: unknown, closed: boolean): Hop {
  if (closed) return CLOSED_HOP;
  const code = errorCode(err);
  if (code !== undefined && TIMEOUT_CODES.has(code)) {
    return { kind: 'fail', reason: 'timeout', message: describeError(err), retryable: true };
  }
  if (code !== undefined && (TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))) {
    return { kind: 'fail', reason: 'tls_error', message: describeError(err), retryable: false };
  }
  return {
    kind: 'fail',
    reason: 'network_error',
    message: describeError(err),
    retryable: code === undefined || !PERMANENT_NETWORK_CODES.has(code),
  };
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
