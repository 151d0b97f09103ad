// Corpus-wide state in Redis, so that the dedupe and filter rules decide on many machines exactly as
// they do on one. Layout (under `filip:<queue>:`); the four hashes are bucketed by the top `bucketBits`
// bits of a 64-bit fingerprint, so that small buckets stay in Redis's compact listpack encoding:
//
//   u:<b>  hash  URL fingerprint (8 bytes)             -> input index of the row that claimed it
//   i:<b>  hash  image sha256, first 8 bytes            -> index of the kept row
//   p:<b>  hash  fingerprint(sha256 + caption)          -> index of the kept row
//   c:<b>  hash  fingerprint(normalised caption)        -> count over every well-formed manifest row
//   h:<c>:<v>  string  the kept pHashes whose 16-bit chunk c is v (phash-redis.ts; the default)
//   n      string  the 8-byte pHashes of kept rows, in commit order (APPENDed; `replica` index only;
//                  with the near-duplicate check, 601-byte records: the hash, a flag, the check data)
//
// Near duplicates, by default (`redis`): the bucketed index of phash-redis.ts, which a committer reads
// per chunk (the buckets its rows probe, in a few pipelined MGETs) and holds nothing between chunks.
// The `replica` alternative: the committer keeps a replica of the log `n` in a local PhashIndex and
// brings it up to date with one GETRANGE of what was appended since it last looked; faster per chunk
// and 15 bytes a record in Redis (72 for the index), but every committer holds all hashes (about 59 bytes each) and loads them
// on its first commit. Figures for both: docs/scale-out.md.
//
// This state is written only by two Lua scripts, each atomic: applyCounts (a chunk's caption counts, once,
// guarded by the chunk's `counted` bit) and applyDecisions (a chunk's dedupe/near-dup insertions
// together with the record of its decisions, once, guarded by the commit lock's token and the
// chunk's turn). See docs/scale-out.md for why this makes a killed worker harmless.

import type { Redis } from 'ioredis';
import { FilipError } from '../core/errors.js';
import { normalizeCaption, normalizeUrl } from '../pipeline/dedupe.js';
import { PhashIndex } from '../filters/phash-index.js';
import { NEAR_DUP_CHECK_BYTES, type NearDupCheckThresholds } from '../image/near-dup-check.js';
import { fingerprint, fingerprintHex } from '../pipeline/hashset.js';
import type { Keys } from './plan.js';

/** @default 16: 65,536 buckets per structure; about 15 records a bucket at a million (listpack). */
export const DEFAULT_BUCKET_BITS = 16;

export type FingerprintKind = 'u' | 'i' | 'p' | 'c';

/** A fingerprint as its bucket and its 8-byte field. */
export interface Slot {
  readonly bucket: number;
  readonly field: Buffer;
}

function slotOf(hi: number, lo: number, bucketBits: number): Slot {
  const field = Buffer.allocUnsafe(8);
  field.writeUInt32BE(hi >>> 0, 0);
  field.writeUInt32BE(lo >>> 0, 4);
  return { bucket: bucketBits === 0 ? 0 : hi >>> (32 - bucketBits), field };
}

export function urlSlot(url: string, bits: number): Slot {
  const [hi, lo] = fingerprint(normalizeUrl(url));
  return slotOf(hi, lo, bits);
}
export function imageSlot(sha256: string, bits: number): Slot {
  const [hi, lo] = fingerprintHex(sha256);
  return slotOf(hi, lo, bits);
}
export function pairSlot(sha256: string, caption: string, bits: number): Slot {
  const [hi, lo] = fingerprint(`${sha256}\n${normalizeCaption(caption)}`);
  return slotOf(hi, lo, bits);
}
export function captionSlot(caption: string, bits: number): Slot {
  const [hi, lo] = fingerprint(normalizeCaption(caption));
  return slotOf(hi, lo, bits);
}

/** Local replica of the kept pHashes (`n`), for exact near-duplicate lookups without a scan. */
export class NearDupReplica {
  index: PhashIndex;
  /** Bytes of `n` already in the index. */
  offset = 0;
  /** Bytes of one record of the log: 8 (the hash), or with a check, 8 + a flag + the check data. */
  readonly recordBytes: number;

