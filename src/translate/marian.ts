// The neural engine: Helsinki-NLP's opus-mt Marian models (en-de, de-en, en-ru, ru-en: the FILIP
// paper's German and Russian pivots) exported to ONNX, run on the CPU by transformers.js
// (`@huggingface/transformers`, an optional dependency loaded only when this engine is used).
//
// Models come only from a local folder the user gives, one sub-folder per direction in the layout
// transformers.js reads (as in the Xenova/opus-mt-* exports):
//   DIR/opus-mt-en-de/config.json, tokenizer.json, tokenizer_config.json,
//                     onnx/encoder_model.onnx, onnx/decoder_model_merged.onnx
// (`_quantized` before `.onnx` with dtype q8). Remote downloads are switched off; every file is
// checked before loading, and a missing one is named in FILIP_ERR_MODEL_FILES.

import { access } from 'node:fs/promises';
import { join } from 'node:path';

import { FilipError } from '../core/errors.js';
import { choiceOption, intOption, rejectUnknownKeys, stringOption } from '../core/options.js';
import { iso6391, normalizeForTranslation, textError, type Translator } from './engine.js';

/** ONNX weight variants: fp32 (`encoder_model.onnx`) or 8-bit quantised (`encoder_model_quantized.onnx`). */
export const MARIAN_DTYPES = ['fp32', 'q8'] as const;
export type MarianDtype = (typeof MARIAN_DTYPES)[number];
const DTYPE_SUFFIX: Record<MarianDtype, string> = { fp32: '', q8: '_quantized' };

export interface MarianOptions {
  /** Folder holding one `opus-mt-xx-yy` folder per direction. Required. */
  readonly dir: string;
  /** @default 'fp32' */
  readonly dtype?: MarianDtype;
  /**
   * Longest output, in tokens.
   * @default 256
   */
  readonly maxNewTokens?: number;
  /**
   * Module to import; only tests change it (to see the error when the package is absent).
   * @default '@huggingface/transformers'
   */
  readonly moduleName?: string;
}

export const DEFAULT_MARIAN_OPTIONS = {
  dtype: 'fp32',
  maxNewTokens: 256,
  moduleName: '@huggingface/transformers',
} as const satisfies Omit<Required<MarianOptions>, 'dir'>;

export interface ResolvedMarianOptions {
  readonly dir: string;
  readonly dtype: MarianDtype;
  readonly maxNewTokens: number;
  readonly moduleName: string;
}

export function resolveMarianOptions(given: MarianOptions): ResolvedMarianOptions {
  rejectUnknownKeys('marian', given, { dir: '', ...DEFAULT_MARIAN_OPTIONS });
  const o = { ...DEFAULT_MARIAN_OPTIONS, ...definedOnly(given) };
  return {
    dir: stringOption('dir', o.dir),
    dtype: choiceOption('dtype', o.dtype, MARIAN_DTYPES),
    maxNewTokens: intOption('maxNewTokens', o.maxNewTokens, 1, 4096),
    moduleName: stringOption('moduleName', o.moduleName),
  };
}

/** Folder name of a direction's model, e.g. eng -> deu: `opus-mt-en-de`. */
export function marianModelName(from: string, to: string): string {
  return `opus-mt-${iso6391(from)}-${iso6391(to)}`;
}

/** Files transformers.js reads for a Marian model, relative to its folder. */
export function marianRequiredFiles(dtype: MarianDtype = 'fp32'): string[] {
  const s = DTYPE_SUFFIX[dtype];
  return ['config.json', 'tokenizer.json', 'tokenizer_config.json', `onnx/encoder_model${s}.onnx`, `onnx/decoder_model_merged${s}.onnx`];
}

/** Throws FILIP_ERR_MODEL_FILES naming every file the model folder for from -> to lacks. */
export async function checkMarianFiles(dir: string, from: string, to: string, dtype: MarianDtype = 'fp32'): Promise<void> {
  const folder = join(dir, marianModelName(from, to));
  const missing: string[] = [];
  for (const f of marianRequiredFiles(dtype)) {
    try {
      await access(join(folder, f));
    } catch {
      missing.push(f);
    }
  }
  if (missing.length > 0) {
    throw new FilipError(
      'FILIP_ERR_MODEL_FILES',
      `the ${from}->${to} Marian model folder lacks ${missing.join(', ')} (an ONNX export of Helsinki-NLP/${marianModelName(from, to)}, ` +
        `e.g. Xenova/${marianModelName(from, to)}, laid out as DIR/${marianModelName(from, to)}/{config.json,tokenizer.json,tokenizer_config.json,onnx/...})`,
      { file: folder },
    );
  }
}

