// orderedMap: results come out in input order, concurrency and window bounds hold, errors surface.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { orderedMap } from '../src/pipeline/pool.js';

async function* range(n: number, seen?: { pulled: number }) {
  for (let i = 0; i < n; i++) {
    if (seen) seen.pulled = i + 1;
    yield i;
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('yields in input order whatever the completion order', async () => {
  const delays = [30, 1, 20, 5, 0, 15, 2, 8, 1, 12];
  const out = await collect(
    orderedMap(range(delays.length), async (i) => {
      await sleep(delays[i]!);
      return i * 10;
    }, { concurrency: 4, window: 8 }),
  );
  assert.deepEqual(out, delays.map((_, i) => i * 10));
});

test('never runs more than `concurrency` calls at once', async () => {
  let inFlight = 0;
  let peak = 0;
  await collect(
    orderedMap(range(50), async (i) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await sleep(i % 3);
      inFlight--;
      return i;
    }, { concurrency: 5, window: 100 }),
  );
  assert.equal(peak, 5);
});

test('a stuck head item holds back at most `window` items, then stops pulling input', async () => {
  const seen = { pulled: 0 };
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const it = orderedMap(range(1000, seen), async (i) => {
    if (i === 0) await gate;
    return i;
  }, { concurrency: 4, window: 16 });
  const first = it.next();
  await sleep(50);
  assert.equal(seen.pulled, 16, 'input pulled up to the window size only');
  release();
  assert.deepEqual(await first, { value: 0, done: false });
  const rest = await collect({ [Symbol.asyncIterator]: () => it });
  assert.equal(rest.length, 999);
});

test('an error in a call is thrown when its turn comes', async () => {
  const it = orderedMap(range(5), async (i) => {
    if (i === 2) throw new Error('boom');
    return i;
  }, { concurrency: 2, window: 4 });
  assert.deepEqual((await it.next()).value, 0);
  assert.deepEqual((await it.next()).value, 1);
  await assert.rejects(it.next(), /boom/);
});

test('empty input ends at once', async () => {
  assert.deepEqual(await collect(orderedMap(range(0), async (i) => i, { concurrency: 3, window: 3 })), []);
});
