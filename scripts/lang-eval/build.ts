// Builds the labelled language-ID evaluation set from real multilingual text shipped by Debian,
// never from our own caption generator: translated package descriptions (apt's Translation-xx
// indexes), gettext catalogues of a few programs (English msgid beside each translated msgstr),
// fortune cookie files in several languages, and WordNet's English usage examples.
//
//   tsx scripts/lang-eval/build.ts [--refresh]
//
// Needs root (apt-get download, a private apt lists folder) and Debian's package servers. Writes
// .cache/lang-eval/{dev,test}.tsv as `lang<TAB>text` and a manifest.json with the counts per
// language, bucket and source. Sampling is seeded: the same Debian archive gives the same files.
//
// Label hygiene (the same rules for every language; no language identifier is used to clean):
// - a translated segment more than half of whose words also occur in its English original is
//   dropped (untranslated strings, names, mostly-English labels such as "Network Audio System -
//   lokal server");
// - a gettext msgid that most Latin-script translations copy unchanged is dropped on the English
//   side too: it is a name or a code ("Mike Parker", "RSA PKCS"), not English text;
// - a non-English segment equal to any English segment (after case and punctuation folding) is dropped;
// - segments with code, format strings, markup, URLs, quoted keyword lists, or mostly non-letters
//   are dropped; sentences are not split after initials and common abbreviations ("Mr.", "G.").
// Source items (a package description, a msgid, a fortune, a WordNet synset) go to `dev` (25%) or
// `test` (75%) by a hash of their key, so a translation and its original land in the same split.

import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  BUCKETS,
  CACHE_DIR,
  type BucketName,
  type Split,
  bucketOf,
  countWords,
  fnv1a,
  prng,
  shuffle,
  splitPath,
} from './common.js';

const SEED = 20240611;
const APT_DIR = join(CACHE_DIR, 'apt');
const LISTS_DIR = join(APT_DIR, 'lists');
const DEBS_DIR = join(CACHE_DIR, 'debs');
const PKG_DIR = join(CACHE_DIR, 'pkg');

/** English texts wanted per split and bucket; the non-English side of each bucket gets as many. */
const PER_BUCKET: Record<Split, number> = { test: 2000, dev: 600 };

/** Non-English languages and their share of the non-English side. Close Latin-script languages weigh most. */
const LANG_WEIGHTS: Record<string, number> = {
  de: 3, fr: 3, es: 3, it: 3, pt: 2, nl: 2, sv: 1.5, da: 1.5, nb: 1, pl: 1, ro: 1, cs: 1, fi: 1,
  ru: 0.5, ja: 0.25, zh: 0.25,
};

/** Debian Translation-xx indexes to fetch (apt's language codes). */
const TRANSLATION_LANGS = ['de', 'fr', 'es', 'it', 'pt', 'nl', 'sv', 'da', 'pl', 'ro', 'ru', 'fi', 'cs', 'nb', 'ja', 'zh_CN'];

/** Programs whose gettext catalogues give UI strings: image viewers and organisers, and GNU tools. */
const GETTEXT_PACKAGES = ['eog', 'gthumb-data', 'shotwell-common', 'coreutils', 'tar', 'grep', 'wget'];

/** Fortune packages and the language of the files they ship (offensive sub-folders are skipped). */
const FORTUNE_PACKAGES: Record<string, string> = {
  fortunes: 'en', 'fortunes-min': 'en', 'fortunes-de': 'de', 'fortunes-es': 'es', 'fortunes-it': 'it',
  'fortunes-ru': 'ru', 'fortunes-pl': 'pl', 'fortunes-br': 'pt',
};
/** English fortune files that are not English prose (Latin mottoes, drawings). */
const FORTUNE_SKIP = new Set(['translate-me', 'ascii-art', 'art']);

const WORDNET_PACKAGE = 'wordnet-base';

type Source = 'debian-desc' | 'gettext' | 'fortunes' | 'wordnet';
interface Candidate {
  lang: string;
  text: string;
  source: Source;
  key: string;
}

