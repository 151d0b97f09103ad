// The demo behind `npm run demo`: generate the seeded corpus (once), serve it on a loopback port,
// run ingest on it, and compare each planted ingest-stage case with the reason it got.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { formatFilterSummary, runFilter, type FilterRunSummary } from '../pipeline/filter-run.js';
import { formatSummary, runIngest, type RunSummary } from '../pipeline/ingest.js';
import { readRejects } from '../pipeline/output.js';
import { checkShardOutput, formatShardSummary, runShard, type ShardRunSummary } from '../pipeline/shard-run.js';
import { committedShards, readShardSamples } from '../pipeline/shard-source.js';
import type { ProgressMode } from '../pipeline/progress.js';
import { demoNearDupRule, generateDemoCorpus, loadDemoCorpus, writeDemoManifest, type DemoCorpus } from './corpus.js';
import { DEMO_IMAGE_OPTIONS } from './phash.js';
import { startDemoServer } from './server.js';
import { ApertiumTranslator, DEFAULT_PIVOTS, SOURCE_LANGUAGE } from '../translate/index.js';
import { FilipError } from '../core/errors.js';

export interface DemoOptions {
  /** Folder for the corpus and the demo's outputs. @default 'shards/demo' */
  readonly output: string;
  /** @default 1 */
  readonly seed: number;
  /** Good scenes (planted bad cases come on top). @default 300 */
  readonly scenes: number;
  /** @default 'auto' */
  readonly progress: ProgressMode;
  /** Where the report goes. @default process.stdout */
  readonly out: NodeJS.WritableStream;
}

export interface PlantedCheck {
  readonly stage: 'ingest' | 'filter';
  readonly row: number;
  readonly expected: string;
  readonly got: string;
  readonly note: string;
}

export interface DemoResult {
  readonly corpus: DemoCorpus;
  readonly ingest: RunSummary;
  readonly filter: FilterRunSummary;
  /** One line per planted case, and per row expected to pass that did not. */
  readonly checks: PlantedCheck[];
  readonly ingestDir: string;
  readonly filterDir: string;
  /** The final training shards (apertium back-translation, one AutoAugment view). */
  readonly shard: ShardRunSummary;
  readonly shardDir: string;
  /** Where the shards disagree with the filter output (sizes.json total, keys lost or doubled); empty when right. */
  readonly shardProblems: string[];
}

async function corpusFor(dir: string, seed: number, scenes: number): Promise<DemoCorpus> {
  try {
    const c = await loadDemoCorpus(dir);
    const good = c.scenes.filter((s) => s.copyOf === undefined).length;
    // Planned for this seed, this many scenes and this near_duplicate rule (see DemoCorpus.nearDupRule).
    if (c.seed === seed && good >= scenes && c.nearDupRule === demoNearDupRule()) return c;
  } catch {
    // none yet
  }
  await fs.rm(dir, { recursive: true, force: true });
  return generateDemoCorpus(dir, { seed, scenes });
}

