// The demo corpus, its servers and the benchmark photo generator: determinism, the planted cases and
// their labels, sizes as labelled, byte-exact serving, and a close() that never hangs on a stalled client.

import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { makePhotoCorpus, renderPhoto, PHOTO_ASPECT, PHOTO_LONG_SIDE } from '../bench/photos.js';
import { FilipError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/random.js';
import { isReasonCode, type ReasonCode } from '../src/core/reasons.js';
import {
  DEMO_FILTER_REASONS,
  DEMO_MAX_COPY_DISTANCE,
  DEMO_MIN_HASH_DISTANCE,
  DEMO_REPEATED_CAPTION,
  DEMO_REPEATED_COUNT,
  DEMO_TEN_TIMES_CAPTION,
  DEMO_TEN_TIMES_COUNT,
  generateDemoCorpus,
  loadDemoCorpus,
  writeDemoManifest,
  type DemoCorpus,
  type DemoFilterReason,
} from '../src/demo/corpus.js';
import { hammingDistance, imageHashes, matchUnderRule, type RuleHashes } from '../src/demo/phash.js';
import { DEFAULT_NEAR_DUP_DISTANCE, PhashIndex } from '../src/filters/phash-index.js';
import { DEFAULT_NEAR_DUP_CHECK } from '../src/image/near-dup-check.js';
import { startDemoServer, startStaticServer } from '../src/demo/server.js';

/** The ingest outcomes the corpus promises to plant (the brief's list). */
const INGEST_PLANTED: readonly ReasonCode[] = [
  'http_status',
  'timeout',
  'not_an_image',
  'corrupt_image',
  'body_too_large',
  'duplicate_image',
  'duplicate_url',
  'malformed_row',
];

let root: string;
let corpus: DemoCorpus;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'filip-demo-test-'));
  corpus = await generateDemoCorpus(join(root, 'a'), { seed: 7, scenes: 30 });
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else out.push(relative(dir, join(d, e.name)));
    }
  };
  await walk(dir);
  return out.sort();
}

function filterRows(reason: DemoFilterReason) {
  return corpus.rows.filter((r) => r.expected.status === 'rejected' && r.expected.stage === 'filter' && r.expected.reason === reason);
}

function sceneOf(id: string) {
  const scene = corpus.scenes.find((s) => s.id === id);
  assert.ok(scene, `scene ${id}`);
  return scene;
}

