// The filter funnel: how many rows remain after each rule in order, how many each rule failed (first
// or at all), and a seeded sample of rejected rows per rule for the HTML report, so a person can
// judge at a glance whether a rule is too strict.

import { appendFileSync, promises as fs } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { ReasonCode } from '../core/reasons.js';
import type { Sample } from '../core/sample.js';
import { mulberry32 } from '../core/random.js';

export interface FunnelExample {
  readonly key: string;
  readonly caption: string;
  readonly message: string;
  readonly failed: readonly ReasonCode[];
  readonly image?: Buffer;
}

export interface FunnelRow {
  readonly rule: ReasonCode;
  /** Rows rejected with this rule as their first failed rule. */
  readonly rejected: number;
  /** Rows that failed this rule at all (also when an earlier rule failed). */
  readonly failedAny: number;
  /** Rows left after this rule and every rule before it. */
  readonly remaining: number;
}

export interface FunnelJson {
  readonly input: number;
  readonly kept: number;
  readonly rules: readonly FunnelRow[];
}

export class Funnel {
  input = 0;
  kept = 0;
  readonly #rules: readonly ReasonCode[];
  readonly #first = new Map<ReasonCode, number>();
  readonly #any = new Map<ReasonCode, number>();
  readonly #examples = new Map<ReasonCode, FunnelExample[]>();
  readonly #seen = new Map<ReasonCode, number>();
  readonly #perRule: number;
  readonly #imageLog: string | undefined;
  #rand: () => number;

  /**
   * `imageLog`: a file that keeps the image of every example as it enters the sample, so that a
   * resumed run, which replays earlier rejects from the reject log without their images (see
   * restoreImages), still shows them. Reservoir sampling admits about k (1 + ln(n / k)) examples
   * per rule over n rejects, so the file stays small (some 300 images per rule for a million rows).
   */
  constructor(rules: readonly ReasonCode[], { examplesPerRule = 24, seed = 1, imageLog = undefined as string | undefined } = {}) {
    this.#rules = rules;
    this.#perRule = examplesPerRule;
    this.#imageLog = imageLog;
    this.#rand = mulberry32(seed);
  }

