// WebDataset shards: a plain POSIX (ustar) tar whose members are grouped by key, as img2dataset writes
// them and as open_clip's `webdataset` loader reads them: `KEY.jpg` (the image), `KEY.txt` (the
// caption), `KEY.json` (every other field) and, here, `KEY.view0.jpg` ... for the AutoAugment views.
// WebDataset splits a member name at its first dot, so `KEY.view0.jpg` belongs to sample KEY under the
// extension `view0.jpg`, and a reader that asks for `jpg;png;webp` and `txt` never sees the views.
//
// The tar writer is our own and streams: headers and data go to the file as they come, padded to
// 512-byte blocks, and the archive ends with two zero blocks padded to tar's 10,240-byte record. Names
// are at most 100 bytes (our keys are 13 digits), so neither the ustar prefix field nor GNU/PAX long
// names are needed; a longer name is an error, not a silent truncation. As with the Parquet writer, the
// writer writes exactly `path`: the caller writes to a temporary name and renames it after close().

import { promises as fs } from 'node:fs';
import { FilipError } from '../core/errors.js';
import { intOption, stringOption } from '../core/options.js';
import type { Sample } from '../core/sample.js';
import { EXTRA_PREFIX } from './schema.js';

const BLOCK = 512;
/** GNU tar and Python's tarfile pad an archive to 20 blocks; we do the same so any reader is content. */
const RECORD = 20 * BLOCK;
/** Data is gathered into writes of about this size: one syscall per hundred images or so, not per member. */
const FLUSH_BYTES = 4 << 20;
const ZERO = Buffer.alloc(2 * RECORD);
const RESOLVED: Promise<void> = Promise.resolve();

/** Extension of the image member for each stored format (img2dataset's names). */
export const WEBDATASET_IMAGE_EXTENSIONS: Readonly<Record<string, string>> = {
  jpeg: 'jpg',
  webp: 'webp',
  png: 'png',
  gif: 'gif',
  tiff: 'tiff',
  avif: 'avif',
  heif: 'heif',
  svg: 'svg',
};

/** What each member of a sample holds, for the dataset card and --help. */
export const WEBDATASET_MEMBERS = {
  'KEY.jpg': 'the image as stored (KEY.webp / KEY.png for those formats)',
  'KEY.txt': 'the caption, UTF-8',
  'KEY.json':
    'every other field: key, url, caption, width, height, original_width, original_height, image_format, sha256, phash, phash_weak, source, extra_* columns, back_translations, translation_failures',
  'KEY.viewN.jpg': 'AutoAugment view N (0-based), same format as the image; only with --augment-views K > 0',
} as const;

export interface TarMember {
  readonly name: string;
  readonly data: Uint8Array;
}

/** Writes one octal number NUL-terminated into `width` bytes of `header` at `offset`. */
function writeOctal(header: Buffer, offset: number, width: number, value: number, field: string): void {
  const digits = value.toString(8);
  if (digits.length > width - 1) {
    // 11 octal digits hold sizes up to 8 GiB; a member that large is not an image.
    throw new FilipError('FILIP_ERR_SHARD', `${field} ${value} does not fit a ustar header`, { field });
  }
  header.write(digits.padStart(width - 1, '0'), offset, width - 1, 'ascii');
  header[offset + width - 1] = 0;
}

function byteSum(b: Buffer, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum += b[i]!;
  return sum;
}

/**
 * The fields every header shares: mode 0644, owner 0:0 named root, regular file, POSIX magic "ustar\0"
 * and version "00", and the checksum field as eight spaces (how the checksum is computed). Name, size
 * and mtime are written per member; the checksum then only needs the sum of those fields added.
 */
const TEMPLATE = (() => {
  const h = Buffer.alloc(BLOCK);
  writeOctal(h, 100, 8, 0o644, 'mode');
  writeOctal(h, 108, 8, 0, 'uid');
  writeOctal(h, 116, 8, 0, 'gid');
  h.fill(0x20, 148, 156);
  h.write('0', 156, 1, 'ascii');
  h.write('ustar\u000000', 257, 8, 'ascii');
  h.write('root', 265, 32, 'ascii');
  h.write('root', 297, 32, 'ascii');
  return h;
})();
const TEMPLATE_SUM = byteSum(TEMPLATE, 0, BLOCK);

