// Creates a folder and its missing parents, as `mkdir -p` does, for the folders a user names
// (--output, --out, --report's folder, caches) and those made inside them.
//
// Why not fs.mkdir(dir, { recursive: true }): in Node 20 it never returns for a path under a
// virtual file system that refuses new entries (`/proc/x/y`: mkdir answers ENOENT for the missing
// parent, which Node takes for "make the parent first", forever), and under a regular file it throws
// a bare ENOTDIR with no word of which option named the path. Here the missing parents are found
// first (walking up with stat), then made one by one without `recursive`, so every failure is
// final and comes back as FILIP_ERR_INVALID_OPTION naming the folder and the option.

import { mkdirSync, Stats, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { FilipError } from './errors.js';

function failure(dir: string, field: string, why: string, cause?: unknown): FilipError {
  return new FilipError('FILIP_ERR_INVALID_OPTION', `cannot create this folder: ${why}`, { file: dir, field }, { cause });
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function codeOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Makes `dir` and any missing parents. Resolves when `dir` is a folder; throws FilipError
 * (FILIP_ERR_INVALID_OPTION, naming `dir` and the option `field`) when it cannot be made: a parent is
 * a file, the file system refuses (permissions, read-only, /proc), or `dir` is a file.
 */
export async function makeDir(dir: string, field: string): Promise<void> {
  const missing: string[] = [];
  for (let at = path.resolve(dir); isMissing(dir, field, at, await stat(at).catch((e: unknown) => e)); at = path.dirname(at)) missing.unshift(at);
  for (const folder of missing) {
    try {
      await mkdir(folder);
    } catch (error) {
      // Made meanwhile by another process: fine if it is a folder.
      if (codeOf(error) === 'EEXIST' && (await stat(folder).catch(() => undefined))?.isDirectory()) continue;
      throw failure(dir, field, reason(error), error);
    }
  }
}

/** makeDir for the few callers that cannot wait (a constructor): same outcomes. */
export function makeDirSync(dir: string, field: string): void {
  const statOrError = (at: string): unknown => {
    try {
      return statSync(at);
    } catch (error) {
      return error;
    }
  };
  const missing: string[] = [];
  for (let at = path.resolve(dir); isMissing(dir, field, at, statOrError(at)); at = path.dirname(at)) missing.unshift(at);
  for (const folder of missing) {
    try {
      mkdirSync(folder);
    } catch (error) {
      const made = statOrError(folder);
      if (codeOf(error) === 'EEXIST' && made instanceof Stats && made.isDirectory()) continue;
      throw failure(dir, field, reason(error), error);
    }
  }
}

/**
 * One step of the walk up from `dir`: true when `at` does not exist (make it, after its parent);
 * false when it is a folder (the walk ends); throws when it is a file or stat failed otherwise.
 */
function isMissing(dir: string, field: string, at: string, answer: unknown): boolean {
  if (answer instanceof Stats) {
    if (!answer.isDirectory()) throw failure(dir, field, `${at} is a file, not a folder`);
    return false;
  }
  if (codeOf(answer) !== 'ENOENT') throw failure(dir, field, reason(answer), answer);
  if (path.dirname(at) === at) throw failure(dir, field, `the root ${at} does not exist`, answer);
  return true;
}
