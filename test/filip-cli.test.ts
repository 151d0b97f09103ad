// The `filip` program as a user runs it: an error of a command is one line with its stable code and
// exit status 2 (no usage text, no stack trace); an image that does not decode is named.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { imagePixels } from '../src/train/eval.js';
import { noiseJpeg } from './helpers/images.js';

const FILIP = path.resolve('bin/filip.js');
let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-cli2-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

test('command errors are one line with the code, for every command', async () => {
  await fs.writeFile(path.join(tmp, 'a-file'), 'x');
  const cases: [string[], string][] = [
    [['eval', '--checkpoint', path.join(tmp, 'nowhere'), '--shards', tmp], 'FILIP_ERR_CHECKPOINT'],
    [['align', '--checkpoint', path.join(tmp, 'nowhere'), '--image', path.join(tmp, 'a-file'), '--prompt', 'a dog'], 'FILIP_ERR_CHECKPOINT'],
    [['train', '--shards', tmp, '-o', path.join(tmp, 'a-file'), '--steps', '1'], 'FILIP_ERR_INVALID_OPTION'],
  ];
  for (const [args, code] of cases) {
    const r = spawnSync(process.execPath, [FILIP, ...args], { encoding: 'utf8', cwd: tmp, timeout: 120_000 });
    assert.equal(r.status, 2, `${args[0]}: ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.match(lines.at(-1)!, new RegExp(`^filip: ${code}: `), `${args[0]}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /Options:|\n\s+at /, `${args[0]}: no usage text, no stack`);
  }
});

test('an image that does not decode is FILIP_ERR_SHARD naming it', async () => {
  const good = await noiseJpeg(1, 40, 40);
  await assert.rejects(imagePixels([good, Buffer.from('garbage')], 32, ['key 0001', 'key 0002']), (e: unknown) => {
    assert.ok(e instanceof FilipError && e.code === 'FILIP_ERR_SHARD', String(e));
    assert.match(e.message, /key 0002: the image does not decode/);
    return true;
  });
  assert.equal((await imagePixels([good], 32)).length, 32 * 32 * 3);
});
