// The demo end to end (the default corpus): every planted case, ingest and filter, is rejected for its
// planted reason, case by case; every row meant to survive is in the filtered shards.
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { runDemo } from '../src/demo/run.js';
import { readOutput } from './helpers/read.js';

const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-demo-'));
after(() => fs.rm(tmp, { recursive: true, force: true }));

test('demo: planted cases get their reasons at the right stage; the rest is kept', async () => {
  let report = '';
  const out = new Writable({
    write(c, _e, cb) {
      report += String(c);
      cb();
    },
  });
  // The default corpus, as `npm run demo` runs it.
  const result = await runDemo({ output: tmp, progress: 'none', out });
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
});
