// kill -9 in the middle of an ingest, run the same command again, and compare with a run that was
// never interrupted: the same keys in the same shards, the same reject log, nothing lost or twice.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { noiseJpeg } from './helpers/images.js';
import { readOutput } from './helpers/read.js';
import { sendBytes, startServer, type TestServer } from './helpers/server.js';

const CLI = path.resolve('bin/filip-data.js');
let server: TestServer;
let tmp: string;
let manifest: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-resume-'));
  const images: Buffer[] = [];
  for (let i = 0; i < 160; i++) images.push(await noiseJpeg(1000 + i, 220, 210));
  server = await startServer((p) => {
    const m = /^\/img\/(\d+)\.jpg$/.exec(p);
    // A small delay per image so the run lasts long enough to be killed midway.
    return m ? sendBytes(images[Number(m[1])]!, 'image/jpeg', 25) : undefined;
  });
  const lines = ['url\tcaption'];
  for (let i = 0; i < 200; i++) {
    // Every 10th row repeats an earlier image under a new URL; every 17th is a 404.
    const url = i % 17 === 5 ? `${server.baseUrl}/missing/${i}.jpg` : `${server.baseUrl}/img/${(i % 10 === 9 ? i - 9 : i) % 160}.jpg?r=${i}`;
    lines.push(`${url}\tscene ${i}`);
  }
  manifest = path.join(tmp, 'manifest.tsv');
  await fs.writeFile(manifest, `${lines.join('\n')}\n`);
});

after(async () => {
  await server.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

function args(out: string): string[] {
  return [CLI, 'ingest', manifest, '-o', out, '--shard-size', '12', '--concurrency', '4', '--progress', 'log', '--image-size', '64'];
}

function run(out: string): Promise<number | null> {
  const child = spawn(process.execPath, args(out), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(code) : reject(new Error(`exit ${code}: ${err}`))));
  });
}

async function countStats(dir: string): Promise<number> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('_stats.json')).length;
}

test('SIGKILL midway, then the same command: same output as an uninterrupted run', async () => {
  const clean = path.join(tmp, 'clean');
  await run(clean);
  const expected = await readOutput(clean);
  assert.ok(expected.shards.length >= 6, `enough shards to kill midway (${expected.shards.length})`);

  const killed = path.join(tmp, 'killed');
  const child = spawn(process.execPath, args(killed), { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  const deadline = Date.now() + 60_000;
  while ((await countStats(killed)) < 3 && Date.now() < deadline) await sleep(20);
  child.kill('SIGKILL');
  await exited;
  const partial = await readOutput(killed);
  assert.ok(partial.shards.length >= 3 && partial.shards.length < expected.shards.length, 'killed midway');

  await run(killed);
  const resumed = await readOutput(killed);

  const keys = resumed.rows.map((r) => String(r.key));
  assert.equal(new Set(keys).size, keys.length, 'no key twice');
  assert.deepEqual(keys, expected.rows.map((r) => String(r.key)), 'same kept keys in the same order');
  assert.deepEqual(resumed.shards, expected.shards, 'same shard files');
  const strip = (rs: typeof expected.rejects) => rs.map((r) => `${r.key} ${r.reason}`);
  assert.deepEqual(strip(resumed.rejects), strip(expected.rejects), 'same reject log');
  assert.equal(resumed.names.filter((n) => n.endsWith('.tmp')).length, 0);
  for (let i = 0; i < keys.length; i++) {
    assert.ok(Buffer.from(resumed.rows[i]!.image as Uint8Array).equals(Buffer.from(expected.rows[i]!.image as Uint8Array)));
  }
  // The resumed invocation's summary still describes the whole output, reasons included.
  const total = async (dir: string) => JSON.parse(await fs.readFile(path.join(dir, '_summary.json'), 'utf8')).total;
  const whole = await total(clean);
  assert.ok(whole.byReason.http_status > 0 && whole.byReason.duplicate_image > 0, JSON.stringify(whole));
  assert.deepEqual(await total(killed), whole);
});
