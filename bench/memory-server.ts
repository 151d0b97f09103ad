// A loopback HTTP server that serves image files from memory, for the benchmarks that fetch them.
//
// It shares the machine with what it measures (two cores here), so every CPU cycle it spends is taken
// from the pipeline under test. node:http costs about 0.25 ms of CPU per request (parser, header
// objects, a ServerResponse per request); this server answers from prebuilt buffers instead (each
// file's whole response, head and body, is one Buffer made at start), which measured about 4x less.
// It speaks just enough HTTP/1.1 for a keep-alive client: GET or HEAD of `/<index>[.ext]`, requests
// possibly pipelined on one connection, 404 for anything else, 400 and a closed socket for garbage.

import { createServer, type Socket } from 'node:net';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';

/** Longest request head accepted; a client sending more without a blank line is cut off. */
const MAX_HEAD_BYTES = 16 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n');

function response(status: string, type: string | undefined, body: Buffer): { head: Buffer; body: Buffer } {
  const lines = [`HTTP/1.1 ${status}`, `content-length: ${body.length}`, 'connection: keep-alive', 'keep-alive: timeout=30'];
  if (type !== undefined) lines.push(`content-type: ${type}`);
  return { head: Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body };
}

/** Serves the files from memory with keep-alive, so the server's own CPU cost stays small. */
export interface MemoryServerOptions {
  /** Called with the file index of every GET or HEAD of a file, before the answer is written. */
  readonly onRequest?: (index: number) => void;
}

export async function memoryServer(files: string[], options: MemoryServerOptions = {}): Promise<{ baseUrl: string; close(): Promise<void> }> {
  const answers = await Promise.all(
    files.map(async (f) => {
      const r = response('200 OK', 'image/jpeg', await fs.readFile(f));
      // Head and body in one buffer: one write, one syscall per response.
      return { full: Buffer.concat([r.head, r.body]), head: r.head };
    }),
  );
  const notFound = response('404 Not Found', 'text/plain', Buffer.from('not found\n'));
  const notFoundFull = Buffer.concat([notFound.head, notFound.body]);
  const badRequest = Buffer.from('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n', 'latin1');
  const sockets = new Set<Socket>();

  /** The answer to one request head (latin1 text up to the blank line), or undefined for garbage. */
  const answer = (head: string): Buffer | undefined => {
    const lineEnd = head.indexOf('\r\n');
    const [method, target] = (lineEnd < 0 ? head : head.slice(0, lineEnd)).split(' ', 3);
    if ((method !== 'GET' && method !== 'HEAD') || target === undefined || !target.startsWith('/')) return undefined;
    const index = Number.parseInt(target.slice(1), 10);
    const found = Number.isInteger(index) && index >= 0 && index < answers.length ? answers[index]! : undefined;
    if (found !== undefined) options.onRequest?.(index);
    if (method === 'HEAD') return found?.head ?? notFound.head;
    return found?.full ?? notFoundFull;
  };

  const server = createServer((socket) => {
    sockets.add(socket);
    socket.setNoDelay(true);
    let pending: Buffer | undefined;
    socket.on('data', (chunk: Buffer) => {
      let data = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
      pending = undefined;
      for (;;) {
        const end = data.indexOf(HEAD_END);
        if (end < 0) break;
        const reply = answer(data.toString('latin1', 0, end));
        if (reply === undefined) {
          socket.end(badRequest);
          return;
        }
        socket.write(reply);
        data = data.subarray(end + HEAD_END.length);
      }
      if (data.length > MAX_HEAD_BYTES) {
        socket.end(badRequest);
        return;
      }
      if (data.length > 0) pending = Buffer.from(data);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
    // Like node:http's keepAliveTimeout: an idle client's socket goes after 30 s.
    socket.setTimeout(30_000, () => socket.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
