// Checkpoints: one folder per save, holding everything a run needs to continue exactly where it
// stopped: weights, optimiser moments and step, the resolved config (model shape + train options), the
// tokenizer and the data stream's position.
//
//   RUN/ckpt-00000100/checkpoint.json   format, step, config, data position, tensor index, sha256
//                     tensors.bin       float32 little-endian: weights, then m and v of each variable
//                     tokenizer.json
//
// A save writes `RUN/.ckpt-00000100.tmp/`, fsyncs each file and renames the folder: a folder named
// `ckpt-*` is complete or absent, whatever moment a kill lands on. Temporary folders left by a kill are
// ignored (and removed by the next save). tensors.bin is read back tensor by tensor, so a checkpoint may
// be larger than one Buffer (2 GiB), as `large` with its moments is.

import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { FilipError } from '../core/errors.js';
import type { OptimizerState, SlotState } from './optim.js';
import { makeDir } from '../core/make-dir.js';

export const CHECKPOINT_FORMAT = 'filip-checkpoint';
export const CHECKPOINT_VERSION = 1;
const NAME_RE = /^ckpt-(\d{8,})$/;
const TEMP_RE = /^\.ckpt-\d{8,}\.tmp$/;

/** A named float32 tensor in plain-array form. */
export interface NamedArray {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** What a checkpoint holds. `config`, `tokenizer` and `dataPosition` are JSON values the caller owns. */
export interface Checkpoint<Config = unknown> {
  /** Updates applied so far; a resumed run starts with update `step + 1`. */
  readonly step: number;
  readonly config: Config;
  readonly weights: readonly NamedArray[];
  readonly optimizer: OptimizerState;
  readonly tokenizer: unknown;
  /** The data stream's resumable position after the last batch that was trained on. */
  readonly dataPosition: unknown;
  /** Free-form run facts (loss at this step, time, backend); not needed to resume. */
  readonly info?: Record<string, unknown>;
}

interface TensorEntry {
  readonly name: string;
  readonly group: 'weight' | 'm' | 'v';
  readonly shape: readonly number[];
  /** Byte offset into tensors.bin. */
  readonly offset: number;
  readonly length: number;
}

interface CheckpointJson {
  readonly format: typeof CHECKPOINT_FORMAT;
  readonly version: number;
  readonly step: number;
  readonly config: unknown;
  readonly dataPosition: unknown;
  readonly optimizer: { readonly name: OptimizerState['name']; readonly step: number };
  readonly tensors: readonly TensorEntry[];
  readonly bytes: number;
  readonly sha256: string;
  readonly info?: Record<string, unknown>;
}

export function checkpointName(step: number): string {
  return `ckpt-${String(step).padStart(8, '0')}`;
}

/**
 * Writes `ckpt` into `runDir` atomically and returns the folder's path. A checkpoint of the same step
 * already there is replaced. Keeps the newest `keep` checkpoints (0 keeps all).
 */
export async function saveCheckpoint(runDir: string, ckpt: Checkpoint, { keep = 2 }: { keep?: number } = {}): Promise<string> {
  const name = checkpointName(ckpt.step);
  const final = join(runDir, name);
  const temp = join(runDir, `.${name}.tmp`);
  try {
    await makeDir(runDir, 'out');
    await rm(temp, { recursive: true, force: true });
    await mkdir(temp);

    // Tensors first, hashing as they go; the index records where each one landed.
    const tensors: TensorEntry[] = [];
    const hash = createHash('sha256');
    const fh = await open(join(temp, 'tensors.bin'), 'w');
    let offset = 0;
    try {
      const write = async (entry: Omit<TensorEntry, 'offset' | 'length'>, data: Float32Array) => {
        const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        await fh.write(bytes, 0, bytes.length, offset);
        hash.update(bytes);
        tensors.push({ ...entry, offset, length: bytes.length });
        offset += bytes.length;
      };
      for (const w of ckpt.weights) await write({ name: w.name, group: 'weight', shape: w.shape }, w.data);
      for (const s of ckpt.optimizer.slots) {
        await write({ name: s.variable, group: 'm', shape: s.shape }, s.m);
        await write({ name: s.variable, group: 'v', shape: s.shape }, s.v);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }

    await writeSynced(join(temp, 'tokenizer.json'), JSON.stringify(ckpt.tokenizer));
    const json: CheckpointJson = {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      step: ckpt.step,
      config: ckpt.config,
      dataPosition: ckpt.dataPosition ?? null,
      optimizer: { name: ckpt.optimizer.name, step: ckpt.optimizer.step },
      tensors,
      bytes: offset,
      sha256: hash.digest('hex'),
      ...(ckpt.info ? { info: ckpt.info } : {}),
    };
    await writeSynced(join(temp, 'checkpoint.json'), `${JSON.stringify(json, null, 1)}\n`);

    // rename() cannot replace a non-empty folder: move an old one of the same step aside first.
    const old = join(runDir, `.${name}.old`);
    if (await exists(final)) {
      await rm(old, { recursive: true, force: true });
      await rename(final, old);
    }
    await rename(temp, final);
    await rm(old, { recursive: true, force: true });
    await syncDir(runDir);
  } catch (error) {
    if (error instanceof FilipError) throw error;
    throw new FilipError('FILIP_ERR_CHECKPOINT', `cannot write the checkpoint: ${(error as Error).message}`, { file: final }, { cause: error });
  }
  if (keep > 0) await pruneCheckpoints(runDir, keep);
  return final;
}

/** Complete checkpoints in a run folder, oldest first. Temporary folders from a kill are not listed. */
export async function listCheckpoints(runDir: string): Promise<{ step: number; path: string }[]> {
  let names: string[];
  try {
    names = await readdir(runDir);
  } catch {
    return [];
  }
  const found: { step: number; path: string }[] = [];
  for (const name of names) {
    const match = NAME_RE.exec(name);
    if (match && (await exists(join(runDir, name, 'checkpoint.json')))) {
      found.push({ step: Number(match[1]), path: join(runDir, name) });
    }
  }
  return found.sort((a, b) => a.step - b.step);
}

/** `path` itself when it is a checkpoint folder, else the newest checkpoint in the run folder `path`. */
export async function resolveCheckpointPath(path: string): Promise<string> {
  if (await exists(join(path, 'checkpoint.json'))) return path;
  const all = await listCheckpoints(path);
  const last = all.at(-1);
  if (!last) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', 'no complete checkpoint (ckpt-*/checkpoint.json) here', { file: path });
  }
  return last.path;
}

/** Reads the checkpoint at `path` (a checkpoint folder, or a run folder: its newest checkpoint). */
export async function loadCheckpoint<Config = unknown>(path: string): Promise<Checkpoint<Config> & { path: string }> {
  const dir = await resolveCheckpointPath(path);
  const jsonFile = join(dir, 'checkpoint.json');
  const json = parseCheckpointJson(await readText(jsonFile), jsonFile);
  const binFile = join(dir, 'tensors.bin');
  let size: number;
  try {
    size = (await stat(binFile)).size;
  } catch (error) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', 'tensors.bin is missing', { file: binFile }, { cause: error });
  }
  if (size !== json.bytes) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', `tensors.bin has ${size} bytes, the index says ${json.bytes}`, { file: binFile });
  }

  const weights: NamedArray[] = [];
  const moments = new Map<string, { shape: readonly number[]; m?: Float32Array; v?: Float32Array }>();
  const hash = createHash('sha256');
  const fh = await open(binFile, 'r');
  try {
    // The writer laid tensors out back to back; read them in that order so the hash sees the file's bytes.
    for (const entry of [...json.tensors].sort((a, b) => a.offset - b.offset)) {
      const bytes = Buffer.alloc(entry.length);
      const { bytesRead } = await fh.read(bytes, 0, entry.length, entry.offset);
      if (bytesRead !== entry.length) {
        throw new FilipError('FILIP_ERR_CHECKPOINT', 'tensors.bin ends inside a tensor', { file: binFile, field: entry.name });
      }
      hash.update(bytes);
      const data = new Float32Array(bytes.buffer, bytes.byteOffset, entry.length / 4);
      if (entry.group === 'weight') {
        weights.push({ name: entry.name, shape: entry.shape, data });
      } else {
        const slot = moments.get(entry.name) ?? { shape: entry.shape };
        slot[entry.group] = data;
        moments.set(entry.name, slot);
      }
    }
  } finally {
    await fh.close();
  }
  if (hash.digest('hex') !== json.sha256) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', 'tensors.bin does not match its sha256 (corrupt or torn)', { file: binFile });
  }
  const slots: SlotState[] = [];
  for (const [variable, s] of moments) {
    if (!s.m || !s.v) throw new FilipError('FILIP_ERR_CHECKPOINT', 'optimizer state lacks m or v', { file: jsonFile, field: variable });
    slots.push({ variable, shape: s.shape, m: s.m, v: s.v });
  }
  const tokenizerFile = join(dir, 'tokenizer.json');
  let tokenizer: unknown;
  try {
    tokenizer = JSON.parse(await readText(tokenizerFile));
  } catch (error) {
    if (error instanceof FilipError) throw error;
    throw new FilipError('FILIP_ERR_CHECKPOINT', 'tokenizer.json is not JSON', { file: tokenizerFile }, { cause: error });
  }
  return {
    path: dir,
    step: json.step,
    config: json.config as Config,
    weights,
    optimizer: { name: json.optimizer.name, step: json.optimizer.step, slots },
    tokenizer,
    dataPosition: json.dataPosition,
    ...(json.info ? { info: json.info } : {}),
  };
}