  /** Counts one filtered sample; `failed` is its failed rules in order (empty when kept). */
  add(sample: Sample, failed: readonly ReasonCode[]): void {
    this.input++;
    if (failed.length === 0) {
      this.kept++;
      return;
    }
    const first = failed[0]!;
    this.#first.set(first, (this.#first.get(first) ?? 0) + 1);
    for (const r of failed) this.#any.set(r, (this.#any.get(r) ?? 0) + 1);
    // Reservoir sampling (seeded): every rejected row of a rule has the same chance to be shown.
    const n = (this.#seen.get(first) ?? 0) + 1;
    this.#seen.set(first, n);
    const list = this.#examples.get(first) ?? [];
    this.#examples.set(first, list);
    const example: FunnelExample = {
      key: sample.key,
      caption: sample.caption,
      message: sample.errorMessage ?? '',
      failed: [...failed],
      image: sample.image?.bytes,
    };
    let admitted = true;
    if (list.length < this.#perRule) list.push(example);
    else {
      const j = Math.floor(this.#rand() * n);
      if (j < this.#perRule) list[j] = example;
      else admitted = false;
    }
    // Synchronously, before the row's commit can happen: a kill then never loses an admitted image.
    if (admitted && example.image && this.#imageLog) appendFileSync(this.#imageLog, encodeImageRecord(example.key, example.image));
  }

  /**
   * Gives examples without an image (replayed from the reject log on resume) the image the image
   * log kept for their key. Returns how many were restored. A missing log restores none; a record
   * cut short by a kill is ignored.
   */
  async restoreImages(): Promise<number> {
    if (!this.#imageLog) return 0;
    const log = await fs.readFile(this.#imageLog).catch(() => undefined);
    if (!log) return 0;
    const images = decodeImageRecords(log);
    let restored = 0;
    for (const list of this.#examples.values()) {
      list.forEach((e, i) => {
        const image = e.image ? undefined : images.get(e.key);
        if (image) {
          list[i] = { ...e, image };
          restored++;
        }
      });
    }
    return restored;
  }

  rows(): FunnelRow[] {
    let remaining = this.input;
    return this.#rules.map((rule) => {
      const rejected = this.#first.get(rule) ?? 0;
      remaining -= rejected;
      return { rule, rejected, failedAny: this.#any.get(rule) ?? 0, remaining };
    });
  }

  examples(rule: ReasonCode): readonly FunnelExample[] {
    return this.#examples.get(rule) ?? [];
  }

  toJSON(): FunnelJson {
    return { input: this.input, kept: this.kept, rules: this.rows() };
  }
}


/** One image log record: key length (u16), key (utf8), image length (u32), image bytes. */
function encodeImageRecord(key: string, image: Buffer): Buffer {
  const k = Buffer.from(key, 'utf8');
  const head = Buffer.alloc(6 + k.length);
  head.writeUInt16LE(k.length, 0);
  k.copy(head, 2);
  head.writeUInt32LE(image.length, 2 + k.length);
  return Buffer.concat([head, image]);
}

/** Key -> image of every complete record (a later record for a key wins). */
function decodeImageRecords(log: Buffer): Map<string, Buffer> {
  const images = new Map<string, Buffer>();
  let at = 0;
  while (at + 2 <= log.length) {
    const keyLength = log.readUInt16LE(at);
    if (at + 6 + keyLength > log.length) break;
    const key = log.toString('utf8', at + 2, at + 2 + keyLength);
    const imageLength = log.readUInt32LE(at + 2 + keyLength);
    const start = at + 6 + keyLength;
    if (start + imageLength > log.length) break;
    images.set(key, log.subarray(start, start + imageLength));
    at = start + imageLength;
  }
  return images;
}

/** The terminal table: one line per rule, in order. */
export function formatFunnel(f: FunnelJson): string {
  const rows = f.rules;
  const w = Math.max(5, ...rows.map((r) => r.rule.length));
  const pct = (n: number) => (f.input > 0 ? ((100 * n) / f.input).toFixed(1) : '0.0').padStart(5);
  const lines = [
    `${'rule'.padEnd(w)}  ${'rejected'.padStart(8)}  ${'failed'.padStart(8)}  ${'remaining'.padStart(9)}`,
    `${'input'.padEnd(w)}  ${''.padStart(8)}  ${''.padStart(8)}  ${String(f.input).padStart(9)}  100.0%`,
  ];
  for (const r of rows) {
    lines.push(
      `${r.rule.padEnd(w)}  ${String(r.rejected).padStart(8)}  ${String(r.failedAny).padStart(8)}  ${String(r.remaining).padStart(9)}  ${pct(r.remaining)}%`,
    );
  }
  return lines.join('\n');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function thumbnail(bytes: Buffer | undefined): Promise<string> {
  if (!bytes) return '';
  try {
    const t = await sharp(bytes).resize(160, 160, { fit: 'inside' }).jpeg({ quality: 70 }).toBuffer();
    return `data:image/jpeg;base64,${t.toString('base64')}`;
  } catch {
    return '';
  }
}

/** Writes `funnel.json` and a self-contained `report.html` (thumbnails inlined) into `dir`. */
export async function writeFunnelReport(dir: string, f: Funnel, title: string): Promise<{ json: string; html: string }> {
  const json = path.join(dir, 'funnel.json');
  const html = path.join(dir, 'report.html');
  await fs.writeFile(json, `${JSON.stringify(f.toJSON(), null, 2)}\n`);
  const rows = f.rows();
  const bar = (n: number) => (f.input > 0 ? (100 * n) / f.input : 0).toFixed(1);
  const table = rows
    .map(
      (r) =>
        `<tr><td><a href="#${r.rule}">${r.rule}</a></td><td>${r.rejected}</td><td>${r.failedAny}</td><td>${r.remaining}</td>` +
        `<td class="bar"><span style="width:${bar(r.remaining)}%"></span> ${bar(r.remaining)}%</td></tr>`,
    )
    .join('\n');
  const sections: string[] = [];
  for (const r of rows) {
    const examples = f.examples(r.rule);
    const figures = await Promise.all(
      examples.map(async (e) => {
        const src = await thumbnail(e.image);
        const img = src ? `<img src="${src}" alt="">` : '<div class="noimg">no image</div>';
        const also = e.failed.length > 1 ? `<div class="also">also: ${e.failed.slice(1).join(', ')}</div>` : '';
        return `<figure>${img}<figcaption><b>${escapeHtml(e.caption) || '<i>(empty)</i>'}</b><div class="msg">${escapeHtml(e.message)}</div>${also}<div class="key">${e.key}</div></figcaption></figure>`;
      }),
    );
    sections.push(
      `<section id="${r.rule}"><h2>${r.rule} <small>${r.rejected} rejected first here, ${r.failedAny} failed it` +
        `${examples.length < r.rejected ? `; ${examples.length} shown at random` : ''}</small></h2>` +
        `<div class="grid">${figures.join('\n') || '<p>none</p>'}</div></section>`,
    );
  }
  const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}
.bar{width:240px;text-align:left}.bar span{display:inline-block;height:10px;background:#4a7}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}
figure{margin:0;border:1px solid #ddd;padding:6px;background:#fafafa}
figure img{max-width:160px;max-height:160px;display:block;margin:auto}
figcaption{font-size:12px;word-break:break-word}.msg,.also,.key{color:#666;font-size:11px}
.noimg{height:60px;color:#999;text-align:center}
</style></head><body>
<h1>${escapeHtml(title)}</h1>
<p>${f.input} rows in, ${f.kept} kept (${bar(f.kept)}%).</p>
<table><tr><th>rule</th><th>rejected</th><th>failed</th><th>remaining</th><th></th></tr>
<tr><td>input</td><td></td><td></td><td>${f.input}</td><td class="bar"><span style="width:100%"></span> 100%</td></tr>
${table}
</table>
${sections.join('\n')}
</body></html>
`;
  await fs.writeFile(html, page);
  return { json, html };
}
