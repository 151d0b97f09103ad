// Scores the English detectors on the labelled set that build.ts made: precision, recall and
// accuracy of "is English" per length bucket, the filip engine beside franc, and texts per second
// on one core (one JS thread, no workers). Exits 1 when the filip engine misses a target, so it
// can serve as a check; 2 when the labelled set has not been built.
//
//   tsx scripts/lang-eval/eval.ts [--split test|dev] [--errors N]
//
// Targets, on texts of 2-15 words taken together ("all"): English precision >= 0.98 and recall
// >= 0.98, >= 50,000 texts/s. Buckets where filip is below 0.98 are marked, but only "all" decides
// the exit status.

import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { LANGUAGE_ENGINES, type LanguageEngine, createEnglishDetector } from '../../src/filters/language.js';
import { BUCKETS, type Labelled, type Split, SPLITS, bucketOf, countWords, readLabelled, splitPath } from './common.js';

const TARGET = { precision: 0.98, recall: 0.98, textsPerSecond: 50_000 } as const;

interface Tally {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

const empty = (): Tally => ({ tp: 0, fp: 0, fn: 0, tn: 0 });
const precision = (t: Tally) => (t.tp + t.fp === 0 ? 1 : t.tp / (t.tp + t.fp));
const recall = (t: Tally) => (t.tp + t.fn === 0 ? 1 : t.tp / (t.tp + t.fn));
const accuracy = (t: Tally) => (t.tp + t.tn) / Math.max(1, t.tp + t.fp + t.fn + t.tn);

interface EngineResult {
  buckets: Map<string, Tally>;
  overall: Tally;
  /** Non-English texts called English, per language. */
  falsePositives: Map<string, number>;
  errors: { row: Labelled; said: boolean }[];
  buildMs: number;
  textsPerSecond: number;
}

/** Texts per second over repeated passes of at least `minMs`, after one warm-up pass. */
function throughput(detect: (text: string) => boolean, texts: readonly string[], minMs = 1500): number {
  let sink = 0;
  for (const t of texts) if (detect(t)) sink++;
  let done = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (const t of texts) if (detect(t)) sink++;
    done += texts.length;
    elapsed = performance.now() - start;
  } while (elapsed < minMs);
  if (sink < 0) console.log(sink); // keeps the loop from being optimised away
  return (done / elapsed) * 1000;
}

function run(engine: LanguageEngine, rows: readonly Labelled[], buckets: readonly string[]): EngineResult {
  const t0 = performance.now();
  const detect = createEnglishDetector(engine);
  detect('warm up');
  const buildMs = performance.now() - t0;
  const result: EngineResult = {
    buckets: new Map(BUCKETS.map((b) => [b.name, empty()])),
    overall: empty(),
    falsePositives: new Map(),
    errors: [],
    buildMs,
    textsPerSecond: 0,
  };
  rows.forEach((row, i) => {
    const said = detect(row.text);
    const truth = row.lang === 'en';
    const key = said ? (truth ? 'tp' : 'fp') : truth ? 'fn' : 'tn';
    result.buckets.get(buckets[i]!)![key]++;
    result.overall[key]++;
    if (said !== truth) result.errors.push({ row, said });
    if (said && !truth) result.falsePositives.set(row.lang, (result.falsePositives.get(row.lang) ?? 0) + 1);
  });
  result.textsPerSecond = throughput(
    detect,
    rows.map((r) => r.text),
  );
  return result;
}

const f3 = (x: number) => x.toFixed(3);
const pad = (s: string, n: number) => s.padStart(n);