/** The 512-byte ustar header of a regular file. */
export function tarHeader(name: string, size: number, mtime = 0): Buffer {
  const nameBytes = Buffer.byteLength(name, 'utf8');
  if (nameBytes === 0 || nameBytes > 100) {
    throw new FilipError('FILIP_ERR_SHARD', `tar member name must be 1 to 100 bytes, got ${nameBytes}: ${JSON.stringify(name)}`, {
      field: 'name',
    });
  }
  const h = Buffer.allocUnsafe(BLOCK);
  TEMPLATE.copy(h);
  h.write(name, 0, 100, 'utf8');
  writeOctal(h, 124, 12, size, 'size');
  writeOctal(h, 136, 12, mtime, 'mtime');
  const sum = TEMPLATE_SUM + byteSum(h, 0, nameBytes) + byteSum(h, 124, 148);
  // Six octal digits, NUL, space: the form GNU tar writes.
  h.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'ascii');
  return h;
}

export interface TarWriterOptions {
  /** Modification time of every member, seconds since 1970. A fixed value keeps shards byte-identical across runs. @default 0 */
  readonly mtime?: number;
}

/** A streaming tar writer: `add()` members, then `close()` (or `abort()` to remove the file). */
export class TarWriter {
  readonly path: string;
  readonly #fh: fs.FileHandle;
  readonly #mtime: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Bytes queued so far, flushed or not: the archive's logical length. */
  #offset = 0;
  #members = 0;
  #state: 'open' | 'closed' | 'aborted' = 'open';
  /** Serialises writes, so `add()` may be called without awaiting the previous one. */
  #tail: Promise<void> = Promise.resolve();

  private constructor(path: string, fh: fs.FileHandle, mtime: number) {
    this.path = path;
    this.#fh = fh;
    this.#mtime = mtime;
  }

  static async open(path: string, options: TarWriterOptions = {}): Promise<TarWriter> {
    stringOption('path', path);
    const mtime = intOption('mtime', options.mtime ?? 0, 0, 8 ** 11 - 1);
    try {
      return new TarWriter(path, await fs.open(path, 'w'), mtime);
    } catch (cause) {
      throw new FilipError('FILIP_ERR_SHARD', 'cannot create the tar shard', { file: path }, { cause });
    }
  }

  /** Members written so far. */
  get members(): number {
    return this.#members;
  }

