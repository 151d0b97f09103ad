// Shows why the filip engine calls a text English or not: the text's English score, its five
// likeliest languages, and each word's log-likelihood under English and under the text's likeliest
// other language.
//
//   tsx scripts/lang-eval/explain.ts "a dog running on the beach" "Datei öffnen"

import { englishScore, languageScores } from '../../src/filters/language.js';

for (const text of process.argv.slice(2)) {
  const ranked = languageScores(text);
  console.log(`${JSON.stringify(text)}: englishScore ${englishScore(text).toFixed(2)}`);
  if (ranked.length === 0) continue;
  console.log(`  likeliest: ${ranked.slice(0, 5).map((r) => `${r.lang} ${r.logLikelihood.toFixed(1)}`).join(', ')}`);
  const rival = ranked.find((r) => r.lang !== 'en')!.lang;
  for (const word of text.split(/\s+/)) {
    const scores = languageScores(word);
    if (scores.length === 0) continue;
    const of = (lang: string) => scores.find((r) => r.lang === lang)!.logLikelihood.toFixed(1);
    console.log(`  ${word.padEnd(24)} en ${of('en').padStart(6)}  ${rival} ${of(rival).padStart(6)}  best ${scores[0]!.lang}`);
  }
}
