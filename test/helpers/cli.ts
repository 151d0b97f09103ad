// Runs a CLI as a child process: to completion, or SIGKILLed as soon as a condition holds.

import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** Runs `node ARGS` and resolves on exit 0; rejects with the exit code and stderr otherwise. */
export function runCli(args: string[]): Promise<void> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}: ${err}`))));
  });
}

/** Starts `node ARGS` and SIGKILLs it as soon as `ready()` holds (or when it would finish anyway). */
export async function killWhen(args: string[], ready: () => Promise<boolean>): Promise<void> {
  const child = spawn(process.execPath, args, { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  const deadline = Date.now() + 120_000;
  while (!(await ready()) && Date.now() < deadline && child.exitCode === null) await sleep(5);
  child.kill('SIGKILL');
  await exited;
}
