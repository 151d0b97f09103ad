// Values read from a shard, checked and converted for a TrainingSample; a bad one is FILIP_ERR_SHARD
// naming the file, row and field.

import { FilipError } from '../core/errors.js';
import type { CaptionTranslation } from '../core/sample.js';

export type Where = { file: string; row: number; field: string };

export function text(v: unknown, where: Where): string {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
  throw new FilipError('FILIP_ERR_SHARD', `expected a string, got ${describe(v)}`, where);
}

export function bytes(v: unknown, where: Where): Buffer {
  // A copy: the value is a view of a whole column chunk (or read), which must not outlive its row group.
  if (v instanceof Uint8Array) return Buffer.from(v);
  throw new FilipError('FILIP_ERR_SHARD', `expected binary bytes, got ${describe(v)}`, where);
}

export function int(v: unknown, where: Where): number {
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n === 'number' && Number.isInteger(n)) return n;
  throw new FilipError('FILIP_ERR_SHARD', `expected an integer, got ${describe(v)}`, where);
}

export function parseJson(json: string, where: Where): unknown {
  try {
    return JSON.parse(json);
  } catch (err) {
    throw new FilipError('FILIP_ERR_SHARD', `not valid JSON: ${message(err)}`, where, { cause: err });
  }
}

/** The back-translations as stored: a JSON array (Parquet column text, or the value in a tar's KEY.json). */
export function checkBackTranslations(value: unknown, where: Where): CaptionTranslation[] {
  if (!Array.isArray(value)) throw new FilipError('FILIP_ERR_SHARD', `expected a JSON array, got ${describe(value)}`, where);
  return value.map((t: unknown, i) => {
    const o = t as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null || typeof o.pivot !== 'string' || typeof o.engine !== 'string' || typeof o.text !== 'string') {
      throw new FilipError('FILIP_ERR_SHARD', `item ${i} is not {pivot, engine, text} strings: ${describe(t)}`, where);
    }
    return { pivot: o.pivot, engine: o.engine, text: o.text };
  });
}

export function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (v instanceof Uint8Array) return `${v.byteLength} bytes`;
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} chars` : JSON.stringify(v);
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object';
  return `${typeof v} ${String(v)}`;
}

export function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
