// npm run bench:ingest — the ingest pipeline's images/s against a bare sharp loop on the same bytes.
//
// The parent makes (or reuses) N photo-like JPEGs, serves them from a loopback server, and runs each
// measured phase in its own child process, so peak RSS is per phase and the two sides start equal:
//   baseline  bare loop: sharp decode -> resize (shorter side 256) -> jpeg, same concurrency, bytes in memory
//   pipeline  runIngest over HTTP, keep-ratio 256, jpeg: fetch, decode, sha256, phash, dedupe, Parquet write
//   none      runIngest over HTTP with --resize-mode none (no re-encode)
// The server lives in the parent and answers from prebuilt buffers (bench/memory-server.ts); its CPU
// is measured during the pipeline phases and printed, since on a machine with few cores it competes
// with the pipeline for them. Every child starts with the node flags of the `filip-data` launcher's
// shebang (src/core/node-flags.ts), the process users run ingest in; the baseline gets them too.
//
// Each child does the work of one run of --warmup + --count images and is timed on the last --count
// only, so both sides are measured in the steady state of a run, their code compiled by the JIT: a real
// ingest runs for hours, not 15 s. The warm-up images are other photos of the same kind, first in the
// same loop (baseline) or the same manifest (pipeline), since a second run would be a different thing to
// time: it starts new closures, generators and sockets, and V8 optimises much of the pipeline's code
// again (with a separate warm-up run, 93 TurboFan jobs and 375 ms of compiler time fell inside the
// timed run of 2,000 images). The window opens when the first timed image is taken: by the baseline's
// loop, or, for the pipeline, when its first request reaches the server (the parent reads the child's
// CPU time from /proc then); it closes when the run returns (the pipeline's last shard written). Either
// way the last warm-up images are still in flight when it opens, as the last timed ones are at its end.
//
// Printed figure: pipeline images/s / baseline images/s (target >= 0.90), as the median over reps of
// the ratio within each rep. Reps alternate the order (baseline first, then pipeline first), so a
// machine that speeds up or slows down during a rep does not favour one side. CPU per image (user +
// system of the child's whole process over the timed run) is printed too: it moves less than images/s
// when other work shares the cores (not nothing: shared caches slow every thread), and
// baseline / (pipeline + server) says what the wall-clock ratio would be on a machine kept busy by
// this benchmark alone.
//
// Usage: npx tsx bench/ingest.ts [--count 2000] [--concurrency 16] [--reps 3] [--warmup 400]

import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { shebangNodeFlags } from '../src/core/node-flags.js';
import { configureSharpForStreaming } from '../src/image/process.js';
import { runIngest } from '../src/pipeline/ingest.js';
import { memoryServer } from './memory-server.js';
import { makePhotoCorpus } from './photos.js';

interface PhaseResult {
  phase: string;
  images: number;
  seconds: number;
  imagesPerSecond: number;
  peakRssMb: number;
  cpuSeconds: number;
  majorGcs: number;
}

const self = fileURLToPath(import.meta.url);

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** What a child reports at the end of its run; times are wall-clock ms since the epoch. */
interface ChildReport {
  phase: string;
  /** Timed images (the warm-up not counted). */
  images: number;
  endWall: number;
  /** User + system CPU of the whole process (all threads) since it started, in seconds. */
  endCpu: number;
  /** The baseline opens its own window: when its loop takes the first timed image. */
  mark?: { wall: number; cpu: number };
  /** When each full (mark-compact) garbage collection started. */
  majorGcWalls: number[];
  peakRssMb: number;
}

function processCpuSeconds(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
}

/** Starts recording full GCs; the returned function stops and gives their start times. */
function recordMajorGcs(): () => Promise<number[]> {
  const walls: number[] = [];
  const gcs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (((e as { detail?: { kind?: number } }).detail)?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) walls.push(performance.timeOrigin + e.startTime);
    }
  });
  gcs.observe({ entryTypes: ['gc'] });
  return async () => {
    // GC entries are delivered asynchronously (buffered, then a task): give the last ones time to arrive.
    await new Promise((resolve) => setTimeout(resolve, 100));
    gcs.disconnect();
    return walls;
  };
}

async function baseline(warm: string[], timed: string[], concurrency: number): Promise<Omit<ChildReport, 'phase' | 'peakRssMb'>> {
  // The issue asks for the baseline in the same process as the pipeline, so it gets the same
  // process-wide sharp settings the image stage applies (libvips operation cache off).
  configureSharpForStreaming();
  const bytes = await Promise.all([...warm, ...timed].map((f) => fs.readFile(f)));
  const stopGcs = recordMajorGcs();
  let next = 0;
  let mark: { wall: number; cpu: number } | undefined;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < bytes.length) {
        const i = next++;
        if (i === warm.length) mark = { wall: Date.now(), cpu: processCpuSeconds() };
        await sharp(bytes[i]!).resize({ width: 256, height: 256, fit: 'outside' }).jpeg({ quality: 95 }).toBuffer();
      }
    }),
  );
  const endWall = Date.now();
  const endCpu = processCpuSeconds();
  return { images: timed.length, endWall, endCpu, mark: mark!, majorGcWalls: await stopGcs() };
}

