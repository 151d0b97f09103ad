// The demo end to end (a small corpus): every planted ingest-stage case is rejected for its planted
// reason, case by case, and every row meant to pass ingest is in a shard.
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

test('demo: planted ingest cases get their reasons; the rest lands in shards', async () => {
  let report = '';
  const out = new Writable({
    write(c, _e, cb) {
      report += String(c);
      cb();
    },
  });
  const result = await runDemo({ output: tmp, scenes: 30, progress: 'none', out });
  const planted = result.corpus.rows.filter((r) => r.expected.status === 'rejected' && r.expected.stage === 'ingest');
  assert.ok(planted.length >= 15, 'the corpus plants every ingest failure');
  const { rows, rejects } = await readOutput(result.ingestDir);
  const rejectByRow = new Map(rejects.map((r) => [Number(r.key.slice(4)), r.reason]));
  for (const row of result.corpus.rows) {
    const e = row.expected;
    const want = e.status === 'rejected' && e.stage === 'ingest' ? e.reason : 'ok';
    assert.equal(rejectByRow.get(row.row) ?? 'ok', want, `row ${row.row}: ${row.note}`);
  }
  const keptRows = new Set(rows.map((r) => Number(String(r.key).slice(4))));
  assert.equal(keptRows.size + rejects.length, result.corpus.rows.length, 'every row accounted for once');
  for (const r of rows) assert.ok(String(r.extra_scene_id).length > 0, 'scene_id kept');
  assert.match(report, new RegExp(`planted ingest cases: ${planted.length} of ${planted.length}`));
});
