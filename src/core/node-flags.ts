// The Node.js flags the command-line programs start with, read from their launchers' shebang lines
// (bin/*.js: `#!/usr/bin/env -S node FLAG...`), so that whatever else starts the same work in a fresh
// process (the ingest benchmark's children) runs it under the same flags as users do.
//
// Why there are flags at all: V8 starts with a small old-generation limit and grows it slowly. Ingest
// turns over a few hundred KB of short-lived image buffers per sample; with the default start, V8 ran
// a full mark-compact about every 60 images (37 in 2,200), costing about 0.5 ms of CPU per image
// across the main thread and V8's helper threads, 8% of the whole run. `--initial-heap-size=512`
// lets the heap start larger: 2 mark-compacts in the same run, peak RSS up by about 25 MB. It cannot
// be set from inside the process (V8 reads it when the isolate is made) nor through NODE_OPTIONS
// (Node refuses it there), hence the shebang.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The launcher of `filip-data`. */
export const FILIP_DATA_BIN = fileURLToPath(new URL('../../bin/filip-data.js', import.meta.url));

/**
 * The flags a launcher's shebang gives node: `#!/usr/bin/env -S node --a --b=1` -> ['--a', '--b=1'].
 * Throws when the first line is not such a shebang.
 */
export function shebangNodeFlags(launcher: string = FILIP_DATA_BIN): string[] {
  const first = readFileSync(launcher, 'utf8').split('\n', 1)[0]!;
  const words = first.replace(/^#!/, '').trim().split(/\s+/);
  const at = words.indexOf('node');
  if (!first.startsWith('#!') || at < 0) throw new Error(`${launcher}: line 1 is not a shebang that runs node: ${first}`);
  return words.slice(at + 1);
}
