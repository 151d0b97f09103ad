// Turns the user's inputs (files and folders) into the one ordered list of manifest files that the
// reader walks. The order defines every sample's key and index, so it must not depend on the order
// of the arguments or of readdir: it is the sorted list of paths.

import type { Dirent } from 'node:fs';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, rename, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { join, resolve } from 'node:path';

import { FilipError } from '../core/errors.js';
import type { ManifestFormat } from './options.js';

/** Extensions a folder listing picks up (each also with `.gz`), and the format `auto` reads them as. */
export const MANIFEST_EXTENSIONS = {
  '.tsv': 'tsv',
  '.csv': 'csv',
  '.jsonl': 'jsonl',
  '.json': 'jsonl',
  '.parquet': 'parquet',
} as const satisfies Record<string, ManifestFormat>;

type ManifestExtension = keyof typeof MANIFEST_EXTENSIONS;

export function isGzipPath(file: string): boolean {
  return file.toLowerCase().endsWith('.gz');
}

function extensionOf(file: string): ManifestExtension | undefined {
  let name = file.toLowerCase();
  if (name.endsWith('.gz')) name = name.slice(0, -3);
  for (const ext of Object.keys(MANIFEST_EXTENSIONS) as ManifestExtension[]) {
    if (name.endsWith(ext)) return ext;
  }
  return undefined;
}

/** The format `auto` gives a path by its extension (before `.gz`); undefined for unknown extensions. */
export function formatFromPath(file: string): (typeof MANIFEST_EXTENSIONS)[ManifestExtension] | undefined {
  const ext = extensionOf(file);
  return ext === undefined ? undefined : MANIFEST_EXTENSIONS[ext];
}

function byPath(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function walk(folder: string, out: string[]): Promise<void> {
  let entries: Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (err) {
    throw new FilipError('FILIP_ERR_MANIFEST', `cannot list folder: ${(err as Error).message}`, { file: folder }, {
      cause: err,
    });
  }
  for (const entry of entries) {
    // Dot-files are editor/OS droppings (.DS_Store, macOS ._part.parquet forks), never manifests.
    if (entry.name.startsWith('.')) continue;
    const path = join(folder, entry.name);
    // Symlinked folders are not followed, so a link cycle cannot loop; symlinked files are kept.
    if (entry.isDirectory()) await walk(path, out);
    else if ((entry.isFile() || entry.isSymbolicLink()) && extensionOf(entry.name) !== undefined) out.push(path);
  }
}

/**
 * Lists the manifest files named by `inputs`: a file is taken as given (whatever its extension, since
 * `format` may be forced), a folder contributes every file below it with a known extension. Paths keep
 * the form they were given in (folder + relative path), are de-duplicated and sorted by code unit.
 * Throws FILIP_ERR_NO_INPUT when an input does not exist or nothing is found.
 */
export async function listManifestFiles(inputs: readonly string[]): Promise<string[]> {
  if (inputs.length === 0) throw new FilipError('FILIP_ERR_NO_INPUT', 'no manifest inputs were given');
  const found = new Map<string, string>();
  for (const input of inputs) {
    let isFolder: boolean;
    try {
      isFolder = (await stat(input)).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new FilipError('FILIP_ERR_NO_INPUT', `manifest input cannot be found (${code})`, { file: input }, {
        cause: err,
      });
    }
    const files: string[] = [];
    if (isFolder) await walk(input, files);
    else files.push(input);
    for (const file of files) {
      const key = resolve(file);
      if (!found.has(key)) found.set(key, file);
    }
  }
  if (found.size === 0) {
    const exts = Object.keys(MANIFEST_EXTENSIONS).join(' ');
    throw new FilipError(
      'FILIP_ERR_NO_INPUT',
      `no manifest files (${exts}, optionally .gz) found in ${inputs.map((i) => JSON.stringify(i)).join(', ')}`,
    );
  }
  return [...found.values()].sort(byPath);
}

/**
 * Writes the gunzipped bytes of `file` to `dest` (through `dest.tmp`, renamed when complete, so a
 * killed copy is never taken for a whole one). Streaming: memory stays flat whatever the size.
 */
export async function gunzipFile(file: string, dest: string): Promise<void> {
  const tmp = `${dest}.tmp`;
  try {
    await pipeline(createReadStream(file), createGunzip(), createWriteStream(tmp));
  } catch (err) {
    throw new FilipError('FILIP_ERR_MANIFEST', `cannot gunzip manifest: ${(err as Error).message}`, { file }, { cause: err });
  }
  await rename(tmp, dest);
}