/** Reads only checkpoint.json's config and step (cheap: no tensors). */
export async function readCheckpointConfig<Config = unknown>(path: string): Promise<{ path: string; step: number; config: Config }> {
  const dir = await resolveCheckpointPath(path);
  const file = join(dir, 'checkpoint.json');
  const json = parseCheckpointJson(await readText(file), file);
  return { path: dir, step: json.step, config: json.config as Config };
}

function parseCheckpointJson(text: string, file: string): CheckpointJson {
  let json: CheckpointJson;
  try {
    json = JSON.parse(text) as CheckpointJson;
  } catch (error) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', 'checkpoint.json is not JSON', { file }, { cause: error });
  }
  if (json === null || typeof json !== 'object' || json.format !== CHECKPOINT_FORMAT) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', `not a ${CHECKPOINT_FORMAT}`, { file, field: 'format' });
  }
  if (json.version !== CHECKPOINT_VERSION) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', `version ${json.version}, this build reads ${CHECKPOINT_VERSION}`, { file, field: 'version' });
  }
  if (!Number.isInteger(json.step) || json.step < 0) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', `bad step ${String(json.step)}`, { file, field: 'step' });
  }
  if (!Array.isArray(json.tensors) || typeof json.sha256 !== 'string' || !Number.isInteger(json.bytes)) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', 'the tensor index is missing', { file, field: 'tensors' });
  }
  for (const t of json.tensors) {
    const count = (t.shape as number[]).reduce((a, b) => a * b, 1);
    if (t.length !== count * 4 || t.offset < 0 || t.offset + t.length > json.bytes) {
      throw new FilipError('FILIP_ERR_CHECKPOINT', `tensor entry does not fit shape [${t.shape}] or the file`, { file, field: t.name });
    }
  }
  return json;
}

async function pruneCheckpoints(runDir: string, keep: number): Promise<void> {
  const all = await listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) await rm(old.path, { recursive: true, force: true });
  // Leftovers of a killed save: never complete, never read.
  for (const name of await readdir(runDir)) {
    if (TEMP_RE.test(name)) await rm(join(runDir, name), { recursive: true, force: true });
  }
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new FilipError('FILIP_ERR_CHECKPOINT', `cannot read ${basename(file)}`, { file }, { cause: error });
  }
}

async function writeSynced(file: string, text: string): Promise<void> {
  const fh = await open(file, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes the rename itself durable; not every platform allows opening a folder, which is harmless.
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