  constructor(
    readonly maxDistance: number,
    readonly check?: NearDupCheckThresholds,
  ) {
    this.index = new PhashIndex(maxDistance, check);
    this.recordBytes = check ? NEAR_DUP_RECORD_CHECKED_BYTES : 8;
  }

  /** The bytes a kept row appends to `n`: its hash, and with a check, a flag (1: it has check data) and the data. */
  record(hash: string, check?: Uint8Array): Buffer {
    const out = Buffer.alloc(this.recordBytes);
    out.write(hash, 0, 8, 'hex');
    if (this.check && check !== undefined) {
      out[8] = 1;
      out.set(check, 9);
    }
    return out;
  }

  /** Adds what was appended to `n` since the last sync (one round trip). */
  async sync(redis: Redis, keys: Keys): Promise<void> {
    const length = await redis.strlen(keys.nearDups);
    if (length < this.offset) this.reset(); // the state was cleared (--overwrite): start again
    if (length === this.offset) return;
    const bytes = await redis.getrangeBuffer(keys.nearDups, this.offset, length - 1);
    const size = this.recordBytes;
    for (let o = 0; o + size <= bytes.length; o += size) {
      const check = this.check && bytes[o + 8] === 1 ? Buffer.from(bytes.subarray(o + 9, o + size)) : undefined;
      this.index.add(bytes.toString('hex', o, o + 8), check);
    }
    this.offset += bytes.length - (bytes.length % size);
  }

  /** Forgets everything: the next sync reads the whole log. */
  reset(): void {
    this.index = new PhashIndex(this.maxDistance, this.check);
    this.offset = 0;
  }
}

/** Bytes of one record of the replica log `n` in a run with a check. */
export const NEAR_DUP_RECORD_CHECKED_BYTES = 9 + NEAR_DUP_CHECK_BYTES;

/** HGET of many slots in one pipeline: the stored value (an input index or a count) or null. */
export async function lookupSlots(redis: Redis, keys: Keys, kind: FingerprintKind, slots: readonly Slot[]): Promise<(number | null)[]> {
  if (slots.length === 0) return [];
  const out: (number | null)[] = [];
  for (let i = 0; i < slots.length; i += 10_000) {
    const p = redis.pipeline();
    for (const s of slots.slice(i, i + 10_000)) p.hget(keys.bucket(kind, s.bucket), s.field);
    for (const [err, value] of (await p.exec()) ?? []) {
      if (err) throw queueError('lookup failed', err);
      out.push(value === null ? null : Number(value));
    }
  }
  return out;
}

export function queueError(what: string, cause: unknown): FilipError {
  return new FilipError('FILIP_ERR_QUEUE', `Redis: ${what}: ${(cause as Error)?.message ?? String(cause)}`, {}, { cause });
}

/**
 * One insertion of a chunk's commit: a hash field set once (HSETNX), or bytes appended to a string
 * (a pHash bucket entry of phash-redis.ts, or a kept pHash on the `n` log). `exact`: append by
 * rewriting the string at its new length (appendExactLua) rather than with APPEND, for many small
 * strings that grow a little at a time (the pHash buckets).
 */
export type Insertion =
  | { readonly kind: FingerprintKind; readonly slot: Slot; readonly value: number }
  | { readonly append: string; readonly bytes: Buffer; readonly exact?: boolean };

/**
 * Lua that appends `bytes` to string `key` by SET of the joined value. APPEND grows a string to twice
 * its new length (room for the next appends): on 262,144 pHash buckets of ~165 bytes that slack is
 * about a third of their memory (424 against 305 bytes a bucket of 15 entries, redis-server 7.0).
 * Rewriting copies the bucket, which is small.
 */
export function appendExactLua(key: string, bytes: string): string {
  return `local old = redis.call('GET', ${key}) redis.call('SET', ${key}, old and (old .. ${bytes}) or ${bytes})`;
}

