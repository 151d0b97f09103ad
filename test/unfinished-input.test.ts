// A folder whose run has not finished (killed, or restarted by a resume or --retry-failed and not done
// yet) is refused by the stages that read it: a dataset made from part of the input would look
// complete. --partial-input takes what is committed; finishing the run makes the folder readable.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { listShards, openShardStream } from '../src/data/index.js';
import { runFilter } from '../src/pipeline/filter-run.js';
import { runIngest } from '../src/pipeline/ingest.js';
import { runShard } from '../src/pipeline/shard-run.js';
import { runMerge } from '../src/scale/merge.js';
import { killWhen, runCli } from './helpers/cli.js';
import { noiseJpeg } from './helpers/images.js';
import { readOutput } from './helpers/read.js';
import { sendBytes, startServer, type Handler, type TestServer } from './helpers/server.js';

const CLI = path.resolve('bin/filip-data.js');
const FILIP = path.resolve('bin/filip.js');
const ROWS = 60;
let server: TestServer;
let tmp: string;
let manifest: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-unfinished-'));
  const images: Buffer[] = [];
  for (let i = 0; i < ROWS; i++) images.push(await noiseJpeg(4000 + i, 220, 210));
  server = await startServer((p) => {
    const m = /^\/img\/(\d+)\.jpg$/.exec(p);
    // A delay per image so a run lasts long enough to be killed after a few commits.
    return m ? sendBytes(images[Number(m[1])]!, 'image/jpeg', 30) : undefined;
  });
  const lines = ['url\tcaption'];
  for (let i = 0; i < ROWS; i++) lines.push(`${server.baseUrl}/img/${i}.jpg\ta photo of scene number ${i} in the park`);
  manifest = path.join(tmp, 'manifest.tsv');
  await fs.writeFile(manifest, `${lines.join('\n')}\n`);
});

