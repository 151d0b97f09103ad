// How long to wait before the next attempt: exponential backoff with full jitter, or the server's
// Retry-After. Pure functions of their inputs (the random source and the clock are parameters).

/**
 * Delay before retry number `retry` (1 for the first retry): a uniform random time in
 * [0, min(maxMs, baseMs * 2^(retry-1))]. Full jitter spreads a burst of failures over the window
 * instead of sending them back in lock-step.
 */
export function backoffDelay(retry: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}

/**
 * Parses a Retry-After value (delay-seconds or an HTTP-date) into a delay in ms from `now`;
 * undefined when absent or unreadable. A date in the past gives 0.
 */
export function parseRetryAfter(value: string | readonly string[] | undefined, now: number = Date.now()): number | undefined {
  const text = (typeof value === 'string' ? value : value?.[0])?.trim();
  if (text === undefined || text === '') return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // Only accept things that look like an HTTP-date (have a letter month): Date.parse is lenient and
  // would read "1.5" or "-3" as dates.
  if (!/[a-z]{3}/i.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}
