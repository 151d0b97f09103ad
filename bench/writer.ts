// Shard writer benchmark: writes the same rows (50 KB incompressible "images" plus realistic text
// columns) with each engine several times and compares against fs.writeFile of the concatenated images,
// measured in the same run. Each engine runs in its own child process so that its peak RSS is its own.
//
//   npx tsx bench/writer.ts [--rows 1000] [--image-kb 50] [--reps 3] [--compression snappy]
//                           [--engines parquetjs,duckdb,lean]
//
// MB are 10^6 bytes of payload (image bytes + UTF-8 text bytes). The CPU columns (user + system time
// of the child process from open to close, DuckDB's own threads included; the read-back check is not
// counted) are the steadier numbers when other work shares the cores: "CPU ms/1k" is what the ingest
// pipeline pays per 1,000 rows on its cores. With more than 200 MB of payload the rows are generated
// while writing (so memory can be measured); time and CPU then include generation.

import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shardColumns, type ShardRow } from '../src/shard/schema.js';
import { openShardWriter, WRITER_ENGINES, type ShardCompression, type WriterEngine } from '../src/shard/writer.js';
import { readShardRows, shardRowCount } from '../src/shard/reader.js';

interface Args {
  rows: number;
  imageKb: number;
  reps: number;
  compression: ShardCompression;
  engines: WriterEngine[];
  child?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { rows: 1000, imageKb: 50, reps: 3, compression: 'snappy', engines: Object.keys(WRITER_ENGINES) as WriterEngine[] };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1] ?? ''];
    if (flag === '--rows') args.rows = Number(value);
    else if (flag === '--image-kb') args.imageKb = Number(value);
    else if (flag === '--reps') args.reps = Number(value);
    else if (flag === '--compression') args.compression = value as ShardCompression;
    else if (flag === '--engines') args.engines = value.split(',') as WriterEngine[];
    else if (flag === '--child') args.child = value;
    else throw new Error(`unknown flag ${flag}`);
  }
  return args;
}

// Deterministic text, so every child writes the same captions and URLs.
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

const WORDS = (
  'a photo of the dog cat red blue vintage poster woman man standing near old wooden house beach ' +
  'sunset mountain lake city street night close-up portrait product white background illustration ' +
  'watercolor painting 3d render logo modern kitchen interior design wedding dress shoes car bike'
).split(' ');
const UNICODE = ['café', '東京の夜景', 'Ölgemälde', '🐶', 'ёлка', 'naïve'];

function makeRow(i: number, rand: () => number, image: Buffer): ShardRow {
  const words = Array.from({ length: 5 + Math.floor(rand() * 25) }, () =>
    rand() < 0.03 ? UNICODE[Math.floor(rand() * UNICODE.length)]! : WORDS[Math.floor(rand() * WORDS.length)]!,
  );
  const hex = (n: number): string => Array.from({ length: n }, () => Math.floor(rand() * 16).toString(16)).join('');
  const w = 256 + Math.floor(rand() * 768);
  const h = 256 + Math.floor(rand() * 768);
  return {
    key: `0000${String(i).padStart(9, '0')}`,
    url: `https://images.example.com/photos/${hex(8)}/${words.slice(0, 4).join('-')}-${i}.jpg`,
    caption: words.join(' '),
    image,
    image_format: 'jpeg',
    width: Math.min(w, 512),
    height: Math.min(h, 512),
    original_width: w,
    original_height: h,
    sha256: hex(64),
    phash: hex(16),
    source: `laion-part-00000.parquet:${i}`,
    extra_similarity: rand() < 0.1 ? null : (0.28 + rand() * 0.2).toFixed(6),
  };
}

function payloadBytes(row: ShardRow): number {
  let n = 0;
  for (const v of Object.values(row)) {
    if (typeof v === 'string') n += Buffer.byteLength(v);
    else if (v instanceof Uint8Array) n += v.byteLength;
  }
  return n;
}

/** Rows, either all in memory or generated on demand (same content both ways). */
function rowSource(args: Args): { eager: boolean; rows: () => Iterable<ShardRow>; payload?: number } {
  const imageBytes = args.imageKb * 1000;
  const eager = args.rows * imageBytes <= 200e6;
  const generate = function* (): Iterable<ShardRow> {
    const rand = prng(42);
    for (let i = 0; i < args.rows; i++) {
      // random bytes do not compress, like JPEG/WebP payloads; 1 in 8 images is a bit smaller or larger
      const size = i % 8 === 0 ? Math.round(imageBytes * (0.5 + rand())) : imageBytes;
      yield makeRow(i, rand, randomFillSync(Buffer.allocUnsafe(size)));
    }
  };
  if (!eager) return { eager, rows: generate };
  const all = [...generate()];
  return { eager, rows: () => all, payload: all.reduce((n, r) => n + payloadBytes(r), 0) };
}

interface ChildResult {
  name: string;
  seconds: number[];
  /** user + system CPU seconds of the whole process (DuckDB's threads included) per rep */
  cpuSeconds: number[];
  payloadBytes: number;
  fileBytes: number;
  rssDataMb: number;
  rssPeakMb: number;
  eager: boolean;
}

const maxRssMb = (): number => process.resourceUsage().maxRSS / 1024;

