// `filip-data worker`: the yargs face of src/scale/worker.ts.
import type { Argv } from 'yargs';
import { inRange } from '../program.js';
import { DEFAULT_QUEUE_NAME } from '../../scale/plan.js';
import { runWorker } from '../../scale/worker.js';

export const workerCommand = {
  command: 'worker',
  describe: 'take chunk jobs of an `ingest --queue` run from Redis, write shards to the shared output folder',
  builder: (y: Argv) =>
    y
      .option('queue', { type: 'string', demandOption: true, describe: 'redis://HOST:PORT/DB' })
      .option('queue-name', { type: 'string', default: DEFAULT_QUEUE_NAME })
      .option('output', { alias: 'o', type: 'string', describe: "where the run's output folder is mounted here (default: the path given to ingest)" })
      .option('concurrency', { type: 'number', describe: "downloads in flight (default: the run's --concurrency)" })
      .option('jobs', { type: 'number', default: 2, describe: 'chunk jobs at once' })
      .option('lock-duration', { type: 'number', default: 30, describe: 'seconds before a dead worker\'s job goes to another worker' })
      .option('stalled-interval', { type: 'number', default: 30, describe: 'seconds between checks for stalled jobs' })
      .option('max-stalled', { type: 'number', default: 3, describe: 'times a job may stall before it fails' })
      .option('until-done', { type: 'boolean', default: false, describe: 'exit once every chunk of the run is committed' })
      // Node's timers take at most 2^31 - 1 ms (about 24.8 days); past it they fire after 1 ms.
      .check(inRange({ 'lock-duration': { min: 1, max: 2_147_483, unit: 'seconds' }, 'stalled-interval': { min: 0.5, max: 2_147_483, unit: 'seconds' } })),
  handler: async (a: {
    queue: string;
    queueName: string;
    output?: string;
    concurrency?: number;
    jobs: number;
    lockDuration: number;
    stalledInterval: number;
    maxStalled: number;
    untilDone: boolean;
  }) => {
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    await runWorker(
      {
        queue: { url: a.queue, name: a.queueName },
        output: a.output,
        concurrency: a.concurrency,
        jobs: a.jobs,
        lockDurationMs: Math.round(a.lockDuration * 1000),
        stalledIntervalMs: Math.round(a.stalledInterval * 1000),
        maxStalledCount: a.maxStalled,
        untilDone: a.untilDone,
      },
      stop.signal,
    );
  },
};