describe('generateDemoCorpus', () => {
  test('the same seed writes byte-identical files; another seed differs', async () => {
    const again = await generateDemoCorpus(join(root, 'b'), { seed: 7, scenes: 30 });
    const filesA = await listFiles(corpus.dir);
    assert.deepEqual(await listFiles(again.dir), filesA);
    assert.deepEqual(filesA, [...corpus.files]);
    for (const f of filesA) {
      assert.ok((await readFile(join(corpus.dir, f))).equals(await readFile(join(again.dir, f))), `${f} differs`);
    }
    const other = await generateDemoCorpus(join(root, 'c'), { seed: 8, scenes: 30 });
    assert.notDeepEqual(
      other.rows.map((r) => r.caption),
      corpus.rows.map((r) => r.caption),
    );
    assert.ok(!(await readFile(join(other.dir, 'corpus.json'))).equals(await readFile(join(corpus.dir, 'corpus.json'))));
  });

  test('every planted outcome appears; ingest codes are reason codes', () => {
    const seen = new Set<string>();
    for (const r of corpus.rows) {
      if (r.expected.status === 'ok') continue;
      seen.add(`${r.expected.stage}:${r.expected.reason}`);
      if (r.expected.stage === 'ingest') assert.ok(isReasonCode(r.expected.reason), r.expected.reason);
      else assert.ok(Object.hasOwn(DEMO_FILTER_REASONS, r.expected.reason), r.expected.reason);
    }
    for (const code of INGEST_PLANTED) assert.ok(seen.has(`ingest:${code}`), `no ingest:${code} row`);
    for (const code of Object.keys(DEMO_FILTER_REASONS)) assert.ok(seen.has(`filter:${code}`), `no filter:${code} row`);
    const ok = corpus.rows.filter((r) => r.expected.status === 'ok').length;
    assert.ok(ok >= 30 + 2 + DEMO_TEN_TIMES_COUNT, `only ${ok} ok rows`);
    const total = Object.values(corpus.summary).reduce((a, b) => a + b, 0);
    assert.equal(total, corpus.rows.length);
    assert.deepEqual(
      corpus.rows.map((r) => r.row),
      corpus.rows.map((_, i) => i),
    );
  });

  test('expected.json and corpus.json describe the same rows', async () => {
    const expected = JSON.parse(await readFile(join(corpus.dir, 'expected.json'), 'utf8')) as Array<Record<string, unknown>>;
    assert.equal(expected.length, corpus.rows.length);
    for (const [i, e] of expected.entries()) {
      const r = corpus.rows[i]!;
      assert.equal(e['row'], i);
      assert.equal(e['status'], r.expected.status);
      if (r.expected.status === 'rejected') {
        assert.equal(e['stage'], r.expected.stage);
        assert.equal(e['reason'], r.expected.reason);
      }
    }
    assert.deepEqual(await loadDemoCorpus(corpus.dir), corpus);
  });

  test('captions: repeated 12 times (all dropped), 10 times (all kept), otherwise unique', () => {
    const repeated = corpus.rows.filter((r) => r.caption === DEMO_REPEATED_CAPTION);
    assert.equal(repeated.length, DEMO_REPEATED_COUNT);
    assert.ok(DEMO_REPEATED_COUNT > 10);
    for (const r of repeated) assert.deepEqual(r.expected, { status: 'rejected', stage: 'filter', reason: 'repeated_text' });
    assert.equal(new Set(repeated.map((r) => r.sceneId)).size, DEMO_REPEATED_COUNT, 'distinct images');
    const ten = corpus.rows.filter((r) => r.caption === DEMO_TEN_TIMES_CAPTION);
    assert.equal(ten.length, DEMO_TEN_TIMES_COUNT);
    for (const r of ten) assert.equal(r.expected.status, 'ok');

    const counts = new Map<string, number>();
    for (const r of corpus.rows) {
      const key = r.caption.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ' ').trim();
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    for (const [caption, n] of counts) {
      if (caption === DEMO_REPEATED_CAPTION || caption === DEMO_TEN_TIMES_CAPTION) continue;
      // The only other repeat: a duplicate_url row carries its original's caption.
      assert.ok(n <= 2, `"${caption}" used ${n} times`);
    }
  });

  test('planted sizes are what their labels say; every other image passes the size rules', async () => {
    const small = filterRows('image_too_small');
    const wide = filterRows('aspect_ratio');
    assert.ok(small.length >= 1 && wide.length >= 1);
    for (const scene of corpus.scenes) {
      const meta = await sharp(join(corpus.dir, scene.file)).metadata();
      assert.equal(meta.width, scene.width, scene.file);
      assert.equal(meta.height, scene.height, scene.file);
      for (const o of scene.objects) {
        assert.ok(o.bbox.x >= 0 && o.bbox.y >= 0 && o.bbox.width > 0 && o.bbox.height > 0, `${scene.id} box`);
        assert.ok(o.bbox.x + o.bbox.width <= scene.width && o.bbox.y + o.bbox.height <= scene.height, `${scene.id} box inside`);
      }
    }
    const shortSide = (id: string) => Math.min(sceneOf(id).width, sceneOf(id).height);
    const aspect = (id: string) => Math.max(sceneOf(id).width, sceneOf(id).height) / shortSide(id);
    for (const r of small) assert.ok(shortSide(r.sceneId) < 200, `${r.sceneId} is not too small`);
    for (const r of wide) {
      assert.ok(aspect(r.sceneId) > 3, `${r.sceneId} aspect ${aspect(r.sceneId)}`);
      assert.ok(shortSide(r.sceneId) >= 200, `${r.sceneId} would also be too small`);
    }
    assert.ok(small.some((r) => sceneOf(r.sceneId).width === 150 && sceneOf(r.sceneId).height === 120));
    assert.ok(wide.some((r) => sceneOf(r.sceneId).width === 960 && sceneOf(r.sceneId).height === 240));
    for (const r of corpus.rows) {
      if (r.sceneId === '' || r.expected.status !== 'ok') continue;
      assert.ok(shortSide(r.sceneId) >= 200 && aspect(r.sceneId) <= 3, `ok row ${r.row} breaks a size rule`);
    }
    // The boundaries are present and kept.
    assert.ok(corpus.rows.some((r) => r.expected.status === 'ok' && r.sceneId !== '' && shortSide(r.sceneId) === 200));
    assert.ok(corpus.rows.some((r) => r.expected.status === 'ok' && r.sceneId !== '' && aspect(r.sceneId) === 3));
  });

  test('near duplicates are close to an earlier original; distinct scenes are far apart', async () => {
    const hashes = new Map<string, bigint>();
    const withWeak = new Map<string, RuleHashes>();
    for (const s of corpus.scenes) {
      const both = await imageHashes(await readFile(join(corpus.dir, s.file)));
      hashes.set(s.id, both.hash);
      withWeak.set(s.id, both);
    }
    const rowOfScene = new Map(corpus.rows.filter((r) => r.sceneId !== '').map((r) => [r.sceneId, r.row] as const));
    const copies = filterRows('near_duplicate');
    assert.ok(copies.length >= 2);
    for (const r of copies) {
      const copy = sceneOf(r.sceneId);
      assert.ok(copy.copyOf !== undefined);
      assert.ok(rowOfScene.get(copy.copyOf)! < r.row, 'original comes first');
      assert.ok(hammingDistance(hashes.get(copy.id)!, hashes.get(copy.copyOf)!) <= DEMO_MAX_COPY_DISTANCE);
      assert.ok(withWeak.get(copy.id)!.check !== undefined);
      assert.ok(matchUnderRule(withWeak.get(copy.copyOf)!, withWeak.get(copy.id)!, DEFAULT_NEAR_DUP_DISTANCE), `${copy.id} passes the rule's check against ${copy.copyOf}`);
      assert.ok(Math.min(copy.width, copy.height) >= 200);
    }
    const distinct = corpus.scenes.filter((s) => s.copyOf === undefined);
    for (let i = 0; i < distinct.length; i++) {
      for (let j = i + 1; j < distinct.length; j++) {
        const d = hammingDistance(hashes.get(distinct[i]!.id)!, hashes.get(distinct[j]!.id)!);
        assert.ok(d >= DEMO_MIN_HASH_DISTANCE, `${distinct[i]!.id} and ${distinct[j]!.id} are ${d} bits apart`);
        // Nor would the near_duplicate rule match them, whichever came first.
        assert.ok(!matchUnderRule(withWeak.get(distinct[i]!.id)!, withWeak.get(distinct[j]!.id)!, DEFAULT_NEAR_DUP_DISTANCE), `${distinct[i]!.id} and ${distinct[j]!.id} match under the rule`);
      }
    }
  });

  test('ingest bodies fail the way their labels say', async () => {
    const routeOf = new Map(corpus.routes.map((r) => [r.path, r] as const));
    for (const r of corpus.rows) {
      if (r.expected.status !== 'rejected' || r.expected.stage !== 'ingest') continue;
      const route = routeOf.get(r.url);
      switch (r.expected.reason) {
        case 'body_too_large': {
          assert.ok(route?.kind === 'file');
          assert.ok((await stat(join(corpus.dir, route.file))).size > corpus.maxBodyBytes);
          // A real image: only the size cap stops it.
          await sharp(join(corpus.dir, route.file)).metadata();
          break;
        }
        case 'corrupt_image':
          assert.ok(route?.kind === 'file');
          await sharp(join(corpus.dir, route.file)).metadata(); // the header is intact...
          await assert.rejects(sharp(join(corpus.dir, route.file)).raw().toBuffer()); // ...the pixels are not
          break;
        case 'not_an_image':
          assert.ok(route?.kind === 'file');
          await assert.rejects(sharp(join(corpus.dir, route.file)).metadata(), /unsupported image format/);
          break;
        case 'timeout':
          assert.ok(route?.kind === 'stall' || route?.kind === 'stall_body');
          break;
        case 'http_status':
          assert.ok(route?.kind === 'status' && route.status >= 400 && route.status < 500 && route.status !== 429);
          break;
        case 'duplicate_url':
          assert.ok(corpus.rows.some((o) => o.row < r.row && o.url === r.url), 'same URL earlier');
          break;
        case 'duplicate_image': {
          assert.ok(route?.kind === 'file');
          const earlier = corpus.rows.find((o) => o.row < r.row && o.sceneId === r.sceneId);
          assert.ok(earlier && earlier.url !== r.url, 'same image earlier, other URL');
          break;
        }
        case 'malformed_row':
          assert.equal(r.served, false);
          assert.throws(() => {
            if (r.url === '') throw new TypeError('empty');
            new URL(r.url);
          });
          break;
        default:
          assert.fail(`unexpected ingest reason ${r.expected.reason}`);
      }
    }
  });

  test('options are validated', async () => {
    await assert.rejects(generateDemoCorpus(join(root, 'x'), { scenes: 3 }), (e: unknown) => {
      return e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'scenes';
    });
    await assert.rejects(generateDemoCorpus(join(root, 'x'), { sceens: 30 } as never), (e: unknown) => {
      return e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'sceens';
    });
  });
});

