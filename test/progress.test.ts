// Progress: a redrawn line on a TTY, plain timestamped lines elsewhere, ETA only with a known total.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { Sample } from '../src/core/sample.js';
import { Progress, formatDuration } from '../src/pipeline/progress.js';

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  const w = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  }) as Writable & { isTTY?: boolean };
  w.isTTY = isTTY;
  return { w, text: () => chunks.join('') };
}

const ok = { status: 'ok' } as Sample;
const bad = { status: 'rejected' } as Sample;

test('TTY: carriage-return redraws with rows/s, images/s, success rate and ETA', () => {
  const s = sink(true);
  const p = new Progress({ mode: 'auto', total: 10, stream: s.w });
  p.tick(ok);
  p.tick(bad);
  p.stop();
  assert.match(s.text(), /^\r\x1b\[K.*2\/10 rows .* rows\/s .* images\/s .*50\.0% ok .*ETA/);
  assert.ok(s.text().endsWith('\n'));
});

test('not a TTY: plain lines, no escape codes; no ETA without a total', () => {
  const s = sink(false);
  const p = new Progress({ mode: 'auto', stream: s.w });
  p.tick(ok);
  p.log('committed 00000.parquet');
  p.stop();
  const text = s.text();
  assert.doesNotMatch(text, /[\r\x1b]/);
  assert.match(text, /committed 00000\.parquet\n/);
  assert.match(text, /^\d{4}-\d\d-\d\dT.* 1 rows .*100\.0% ok/m);
  assert.doesNotMatch(text, /ETA/);
});

test('none: silent', () => {
  const s = sink(true);
  const p = new Progress({ mode: 'none', stream: s.w });
  p.tick(ok);
  p.log('x');
  p.stop();
  assert.equal(s.text(), '');
});

test('formatDuration', () => {
  const table: [number, string][] = [[0, '0s'], [59.4, '59s'], [61, '1m01s'], [3600 * 2 + 60 * 5, '2h05m'], [Infinity, '?']];
  for (const [s, want] of table) assert.equal(formatDuration(s), want);
});
