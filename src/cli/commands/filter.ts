// `filip-data filter` and the filter flags that `ingest --filter` shares.
import type { Argv } from 'yargs';
import { FILTER_PRESETS, FILTER_RULES, NEAR_DUP_CHECKS, type FilterInput, type FilterPreset, type FilterRule, type NearDupCheckKind } from '../../filters/filter.js';
import { DEFAULT_NEAR_DUP_DISTANCE, PHASH_ONLY_DISTANCE } from '../../filters/phash-index.js';
import { LANGUAGE_ENGINES, type LanguageEngine } from '../../filters/language.js';
import { formatFilterSummary, runFilter } from '../../pipeline/filter-run.js';
import { PROGRESS_MODES, type ProgressMode } from '../../pipeline/progress.js';
import { WRITER_ENGINES, type WriterEngine } from '../../shard/writer.js';

/** The flags filterFlags adds: ingest and merge accept them only with --filter. */
export const FILTER_FLAGS = ['preset', 'disable', 'enable', 'min-side', 'max-aspect', 'max-repeats', 'language', 'near-dup-check', 'near-dup-distance', 'decontaminate'] as const;

export function filterFlags<T>(y: Argv<T>) {
  return y
    .option('preset', { type: 'string', choices: Object.keys(FILTER_PRESETS), default: 'filip', describe: 'rule set' })
    .option('disable', { type: 'string', array: true, choices: [...FILTER_RULES], default: [] as string[], describe: 'rules to switch off' })
    .option('enable', { type: 'string', array: true, choices: [...FILTER_RULES], default: [] as string[], describe: 'rules to switch on beyond the preset' })
    .option('min-side', { type: 'number', default: 200, describe: 'image_too_small: minimum shorter side (original pixels)' })
    .option('max-aspect', { type: 'number', default: 3, describe: 'aspect_ratio: maximum longer/shorter side' })
    .option('max-repeats', { type: 'number', default: 10, describe: 'repeated_text: a caption may occur at most this many times' })
    .option('language', { type: 'string', choices: Object.keys(LANGUAGE_ENGINES), default: 'filip', describe: 'not_english: identifier' })
    .option('near-dup-check', {
      type: 'string',
      choices: Object.keys(NEAR_DUP_CHECKS),
      describe: 'near_duplicate and contaminated: how a perceptual-hash candidate is confirmed (default aligned: chroma hash, then thumbnails with the crop undone; none: the hash distance alone)',
    })
    .option('near-dup-distance', {
      type: 'number',
      describe: `near_duplicate and contaminated: maximum Hamming distance of perceptual hashes (default ${DEFAULT_NEAR_DUP_DISTANCE} with the check, ${PHASH_ONLY_DISTANCE} with --near-dup-check none: see ARCHITECTURE.md)`,
    })
    .option('decontaminate', { type: 'string', array: true, default: [] as string[], describe: 'folders/files of evaluation images or shards to keep out' });
}

interface FilterArgs {
  preset: string;
  disable: string[];
  enable: string[];
  minSide: number;
  maxAspect: number;
  maxRepeats: number;
  language: string;
  nearDupCheck?: string;
  nearDupDistance?: number;
  decontaminate: string[];
}

export function toFilterInput(a: FilterArgs): FilterInput {
  return {
    preset: a.preset as FilterPreset,
    disable: a.disable as FilterRule[],
    enable: a.enable as FilterRule[],
    minSide: a.minSide,
    maxAspect: a.maxAspect,
    maxRepeats: a.maxRepeats,
    language: a.language as LanguageEngine,
    ...(a.nearDupCheck === undefined ? {} : { nearDupCheck: a.nearDupCheck as NearDupCheckKind }),
    ...(a.nearDupDistance === undefined ? {} : { nearDupDistance: a.nearDupDistance, contaminationDistance: a.nearDupDistance }),
    decontaminate: a.decontaminate,
  };
}

export const filterCommand = {
  command: 'filter <input>',
  describe: 'apply the FILIP rules to an ingest output folder; kept rows to shards, the rest to the reject log',
  builder: (y: Argv) =>
    filterFlags(y.positional('input', { type: 'string', describe: 'ingest output folder' }))
      .option('output', { alias: 'o', type: 'string', default: 'shards/filtered' })
      .option('shard-size', { type: 'number', default: 10_000 })
      .option('writer', { type: 'string', choices: Object.keys(WRITER_ENGINES), default: 'lean' })
      .option('overwrite', { type: 'boolean', default: false })
      .option('partial-input', {
        type: 'boolean',
        default: false,
        describe: 'filter what an unfinished (killed or running) input run has committed so far, instead of stopping',
      })
      .option('progress', { type: 'string', choices: Object.keys(PROGRESS_MODES), default: 'auto' }),
  handler: async (a: FilterArgs & { input: string; output: string; shardSize: number; writer: string; overwrite: boolean; partialInput: boolean; progress: string }) => {
    const summary = await runFilter({
      input: a.input,
      output: a.output,
      filter: toFilterInput(a),
      shardSize: a.shardSize,
      writer: a.writer as WriterEngine,
      overwrite: a.overwrite,
      partialInput: a.partialInput,
      progress: a.progress as ProgressMode,
    });
    process.stdout.write(`${formatFilterSummary(summary)}\n`);
  },
};
