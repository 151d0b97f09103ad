// The HTTP engine: a translation server reached through undici. Two dialects:
// - `libretranslate`: POST /translate with JSON {q, source, target, format: 'text'}; q is the whole
//   batch (an array), the answer's translatedText an array in the same order. Two-letter codes.
// - `apertium-apy`: POST /translate with form fields langpair=eng|spa and q, one caption a request:
//   apy hands q to one Apertium pipeline as a single text, which would merge captions (see apertium.ts).
//
// Transport concerns live on the dispatcher, as undici intends: a connection cap, header and body
// timeouts, and its retry interceptor (5xx, 429, network errors and timeouts, with backoff and
// Retry-After). What is left here is the dialect and turning each failure into a per-text Error.

import PQueue from 'p-queue';
import { Agent, interceptors, request, type Dispatcher } from 'undici';

import { FilipError } from '../core/errors.js';
import { choiceOption, intOption, invalid, rejectUnknownKeys, stringOption } from '../core/options.js';
import { HTTP_FLAVOURS, iso6391, normalizeForTranslation, textError, type HttpFlavour, type Translator } from './engine.js';

export interface HttpTranslatorOptions {
  /** Server base URL (`http://host:port`, `/translate` is added) or the full translate URL. Required. */
  readonly url: string;
  /** @default 'libretranslate' */
  readonly flavour?: HttpFlavour;
  /**
   * Milliseconds to wait for a response's headers, and between body chunks, per attempt.
   * @default 30000
   */
  readonly timeoutMs?: number;
  /**
   * Extra attempts after a 5xx, 429, network error or timeout.
   * @default 2
   */
  readonly retries?: number;
  /**
   * First backoff delay in milliseconds; doubled per attempt (a Retry-After header wins).
   * @default 250
   */
  readonly retryDelayMs?: number;
  /**
   * Requests in flight at once.
   * @default 4
   */
  readonly concurrency?: number;
  /**
   * LibreTranslate `api_key`, sent when set.
   * @default null
   */
  readonly apiKey?: string | null;
}

export const DEFAULT_HTTP_TRANSLATOR_OPTIONS = {
  flavour: 'libretranslate',
  timeoutMs: 30_000,
  retries: 2,
  retryDelayMs: 250,
  concurrency: 4,
  apiKey: null,
} as const satisfies Omit<Required<HttpTranslatorOptions>, 'url'>;

export interface ResolvedHttpTranslatorOptions {
  readonly url: string;
  readonly flavour: HttpFlavour;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly retryDelayMs: number;
  readonly concurrency: number;
  readonly apiKey: string | null;
}

