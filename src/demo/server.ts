// Loopback HTTP servers for the demo and the benchmarks. startDemoServer serves a demo corpus with its
// planted failures (404, stalls, lying content types, chunked oversized bodies); startStaticServer serves
// a folder with keep-alive. Both listen on 127.0.0.1, port 0 by default, and close() never waits on a
// client: it destroys open sockets, stalled ones included.

import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { intOption, rejectUnknownKeys, stringOption } from '../core/options.js';
import type { DemoCorpus, DemoRoute } from './corpus.js';

export interface ServerOptions {
  /** @default '127.0.0.1' */
  readonly host?: string;
  /** 0 picks a free port. @default 0 */
  readonly port?: number;
}

const DEFAULTS: Required<ServerOptions> = { host: '127.0.0.1', port: 0 };

export interface RunningServer {
  /** e.g. http://127.0.0.1:41234, no trailing slash. */
  readonly baseUrl: string;
  /** Destroys every open connection (stalled ones too), then stops listening. */
  close(): Promise<void>;
}

export interface DemoServer extends RunningServer {
  /** Requests received for a path (any method), or for all paths when none is given. */
  requestCount(path?: string): number;
}

function resolveOptions(opts: ServerOptions): Required<ServerOptions> {
  rejectUnknownKeys('server', opts, DEFAULTS);
  const o = { ...DEFAULTS, ...opts };
  return { host: stringOption('host', o.host), port: intOption('port', o.port, 0, 65535) };
}

async function listen(server: Server, opts: Required<ServerOptions>): Promise<RunningServer> {
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(opts.port, opts.host, () => {
      server.off('error', fail);
      done();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  let closing: Promise<void> | undefined;
  return {
    baseUrl: `http://${host}:${port}`,
    close() {
      closing ??= new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function pathOf(req: IncomingMessage): string {
  try {
    return new URL(req.url ?? '/', 'http://x').pathname;
  } catch {
    return '/';
  }
}

function sendStatus(res: ServerResponse, status: number): void {
  const text = `${status}\n`;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const CHUNK = 64 * 1024;

/** Serves the corpus routes. Unknown paths are 404; bodies are read once and kept in memory. */
export async function startDemoServer(corpus: DemoCorpus, opts: ServerOptions = {}): Promise<DemoServer> {
  const o = resolveOptions(opts);
  const routes = new Map<string, DemoRoute>(corpus.routes.map((r) => [r.path, r]));
  const bodies = new Map<string, Promise<Buffer>>();
  const load = (file: string): Promise<Buffer> => {
    let p = bodies.get(file);
    if (p === undefined) {
      p = readFile(join(corpus.dir, file));
      bodies.set(file, p);
    }
    return p;
  };
  const counts = new Map<string, number>();
  let total = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = pathOf(req);
    counts.set(path, (counts.get(path) ?? 0) + 1);
    total++;
    const route = routes.get(path);
    if (route === undefined) return sendStatus(res, 404);
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendStatus(res, 405);
    switch (route.kind) {
      case 'status':
        return sendStatus(res, route.status);
      case 'stall':
        return; // never answer; close() destroys the socket
      case 'stall_body': {
        const bytes = await load(route.file);
        res.writeHead(200, { 'Content-Type': route.contentType, 'Content-Length': bytes.length });
        res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
        return; // and nothing more
      }
      case 'file': {
        const bytes = await load(route.file);
        if (route.chunked) {
          res.writeHead(200, { 'Content-Type': route.contentType });
          if (req.method === 'HEAD') return void res.end();
          // Written in pieces with backpressure, so a client that stops reading at its cap is not flooded.
          for (let at = 0; at < bytes.length && !res.destroyed; at += CHUNK) {
            if (!res.write(bytes.subarray(at, at + CHUNK))) {
              await new Promise<void>((done) => {
                const finish = (): void => {
                  res.off('drain', finish);
                  res.off('close', finish);
                  done();
                };
                res.on('drain', finish);
                res.on('close', finish);
              });
            }
          }
          if (!res.destroyed) res.end();
          return;
        }
        res.writeHead(200, { 'Content-Type': route.contentType, 'Content-Length': bytes.length });
        res.end(req.method === 'HEAD' ? undefined : bytes);
        return;
      }
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendStatus(res, 500);
      else res.destroy();
    });
  });
  const running = await listen(server, o);
  return {
    ...running,
    requestCount: (path) => (path === undefined ? total : (counts.get(path) ?? 0)),
  };
}

/** Content types by file extension, for the static server. */
export const STATIC_CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.avif': 'image/avif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.svg': 'image/svg+xml',
  '.html': 'text/html; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.json': 'application/json',
  '.tsv': 'text/tab-separated-values; charset=utf-8',
};

/** Serves the files under rootDir (GET and HEAD), keep-alive on. Anything outside rootDir is a 404. */
export async function startStaticServer(rootDir: string, opts: ServerOptions = {}): Promise<RunningServer> {
  const o = resolveOptions(opts);
  const root = resolve(rootDir);
  const server = createServer((req, res) => {
    void (async () => {
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendStatus(res, 405);
      let rel: string;
      try {
        rel = decodeURIComponent(pathOf(req));
      } catch {
        return sendStatus(res, 400);
      }
      const file = resolve(root, '.' + rel);
      if (file !== root && !file.startsWith(root + sep)) return sendStatus(res, 404);
      const info = await stat(file).catch(() => null);
      if (info === null || !info.isFile()) return sendStatus(res, 404);
      res.writeHead(200, {
        'Content-Type': STATIC_CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
        'Content-Length': info.size,
      });
      if (req.method === 'HEAD') return void res.end();
      const stream = createReadStream(file);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    })().catch(() => res.destroy());
  });
  // Benchmarks reuse sockets across bursts: keep idle ones longer than Node's 5 s default.
  server.keepAliveTimeout = 30_000;
  return listen(server, o);
}
