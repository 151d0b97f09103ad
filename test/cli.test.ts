// The CLI as a user runs it: errors come out as one line with a stable code and exit status 2.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

const CLI = path.resolve('bin/filip-data.js');
let tmp: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-cli-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

function cli(...args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: tmp, timeout: 60_000 });
}

test('bad input fails with the error code, the file and what it has', async () => {
  await fs.writeFile(path.join(tmp, 'm.csv'), 'link,text\nhttp://x/a.jpg,hello\n');
  const cases: [string[], string, RegExp][] = [
    [['ingest', 'm.csv'], 'FILIP_ERR_MISSING_COLUMN', /m\.csv.*url.*link.*text|m\.csv.*link.*text/s],
    [['ingest', 'nothing-here.tsv'], 'FILIP_ERR_NO_INPUT', /nothing-here\.tsv/],
    [['ingest', 'm.csv', '--url-col', 'link', '--caption-col', 'text', '--shard-size', '0'], 'FILIP_ERR_INVALID_OPTION', /--shard-size/],
    [['ingest', 'm.csv', '--url-col', 'link', '--caption-col', 'text', '--quality', '101'], 'FILIP_ERR_INVALID_OPTION', /quality/],
    // An output folder that cannot be made: named with its flag, at once (Node's own recursive mkdir
    // never returns under /proc, and under a file it threw a bare ENOTDIR with a stack).
    [['ingest', 'm.csv', '--url-col', 'link', '--caption-col', 'text', '-o', 'm.csv/out'], 'FILIP_ERR_INVALID_OPTION', /m\.csv\/out.*--output.*ENOTDIR/],
    [['ingest', 'm.csv', '--url-col', 'link', '--caption-col', 'text', '-o', '/proc/filip-cli-test/out'], 'FILIP_ERR_INVALID_OPTION', /\/proc\/filip-cli-test\/out.*--output.*ENOENT/],
  ];
  for (const [args, code, detail] of cases) {
    const r = cli(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.includes(code), `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, detail);
    assert.doesNotMatch(r.stderr, /\n\s+at /, `${args.join(' ')}: no stack`);
  }
});

test('--version prints the package version, for both programs', async () => {
  // yargs' own guess printed 'unknown' when the project sat under a folder with a dot in its name
  // (a fresh clone in /tmp/tmp.x1y2); the programs now give the version themselves.
  const { version } = JSON.parse(await fs.readFile(path.resolve('package.json'), 'utf8')) as { version: string };
  for (const bin of ['bin/filip-data.js', 'bin/filip.js']) {
    const r = spawnSync(process.execPath, [path.resolve(bin), '--version'], { encoding: 'utf8', cwd: tmp, timeout: 60_000 });
    assert.equal(r.status, 0, `${bin}: ${r.stderr}`);
    assert.equal(r.stdout.trim(), version, bin);
  }
});

test('a number flag given a word, or a flag given no value, is a usage error naming the flag', () => {
  const cases: [string, string[], string][] = [
    ['bin/filip-data.js', ['ingest', 'm.csv', '--timeout', 'abc'], '--timeout must be a number'],
    ['bin/filip-data.js', ['filter', 'in', '--max-repeats', 'ten'], '--max-repeats must be a number'],
    ['bin/filip.js', ['train', '--lr', 'fast'], '--lr must be a number'],
    // A script's `--seed $SEED` with SEED empty: not silently the default.
    ['bin/filip-data.js', ['shard', 'in', '-o', 'out', '--samples-per-shard'], '--samples-per-shard needs a value'],
    ['bin/filip-data.js', ['shard', 'in', '-o', 'out', '--seed', '--samples-per-shard', '5'], '--seed needs a value'],
    ['bin/filip-data.js', ['ingest', 'm.csv', '--url-col'], '--url-col needs a value'],
  ];
  for (const [bin, args, message] of cases) {
    const r = spawnSync(process.execPath, [path.resolve(bin), ...args], { encoding: 'utf8', cwd: tmp, timeout: 60_000 });
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.trim().endsWith(message), `${args.join(' ')}: ${r.stderr.slice(-300)}`);
  }
  // A negative number is a value, not a flag: it reaches the option check.
  const negative = cli('ingest', 'm.csv', '--image-size', '-5');
  assert.equal(negative.status, 2, negative.stderr);
  assert.match(negative.stderr, /FILIP_ERR_INVALID_OPTION/);
});

test('unknown flags and missing commands are usage errors', () => {
  assert.equal(cli('ingest', 'm.csv', '--no-such-flag').status, 1);
  assert.equal(cli().status, 1);
  const help = cli('ingest', '--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--resize-mode/);
});

test('a run prints the summary table on stdout and log lines (not a status line) when not a TTY', async () => {
  const img = path.join(tmp, 'missing.jpg');
  await fs.writeFile(path.join(tmp, 'one.tsv'), `url\tcaption\n${img}\ta missing file\n`);
  const r = cli('ingest', 'one.tsv', '-o', 'out');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /file_error\s+1\s+100\.0%/);
  assert.match(r.stdout, /total\s+1/);
  assert.doesNotMatch(r.stderr, /\r/);
  assert.match(r.stderr, /rows\/s .* images\/s/);
});
