// The dataset card of a training-shard folder: `dataset_card.json` for programs and `dataset_card.md`
// for people. It says what the shards hold (schema with each column's meaning), how many samples each
// has, where they came from (the filter rules applied and their funnel, read from the input folder),
// and how they were made (seed, shuffle, translation engine and pivots, augmentation policy and views,
// tool version). It holds no timestamps: the same inputs and options give a byte-identical card.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { ReasonCode } from '../core/reasons.js';
import type { FunnelJson } from '../filters/funnel.js';
import type { ColumnSpec } from '../shard/schema.js';
import { writeFileAtomic } from './output.js';

export const DATASET_CARD_JSON = 'dataset_card.json';
export const DATASET_CARD_MD = 'dataset_card.md';

/** One folder of the lineage: the tool that wrote it and its run identity (`_run.json`). */
export interface CardSource {
  readonly dir: string;
  readonly tool: string | null;
  readonly identity: Record<string, unknown> | null;
  /** The filter funnel (`funnel.json`) when the folder is a filter output. */
  readonly funnel: FunnelJson | null;
}

export interface CardRule {
  readonly rule: ReasonCode;
  /** The rule's setting in words, e.g. "shorter side < 200 px". */
  readonly setting: string;
  readonly rejected: number | null;
  readonly remaining: number | null;
}

export interface DatasetCard {
  readonly name: string;
  readonly tool: { readonly name: string; readonly version: string };
  readonly format: string;
  readonly samples_per_shard: number;
  readonly seed: number;
  readonly counts: {
    /** Rows read from the input folder. */
    readonly input: number;
    /** Samples in the shards. */
    readonly samples: number;
    readonly rejected: number;
    readonly rejected_by_reason: Partial<Record<ReasonCode, number>>;
    /** Back-translated captions stored, per pivot. */
    readonly back_translations: Record<string, number>;
    /** Failed back-translations (rows kept), per pivot and reason. */
    readonly translation_failures: Record<string, Partial<Record<ReasonCode, number>>>;
  };
  readonly shards: readonly { readonly file: string; readonly samples: number; readonly bytes: number }[];
  readonly shuffle: { readonly method: string; readonly buckets: number; readonly bucket_bytes: number };
  readonly translation: { readonly engine: string; readonly pivots: readonly string[] };
  readonly augmentation: { readonly policy: string; readonly views: number };
  /** Parquet: the columns. WebDataset: the members of each sample. */
  readonly schema: readonly { readonly name: string; readonly type: string; readonly nullable: boolean; readonly doc: string }[];
  readonly filter: { readonly preset: string | null; readonly rules: readonly CardRule[]; readonly funnel: FunnelJson | null } | null;
  /** Input folder first, then the folder it was made from, and so on. */
  readonly lineage: readonly CardSource[];
  /** Folders of the lineage that were read before their run finished (--partial-input): the set holds part of them. */
  readonly partial_inputs: readonly string[];
}

/** The tool's name and version, from the package.json beside src/. */
export async function toolVersion(): Promise<{ name: string; version: string }> {
  const file = new URL('../../package.json', import.meta.url);
  const pkg = JSON.parse(await fs.readFile(file, 'utf8')) as { name?: string; version?: string };
  return { name: pkg.name ?? 'filip-data', version: pkg.version ?? '0.0.0' };
}

/**
 * Reads the lineage of an output folder: its `_run.json` and `funnel.json`, then those of the folder
 * its identity names as `input`, up to `depth` folders. Missing files give nulls, not errors.
 */