const APPLY_DECISIONS = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[2]) then return -2 end
local i = 4
while i <= #ARGV do
  if ARGV[i] == 'h' then
    redis.call('HSETNX', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif ARGV[i] == 's' then
    ${appendExactLua('ARGV[i + 1]', 'ARGV[i + 2]')}
    i = i + 3
  else
    redis.call('APPEND', ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  end
end
redis.call('SET', KEYS[2], ARGV[3])
return 1
`;

/**
 * Applies a chunk's insertions and stores its decisions, atomically, once: only while `token` holds
 * the commit lock and `chunk` is the next to commit. Returns 'applied', or 'already' when the
 * decisions of this chunk were stored before (by an attempt that died before finishing the commit).
 */
export async function applyDecisions(
  redis: Redis,
  keys: Keys,
  token: string,
  chunk: number,
  decisions: string,
  insertions: readonly Insertion[],
): Promise<'applied' | 'already'> {
  const args: (string | Buffer | number)[] = [token, chunk, decisions];
  for (const ins of insertions) {
    if ('kind' in ins) args.push('h', keys.bucket(ins.kind, ins.slot.bucket), ins.slot.field, ins.value);
    else args.push(ins.exact ? 's' : 'a', ins.append, ins.bytes);
  }
  const result = Number(await redis.eval(APPLY_DECISIONS, 3, keys.lock, keys.decided(chunk), keys.next, ...args));
  if (result === 1) return 'applied';
  if (result === 0) return 'already';
  throw new FilipError(
    'FILIP_ERR_QUEUE',
    result === -1 ? `lost the commit lock while committing chunk ${chunk}` : `chunk ${chunk} is not the next to commit`,
  );
}

const APPLY_COUNTS = `
if redis.call('SETBIT', KEYS[1], ARGV[1], 1) == 1 then return 0 end
local i = 2
while i <= #ARGV do
  redis.call('HINCRBY', ARGV[i], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
return 1
`;

/** Adds a chunk's caption counts once: a retried count job finds the chunk's bit set and adds nothing. */
export async function applyCounts(redis: Redis, keys: Keys, chunk: number, counts: ReadonlyMap<string, { slot: Slot; n: number }>): Promise<boolean> {
  const args: (string | Buffer | number)[] = [chunk];
  for (const { slot, n } of counts.values()) args.push(keys.bucket('c', slot.bucket), slot.field, n);
  return Number(await redis.eval(APPLY_COUNTS, 1, keys.counted, ...args)) === 1;
}

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const ADVANCE = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return -2 end
redis.call('SET', KEYS[2], tonumber(ARGV[2]) + 1)
redis.call('DEL', KEYS[3])
return 1
`;

export async function tryLock(redis: Redis, keys: Keys, token: string, ttlMs: number): Promise<boolean> {
  return (await redis.set(keys.lock, token, 'PX', ttlMs, 'NX')) === 'OK';
}
export async function renewLock(redis: Redis, keys: Keys, token: string, ttlMs: number): Promise<boolean> {
  return Number(await redis.eval(RENEW, 1, keys.lock, token, ttlMs)) === 1;
}
export async function releaseLock(redis: Redis, keys: Keys, token: string): Promise<void> {
  await redis.eval(RELEASE, 1, keys.lock, token);
}
/** Marks `chunk` committed (next = chunk + 1) and drops its decision record, if `token` still holds the lock. */
export async function advance(redis: Redis, keys: Keys, token: string, chunk: number): Promise<void> {
  const r = Number(await redis.eval(ADVANCE, 3, keys.lock, keys.next, keys.decided(chunk), token, chunk));
  if (r !== 1) throw new FilipError('FILIP_ERR_QUEUE', r === -1 ? `lost the commit lock after committing chunk ${chunk}` : `chunk ${chunk} was not the next to commit`);
}

/** Deletes every key of a queue's state (`--overwrite`). */
export async function deleteState(redis: Redis, keys: Keys): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${keys.prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (found.length > 0) deleted += await redis.unlink(...found);
  } while (cursor !== '0');
  return deleted;
}
