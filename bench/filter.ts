// npm run bench:filter — the filter stage's speed.
//  1. Text rules, captions/s on one core (this thread): meaningless_text, not_english (filip and
//     franc identifiers), the repeated_text lookup, and all of the filip text rules together.
//  2. The whole filter over shards, rows/s, against reading and writing the same shards with every
//     rule off (same code path, no rule work), measured in the same run.
// Captions come from the labelled caption table in test/fixtures and the demo's planted lists; the
// shards are an ingest of the bench:ingest photos (made once, cached under .cache/).
//
// Usage: npx tsx bench/filter.ts [--rows 2000] [--reps 2]

import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEMO_MEANINGLESS, DEMO_NOT_ENGLISH } from '../src/demo/corpus.js';
import { CaptionCounter } from '../src/filters/caption-counts.js';
import { FILTER_RULES } from '../src/filters/filter.js';
import { createEnglishDetector } from '../src/filters/language.js';
import { isMeaningless } from '../src/filters/meaningless.js';
import { runFilter } from '../src/pipeline/filter-run.js';
import { runIngest } from '../src/pipeline/ingest.js';
import { makePhotoCorpus } from './photos.js';

async function captionPool(): Promise<string[]> {
  const table = await fs.readFile('test/fixtures/captions-labelled.tsv', 'utf8');
  const captions = table.split('\n').slice(1).filter(Boolean).map((l) => l.slice(l.indexOf('\t') + 1));
  return [...captions, ...DEMO_NOT_ENGLISH, ...DEMO_MEANINGLESS];
}

function rate(label: string, texts: readonly string[], fn: (t: string) => unknown): number {
  let sink = 0;
  for (let i = 0; i < Math.min(texts.length, 2000); i++) if (fn(texts[i]!)) sink++; // warm up
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 1500) {
    for (const t of texts) if (fn(t)) sink++;
    n += texts.length;
  }
  const perSecond = n / ((performance.now() - t0) / 1000);
  console.log(`  ${label.padEnd(34)} ${Math.round(perSecond).toLocaleString('en-US').padStart(12)} captions/s${sink < 0 ? '' : ''}`);
  return perSecond;
}

async function textRules(pool: string[]): Promise<void> {
  console.log(`text rules, one core, ${pool.length} distinct captions cycled:`);
  const filip = createEnglishDetector('filip');
  const franc = createEnglishDetector('franc');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-bench-counts-'));
  const counter = new CaptionCounter({ dir, keepAbove: 10 });
  for (let i = 0; i < 100_000; i++) await counter.add(pool[i % pool.length]!);
  const counts = await counter.finish();
  rate('meaningless_text', pool, isMeaningless);
  rate('not_english (filip identifier)', pool, filip);
  rate('not_english (franc)', pool, franc);
  rate('repeated_text lookup', pool, (t) => counts.count(t) > 10);
  rate('all filip text rules', pool, (t) => isMeaningless(t) || !filip(t) || counts.count(t) > 10);
  await counts.close();
  await fs.rm(dir, { recursive: true, force: true });
}

async function ingestOnce(rows: number, pool: string[]): Promise<string> {
  const out = path.resolve(`.cache/bench-filter/ingest-${rows}`);
  if (await fs.stat(path.join(out, '_summary.json')).catch(() => undefined)) return out;
  const photos = (await makePhotoCorpus(path.resolve('.cache/bench-photos'), rows)).slice(0, rows);
  const manifest = path.resolve(`.cache/bench-filter/manifest-${rows}.tsv`);
  await fs.mkdir(path.dirname(manifest), { recursive: true });
  await fs.writeFile(manifest, `url\tcaption\n${photos.map((p, i) => `${p}\t${pool[i % pool.length]!.replace(/\s+/g, ' ')}`).join('\n')}\n`);
  process.stderr.write(`bench:filter: ingesting ${rows} photos once into ${out} ...\n`);
  await runIngest({ inputs: [manifest], output: out, progress: 'none', overwrite: true, dedupe: { urls: false } });
  return out;
}

async function wholeFilter(input: string, reps: number): Promise<void> {
  const best = { filter: 0, copy: 0 };
  let rows = 0;
  let kept = 0;
  for (let rep = 0; rep < reps; rep++) {
    for (const phase of ['copy', 'filter'] as const) {
      const out = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-bench-filter-'));
      const t0 = performance.now();
      const s = await runFilter({
        input,
        output: out,
        progress: 'none',
        filter: phase === 'copy' ? { disable: [...FILTER_RULES] } : {},
      });
      const perSecond = s.input / ((performance.now() - t0) / 1000);
      rows = s.input;
      if (phase === 'filter') kept = s.kept;
      best[phase] = Math.max(best[phase], perSecond);
      await fs.rm(out, { recursive: true, force: true });
    }
  }
  console.log(`whole filter over shards (${rows} rows, ${kept} kept by the filip preset), best of ${reps}:`);
  console.log(`  read + write, no rules            ${best.copy.toFixed(0).padStart(8)} rows/s`);
  console.log(`  filter, preset filip              ${best.filter.toFixed(0).padStart(8)} rows/s`);
  console.log(`  ratio filter / read+write         ${(best.filter / best.copy).toFixed(3)}`);
}

const { values } = parseArgs({ options: { rows: { type: 'string', default: '2000' }, reps: { type: 'string', default: '2' } } });
const pool = await captionPool();
await textRules(pool);
await wholeFilter(await ingestOnce(Number(values.rows), pool), Number(values.reps));