  /** Appends one member. The bytes are referenced until flushed: do not change them after passing them. */
  add(name: string, data: Uint8Array): Promise<void> {
    if (this.#state !== 'open') return Promise.reject(new FilipError('FILIP_ERR_SHARD', `add() after ${this.#state === 'closed' ? 'close()' : 'abort()'}`, { file: this.path }));
    let header: Buffer;
    try {
      header = tarHeader(name, data.byteLength, this.#mtime);
    } catch (err) {
      return Promise.reject(err);
    }
    this.#members++;
    this.#queue(header);
    if (data.byteLength > 0) this.#queue(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const pad = (BLOCK - (data.byteLength % BLOCK)) % BLOCK;
    if (pad > 0) this.#queue(ZERO.subarray(0, pad));
    if (this.#pendingBytes < FLUSH_BYTES) return RESOLVED;
    // Start writing this batch and let the caller go on building the next one while it is written;
    // the caller waits only for the write before it, so at most two batches are held at once.
    const previous = this.#tail;
    void this.#flush().catch(() => undefined); // its failure reaches the caller through the next wait
    return previous;
  }

  /** Writes the end-of-archive blocks and closes the file. Resolves to the archive's size. */
  async close(): Promise<{ members: number; bytes: number }> {
    if (this.#state !== 'open') throw new FilipError('FILIP_ERR_SHARD', `close() after ${this.#state === 'closed' ? 'close()' : 'abort()'}`, { file: this.path });
    this.#state = 'closed';
    // Two zero blocks end the archive; the rest of the 10,240-byte record is zeros as well.
    const used = this.#offset + 2 * BLOCK;
    this.#queue(ZERO.subarray(0, 2 * BLOCK + ((RECORD - (used % RECORD)) % RECORD)));
    try {
      await this.#flush();
    } finally {
      await this.#fh.close();
    }
    return { members: this.#members, bytes: this.#offset };
  }

  /** Stops writing and removes the partial file. A no-op after close() or a second abort(). */
  async abort(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'aborted';
    await this.#tail.catch(() => undefined);
    this.#pending = [];
    await this.#fh.close().catch(() => undefined);
    await fs.rm(this.path, { force: true });
  }

  #queue(b: Buffer): void {
    this.#pending.push(b);
    this.#pendingBytes += b.length;
    this.#offset += b.length;
  }

  #flush(): Promise<void> {
    const chunks = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#tail = this.#tail.then(async () => {
      if (chunks.length === 0) return;
      try {
        await writevAll(this.#fh, chunks);
      } catch (cause) {
        throw new FilipError('FILIP_ERR_SHARD', 'cannot write the tar shard', { file: this.path }, { cause });
      }
    });
    return this.#tail;
  }
}

/** writev until every byte is written (a writev may write fewer bytes than asked, and takes at most IOV_MAX buffers). */
async function writevAll(fh: fs.FileHandle, chunks: Buffer[]): Promise<void> {
  const MAX_IOV = 1024;
  for (let i = 0; i < chunks.length; ) {
    const part = chunks.slice(i, i + MAX_IOV);
    let want = 0;
    for (const c of part) want += c.length;
    const { bytesWritten } = await fh.writev(part);
    if (bytesWritten < want) {
      // Rare (disk full or a signal): write the rest of this part piece by piece.
      let skip = bytesWritten;
      for (const c of part) {
        if (skip >= c.length) {
          skip -= c.length;
          continue;
        }
        const rest = c.subarray(skip);
        skip = 0;
        let off = 0;
        while (off < rest.length) off += (await fh.write(rest, off, rest.length - off)).bytesWritten;
      }
    }
    i += part.length;
  }
}

/** The image member's extension for a format (`jpeg` -> `jpg`). */
export function imageExtension(format: string): string {
  return WEBDATASET_IMAGE_EXTENSIONS[format] ?? format;
}

/** The `KEY.json` object of a sample: every field but the image bytes, views and caption text file. */
export function webdatasetJson(sample: Sample, keepCols: readonly string[]): Record<string, unknown> {
  const img = sample.image;
  if (sample.status !== 'ok' || img === undefined) {
    throw new Error(`webdatasetJson: sample ${sample.key} is not an ok sample with an image`);
  }
  const json: Record<string, unknown> = {
    key: sample.key,
    url: sample.url,
    caption: sample.caption,
    width: img.width,
    height: img.height,
    original_width: img.originalWidth,
    original_height: img.originalHeight,
    image_format: img.format,
    sha256: img.sha256,
    phash: img.phash,
    phash_weak: img.phashWeak ?? null,
    source: `${sample.source.file}:${sample.source.row}`,
  };
  for (const c of keepCols) json[EXTRA_PREFIX + c] = sample.extra[c] ?? null;
  json.back_translations = sample.backTranslations ?? [];
  json.translation_failures = sample.translationFailures ?? [];
  return json;
}

/** The tar members of one sample, in the order img2dataset writes them, views last. */
export function webdatasetMembers(sample: Sample, keepCols: readonly string[], views: number): TarMember[] {
  const json = webdatasetJson(sample, keepCols);
  const img = sample.image!;
  const ext = imageExtension(img.format);
  const members: TarMember[] = [
    { name: `${sample.key}.${ext}`, data: img.bytes },
    { name: `${sample.key}.txt`, data: Buffer.from(sample.caption, 'utf8') },
    { name: `${sample.key}.json`, data: Buffer.from(JSON.stringify(json), 'utf8') },
  ];
  for (let v = 0; v < views; v++) {
    const b = sample.views?.[v];
    if (b === undefined) throw new Error(`webdatasetMembers: sample ${sample.key} lacks view ${v}`);
    members.push({ name: `${sample.key}.view${v}.${ext}`, data: b });
  }
  return members;
}

/**
 * Names and sizes of the members of a tar file, in order, read from the headers alone (data is
 * skipped). For checking our own shards; it knows plain ustar regular files, which is all we write.
 */
export async function listTarMembers(path: string): Promise<{ name: string; size: number }[]> {
  const fh = await fs.open(path, 'r');
  const out: { name: string; size: number }[] = [];
  try {
    const header = Buffer.alloc(BLOCK);
    for (let offset = 0; ; ) {
      const { bytesRead } = await fh.read(header, 0, BLOCK, offset);
      if (bytesRead < BLOCK || header.every((b) => b === 0)) break;
      const end = header.indexOf(0);
      const name = header.subarray(0, end === -1 || end > 100 ? 100 : end).toString('utf8');
      const size = parseInt(header.subarray(124, 135).toString('ascii'), 8);
      if (!Number.isFinite(size)) throw new FilipError('FILIP_ERR_SHARD', `bad size field in the header at byte ${offset}`, { file: path });
      out.push({ name, size });
      offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    }
  } finally {
    await fh.close();
  }
  return out;
}
