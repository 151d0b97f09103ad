// Per-host politeness: one p-queue per `host:port`, created on first use and dropped as soon as it
// has no task queued or running, so a crawl over millions of hosts keeps only the busy ones in memory.

import PQueue from 'p-queue';

interface HostEntry {
  readonly queue: PQueue;
  /** Tasks added through run() that have not settled yet (queued or running). */
  users: number;
}

export class HostLimiter {
  readonly #perHost: number;
  readonly #entries = new Map<string, HostEntry>();

  constructor(perHost: number) {
    this.#perHost = perHost;
  }

  /** Hosts with work queued or running. */
  get size(): number {
    return this.#entries.size;
  }

  /** Runs `task` once fewer than `perHost` tasks for `key` are running. Rejects with the reason if `signal` aborts first. */
  async run<T>(key: string, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { queue: new PQueue({ concurrency: this.#perHost }), users: 0 };
      this.#entries.set(key, entry);
    }
    entry.users++;
    try {
      return await entry.queue.add(task, signal === undefined ? {} : { signal });
    } finally {
      // Counted by us rather than read from the queue, so an entry is never dropped while a
      // caller still holds it (which would let a second queue for the same host exceed the cap).
      entry.users--;
      if (entry.users === 0 && this.#entries.get(key) === entry) this.#entries.delete(key);
    }
  }
}

/** `hostname:port` with the scheme's default port filled in. */
export function hostKey(url: URL): string {
  const port = url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
  return `${url.hostname}:${port}`;
}