async function pipeline(manifest: string, timed: number, concurrency: number, resizeMode: 'keep-ratio' | 'none'): Promise<Omit<ChildReport, 'phase' | 'peakRssMb'>> {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-bench-out-'));
  try {
    const stopGcs = recordMajorGcs();
    const s = await runIngest({
      inputs: [manifest],
      output: path.join(out, 'run'),
      progress: 'none',
      fetch: { concurrency, perHostConcurrency: concurrency },
      image: { resizeMode, size: 256, format: 'jpeg', quality: 95 },
    });
    const endWall = Date.now();
    const endCpu = processCpuSeconds();
    if (s.rejected > 0) throw new Error(`bench: ${s.rejected} rows rejected: ${JSON.stringify(s.byReason)}`);
    return { images: timed, endWall, endCpu, majorGcWalls: await stopGcs() };
  } finally {
    await fs.rm(out, { recursive: true, force: true });
  }
}

async function child(phase: string, arg: string, concurrency: number): Promise<void> {
  let r: Omit<ChildReport, 'phase' | 'peakRssMb'>;
  if (phase === 'baseline') {
    const { warm, timed } = JSON.parse(await fs.readFile(arg, 'utf8')) as { warm: string[]; timed: string[] };
    r = await baseline(warm, timed, concurrency);
  } else {
    const { manifest, timed } = JSON.parse(await fs.readFile(arg, 'utf8')) as { manifest: string; timed: number };
    r = await pipeline(manifest, timed, concurrency, phase === 'none' ? 'none' : 'keep-ratio');
  }
  const report: ChildReport = { phase, ...r, peakRssMb: peakRssMb() };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

/**
 * This process's peak resident set, in MB: VmHWM of /proc/self/status. Not getrusage's maxRSS, which
 * a spawned child inherits from the parent it was forked from (here the server, holding every photo)
 * and keeps across exec, so every phase would report at least the parent's size.
 */
function peakRssMb(): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('VmHWM:'));
  return line === undefined ? process.resourceUsage().maxRSS / 1024 : Number(line.split(/\s+/)[1]) / 1024;
}

/** Clock ticks per second of /proc's CPU times. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** User + system CPU seconds of process `pid`, all its threads, from /proc. */
function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Opens the pipeline's window: set by the server when the first timed image is requested. */
let onTimedRequest: (() => void) | undefined;

