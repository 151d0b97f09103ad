// Child process of test/train-wasm-threads.test.ts: the wasm backend starts once per process, so each
// thread count is tried in a fresh one. Prints one JSON line and then returns, without process.exit:
// the parent also checks that the process ends by itself.
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../../src/train/backend.js';

const sel = await selectBackend('wasm');
const pool = (tf.backend() as unknown as { wasm: { PThread?: { runningWorkers: unknown[] } } }).wasm.PThread;
const a = tf.randomUniform([192, 160], -1, 1, 'float32', 1);
const b = tf.randomUniform([160, 128], -1, 1, 'float32', 2);
const product = Array.from(tf.matMul(a, b).dataSync());
await tf.setBackend('cpu');
const reference = Array.from(tf.matMul(tf.tensor(await a.data(), a.shape), tf.tensor(await b.data(), b.shape)).dataSync());
const maxError = Math.max(...product.map((x, i) => Math.abs(x - reference[i]!)));
console.log(JSON.stringify({ threads: sel.threads, reason: sel.reason, poolThreads: pool?.runningWorkers.length ?? 0, maxError }));
