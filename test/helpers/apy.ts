// Starts a real apertium-apy server (Debian package `apertium-apy`) on a free loopback port with the
// installed Apertium pairs, waits until it answers, and stops it again. Used by the HTTP engine tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ApyServer {
  readonly baseUrl: string;
  readonly pairs: string[];
  stop(): Promise<void>;
}

/** A port the kernel just handed out and released (apy cannot be told to pick one and say which). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export async function startApy(modesDir = '/usr/share/apertium/modes', { readyTimeoutMs = 30_000 } = {}): Promise<ApyServer> {
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const proc: ChildProcess = spawn('apertium-apy', ['-p', String(port), '-j', '1', modesDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    proc.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
    let exited = false;
    proc.once('exit', () => (exited = true));
    const baseUrl = `http://127.0.0.1:${port}`;
    const stop = async () => {
      if (exited) return;
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(t);
    };
    const deadline = Date.now() + readyTimeoutMs;
    while (!exited && Date.now() < deadline) {
      try {
        const res = await fetch(`${baseUrl}/listPairs`);
        const body = (await res.json()) as { responseData: { sourceLanguage: string; targetLanguage: string }[] };
        const pairs = body.responseData.map((p) => `${p.sourceLanguage}-${p.targetLanguage}`);
        return { baseUrl, pairs, stop };
      } catch {
        await sleep(100);
      }
    }
    await stop();
    if (!/address already in use/i.test(log)) throw new Error(`apertium-apy did not start on port ${port}: ${log.slice(-1000)}`);
  }
  throw new Error('apertium-apy could not get a free port');
}
