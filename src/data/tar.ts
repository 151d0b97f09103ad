// WebDataset (.tar) training shards for the loader. Opening a shard walks its headers (one 512-byte block
// per member, read through a small window, never the member data) into an index: each sample's members
// with their byte ranges, grouped as webdataset groups them (the name up to the first dot of its last
// path part is the key; consecutive members with the same key are one sample). The index is cut into
// row groups of about GROUP_BYTES, so the stream holds one group at a time as it does for Parquet, and a
// read fetches only the byte ranges of the members the requested fields need.

import { promises as fs, readSync } from 'node:fs';
import path from 'node:path';
import { FilipError } from '../core/errors.js';
import { WEBDATASET_IMAGE_EXTENSIONS } from '../shard/webdataset.js';
import { bytes, checkBackTranslations, int, message, parseJson, text, type Where } from './values.js';
import type { AnySample, ReadCounters, ShardReader, StreamField } from './shards.js';

const BLOCK = 512;
/** Headers are read through a window of this size: the .txt and .json members of a sample are small, so
 * their headers usually share one read; an image's header needs its own (a larger window would mostly
 * read image bytes). */
const HEADER_WINDOW = 2 << 10;
/** A row group ends once its samples span this many bytes (the Parquet writer's default row group). */
const GROUP_BYTES = 16 << 20;
/** Ranges closer than this are fetched in one read: a small gap (headers, padding, a short member)
 * costs less than another read. Members of consecutive samples are contiguous, so a full read is one
 * read per group; a caption-only read skips the images. */
const MERGE_GAP = 4 << 10;

const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(Object.values(WEBDATASET_IMAGE_EXTENSIONS));
const FORMAT_OF_EXTENSION: Readonly<Record<string, string>> = Object.fromEntries(
  Object.entries(WEBDATASET_IMAGE_EXTENSIONS).map(([format, ext]) => [ext, format]),
);
const VIEW_MEMBER = /^view(\d+)\.([^.]+)$/;

interface Member {
  readonly offset: number;
  readonly size: number;
}

interface TarSample {
  readonly key: string;
  /** Members by extension (the part after the key's dot): jpg, txt, json, view0.jpg, ... */
  readonly members: Map<string, Member>;
}

export async function openTarShard(file: string, fields: ReadonlySet<StreamField>, counters: ReadCounters): Promise<ShardReader> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (err) {
    throw new FilipError('FILIP_ERR_SHARD', `cannot open the shard: ${message(err)}`, { file }, { cause: err });
  }
  try {
    const samples = await indexTar(fh, file, counters);
    return tarReader(file, samples, fields, counters);
  } finally {
    await fh.close();
  }
}

