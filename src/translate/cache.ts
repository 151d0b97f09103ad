// Back-translations remembered on disk, so a caption seen before (later in the corpus, or in an
// earlier run) costs no engine call. Keyed by engine, pivot and the caption's normalised form
// (normalizeForTranslation: control characters and runs of whitespace become one space, ends trimmed;
// case and punctuation are kept because they change the translation).
//
// One append-only file per engine and pivot, `<dir>/<engine>.<pivot>.jsonl`, a line per caption:
// `["caption", "back-translation"]`. Crash-safe without fsync: a run killed mid-write leaves at most
// one torn last line, which load() cuts off before anything is appended after it, so every complete
// line stays valid. Only successes are stored: a failed caption is tried again by the next run.
//
// Memory: every entry of a loaded file is kept in a Map (about 2 x caption length + 80 bytes each,
// some 150 MB for a million distinct captions and one pivot).

import { open, readFile, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { FilipError } from '../core/errors.js';
import { makeDir } from '../core/make-dir.js';

export class TranslationCache {
  private readonly tables = new Map<string, Map<string, string>>();
  private readonly files = new Map<string, FileHandle>();
  private readonly loading = new Map<string, Promise<Map<string, string>>>();

  /** `dir` null: remember for this run only, in memory. */
  constructor(readonly dir: string | null) {}

  /** Path of the file for an engine and pivot (null for an in-memory cache). */
  file(engine: string, pivot: string): string | null {
    return this.dir === null ? null : join(this.dir, `${safeName(engine)}.${safeName(pivot)}.jsonl`);
  }

  /** Reads the file for engine+pivot once (cutting off a torn last line) and keeps it open for appends. */
  load(engine: string, pivot: string): Promise<Map<string, string>> {
    const id = `${engine}\u0000${pivot}`;
    let p = this.loading.get(id);
    if (!p) {
      p = this.loadFile(engine, pivot, id);
      this.loading.set(id, p);
    }
    return p;
  }

  /** Cached back-translation of an already-normalised caption, if any. load() must have finished. */
  get(engine: string, pivot: string, text: string): string | undefined {
    return this.tables.get(`${engine}\u0000${pivot}`)?.get(text);
  }

  /** Remembers results (normalised caption -> back-translation) and appends them in one write. */
  async put(engine: string, pivot: string, entries: readonly (readonly [string, string])[]): Promise<void> {
    if (entries.length === 0) return;
    const id = `${engine}\u0000${pivot}`;
    const table = await this.load(engine, pivot);
    const fresh = entries.filter(([text]) => !table.has(text));
    for (const [text, value] of fresh) table.set(text, value);
    const fh = this.files.get(id);
    if (!fh || fresh.length === 0) return;
    const lines = fresh.map(([text, value]) => `${JSON.stringify([text, value])}\n`).join('');
    try {
      await fh.write(lines);
    } catch (err) {
      throw new FilipError('FILIP_ERR_TRANSLATOR', `cannot append to the translation cache: ${(err as Error).message}`, {
        file: this.file(engine, pivot) ?? undefined,
      }, { cause: err });
    }
  }

  /** Entries held for engine+pivot (after load). */
  size(engine: string, pivot: string): number {
    return this.tables.get(`${engine}\u0000${pivot}`)?.size ?? 0;
  }

  async close(): Promise<void> {
    const handles = [...this.files.values()];
    this.files.clear();
    await Promise.all(handles.map((fh) => fh.close()));
  }

  private async loadFile(engine: string, pivot: string, id: string): Promise<Map<string, string>> {
    const table = new Map<string, string>();
    this.tables.set(id, table);
    const path = this.file(engine, pivot);
    if (path === null) return table;
    try {
      await makeDir(this.dir!, 'cacheDir');
      let text = '';
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const end = text.lastIndexOf('\n') + 1;
      if (end < text.length) {
        // A torn last line from a killed run: cut it off so the next append starts a clean line.
        await truncate(path, Buffer.byteLength(text.slice(0, end), 'utf8'));
      }
      for (const line of text.slice(0, end).split('\n')) {
        if (line === '') continue;
        try {
          const entry: unknown = JSON.parse(line);
          if (Array.isArray(entry) && typeof entry[0] === 'string' && typeof entry[1] === 'string') table.set(entry[0], entry[1]);
        } catch {
          // A complete but unreadable line (edited by hand?) is skipped, not fatal.
        }
      }
      this.files.set(id, await open(path, 'a'));
    } catch (err) {
      throw new FilipError('FILIP_ERR_TRANSLATOR', `cannot open the translation cache: ${(err as Error).message}`, { file: path }, {
        cause: err,
      });
    }
    return table;
  }
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, '_');
}
