// The demo behind `npm run demo`: generate the seeded corpus (once), serve it on a loopback port,
// run ingest on it, and compare each planted ingest-stage case with the reason it got.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { formatSummary, runIngest, type RunSummary } from '../pipeline/ingest.js';
import { readRejects } from '../pipeline/output.js';
import type { ProgressMode } from '../pipeline/progress.js';
import { generateDemoCorpus, loadDemoCorpus, writeDemoManifest, type DemoCorpus } from './corpus.js';
import { startDemoServer } from './server.js';

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
  readonly row: number;
  readonly expected: string;
  readonly got: string;
  readonly note: string;
}

export interface DemoResult {
  readonly corpus: DemoCorpus;
  readonly ingest: RunSummary;
  /** One line per planted ingest-stage case and per row expected to pass ingest that did not. */
  readonly checks: PlantedCheck[];
  readonly ingestDir: string;
}

async function corpusFor(dir: string, seed: number, scenes: number): Promise<DemoCorpus> {
  try {
    const c = await loadDemoCorpus(dir);
    const good = c.scenes.filter((s) => s.copyOf === undefined).length;
    if (c.seed === seed && good >= scenes) return c;
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
      image: { resizeMode: 'keep-ratio', size: 224 },
    });
  } finally {
    await server.close();
  }
  say(formatSummary(ingest));

  const got = new Map<number, string>();
  for await (const r of readRejects(ingestDir)) got.set(Number(r.source.slice(r.source.lastIndexOf(':') + 1)), r.reason);
  const checks: PlantedCheck[] = [];
  for (const row of corpus.rows) {
    const actual = got.get(row.row) ?? 'ok';
    const e = row.expected;
    if (e.status === 'rejected' && e.stage === 'ingest') {
      checks.push({ row: row.row, expected: e.reason, got: actual, note: row.note });
    } else if (actual !== 'ok') {
      checks.push({ row: row.row, expected: 'ok', got: actual, note: row.note });
    }
  }
  const wrong = checks.filter((c) => c.expected !== c.got);
  say(`planted ingest cases: ${checks.length - wrong.length} of ${checks.length} rejected for the planted reason`);
  for (const c of checks) say(`  row ${String(c.row).padStart(4)}  ${c.expected === c.got ? 'ok  ' : 'MISS'}  ${c.got.padEnd(18)} ${c.note}`);
  return { corpus, ingest, checks, ingestDir };
}
