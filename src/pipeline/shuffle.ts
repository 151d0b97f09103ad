// A seeded shuffle of the whole input in bounded memory (an external scatter-gather shuffle).
//
// Scatter: each sample goes to one of B bucket files, chosen by a seeded hash of its key; appends are
// buffered (at most `bufferBytes` in memory for all buckets together) and written in bulk.
// Gather: bucket by bucket, the file is loaded, its samples are put in key order (so the result does
// not depend on the order they were appended in), shuffled in memory by Fisher-Yates with a PRNG seeded
// by (seed, bucket), and yielded. Concatenating uniformly shuffled buckets whose members were assigned
// independently and uniformly gives a uniformly random permutation of the whole input (the classic
// two-pass shuffle), and memory is bounded by the largest bucket, not by the input.
//
// Resume: the caller persists `state()` after a `flush()` together with how far its input got; a later
// `restore(state)` cuts every bucket file back to that length, so rows appended after the checkpoint
// are not kept twice. The gather is a pure function of the files, the seed and a start position.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import { intOption } from '../core/options.js';
import { mulberry32 } from '../core/random.js';
import type { CaptionTranslation, ExtraColumns, ImageFormat, Sample, SampleSource, TranslationFailure } from '../core/sample.js';
import { makeDir } from '../core/make-dir.js';

/** 32-bit FNV-1a of a string's UTF-16 code units: a cheap, stable hash for seeding. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The bucket of a key under a seed: uniform over [0, buckets), independent of the input order. */
export function bucketOf(key: string, seed: number, buckets: number): number {
  // mulberry32 scrambles its seed thoroughly, so its first draw is a good hash of (seed, key).
  return Math.floor(mulberry32(hash32(`${seed >>> 0}:${key}`))() * buckets);
}

/** Fisher-Yates in place with the given uniform [0, 1) source. Returns the same array. */
export function shuffleInPlace<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  }
  return items;
}

/** The PRNG that shuffles bucket b. */
export function bucketRandom(seed: number, bucket: number): () => number {
  return mulberry32(hash32(`${seed >>> 0}:bucket:${bucket}`));
}

// ---- Record encoding: one sample as bytes in a bucket file. ----
//
//   u32 record length (after this field) | u32 JSON length | JSON | u32 image length | image
//   | u32 view count | (u32 view length | view bytes) * count
// JSON holds every field but the image and view bytes. Little-endian throughout.

interface RecordHeader {
  key: string;
  index: number;
  url: string;
  caption: string;
  source: SampleSource;
  extra: ExtraColumns;
  image: { format: ImageFormat; width: number; height: number; originalWidth: number; originalHeight: number; sha256: string; phash: string; phashWeak?: string; nearDupCheck?: string };
  backTranslations?: CaptionTranslation[];
  translationFailures?: TranslationFailure[];
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(n, 0);
  return b;
}