export async function runDemo(partial: Partial<DemoOptions> = {}): Promise<DemoResult> {
  const o: DemoOptions = { output: 'shards/demo', seed: 1, scenes: 300, progress: 'auto', out: process.stdout, ...partial };
  const say = (line: string) => o.out.write(`${line}\n`);
  const corpus = await corpusFor(path.join(o.output, 'corpus'), o.seed, o.scenes);
  say(`demo corpus: ${corpus.rows.length} manifest rows (seed ${corpus.seed}) in ${corpus.dir}`);
  const server = await startDemoServer(corpus);
  const manifest = path.join(o.output, 'manifest.tsv');
  const ingestDir = path.join(o.output, 'ingest');
  let ingest: RunSummary;
  try {
    await writeDemoManifest(corpus, server.baseUrl, manifest);
    say(`serving it on ${server.baseUrl}; ingest -> ${ingestDir}`);
    ingest = await runIngest({
      inputs: [manifest],
      output: ingestDir,
      // The server's port changes every run, so the demo starts its output afresh each time.
      overwrite: true,
      shardSize: 100,
      progress: o.progress,
      manifest: { keepCols: ['scene_id'] },
      fetch: { maxBodyBytes: corpus.maxBodyBytes, totalTimeoutMs: corpus.timeoutMs, retries: 1, retryBaseDelayMs: 100 },
      image: DEMO_IMAGE_OPTIONS,
    });
  } finally {
    await server.close();
  }
  say(formatSummary(ingest));

  const filterDir = path.join(o.output, 'filtered');
  say(`filter (preset filip) -> ${filterDir}`);
  const filter = await runFilter({ input: ingestDir, output: filterDir, overwrite: true, shardSize: 100, progress: o.progress });
  say(formatFilterSummary(filter));

  const rowOf = (source: string) => Number(source.slice(source.lastIndexOf(':') + 1));
  const ingestGot = new Map<number, string>();
  for await (const r of readRejects(ingestDir)) ingestGot.set(rowOf(r.source), r.reason);
  const filterGot = new Map<number, string>();
  for await (const r of readRejects(filterDir)) filterGot.set(rowOf(r.source), r.reason);
  const checks: PlantedCheck[] = [];
  for (const row of corpus.rows) {
    const e = row.expected;
    const atIngest = ingestGot.get(row.row);
    const actual = atIngest ?? filterGot.get(row.row) ?? 'ok';
    const stage = atIngest !== undefined || (e.status === 'rejected' && e.stage === 'ingest') ? 'ingest' : 'filter';
    const expected = e.status === 'rejected' ? e.reason : 'ok';
    if (expected !== 'ok' || actual !== 'ok') checks.push({ stage, row: row.row, expected, got: actual, note: row.note });
  }
  const wrong = checks.filter((c) => c.expected !== c.got);
  const planted = checks.filter((c) => c.expected !== 'ok');
  say(`planted cases: ${planted.filter((c) => c.expected === c.got).length} of ${planted.length} rejected for the planted reason; ${wrong.length} rows differ from expected.json`);
  for (const c of checks) {
    say(`  row ${String(c.row).padStart(4)}  ${c.stage.padEnd(6)}  ${c.expected === c.got ? 'ok  ' : 'MISS'}  ${c.got.padEnd(18)} ${c.note}`);
  }

  const shardDir = path.join(o.output, 'final');
  const engine = await apertiumOrNone(say);
  say(`shard (${engine === 'apertium' ? 'apertium back-translation' : 'no back-translation'}, 1 AutoAugment view, seed ${o.seed}) -> ${shardDir}`);
  const shard = await runShard({
    input: filterDir,
    output: shardDir,
    overwrite: true,
    samplesPerShard: 100,
    seed: o.seed,
    augment: { views: 1 },
    translate: { engine },
    progress: o.progress,
  });
  say(formatShardSummary(shard));
  const found = await checkShardOutput(shardDir);
  const shardProblems = [...found.problems];
  const total = Object.values(found.sizes).reduce((a, n) => a + n, 0);
  if (total !== filter.kept) shardProblems.push(`sizes.json sums to ${total}, the filter kept ${filter.kept}`);
  const inShards = new Set(found.keys);
  for await (const s of readShardSamples(await committedShards(filterDir))) {
    if (!inShards.delete(s.key)) shardProblems.push(`kept key ${s.key} is in no shard`);
  }
  for (const k of inShards) shardProblems.push(`key ${k} is in the shards but was not kept by the filter`);
  say(
    shardProblems.length === 0
      ? `shards: sizes.json sums to the ${filter.kept} kept rows; every kept key is in exactly one shard`
      : `shards: ${shardProblems.length} problem(s):\n${shardProblems.map((p) => `  ${p}`).join('\n')}`,
  );
  await (await import('./train-step.js')).demoTrainStep(shardDir, corpus, o.output, say);
  return { corpus, ingest, filter, checks, ingestDir, filterDir, shard, shardDir, shardProblems };
}

/**
 * The demo back-translates with Apertium where its Debian packages are installed (CI installs them).
 * On a fresh machine without them the demo still runs end to end, without back-translations, and
 * says how to get them.
 */
async function apertiumOrNone(say: (line: string) => void): Promise<'apertium' | 'none'> {
  const apertium = new ApertiumTranslator({});
  try {
    for (const pivot of DEFAULT_PIVOTS.apertium) {
      await apertium.check(SOURCE_LANGUAGE, pivot);
      await apertium.check(pivot, SOURCE_LANGUAGE);
    }
    return 'apertium';
  } catch (err) {
    if (!(err instanceof FilipError) || err.code !== 'FILIP_ERR_TRANSLATOR') throw err;
    say(`Apertium is not usable here (${err.message}).`);
    say('  The demo goes on without back-translation; for it: apt-get install apertium apertium-eng-spa apertium-eng-cat');
    return 'none';
  } finally {
    await apertium.close();
  }
}
