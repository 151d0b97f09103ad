// The demo end to end (the default corpus): every planted case, ingest and filter, is rejected for its
// planted reason, case by case; every row meant to survive is in the filtered shards; and the shard step
// puts every kept row, with its back-translations and view, in exactly one final shard (read back here
// with hyparquet, not through the demo's own check).
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { runDemo } from '../src/demo/run.js';
import { readOutput, readShardFile } from './helpers/read.js';

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-demo-'));
after(() => fs.rm(tmp, { recursive: true, force: true }));

/** Runs the demo into `tmp` and returns its result and what it printed. */
async function demo() {
  let report = '';
  const out = new Writable({
    write(c, _e, cb) {
      report += String(c);
      cb();
    },
  });
  const result = await runDemo({ output: tmp, progress: 'none', out });
  return { result, report };
}

test('demo: planted cases get their reasons at the right stage; the rest is kept', async () => {
  // The default corpus, as `npm run demo` runs it.
  const { result, report } = await demo();
  const ingest = await readOutput(result.ingestDir);
  const filtered = await readOutput(result.filterDir);
  const rowOf = (key: string) => Number(key.slice(4));
  const ingestReason = new Map(ingest.rejects.map((r) => [rowOf(r.key), r.reason]));
  const filterReason = new Map(filtered.rejects.map((r) => [rowOf(r.key), r.reason]));
  const kept = new Set(filtered.rows.map((r) => rowOf(String(r.key))));
  const stagesSeen = new Set<string>();
  for (const row of result.corpus.rows) {
    const e = row.expected;
    const where = `row ${row.row}: ${row.note}`;
    if (e.status === 'ok') {
      assert.ok(kept.has(row.row), `${where} should be kept (ingest: ${ingestReason.get(row.row)}, filter: ${filterReason.get(row.row)})`);
    } else if (e.stage === 'ingest') {
      assert.equal(ingestReason.get(row.row), e.reason, where);
      stagesSeen.add(`ingest:${e.reason}`);
    } else {
      assert.equal(ingestReason.get(row.row), undefined, `${where} passes ingest`);
      assert.equal(filterReason.get(row.row), e.reason, where);
      stagesSeen.add(`filter:${e.reason}`);
    }
  }
  for (const r of ['image_too_small', 'aspect_ratio', 'not_english', 'meaningless_text', 'repeated_text', 'near_duplicate']) {
    assert.ok(stagesSeen.has(`filter:${r}`), `the demo plants ${r}`);
  }
  assert.equal(kept.size + ingest.rejects.length + filtered.rejects.length, result.corpus.rows.length, 'every row accounted for once');
  for (const r of filtered.rows) assert.ok(String(r.extra_scene_id).length > 0, 'scene_id kept through both stages');
  assert.match(report, /0 rows differ from expected\.json/);
  const html = await fs.readFile(path.join(result.filterDir, 'report.html'), 'utf8');
  assert.match(html, /<img src="data:image\/jpeg;base64,/);

  // ---- the shard step ----
  assert.deepEqual(result.shardProblems, [], 'the demo found no problem in its shards');
  const keptRows = new Map(filtered.rows.map((r) => [String(r.key), r]));
  const sizes = JSON.parse(await fs.readFile(path.join(result.shardDir, 'sizes.json'), 'utf8')) as Record<string, number>;
  const sum = Object.values(sizes).reduce((a, n) => a + n, 0);
  assert.equal(sum, keptRows.size, 'sizes.json sums to the rows the filter kept');
  const onDisk = (await fs.readdir(result.shardDir)).filter((n) => /^\d{5}\.parquet$/.test(n)).sort();
  assert.deepEqual(Object.keys(sizes).sort(), onDisk, 'sizes.json lists exactly the shard files');
  const shardOf = new Map<string, string[]>();
  let translated = 0;
  for (const file of onDisk) {
    const rows = await readShardFile(path.join(result.shardDir, file));
    assert.equal(rows.length, sizes[file], `${file} holds what sizes.json says`);
    for (const r of rows) {
      const key = String(r.key);
      shardOf.set(key, [...(shardOf.get(key) ?? []), file]);
      const src = keptRows.get(key);
      assert.ok(src, `${key} in ${file} was kept by the filter`);
      assert.equal(r.caption, src.caption, `${key}: caption unchanged`);
      assert.ok(Buffer.from(r.image as Uint8Array).equals(Buffer.from(src.image as Uint8Array)), `${key}: image unchanged`);
      const view = Buffer.from(r.view_0 as Uint8Array);
      assert.ok(view.length > 0 && view[0] === 0xff && view[1] === 0xd8, `${key}: view_0 is a JPEG`);
      // Each pivot is accounted for once: a back-translation, or a failure recorded on the kept row.
      const done = (JSON.parse(String(r.back_translations)) as { pivot: string; engine: string }[]).map((t) => `${t.pivot}/${t.engine}`);
      const failed = (JSON.parse(String(r.translation_failures)) as { pivot: string; engine: string }[]).map((t) => `${t.pivot}/${t.engine}`);
      assert.deepEqual([...done, ...failed].sort(), ['cat/apertium', 'spa/apertium'], `${key}: each pivot translated or its failure recorded`);
      translated += done.length;
    }
  }
  for (const key of keptRows.keys()) assert.deepEqual(shardOf.get(key)?.length, 1, `kept key ${key} is in exactly one shard (${shardOf.get(key)?.join(', ') ?? 'none'})`);
  assert.equal(shardOf.size, keptRows.size, 'no other key in the shards');
  assert.equal(result.shard.counts.ok, keptRows.size);
  // Apertium handles plain English captions: failures are the exception, not the rule.
  assert.ok(translated >= 0.9 * 2 * keptRows.size, `${translated} back-translations for ${keptRows.size} kept rows and 2 pivots`);
});

test('demo: run again on the same folder, every stage starts afresh (the README runs it more than once)', async () => {
  const { result, report } = await demo();
  assert.match(report, /0 rows differ from expected\.json/);
  assert.deepEqual(result.shardProblems, []);
  // The training step (the last) ran again too: its run folder held the first run's checkpoint.
  assert.match(report, /saved .*ckpt-\d+ \(step \d+\)/);
});

test('demo: a corpus planned for another near_duplicate rule is planned again, not reused', async () => {
  // An older release planned its distinct scenes for the pHash alone at 10 bits: under today's rule
  // some of them would be near duplicates of each other, and the demo would report rows that differ.
  const file = path.join(tmp, 'corpus', 'corpus.json');
  const stored = JSON.parse(await fs.readFile(file, 'utf8')) as { nearDupRule?: string };
  const current = stored.nearDupRule;
  assert.match(String(current), /^pHash <= \d+ bits, chroma <= \d+ bits, aligned < [\d.]+$/);
  await fs.writeFile(file, JSON.stringify({ ...stored, nearDupRule: 'pHash <= 10 bits' }));
  const { report } = await demo();
  assert.match(report, /0 rows differ from expected\.json/);
  assert.equal((JSON.parse(await fs.readFile(file, 'utf8')) as { nearDupRule?: string }).nearDupRule, current);
});
