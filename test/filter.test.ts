// The filter stage: rule predicates at their boundaries, options and presets, the reject log's
// reasons, resume, and the same kept keys whether filter runs after ingest or inside it.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import { generateDemoCorpus, writeDemoManifest, type DemoCorpus } from '../src/demo/corpus.js';
import { DEMO_IMAGE_OPTIONS } from '../src/demo/phash.js';
import { startDemoServer, type DemoServer } from '../src/demo/server.js';
import { FILTER_BATCH, filterSamples, prepareFilter, resolveFilterOptions, type FilterContext, type FilterInput } from '../src/filters/filter.js';
import { DEFAULT_NEAR_DUP_DISTANCE, PhashIndex } from '../src/filters/phash-index.js';
import { DEFAULT_NEAR_DUP_CHECK, NEAR_DUP_CHECK_BYTES } from '../src/image/near-dup-check.js';
import { seededRandom } from './helpers/images.js';
import type { Sample } from '../src/core/sample.js';
import { hasTooFewWords, isTooElongated, isTooSmall, wordCount } from '../src/filters/rules.js';
import { runFilter } from '../src/pipeline/filter-run.js';
import { runIngest, type IngestInput } from '../src/pipeline/ingest.js';
import { readOutput } from './helpers/read.js';

describe('rule predicates', () => {
  test('image_too_small and aspect_ratio at their boundaries (original size)', () => {
    const small: [number, number, boolean][] = [[200, 200, false], [199, 400, true], [400, 199, true], [1000, 200, false], [0, 10, true]];
    for (const [w, h, want] of small) assert.equal(isTooSmall(w, h, 200), want, `${w}x${h}`);
    const wide: [number, number, boolean][] = [[600, 200, false], [601, 200, true], [200, 601, true], [300, 300, false], [10, 0, true]];
    for (const [w, h, want] of wide) assert.equal(isTooElongated(w, h, 3), want, `${w}x${h}`);
  });
  test('too_few_words: more than 2 words AND more than 5 characters (DataComp)', () => {
    const table: [string, boolean][] = [
      ['a red circle', false],
      ['red circle', true],
      ['a b c', true],
      ['a bb cc', false],
      ['   ', true],
      ['one two three four', false],
    ];
    for (const [t, want] of table) assert.equal(hasTooFewWords(t, 2, 5), want, JSON.stringify(t));
    assert.equal(wordCount('  a\tb\nc  '), 3);
  });
});

/** An ok sample with a 512 x 512 original (or `originalWidth` wide) and the given hashes and check data. */
function sample(row: number, phash: string, phashWeak?: string, more: { check?: Uint8Array; originalWidth?: number } = {}): Sample {
  return {
    key: `0000${String(row).padStart(9, '0')}`,
    index: row,
    url: `https://example.com/${row}.jpg`,
    caption: `a picture number ${row}`,
    source: { file: 'manifest.tsv', row },
    extra: {},
    status: 'ok',
    image: {
      bytes: Buffer.from([0xff, 0xd8]),
      format: 'jpeg',
      width: 256,
      height: 256,
      originalWidth: more.originalWidth ?? 512,
      originalHeight: 512,
      sha256: String(row).padStart(64, '0'),
      phash,
      ...(phashWeak === undefined ? {} : { phashWeak }),
      ...(more.check === undefined ? {} : { nearDupCheck: more.check }),
    },
  };
}

describe('near_duplicate and the weak-bit mask', () => {
  test('a copy 16 bits away with no chunk intact is caught only through its weak bits', async () => {
    // The pHash rule alone (the check has a test file of its own: near-dup-check.test.ts).
    const options = resolveFilterOptions({
      disable: ['image_too_small', 'aspect_ratio', 'meaningless_text', 'not_english', 'repeated_text'],
      nearDupCheck: 'none',
      nearDupDistance: 16,
    });
    assert.deepEqual(options.rules, ['near_duplicate']);
    const work = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-weak-'));
    const ctx = await prepareFilter(options, async function* () {}, work);
    const rows = [
      sample(0, '0000000000000000', '001f001f001f001f'), // kept
      sample(1, '000f000f000f000f', '000f000000000000'), // 16 bits; chunk 0's flips are its weak bits
      sample(2, '00f000f000f000f0'), // 16 bits, no mask (an older shard): no chunk intact
      sample(3, '0f000f000f000f00', '00f0000000000000'), // 16 bits from row 0; its weak bits miss the flips
      sample(4, '001f001f001f0000', '0000000000000000'), // 15 bits, chunk 3 intact
      sample(5, '001f001f001f001f', '001f001f001f001f'), // 20 bits: beyond the distance
    ];
    async function* source(): AsyncGenerator<Sample> {
      yield* rows;
    }
    const out: Sample[] = [];
    for await (const s of filterSamples(source(), ctx)) out.push(s);
    await ctx.close();
    await fs.rm(work, { recursive: true, force: true });
    assert.deepEqual(
      out.map((s) => `${s.index} ${s.status} ${s.reason ?? ''}`.trim()),
      ['0 ok', '1 rejected near_duplicate', '2 ok', '3 ok', '4 rejected near_duplicate', '5 ok'],
    );
    assert.match(out[1]!.errorMessage!, /near duplicate of a kept image \(phash 0000000000000000\)/);
  });
});

