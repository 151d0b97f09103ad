// Order-preserving concurrent map over an async iterable. Up to `concurrency` calls run at once and
// results are yielded in input order, so every later step (dedupe, shard commit) is deterministic:
// the same manifest gives the same shards whether the run was interrupted or not. A slow head item
// holds back at most `window` finished results; once the window is full no new work starts, which
// keeps memory bounded whatever the manifest's length.

export interface OrderedMapOptions {
  /** Calls in flight at once. */
  readonly concurrency: number;
  /** Finished-or-running items held at most, counting from the oldest unfinished one. */
  readonly window: number;
}

export async function* orderedMap<T, R>(
  source: AsyncIterable<T>,
  fn: (item: T) => Promise<R>,
  { concurrency, window }: OrderedMapOptions,
): AsyncGenerator<R> {
  const iterator = source[Symbol.asyncIterator]();
  // Ring of slots in input order; each slot settles once.
  const slots: { promise: Promise<R>; done: boolean }[] = [];
  let running = 0;
  let exhausted = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const start = (item: T) => {
    running++;
    const slot = { promise: undefined as unknown as Promise<R>, done: false };
    slot.promise = fn(item).finally(() => {
      slot.done = true;
      running--;
      notify();
    });
    // The rejection is observed when the slot is yielded; avoid an unhandled-rejection crash meanwhile.
    slot.promise.catch(() => {});
    slots.push(slot);
  };

  try {
    while (true) {
      // Fill: start work while there is room both in flight and in the reorder window.
      while (!exhausted && running < concurrency && slots.length < window) {
        const next = await iterator.next();
        if (next.done) {
          exhausted = true;
          break;
        }
        start(next.value);
      }
      if (slots.length === 0) return;
      const head = slots[0]!;
      if (head.done) {
        slots.shift();
        yield await head.promise;
        continue;
      }
      // Wait for any completion: it either frees a slot to start more work or finishes the head.
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    if (!exhausted) await iterator.return?.();
  }
}

/** Runs `fn` over an array with at most `limit` calls at once; results keep the array's order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
