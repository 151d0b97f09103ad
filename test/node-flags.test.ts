// The launcher's node flags: users who run `filip-data` (npm's bin link, the shebang) get V8's large
// initial heap, and the ingest benchmark reads the same flags from the same line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FILIP_DATA_BIN, shebangNodeFlags } from '../src/core/node-flags.js';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-flags-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

test('the filip-data launcher asks for a large initial V8 heap', () => {
  assert.equal(FILIP_DATA_BIN, path.resolve('bin/filip-data.js'));
  assert.deepEqual(shebangNodeFlags(), ['--initial-heap-size=512']);
  // `npm run demo` cannot read the shebang: its script spells the same flags out.
  const pkg = JSON.parse(readFileSync(path.resolve('package.json'), 'utf8')) as { scripts: Record<string, string> };
  assert.equal(pkg.scripts.demo, `node ${shebangNodeFlags().join(' ')} bin/filip-data.js demo`);
});

test('running the launcher itself (as npm bin links do) starts node with those flags', async () => {
  // A preload reports what the process was started with; NODE_OPTIONS may carry --require.
  const report = path.join(tmp, 'report.json');
  const preload = path.join(tmp, 'report.cjs');
  await fs.writeFile(
    preload,
    `require('node:fs').writeFileSync(${JSON.stringify(report)}, JSON.stringify({ execArgv: process.execArgv }));\n`,
  );
  const r = spawnSync(FILIP_DATA_BIN, ['--version'], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NODE_OPTIONS: `--require ${preload}` },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
  const got = JSON.parse(await fs.readFile(report, 'utf8')) as { execArgv: string[] };
  assert.ok(got.execArgv.includes('--initial-heap-size=512'), JSON.stringify(got.execArgv));
});

test('a launcher whose first line is not a node shebang is an error naming the file', async () => {
  const cases: [string, string][] = [
    ['no-shebang.js', "import './x.js';\n"],
    ['other-interpreter.js', '#!/bin/sh\necho hi\n'],
    ['empty.js', ''],
  ];
  for (const [name, text] of cases) {
    const file = path.join(tmp, name);
    await fs.writeFile(file, text);
    assert.throws(() => shebangNodeFlags(file), (e: Error) => e.message.includes(file) && /not a shebang/.test(e.message), name);
  }
  const plain = path.join(tmp, 'plain.js');
  await fs.writeFile(plain, '#!/usr/bin/env node\n');
  assert.deepEqual(shebangNodeFlags(plain), []);
});