function main(): number {
  const { values } = parseArgs({
    options: { split: { type: 'string', default: 'test' }, errors: { type: 'string', default: '0' } },
  });
  const split = values.split as Split;
  if (!(split in SPLITS)) {
    console.error(`Expected \`--split\` to be one of ${Object.keys(SPLITS).join(', ')}, got ${JSON.stringify(split)}`);
    return 2;
  }
  const path = splitPath(split);
  if (!existsSync(path)) {
    console.error(`${path} is missing: run \`tsx scripts/lang-eval/build.ts\` first`);
    return 2;
  }
  const rows = readLabelled(path);
  const buckets = rows.map((r) => bucketOf(countWords(r.text)) ?? '?');
  const engines = Object.keys(LANGUAGE_ENGINES) as LanguageEngine[];
  const results = new Map(engines.map((e) => [e, run(e, rows, buckets)]));

  const nEnglish = rows.filter((r) => r.lang === 'en').length;
  const langs = [...new Set(rows.map((r) => r.lang))].sort();
  console.log(`English detection on ${path} (${split} split): ${rows.length} texts, ${nEnglish} English, ` +
    `${rows.length - nEnglish} in ${langs.length - 1} other languages (${langs.filter((l) => l !== 'en').join(' ')})`);
  console.log('');
  const head = ['words', 'texts', 'en'.padStart(5)];
  for (const e of engines) head.push(`| ${e.padEnd(5)} P`, 'R'.padStart(6), 'acc'.padStart(6));
  console.log(head.join(' '));
  const line = (name: string, pick: (r: EngineResult) => Tally) => {
    const any = pick(results.get(engines[0]!)!);
    const n = any.tp + any.fp + any.fn + any.tn;
    const cells = [name.padEnd(5), pad(String(n), 5), pad(String(any.tp + any.fn), 5)];
    for (const e of engines) {
      const t = pick(results.get(e)!);
      cells.push(`| ${pad(f3(precision(t)), 7)}`, pad(f3(recall(t)), 6), pad(f3(accuracy(t)), 6));
    }
    const filip = pick(results.get('filip')!);
    const below = precision(filip) < TARGET.precision || recall(filip) < TARGET.recall;
    console.log(cells.join(' ') + (below ? '   (filip below 0.98 here)' : ''));
  };
  for (const b of BUCKETS) line(b.name, (r) => r.buckets.get(b.name)!);
  line('all', (r) => r.overall);
  console.log('');
  for (const e of engines) {
    const r = results.get(e)!;
    const fps = [...r.falsePositives.entries()].sort((a, b) => b[1] - a[1]).map(([l, n]) => `${l} ${n}`);
    console.log(`${e}: ${Math.round(r.textsPerSecond).toLocaleString('en-US')} texts/s on one core ` +
      `(tables built in ${Math.round(r.buildMs)} ms); non-English called English: ${fps.join(', ') || 'none'}`);
  }

  const errorsToShow = Number(values.errors);
  if (errorsToShow > 0) {
    const errs = results.get('filip')!.errors;
    console.log(`\nfilip errors (${errs.length}), first ${errorsToShow}:`);
    for (const { row, said } of errs.slice(0, errorsToShow)) console.log(`  ${said ? 'FP' : 'FN'} ${row.lang}\t${row.text}`);
  }

  const filip = results.get('filip')!;
  const misses: string[] = [];
  if (precision(filip.overall) < TARGET.precision) misses.push(`precision ${f3(precision(filip.overall))} < ${TARGET.precision}`);
  if (recall(filip.overall) < TARGET.recall) misses.push(`recall ${f3(recall(filip.overall))} < ${TARGET.recall}`);
  if (filip.textsPerSecond < TARGET.textsPerSecond) {
    misses.push(`${Math.round(filip.textsPerSecond)} texts/s < ${TARGET.textsPerSecond}`);
  }
  console.log('');
  if (misses.length > 0) {
    console.log(`filip MISSES its targets: ${misses.join('; ')}`);
    return 1;
  }
  console.log(`filip meets its targets (precision and recall >= ${TARGET.precision}, >= ${TARGET.textsPerSecond} texts/s)`);
  return 0;
}

process.exitCode = main();
