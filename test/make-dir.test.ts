// makeDir / makeDirSync: the folders users name (--output, --out, --report's folder) are made with
// their parents, and a path that cannot be a folder is FILIP_ERR_INVALID_OPTION naming it and the
// option, at once: never a hang (Node 20's recursive mkdir never returns under /proc) and never a bare
// ENOTDIR. The sync variant runs in a child process with a time limit, so a hang fails the test
// instead of stopping the run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { makeDir } from '../src/core/make-dir.js';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-make-dir-'));
  await fs.writeFile(path.join(tmp, 'a-file'), 'x');
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** The paths that cannot become folders, with what the message must say. */
function badPaths(): [string, string, RegExp][] {
  const cases: [string, string, RegExp][] = [
    ['a path under a regular file', path.join(tmp, 'a-file', 'x', 'y'), /ENOTDIR/],
    ['a regular file', path.join(tmp, 'a-file'), /is a file, not a folder/],
  ];
  // /proc refuses new entries with ENOENT, the answer that sends Node's recursive mkdir round forever.
  if (existsSync('/proc/self')) cases.push(['a path under /proc', '/proc/filip-make-dir-test/a/b', /ENOENT/]);
  return cases;
}

/** Runs makeDirSync(dir, field) in a child process; its outcome as JSON, or a timeout. */
function inChild(dir: string, field: string): { ok: true } | { code: string; field: string; file: string; message: string } {
  const script = `
    import { makeDirSync } from ${JSON.stringify(path.resolve('src/core/make-dir.ts'))};
    try { makeDirSync(${JSON.stringify(dir)}, ${JSON.stringify(field)}); console.log(JSON.stringify({ ok: true })); }
    catch (e) { console.log(JSON.stringify({ code: e.code, field: e.field, file: e.file, message: e.message })); }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.signal, null, `makeDirSync(${dir}) did not return within 30 s`);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('makeDir', () => {
  test('bad paths are FILIP_ERR_INVALID_OPTION naming the path and the option, at once', { timeout: 30_000 }, async () => {
    for (const [name, dir, why] of badPaths()) {
      await assert.rejects(
        makeDir(dir, 'output'),
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'output' && e.file === dir && why.test(e.message),
        name,
      );
    }
    assert.equal(existsSync('/proc/filip-make-dir-test'), false);
  });

  test('makes a folder with its missing parents; an existing folder is fine; a relative path is from the working folder', async () => {
    const deep = path.join(tmp, 'made', 'a', 'b', 'c');
    await makeDir(deep, 'output');
    assert.ok((await fs.stat(deep)).isDirectory());
    await makeDir(deep, 'output');
    await makeDir(tmp, 'output');
    const relative = path.relative(process.cwd(), path.join(tmp, 'rel', 'x'));
    await makeDir(relative, 'out');
    assert.ok((await fs.stat(path.join(tmp, 'rel', 'x'))).isDirectory());
  });

  test('two callers making the same new folders at once both succeed', async () => {
    const dir = path.join(tmp, 'race', 'p', 'q');
    await Promise.all([makeDir(dir, 'output'), makeDir(dir, 'output'), makeDir(path.join(dir, 'r'), 'output')]);
    assert.ok((await fs.stat(path.join(dir, 'r'))).isDirectory());
  });
});

describe('makeDirSync', () => {
  test('the same outcomes: bad paths refused at once, missing parents made', () => {
    for (const [name, dir, why] of badPaths()) {
      const r = inChild(dir, 'dir');
      assert.ok('code' in r, `${name}: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'FILIP_ERR_INVALID_OPTION', name);
      assert.equal(r.field, 'dir', name);
      assert.equal(r.file, dir, name);
      assert.match(r.message, why, name);
    }
    const deep = path.join(tmp, 'sync', 'a', 'b');
    assert.deepEqual(inChild(deep, 'dir'), { ok: true });
    assert.ok(existsSync(deep));
  });
});
