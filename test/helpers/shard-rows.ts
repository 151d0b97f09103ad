// A shard row with every base column set to a placeholder, for tests that care about its hashes.
import type { ShardRow } from '../../src/shard/schema.js';

/** Row `i` with the given `phash` (and `phash_weak`, null when absent, as in shards older than the column). */
export function hashRow(i: number, phash: unknown, phashWeak: unknown = null): ShardRow {
  return {
    key: `0000${String(i).padStart(9, '0')}`,
    url: `https://example.com/${i}.jpg`,
    caption: `caption ${i}`,
    image: Buffer.from([0xff, 0xd8, 0xff]),
    image_format: 'jpeg',
    width: 256,
    height: 256,
    original_width: 512,
    original_height: 512,
    sha256: '0'.repeat(64),
    phash: phash as string,
    phash_weak: phashWeak as string | null,
    source: `manifest.csv:${i}`,
  };
}
