// Exact dedupe: URL normalisation, caption normalisation, the compact hash set, and the two stages.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeKey, type Sample } from '../src/core/sample.js';
import { DedupeIndex, dedupeContent, dedupeUrls, normalizeCaption, normalizeUrl } from '../src/pipeline/dedupe.js';
import { HashSet64, fingerprint } from '../src/pipeline/hashset.js';

test('normalizeUrl: equal URLs that differ only in case of host, default port or fragment', () => {
  const same: [string, string][] = [
    ['HTTP://Example.COM/a.jpg', 'http://example.com/a.jpg'],
    ['http://example.com:80/a.jpg', 'http://example.com/a.jpg'],
    ['https://example.com:443/a.jpg#frag', 'https://example.com/a.jpg'],
    ['  http://example.com/a.jpg  ', 'http://example.com/a.jpg'],
    // A plain path and the file: URLs that name the same file.
    ['/data/e copy.webp', 'file:///data/e%20copy.webp'],
    ['/data/e copy.webp', 'file:///data/e copy.webp'],
    ['/data/100%.jpg', 'file:///data/100%25.jpg'],
    ['/data/a.jpg', 'file://localhost/data/a.jpg'],
  ];
  for (const [a, b] of same) assert.equal(normalizeUrl(a), normalizeUrl(b), `${a} vs ${b}`);
  const different: [string, string][] = [
    ['http://example.com/A.jpg', 'http://example.com/a.jpg'],
    ['http://example.com/a.jpg?x=1', 'http://example.com/a.jpg?x=2'],
    ['http://example.com:8080/a.jpg', 'http://example.com/a.jpg'],
  ];
  for (const [a, b] of different) assert.notEqual(normalizeUrl(a), normalizeUrl(b), `${a} vs ${b}`);
  assert.match(normalizeUrl('images/a.jpg'), /^file:\/\/\//);
});

test('normalizeCaption folds case, whitespace and punctuation', () => {
  assert.equal(normalizeCaption('  A Red  Circle!! '), 'a red circle');
  assert.equal(normalizeCaption('a red circle'), normalizeCaption('A red, circle.'));
  assert.notEqual(normalizeCaption('a red circle'), normalizeCaption('a red square'));
});

test('HashSet64 stores and finds 200,000 fingerprints, grows, and reports its bytes', () => {
  const set = new HashSet64(16);
  for (let i = 0; i < 200_000; i++) {
    const [hi, lo] = fingerprint(`k${i}`);
    assert.equal(set.add(hi, lo), true);
  }
  assert.equal(set.size, 200_000);
  for (let i = 0; i < 200_000; i += 997) {
    const [hi, lo] = fingerprint(`k${i}`);
    assert.equal(set.has(hi, lo), true);
    assert.equal(set.add(hi, lo), false);
  }
  const [hi, lo] = fingerprint('absent');
  assert.equal(set.has(hi, lo), false);
  assert.ok(set.bytes / set.size <= 32, `bytes per record ${set.bytes / set.size}`);
  assert.equal(set.add(0, 0), true); // the empty marker is remapped, not lost
  assert.equal(set.has(0, 0), true);
});

function sample(i: number, url: string, caption = 'c', sha?: string): Sample {
  return {
    key: makeKey(0, i),
    index: i,
    url,
    caption,
    source: { file: 'm.tsv', row: i },
    extra: {},
    status: sha ? 'ok' : 'pending',
    ...(sha
      ? { image: { bytes: Buffer.from('x'), format: 'jpeg' as const, width: 1, height: 1, originalWidth: 1, originalHeight: 1, sha256: sha, phash: '0'.repeat(16) } }
      : {}),
  };
}

async function* from(xs: Sample[]) {
  yield* xs;
}

test('dedupeUrls rejects the second occurrence and passes rejected rows through', async () => {
  const index = new DedupeIndex();
  const bad = sample(2, 'http://a/x.jpg');
  bad.status = 'rejected';
  bad.reason = 'malformed_row';
  const out: Sample[] = [];
  for await (const s of dedupeUrls(from([sample(0, 'http://A/x.jpg'), sample(1, 'http://a/x.jpg#y'), bad]), index)) out.push(s);
  assert.deepEqual(out.map((s) => [s.status, s.reason]), [
    ['pending', undefined],
    ['rejected', 'duplicate_url'],
    ['rejected', 'malformed_row'],
  ]);
});

test('dedupeContent: first kept wins; duplicate_image, then duplicate_pair only when image dedupe is off', async () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  const run = async (images: boolean) => {
    const out: Sample[] = [];
    const input = [sample(0, 'u0', 'Red circle', a), sample(1, 'u1', 'red circle.', a), sample(2, 'u2', 'blue', a), sample(3, 'u3', 'x', b)];
    for await (const s of dedupeContent(from(input), new DedupeIndex(), { images, pairs: true })) out.push(s);
    return out.map((s) => s.reason ?? s.status);
  };
  assert.deepEqual(await run(true), ['ok', 'duplicate_image', 'duplicate_image', 'ok']);
  assert.deepEqual(await run(false), ['ok', 'duplicate_pair', 'ok', 'ok']);
});
