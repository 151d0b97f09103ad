// Measures the meaningless_text predicate on a labelled caption table: precision and recall of
// `drop`, the captions it got wrong (with the rule that fired), and captions per second on one core.
// `tsx scripts/meaningless-eval.ts [table.tsv]`; the table defaults to test/fixtures/captions-labelled.tsv.
// The test suite imports readLabelled() and evaluate() from here so both read the table one way.

import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { meaninglessReason, type MeaninglessRule } from '../src/filters/meaningless.js';

export const LABELLED_TABLE = fileURLToPath(new URL('../test/fixtures/captions-labelled.tsv', import.meta.url));

export interface LabelledCaption {
  readonly label: 'keep' | 'drop';
  readonly caption: string;
  /** 1-based line in the file. */
  readonly line: number;
}

/**
 * Reads `label<TAB>caption` lines after a header. The caption is everything after the first tab, kept
 * byte for byte (an empty or all-space caption is a test case), so the table needs no quoting.
 */
export function readLabelled(file = LABELLED_TABLE): LabelledCaption[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  if (lines[0] !== 'label\tcaption') throw new Error(`${file}: expected the header "label<TAB>caption"`);
  const out: LabelledCaption[] = [];
  for (let i = 1; i < lines.length; i++) {
    const text = lines[i]!.replace(/\r$/, '');
    if (text === '' && i === lines.length - 1) break;
    const tab = text.indexOf('\t');
    const label = text.slice(0, tab);
    if (tab < 0 || (label !== 'keep' && label !== 'drop')) {
      throw new Error(`${file}: line ${i + 1}: expected "keep" or "drop", a tab, then the caption`);
    }
    out.push({ label, caption: text.slice(tab + 1), line: i + 1 });
  }
  return out;
}

export interface Mistake extends LabelledCaption {
  readonly reason: MeaninglessRule | undefined;
}

export interface Evaluation {
  readonly truePositives: number;
  readonly falsePositives: number;
  readonly falseNegatives: number;
  readonly trueNegatives: number;
  /** Of the captions dropped, the share labelled `drop` (1 when nothing is dropped). */
  readonly precision: number;
  /** Of the captions labelled `drop`, the share dropped. */
  readonly recall: number;
  /** Labelled `keep`, dropped. */
  readonly wronglyDropped: Mistake[];
  /** Labelled `drop`, kept. */
  readonly wronglyKept: Mistake[];
  readonly byRule: Partial<Record<MeaninglessRule, number>>;
}

export function evaluate(rows: readonly LabelledCaption[]): Evaluation {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  const wronglyDropped: Mistake[] = [];
  const wronglyKept: Mistake[] = [];
  const byRule: Partial<Record<MeaninglessRule, number>> = {};
  for (const row of rows) {
    const reason = meaninglessReason(row.caption);
    if (reason !== undefined) byRule[reason] = (byRule[reason] ?? 0) + 1;
    const dropped = reason !== undefined;
    if (dropped && row.label === 'drop') tp++;
    else if (dropped) {
      fp++;
      wronglyDropped.push({ ...row, reason });
    } else if (row.label === 'drop') {
      fn++;
      wronglyKept.push({ ...row, reason });
    } else tn++;
  }
  return {
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    trueNegatives: tn,
    precision: tp + fp === 0 ? 1 : tp / (tp + fp),
    recall: tp + fn === 0 ? 1 : tp / (tp + fn),
    wronglyDropped,
    wronglyKept,
    byRule,
  };
}

/** Captions per second of meaninglessReason over the table, repeated for at least `seconds`. */
export function measureSpeed(captions: readonly string[], seconds = 1): number {
  let done = 0;
  let sink = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  while (process.hrtime.bigint() - start < budget) {
    for (const c of captions) if (meaninglessReason(c) !== undefined) sink++;
    done += captions.length;
  }
  const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  if (sink < 0) console.log(sink); // keeps the loop from being optimised away
  return done / elapsed;
}

function main(): void {
  const file = process.argv[2] ?? LABELLED_TABLE;
  const rows = readLabelled(file);
  const e = evaluate(rows);
  const keep = rows.filter((r) => r.label === 'keep').length;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  console.log(`table: ${file} (${rows.length} captions: ${rows.length - keep} drop, ${keep} keep)`);
  console.log(`precision (drop): ${e.precision.toFixed(4)} (${pct(e.precision)})`);
  console.log(`recall (drop):    ${e.recall.toFixed(4)} (${pct(e.recall)})`);
  console.log('confusion:          dropped  kept');
  console.log(`  labelled drop    ${String(e.truePositives).padStart(7)} ${String(e.falseNegatives).padStart(5)}`);
  console.log(`  labelled keep    ${String(e.falsePositives).padStart(7)} ${String(e.trueNegatives).padStart(5)}`);
  console.log(`dropped by rule: ${JSON.stringify(e.byRule)}`);
  console.log(`wrongly dropped (labelled keep): ${e.wronglyDropped.length}`);
  for (const m of e.wronglyDropped) console.log(`  line ${m.line}: ${JSON.stringify(m.caption)} -> ${m.reason}`);
  console.log(`wrongly kept (labelled drop): ${e.wronglyKept.length}`);
  for (const m of e.wronglyKept) console.log(`  line ${m.line}: ${JSON.stringify(m.caption)}`);
  const speed = measureSpeed(rows.map((r) => r.caption), 2);
  console.log(`speed: ${Math.round(speed).toLocaleString('en-US')} captions/s (one core, this table repeated for 2 s)`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main();
