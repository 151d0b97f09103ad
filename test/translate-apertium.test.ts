// The Apertium engine (real Debian pairs eng-spa, eng-cat): batched captions stay aligned with their
// inputs, reserved characters survive, missing pairs and bad options are errors, a stuck pipeline is
// restarted.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import { FilipError } from '../src/core/errors.js';
import { mulberry32 } from '../src/core/random.js';
import { ApertiumTranslator, deformat, reformat, resolveApertiumOptions, untag } from '../src/translate/apertium.js';
import { makeTestCaptions } from '../src/translate/test-captions.js';

const run = promisify(execFile);

// Captions with no final punctuation, many ending where a translator wants to move words across a
// line break ("a big" + next line "house of my friend" -> "Una casa / grande de mi amigo").
const HAND = [
  'a big',
  'house of my friend',
  'the cats of the',
  'woman on a red bike',
  'very',
  'old church in the snow',
  'two dogs and a',
  'cat sleeping',
];
const CAPTIONS = [...HAND, ...makeTestCaptions(392, { seed: 42 })];

let tr: ApertiumTranslator;
let tmp: string;
before(async () => {
  tr = new ApertiumTranslator();
  tmp = await mkdtemp(join(tmpdir(), 'filip-apertium-'));
});
after(async () => {
  await tr.close();
  await rm(tmp, { recursive: true, force: true });
});

test('the corpus is what the alignment test claims: hundreds of captions, none with final punctuation', () => {
  assert.ok(CAPTIONS.length >= 300);
  for (const c of CAPTIONS) assert.doesNotMatch(c, /[.!?;:]\s*$/);
});

test('feeding the lines to plain `apertium` misaligns them (the hazard the engine must avoid)', async () => {
  const file = join(tmp, 'captions.txt');
  await writeFile(file, `${CAPTIONS.join('\n')}\n`);
  const { stdout } = await run('apertium', ['-u', 'eng-spa', file], { maxBuffer: 1 << 24 });
  const lines = stdout.replace(/\n$/, '').split('\n');
  const alone = await Promise.all(HAND.slice(0, 2).map(async (c) => (await tr.translate([c], 'eng', 'spa'))[0]));
  // "a big" alone is "Un grande"; in the merged stream its adjective lands on the next line.
  assert.notEqual(lines[0]!.trim(), alone[0]);
});

test('a batch of 400 captions: every output is the translation of its own caption alone', async () => {
  const batch = await tr.translate(CAPTIONS, 'eng', 'spa');
  assert.equal(batch.length, CAPTIONS.length);
  for (const [i, out] of batch.entries()) {
    assert.equal(typeof out, 'string', `caption ${i} failed: ${String(out)}`);
    assert.notEqual(out, '', `caption ${i} came back empty`);
    assert.doesNotMatch(out as string, /[\n\0]/, `caption ${i} holds a line break`);
  }
  // Each caption translated in a call of its own, where nothing can run into it.
  const alone: (string | Error)[] = [];
  for (const c of CAPTIONS) alone.push(...(await tr.translate([c], 'eng', 'spa')));
  for (const [i, out] of batch.entries()) assert.equal(out, alone[i], `caption ${i}: ${JSON.stringify(CAPTIONS[i])}`);
  // And, for a seeded sample, by the stock `apertium` command in a process of its own (its own
  // deformatter and reformatter, no state shared with the long-lived pipeline).
  const rand = mulberry32(9);
  const sample = [0, 1, ...CAPTIONS.map((_, i) => i).filter(() => rand() < 0.05)];
  for (const i of sample) {
    const file = join(tmp, `one-${i}.txt`);
    await writeFile(file, `${CAPTIONS[i]}\n`);
    const { stdout } = await run('apertium', ['-u', 'eng-spa', file]);
    assert.equal(batch[i], stdout.trim(), `caption ${i}: ${JSON.stringify(CAPTIONS[i])}`);
  }
});

test('every output carries its own marker and no other (structural check over all 400)', async () => {
  // An unknown word is copied through untranslated: a unique one in each caption shows where it went.
  const marker = (i: number) => `zqx${i.toString(36)}w`;
  const marked = CAPTIONS.map((c, i) => `${marker(i)} ${c}`);
  const out = await tr.translate(marked, 'eng', 'cat');
  assert.equal(out.length, marked.length);
  const all = /zqx[0-9a-z]+w/g;
  for (const [i, o] of out.entries()) {
    assert.equal(typeof o, 'string');
    assert.deepEqual((o as string).match(all), [marker(i)], `output ${i}: ${String(o)}`);
  }
});

