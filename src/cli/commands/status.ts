// `filip-data status`: the yargs face of src/scale/status.ts.
import type { Argv } from 'yargs';
import { DEFAULT_QUEUE_NAME } from '../../scale/plan.js';
import { formatQueueStatus, queueStatus } from '../../scale/status.js';

export const statusCommand = {
  command: 'status',
  describe: 'jobs waiting, active, done and failed on a queue; chunks committed; rows/s per worker',
  builder: (y: Argv) =>
    y
      .option('queue', { type: 'string', demandOption: true, describe: 'redis://HOST:PORT/DB' })
      .option('queue-name', { type: 'string', default: DEFAULT_QUEUE_NAME })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON' }),
  handler: async (a: { queue: string; queueName: string; json: boolean }) => {
    const s = await queueStatus({ url: a.queue, name: a.queueName });
    process.stdout.write(`${a.json ? JSON.stringify(s, null, 2) : formatQueueStatus(s)}\n`);
  },
};