describe('startDemoServer', () => {
  test('serves images byte-exact, plants its failures, writes the manifest', async () => {
    const server = await startDemoServer(corpus);
    try {
      for (const route of corpus.routes) {
        if (route.kind !== 'file') continue;
        const res = await fetch(server.baseUrl + route.path);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-type'), route.contentType);
        const body = Buffer.from(await res.arrayBuffer());
        assert.ok(body.equals(await readFile(join(corpus.dir, route.file))), route.path);
        if (route.chunked) assert.equal(res.headers.get('content-length'), null);
        else assert.equal(res.headers.get('content-length'), String(body.length));
      }
      const notFound = corpus.routes.find((r) => r.kind === 'status' && r.status === 404)!;
      assert.equal((await fetch(server.baseUrl + notFound.path)).status, 404);
      assert.equal((await fetch(server.baseUrl + '/images/nothing-here.jpg')).status, 404);
      assert.ok(server.requestCount(notFound.path) === 1 && server.requestCount() > 2);

      const manifest = join(root, 'manifest.tsv');
      await writeDemoManifest(corpus, server.baseUrl, manifest);
      const lines = (await readFile(manifest, 'utf8')).trimEnd().split('\n');
      assert.equal(lines[0], 'url\tcaption\tscene_id');
      assert.equal(lines.length, corpus.rows.length + 1);
      for (const [i, r] of corpus.rows.entries()) {
        const [url, caption, sceneId] = lines[i + 1]!.split('\t');
        assert.equal(caption, r.caption);
        assert.equal(sceneId, r.sceneId);
        assert.equal(url, r.served ? server.baseUrl + r.url : r.url);
      }
    } finally {
      await server.close();
    }
  });

  test('close() returns promptly while clients are stuck on the stall routes', async () => {
    const server = await startDemoServer(corpus);
    const stall = corpus.routes.find((r) => r.kind === 'stall')!;
    const stallBody = corpus.routes.find((r) => r.kind === 'stall_body')!;
    const headerWait = fetch(server.baseUrl + stall.path);
    headerWait.catch(() => {});
    const res = await fetch(server.baseUrl + stallBody.path);
    assert.equal(res.status, 200);
    const bodyWait = res.arrayBuffer();
    bodyWait.catch(() => {});
    while (server.requestCount(stall.path) === 0) await new Promise((r) => setTimeout(r, 10));
    const t0 = performance.now();
    await server.close();
    assert.ok(performance.now() - t0 < 1000, `close took ${performance.now() - t0} ms`);
    await assert.rejects(headerWait);
    await assert.rejects(bodyWait);
  });
});

