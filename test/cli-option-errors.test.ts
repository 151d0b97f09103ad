// An option error names the flag the user typed (--keep, --translate-concurrency), never the stage's
// own field (keepCheckpoints, concurrency), and a flag the command converts (--timeout seconds,
// --bucket-mb MiB) is checked in the units typed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { errorLine, flagOf } from '../src/cli/program.js';
import { runIngest } from '../src/pipeline/ingest.js';
import { noiseJpeg } from './helpers/images.js';

const PROGRAMS = { 'filip-data': path.resolve('bin/filip-data.js'), filip: path.resolve('bin/filip.js') };
let tmp: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-option-errors-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

test('flagOf: the field in kebab case, or a listed flag, whichever the user typed', () => {
  const table = { keepCheckpoints: ['keep'], concurrency: ['translate-concurrency'], templates: ['template'], marianDir: ['marian-dir'] };
  const cases: [string, string[], string | undefined][] = [
    ['saveEvery', ['train', '--save-every', '-1'], 'save-every'],
    ['augment.views', ['shard', 'x', '--augment-views=99'], 'augment-views'],
    ['keepCheckpoints', ['train', '--keep', '-1'], 'keep'],
    ['concurrency', ['shard', 'x', '--translate-concurrency', '0'], 'translate-concurrency'],
    ['concurrency', ['ingest', 'm.tsv', '--concurrency', '0'], 'concurrency'],
    ['templates[1]', ['eval', '--template', 'a {}', '--template', 'b'], 'template'],
    // Not typed: the value came from a default or a config, so there is no flag to name.
    ['saveEvery', ['train', '--steps', '5'], undefined],
    ['augment.quality', ['shard', 'x', '--augment-views', '1'], undefined],
    // A flag another one needs, left out: named although not typed.
    ['marianDir', ['shard', 'x', '--translate', 'marian'], 'marian-dir'],
  ];
  for (const [field, argv, want] of cases) assert.equal(flagOf(field, argv, table), want, `${field} in ${argv.join(' ')}`);
});

test('errorLine rewrites an option error to the flag and leaves other errors as they are', () => {
  const option = new FilipError('FILIP_ERR_INVALID_OPTION', 'Expected `keepCheckpoints` to be an integer from 0 and up, got -1', { field: 'keepCheckpoints' });
  assert.equal(
    errorLine('filip', option, ['train', '--keep', '-1'], { keepCheckpoints: ['keep'] }),
    'filip: FILIP_ERR_INVALID_OPTION: --keep: Expected `--keep` to be an integer from 0 and up, got -1',
  );
  // A resume that contradicts its checkpoint is about a flag too; the field's bare mentions change with it.
  const resume = new FilipError('FILIP_ERR_CHECKPOINT', 'the checkpoint was trained with vocabSize 1000, this run asks for 600', { file: 'run/ckpt-1', field: 'vocabSize' });
  assert.equal(
    errorLine('filip', resume, ['train', '--resume', 'run', '--vocab-size', '600']),
    'filip: FILIP_ERR_CHECKPOINT: run/ckpt-1: --vocab-size: the checkpoint was trained with --vocab-size 1000, this run asks for 600',
  );
  const shard = new FilipError('FILIP_ERR_SHARD', 'width must be a number', { file: 'a.parquet', row: 3, field: 'width' });
  assert.equal(errorLine('filip', shard, ['train', '--width', '3']), 'filip: FILIP_ERR_SHARD: a.parquet, row 3, field "width": width must be a number');
});

