// End to end: a manifest served by a loopback server goes through runIngest; every row ends up
// either in a shard (read back by hyparquet, bytes exact) or in the reject log with its reason.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { alignedDistance, checkFromPixels, chromaDistance, NEAR_DUP_CHECK_BYTES } from '../src/image/near-dup-check.js';
import { FilipError } from '../src/core/errors.js';
import { formatSummary, runIngest, type IngestInput } from '../src/pipeline/ingest.js';
import { noiseJpeg } from './helpers/images.js';
import { readOutput } from './helpers/read.js';
import { sendBytes, startServer, type TestServer } from './helpers/server.js';

let server: TestServer;
let tmp: string;
const images: Buffer[] = [];
/** Expected outcome per manifest data row: 'ok' or a reason code. */
const expected: string[] = [];
let manifest: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-ingest-'));
  for (let i = 0; i < 30; i++) images.push(await noiseJpeg(i, 200 + i * 10, 240));
  const jpeg = images[0]!;
  server = await startServer((p) => {
    const m = /^\/img\/(\d+)\.jpg$/.exec(p);
    if (m) return sendBytes(images[Number(m[1])]!);
    if (p === '/same-as-3.jpg') return sendBytes(images[3]!);
    if (p === '/page.html') return sendBytes(Buffer.from('<html><body>hi</body></html>'), 'image/jpeg');
    if (p === '/truncated.jpg') return sendBytes(jpeg.subarray(0, Math.floor(jpeg.length / 2)));
    if (p === '/big.jpg') return sendBytes(Buffer.alloc(300 * 1024, 7));
    if (p === '/stall.jpg') return () => {}; // never answers
    if (p === '/trickle.jpg') {
      // Headers at once, then one byte every 100 ms for ever: only the hard deadline ends it.
      return (_q, res) => {
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': 100_000 }); // under the size cap
        const timer = setInterval(() => res.write(Buffer.from([0xff])), 100);
        res.on('close', () => clearInterval(timer));
      };
    }
    if (p === '/redirect.jpg') return (_q, res) => {
        res.writeHead(302, { location: '/img/29.jpg' }).end();
      };
    return undefined;
  });
  const b = server.baseUrl;
  const rows: [string, string, string][] = [];
  const add = (url: string, caption: string, outcome: string) => {
    rows.push([url, caption, `tag${rows.length}`]);
    expected.push(outcome);
  };
  for (let i = 0; i < 25; i++) add(`${b}/img/${i}.jpg`, `caption number ${i}`, 'ok');
  add(`${b}/img/5.jpg`, 'same url again', 'duplicate_url');
  add(`${b}/same-as-3.jpg`, 'other caption', 'duplicate_image');
  add(`${b}/missing.jpg`, 'a 404', 'http_status');
  add(`${b}/page.html`, 'html body served as image/jpeg', 'not_an_image');
  add(`${b}/truncated.jpg`, 'half a jpeg', 'corrupt_image');
  add(`${b}/big.jpg`, 'too big', 'body_too_large');
  add(`${b}/stall.jpg`, 'never answers', 'timeout');
  add(`${b}/trickle.jpg`, 'one byte at a time', 'timeout');
  add('', 'no url', 'malformed_row');
  add(`${b}/redirect.jpg`, 'redirected', 'ok');
  add('gopher://example/x.jpg', 'odd scheme', 'unsupported_scheme');
  manifest = path.join(tmp, 'manifest.tsv');
  await fs.writeFile(manifest, `url\tcaption\ttag\n${rows.map((r) => r.join('\t')).join('\n')}\n`);
});

after(async () => {
  await server.close();
  await fs.rm(tmp, { recursive: true, force: true });
});

function options(output: string, extra: Partial<IngestInput> = {}): IngestInput {
  return {
    inputs: [manifest],
    output,
    shardSize: 8,
    progress: 'none',
    manifest: { keepCols: ['tag'] },
    // The deadline only has to cut the stalled route; it is generous so a loaded CI machine keeps the rest.
    fetch: { concurrency: 6, totalTimeoutMs: 2000, retries: 0, maxBodyBytes: 200 * 1024 },
    ...extra,
  };
}