describe('startStaticServer', () => {
  test('serves a folder with keep-alive; nothing outside it', async () => {
    const dir = join(root, 'static');
    await mkdir(join(dir, 'sub'), { recursive: true });
    const bytes = Buffer.from([0xff, 0xd8, 0xff, 1, 2, 3]);
    await writeFile(join(dir, 'sub', 'a.jpg'), bytes);
    await writeFile(join(root, 'secret.txt'), 'no');
    const server = await startStaticServer(dir);
    try {
      const res = await fetch(server.baseUrl + '/sub/a.jpg');
      assert.equal(res.headers.get('content-type'), 'image/jpeg');
      assert.equal(res.headers.get('connection'), 'keep-alive');
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes));
      assert.equal((await fetch(server.baseUrl + '/sub/missing.jpg')).status, 404);
      assert.equal((await fetch(server.baseUrl + '/sub')).status, 404);
      // fetch() would normalise "..": send the raw path.
      const status = await new Promise<number>((done, fail) => {
        const { hostname, port } = new URL(server.baseUrl);
        request({ hostname, port, path: '/%2e%2e/secret.txt' }, (r) => {
          r.resume();
          done(r.statusCode ?? 0);
        })
          .on('error', fail)
          .end();
      });
      assert.equal(status, 404);
    } finally {
      await server.close();
    }
  });
});

