// A real HTTP server on 127.0.0.1 for download tests, serving in-memory bodies in several ways:
// plainly, without Content-Length, cut off mid-body, or lying about its length. Every request's
// headers are recorded so tests can check what was sent.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Serving =
  /** `chunked`: no Content-Length, the body in two chunks. */
  | { readonly body: Uint8Array; readonly mode?: 'plain' | 'chunked' }
  /** Sends Content-Length of the whole body, then `bytes` of it, then resets the connection. */
  | { readonly body: Uint8Array; readonly mode: 'cut'; readonly bytes: number }
  /** Answers with this HTTP status and the body. */
  | { readonly body: Uint8Array; readonly mode: 'status'; readonly status: number }
  /** Requires these request headers, else 401. */
  | { readonly body: Uint8Array; readonly mode: 'auth'; readonly headers: Readonly<Record<string, string>> };

export interface TestServer {
  readonly url: string;
  readonly requests: { path: string; headers: IncomingHttpHeaders }[];
  serve(path: string, serving: Serving): void;
  close(): Promise<void>;
}

export async function startServer(): Promise<TestServer> {
  const routes = new Map<string, Serving>();
  const requests: TestServer['requests'] = [];
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push({ path, headers: req.headers });
    const serving = routes.get(path);
    if (!serving) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const { body } = serving;
    switch (serving.mode) {
      case undefined:
      case 'plain':
        res.writeHead(200, { 'content-length': body.length }).end(body);
        return;
      case 'chunked':
        res.writeHead(200);
        res.write(body.subarray(0, Math.floor(body.length / 2)));
        res.end(body.subarray(Math.floor(body.length / 2)));
        return;
      case 'cut':
        res.writeHead(200, { 'content-length': body.length });
        res.write(body.subarray(0, serving.bytes), () => setTimeout(() => req.socket.destroy(), 20));
        return;
      case 'status':
        res.writeHead(serving.status, { 'content-length': body.length }).end(body);
        return;
      case 'auth': {
        const ok = Object.entries(serving.headers).every(([name, value]) => req.headers[name.toLowerCase()] === value);
        if (!ok) res.writeHead(401).end('unauthorized');
        else res.writeHead(200, { 'content-length': body.length }).end(body);
        return;
      }
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    serve: (path, serving) => routes.set(path, serving),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
