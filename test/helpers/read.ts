// Reads an output folder back with hyparquet directly (not through src/shard/reader.ts), so the
// tests check the files as any other Parquet reader sees them.
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';

export async function readShardFile(file: string): Promise<Record<string, unknown>[]> {
  return parquetReadObjects({ file: await asyncBufferFromFile(file), utf8: false });
}

export async function readOutput(dir: string) {
  const names = (await fs.readdir(dir)).sort();
  const shards = names.filter((n) => /^\d{5}\.parquet$/.test(n));
  const rows: Record<string, unknown>[] = [];
  for (const s of shards) rows.push(...(await readShardFile(path.join(dir, s))));
  const rejectText = await fs.readFile(path.join(dir, 'rejects.jsonl'), 'utf8').catch(() => '');
  const rejects = rejectText
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { key: string; reason: string; url: string; error_message: string; caption: string });
  return { names, shards, rows, rejects };
}