describe('decided in batches', () => {
  // Rows in families of near copies (a family is one picture: its copies carry its check data with
  // a little noise and pass the check; some rows carry another picture and fail it, some none and
  // match on the pHash alone), interleaved with rows that failed before the filter, rows that fail
  // another rule (never kept, so never matched), and copies of evaluation pictures.
  function rowsAndIndexes(seed: number): { rows: Sample[]; evaluation: PhashIndex } {
    const rand = seededRandom(seed);
    const word = (): number => Math.floor(rand() * 2 ** 32);
    const hex = (hi: number, lo: number): string => (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
    const picture = (): Uint8Array => Uint8Array.from({ length: NEAR_DUP_CHECK_BYTES }, () => Math.floor(rand() * 256));
    const copyOf = (p: Uint8Array): Uint8Array => p.map((v, i) => (i < 16 ? v : Math.max(0, Math.min(255, v + Math.floor(rand() * 5) - 2))));
    const families = Array.from({ length: 120 }, () => ({ hi: word(), lo: word(), picture: picture() }));
    const evaluation = new PhashIndex(DEFAULT_NEAR_DUP_DISTANCE, DEFAULT_NEAR_DUP_CHECK);
    for (const f of families.slice(0, 10)) evaluation.add(hex(f.hi, f.lo), f.picture);
    const weak = (): string => {
      const chunks = [0, 0, 0, 0].map(() => {
        let m = 0;
        while (m.toString(2).replace(/0/g, '').length < 5) m |= 1 << Math.floor(rand() * 16);
        return m;
      });
      return hex((chunks[0]! << 16) | chunks[1]!, (chunks[2]! << 16) | chunks[3]!);
    };
    const rows: Sample[] = [];
    for (let row = 0; row < 1500; row++) {
      const f = families[Math.floor(rand() * families.length)]!;
      let { hi, lo } = f;
      for (let k = Math.floor(rand() * 16); k > 0; k--) {
        const b = Math.floor(rand() * 64);
        if (b < 32) hi ^= 1 << b;
        else lo ^= 1 << (b - 32);
      }
      const kind = rand();
      const check = kind < 0.7 ? copyOf(f.picture) : kind < 0.85 ? picture() : undefined;
      const failedBefore = rand() < 0.05;
      const small = rand() < 0.05;
      const one = sample(row, hex(hi, lo), weak(), { ...(check === undefined ? {} : { check }), originalWidth: small ? 100 : 512 });
      // A row rejected before the filter (no image): passed through as it is.
      rows.push(failedBefore ? { ...one, status: 'rejected', reason: 'http_status', image: undefined } : one);
    }
    return { rows, evaluation };
  }

  async function run(batch: number | undefined): Promise<string[]> {
    const { rows, evaluation } = rowsAndIndexes(5);
    const options = resolveFilterOptions({
      disable: ['aspect_ratio', 'meaningless_text', 'not_english', 'repeated_text'],
      decontaminate: ['(given below)'],
    });
    assert.deepEqual(options.rules, ['image_too_small', 'contaminated', 'near_duplicate']);
    const ctx: FilterContext = {
      options,
      isEnglish: () => true,
      kept: new PhashIndex(options.nearDupDistance, DEFAULT_NEAR_DUP_CHECK),
      contamination: evaluation,
      close: async () => {},
    };
    async function* source(): AsyncGenerator<Sample> {
      yield* rows;
    }
    const out: string[] = [];
    for await (const s of filterSamples(source(), ctx, undefined, batch)) {
      out.push(`${s.index} ${s.status} ${s.reason ?? ''} ${(s.failedRules ?? []).join(',')} ${s.errorMessage ?? ''}`.trim());
    }
    assert.equal(ctx.kept!.size, out.filter((line) => / ok$/.test(line)).length);
    return out;
  }

  test('the same decisions, reasons and messages whatever the batch, with matches inside a batch and across batches', async () => {
    const alone = await run(1);
    const count = (re: RegExp): number => alone.filter((line) => re.test(line)).length;
    // Every kind of decision is well represented, or the comparison proves little.
    assert.ok(count(/ rejected near_duplicate /) > 300, `${count(/ rejected near_duplicate /)} near duplicates`);
    assert.ok(count(/ rejected contaminated /) > 30, `${count(/ rejected contaminated /)} contaminated`);
    assert.ok(count(/contaminated,near_duplicate/) > 5, 'some rows fail both');
    assert.ok(count(/ rejected image_too_small /) > 30);
    assert.ok(count(/ rejected http_status/) > 30);
    assert.ok(count(/ ok$/) > 100, `${count(/ ok$/)} kept`);
    // Batches of 7 are asked one at a time inside findMany, of 100 and 300 in one sorted scan; the
    // default holds every row in one batch.
    for (const batch of [7, 100, 300, undefined]) assert.deepEqual(await run(batch), alone, `batch ${batch ?? FILTER_BATCH}`);
  });

  test('a bad batch size is FILIP_ERR_INVALID_OPTION', async () => {
    for (const bad of [0, -1, 2.5, Number.NaN]) {
      const ctx: FilterContext = { options: resolveFilterOptions(), isEnglish: () => true, close: async () => {} };
      await assert.rejects(
        async () => {
          for await (const s of filterSamples((async function* () {})(), ctx, undefined, bad)) void s;
        },
        (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === 'batch',
        String(bad),
      );
    }
  });
});

describe('options', () => {
  test('presets choose rules; disable, enable and decontaminate adjust them', () => {
    assert.deepEqual(resolveFilterOptions().rules, ['image_too_small', 'aspect_ratio', 'meaningless_text', 'not_english', 'repeated_text', 'near_duplicate']);
    assert.deepEqual(resolveFilterOptions({ preset: 'datacomp-basic' }).rules, ['image_too_small', 'aspect_ratio', 'too_few_words', 'not_english']);
    assert.deepEqual(resolveFilterOptions({ disable: ['near_duplicate', 'not_english'] }).rules, ['image_too_small', 'aspect_ratio', 'meaningless_text', 'repeated_text']);
    assert.ok(resolveFilterOptions({ decontaminate: ['evalset/'] }).rules.includes('contaminated'));
    assert.ok(resolveFilterOptions({ preset: 'datacomp-basic', enable: ['near_duplicate'] }).rules.includes('near_duplicate'));
  });
  test('near-duplicate defaults: the check at 20 bits; without it, 10; contamination follows', () => {
    const d = resolveFilterOptions();
    assert.deepEqual([d.nearDupCheck, d.nearDupDistance, d.contaminationDistance], ['aligned', 20, 20]);
    const none = resolveFilterOptions({ nearDupCheck: 'none' });
    assert.deepEqual([none.nearDupCheck, none.nearDupDistance, none.contaminationDistance], ['none', 10, 10]);
    const given = resolveFilterOptions({ nearDupCheck: 'none', nearDupDistance: 16 });
    assert.deepEqual([given.nearDupDistance, given.contaminationDistance], [16, 16]);
  });
  test('bad values are FILIP_ERR_INVALID_OPTION naming the option', () => {
    const bad: [FilterInput, string][] = [
      [{ preset: 'laion' as never }, 'preset'],
      [{ minSide: 0 }, 'minSide'],
      [{ maxAspect: 0.5 }, 'maxAspect'],
      [{ maxRepeats: 1.5 }, 'maxRepeats'],
      [{ language: 'cld3' as never }, 'language'],
      [{ disable: ['nope' as never] }, 'disable'],
      [{ enable: ['contaminated'] }, 'decontaminate'],
      [{ nearDupDistance: -1 }, 'nearDupDistance'],
      [{ nearDupDistance: 25 }, 'nearDupDistance'],
      [{ nearDupCheck: 'fast' as never }, 'nearDupCheck'],
      [{ contaminationDistance: 1.5 }, 'contaminationDistance'],
      [{ colour: 1 } as never, 'colour'],
    ];
    for (const [input, field] of bad) {
      assert.throws(() => resolveFilterOptions(input), (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_INVALID_OPTION' && e.field === field, field);
    }
  });
});

describe('on the demo corpus', () => {
  let tmp: string;
  let corpus: DemoCorpus;
  let server: DemoServer;
  let manifest: string;
  const ingestOptions = (output: string, extra: Partial<IngestInput> = {}): IngestInput => ({
    inputs: [manifest],
    output,
    shardSize: 40,
    progress: 'none',
    manifest: { keepCols: ['scene_id'] },
    image: DEMO_IMAGE_OPTIONS,
    fetch: { maxBodyBytes: corpus.maxBodyBytes, totalTimeoutMs: corpus.timeoutMs, retries: 0 },
    ...extra,
  });

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-filter-'));
    corpus = await generateDemoCorpus(path.join(tmp, 'corpus'), { scenes: 30 });
    server = await startDemoServer(corpus);
    manifest = path.join(tmp, 'manifest.tsv');
    await writeDemoManifest(corpus, server.baseUrl, manifest);
  });
  after(async () => {
    await server.close();
    await fs.rm(tmp, { recursive: true, force: true });
  });

  test('filter after ingest and ingest --filter keep the same keys and give the same reasons', async () => {
    await runIngest(ingestOptions(path.join(tmp, 'ingest')));
    const separate = await runFilter({ input: path.join(tmp, 'ingest'), output: path.join(tmp, 'filtered'), shardSize: 40, progress: 'none' });
    await runIngest(ingestOptions(path.join(tmp, 'chained'), { filter: {} }));
    const a = await readOutput(path.join(tmp, 'filtered'));
    const b = await readOutput(path.join(tmp, 'chained'));
    assert.ok(a.rows.length > 0);
    assert.deepEqual(b.rows.map((r) => r.key), a.rows.map((r) => r.key));
    const filterReasons = (rs: typeof a.rejects) => rs.filter((r) => 'failed' in r).map((r) => `${r.key} ${r.reason}`);
    assert.deepEqual(filterReasons(b.rejects), filterReasons(a.rejects));
    assert.equal(separate.funnel.rules.at(-1)!.remaining, a.rows.length);
    assert.equal(separate.kept, a.rows.length);

    // Every filter reject names its first failed rule and the list of all.
    for (const r of a.rejects as (typeof a.rejects[number] & { failed: string[] })[]) {
      assert.equal(r.failed[0], r.reason);
    }
    const funnelJson = JSON.parse(await fs.readFile(path.join(tmp, 'filtered', 'funnel.json'), 'utf8'));
    assert.equal(funnelJson.input, separate.input);
  });

  test('an interrupted filter run resumes to the same output', async () => {
    const input = path.join(tmp, 'ingest');
    const out = path.join(tmp, 'filtered-resume');
    const clean = await readOutput(path.join(tmp, 'filtered'));
    await runFilter({ input, output: out, shardSize: 40, progress: 'none' });
    // Undo the last commit as a kill before its stats file would have: the next run redoes it.
    const names = (await fs.readdir(out)).filter((n) => n.endsWith('_stats.json')).sort();
    await fs.rm(path.join(out, names.at(-1)!));
    await fs.writeFile(path.join(out, 'rejects.jsonl'), '{"torn": ', { flag: 'a' });
    const firstShard = await fs.stat(path.join(out, '00000.parquet'));
    await runFilter({ input, output: out, shardSize: 40, progress: 'none' });
    assert.equal((await fs.stat(path.join(out, '00000.parquet'))).mtimeMs, firstShard.mtimeMs, 'committed shards are not redone');
    const resumed = await readOutput(out);
    assert.deepEqual(resumed.rows.map((r) => r.key), clean.rows.map((r) => r.key));
    assert.deepEqual(resumed.rejects.map((r) => `${r.key} ${r.reason}`), clean.rejects.map((r) => `${r.key} ${r.reason}`));
  });

  test('datacomp-basic keeps repeated captions and near duplicates that filip drops', async () => {
    const out = await runFilter({ input: path.join(tmp, 'ingest'), output: path.join(tmp, 'datacomp'), filter: { preset: 'datacomp-basic' }, progress: 'none' });
    const filip = await readOutput(path.join(tmp, 'filtered'));
    assert.ok(out.kept > filip.rows.length);
    assert.deepEqual(out.funnel.rules.map((r) => r.rule), ['image_too_small', 'aspect_ratio', 'too_few_words', 'not_english']);
  });
});
