// The fleet benchmark's load balancer: a small round-robin HTTP proxy on 127.0.0.1, as any operator's
// HAProxy or nginx would be in front of several `byoi serve` replicas. A replica that refuses the
// connection (it is down) is skipped for a second and the request, which never reached it, goes to the
// next; a request a replica dropped half-way gets 502, and its client retries.
import { createServer, request, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const DOWN_FOR_MS = 1000;

export interface Proxy {
  readonly url: string;
  close(): Promise<void>;
}

export async function startProxy(upstreams: readonly string[]): Promise<Proxy> {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const downUntil = new Map<string, number>();
  let next = 0;

  const pick = (): string | undefined => {
    for (let i = 0; i < upstreams.length; i++) {
      const upstream = upstreams[next++ % upstreams.length]!;
      if ((downUntil.get(upstream) ?? 0) <= Date.now()) return upstream;
    }
    return undefined;
  };

  const forward = (incoming: IncomingMessage, body: Buffer, reply: ServerResponse, tries: number): void => {
    const upstream = pick();
    if (!upstream) return void reply.writeHead(502).end();
    const outgoing = request(
      `${upstream}${incoming.url}`,
      { method: incoming.method, headers: incoming.headers, agent },
      (response) => {
        reply.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(reply);
      },
    );
    outgoing.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') {
        downUntil.set(upstream, Date.now() + DOWN_FOR_MS);
        if (tries < upstreams.length) return forward(incoming, body, reply, tries + 1);
      }
      if (!reply.headersSent) reply.writeHead(502).end();
      else reply.destroy();
    });
    outgoing.end(body);
  };

  const server = createServer((incoming, reply) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => forward(incoming, Buffer.concat(chunks), reply, 1));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