test('every row is in a shard or in the reject log with the right reason', async () => {
  const out = path.join(tmp, 'out-keep-ratio');
  const summary = await runIngest(options(out, { image: { resizeMode: 'keep-ratio', size: 64 } }));
  const { names, shards, rows, rejects } = await readOutput(out);

  const okKeys = expected.flatMap((e, i) => (e === 'ok' ? [`0000${String(i).padStart(9, '0')}`] : []));
  assert.deepEqual(rows.map((r) => r.key), okKeys, 'kept keys, in manifest order');
  const rejected = new Map(rejects.map((r) => [r.key, r.reason]));
  const unexpected = rejects.filter((r) => expected[Number(r.key.slice(4))] === 'ok');
  assert.deepEqual(unexpected, [], 'no good row rejected');
  expected.forEach((e, i) => {
    if (e !== 'ok') assert.equal(rejected.get(`0000${String(i).padStart(9, '0')}`), e, `row ${i}`);
  });
  assert.equal(rejects.length, expected.filter((e) => e !== 'ok').length, 'one reject line per rejected row');
  for (const r of rejects) assert.ok(r.error_message.length > 0, `${r.key} has an error message`);

  assert.deepEqual(shards, ['00000.parquet', '00001.parquet', '00002.parquet', '00003.parquet']);
  for (const s of shards) assert.ok(names.includes(s.replace('.parquet', '_stats.json')));
  assert.equal(names.filter((n) => n.endsWith('.tmp')).length, 0, 'no temporary files left');

  for (const r of rows) {
    assert.equal(Math.min(Number(r.width), Number(r.height)), 64);
    assert.equal(r.original_height, 240);
    const meta = await sharp(r.image as Uint8Array).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', r.width, r.height]);
    assert.match(String(r.phash), /^[0-9a-f]{16}$/);
    // The weak-bit mask: 5 of the 16 bits of every chunk.
    assert.match(String(r.phash_weak), /^[0-9a-f]{16}$/);
    for (let c = 0; c < 4; c++) assert.equal([...parseInt(String(r.phash_weak).slice(4 * c, 4 * c + 4), 16).toString(2)].filter((b) => b === '1').length, 5);
    // The near-duplicate check data describes the stored picture: recomputed from its bytes, it differs
    // only by the JPEG encode (ingest computes it from the pixels before encoding).
    assert.ok(r.near_dup_check instanceof Uint8Array && r.near_dup_check.length === NEAR_DUP_CHECK_BYTES);
    const decoded = await sharp(r.image as Uint8Array).raw().toBuffer({ resolveWithObject: true });
    const again = checkFromPixels(decoded.data, decoded.info.width, decoded.info.height, decoded.info.channels);
    assert.ok(chromaDistance(r.near_dup_check, again) <= 12, `chroma ${chromaDistance(r.near_dup_check, again)}`);
    assert.ok(alignedDistance(r.near_dup_check, again) < 0.02, `aligned ${alignedDistance(r.near_dup_check, again)}`);
    assert.match(String(r.source), /manifest\.tsv:\d+$/);
    assert.match(String(r.extra_tag), /^tag\d+$/);
  }
  assert.equal(summary.ok, okKeys.length);
  assert.equal(summary.rows, expected.length);
  assert.equal(summary.byReason.timeout, 2);
  // No hang at the end: a stalled and a trickling server cost one 2 s deadline each, in parallel.
  assert.ok(summary.seconds < 20, `run ended ${summary.seconds.toFixed(1)} s after start`);
  assert.equal(summary.total.shards, 4);
});

test('resize mode none stores the downloaded bytes exactly', async () => {
  const out = path.join(tmp, 'out-none');
  await runIngest(options(out, { image: { resizeMode: 'none' } }));
  const { rows } = await readOutput(out);
  const byUrl = new Map(rows.map((r) => [String(r.url), r]));
  for (let i = 0; i < 25; i++) {
    const r = byUrl.get(`${server.baseUrl}/img/${i}.jpg`);
    if (i === 3 || i === 5) assert.ok(r, `row ${i} kept`);
    if (!r) continue;
    assert.ok(Buffer.from(r.image as Uint8Array).equals(images[i]!), `image ${i} byte-exact`);
    assert.equal(r.width, r.original_width);
  }
});

