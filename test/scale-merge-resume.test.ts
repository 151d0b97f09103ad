// `filip-data merge` killed with SIGKILL midway resumes: run again, it ends with exactly the output of
// an uninterrupted merge (kept keys in order, every reject once, the same funnel), and nothing
// half-written is left (shards appear under their final name only when complete).
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { killWhen } from './helpers/cli.js';
import { readOutput } from './helpers/read.js';
import { CLI, scaleBed, type ScaleBed } from './helpers/scale-cli.js';

let bed: ScaleBed;

before(async () => {
  bed = await scaleBed('merge-resume', 150);
});

after(async () => {
  await bed?.close();
});

async function ok(args: string[]): Promise<string> {
  const r = await bed.cli(args);
  assert.equal(r.code, 0, `${args.join(' ')}\n${r.stderr}`);
  return r.stdout;
}

async function commits(dir: string): Promise<number> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith('_stats.json')).length;
}

test('a merge killed midway resumes to the output of an uninterrupted merge', async () => {
  const parts: string[] = [];
  for (let i = 0; i < 3; i++) {
    const dir = path.join(bed.tmp, `part-${i}`);
    parts.push(dir);
    await ok(['ingest', bed.corpus.manifest, '-o', dir, '--image-size', '64', '--progress', 'none', '--partitions', '3', '--partition', String(i), '--rows-per-job', '10']);
  }
  // Small shards, so the merge commits many times; the filter, so its state must be rebuilt too.
  const merge = (out: string) => ['merge', ...parts, '-o', out, '--shard-size', '4', '--progress', 'none', '--filter', '--max-repeats', '3'];
  const whole = path.join(bed.tmp, 'whole');
  await ok(merge(whole));
  const total = await commits(whole);
  assert.ok(total >= 10, `the uninterrupted merge commits ${total} times`);

  const killed = path.join(bed.tmp, 'killed');
  await killWhen([CLI, ...merge(killed)], async () => (await commits(killed)) >= 3);
  const done = await commits(killed);
  assert.ok(done >= 3 && done < total, `killed midway: ${done} of ${total} commits`);
  await assert.rejects(fs.stat(path.join(killed, '_summary.json')), 'the killed merge did not finish');

  const stdout = await ok(merge(killed));
  assert.match(stdout, /resumed after the first \d+ merged rows/);

  const [a, b] = [await readOutput(whole), await readOutput(killed)];
  const kept = (o: typeof a) => o.rows.map((r) => String(r.key));
  const rejects = (o: typeof a) => o.rejects.map((r) => `${r.key} ${r.reason}`).sort();
  assert.deepEqual(kept(b), kept(a), 'the same kept keys, in the same order');
  assert.equal(new Set(kept(b)).size, kept(b).length, 'no key kept twice');
  assert.deepEqual(rejects(b), rejects(a), 'every reject once, for the same reason');
  assert.deepEqual(b.names.filter((n) => n.endsWith('.tmp') || n.startsWith('.')), [], 'nothing half-written is left');
  assert.equal(await commits(killed), total);
  const funnel = async (dir: string) => JSON.parse(await fs.readFile(path.join(dir, 'funnel.json'), 'utf8')) as { input: number; kept: number; rules: unknown };
  const [fa, fb] = [await funnel(whole), await funnel(killed)];
  assert.deepEqual({ input: fb.input, kept: fb.kept, rules: fb.rules }, { input: fa.input, kept: fa.kept, rules: fa.rules }, 'the same funnel counts');
});