async function indexTar(fh: fs.FileHandle, file: string, counters: ReadCounters): Promise<TarSample[]> {
  const { size } = await fh.stat();
  let window = Buffer.alloc(0);
  let windowStart = 0;
  const block = (offset: number): Buffer => {
    if (offset < windowStart || offset + BLOCK > windowStart + window.length) {
      const length = Math.min(HEADER_WINDOW, size - offset);
      window = Buffer.alloc(length);
      // Synchronous on purpose: these are thousands of reads of 2 KiB from the page cache, a few
      // microseconds each, where a promise through libuv's thread pool costs ten times that.
      const bytesRead = readSync(fh.fd, window, 0, length, offset);
      counters.bytesRead += bytesRead;
      windowStart = offset;
    }
    return window.subarray(offset - windowStart, offset - windowStart + BLOCK);
  };
  const corrupt = (offset: number, what: string) => new FilipError('FILIP_ERR_SHARD', `not a valid tar: ${what} at byte ${offset}`, { file });

  const samples: TarSample[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (;;) {
    // An archive ends with zero blocks; a file that stops before them was cut short.
    if (offset + BLOCK > size) throw corrupt(offset, 'the file ends before the end-of-archive blocks');
    const h = block(offset);
    if (h.every((b) => b === 0)) break;
    if (!checksumOk(h)) throw corrupt(offset, 'bad header checksum');
    const length = parseOctal(h, 124, 12);
    if (length === undefined) throw corrupt(offset, 'bad size field');
    const dataStart = offset + BLOCK;
    if (dataStart + length > size) throw corrupt(offset, `member of ${length} bytes runs past the end of the file`);
    const type = h[156];
    if (type === 0x30 || type === 0) {
      const name = headerName(h);
      const m = /^((?:.*\/|)[^./]+)\.([^/]*)$/.exec(name);
      if (m) {
        const [, key, ext] = m as unknown as [string, string, string];
        let last = samples[samples.length - 1];
        if (last?.key !== key) {
          if (seen.has(key)) throw corrupt(offset, `the members of sample ${key} are not together`);
          seen.add(key);
          last = { key, members: new Map() };
          samples.push(last);
        }
        last.members.set(ext, { offset: dataStart, size: length });
      }
    }
    // Other entries (folders, PAX and GNU extension headers) carry no sample data: skip them.
    offset = dataStart + Math.ceil(length / BLOCK) * BLOCK;
  }
  return samples;
}

function checksumOk(h: Buffer): boolean {
  const stored = parseOctal(h, 148, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return stored === sum;
}

function parseOctal(h: Buffer, offset: number, width: number): number | undefined {
  const s = h.toString('latin1', offset, offset + width).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  return /^[0-7]+$/.test(s) ? parseInt(s, 8) : undefined;
}

function headerName(h: Buffer): string {
  const field = (start: number, width: number) => {
    const end = h.indexOf(0, start);
    return h.toString('utf8', start, end < 0 || end > start + width ? start + width : end);
  };
  const name = field(0, 100);
  const ustar = h.toString('latin1', 257, 262) === 'ustar';
  const prefix = ustar ? field(345, 155) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function tarReader(file: string, samples: readonly TarSample[], fields: ReadonlySet<StreamField>, counters: ReadCounters): ShardReader {
  // Row groups: consecutive samples spanning about GROUP_BYTES.
  const groupStarts = [0];
  let groupFrom = Infinity;
  for (let i = 0; i < samples.length; i++) {
    const span = memberSpan(samples[i]!);
    groupFrom = Math.min(groupFrom, span.start);
    if (span.end - groupFrom >= GROUP_BYTES && i + 1 < samples.length) {
      groupStarts.push(i + 1);
      groupFrom = Infinity;
    }
  }
  if (samples.length > 0) groupStarts.push(samples.length);
  // Every sample must have the views the first one has (the shard command writes K for all).
  const views = samples.length === 0 ? 0 : countViews(samples[0]!);
  const name = path.basename(file);

  /** Extensions of the members a row needs, with the field a missing one is reported under. */
  const wanted = (s: TarSample, row: number): string[] => {
    const exts: string[] = [];
    const need = (ext: string | undefined, what: string) => {
      if (ext === undefined || !s.members.has(ext)) {
        throw new FilipError('FILIP_ERR_SHARD', `sample ${s.key} has no ${what} member`, { file, row, field: `${s.key}.${ext ?? what}` });
      }
      exts.push(ext);
    };
    if (fields.has('caption')) need('txt', 'caption (.txt)');
    if (fields.has('backTranslations') || fields.has('image')) need('json', 'metadata (.json)');
    if (fields.has('image')) need(imageExtension(s), 'image');
    if (fields.has('views')) {
      for (let v = 0; v < views; v++) need(viewExtension(s, v), `view ${v}`);
    }
    return exts;
  };

  return {
    file,
    rows: samples.length,
    groupStarts,
    async read(lo, hi, keep) {
      const rows: { row: number; exts: string[] }[] = [];
      const ranges: Member[] = [];
      for (let row = lo; row < hi; row++) {
        if (keep !== undefined && !keep(row)) continue;
        const exts = wanted(samples[row]!, row);
        rows.push({ row, exts });
        for (const e of exts) ranges.push(samples[row]!.members.get(e)!);
      }
      const data = await fetchRanges(file, ranges, counters);
      counters.rowsRead += rows.length;
      counters.rowGroupsRead++;
      return rows.map(({ row, exts }) => {
        const s = samples[row]!;
        const member = (ext: string) => data(s.members.get(ext)!);
        const at = (field: string): Where => ({ file, row, field });
        const out: AnySample = { key: s.key, shard: name, row };
        let json: Record<string, unknown> | undefined;
        if (exts.includes('json')) {
          const where = at(`${s.key}.json`);
          const value = parseJson(member('json').toString('utf8'), where);
          if (typeof value !== 'object' || value === null || Array.isArray(value)) {
            throw new FilipError('FILIP_ERR_SHARD', 'expected a JSON object', where);
          }
          json = value as Record<string, unknown>;
        }
        if (fields.has('caption')) out.caption = member('txt').toString('utf8');
        if (fields.has('backTranslations')) {
          // img2dataset's KEY.json has no back_translations: an empty list, as for a Parquet shard without the column.
          const value = json!.back_translations;
          out.backTranslations = value === undefined ? [] : checkBackTranslations(value, at('back_translations'));
        }
        if (fields.has('image')) {
          const ext = imageExtension(s)!;
          out.image = bytes(member(ext), at(`${s.key}.${ext}`));
          out.imageFormat = json!.image_format === undefined ? FORMAT_OF_EXTENSION[ext]! : text(json!.image_format, at('image_format'));
          out.width = int(json!.width, at('width'));
          out.height = int(json!.height, at('height'));
        }
        if (fields.has('views')) {
          out.views = [];
          for (let v = 0; v < views; v++) {
            const ext = viewExtension(s, v)!;
            out.views.push(bytes(member(ext), at(`${s.key}.${ext}`)));
          }
        }
        return out;
      });
    },
  };
}

function memberSpan(s: TarSample): { start: number; end: number } {
  let start = Infinity;
  let end = 0;
  for (const m of s.members.values()) {
    start = Math.min(start, m.offset);
    end = Math.max(end, m.offset + m.size);
  }
  return { start, end };
}

function imageExtension(s: TarSample): string | undefined {
  for (const ext of s.members.keys()) if (IMAGE_EXTENSIONS.has(ext)) return ext;
  return undefined;
}

function viewExtension(s: TarSample, v: number): string | undefined {
  for (const ext of s.members.keys()) {
    const m = VIEW_MEMBER.exec(ext);
    if (m && Number(m[1]) === v) return ext;
  }
  return undefined;
}

function countViews(s: TarSample): number {
  let n = 0;
  while (viewExtension(s, n) !== undefined) n++;
  return n;
}

/** Reads the ranges (merging near ones) and returns a lookup from a range to its bytes. */
async function fetchRanges(file: string, ranges: readonly Member[], counters: ReadCounters): Promise<(m: Member) => Buffer> {
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset);
  const reads: { start: number; buf: Buffer }[] = [];
  if (sorted.length > 0) {
    let fh: fs.FileHandle | undefined;
    try {
      fh = await fs.open(file, 'r');
      let i = 0;
      while (i < sorted.length) {
        const start = sorted[i]!.offset;
        let end = start + sorted[i]!.size;
        let j = i + 1;
        while (j < sorted.length && sorted[j]!.offset <= end + MERGE_GAP) {
          end = Math.max(end, sorted[j]!.offset + sorted[j]!.size);
          j++;
        }
        const buf = Buffer.alloc(end - start);
        const { bytesRead } = await fh.read(buf, 0, buf.length, start);
        counters.bytesRead += bytesRead;
        if (bytesRead < buf.length) throw new Error(`the file ends at byte ${start + bytesRead}, before ${end}`);
        reads.push({ start, buf });
        i = j;
      }
    } catch (err) {
      throw new FilipError('FILIP_ERR_SHARD', `cannot read the shard: ${message(err)}`, { file }, { cause: err });
    } finally {
      await fh?.close();
    }
  }
  return (m) => {
    // The last read starting at or before the member holds it.
    let lo = 0;
    let hi = reads.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (reads[mid]!.start <= m.offset) lo = mid;
      else hi = mid - 1;
    }
    const r = reads[lo]!;
    return r.buf.subarray(m.offset - r.start, m.offset - r.start + m.size);
  };
}