test('the programs name the flag in every option error', async () => {
  const manifest = path.join(tmp, 'm.tsv');
  await fs.writeFile(manifest, 'url\tcaption\nhttp://127.0.0.1:9/a.jpg\ta cat\n');
  const out = path.join(tmp, 'out');
  // A finished ingest output, for the errors found after the input folder is opened.
  const image = path.join(tmp, 'a.jpg');
  await fs.writeFile(image, await noiseJpeg(5, 220, 210));
  const local = path.join(tmp, 'local.tsv');
  await fs.writeFile(local, `url\tcaption\n${image}\ta red barn by the road\n`);
  const ingested = path.join(tmp, 'ingested');
  await runIngest({ inputs: [local], output: ingested, progress: 'none', image: { size: 64 } });
  // [program, arguments, exit status, the flag the message must name, the internal name it must not show]
  const cases: [keyof typeof PROGRAMS, string[], number, string, string][] = [
    ['filip-data', ['ingest', manifest, '-o', out, '--image-size', '0'], 2, '--image-size', '`size`'],
    ['filip-data', ['ingest', manifest, '-o', out, '--per-host', '0'], 2, '--per-host', 'perHostConcurrency'],
    ['filip-data', ['ingest', manifest, '-o', out, '--shard-size', '0'], 2, '--shard-size', 'shardSize'],
    ['filip-data', ['ingest', manifest, '-o', out, '--timeout', '-1'], 1, '--timeout must be from 0.001 to 2147483 seconds, got -1', 'connectTimeoutMs'],
    ['filip-data', ['ingest', manifest, '-o', out, '--max-body', '5000'], 1, '--max-body must be from 0.001 to 2047 MiB', 'maxBodyBytes'],
    ['filip-data', ['shard', out, '-o', out, '--translate-concurrency', '0'], 2, '--translate-concurrency', '`concurrency`'],
    ['filip-data', ['shard', out, '-o', out, '--translate-batch', '0'], 2, '--translate-batch', 'batchSize'],
    ['filip-data', ['shard', ingested, '-o', out, '--translate', 'http', '--translate-url', 'notaurl'], 2, '--translate-url', '`url`'],
    ['filip-data', ['shard', ingested, '-o', out, '--translate', 'marian'], 2, '--marian-dir', 'marianDir'],
    ['filip-data', ['shard', out, '-o', out, '--bucket-mb', '0'], 1, '--bucket-mb must be from 0.001 to 1048576 MiB, got 0', 'bucketBytes'],
    ['filip-data', ['worker', '--queue', 'redis://127.0.0.1:9', '--lock-duration', '0.5'], 1, '--lock-duration must be from 1 to 2147483 seconds, got 0.5', 'lockDurationMs'],
    ['filip-data', ['worker', '--queue', 'redis://127.0.0.1:9', '--max-stalled', '-1'], 2, '--max-stalled', 'maxStalledCount'],
    ['filip', ['train', '--shards', out, '-o', out, '--keep', '-1'], 2, '--keep', 'keepCheckpoints'],
    ['filip', ['train', '--shards', out, '-o', out, '--save-every', '-1'], 2, '--save-every', 'saveEvery'],
    ['filip', ['train', '--shards', out, '-o', out, '--weight-decay', '-1'], 2, '--weight-decay', 'weightDecay'],
    ['filip', ['train', '--shards', out, '-o', out, '--vocab-size', '1'], 2, '--vocab-size', 'vocabSize'],
    ['filip', ['eval', '--checkpoint', out, '--shards', out, '--template', 'a photo of {}', '--template', 'no braces'], 2, '--template', 'templates['],
    ['filip', ['tokenizer', 'train', '--shards', out, '-o', path.join(out, 't.txt'), '--min-pair-count', '1'], 2, '--min-pair-count', 'minPairCount'],
    ['filip', ['tokenizer', 'encode', '--merges', path.join(tmp, 'm.txt'), '--context-length', '1e12', 'hello'], 2, '--context-length', 'contextLength'],
    ['filip-data', ['filter', ingested, '-o', out, '--max-repeats', '4294967295'], 2, '--max-repeats', 'keepAbove'],
    ['filip-data', ['shard', ingested, '-o', out, '--bucket-mb', '1e12'], 1, '--bucket-mb must be from 0.001 to 1048576 MiB', 'bucketBytes'],
    ['filip-data', ['worker', '--queue', 'redis://127.0.0.1:9', '--stalled-interval', '1e7'], 1, '--stalled-interval must be from 0.5 to 2147483 seconds', 'stalledIntervalMs'],
    // Given twice: yargs makes an array, which came out as a wrong type or, after a unit conversion, NaN.
    ['filip-data', ['ingest', manifest, '-o', out, '--timeout', '1', '--timeout', '2'], 1, '--timeout is given 2 times; give it once', 'NaN'],
    ['filip-data', ['shard', ingested, '-o', out, '--translate', 'none', '--translate', 'apertium'], 1, '--translate is given 2 times', '`engine`'],
    // No value: `--flag=`, a blank value, or the one-letter alias at the end; the run used 0 or the default folder.
    ['filip-data', ['shard', ingested, '-o', out, '--seed='], 1, '--seed needs a value', 'got 0'],
    ['filip', ['train', '--shards', out, '-o', out, '--keep', ' '], 1, '--keep needs a value', 'keepCheckpoints'],
    ['filip-data', ['shard', ingested, '-o'], 1, '-o needs a value', 'shards/final'],
    ['filip-data', ['ingest', manifest, '-o', ''], 1, '-o needs a value', '`output`'],
    // Filter flags do nothing without --filter: ingest used to run unfiltered without a word.
    ['filip-data', ['ingest', manifest, '-o', out, '--min-side', '300'], 1, '--min-side applies only with --filter', 'shards written'],
    ['filip-data', ['merge', out, out, '-o', out, '--max-repeats=3'], 1, '--max-repeats applies only with --filter', 'FILIP_ERR'],
    ['filip-data', ['ingest', manifest, '-o', out, '--near-dup-check', 'none'], 1, '--near-dup-check applies only with --filter', 'shards written'],
    // Queue flags do nothing without --queue (the run used the in-memory index and ignored --wait).
    ['filip-data', ['ingest', manifest, '-o', out, '--near-dup-index', 'replica'], 1, '--near-dup-index applies only with --queue', 'shards written'],
    ['filip-data', ['ingest', manifest, '-o', out, '--bucket-bits=20'], 1, '--bucket-bits applies only with --queue', 'shards written'],
    ['filip-data', ['ingest', manifest, '-o', out, '--wait'], 1, '--wait applies only with --queue', 'shards written'],
    // Negative numbers yargs split into one-letter flags ("Unknown arguments: 1, e"): the flag's own message.
    ['filip', ['train', '--shards', out, '-o', out, '--lr', '-1e-3'], 2, '--lr', 'Unknown arguments'],
    ['filip', ['train', '--shards', out, '-o', out, '--batch', '1e9'], 2, '--batch', 'warning'],
    ['filip-data', ['filter', ingested, '-o', out, '--near-dup-distance', '-Infinity'], 2, '--near-dup-distance', 'Unknown arguments'],
    ['filip-data', ['filter', ingested, '-o', out, '--near-dup-distance', '25'], 2, '--near-dup-distance', 'shards written'],
    ['filip-data', ['filter', ingested, '-o', out, '--near-dup-check', 'fast'], 1, 'near-dup-check', 'shards written'],
    // An unknown flag is named as typed, without the camel-case key yargs made from it.
    ['filip-data', ['ingest', manifest, '-o', out, '--foo-bar', '1'], 1, 'Unknown argument: foo-bar', 'fooBar'],
    // A check that used to throw: the help and the message, no stack.
    ['filip', ['train'], 1, '--shards and --out are required (or --resume a run)', '    at '],
  ];
  await fs.writeFile(path.join(tmp, 'm.txt'), '#version: 0.2\nh e\n');
  for (const [program, args, status, flag, internal] of cases) {
    const r = spawnSync(process.execPath, [PROGRAMS[program], ...args], { encoding: 'utf8', cwd: tmp, timeout: 60_000 });
    const what = `${program} ${args.join(' ')}`;
    assert.equal(r.status, status, `${what}: exit ${r.status}\n${r.stderr}`);
    const last = r.stderr.trim().split('\n').at(-1)!;
    assert.ok(last.includes(flag), `${what}: names ${flag}: ${last}`);
    assert.ok(!last.includes(internal), `${what}: does not show ${internal}: ${last}`);
    if (status === 2) assert.match(last, new RegExp(`^${program}: FILIP_ERR_INVALID_OPTION: `), what);
  }
});
