// WebAssembly threads under Node (src/train/wasm-threads.ts): the thread count users ask for with
// FILIP_WASM_THREADS is what the backend runs on, results match the plain backend, and a process
// using the threaded backend still ends by itself.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { FilipError } from '../src/core/errors.js';
import { MAX_WASM_THREADS, wantedWasmThreads } from '../src/train/wasm-threads.js';

const child = fileURLToPath(new URL('./helpers/wasm-threads-child.ts', import.meta.url));

describe('FILIP_WASM_THREADS', () => {
  test('unset or empty: the machine’s parallelism, at most the 8 workers the binary has', () => {
    const expected = Math.min(MAX_WASM_THREADS, os.availableParallelism());
    assert.equal(wantedWasmThreads({}), expected);
    assert.equal(wantedWasmThreads({ FILIP_WASM_THREADS: '' }), expected);
  });
  test('a whole number from 1 to 8 is taken as given', () => {
    assert.equal(wantedWasmThreads({ FILIP_WASM_THREADS: '1' }), 1);
    assert.equal(wantedWasmThreads({ FILIP_WASM_THREADS: '3' }), 3);
    assert.equal(wantedWasmThreads({ FILIP_WASM_THREADS: '8' }), 8);
  });
  for (const bad of ['0', '9', 'two', '1.5', '-2', ' ']) {
    test(`${JSON.stringify(bad)} is FILIP_ERR_INVALID_OPTION naming the variable`, () => {
      assert.throws(
        () => wantedWasmThreads({ FILIP_WASM_THREADS: bad }),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'FILIP_WASM_THREADS',
      );
    });
  }
});

describe('the wasm backend in a fresh process', () => {
  const run = (threads: string) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', child], {
      env: { ...process.env, FILIP_WASM_THREADS: threads },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.signal, null, `the process did not end by itself within 60 s: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { threads: number; reason: string; poolThreads: number; maxError: number };
  };
  for (const threads of [1, 2, 3]) {
    test(`FILIP_WASM_THREADS=${threads}: runs on ${threads} thread(s), says so, matches the plain backend and exits by itself`, () => {
      const got = run(String(threads));
      assert.equal(got.threads, threads);
      assert.match(got.reason, new RegExp(`SIMD on, ${threads} threads?\\)`));
      // XNNPACK's pool: the calling thread plus one worker thread per extra thread
      assert.equal(got.poolThreads, threads - 1);
      assert.ok(got.maxError < 1e-4, `max |wasm - cpu| = ${got.maxError}`);
    });
  }
});
