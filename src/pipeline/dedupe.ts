// Exact dedupe inside the ingest stream: the same normalised URL (before fetching), the same image
// bytes (sha256), and the same image+caption pair (after decoding). The first row in manifest order
// wins: the stream is ordered (see pool.ts), so the winner does not depend on timing or on resumes.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { reject, type Sample } from '../core/sample.js';
import { HashSet64, fingerprint, fingerprintHex } from './hashset.js';

/** Lower-case scheme and host, no default port, no fragment; a plain path becomes an absolute path. */
export function normalizeUrl(raw: string): string {
  const text = raw.trim();
  // A plain path as the file: URL that names it (percent-encoded as new URL encodes one), so
  // `/a/e copy.jpg` and `file:///a/e%20copy.jpg` are the same URL.
  if (!/^[a-z][a-z0-9+.-]*:/i.test(text)) return pathToFileURL(path.resolve(text)).href;
  try {
    const u = new URL(text);
    u.hash = '';
    return u.href; // WHATWG URL already lower-cases scheme and host and drops default ports
  } catch {
    return text;
  }
}

/** Case-folded, whitespace-collapsed, punctuation-free caption, for pair dedupe and caption counts. */
export function normalizeCaption(caption: string): string {
  return caption
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\p{P}\p{S}]+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

export class DedupeIndex {
  readonly urls = new HashSet64();
  readonly images = new HashSet64();
  readonly pairs = new HashSet64();

  /** Bytes held by the three tables. */
  get bytes(): number {
    return this.urls.bytes + this.images.bytes + this.pairs.bytes;
  }

  get records(): number {
    return this.urls.size + this.images.size + this.pairs.size;
  }

  /** Returns false if the URL was seen already; records it otherwise. */
  addUrl(url: string): boolean {
    const [hi, lo] = fingerprint(normalizeUrl(url));
    return this.urls.add(hi, lo);
  }

  hasImage(sha256: string): boolean {
    const [hi, lo] = fingerprintHex(sha256);
    return this.images.has(hi, lo);
  }

  hasPair(sha256: string, caption: string): boolean {
    const [hi, lo] = fingerprint(`${sha256}\n${normalizeCaption(caption)}`);
    return this.pairs.has(hi, lo);
  }

  /** Records a kept sample's image and pair. */
  addKept(sha256: string, caption: string): void {
    const [h1, l1] = fingerprintHex(sha256);
    this.images.add(h1, l1);
    const [h2, l2] = fingerprint(`${sha256}\n${normalizeCaption(caption)}`);
    this.pairs.add(h2, l2);
  }
}

export interface ContentDedupeOptions {
  /** Drop a sample whose image bytes equal an already-kept one (`duplicate_image`). */
  readonly images: boolean;
  /** Drop a sample whose image+caption pair equals an already-kept one (`duplicate_pair`). */
  readonly pairs: boolean;
}

/** Stage before fetching: rejects repeated URLs. Rows already rejected pass through untouched. */
export async function* dedupeUrls(source: AsyncIterable<Sample>, index: DedupeIndex): AsyncGenerator<Sample> {
  for await (const sample of source) {
    if (sample.status === 'pending' && !index.addUrl(sample.url)) {
      reject(sample, 'duplicate_url', `URL already seen in this run: ${sample.url}`);
    }
    yield sample;
  }
}

/**
 * Stage after decoding: rejects repeated content. The pair check only matters when image dedupe is
 * off (with it on, a repeated image is already dropped whatever its caption).
 */
export async function* dedupeContent(
  source: AsyncIterable<Sample>,
  index: DedupeIndex,
  options: ContentDedupeOptions,
): AsyncGenerator<Sample> {
  for await (const sample of source) {
    if (sample.status === 'ok' && sample.image) {
      const { sha256 } = sample.image;
      if (options.images && index.hasImage(sha256)) {
        reject(sample, 'duplicate_image', `image bytes already kept (sha256 ${sha256.slice(0, 16)}...)`);
      } else if (options.pairs && index.hasPair(sha256, sample.caption)) {
        reject(sample, 'duplicate_pair', `same image and caption already kept (sha256 ${sha256.slice(0, 16)}...)`);
      } else {
        index.addKept(sha256, sample.caption);
      }
    }
    yield sample;
  }
}
