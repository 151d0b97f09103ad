// `filip-data status --queue redis://...`: the queue's jobs by state, the run's chunks (staged,
// counted, committed), and each worker's rows/s as it reported them.

import { Queue } from 'bullmq';
import { connectRedis, parseQueueUrl, redisOptions } from './connection.js';
import { Keys, parseRun, resolveQueueOptions, type QueueOptions } from './plan.js';
import type { WorkerStats } from './worker.js';

export interface QueueStatus {
  readonly queue: string;
  readonly name: string;
  readonly jobs: { readonly waiting: number; readonly active: number; readonly done: number; readonly failed: number; readonly delayed: number };
  readonly run: { readonly total: number; readonly chunks: number; readonly rowsPerJob: number; readonly output: string } | null;
  readonly chunks: { readonly staged: number; readonly counted: number | null; readonly committed: number };
  readonly workers: (WorkerStats & { readonly rowsPerSecond: number; readonly idleSeconds: number })[];
}

export async function queueStatus(input: Partial<QueueOptions> & { url: string }): Promise<QueueStatus> {
  const q = resolveQueueOptions(input);
  const address = parseQueueUrl(q.url);
  const redis = await connectRedis(address);
  const keys = new Keys(q.name);
  const queue = new Queue(q.name, { connection: redisOptions(address) });
  queue.on('error', () => {});
  try {
    const counts = await queue.getJobCounts('waiting', 'active', 'completed', 'failed', 'delayed', 'paused', 'prioritized');
    const runText = await redis.get(keys.run);
    const run = runText === null ? null : parseRun(runText, q.url, q.name);
    const now = Date.now();
    const workers = Object.values(await redis.hgetall(keys.workers))
      .map((t) => JSON.parse(t) as WorkerStats)
      .sort((a, b) => a.startedAt - b.startedAt)
      .map((w) => ({ ...w, rowsPerSecond: w.busyMs > 0 ? (1000 * w.rows) / w.busyMs : 0, idleSeconds: Math.max(0, (now - w.lastSeen) / 1000) }));
    return {
      queue: q.url,
      name: q.name,
      jobs: {
        waiting: (counts.waiting ?? 0) + (counts.paused ?? 0) + (counts.prioritized ?? 0),
        active: counts.active ?? 0,
        done: counts.completed ?? 0,
        failed: counts.failed ?? 0,
        delayed: counts.delayed ?? 0,
      },
      run: run && { total: run.total, chunks: run.chunks, rowsPerJob: run.rowsPerJob, output: run.output },
      chunks: {
        staged: await redis.bitcount(keys.staged),
        counted: run?.countCaptions ? await redis.bitcount(keys.counted) : null,
        committed: Number((await redis.get(keys.next)) ?? 0),
      },
      workers,
    };
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

export function formatQueueStatus(s: QueueStatus): string {
  const lines = [`queue "${s.name}" at ${s.queue}`];
  lines.push(`jobs: waiting ${s.jobs.waiting}, active ${s.jobs.active}, done ${s.jobs.done}, failed ${s.jobs.failed}, delayed ${s.jobs.delayed}`);
  if (s.run) {
    lines.push(`run: ${s.run.total} rows in ${s.run.chunks} chunks of ${s.run.rowsPerJob} -> ${s.run.output}`);
    const counted = s.chunks.counted === null ? '' : `, counted ${s.chunks.counted}/${s.run.chunks}`;
    lines.push(`chunks: staged ${s.chunks.staged}/${s.run.chunks}${counted}, committed ${s.chunks.committed}/${s.run.chunks}`);
  } else {
    lines.push('run: none stored on this queue');
  }
  lines.push(`workers: ${s.workers.length}`);
  if (s.workers.length > 0) {
    const rows = s.workers.map((w) => [w.id, String(w.jobs), String(w.rows), w.rowsPerSecond.toFixed(1), String(w.commits), `${w.idleSeconds.toFixed(0)} s ago`]);
    const head = ['worker', 'jobs', 'rows', 'rows/s', 'commits', 'last seen'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const fmt = (r: string[]) => `  ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}`;
    lines.push(fmt(head), ...rows.map(fmt));
  }
  return lines.join('\n');
}
