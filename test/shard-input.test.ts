// Shards read back by the later stages (filter, shard, decontaminate): a damaged or foreign shard
// stops the run with FILIP_ERR_SHARD naming the input file, row and column, before any decision is
// made on a wrong value (a null size read as 0 px, a null caption read as "null").
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FilipError } from '../src/core/errors.js';
import type { Sample } from '../src/core/sample.js';
import { runFilter } from '../src/pipeline/filter-run.js';
import { readShardSamples } from '../src/pipeline/shard-source.js';
import { shardColumns, type ColumnSpec, type ShardRow } from '../src/shard/schema.js';
import { openShardWriter } from '../src/shard/writer.js';
import { hashRow } from './helpers/shard-rows.js';

let tmp: string;
before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'filip-shard-input-'));
});
after(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

interface Bad {
  readonly name: string;
  readonly field: string;
  readonly patch: Partial<ShardRow>;
  /** Column types other than the shard schema's (a foreign writer's choice). */
  readonly types?: Record<string, ColumnSpec['type']>;
  /** Columns the shard lacks. */
  readonly drop?: readonly string[];
  /** The row named: 2 (the patched one) unless the whole column is wrong, then the first. */
  readonly row?: number;
}

const BAD: readonly Bad[] = [
  { name: 'a phash in upper case', field: 'phash', patch: { phash: '0123456789ABCDEF' } },
  { name: 'a short phash', field: 'phash', patch: { phash: '0123', phash_weak: '001f001f001f001f' } },
  { name: 'a phash_weak that is not hex', field: 'phash_weak', patch: { phash_weak: 'zz1f001f001f001f' } },
  { name: 'a phash_weak of 17 digits', field: 'phash_weak', patch: { phash_weak: '001f001f001f001f0' } },
  { name: 'a near_dup_check of 591 bytes', field: 'near_dup_check', patch: { near_dup_check: Buffer.alloc(591) } },
  { name: 'a near_dup_check stored as text', field: 'near_dup_check', patch: { near_dup_check: 'abc' }, types: { near_dup_check: 'utf8' } },
  { name: 'a null original_width', field: 'original_width', patch: { original_width: null } },
  { name: 'a negative original_width', field: 'original_width', patch: { original_width: -5 } },
  { name: 'an original_width stored as text', field: 'original_width', patch: { original_width: '400px' }, types: { original_width: 'utf8' }, row: 0 },
  { name: 'no original_height column', field: 'original_height', patch: {}, drop: ['original_height'], row: 0 },
  { name: 'a width of 0', field: 'width', patch: { width: 0 } },
  { name: 'a null caption', field: 'caption', patch: { caption: null } },
  { name: 'an empty key', field: 'key', patch: { key: '' } },
  { name: 'a null url', field: 'url', patch: { url: null } },
  { name: 'a null source', field: 'source', patch: { source: null } },
  { name: 'a null image', field: 'image', patch: { image: null } },
  { name: 'an empty image', field: 'image', patch: { image: Buffer.alloc(0) } },
  { name: 'an unknown image_format', field: 'image_format', patch: { image_format: 'bmp' } },
  { name: 'a sha256 that is not a digest', field: 'sha256', patch: { sha256: 'xyz' } },
];

for (const bad of BAD) {
  test(`${bad.name}: FILIP_ERR_SHARD naming the file, row and column`, async () => {
    const file = path.join(tmp, `${bad.name.replace(/\W+/g, '-')}.parquet`);
    const columns = shardColumns([])
      .filter((c) => !bad.drop?.includes(c.name))
      .map((c) => ({ ...c, nullable: true, type: bad.types?.[c.name] ?? c.type }));
    // Rows as that foreign writer would store them: dropped columns left out, retyped ones as text.
    const keep = (row: ShardRow) =>
      Object.fromEntries(
        Object.entries(row)
          .filter(([k]) => !bad.drop?.includes(k))
          .map(([k, v]) => [k, bad.types?.[k] === 'utf8' && typeof v === 'number' ? String(v) : v]),
      ) as ShardRow;
    const writer = await openShardWriter(file, columns, 'lean');
    await writer.write(keep(hashRow(0, 'fedcba9876543210'))); // an older shard's row: no mask
    await writer.write(keep(hashRow(1, '0123456789abcdef', '001f001f001f001f')));
    await writer.write(keep({ ...hashRow(2, '0123456789abcdef'), ...bad.patch } as ShardRow));
    await writer.close();
    const seen: Sample[] = [];
    await assert.rejects(
      (async () => {
        for await (const s of readShardSamples([file])) seen.push(s);
      })(),
      (err: unknown) => {
        assert.ok(err instanceof FilipError, String(err));
        assert.deepEqual([err.code, err.file, err.row, err.field], ['FILIP_ERR_SHARD', file, bad.row ?? 2, bad.field]);
        return true;
      },
    );
    if (bad.row === undefined) assert.deepEqual(seen.map((s) => s.image?.phashWeak), [undefined, '001f001f001f001f'], 'the good rows before it come through');
  });
}

test('a folder no filip-data run wrote is FILIP_ERR_NO_INPUT, not an empty success', async () => {
  const empty = path.join(tmp, 'empty');
  await fs.mkdir(empty);
  const loose = path.join(tmp, 'loose');
  await fs.mkdir(loose);
  const writer = await openShardWriter(path.join(loose, '00000.parquet'), shardColumns([]), 'lean');
  await writer.write(hashRow(0, '0123456789abcdef'));
  await writer.close();
  const cases: [string, string][] = [
    ['an empty folder', empty],
    ['Parquet files without the run record', loose],
    ['a folder that does not exist', path.join(tmp, 'nowhere')],
  ];
  for (const [name, input] of cases) {
    await assert.rejects(
      runFilter({ input, output: path.join(tmp, `out-${path.basename(input)}`), progress: 'none' }),
      (e: unknown) => e instanceof FilipError && e.code === 'FILIP_ERR_NO_INPUT' && e.file === input,
      name,
    );
  }
});
