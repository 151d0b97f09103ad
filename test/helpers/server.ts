// A loopback HTTP server for tests: routes by path, records requests, never outlives the test.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface TestServer {
  readonly baseUrl: string;
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startServer(route: (path: string) => Handler | undefined): Promise<TestServer> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push(p);
    const h = route(p);
    if (!h) {
      res.statusCode = 404;
      res.end('not found');
      return;
    }
    void h(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function sendBytes(bytes: Buffer, type = 'image/jpeg', delayMs = 0): Handler {
  return async (_req, res) => {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    res.writeHead(200, { 'content-type': type, 'content-length': bytes.length });
    res.end(bytes);
  };
}
