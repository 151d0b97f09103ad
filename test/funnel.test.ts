// The filter funnel's counts and its seeded sample of rejected examples for the HTML report; a
// resumed run, replaying earlier rejects from the reject log without their images, shows the same
// examples with the same images (kept in the funnel's image log).
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { ReasonCode } from '../src/core/reasons.js';
import type { Sample } from '../src/core/sample.js';
import { Funnel, writeFunnelReport } from '../src/filters/funnel.js';
import { noiseJpeg } from './helpers/images.js';

const RULES: readonly ReasonCode[] = ['image_too_small', 'not_english', 'near_duplicate'];
let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-funnel-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

interface Row {
  readonly sample: Sample;
  readonly failed: ReasonCode[];
}

async function rows(n: number): Promise<Row[]> {
  const out: Row[] = [];
  for (let i = 0; i < n; i++) {
    const failed: ReasonCode[] = i % 4 === 0 ? [] : [RULES[i % 3]!, ...(i % 5 === 0 ? [RULES[(i + 1) % 3]!] : [])];
    const sample = {
      key: `k${i}`,
      caption: `caption ${i}`,
      errorMessage: failed.length ? `failed ${failed[0]}` : undefined,
      status: failed.length ? 'rejected' : 'ok',
      image: { bytes: await noiseJpeg(i, 24, 24) },
    } as unknown as Sample;
    out.push({ sample, failed });
  }
  return out;
}

const examplesOf = (f: Funnel) => RULES.map((r) => f.examples(r).map((e) => `${e.key}:${e.image?.toString('base64') ?? 'none'}`));

test('counts per rule: first failed, failed at all, remaining after each', async () => {
  const f = new Funnel(RULES, { examplesPerRule: 5 });
  for (const { sample, failed } of await rows(40)) f.add(sample, failed);
  const json = f.toJSON();
  assert.equal(json.input, 40);
  assert.equal(json.kept, 10);
  assert.deepEqual(json.rules.map((r) => r.rejected), [10, 10, 10]);
  assert.equal(json.rules.at(-1)!.remaining, json.kept);
  for (const rule of RULES) assert.equal(f.examples(rule).length, 5);
});

test('a resumed funnel shows the same examples, images included, from its image log', async () => {
  const all = await rows(200);
  const imageLog = path.join(tmp, 'images.bin');
  const clean = new Funnel(RULES, { examplesPerRule: 4, imageLog: path.join(tmp, 'clean.bin') });
  for (const { sample, failed } of all) clean.add(sample, failed);

  // The killed run saw the first 120 rows; the resumed one replays their rejects without images
  // (as the reject log has them), then sees the rest with images.
  const killed = new Funnel(RULES, { examplesPerRule: 4, imageLog });
  for (const { sample, failed } of all.slice(0, 120)) killed.add(sample, failed);
  // A kill in the middle of an append leaves a torn record at the end.
  await fs.appendFile(imageLog, Buffer.from([5, 0, 0x6b]));
  const resumed = new Funnel(RULES, { examplesPerRule: 4, imageLog });
  for (const { sample, failed } of all.slice(0, 120)) {
    resumed.add({ ...sample, image: undefined } as Sample, failed);
  }
  assert.ok(examplesOf(resumed).flat().some((e) => e.endsWith(':none')), 'replayed examples start without images');
  const restored = await resumed.restoreImages();
  assert.ok(restored > 0);
  for (const { sample, failed } of all.slice(120)) resumed.add(sample, failed);
  assert.deepEqual(examplesOf(resumed), examplesOf(clean));
  assert.ok(!examplesOf(clean).flat().some((e) => e.endsWith(':none')));

  const report = await writeFunnelReport(tmp, resumed, 'resumed');
  const html = await fs.readFile(report.html, 'utf8');
  assert.equal(html.match(/<img src="data:image\/jpeg/g)?.length, 12);
  assert.ok(!html.includes('class="noimg"'));
});