export function resolveHttpTranslatorOptions(given: HttpTranslatorOptions): ResolvedHttpTranslatorOptions {
  rejectUnknownKeys('http translator', given, { url: '', ...DEFAULT_HTTP_TRANSLATOR_OPTIONS });
  const o = { ...DEFAULT_HTTP_TRANSLATOR_OPTIONS, ...definedOnly(given) };
  const url = stringOption('url', o.url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid('url', 'an http(s) URL', url);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalid('url', 'an http(s) URL', url);
  if (o.apiKey !== null) stringOption('apiKey', o.apiKey);
  return {
    url: translateUrl(parsed),
    flavour: choiceOption('flavour', o.flavour, HTTP_FLAVOURS),
    timeoutMs: intOption('timeoutMs', o.timeoutMs, 1),
    retries: intOption('retries', o.retries, 0, 20),
    retryDelayMs: intOption('retryDelayMs', o.retryDelayMs, 0),
    concurrency: intOption('concurrency', o.concurrency, 1, 1024),
    apiKey: o.apiKey,
  };
}

/** Both dialects answer on /translate; a base URL gets it appended. */
function translateUrl(u: URL): string {
  const path = u.pathname.replace(/\/+$/, '');
  if (!path.endsWith('/translate')) u.pathname = `${path}/translate`;
  return u.toString();
}

/** Error codes worth another attempt: the retry interceptor's defaults plus timeouts. */
const RETRY_ERROR_CODES = [
  'ECONNRESET', 'ECONNREFUSED', 'ENOTFOUND', 'ENETDOWN', 'ENETUNREACH', 'EHOSTDOWN', 'EHOSTUNREACH', 'EPIPE',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
];

export class HttpTranslator implements Translator {
  readonly engine = 'http';
  readonly options: ResolvedHttpTranslatorOptions;
  private readonly agent: Agent;
  private readonly dispatcher: Dispatcher;
  private readonly queue: PQueue;
  private closed = false;

  constructor(options: HttpTranslatorOptions) {
    this.options = resolveHttpTranslatorOptions(options);
    const { timeoutMs, retries, retryDelayMs, concurrency } = this.options;
    this.agent = new Agent({ connections: concurrency, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs });
    this.dispatcher = this.agent.compose(
      interceptors.retry({
        maxRetries: retries,
        minTimeout: retryDelayMs,
        maxTimeout: Math.max(retryDelayMs * 8, 1000),
        timeoutFactor: 2,
        methods: ['GET', 'POST'],
        statusCodes: [429, 500, 502, 503, 504],
        errorCodes: RETRY_ERROR_CODES,
      }),
    );
    this.queue = new PQueue({ concurrency });
  }

  async translate(texts: readonly string[], from: string, to: string): Promise<(string | Error)[]> {
    if (this.closed) throw new FilipError('FILIP_ERR_TRANSLATOR', 'the http translator is closed');
    const clean = texts.map(normalizeForTranslation);
    const out: (string | Error)[] = clean.map(() => '');
    const todo = clean.flatMap((t, i) => (t === '' ? [] : [i]));
    if (todo.length === 0) return out;
    const fail = (why: string) => textError(`http ${this.options.flavour}`, from, to, why);

    if (this.options.flavour === 'apertium-apy') {
      await Promise.all(
        todo.map((i) =>
          this.queue.add(async () => {
            out[i] = await this.apy(clean[i]!, from, to).catch((err: unknown) => fail(describe(err)));
          }),
        ),
      );
      return out;
    }

    const batch = todo.map((i) => clean[i]!);
    const answer = await this.queue.add(() => this.libre(batch, from, to)).catch((err: unknown) => err as Error);
    if (!(answer instanceof Error)) {
      todo.forEach((i, k) => (out[i] = answer[k]!));
      return out;
    }
    // A refused batch may be refused for one text alone (a 4xx, an answer that does not parse): ask
    // for each text alone so the others still get theirs. Transient failures were already retried.
    if (batch.length > 1 && answer instanceof BadAnswer) {
      await Promise.all(
        todo.map((i) =>
          this.queue.add(async () => {
            const one = await this.libre([clean[i]!], from, to).catch((err: unknown) => err as Error);
            out[i] = one instanceof Error ? fail(describe(one)) : one[0]!;
          }),
        ),
      );
      return out;
    }
    for (const i of todo) out[i] = fail(describe(answer));
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.queue.onIdle();
    await this.agent.close();
  }

  private async libre(q: readonly string[], from: string, to: string): Promise<string[]> {
    const body: Record<string, unknown> = { q, source: iso6391(from), target: iso6391(to), format: 'text' };
    if (this.options.apiKey !== null) body['api_key'] = this.options.apiKey;
    const json = await this.post('application/json', JSON.stringify(body));
    const got = (json as { translatedText?: unknown } | null)?.translatedText;
    if (!Array.isArray(got) || got.length !== q.length || !got.every((t) => typeof t === 'string')) {
      throw new BadAnswer(`expected translatedText to be an array of ${q.length} strings, got ${preview(json)}`);
    }
    return got.map((t: string) => t.trim());
  }

  private async apy(q: string, from: string, to: string): Promise<string> {
    const form = new URLSearchParams({ langpair: `${from}|${to}`, q, markUnknown: 'no' });
    const json = await this.post('application/x-www-form-urlencoded', form.toString());
    const got = (json as { responseData?: { translatedText?: unknown } } | null)?.responseData?.translatedText;
    if (typeof got !== 'string') throw new BadAnswer(`expected responseData.translatedText, got ${preview(json)}`);
    return got.trim();
  }

  private async post(contentType: string, body: string): Promise<unknown> {
    const res = await request(this.options.url, {
      method: 'POST',
      dispatcher: this.dispatcher,
      headers: { 'content-type': contentType, accept: 'application/json' },
      body,
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) throw new BadAnswer(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new BadAnswer(`the answer is not JSON: ${JSON.stringify(text.slice(0, 100))}`);
    }
  }
}

/** The server answered, but not with a translation: not retried as a whole, but text by text. */
class BadAnswer extends Error {
  override name = 'BadAnswer';
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { code?: string; statusCode?: number };
  if (e.code === 'UND_ERR_REQ_RETRY') return `HTTP ${e.statusCode} after all retries`;
  return e.code ? `${e.code}: ${e.message}` : e.message;
}

function preview(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 100 ? `${s.slice(0, 100)}...` : s;
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
