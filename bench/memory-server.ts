// A loopback HTTP server that serves image files from memory, for the benchmarks that fetch them.

import { createServer } from 'node:http';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';

/** Serves the files from memory with keep-alive, so the server's own CPU cost stays small. */
export async function memoryServer(files: string[]): Promise<{ baseUrl: string; close(): Promise<void> }> {
  const bodies = await Promise.all(files.map((f) => fs.readFile(f)));
  const server = createServer((req, res) => {
    const body = bodies[Number.parseInt((req.url ?? '/').slice(1), 10)];
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
