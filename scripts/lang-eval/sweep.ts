// Tuning aid: precision and recall of the filip engine on a split for a range of margins, so the
// margin is chosen on `dev` and only reported on `test`.
//
//   tsx scripts/lang-eval/sweep.ts [dev|test]

import { englishScore } from '../../src/filters/language.js';
import { BUCKETS, type Split, bucketOf, countWords, readLabelled, splitPath } from './common.js';

const split = (process.argv[2] ?? 'dev') as Split;
const rows = readLabelled(splitPath(split)).map((r) => ({
  en: r.lang === 'en',
  bucket: bucketOf(countWords(r.text)),
  score: englishScore(r.text),
}));
const margins = (process.env.MARGINS ?? "-4,-3,-2.5,-2,-1.5,-1,-0.5,0,0.5,1,2").split(",").map(Number);
console.log(['margin', ...BUCKETS.map((b) => `${b.name} P/R`), 'all P/R'].map((c) => c.padEnd(14)).join(''));
for (const m of margins) {
  const cells = [String(m)];
  for (const b of [...BUCKETS.map((x) => x.name), undefined]) {
    let tp = 0, fp = 0, fn = 0;
    for (const r of rows) {
      if (b !== undefined && r.bucket !== b) continue;
      const said = r.score > m;
      if (said && r.en) tp++;
      else if (said) fp++;
      else if (r.en) fn++;
    }
    cells.push(`${(tp / (tp + fp)).toFixed(3)}/${(tp / (tp + fn)).toFixed(3)}`);
  }
  console.log(cells.map((c) => c.padEnd(14)).join(''));
}
