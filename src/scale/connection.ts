// The queue URL (`redis://HOST:PORT/DB`) and the Redis connections made from it. An unreachable or
// refusing server is FILIP_ERR_QUEUE naming the URL, raised at connect time, never mid-run.

import { Redis, type RedisOptions } from 'ioredis';
import { FilipError } from '../core/errors.js';

export interface QueueAddress {
  /** The URL as given, for messages. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly db: number;
  readonly password?: string;
  readonly username?: string;
}

/** Parses `redis://[user:password@]HOST[:PORT][/DB]`; anything else is FILIP_ERR_QUEUE naming the URL. */
export function parseQueueUrl(url: string): QueueAddress {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FilipError('FILIP_ERR_QUEUE', `not a queue URL (expected redis://HOST:PORT/DB): ${JSON.stringify(url)}`, { field: 'queue' });
  }
  if (u.protocol !== 'redis:' || u.hostname === '') {
    throw new FilipError('FILIP_ERR_QUEUE', `not a queue URL (expected redis://HOST:PORT/DB): ${JSON.stringify(url)}`, { field: 'queue' });
  }
  const dbText = u.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) {
    throw new FilipError('FILIP_ERR_QUEUE', `the database in ${url} must be a number from 0 up, got ${JSON.stringify(dbText)}`, { field: 'queue' });
  }
  const port = u.port === '' ? 6379 : Number(u.port);
  return {
    url,
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port,
    db,
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
  };
}

/** ioredis options for an address. BullMQ workers need `maxRetriesPerRequest: null` (blocking commands). */
export function redisOptions(a: QueueAddress, forWorker = false): RedisOptions {
  return {
    host: a.host,
    port: a.port,
    db: a.db,
    ...(a.password ? { password: a.password } : {}),
    ...(a.username ? { username: a.username } : {}),
    connectTimeout: 5000,
    ...(forWorker ? { maxRetriesPerRequest: null } : { maxRetriesPerRequest: 3 }),
  };
}

/**
 * Connects and checks the server answers (PING), or throws FILIP_ERR_QUEUE naming the URL. After the
 * first connection, ioredis reconnects by itself: a short Redis restart only pauses the workers.
 */
export async function connectRedis(a: QueueAddress, forWorker = false): Promise<Redis> {
  const redis = new Redis({
    ...redisOptions(a, forWorker),
    lazyConnect: true,
    // No endless retries before the first success: an unreachable server is a user error.
    retryStrategy: (times) => (times > 20 ? null : Math.min(times * 200, 2000)),
  });
  let lastError: Error | undefined;
  redis.on('error', (e: Error) => (lastError = e)); // reported through connect() below
  try {
    await withTimeout(redis.connect(), 8000);
    await withTimeout(redis.ping(), 8000);
  } catch (cause) {
    redis.disconnect();
    const why = lastError?.message ?? (cause as Error).message;
    throw new FilipError('FILIP_ERR_QUEUE', `cannot reach Redis at ${a.url}: ${why}`, { field: 'queue' }, { cause });
  }
  return redis;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