test('concurrent calls on one direction share the pipeline and each gets its own answers', async () => {
  const rand = mulberry32(3);
  const subsets = Array.from({ length: 6 }, () => CAPTIONS.filter(() => rand() < 0.1));
  const results = await Promise.all(subsets.map((s) => tr.translate(s, 'eng', 'spa')));
  const reference = await tr.translate(CAPTIONS, 'eng', 'spa');
  const byCaption = new Map(CAPTIONS.map((c, i) => [c, reference[i]]));
  subsets.forEach((s, k) => s.forEach((c, i) => assert.equal(results[k]![i], byCaption.get(c))));
});

test('round trip eng -> spa -> eng gives English back', async () => {
  const there = await tr.translate(['a dog on the beach', 'the red car'], 'eng', 'spa');
  assert.deepEqual(there, ['Un perro en la playa', 'El coche rojo']);
  const back = await tr.translate(there as string[], 'spa', 'eng');
  assert.match(String(back[0]), /dog/i);
  assert.match(String(back[1]), /red car/i);
});

test('reserved characters of the stream format, NULs and line breaks in a caption stay in their caption', async () => {
  const odd = ['a [dog] with ^caret$ and a/b @home', '<b>bold</b> {braces} back\\slash', 'line\nbreak\0nul', '   ', 'done', 'a tilde ~ here and~there'];
  const out = await tr.translate(odd, 'eng', 'spa');
  assert.equal(out.length, odd.length);
  assert.match(String(out[0]), /\[/);
  assert.match(String(out[0]), /\^caret\$/);
  assert.match(String(out[0]), /\/b @/);
  assert.match(String(out[1]), /^<b>\S+<\/b> \{[^}]+\} \S+\\\S+$/); // words translated, markup kept
  assert.doesNotMatch(String(out[2]), /[\n\0]/);
  assert.equal(out[3], '', 'a blank caption translates to nothing, without a round trip');
  assert.equal(out[4], (await tr.translate(['done'], 'eng', 'spa'))[0]);
  assert.equal(String(out[5]).match(/~/g)?.length, 2, `tildes kept: ${String(out[5])}`);
});

test('deformat/untag/reformat: escapes come back, the ghost full stop goes, a real one stays, tags must match', () => {
  const text = 'a [x] ^y$ /z @w <v> {u} \\t ~s~ [filip:7]';
  const block = deformat(text, 7);
  assert.equal(block.endsWith('.[][filip:7]\0'), true);
  assert.equal(reformat(untag(block.slice(0, -1), 7)!), text);
  assert.equal(untag(block.slice(0, -1), 8), undefined, 'another input\'s tag');
  assert.equal(untag('Un perro gran', 7), undefined, 'a block cut short');
  assert.equal(untag('a \\[filip:7\\]', 7), undefined, 'a caption\'s own escaped text');
  assert.equal(reformat('Hola..[]'), 'Hola.');
  assert.equal(reformat('Un perro[ ]grande.[]'), 'Un perro grande');
});

test('a direction Apertium lacks is FILIP_ERR_TRANSLATOR naming the mode', async () => {
  for (const [from, to] of [['eng', 'deu'], ['rus', 'eng']] as const) {
    await assert.rejects(tr.check(from, to), (err: unknown) => {
      assert.ok(err instanceof FilipError);
      assert.equal(err.code, 'FILIP_ERR_TRANSLATOR');
      assert.match(err.message, new RegExp(`${from}-${to}`));
      return true;
    });
    await assert.rejects(tr.translate(['a dog'], from, to), { code: 'FILIP_ERR_TRANSLATOR' });
  }
  await assert.doesNotReject(tr.check('eng', 'cat'));
});

/**
 * A stand-in "pair" eng-xxx whose mode runs a tiny null-flush program: it upper-cases each block
 * (keeping its tag), exits on a block holding "crash", never answers one holding "hang" and skips one
 * holding "drop" (so every later answer would land one text too early). It exercises the process
 * handling (crash, timeout, restart) with a real child pipeline whose failures can be provoked.
 */