export async function readLineage(dir: string, depth = 4): Promise<CardSource[]> {
  const out: CardSource[] = [];
  let current: string | undefined = dir;
  while (current !== undefined && out.length < depth) {
    const run: { tool?: string; identity?: Record<string, unknown> } | null = await readJson(path.join(current, '_run.json'));
    const funnel = await readJson<FunnelJson>(path.join(current, 'funnel.json'));
    out.push({ dir: current, tool: run?.tool ?? null, identity: run?.identity ?? null, funnel });
    const next: unknown = run?.identity?.input;
    current = typeof next === 'string' && next !== current ? next : undefined;
  }
  return out;
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** One rule's setting in words, from the filter options recorded in the filter run's identity. */
function ruleSetting(rule: string, f: Record<string, unknown>): string {
  switch (rule) {
    case 'image_too_small':
      return `shorter side of the original image < ${String(f.minSide)} px`;
    case 'aspect_ratio':
      return `longer / shorter side > ${String(f.maxAspect)}`;
    case 'meaningless_text':
      return 'file names, camera/CMS defaults, URLs, hashes, HTML remnants';
    case 'too_few_words':
      return `fewer than ${String(f.minWords)} words or ${String(f.minChars)} characters`;
    case 'not_english':
      return `language identifier: ${String(f.language)}`;
    case 'repeated_text':
      return `caption occurs more than ${String(f.maxRepeats)} times`;
    case 'contaminated':
      return `pHash distance <= ${String(f.contaminationDistance)}${confirmedBy(f)} to ${Array.isArray(f.decontaminate) ? f.decontaminate.length : 0} evaluation set(s)`;
    case 'near_duplicate':
      return `pHash distance <= ${String(f.nearDupDistance)}${confirmedBy(f)} to an image kept earlier`;
    default:
      return '';
  }
}

/** The filter section: the first filter run in the lineage, its rules in order and their funnel. */
export function filterSection(lineage: readonly CardSource[]): DatasetCard['filter'] {
  const run = lineage.find((s) => s.tool === 'filip-data filter' || s.funnel !== null);
  if (!run) return null;
  const f = (run.identity?.filter ?? {}) as Record<string, unknown>;
  const rules = Array.isArray(f.rules) ? (f.rules as ReasonCode[]) : (run.funnel?.rules.map((r) => r.rule) ?? []);
  const byRule = new Map(run.funnel?.rules.map((r) => [r.rule, r]) ?? []);
  return {
    preset: typeof f.preset === 'string' ? f.preset : null,
    rules: rules.map((rule) => ({
      rule,
      setting: ruleSetting(rule, f),
      rejected: byRule.get(rule)?.rejected ?? null,
      remaining: byRule.get(rule)?.remaining ?? null,
    })),
    funnel: run.funnel,
  };
}

/** Columns (Parquet) as card schema entries. */
export function columnsSchema(columns: readonly ColumnSpec[]): DatasetCard['schema'] {
  return columns.map((c) => ({ name: c.name, type: c.type, nullable: c.nullable, doc: c.doc }));
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The Markdown card. */
export function renderDatasetCard(card: DatasetCard): string {
  const c = card.counts;
  const lines: string[] = [
    `# ${card.name}`,
    '',
    `Made by ${card.tool.name} ${card.tool.version} (\`filip-data shard\`): ${c.samples} image-text samples in ` +
      `${card.shards.length} ${card.format} shard${card.shards.length === 1 ? '' : 's'} of ${card.samples_per_shard} ` +
      '(the last may be shorter), listed with their counts in `sizes.json`.',
    '',
    '## Counts',
    '',
    '| | rows |',
    '| --- | ---: |',
    `| read from the input folder | ${c.input} |`,
    `| in the shards | ${c.samples} |`,
    `| rejected (see \`rejects.jsonl\`) | ${c.rejected} |`,
    ...Object.entries(c.rejected_by_reason).map(([r, n]) => `| &nbsp;&nbsp;${r} | ${n} |`),
    ...Object.entries(c.back_translations).map(([p, n]) => `| back-translations via ${p} | ${n} |`),
    ...Object.entries(c.translation_failures).flatMap(([p, byReason]) =>
      Object.entries(byReason).map(([r, n]) => `| failed back-translations via ${p} (${r}; row kept) | ${n} |`),
    ),
    '',
    '## How it was made',
    '',
    `- Shuffle: ${card.shuffle.method}; seed ${card.seed}, ${card.shuffle.buckets} bucket(s) of about ` +
      `${(card.shuffle.bucket_bytes / 2 ** 20).toFixed(1)} MiB.`,
    `- Back-translation: ${card.translation.engine === 'none' ? 'none' : `${card.translation.engine}, English -> ${card.translation.pivots.join(', ')} -> English`}.`,
    `- AutoAugment: ${card.augmentation.views === 0 ? 'none' : `${card.augmentation.views} view(s) per sample, ${card.augmentation.policy} policy`}.`,
    ...(card.partial_inputs.length > 0
      ? [`- Partial input: made from what unfinished runs had committed (\`--partial-input\`) in ${card.partial_inputs.map((d) => `\`${d}\``).join(', ')}; the set lacks the rest of their input.`]
      : []),
    '',
    '## Filter',
    '',
  ];
  if (!card.filter) {
    lines.push('No filter run was found in the input folder\'s lineage (the input is not a `filip-data filter` output).', '');
  } else {
    const f = card.filter;
    lines.push(
      `Preset: ${f.preset ?? 'unknown'}.${f.funnel ? ` ${f.funnel.input} rows went in, ${f.funnel.kept} were kept.` : ''} Rules in the order they ran:`,
      '',
      '| rule | setting | rejected | remaining |',
      '| --- | --- | ---: | ---: |',
      ...f.rules.map((r) => `| ${r.rule} | ${cell(r.setting)} | ${r.rejected ?? ''} | ${r.remaining ?? ''} |`),
      '',
    );
  }
  lines.push(
    card.format === 'webdataset' ? '## Members of each sample' : '## Columns',
    '',
    '| name | type | nullable | meaning |',
    '| --- | --- | --- | --- |',
    ...card.schema.map((s) => `| \`${s.name}\` | ${s.type} | ${s.nullable ? 'yes' : 'no'} | ${cell(s.doc)} |`),
    '',
    '## Shards',
    '',
    '| file | samples | bytes |',
    '| --- | ---: | ---: |',
    ...card.shards.map((s) => `| ${s.file} | ${s.samples} | ${s.bytes} |`),
    '',
    '## Lineage',
    '',
    ...card.lineage.map((s) => `- \`${s.dir}\`: ${s.tool ?? 'unknown tool'}`),
    '',
  );
  return lines.join('\n');
}

/** Writes `dataset_card.json` and `dataset_card.md` into `dir` (each by temporary name and rename). */
export async function writeDatasetCard(dir: string, card: DatasetCard): Promise<{ json: string; md: string }> {
  const json = path.join(dir, DATASET_CARD_JSON);
  const md = path.join(dir, DATASET_CARD_MD);
  await writeFileAtomic(json, `${JSON.stringify(card, null, 2)}\n`);
  await writeFileAtomic(md, renderDatasetCard(card));
  return { json, md };
}

/** How the filter options confirmed a pHash match (runs before the option existed: the pHash alone). */
function confirmedBy(f: Record<string, unknown>): string {
  return f.nearDupCheck === 'aligned' ? ', confirmed by the check (chroma hash, then thumbnails with the crop undone)' : '';
}
