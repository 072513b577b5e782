// HTTP/1.1 spoken by hand over a TCP socket to 127.0.0.1, for what a well-behaved client never sends:
// broken request lines, lying Content-Lengths, bodies trickled a byte at a time.
import { connect, type Socket } from 'node:net';

export interface RawAnswer {
  /** The status code, or undefined when the server closed without answering. */
  readonly status: number | undefined;
  readonly headers: string;
  readonly body: string;
  /** Milliseconds from connecting until the answer (or the close). */
  readonly ms: number;
  /** Whether the server closed the connection before `timeoutMs`. */
  readonly closed: boolean;
}

/**
 * Connects, lets `talk` write (it may keep writing slowly), and collects what comes back until the
 * server closes the connection, a complete answer arrives (`untilAnswer`) or `timeoutMs` passes.
 */
export function rawExchange(
  port: number,
  talk: (socket: Socket) => void | Promise<void>,
  { timeoutMs = 5000, untilAnswer = true }: { timeoutMs?: number; untilAnswer?: boolean } = {},
): Promise<RawAnswer> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const split = text.indexOf('\r\n\r\n');
      const head = split < 0 ? text : text.slice(0, split);
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
      resolve({
        status: status === undefined ? undefined : Number(status),
        headers: head,
        body: split < 0 ? '' : text.slice(split + 4),
        ms: Date.now() - started,
        closed,
      });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const length = /\r\ncontent-length: (\d+)/i.exec(text)?.[1];
      const split = text.indexOf('\r\n\r\n');
      if (untilAnswer && length !== undefined && split >= 0 && text.length - split - 4 >= Number(length)) finish(true);
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.on('connect', () => void Promise.resolve(talk(socket)).catch(() => finish(true)));
  });
}

/** A request as text: the request line, the headers, a blank line and the body. */
export function requestText(method: string, path: string, headers: Record<string, string | number>, body = ''): string {
  const lines = [
    `${method} ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}