test('running again on a finished output does nothing more; other options are refused', async () => {
  const out = path.join(tmp, 'out-again');
  await runIngest(options(out));
  const before = await readOutput(out);
  const again = await runIngest(options(out));
  assert.equal(again.rows, 0);
  assert.deepEqual(await readOutput(out), before);
  await assert.rejects(runIngest(options(out, { shardSize: 5 })), (e: unknown) => {
    assert.ok(e instanceof FilipError);
    assert.equal(e.code, 'FILIP_ERR_RESUME_MISMATCH');
    assert.equal(e.field, 'shardSize');
    return true;
  });
  const fresh = await runIngest(options(out, { shardSize: 5, overwrite: true }));
  assert.equal(fresh.rows, expected.length);
});

test('--retry-failed re-attempts only transient rejects, and they land once', async () => {
  const out = path.join(tmp, 'out-retry');
  let flaky = true;
  const flakyServer = await startServer((p) => {
    if (p === '/flaky.jpg') return flaky
        ? (_q, res) => {
            res.writeHead(503).end();
          }
        : sendBytes(images[28]!);
    if (p === '/gone.jpg') return undefined;
    return undefined;
  });
  try {
    const m = path.join(tmp, 'retry.tsv');
    await fs.writeFile(m, `url\tcaption\n${flakyServer.baseUrl}/flaky.jpg\tflaky\n${flakyServer.baseUrl}/gone.jpg\tgone\n`);
    const base: IngestInput = { inputs: [m], output: out, progress: 'none', fetch: { retries: 0 } };
    const first = await runIngest(base);
    assert.deepEqual(first.byReason, { http_server_error: 1, http_status: 1 });
    // A retry that fails again: the row is still counted once in the output's totals.
    const failedAgain = await runIngest({ ...base, retryFailed: true });
    assert.deepEqual([failedAgain.rows, failedAgain.ok], [1, 0]);
    assert.deepEqual(failedAgain.total, { ok: 0, rejected: 2, shards: 0, byReason: { http_server_error: 1, http_status: 1 } });
    flaky = false;
    const requestsBefore = flakyServer.requests.length;
    const retry = await runIngest({ ...base, retryFailed: true });
    assert.equal(retry.rows, 1, 'only the transient reject is retried');
    assert.deepEqual(flakyServer.requests.slice(requestsBefore), ['/flaky.jpg']);
    assert.equal(retry.ok, 1);
    assert.deepEqual(retry.total, { ok: 1, rejected: 1, shards: 1, byReason: { http_status: 1 } }, 'the kept row no longer counts as rejected');
    assert.match(formatSummary(retry), /whole output \(2 rows\): ok 1, http_status 1/);
    const again = await runIngest({ ...base, retryFailed: true });
    assert.equal(again.rows, 0, 'a row kept by a retry is not retried again');
    const { rows } = await readOutput(out);
    assert.deepEqual(rows.map((r) => r.key), ['0000000000000']);
  } finally {
    await flakyServer.close();
  }
});

test('bad options are refused with FILIP_ERR_INVALID_OPTION naming the option', async () => {
  const bad: [Partial<IngestInput>, string][] = [
    [{ shardSize: 0 }, 'shardSize'],
    [{ writer: 'csv' as never }, 'writer'],
    [{ progress: 'loud' as never }, 'progress'],
    [{ inputs: [] }, 'inputs'],
    [{ bogus: 1 } as never, 'bogus'],
  ];
  for (const [patch, field] of bad) {
    await assert.rejects(runIngest({ ...options(path.join(tmp, 'never')), ...patch }), (e: unknown) => {
      assert.ok(e instanceof FilipError, `${field}: ${String(e)}`);
      assert.equal(e.code, 'FILIP_ERR_INVALID_OPTION');
      assert.equal(e.field, field);
      return true;
    });
  }
});

test('a manifest whose extension says nothing is read in the format given (row count included)', async () => {
  const list = path.join(tmp, 'list.txt');
  // CC3M style: caption, then URL, no header.
  await fs.writeFile(list, `first picture\t${server.baseUrl}/img/1.jpg\nsecond picture\t${server.baseUrl}/img/2.jpg\n`);
  const out = path.join(tmp, 'out-txt');
  const summary = await runIngest({ inputs: [list], output: out, progress: 'none', manifest: { format: 'cc3m' } });
  assert.deepEqual([summary.rows, summary.ok], [2, 2]);
  const { rows } = await readOutput(out);
  assert.deepEqual(rows.map((r) => r.caption), ['first picture', 'second picture']);
});