async function fakeModes(): Promise<string> {
  const dir = join(tmp, 'fake-modes');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  const script = join(dir, 'fake-pipeline.py');
  await writeFile(
    script,
    [
      'import sys, time',
      'buf = b""',
      'while True:',
      '    chunk = sys.stdin.buffer.read1(65536)',
      '    if not chunk:',
      '        break',
      '    buf += chunk',
      '    while b"\\0" in buf:',
      '        block, buf = buf.split(b"\\0", 1)',
      '        if b"crash" in block:',
      '            sys.exit(3)',
      '        if b"hang" in block:',
      '            time.sleep(3600)',
      '        if b"drop" in block:',
      '            continue',
      '        head, tag, tail = block.rpartition(b"[filip:")',
      '        sys.stdout.buffer.write(head.upper() + tag + tail + b"\\0")',
      '        sys.stdout.buffer.flush()',
      '',
    ].join('\n'),
  );
  const wrapper = join(dir, 'fake-pipeline.sh');
  await writeFile(wrapper, `#!/bin/sh\nexec python3 -u ${script}\n`, { mode: 0o755 });
  await writeFile(join(dir, 'eng-xxx.mode'), `${wrapper}\n`);
  return dir;
}

test('a pipeline that dies on one caption fails that caption only; the others are retried alone', async () => {
  const t = new ApertiumTranslator({ modesDir: await fakeModes() });
  try {
    const out = await t.translate(['one', 'two', 'please crash here', 'three', 'four'], 'eng', 'xxx');
    assert.equal(out[0], 'ONE');
    assert.equal(out[1], 'TWO');
    assert.ok(out[2] instanceof Error && /exited \(code 3\)/.test(out[2].message), String(out[2]));
    assert.equal(out[3], 'THREE');
    assert.equal(out[4], 'FOUR');
    assert.deepEqual(await t.translate(['after'], 'eng', 'xxx'), ['AFTER']);
  } finally {
    await t.close();
  }
});

test('a pipeline that skips a block is caught by the tags: no text gets a neighbour\'s translation', async () => {
  const t = new ApertiumTranslator({ modesDir: await fakeModes(), timeoutMs: 1500 });
  try {
    const out = await t.translate(['one', 'please drop this', 'two', 'three'], 'eng', 'xxx');
    assert.equal(out[0], 'ONE');
    assert.ok(out[1] instanceof Error, `the skipped text fails, got ${String(out[1])}`);
    assert.equal(out[2], 'TWO');
    assert.equal(out[3], 'THREE');
  } finally {
    await t.close();
  }
});

test('a call that outlives timeoutMs fails its texts, and the next call gets a fresh pipeline', async () => {
  const t = new ApertiumTranslator({ modesDir: await fakeModes(), timeoutMs: 1500 });
  try {
    assert.deepEqual(await t.translate(['warm up'], 'eng', 'xxx'), ['WARM UP']); // process started
    const out = await t.translate(['fine', 'hang forever', 'later'], 'eng', 'xxx');
    assert.equal(out[0], 'FINE');
    for (const o of out.slice(1)) assert.ok(o instanceof Error && /no answer within 1500 ms/.test(o.message), String(o));
    assert.deepEqual(await t.translate(['next'], 'eng', 'xxx'), ['NEXT']);
  } finally {
    await t.close();
  }
});

test('closed translators refuse work', async () => {
  const t = new ApertiumTranslator();
  await t.close();
  await assert.rejects(t.translate(['a dog'], 'eng', 'spa'), { code: 'FILIP_ERR_TRANSLATOR' });
});

test('bad options are FILIP_ERR_INVALID_OPTION naming the option', () => {
  const table: [object, string][] = [
    [{ timeoutMs: 0 }, 'timeoutMs'],
    [{ timeoutMs: 1.5 }, 'timeoutMs'],
    [{ modesDir: '' }, 'modesDir'],
    [{ markUnknown: 'yes' }, 'markUnknown'],
    [{ modesdir: '/x' }, 'modesdir'],
  ];
  for (const [given, field] of table) {
    assert.throws(() => resolveApertiumOptions(given as never), (err: unknown) => {
      assert.ok(err instanceof FilipError);
      assert.equal(err.code, 'FILIP_ERR_INVALID_OPTION');
      assert.equal(err.field, field);
      return true;
    });
  }
});
