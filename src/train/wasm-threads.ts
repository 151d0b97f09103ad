// Lets tfjs-backend-wasm run its threaded-SIMD binary under Node. tfjs 4.22 turns threads off there
// (`WASM_HAS_MULTITHREAD_SUPPORT` is false under Node, tfjs issue 3830) although the Emscripten glue
// it ships has a Node path (worker_threads). Three things stand in the way, each undone here for the
// duration of the backend's start only:
// - the pthread worker script and the main script reach the workers as `blob:` URLs, which Node's
//   worker_threads and the worker's importScripts (fs.readFileSync) cannot open: both scripts are
//   written to files once, and URL.createObjectURL answers with their paths while the backend starts;
// - the flag itself is set to true;
// - the C++ side caps its pool at half the logical cores (`emscripten_num_logical_cores() / 2`, read
//   through os.cpus() under Node, assuming two hyper-threads per core), so a 2-core machine got one
//   thread whatever was asked: os.cpus() reports twice the wanted count while the module starts.
// - the threads XNNPACK's pool starts stay referenced, so a process would never exit by itself:
//   unrefWasmWorkers() lets it end when its own work is done (the threads only wait for work).
// Measured on 2 cores: a 512x512 matmul went from 29 to 53 GFLOP/s (1.97 cores busy).
//
// Threads: FILIP_WASM_THREADS (like OMP_NUM_THREADS for PyTorch), default the machine's available
// parallelism, at most 8 (the workers the binary pre-creates). 1 keeps the single-threaded binary.

import { renameSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { FilipError } from '../core/errors.js';
import { makeDirSync } from '../core/make-dir.js';

const require = createRequire(import.meta.url);

/** The most threads the threaded binary can use: the Web Workers it pre-creates. */
export const MAX_WASM_THREADS = 8;

/** Threads asked for: FILIP_WASM_THREADS, else the machine's parallelism; 1 to MAX_WASM_THREADS. */
export function wantedWasmThreads(env: NodeJS.ProcessEnv = process.env): number {
  const given = env.FILIP_WASM_THREADS;
  if (given === undefined || given === '') return Math.min(MAX_WASM_THREADS, Math.max(1, os.availableParallelism()));
  const n = Number(given);
  if (!Number.isInteger(n) || n < 1 || n > MAX_WASM_THREADS) {
    throw new FilipError('FILIP_ERR_INVALID_OPTION', `FILIP_WASM_THREADS must be a whole number from 1 to ${MAX_WASM_THREADS}, got ${JSON.stringify(given)}`, {
      field: 'FILIP_WASM_THREADS',
    });
  }
  return n;
}

interface ScriptFiles {
  readonly main: string;
  readonly worker: string;
}

let files: ScriptFiles | undefined;

/** Writes the two scripts (once per version and machine; atomically, as processes may race). */
function scriptFiles(): ScriptFiles {
  if (files) return files;
  const pkg = require('@tensorflow/tfjs-backend-wasm/package.json') as { version: string };
  const dir = path.join(os.tmpdir(), `filip-tfjs-wasm-threads-${pkg.version}`);
  makeDirSync(dir, 'TMPDIR');
  const main = path.join(dir, 'main.cjs');
  const worker = path.join(dir, 'worker.cjs');
  const write = (file: string, text: string) => {
    if (existsSync(file)) return;
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, text);
    renameSync(temporary, file);
  };
  const factory = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.js') as { default?: unknown };
  write(main, `var WasmBackendModuleThreadedSimd = ${String(factory.default ?? factory)}`);
  const { wasmWorkerContents } = require('@tensorflow/tfjs-backend-wasm/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js') as { wasmWorkerContents: string };
  // The contents were a template literal: its \n escapes became newlines, which tfjs escapes again
  // before making its blob. In the worker, the main script also arrives as a Blob.
  write(worker, `URL.createObjectURL = () => ${JSON.stringify(main)};\n${wasmWorkerContents.replace(/\n/g, '\\n')}`);
  files = { main, worker };
  return files;
}

/**
 * Runs `start` (which starts the wasm backend) with threads enabled for it; `threads` <= 1 runs it
 * unchanged. The global patches are undone when `start` settles, whatever it did.
 */
export async function withWasmThreads<T>(threads: number, start: () => Promise<T>): Promise<T> {
  if (threads <= 1) {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    return start();
  }
  const { main, worker } = scriptFiles();
  const createObjectURL = URL.createObjectURL;
  const cpus = os.cpus;
  URL.createObjectURL = (blob: Blob) => (blob.type === 'application/javascript' ? worker : main);
  const real = cpus();
  const one = real[0] ?? { model: 'cpu', speed: 0, times: { user: 0, nice: 0, sys: 0, idle: 0, irq: 0 } };
  const logical = Array.from({ length: 2 * threads }, (_, i) => real[i] ?? one);
  os.cpus = () => logical;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  try {
    return await start();
  } finally {
    URL.createObjectURL = createObjectURL;
    os.cpus = cpus;
  }
}

/** The Emscripten thread bookkeeping of the active wasm backend, where it has one. */
interface PThreads {
  readonly runningWorkers: readonly { unref?: () => void }[];
}

/**
 * Unreferences the worker threads of the active wasm backend's pool, so that they do not keep the
 * process alive once everything else is done (Emscripten refs a worker while it runs a thread, and
 * the pool's threads run for good, waiting for work). No-op for a single-threaded backend.
 */
export function unrefWasmWorkers(): void {
  const backend = tf.backend() as unknown as { wasm?: { PThread?: PThreads } };
  for (const worker of backend.wasm?.PThread?.runningWorkers ?? []) worker.unref?.();
}