// ---------------------------------------------------------------------------------------------
// Fetching

function aptOptions(): string[] {
  return [
    '-q',
    '-o', `Dir::State::Lists=${LISTS_DIR}`,
    '-o', `Dir::Cache=${join(APT_DIR, 'cache')}`,
    '-o', 'APT::Sandbox::User=root',
  ];
}

function fetchIndexes(refresh: boolean): void {
  const have = existsSync(LISTS_DIR) && readdirSync(LISTS_DIR).some((f) => f.includes('_i18n_Translation-de'));
  if (have && !refresh) return;
  mkdirSync(join(LISTS_DIR, 'partial'), { recursive: true });
  mkdirSync(join(APT_DIR, 'cache', 'archives', 'partial'), { recursive: true });
  const languages = ['en', ...TRANSLATION_LANGS].join(',');
  console.log(`apt-get update (private lists in ${LISTS_DIR}, languages ${languages})`);
  execFileSync('apt-get', [...aptOptions(), '-o', `Acquire::Languages=${languages}`, 'update'], { stdio: 'inherit' });
}

function fetchPackages(names: string[], refresh: boolean): Map<string, string> {
  mkdirSync(DEBS_DIR, { recursive: true });
  const debFor = (name: string) => readdirSync(DEBS_DIR).find((f) => f.startsWith(`${name}_`) && f.endsWith('.deb'));
  const missing = names.filter((n) => refresh || debFor(n) === undefined);
  if (missing.length > 0) {
    console.log(`apt-get download ${missing.join(' ')}`);
    execFileSync('apt-get', [...aptOptions(), 'download', ...missing], { cwd: DEBS_DIR, stdio: 'inherit' });
  }
  const roots = new Map<string, string>();
  for (const name of names) {
    const deb = debFor(name);
    if (deb === undefined) throw new Error(`apt-get download did not leave a .deb for ${name}`);
    const root = join(PKG_DIR, name);
    const stamp = join(root, '.from');
    if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== deb) {
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root, { recursive: true });
      execFileSync('dpkg-deb', ['-x', join(DEBS_DIR, deb), root]);
      writeFileSync(stamp, deb);
    }
    roots.set(name, root);
  }
  return roots;
}

function walk(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) walk(path, out);
    else if (st.isFile()) out.push(path);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Segmenting and cleaning