/** Runs one phase in a child; its window is opened by the child (baseline) or by the server (pipeline). */
function runChild(phase: string, arg: string, concurrency: number): Promise<PhaseResult> {
  return new Promise((resolve, reject) => {
    const args = ['--child', phase, '--arg', arg, '--concurrency', String(concurrency)];
    const p = spawn(process.execPath, [...shebangNodeFlags(), '--import', 'tsx', self, ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let mark: { wall: number; cpu: number } | undefined;
    onTimedRequest = () => {
      if (mark === undefined && p.pid !== undefined) mark = { wall: Date.now(), cpu: procCpuSeconds(p.pid) };
    };
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', (code) => {
      onTimedRequest = undefined;
      if (code !== 0) return reject(new Error(`${phase} exited ${code}`));
      const r = JSON.parse(out.trim().split('\n').at(-1)!) as ChildReport;
      const from = r.mark ?? mark;
      if (from === undefined) return reject(new Error(`${phase}: the timed window never opened`));
      const seconds = (r.endWall - from.wall) / 1000;
      resolve({
        phase,
        images: r.images,
        seconds,
        imagesPerSecond: r.images / seconds,
        peakRssMb: r.peakRssMb,
        cpuSeconds: r.endCpu - from.cpu,
        majorGcs: r.majorGcWalls.filter((w) => w >= from.wall).length,
      });
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '2000' },
      concurrency: { type: 'string', default: '16' },
      reps: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '400' },
      child: { type: 'string' },
      arg: { type: 'string' },
    },
  });
  const concurrency = Number(values.concurrency);
  const warmup = Number(values.warmup);
  if (values.child) return child(values.child, values.arg!, concurrency);

  const count = Number(values.count);
  const dir = path.resolve('.cache/bench-photos');
  process.stderr.write(`bench:ingest: preparing ${count} + ${warmup} photo-like JPEGs in ${dir} ...\n`);
  // The timed photos are the first `count` (the same bytes at any --warmup); the warm-up ones follow.
  const files = (await makePhotoCorpus(dir, count + warmup)).slice(0, count + warmup);
  const timedFiles = files.slice(0, count);
  const warmFiles = files.slice(count);
  const totalMb = (await Promise.all(timedFiles.map((f) => fs.stat(f)))).reduce((a, s) => a + s.size, 0) / 1e6;
  const server = await memoryServer(files, { onRequest: (i) => i < count && onTimedRequest?.() });
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-bench-'));
  try {
    const list = path.join(work, 'files.json');
    await fs.writeFile(list, JSON.stringify({ warm: warmFiles, timed: timedFiles }));
    const manifest = path.join(work, 'manifest.tsv');
    // Warm-up rows first, in the same run: the window opens at the first timed row's request.
    const order = [...warmFiles.map((_f, k) => count + k), ...timedFiles.map((_f, i) => i)];
    const rows = order.map((i) => `${server.baseUrl}/${i}.jpg\tphoto number ${i}`);
    await fs.writeFile(manifest, `url\tcaption\n${rows.join('\n')}\n`);
    const job = path.join(work, 'pipeline.json');
    await fs.writeFile(job, JSON.stringify({ manifest, timed: count }));

    const best: Record<string, PhaseResult> = {};
    const cpu: Record<string, number[]> = { baseline: [], pipeline: [], none: [], server: [] };
    // Each rep runs the baseline and the pipeline back to back and keeps their ratio: on a shared
    // machine the speed drifts between minutes, and a paired ratio drifts much less than either side.
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    for (let rep = 0; rep < Number(values.reps); rep++) {
      const got: Record<string, PhaseResult> = {};
      const order = rep % 2 === 0 ? ['baseline', 'pipeline', 'none'] : ['none', 'pipeline', 'baseline'];
      for (const phase of order) {
        const serverBefore = process.cpuUsage();
        const r = await runChild(phase, phase === 'baseline' ? list : job, concurrency);
        const served = process.cpuUsage(serverBefore);
        got[phase] = r;
        const msPerImage = (1000 * r.cpuSeconds) / r.images;
        cpu[phase]!.push(msPerImage);
        let serverNote = '';
        if (phase === 'pipeline') {
          // Per request served: the warm-up's requests included.
          const serverMs = (served.user + served.system) / 1000 / (r.images + warmup);
          cpu.server!.push(serverMs);
          serverNote = `, server ${serverMs.toFixed(2)} ms CPU/image`;
        }
        process.stderr.write(`  rep ${rep + 1} ${phase.padEnd(8)} ${r.imagesPerSecond.toFixed(1)} images/s, ${msPerImage.toFixed(2)} ms CPU/image, ${r.majorGcs} full GCs${serverNote}\n`);
        if (!best[phase] || r.imagesPerSecond > best[phase].imagesPerSecond) best[phase] = r;
      }
      ratios.push(got.pipeline!.imagesPerSecond / got.baseline!.imagesPerSecond);
      cpuRatios.push(cpu.baseline!.at(-1)! / (cpu.pipeline!.at(-1)! + cpu.server!.at(-1)!));
    }
    const cores = os.availableParallelism();
    const b = best.baseline!;
    console.log(`bench:ingest  ${count} JPEGs (${totalMb.toFixed(0)} MB, long side 320-1024) timed after ${warmup} in the same run, concurrency ${concurrency}, ${cores} cores, best of ${values.reps}`);
    console.log('phase      images/s  per core  peak RSS MB  seconds  CPU ms/image (median)');
    for (const p of [b, best.pipeline!, best.none!]) {
      console.log(
        `${p.phase.padEnd(9)} ${p.imagesPerSecond.toFixed(1).padStart(9)} ${(p.imagesPerSecond / cores).toFixed(1).padStart(9)} ` +
          `${p.peakRssMb.toFixed(0).padStart(12)} ${p.seconds.toFixed(2).padStart(8)} ${median(cpu[p.phase]!).toFixed(2).padStart(9)}`,
      );
    }
    console.log(`server (parent, during pipeline): ${median(cpu.server!).toFixed(2)} ms CPU/image`);
    console.log(`ratio pipeline/baseline (keep-ratio 256, jpeg): median of ${ratios.length} paired reps ${median(ratios).toFixed(3)} [${ratios.map((r) => r.toFixed(3)).join(', ')}], best/best ${(best.pipeline!.imagesPerSecond / b.imagesPerSecond).toFixed(3)}  (target >= 0.90)`);
    console.log(`CPU ratio baseline/(pipeline + server) per image: median ${median(cpuRatios).toFixed(3)} [${cpuRatios.map((r) => r.toFixed(3)).join(', ')}]`);
    console.log(`without resize (--resize-mode none): ${best.none!.imagesPerSecond.toFixed(1)} images/s, ${(best.none!.imagesPerSecond / b.imagesPerSecond).toFixed(2)}x the resize baseline`);
  } finally {
    await server.close();
    await fs.rm(work, { recursive: true, force: true });
  }
}

await main();
