// Picks the tfjs compute backend for training and says why. `auto`: tfjs-node (native TensorFlow)
// where that optional package installed, else WebAssembly with SIMD, else the plain JavaScript
// backend. Whatever is picked, the gradients and wasm kernels training needs are registered first
// (see wasm-kernels.ts), so that no step stops on a missing kernel or runs on a slower backend.
//
// WebAssembly threads: tfjs-backend-wasm 4.22 turns them off under Node; wasm-threads.ts turns them
// back on for the backend's start (FILIP_WASM_THREADS threads, default the machine's parallelism),
// and the selection reports the count the backend got. Should the threaded start fail, the
// single-threaded SIMD binary is tried next, and the reason printed.

import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { FilipError } from '../core/errors.js';
import { choiceOption } from '../core/options.js';
import { ADDED_WASM_KERNELS, registerCpuKernels, registerTrainingGradients, registerWasmKernels } from './wasm-kernels.js';
import { unrefWasmWorkers, wantedWasmThreads, withWasmThreads } from './wasm-threads.js';

/** What `--backend` accepts. */
export const BACKEND_CHOICES = ['auto', 'wasm', 'cpu', 'tensorflow', 'webgpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

/** Backends a selection can end on (tfjs's own names). */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface BackendSelection {
  /** What was asked for. */
  readonly requested: BackendChoice;
  /** The tfjs backend now active (`tf.getBackend()`). */
  readonly backend: BackendName;
  /** WebAssembly only: whether the SIMD binary was loaded. */
  readonly simd: boolean;
  /** Threads the backend computes on (wasm: FILIP_WASM_THREADS or the machine's parallelism; cpu: 1). */
  readonly threads: number;
  /** Why this backend, and why not the better ones: one line for the run to print. */
  readonly reason: string;
  /** Kernels this module added to the backend (wasm: UnsortedSegmentSum). */
  readonly addedKernels: readonly string[];
}

const require = createRequire(import.meta.url);

/** Folder holding the three .wasm binaries (plain, simd, threaded-simd), with a trailing separator. */
export function wasmBinaryFolder(): string {
  return path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep;
}

let wasmPathsSet = false;

async function tryTensorflow(): Promise<string | null> {
  // A variable specifier keeps TypeScript from requiring the optional package's types.
  const specifier = '@tensorflow/tfjs-node';
  try {
    await import(specifier);
  } catch (error) {
    return `@tensorflow/tfjs-node is not installed (${firstLine(error)})`;
  }
  if (!(await tf.setBackend('tensorflow'))) return '@tensorflow/tfjs-node is installed but its backend failed to start';
  return null;
}

/** Why the threaded start fell back to one thread, for the selection's reason; null when it did not. */
let threadsFailure: string | null = null;

async function tryWasm(): Promise<string | null> {
  if (!wasmPathsSet) {
    setWasmPaths(wasmBinaryFolder());
    wasmPathsSet = true;
  }
  registerWasmKernels();
  const start = async (threads: number): Promise<string | null> => {
    try {
      if (await withWasmThreads(threads, () => tf.setBackend('wasm'))) {
        unrefWasmWorkers();
        return null;
      }
      return 'the WebAssembly backend failed to start';
    } catch (error) {
      return `the WebAssembly backend failed to start (${firstLine(error)})`;
    }
  };
  const threads = wantedWasmThreads();
  const failure = await start(threads);
  if (failure === null || threads <= 1) return failure;
  threadsFailure = `${threads} threads: ${failure}`;
  return start(1);
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0]!.slice(0, 200);
}

async function describe(requested: BackendChoice, why: string): Promise<BackendSelection> {
  const backend = tf.getBackend() as BackendName;
  const simd = backend === 'wasm' ? Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) : false;
  // native TensorFlow sizes its own thread pool to the machine; the JS backend is single-threaded
  const threads = backend === 'wasm' ? getThreadsCount() : backend === 'tensorflow' ? os.availableParallelism() : 1;
  const detail =
    backend === 'wasm'
      ? ` (SIMD ${simd ? 'on' : 'off'}, ${threads} thread${threads === 1 ? '' : 's'}${threadsFailure === null ? '' : `; threaded start failed: ${threadsFailure}`})`
      : '';
  return Object.freeze({
    requested,
    backend,
    simd,
    threads,
    reason: `backend ${backend}${detail}: ${why}`,
    addedKernels: backend === 'wasm' ? [...ADDED_WASM_KERNELS] : [],
  });
}

/**
 * Activates a backend and returns what it chose and why. Throws FILIP_ERR_BACKEND when a backend
 * named explicitly cannot be loaded (never silently runs on another one), FILIP_ERR_INVALID_OPTION
 * for an unknown name.
 */
export async function selectBackend(name: BackendChoice = 'auto'): Promise<BackendSelection> {
  const requested = choiceOption('backend', name, BACKEND_CHOICES);
  registerTrainingGradients();
  registerCpuKernels();
  switch (requested) {
    case 'tensorflow': {
      const failure = await tryTensorflow();
      if (failure !== null) throw new FilipError('FILIP_ERR_BACKEND', `--backend tensorflow: ${failure}`, { field: 'backend' });
      return describe(requested, 'asked for');
    }
    case 'webgpu':
      throw new FilipError(
        'FILIP_ERR_BACKEND',
        '--backend webgpu: @tensorflow/tfjs-backend-webgpu is not installed, and Node has no WebGPU adapter; ' +
          'use wasm (the default here) or tensorflow',
        { field: 'backend' },
      );
    case 'wasm': {
      const failure = await tryWasm();
      if (failure !== null) throw new FilipError('FILIP_ERR_BACKEND', `--backend wasm: ${failure}`, { field: 'backend' });
      return describe(requested, 'asked for');
    }
    case 'cpu':
      await tf.setBackend('cpu');
      return describe(requested, 'asked for (plain JavaScript, the slowest)');
    case 'auto': {
      const noNode = await tryTensorflow();
      if (noNode === null) return describe(requested, 'native TensorFlow from @tensorflow/tfjs-node');
      const noWasm = await tryWasm();
      if (noWasm === null) return describe(requested, noNode);
      if (!(await tf.setBackend('cpu'))) throw new FilipError('FILIP_ERR_BACKEND', 'no tfjs backend could start');
      return describe(requested, `${noNode}; ${noWasm}`);
    }
  }
}

/**
 * Kernel names (as listed by `tf.profile`) that `backend` has no implementation for. Empty means
 * a step made of them runs whole on that backend. Profile entries that are not kernels (the scopes
 * of tf.customGrad functions, e.g. 'logSoftmax__op') are skipped: a kernel is a name the plain
 * backend, which implements every kernel, knows.
 */
export function missingKernels(kernelNames: Iterable<string>, backend: string = tf.getBackend()): string[] {
  const missing = new Set<string>();
  for (const kernel of kernelNames) {
    if (tf.getKernel(kernel, 'cpu') != null && tf.getKernel(kernel, backend) == null) missing.add(kernel);
  }
  return [...missing].sort();
}