after(async () => {
  await server.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

const ingestArgs = (out: string) => [CLI, 'ingest', manifest, '-o', out, '--shard-size', '5', '--concurrency', '2', '--image-size', '64', '--progress', 'none'];

/** Runs `node BIN ARGS` to its end: exit code, stdout and stderr. */
function exec(bin: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Runs `filip-data ARGS` to its end. */
const cli = (args: string[]) => exec(CLI, args);

async function statsFiles(dir: string): Promise<number> {
  return (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('_stats.json')).length;
}

test('an ingest killed midway: filter and shard refuse it, --partial-input reads what it committed, the resumed run is readable', async () => {
  const killed = path.join(tmp, 'killed');
  await killWhen(ingestArgs(killed), async () => (await statsFiles(killed)) >= 3);
  const partial = await readOutput(killed);
  assert.ok(partial.rows.length > 0 && partial.rows.length < ROWS, `killed midway (${partial.rows.length} of ${ROWS} rows kept)`);

  const refusals: [string, string[]][] = [
    ['filter', ['filter', killed, '-o', path.join(tmp, 'f-refused'), '--progress', 'none']],
    ['shard', ['shard', killed, '-o', path.join(tmp, 's-refused'), '--translate', 'none', '--progress', 'none']],
  ];
  for (const [stage, args] of refusals) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${stage} exits 2 on an unfinished input: ${r.stderr}`);
    assert.match(r.stderr, /FILIP_ERR_INPUT_UNFINISHED/, stage);
    assert.ok(r.stderr.includes(killed), `${stage} names the folder: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${partial.rows.length} rows kept so far.*--partial-input`), `${stage} says what it holds and the way out`);
    assert.equal(await fs.stat(args[3]!).then(() => true, () => false), false, `${stage} wrote nothing`);
  }

  // --retry-failed would mark the folder finished with most of the manifest never read: refused.
  const retry = await cli([...ingestArgs(killed).slice(1), '--retry-failed']);
  assert.equal(retry.code, 2, retry.stderr);
  assert.match(retry.stderr, /FILIP_ERR_INPUT_UNFINISHED: .*stopped at input row \d+ of 60: finish it first/);
  await assert.rejects(fs.access(path.join(killed, '_summary.json')), 'still unfinished');

  const filteredPartial = path.join(tmp, 'f-partial');
  const fpRun = await cli(['filter', killed, '-o', filteredPartial, '--partial-input', '--progress', 'log']);
  assert.equal(fpRun.code, 0, fpRun.stderr);
  assert.match(fpRun.stderr, new RegExp(`warning: .* has not finished: filtering the ${partial.rows.length} rows it has committed \\(--partial-input\\)`));
  const fp = await readOutput(filteredPartial);
  assert.equal(fp.rows.length + fp.rejects.length, partial.rows.length, 'every committed row was filtered, nothing else');
  const fpSummary = JSON.parse(await fs.readFile(path.join(filteredPartial, '_summary.json'), 'utf8')) as { partialInput: boolean };
  assert.equal(fpSummary.partialInput, true, 'the summary says the input was partial');
  // The set made from it says so in its card.
  const sharded = path.join(tmp, 's-partial');
  await runCli([CLI, 'shard', filteredPartial, '-o', sharded, '--translate', 'none', '--progress', 'none']);
  assert.match(await fs.readFile(path.join(sharded, 'dataset_card.md'), 'utf8'), new RegExp(`Partial input: .*\`${killed}\``));

  await runCli(ingestArgs(killed));
  // The partial filter output cannot be resumed on the grown input: its corpus-wide counts were of fewer rows.
  const grown = await cli(['filter', killed, '-o', filteredPartial, '--progress', 'none']);
  assert.equal(grown.code, 2, grown.stderr);
  assert.match(grown.stderr, /FILIP_ERR_RESUME_MISMATCH: .*"input(Shards|Rows)"/);
  const whole = await readOutput(killed);
  assert.equal(whole.rows.length + whole.rejects.length, ROWS, 'the resumed run holds every row');
  const filtered = path.join(tmp, 'f-whole');
  await runCli([CLI, 'filter', killed, '-o', filtered, '--progress', 'none']);
  const f = await readOutput(filtered);
  assert.equal(f.rows.length + f.rejects.length, whole.rows.length, 'the finished folder is filtered whole');
});

test('a finished output being retried (--retry-failed under way) is unfinished until the retry ends', async () => {
  const image = await noiseJpeg(77, 220, 210);
  let healthy = false;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let retryArrived!: () => void;
  const arrived = new Promise<void>((r) => (retryArrived = r));
  const flaky = await startServer((p): Handler | undefined => {
    if (p === '/ok.jpg') return sendBytes(image);
    if (p !== '/flaky.jpg') return undefined;
    if (!healthy) return (_req, res) => void res.writeHead(503).end('busy');
    return async (req, res) => {
      retryArrived();
      await released;
      await sendBytes(await noiseJpeg(78, 220, 210))(req, res);
    };
  });
  try {
    const m = path.join(tmp, 'flaky.tsv');
    await fs.writeFile(m, `url\tcaption\n${flaky.baseUrl}/ok.jpg\ta red barn\n${flaky.baseUrl}/flaky.jpg\ta small boat\n`);
    const out = path.join(tmp, 'retried');
    const options = { inputs: [m], output: out, progress: 'none' as const, fetch: { retries: 0 }, image: { size: 64 } };
    const first = await runIngest(options);
    assert.deepEqual([first.ok, first.byReason], [1, { http_server_error: 1 }]);
    await fs.access(path.join(out, '_summary.json'));

    healthy = true;
    const retry = runIngest({ ...options, retryFailed: true });
    await arrived;
    await assert.rejects(fs.access(path.join(out, '_summary.json')), 'no summary while the retry runs');
    await assert.rejects(
      runFilter({ input: out, output: path.join(tmp, 'retried-f'), progress: 'none' }),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INPUT_UNFINISHED' && e.file === out,
    );
    release();
    assert.equal((await retry).ok, 1);
    const s = await runFilter({ input: out, output: path.join(tmp, 'retried-f'), progress: 'none' });
    assert.equal(s.input, 2, 'both rows reach the filter once the retry is done');
  } finally {
    release();
    await flaky.close();
  }
});

test('every reader of an output folder refuses one without _summary.json (what a kill leaves), in-process too', async () => {
  // Two finished partitions of one run, then one of them loses its summary as a killed run would.
  const parts = [0, 1].map((i) => path.join(tmp, `part-${i}`));
  for (const [i, dir] of parts.entries()) {
    await runIngest({ inputs: [manifest], output: dir, progress: 'none', image: { size: 64 }, partitions: 2, partition: i, rowsPerJob: 10 });
  }
  await fs.rm(path.join(parts[1]!, '_summary.json'));
  const unfinished = (dir: string) => (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INPUT_UNFINISHED' && e.file === dir;
  const cases: [string, () => Promise<unknown>][] = [
    ['filter', () => runFilter({ input: parts[1]!, output: path.join(tmp, 'x-filter'), progress: 'none' })],
    ['shard', () => runShard({ input: parts[1]!, output: path.join(tmp, 'x-shard'), translate: { engine: 'none' }, progress: 'none' })],
    ['merge', () => runMerge({ inputs: parts, output: path.join(tmp, 'x-merge'), progress: 'none' })],
  ];
  for (const [stage, start] of cases) await assert.rejects(start(), unfinished(parts[1]!), stage);
  // Only the stages that have --partial-input suggest it.
  const message = async (start: () => Promise<unknown>) => start().then(() => '', (e: Error) => e.message);
  assert.match(await message(cases[0]![1]), /run its command again .*, or pass --partial-input/);
  assert.doesNotMatch(await message(cases[2]![1]), /--partial-input/);
  for (const name of ['x-filter', 'x-shard', 'x-merge']) {
    assert.equal(await fs.stat(path.join(tmp, name)).then(() => true, () => false), false, `${name}: nothing written`);
  }
  // The partition finished again (the same command: nothing left to do but the summary) is merged.
  await runIngest({ inputs: [manifest], output: parts[1]!, progress: 'none', image: { size: 64 }, partitions: 2, partition: 1, rowsPerJob: 10 });
  const merged = await runMerge({ inputs: parts, output: path.join(tmp, 'x-merge'), progress: 'none' });
  assert.equal(merged.ok + merged.rejected, ROWS);
});

test('filip train refuses training shards whose shard run has not finished; --partial-input trains on what it committed', async () => {
  const ingested = path.join(tmp, 't-ingest');
  await runIngest({ inputs: [manifest], output: ingested, progress: 'none', image: { size: 64 } });
  const shards = path.join(tmp, 't-shards');
  await runShard({ input: ingested, output: shards, translate: { engine: 'none' }, samplesPerShard: 10, progress: 'none' });
  const finished = await listShards(shards);
  assert.equal(finished.length, 6);
  // What a kill in the write phase leaves: the first shards committed, no sizes.json, no _summary.json.
  for (const name of ['_summary.json', 'sizes.json', '00004.parquet', '00005.parquet', '00004_stats.json', '00005_stats.json']) {
    await fs.rm(path.join(shards, name));
  }

  const out = path.join(tmp, 't-run');
  const train = ['train', '--shards', shards, '-o', out, '--preset', 'tiny', '--batch', '4', '--steps', '1', '--warmup', '0', '--vocab-size', '600', '--backend', 'wasm', '--progress', 'log'];
  const refused = await exec(FILIP, train);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /FILIP_ERR_INPUT_UNFINISHED: .*has not finished \(no _summary\.json\).*--partial-input/);
  assert.ok(refused.stderr.includes(shards), `names the folder: ${refused.stderr}`);
  assert.equal(await fs.stat(out).then(() => true, () => false), false, 'nothing written: no run folder, no tokenizer learned');

  // The library's readers refuse it too; eval has no --partial-input, so its message does not offer one.
  const unfinished = (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INPUT_UNFINISHED' && e.file === shards;
  await assert.rejects(openShardStream(shards), unfinished);
  await assert.rejects(listShards(shards), (e: Error) => unfinished(e) && !e.message.includes('--partial-input'));
  assert.deepEqual((await listShards(shards, { partial: true })).map((s) => [s.name, s.rows]), finished.slice(0, 4).map((s) => [s.name, s.rows]));
  // Shards another tool wrote (no _run.json) are read as they are.
  const foreign = path.join(tmp, 't-foreign');
  await fs.mkdir(foreign);
  for (const s of finished.slice(0, 4)) await fs.copyFile(s.file, path.join(foreign, s.name));
  assert.equal((await openShardStream(foreign)).shards.length, 4);

  const partial = await exec(FILIP, [...train, '--partial-input']);
  assert.equal(partial.code, 0, partial.stderr);
  assert.match(partial.stdout, new RegExp(`warning: the run writing .*t-shards has not finished: training on the 40 pairs of the 4 shards it has committed \\(--partial-input\\)`));
  assert.match(partial.stdout, /^step 1\/1/m);
});