/** One ok sample as the buffers of its record (the image and views are referenced, not copied). */
export function encodeSample(sample: Sample): Buffer[] {
  const img = sample.image;
  if (sample.status !== 'ok' || img === undefined) throw new Error(`encodeSample: sample ${sample.key} is not an ok sample with an image`);
  const header: RecordHeader = {
    key: sample.key,
    index: sample.index,
    url: sample.url,
    caption: sample.caption,
    source: sample.source,
    extra: sample.extra,
    image: {
      format: img.format,
      width: img.width,
      height: img.height,
      originalWidth: img.originalWidth,
      originalHeight: img.originalHeight,
      sha256: img.sha256,
      phash: img.phash,
      ...(img.phashWeak !== undefined ? { phashWeak: img.phashWeak } : {}),
      ...(img.nearDupCheck !== undefined ? { nearDupCheck: Buffer.from(img.nearDupCheck.buffer, img.nearDupCheck.byteOffset, img.nearDupCheck.byteLength).toString('base64') } : {}),
    },
    ...(sample.backTranslations ? { backTranslations: sample.backTranslations } : {}),
    ...(sample.translationFailures ? { translationFailures: sample.translationFailures } : {}),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const views = sample.views ?? [];
  const parts: Buffer[] = [Buffer.alloc(0), u32(json.length), json, u32(img.bytes.length), img.bytes, u32(views.length)];
  for (const v of views) parts.push(u32(v.length), v);
  let length = 0;
  for (const p of parts) length += p.length;
  parts[0] = u32(length);
  return parts;
}

/** Every record of a bucket file's bytes, as ok Samples whose buffers are views into `buf`. */
export function decodeSamples(buf: Buffer, file = '(bucket)'): Sample[] {
  const out: Sample[] = [];
  let at = 0;
  const need = (n: number) => {
    if (at + n > buf.length) throw new FilipError('FILIP_ERR_SHARD', `bucket file is truncated at byte ${at}`, { file, row: out.length });
  };
  const take = (n: number) => {
    need(n);
    const b = buf.subarray(at, at + n);
    at += n;
    return b;
  };
  const readU32 = () => {
    need(4);
    const n = buf.readUInt32LE(at);
    at += 4;
    return n;
  };
  while (at < buf.length) {
    const end = at + 4 + readU32();
    if (end > buf.length) throw new FilipError('FILIP_ERR_SHARD', `bucket file is truncated at byte ${at}`, { file, row: out.length });
    const h = JSON.parse(take(readU32()).toString('utf8')) as RecordHeader;
    const bytes = take(readU32());
    const views: Buffer[] = [];
    for (let v = readU32(); v > 0; v--) views.push(take(readU32()));
    if (at !== end) throw new FilipError('FILIP_ERR_SHARD', `bucket record has a wrong length`, { file, row: out.length });
    out.push({
      key: h.key,
      index: h.index,
      url: h.url,
      caption: h.caption,
      source: h.source,
      extra: h.extra,
      status: 'ok',
      image: (({ nearDupCheck, ...rest }) => ({ ...rest, bytes, ...(nearDupCheck !== undefined ? { nearDupCheck: Buffer.from(nearDupCheck, 'base64') } : {}) }))(h.image),
      ...(h.backTranslations ? { backTranslations: h.backTranslations } : {}),
      ...(h.translationFailures ? { translationFailures: h.translationFailures } : {}),
      ...(views.length > 0 ? { views } : {}),
    });
  }
  return out;
}

// ---- Scatter ----

/** What a checkpoint records about the bucket files: their committed lengths and row counts. */
export interface ScatterState {
  readonly bytes: readonly number[];
  readonly rows: readonly number[];
}

export function bucketFile(dir: string, bucket: number): string {
  return path.join(dir, `bucket-${String(bucket).padStart(5, '0')}.bin`);
}

export class ShuffleScatter {
  readonly dir: string;
  readonly buckets: number;
  readonly seed: number;
  readonly #bufferBytes: number;
  readonly #bytes: number[];
  readonly #rows: number[];
  #pending = new Map<number, Buffer[]>();
  #pendingBytes = 0;

  /**
   * @param bufferBytes appends held in memory, all buckets together, before they are written. @default 32 MiB
   */
  constructor(dir: string, buckets: number, seed: number, bufferBytes = 32 * 1024 * 1024) {
    this.dir = dir;
    this.buckets = intOption('buckets', buckets, 1, 99_999);
    this.seed = intOption('seed', seed, 0, 2 ** 32 - 1);
    this.#bufferBytes = intOption('bufferBytes', bufferBytes, 1);
    this.#bytes = new Array<number>(buckets).fill(0);
    this.#rows = new Array<number>(buckets).fill(0);
  }

  /**
   * Starts the bucket files: empty without a state, else each cut back to the state's length. A file
   * shorter than its recorded length (lost by a crash of the machine, not the process) is an error the
   * caller answers by starting the scatter again.
   */
  async restore(state?: ScatterState): Promise<void> {
    await makeDir(this.dir, 'output');
    if (state && (state.bytes.length !== this.buckets || state.rows.length !== this.buckets)) {
      throw new FilipError('FILIP_ERR_RESUME_MISMATCH', `the checkpoint has ${state.bytes.length} buckets, not ${this.buckets}`, { file: this.dir });
    }
    for (let b = 0; b < this.buckets; b++) {
      const file = bucketFile(this.dir, b);
      const want = state?.bytes[b] ?? 0;
      const size = await fs.stat(file).then((s) => s.size, () => -1);
      if ((size === -1 ? 0 : size) < want) throw new FilipError('FILIP_ERR_SHARD', `bucket file is shorter (${size} bytes) than its checkpoint (${want})`, { file });
      if (size === -1) await fs.writeFile(file, '');
      else if (size > want) await fs.truncate(file, want);
      this.#bytes[b] = want;
      this.#rows[b] = state?.rows[b] ?? 0;
    }
  }

  /** Queues one ok sample for its bucket; true when the buffers are full and the caller should flush. */
  add(sample: Sample): boolean {
    const b = bucketOf(sample.key, this.seed, this.buckets);
    const parts = encodeSample(sample);
    let list = this.#pending.get(b);
    if (!list) this.#pending.set(b, (list = []));
    for (const p of parts) {
      list.push(p);
      this.#pendingBytes += p.length;
      this.#bytes[b]! += p.length;
    }
    this.#rows[b]!++;
    return this.#pendingBytes >= this.#bufferBytes;
  }

  /** Writes every queued append. After it resolves, state() describes the files exactly. */
  async flush(): Promise<void> {
    const pending = this.#pending;
    this.#pending = new Map();
    this.#pendingBytes = 0;
    for (const b of [...pending.keys()].sort((x, y) => x - y)) {
      const file = bucketFile(this.dir, b);
      const fh = await fs.open(file, 'a');
      try {
        const parts = pending.get(b)!;
        let want = 0;
        for (const p of parts) want += p.length;
        const { bytesWritten } = await fh.writev(parts);
        // A short writev (disk full, a signal) is finished with the concatenated rest.
        if (bytesWritten < want) await fh.write(Buffer.concat(parts).subarray(bytesWritten));
      } catch (cause) {
        throw new FilipError('FILIP_ERR_SHARD', 'cannot append to a shuffle bucket', { file }, { cause });
      } finally {
        await fh.close();
      }
    }
  }

  /** Lengths and rows of the bucket files including queued appends: persist it only after flush(). */
  state(): ScatterState {
    return { bytes: [...this.#bytes], rows: [...this.#rows] };
  }
}

// ---- Gather ----

/**
 * The samples of the bucket files in shuffled order, from position `start` (0-based, across all
 * buckets) on. Each bucket is loaded whole (memory: its size in `state.bytes`); buckets before the
 * start position are skipped without being read. `index` of each yielded sample is its position.
 */
export async function* gatherShuffled(dir: string, state: ScatterState, seed: number, start = 0): AsyncGenerator<Sample> {
  let position = 0;
  for (let b = 0; b < state.rows.length; b++) {
    const rows = state.rows[b]!;
    if (position + rows <= start) {
      position += rows;
      continue;
    }
    const file = bucketFile(dir, b);
    let buf: Buffer;
    try {
      const fh = await fs.open(file, 'r');
      try {
        buf = Buffer.allocUnsafe(state.bytes[b]!);
        // One read(2) returns at most about 2 GiB, and may return less: read until the bucket is in.
        for (let at = 0; at < buf.length; ) {
          const { bytesRead } = await fh.read(buf, at, buf.length - at, at);
          if (bytesRead === 0) throw new Error(`read ${at} of ${buf.length} bytes`);
          at += bytesRead;
        }
      } finally {
        await fh.close();
      }
    } catch (cause) {
      throw new FilipError('FILIP_ERR_SHARD', 'cannot read a shuffle bucket', { file }, { cause });
    }
    const samples = decodeSamples(buf, file);
    if (samples.length !== rows) throw new FilipError('FILIP_ERR_SHARD', `bucket holds ${samples.length} rows, its checkpoint says ${rows}`, { file });
    samples.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    shuffleInPlace(samples, bucketRandom(seed, b));
    for (const s of samples) {
      if (position >= start) yield { ...s, index: position };
      position++;
    }
  }
}
