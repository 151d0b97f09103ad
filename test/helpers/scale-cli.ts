// The setup the scale-out CLI tests share: a temporary folder holding the scale corpus (manifest and
// loopback image server, see redis.ts), and a way to run `filip-data` in it and collect its output.
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { scaleCorpus, type ScaleCorpus } from './redis.js';

export const CLI = path.resolve('bin/filip-data.js');

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ScaleBed {
  readonly tmp: string;
  readonly corpus: ScaleCorpus;
  /** Runs `filip-data ARGS` with the folder as working directory; resolves when it exits. */
  cli(args: string[]): Promise<CliResult>;
  /** Stops the image server and removes the folder (call in after()). */
  close(): Promise<void>;
}

/** A fresh folder `filip-<name>-XXXX` with a corpus of `rows` rows (each image slowed by `delayMs`). */
export async function scaleBed(name: string, rows: number, delayMs = 0): Promise<ScaleBed> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), `filip-${name}-`));
  const corpus = await scaleCorpus(tmp, rows, delayMs);
  return {
    tmp,
    corpus,
    cli: (args) => {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: tmp });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
    },
    close: async () => {
      await corpus.server.close();
      await fs.rm(tmp, { recursive: true, force: true });
    },
  };
}