const SENTENCE_END = /(?<=[.!?…])\s+(?=[\p{Lu}\p{Lo}"'«„¿¡(])|(?<=[。！？])/u;
/** A piece ending like this is not the end of a sentence: an initial or an abbreviation. */
const ABBREVIATION = /(?:^|[\s(])(?:\p{Lu}|Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Gen|Col|Capt|Rev|vs|etc|No|Vol|Inc|Ltd|Co|Nr|Hr|Fr|Sra?|Sig|ca|bzw|z\.B|u\.a|e\.g|i\.e)\.$/u;
const CODE_LIKE = /[%{}<>\\|=_`$@#~^[\]]|--|::|:\/\/|www\.|\.(?:com|org|net|html?)\b|\uFFFD|[\u0000-\u001f]/;
const QUOTES = /["«»„“”‘’]/g;
const LETTER = /\p{L}/gu;

function sentences(paragraph: string): string[] {
  const out: string[] = [];
  for (const piece of paragraph.split(SENTENCE_END)) {
    if (out.length > 0 && ABBREVIATION.test(out[out.length - 1]!)) out[out.length - 1] += ` ${piece}`;
    else out.push(piece);
  }
  return out;
}

/** Returns the segment ready to label, or undefined if it is not plain prose of 2-15 words. */
function cleanSegment(raw: string): string | undefined {
  let text = raw.replace(/\s+/g, ' ').trim();
  text = text.replace(/^(?:[-*+o•]|\d+[.)])\s+/, '');
  if (CODE_LIKE.test(text)) return undefined;
  if ((text.match(QUOTES)?.length ?? 0) >= 4) return undefined; // quoted keyword lists
  const words = countWords(text);
  if (words < 2 || words > 15) return undefined;
  const letters = text.match(LETTER)?.length ?? 0;
  const visible = text.replace(/\s/g, '').length;
  if (letters < 0.7 * visible) return undefined;
  return text;
}

function wordSet(text: string): Set<string> {
  return new Set((text.toLowerCase().match(/\p{L}+/gu) ?? []) as string[]);
}

function normalized(text: string): string {
  return (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).join(' ');
}

/** True when more than half of the words of `segment` also appear in its English original. */
function untranslated(segment: string, english: Set<string>): boolean {
  const words = wordSet(segment);
  let shared = 0;
  for (const w of words) if (english.has(w)) shared++;
  return shared * 2 > words.size;
}

// ---------------------------------------------------------------------------------------------
// Sources

function translationFile(lang: string): string[] {
  const code = lang.replace('_', '%5f');
  return readdirSync(LISTS_DIR)
    .filter((f) => f.endsWith(`_i18n_Translation-${code}.lz4`) || f.endsWith(`_i18n_Translation-${code}`))
    .sort()
    .map((f) => join(LISTS_DIR, f));
}

function readIndex(path: string): string {
  return execFileSync('/usr/lib/apt/apt-helper', ['cat-file', path], { maxBuffer: 1 << 30 }).toString('utf8');
}

/** Description-md5 -> description text (short line + long body), for one language. */
function readDescriptions(lang: string): Map<string, string> {
  const out = new Map<string, string>();
  const field = `Description-${lang}: `;
  for (const path of translationFile(lang)) {
    for (const stanza of readIndex(path).split('\n\n')) {
      const md5 = /^Description-md5: (\w+)$/m.exec(stanza)?.[1];
      const start = stanza.indexOf(field);
      if (md5 === undefined || start < 0 || out.has(md5)) continue;
      out.set(md5, stanza.slice(start + field.length));
    }
  }
  return out;
}

/** A package description as paragraphs: the short description, then each paragraph or bullet. */
function descriptionParagraphs(description: string): string[] {
  const lines = description.split('\n');
  const paragraphs: string[] = [lines[0]!];
  let current: string[] = [];
  const flush = () => {
    if (current.length > 0) paragraphs.push(current.join(' '));
    current = [];
  };
  for (const line of lines.slice(1)) {
    if (line === ' .' || line.trim() === '') {
      flush();
    } else if (line.startsWith('  ')) {
      flush(); // verbatim block (code, tables): not prose
    } else if (/^ [-*+o] /.test(line)) {
      flush();
      current.push(line.slice(3));
    } else {
      current.push(line.slice(1));
    }
  }
  flush();
  return paragraphs;
}

function debianDescriptions(out: Candidate[]): void {
  const english = readDescriptions('en');
  const addAll = (lang: string, key: string, text: string, original: Set<string> | undefined) => {
    for (const paragraph of descriptionParagraphs(text)) {
      for (const s of sentences(paragraph)) {
        const seg = cleanSegment(s);
        if (seg === undefined) continue;
        if (original !== undefined && untranslated(seg, original)) continue;
        out.push({ lang, text: seg, source: 'debian-desc', key });
      }
    }
  };
  for (const [md5, text] of english) addAll('en', `desc:${md5}`, text, undefined);
  for (const apt of TRANSLATION_LANGS) {
    const lang = apt === 'zh_CN' ? 'zh' : apt;
    for (const [md5, text] of readDescriptions(apt)) {
      const original = english.get(md5);
      if (original === undefined) continue;
      addAll(lang, `desc:${md5}`, text, wordSet(original));
    }
  }
}

/** Parses a GNU .mo catalogue into [msgid, msgstr] pairs (singular forms, context stripped). */
function readMo(buf: Buffer): [string, string][] {
  const magic = buf.readUInt32LE(0);
  const le = magic === 0x950412de;
  if (!le && magic !== 0xde120495) throw new Error('not a .mo file');
  const u32 = (off: number) => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off));
  const n = u32(8);
  const origins = u32(12);
  const translations = u32(16);
  const str = (table: number, i: number) => {
    const len = u32(table + i * 8);
    const off = u32(table + i * 8 + 4);
    return buf.toString('utf8', off, off + len);
  };
  const pairs: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    let id = str(origins, i);
    if (id === '') continue; // header
    const ctx = id.indexOf('\u0004');
    if (ctx >= 0) id = id.slice(ctx + 1);
    pairs.push([id.split('\u0000')[0]!, str(translations, i).split('\u0000')[0]!]);
  }
  return pairs;
}

const LATIN_SCRIPT = new Set(['de', 'fr', 'es', 'it', 'pt', 'nl', 'sv', 'da', 'nb', 'pl', 'ro', 'cs', 'fi']);

function gettextLang(locale: string): string | undefined {
  if (locale.includes('@')) return undefined;
  const base = locale.split('_')[0]!;
  if (base === 'en') return undefined;
  if (locale === 'zh_CN') return 'zh';
  if (base === 'zh') return undefined;
  return base in LANG_WEIGHTS ? base : undefined;
}

function uiSegments(text: string): string[] {
  const plain = text.replace(/<[^>]*>/g, ' ').replace(/_(?=\p{L})/gu, '');
  const out: string[] = [];
  for (const line of plain.split('\n')) {
    if (/^\s+-/.test(line)) continue; // option tables in --help texts
    for (const s of sentences(line)) {
      const seg = cleanSegment(s);
      if (seg !== undefined) out.push(seg);
    }
  }
  return out;
}

function gettextCatalogues(roots: Map<string, string>, out: Candidate[]): void {
  for (const pkg of GETTEXT_PACKAGES) {
    // msgid -> [Latin-script translations, of which copied unchanged]
    const copies = new Map<string, [number, number]>();
    const english = new Map<string, string>();
    const translated: Candidate[] = [];
    for (const path of walk(join(roots.get(pkg)!, 'usr/share/locale'))) {
      if (!path.endsWith('.mo')) continue;
      const locale = basename(join(path, '../..'));
      const domain = basename(path, '.mo');
      const lang = gettextLang(locale);
      for (const [id, str] of readMo(readFileSync(path))) {
        const key = `mo:${domain}:${id}`;
        english.set(key, id);
        if (lang === undefined || str === '') continue;
        if (LATIN_SCRIPT.has(lang)) {
          const c = copies.get(key) ?? [0, 0];
          c[0]++;
          if (normalized(str) === normalized(id)) c[1]++;
          copies.set(key, c);
        }
        if (str === id) continue;
        const original = wordSet(id);
        for (const seg of uiSegments(str)) {
          if (!untranslated(seg, original)) translated.push({ lang, text: seg, source: 'gettext', key });
        }
      }
    }
    for (const [key, id] of english) {
      const [n, copied] = copies.get(key) ?? [0, 0];
      if (n > 0 && copied * 5 >= n * 4) continue; // a name or a code, kept as is by >= 80% of translators
      for (const seg of uiSegments(id)) out.push({ lang: 'en', text: seg, source: 'gettext', key });
    }
    out.push(...translated);
  }
}

function fortunes(roots: Map<string, string>, out: Candidate[]): void {
  for (const [pkg, lang] of Object.entries(FORTUNE_PACKAGES)) {
    for (const path of walk(join(roots.get(pkg)!, 'usr/share/games'))) {
      const name = basename(path);
      if (name.endsWith('.dat') || name.endsWith('.u8') || path.includes('/off/') || FORTUNE_SKIP.has(name)) continue;
      const entries = readFileSync(path, 'utf8').replace(/\r/g, '').split(/^%$/m);
      entries.forEach((entry, i) => {
        const lines: string[] = [];
        for (const line of entry.split('\n')) {
          if (/^\s*(?:--|―|—)\s*\S/.test(line)) break; // attribution
          lines.push(line);
        }
        for (const s of sentences(lines.join(' '))) {
          const seg = cleanSegment(s.replace(/^"|"$/g, ''));
          if (seg !== undefined) out.push({ lang, text: seg, source: 'fortunes', key: `fortune:${pkg}:${name}:${i}` });
        }
      });
    }
  }
}

function wordnetExamples(root: string, out: Candidate[]): void {
  for (const pos of ['noun', 'verb', 'adj', 'adv']) {
    const path = join(root, 'usr/share/wordnet', `data.${pos}`);
    for (const line of readFileSync(path, 'utf8').split('\n')) {
      if (line.startsWith(' ') || line.length === 0) continue; // licence header
      const bar = line.indexOf(' | ');
      if (bar < 0) continue;
      const key = `wn:${pos}:${line.slice(0, 8)}`;
      for (const m of line.slice(bar + 3).matchAll(/"([^"]+)"/g)) {
        const seg = cleanSegment(m[1]!);
        if (seg !== undefined) out.push({ lang: 'en', text: seg, source: 'wordnet', key });
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sampling

type Pool = Map<string, Map<BucketName, Map<Source, Candidate[]>>>; // lang -> bucket -> source -> items

function pools(candidates: Candidate[]): Record<Split, Pool> {
  // Dedupe per language on folded text; the first occurrence in key order wins, so the split is stable.
  candidates.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
  const englishForms = new Set(candidates.filter((c) => c.lang === 'en').map((c) => normalized(c.text)));
  const seen = new Set<string>();
  const result: Record<Split, Pool> = { dev: new Map(), test: new Map() };
  for (const c of candidates) {
    const form = normalized(c.text);
    if (c.lang !== 'en' && englishForms.has(form)) continue;
    const id = `${c.lang}\t${form}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const bucket = bucketOf(countWords(c.text));
    if (bucket === undefined) continue;
    const split: Split = fnv1a(c.key) % 4 === 0 ? 'dev' : 'test';
    const byLang = result[split];
    if (!byLang.has(c.lang)) byLang.set(c.lang, new Map());
    const byBucket = byLang.get(c.lang)!;
    if (!byBucket.has(bucket)) byBucket.set(bucket, new Map());
    const bySource = byBucket.get(bucket)!;
    if (!bySource.has(c.source)) bySource.set(c.source, []);
    bySource.get(c.source)!.push(c);
  }
  return result;
}

/** Takes up to n items, round-robin over sources so that no one source dominates where others exist. */
function takeBalanced(bySource: Map<Source, Candidate[]> | undefined, n: number, random: () => number): Candidate[] {
  if (bySource === undefined) return [];
  const queues = [...bySource.keys()].sort().map((s) => shuffle([...bySource.get(s)!], random));
  const out: Candidate[] = [];
  while (out.length < n && queues.some((q) => q.length > 0)) {
    for (const q of queues) {
      const c = q.pop();
      if (c !== undefined && out.length < n) out.push(c);
    }
  }
  return out;
}

function available(pool: Pool, lang: string, bucket: BucketName): number {
  let n = 0;
  for (const items of pool.get(lang)?.get(bucket)?.values() ?? []) n += items.length;
  return n;
}

/** Splits `total` over the languages by weight, giving what a short language cannot fill to the others. */
function quotas(pool: Pool, bucket: BucketName, total: number): Map<string, number> {
  const quota = new Map<string, number>();
  let open = Object.keys(LANG_WEIGHTS).filter((l) => available(pool, l, bucket) > 0);
  let left = total;
  while (left > 0 && open.length > 0) {
    const weight = open.reduce((s, l) => s + LANG_WEIGHTS[l]!, 0);
    const next: string[] = [];
    let given = 0;
    for (const l of open) {
      const want = Math.max(1, Math.round((left * LANG_WEIGHTS[l]!) / weight));
      const room = available(pool, l, bucket) - (quota.get(l) ?? 0);
      const give = Math.min(want, room, left - given);
      if (give <= 0) continue;
      quota.set(l, (quota.get(l) ?? 0) + give);
      given += give;
      if (room > give) next.push(l);
    }
    left -= given;
    if (given === 0) break;
    open = next;
  }
  return quota;
}

interface Counts {
  [split: string]: { [lang: string]: { [bucket: string]: { [source: string]: number } } };
}

function sample(split: Split, pool: Pool, counts: Counts): Candidate[] {
  const random = prng(SEED + (split === 'dev' ? 1 : 2));
  const rows: Candidate[] = [];
  for (const { name: bucket } of BUCKETS) {
    const english = takeBalanced(pool.get('en')?.get(bucket), PER_BUCKET[split], random);
    rows.push(...english);
    for (const [lang, n] of quotas(pool, bucket, english.length)) {
      rows.push(...takeBalanced(pool.get(lang)?.get(bucket), n, random));
    }
  }
  for (const c of rows) {
    const bucket = bucketOf(countWords(c.text))!;
    const byLang = (counts[split] ??= {});
    const byBucket = (byLang[c.lang] ??= {});
    const bySource = (byBucket[bucket] ??= {});
    bySource[c.source] = (bySource[c.source] ?? 0) + 1;
  }
  return shuffle(rows, random);
}

function packageVersions(names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const deb = readdirSync(DEBS_DIR).find((f) => f.startsWith(`${name}_`) && f.endsWith('.deb'))!;
    out[name] = execFileSync('dpkg-deb', ['-f', join(DEBS_DIR, deb), 'Version']).toString().trim();
  }
  return out;
}

function main(): void {
  const refresh = process.argv.includes('--refresh');
  mkdirSync(CACHE_DIR, { recursive: true });
  fetchIndexes(refresh);
  const packages = [...GETTEXT_PACKAGES, ...Object.keys(FORTUNE_PACKAGES), WORDNET_PACKAGE];
  const roots = fetchPackages(packages, refresh);

  const candidates: Candidate[] = [];
  debianDescriptions(candidates);
  gettextCatalogues(roots, candidates);
  fortunes(roots, candidates);
  wordnetExamples(roots.get(WORDNET_PACKAGE)!, candidates);
  console.log(`${candidates.length} candidate segments`);

  const split = pools(candidates);
  const counts: Counts = {};
  for (const s of ['test', 'dev'] as const) {
    const rows = sample(s, split[s], counts);
    writeFileSync(splitPath(s), rows.map((r) => `${r.lang}\t${r.text}\n`).join(''));
    console.log(`wrote ${rows.length} rows to ${splitPath(s)}`);
  }
  writeFileSync(
    join(CACHE_DIR, 'manifest.json'),
    `${JSON.stringify({ seed: SEED, packages: packageVersions(packages), translations: TRANSLATION_LANGS, counts }, null, 2)}\n`,
  );

  // Per-language totals by bucket, for the report.
  for (const s of ['test', 'dev'] as const) {
    console.log(`\n${s}: rows per language and bucket`);
    console.log(['lang', ...BUCKETS.map((b) => b.name), 'sources'].map((c) => c.padEnd(8)).join(''));
    for (const lang of Object.keys(counts[s] ?? {}).sort((a, b) => (a === 'en' ? -1 : b === 'en' ? 1 : a.localeCompare(b)))) {
      const byBucket = counts[s]![lang]!;
      const sources = new Set<string>();
      const cells = BUCKETS.map((b) => {
        const bySource = byBucket[b.name] ?? {};
        for (const k of Object.keys(bySource)) sources.add(k);
        return String(Object.values(bySource).reduce((x, y) => x + y, 0));
      });
      console.log([lang, ...cells].map((c) => c.padEnd(8)).join('') + [...sources].sort().join(','));
    }
  }
}

main();