/** The parts of transformers.js this engine uses. */
interface TransformersModule {
  env: { allowRemoteModels: boolean; allowLocalModels: boolean; localModelPath: string };
  pipeline(task: 'translation', model: string, options: Record<string, unknown>): Promise<TranslationPipe>;
}
type TranslationPipe = ((texts: string[], options: Record<string, unknown>) => Promise<unknown>) & { dispose?: () => Promise<void> };

/** Imports transformers.js, or throws FILIP_ERR_TRANSLATOR saying what to install. */
export async function loadTransformers(moduleName: string = DEFAULT_MARIAN_OPTIONS.moduleName): Promise<TransformersModule> {
  try {
    return (await import(moduleName)) as TransformersModule;
  } catch (err) {
    throw new FilipError(
      'FILIP_ERR_TRANSLATOR',
      `the marian engine needs transformers.js, which cannot be loaded (${(err as Error).message}): ` +
        'run `npm install @huggingface/transformers` (an optional dependency of filip-data)',
      {},
      { cause: err },
    );
  }
}

export class MarianTranslator implements Translator {
  readonly engine = 'marian';
  readonly options: ResolvedMarianOptions;
  private readonly pipes = new Map<string, Promise<TranslationPipe>>();
  private closed = false;

  constructor(options: MarianOptions) {
    this.options = resolveMarianOptions(options);
  }

  /**
   * Checks the model files for from -> to and that transformers.js loads; the model itself is loaded
   * by the first translate() (a broken one is FILIP_ERR_TRANSLATOR then).
   */
  async check(from: string, to: string): Promise<void> {
    await checkMarianFiles(this.options.dir, from, to, this.options.dtype);
    await loadTransformers(this.options.moduleName);
  }

  async translate(texts: readonly string[], from: string, to: string): Promise<(string | Error)[]> {
    if (this.closed) throw new FilipError('FILIP_ERR_TRANSLATOR', 'the marian translator is closed');
    const clean = texts.map(normalizeForTranslation);
    const out: (string | Error)[] = clean.map(() => '');
    const todo = clean.flatMap((t, i) => (t === '' ? [] : [i]));
    if (todo.length === 0) return out;
    const pipe = await this.pipe(from, to);
    const run = async (batch: string[]): Promise<string[]> => {
      const result = (await pipe(batch, { max_new_tokens: this.options.maxNewTokens })) as { translation_text?: unknown }[];
      if (!Array.isArray(result) || result.length !== batch.length) throw new Error('the model returned a different number of texts');
      return result.map((r) => {
        if (typeof r?.translation_text !== 'string') throw new Error('the model returned no translation_text');
        return r.translation_text.trim();
      });
    };
    try {
      const got = await run(todo.map((i) => clean[i]!));
      todo.forEach((i, k) => (out[i] = got[k]!));
    } catch {
      // One text can sink a padded batch (too long, odd characters): translate each alone.
      for (const i of todo) {
        out[i] = await run([clean[i]!]).then(
          (r) => r[0]!,
          (err: unknown) => textError('marian', from, to, (err as Error).message),
        );
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.pipes.values()];
    this.pipes.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.dispose?.()));
  }

  private pipe(from: string, to: string): Promise<TranslationPipe> {
    const key = `${from}-${to}`;
    let p = this.pipes.get(key);
    if (!p) {
      p = this.load(from, to);
      p.catch(() => this.pipes.delete(key));
      this.pipes.set(key, p);
    }
    return p;
  }

  private async load(from: string, to: string): Promise<TranslationPipe> {
    const { dir, dtype, moduleName } = this.options;
    await checkMarianFiles(dir, from, to, dtype);
    const tf = await loadTransformers(moduleName);
    // transformers.js resolves a model name against env.localModelPath; never reach for the hub.
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = dir.endsWith('/') ? dir : `${dir}/`;
    try {
      return await tf.pipeline('translation', marianModelName(from, to), { dtype, local_files_only: true });
    } catch (err) {
      throw new FilipError('FILIP_ERR_TRANSLATOR', `cannot load the ${from}->${to} Marian model: ${(err as Error).message}`, {
        file: join(dir, marianModelName(from, to)),
      }, { cause: err });
    }
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