describe('makePhotoCorpus', () => {
  test('writes textured photo-like JPEGs of the promised sizes, deterministically', async () => {
    const dir = join(root, 'photos');
    const paths = await makePhotoCorpus(dir, 20, 3);
    assert.equal(paths.length, 20);
    for (const p of paths) {
      const img = sharp(p);
      const meta = await img.metadata();
      assert.equal(meta.format, 'jpeg');
      const w = meta.width!;
      const h = meta.height!;
      assert.ok(Math.max(w, h) >= PHOTO_LONG_SIDE.min && Math.max(w, h) <= PHOTO_LONG_SIDE.max, `${p}: ${w}x${h}`);
      assert.ok(w / h >= PHOTO_ASPECT.min - 0.01 && w / h <= PHOTO_ASPECT.max + 0.01, `${p}: ${w}x${h}`);
      const stats = await img.stats();
      const stdev = stats.channels.slice(0, 3).reduce((a, c) => a + c.stdev, 0) / 3;
      // A flat colour has stdev 0 (JPEG noise aside); photos here vary by tens of levels.
      assert.ok(stdev > 8, `${p}: stdev ${stdev}`);
      assert.ok(stats.entropy > 4, `${p}: entropy ${stats.entropy}`);
      const size = (await stat(p)).size;
      assert.ok(size > 10_000 && size < 400_000, `${p}: ${size} bytes`);
    }
    // Photo i depends only on (seed, i); a second call keeps the files.
    const first = await readFile(paths[5]!);
    assert.ok((await renderPhoto(3, 5)).bytes.equals(first));
    const mtime = (await stat(paths[0]!)).mtimeMs;
    await makePhotoCorpus(dir, 20, 3);
    assert.equal((await stat(paths[0]!)).mtimeMs, mtime);
  });

  test('worker threads (used for larger counts) write the same bytes', async () => {
    const paths = await makePhotoCorpus(join(root, 'photos-workers'), 51, 3);
    assert.equal(paths.length, 51);
    for (const i of [0, 1, 7, 50]) {
      assert.ok((await readFile(paths[i]!)).equals((await renderPhoto(3, i)).bytes), `photo ${i}`);
    }
  });
});

test('matchUnderRule says what PhashIndex (with the default check) says, with either picture kept', () => {
  const rand = mulberry32(17);
  const word = (): bigint => (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));
  const hex = (x: bigint): string => x.toString(16).padStart(16, '0');
  let matched = 0;
  for (let k = 0; k < 2000; k++) {
    const a = { hash: word(), weak: word() & word() & word() & 0x7777777777777777n };
    // b: a with a few bits flipped in some chunks, or unrelated.
    let flips = 0n;
    for (let i = 0; i < Math.floor(rand() * 14); i++) flips |= 1n << BigInt(Math.floor(rand() * 64));
    const b = { hash: rand() < 0.9 ? a.hash ^ flips : word(), weak: word() & word() & word() & 0x7777777777777777n };
    // No check data: the pHash decides, within PHASH_ONLY_DISTANCE (the pictures' checks are compared above).
    const index = (kept: typeof a, query: typeof a): boolean => {
      const i = new PhashIndex(DEFAULT_NEAR_DUP_DISTANCE, DEFAULT_NEAR_DUP_CHECK);
      i.add(hex(kept.hash));
      return i.has(hex(query.hash), hex(query.weak));
    };
    const want = index(a, b) || index(b, a);
    assert.equal(matchUnderRule(a, b, DEFAULT_NEAR_DUP_DISTANCE), want, `${hex(a.hash)} ${hex(b.hash)}`);
    if (want) matched++;
  }
  assert.ok(matched > 200 && matched < 1800, `${matched} of 2000 match`);
});

