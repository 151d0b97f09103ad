// A real redis-server for tests and benches: started on a free loopback port in its own temp folder,
// without persistence, and stopped (folder removed) by stop(). Call stop() in after().
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { createServer, connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { noiseJpeg } from './images.js';
import { mulberry32 } from '../../src/core/random.js';
import { sendBytes, startServer, type TestServer } from './server.js';

export interface TestRedis {
  readonly port: number;
  /** redis://127.0.0.1:PORT/0 */
  readonly url: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** A port that was free a moment ago (the kernel picks it; we close and hand it to redis-server). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('error', () => resolve(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => {
      socket.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
  });
}

export async function startRedis(extraArgs: readonly string[] = []): Promise<TestRedis> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-redis-'));
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', ...extraArgs],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 10_000;
  while (!(await answersPing(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      await fs.rm(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not start on port ${port}: ${stderr}`);
    }
    await sleep(25);
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    process: child,
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The corpus the scale-out tests share (kept here, next to the Redis they run against): a manifest
// served by a loopback server, with every case the corpus-wide rules decide: repeated URLs, the same
// bytes under new URLs, near duplicates (re-encoded copies), captions repeated across the corpus,
// non-English and meaningless captions, small images, 404s and a malformed row.


const ADJECTIVES = ['red', 'small', 'old', 'wooden', 'quiet', 'bright', 'green', 'tall', 'narrow', 'sunny', 'busy', 'empty'];
const NOUNS = ['barn', 'boat', 'house', 'bridge', 'church', 'garden', 'street', 'tower', 'market', 'cabin', 'harbour', 'school'];
const PLACES = ['river', 'forest', 'village', 'mountain', 'lake', 'city', 'coast', 'valley', 'park', 'island'];

export interface ScaleCorpus {
  readonly server: TestServer;
  readonly manifest: string;
  readonly rows: number;
}

/** Writes `dir/manifest.tsv` (`rows` rows) and serves its images; `delayMs` slows each image down. */
export async function scaleCorpus(dir: string, rows = 150, delayMs = 0): Promise<ScaleCorpus> {
  const distinct = Math.ceil(rows * 0.7);
  const images: Buffer[] = [];
  for (let i = 0; i < distinct; i++) images.push(await noiseJpeg(7000 + i, 240, 220));
  // Re-encoded copies: other bytes (no exact duplicate), the same picture (a near duplicate).
  const copies: Buffer[] = [];
  for (let i = 0; i < 12; i++) copies.push(await sharp(images[(i * 3) % distinct]!).jpeg({ quality: 60 }).toBuffer());
  const small = await noiseJpeg(99, 150, 140);
  const server = await startServer((p) => {
    const m = /^\/(img|copy)\/(\d+)\.jpg$/.exec(p);
    if (m) return sendBytes((m[1] === 'img' ? images : copies)[Number(m[2])]!, 'image/jpeg', delayMs);
    if (p === '/small.jpg') return sendBytes(small, 'image/jpeg', delayMs);
    return undefined;
  });
  const rand = mulberry32(42);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const lines = ['url\tcaption'];
  for (let i = 0; i < rows; i++) {
    let url = `${server.baseUrl}/img/${i % distinct}.jpg?r=${i}`;
    let caption = `a ${pick(ADJECTIVES)} ${pick(NOUNS)} near the ${pick(PLACES)} in the morning light`;
    if (i % 23 === 11) url = `${server.baseUrl}/img/${(i * 7) % distinct}.jpg?r=${(i * 7) % distinct}`; // a repeated URL (or its first use)
    if (i % 19 === 4) url = `${server.baseUrl}/missing/${i}.jpg`;
    if (i % 11 === 6) url = `${server.baseUrl}/copy/${i % 12}.jpg`;
    if (i % 29 === 8) url = `${server.baseUrl}/small.jpg?r=${i}`;
    if (i % 9 === 2) caption = 'a beautiful view of the mountains at sunset';
    if (i % 31 === 3) caption = 'une belle maison au bord de la mer avec un grand jardin';
    if (i % 37 === 5) caption = 'IMG_4032.JPG';
    lines.push(i === 17 ? '\tbroken row without a URL' : `${url}\t${caption}`);
  }
  const manifest = path.join(dir, 'manifest.tsv');
  await fs.writeFile(manifest, `${lines.join('\n')}\n`);
  return { server, manifest, rows };
}
