// A real HTTP server on 127.0.0.1 for download tests, serving in-memory bodies in several ways:
// plainly, without Content-Length, cut off mid-body, or lying about its length, and a
// fault-injecting mode that honours Range/If-Range and misbehaves on chosen requests. Every
// request's headers are recorded so tests can check what was sent.
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

export type Serving =
  /** `chunked`: no Content-Length, the body in two chunks. */
  | { readonly body: Uint8Array; readonly mode?: 'plain' | 'chunked' }
  /** Sends Content-Length of the whole body, then `bytes` of it, then resets the connection. */
  | { readonly body: Uint8Array; readonly mode: 'cut'; readonly bytes: number }
  /** Answers with this HTTP status and the body. */
  | { readonly body: Uint8Array; readonly mode: 'status'; readonly status: number }
  /** Requires these request headers, else 401. */
  | { readonly body: Uint8Array; readonly mode: 'auth'; readonly headers: Readonly<Record<string, string>> }
  /** Redirects (302) to `location`, which may be this very path. */
  | { readonly body?: undefined; readonly mode: 'redirect'; readonly location: string }
  /**
   * Serves `body` with an ETag (and Range/If-Range support, `bytes=A-` and `bytes=A-B`, unless
   * `ranges` is false); request
   * number n (from 0) suffers `faults[n]`, the later ones are served properly.
   */
  | {
      readonly body: Uint8Array;
      readonly mode: 'faulty';
      readonly faults: readonly Fault[];
      readonly etag?: string;
      readonly ranges?: boolean;
      /** The k-th request (from 0) for a range starting at byte S suffers `byStart[S][k]`. */
      readonly byStart?: Readonly<Record<number, readonly Fault[]>>;
    };

export type Fault =
  /** Sends the headers, then the body up to absolute byte `drop`, then resets the connection. */
  | { readonly drop: number }
  /** Sends the body up to absolute byte `stall`, then sends nothing more, holding the connection open. */
  | { readonly stall: number }
  /** Answers this status (with Retry-After when given) and a short body. */
  | { readonly status: number; readonly retryAfter?: string }
  /** Announces `extra` more bytes than it sends, then closes the connection. */
  | { readonly lie: number }
  /** Answers a Range request with 206 and a Content-Range `shift` bytes off the one asked for. */
  | { readonly wrongRange: number }
  /** The resource changes before this request is answered: a new body and ETag from now on. */
  | { readonly replace: Uint8Array; readonly etag: string };

export interface TestServer {
  readonly url: string;
  readonly requests: { path: string; headers: IncomingHttpHeaders }[];
  serve(path: string, serving: Serving): void;
  close(): Promise<void>;
}

export async function startServer(): Promise<TestServer> {
  const routes = new Map<string, Serving>();
  const requests: TestServer['requests'] = [];
  const faultCounts = new Map<string, number>();
  const startCounts = new Map<string, number>();
  const current = new Map<string, { body: Uint8Array; etag: string }>();

  function serveFaulty(
    path: string,
    serving: Extract<Serving, { mode: 'faulty' }>,
    fault: Fault | undefined,
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    if (fault && 'replace' in fault) current.set(path, { body: fault.replace, etag: fault.etag });
    const { body, etag } = current.get(path) ?? { body: serving.body, etag: serving.etag ?? '"v1"' };
    if (fault && 'status' in fault) {
      res
        .writeHead(fault.status, {
          'content-length': 4,
          ...(fault.retryAfter !== undefined && { 'retry-after': fault.retryAfter }),
        })
        .end('oops');
      return;
    }
    const ranges = serving.ranges !== false;
    const asked = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    const ranged = ranges && asked !== null && (ifRange === undefined || ifRange === etag);
    let start = ranged ? Number(asked[1]) : 0;
    // Exclusive.
    const stop = ranged && asked[2] ? Math.min(Number(asked[2]) + 1, body.length) : body.length;
    if (ranged && start >= body.length) {
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
    const headers: Record<string, string | number> = { etag, 'accept-ranges': ranges ? 'bytes' : 'none' };
    if (ranged) {
      const shown = fault && 'wrongRange' in fault ? start + fault.wrongRange : start;
      headers['content-range'] = `bytes ${shown}-${stop - 1}/${body.length}`;
    } else if (fault && 'wrongRange' in fault) start = 0;
    const end = Math.min(
      stop,
      fault && 'drop' in fault ? fault.drop : fault && 'stall' in fault ? fault.stall : body.length,
    );
    headers['content-length'] = stop - start + (fault && 'lie' in fault ? fault.lie : 0);
    res.writeHead(ranged ? 206 : 200, headers);
    const part = body.subarray(start, Math.max(start, end));
    if (fault && 'stall' in fault) res.write(part);
    else if (fault && ('drop' in fault || 'lie' in fault))
      res.write(part, () => setTimeout(() => req.socket.destroy(), 10));
    else res.end(part);
  }
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    requests.push({ path, headers: req.headers });
    const serving = routes.get(path);
    if (!serving) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    if (serving.mode === 'redirect') {
      res.writeHead(302, { location: serving.location }).end();
      return;
    }
    if (serving.mode === 'faulty') {
      const n = (faultCounts.get(path) ?? 0) + 1;
      faultCounts.set(path, n);
      const start = /^bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1];
      const key = `${path} ${start}`;
      const k = (startCounts.get(key) ?? 0) + 1;
      startCounts.set(key, k);
      const byStart = start === undefined ? undefined : serving.byStart?.[Number(start)]?.[k - 1];
      serveFaulty(path, serving, byStart ?? serving.faults[n - 1], req, res);
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
    serve: (path, serving) => {
      routes.set(path, serving);
      faultCounts.delete(path);
      for (const key of startCounts.keys()) if (key.startsWith(`${path} `)) startCounts.delete(key);
      current.delete(path);
    },
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