async function runChild(args: Args, name: string): Promise<ChildResult> {
  const src = rowSource(args);
  const rssDataMb = maxRssMb();
  const dir = await mkdtemp(join(tmpdir(), 'filip-bench-writer-'));
  const seconds: number[] = [];
  const cpuSeconds: number[] = [];
  let payload = 0;
  let fileBytes = 0;
  try {
    for (let rep = 0; rep < args.reps; rep++) {
      const path = join(dir, `shard-${rep}.parquet`);
      let cpu0 = process.cpuUsage();
      if (name === 'writeFile' && src.eager) {
        const all = Buffer.concat([...src.rows()].map((r) => r['image'] as Buffer));
        cpu0 = process.cpuUsage(); // the concatenation is not the write
        const t0 = performance.now();
        await writeFile(path, all);
        seconds.push((performance.now() - t0) / 1000);
        payload = all.byteLength;
        fileBytes = all.byteLength;
      } else if (name === 'writeFile') {
        // too much to concatenate: the same bytes, one write per image
        payload = 0;
        const t0 = performance.now();
        const fh = await open(path, 'w');
        for (const row of src.rows()) payload += (await fh.write(row['image'] as Buffer)).bytesWritten;
        await fh.close();
        seconds.push((performance.now() - t0) / 1000);
        fileBytes = payload;
      } else {
        payload = src.payload ?? 0;
        const t0 = performance.now();
        const w = await openShardWriter(path, shardColumns(['similarity']), name as WriterEngine, { compression: args.compression });
        for (const row of src.rows()) {
          if (src.payload === undefined) payload += payloadBytes(row);
          await w.write(row);
        }
        const { rows, bytes } = await w.close();
        seconds.push((performance.now() - t0) / 1000);
        const cpu = process.cpuUsage(cpu0);
        cpuSeconds.push((cpu.user + cpu.system) / 1e6);
        fileBytes = bytes;
        if (rows !== args.rows || (await shardRowCount(path)) !== args.rows) throw new Error(`${name}: row count mismatch`);
        if (rep === 0 && src.eager) {
          // spot check: the last image reads back byte-exact (lazy rows are random each time, so not there)
          const [last] = await readShardRows(path, { rowStart: args.rows - 1, columns: ['image'] });
          const expected = [...src.rows()].at(-1)!['image'] as Buffer;
          if (!expected.equals(last!['image'] as Buffer)) throw new Error(`${name}: image bytes differ`);
        }
      }
      if (name === 'writeFile') {
        const cpu = process.cpuUsage(cpu0);
        cpuSeconds.push((cpu.user + cpu.system) / 1e6);
      }
      await rm(path, { force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return { name, seconds, cpuSeconds, payloadBytes: payload, fileBytes, rssDataMb, rssPeakMb: maxRssMb(), eager: src.eager };
}

function spawnChild(args: Args, name: string): Promise<ChildResult> {
  const self = fileURLToPath(import.meta.url);
  const childArgs = ['--rows', String(args.rows), '--image-kb', String(args.imageKb), '--reps', String(args.reps)];
  childArgs.push('--compression', args.compression, '--child', name);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, self, ...childArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${name} child exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult);
    });
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.child !== undefined) {
    process.stdout.write(`${JSON.stringify(await runChild(args, args.child))}\n`);
    return;
  }
  const engines = args.engines;
  for (const e of engines) if (!Object.hasOwn(WRITER_ENGINES, e)) throw new Error(`unknown engine ${e}`);
  console.log(
    `shard writer bench: ${args.rows} rows, ~${args.imageKb} KB random images, ${args.reps} reps, ` +
      `compression ${args.compression}, node ${process.version}, ${process.platform}/${process.arch}`,
  );
  const results: ChildResult[] = [];
  for (const name of ['writeFile', ...engines]) results.push(await spawnChild(args, name));
  const base = results[0]!;
  const baseMbps = base.payloadBytes / 1e6 / median(base.seconds);
  const pad = (s: string, n: number): string => s.padStart(n);
  console.log(
    `${'writer'.padEnd(10)}${pad('MB/s med', 10)}${pad('MB/s best', 11)}${pad('vs write', 10)}` +
      `${pad('CPU s med', 10)}${pad('CPU ms/1k', 10)}${pad('payload MB', 12)}${pad('file MB', 9)}${pad('data RSS', 10)}${pad('peak RSS', 10)}  times (s)`,
  );
  for (const r of results) {
    const mb = r.payloadBytes / 1e6;
    const med = mb / median(r.seconds);
    const best = mb / Math.min(...r.seconds);
    console.log(
      `${r.name.padEnd(10)}${pad(med.toFixed(0), 10)}${pad(best.toFixed(0), 11)}${pad(`${(med / baseMbps).toFixed(2)}x`, 10)}` +
        `${pad(median(r.cpuSeconds).toFixed(3), 10)}${pad(((median(r.cpuSeconds) * 1e6) / args.rows).toFixed(1), 10)}${pad(mb.toFixed(1), 12)}${pad((r.fileBytes / 1e6).toFixed(1), 9)}${pad(r.rssDataMb.toFixed(0), 10)}` +
        `${pad(r.rssPeakMb.toFixed(0), 10)}  ${r.seconds.map((s) => s.toFixed(3)).join(' ')}`,
    );
  }
  console.log(
    `(writeFile payload = image bytes only${base.eager ? '' : ', written one image at a time'}; engines also write the ` +
      `text columns. CPU s = user+system CPU of the process per write, a steadier measure than MB/s on a shared machine; CPU ms/1k = the same per 1,000 rows. RSS in MB: "data" = after generating the rows (${base.eager ? 'all held in memory' : 'none: generated while writing, time included'}), "peak" = process max.)`,
  );
}

await main();
