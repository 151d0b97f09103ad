#!/usr/bin/env -S node --initial-heap-size=512
// Launcher: runs the TypeScript CLI through tsx's loader so no build step is needed. The shebang's
// flag lets V8's heap start large enough that ingest's image buffers do not force a full GC every
// few dozen images (src/core/node-flags.ts says why and what it saves); `node bin/filip-data.js`
// works without it, only slower.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/filip-data.ts');
