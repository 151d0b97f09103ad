// Local sources: `file://` URLs and plain paths. Reads obey the same size cap as HTTP bodies and
// only regular files are read (a path to /dev/zero or a FIFO must not hang or fill memory).

import { open } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

import type { FetchResult } from './result.js';

export async function readFileCapped(path: string, maxBytes: number): Promise<FetchResult> {
  const finalUrl = pathToFileURL(path).href;
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    return fileError(path, err);
  }
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) {
      return { ok: false, reason: 'file_error', message: `${path}: not a regular file`, attempts: 1 };
    }
    if (stat.size > maxBytes) return tooLarge(path, `${stat.size} bytes`, maxBytes);
    // Read up to one byte past the cap: the size from stat may be stale if the file is growing.
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const want = Math.min(64 * 1024, maxBytes + 1 - total);
      const { bytesRead, buffer } = await handle.read(Buffer.allocUnsafe(want), 0, want, null);
      if (bytesRead === 0) break;
      chunks.push(bytesRead === want ? buffer : buffer.subarray(0, bytesRead));
      total += bytesRead;
      if (total > maxBytes) return tooLarge(path, 'more bytes', maxBytes);
    }
    return { ok: true, bytes: Buffer.concat(chunks, total), status: 200, finalUrl, contentType: undefined, attempts: 1 };
  } catch (err) {
    return fileError(path, err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function tooLarge(path: string, size: string, maxBytes: number): FetchResult {
  return { ok: false, reason: 'body_too_large', message: `${path}: ${size} exceed maxBodyBytes (${maxBytes})`, attempts: 1 };
}

function fileError(path: string, err: unknown): FetchResult {
  const code = (err as { code?: unknown } | null)?.code;
  const detail = err instanceof Error ? err.message : String(err);
  return {
    ok: false,
    reason: 'file_error',
    message: typeof code === 'string' && !detail.includes(code) ? `${code}: ${detail}` : detail || `${path}: unreadable`,
    attempts: 1,
  };
}
