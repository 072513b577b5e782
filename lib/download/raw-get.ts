// One GET on a connection of its own, whose body the kernel reads straight into the image's memory
// (net and tls `onread` with a buffer we choose for every read). Node's HTTP client copies each body
// chunk twice more (its parser's own Buffer, then our copy into the image) and its per-read Buffers
// force mark-compact collections: ~0.5 s of the main thread's CPU per GiB over loopback (measured).
//
// Only the part of HTTP/1.1 a download needs: a response framed by Content-Length. Anything else
// (a redirect, a chunked or close-delimited body, a proxy, credentials in the URL) is 'unsupported'
// before a byte of body is taken, and the caller makes the request with got instead.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Timeouts } from './settings.ts';

export interface ResponseHead {
  readonly statusCode: number;
  readonly statusMessage: string;
  /** Lower-case names; a repeated header's values joined by ", " (set-cookie's are not needed). */
  readonly headers: Readonly<Record<string, string>>;
}

/** Where a body goes: filled in place, read by read. */
export interface BodySink {
  /** Room for the next bytes, at most `most` of them (never empty while `most` > 0). */
  room(most: number): Uint8Array;
  /** `n` bytes were written at the start of the last room given. */
  grow(n: number): void;
}

export interface RawGetOptions {
  readonly timeouts: Timeouts;
  readonly signal: AbortSignal;
  /** The trusted CAs of an https connection, asked for when one is made. */
  readonly ca: () => string[];
}

export type RawGet =
  | { readonly unsupported: string }
  | {
      readonly head: ResponseHead;
      /** Body bytes announced by Content-Length (0 for a status without a body). */
      readonly length: number;
      /** Reads the whole body into `sink`; rejects if the connection ends or stalls first. */
      readonly body: (sink: BodySink) => Promise<void>;
      /** Ends the connection (the body, if not read, is left). */
      readonly close: () => void;
    };

/** Largest response head taken (Node's own default limit is 16 KiB). */
const MAX_HEAD_BYTES = 64 * 1024;

/** Why `url` is not for the raw path, or undefined when it is. */
export function rawUnsupported(url: URL, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${url.protocol} URL`;
  if (url.username !== '' || url.password !== '') return 'credentials in the URL';
  // Node's agents honour these (with NO_PROXY): any proxy setting leaves the request to them.
  const proxy = url.protocol === 'http:' ? ['HTTP_PROXY', 'http_proxy'] : ['HTTPS_PROXY', 'https_proxy'];
  if (proxy.some((name) => (env[name] ?? '') !== '')) return 'a proxy is set';
  return undefined;
}

class RawHttpError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Sends `GET url` with `headers` and reads the response head. The caller must first check
 * rawUnsupported(url).
 */
export function rawGet(url: URL, headers: Readonly<Record<string, string>>, options: RawGetOptions): Promise<RawGet> {
  const { signal, timeouts } = options;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  let request: string;
  try {
    request = requestHead(url, headers);
  } catch (error) {
    return Promise.reject(error as Error);
  }
  return new Promise<RawGet>((resolve, reject) => {
    // Reads go into the head buffer, then (once body() is called) into the sink; in between, and
    // once the body is whole, the socket is not read.
    let phase: 'head' | 'waiting' | 'body' | 'over' = 'head';
    const headBuffer = Buffer.allocUnsafe(MAX_HEAD_BYTES);
    let headBytes = 0;
    let sink: BodySink | undefined;
    let remaining = 0;
    let failure: Error | undefined;
    let settleBody: ((error?: Error) => void) | undefined;
    let timer: NodeJS.Timeout | undefined;

    const fail = (error: Error) => {
      if (phase === 'over') return;
      clearTimeout(timer);
      socket.destroy();
      failure ??= error;
      if (phase === 'head') reject(error);
      else settleBody?.(error);
      phase = 'over';
    };
    const onAbort = () => fail(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    const deadline = (ms: number, what: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => fail(new RawHttpError(`Timeout awaiting '${what}' for ${ms}ms`, 'ETIMEDOUT')), ms);
    };

    // Where the next read goes, asked for after each read. Between the head and body() reading is
    // stopped, but the buffer of the next read is chosen then: the spare, copied to the sink after.
    const spare = Buffer.allocUnsafe(64 * 1024);
    let lastRoom: Uint8Array | undefined;
    const onread: net.OnReadOpts = {
      buffer: (): Uint8Array => {
        if (phase === 'head') return headBuffer.subarray(headBytes);
        if (phase === 'body' && remaining > 0) return (lastRoom = sink!.room(remaining));
        return spare;
      },
      callback: (n: number, into: Uint8Array): boolean => {
        if (phase === 'head') {
          headBytes += n;
          parseHead();
        } else if (phase === 'body') {
          if (into === lastRoom) {
            sink!.grow(n);
            remaining -= n;
          } else take(into.subarray(0, n));
          if (remaining === 0) finishBody();
        }
        return phase === 'head' || phase === 'body';
      },
    };
    /** Copies bytes read elsewhere than the sink's room into it (at most what the body lacks). */
    const take = (bytes: Uint8Array) => {
      for (let at = 0; at < bytes.length && remaining > 0;) {
        const room = sink!.room(Math.min(remaining, bytes.length - at));
        room.set(bytes.subarray(at, at + room.length));
        sink!.grow(room.length);
        at += room.length;
        remaining -= room.length;
      }
    };

    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const secure = url.protocol === 'https:';
    // tls.connect takes `onread` as net.connect does (Node's documentation); its types lack it.
    const tlsOptions = (): tls.ConnectionOptions & { onread: net.OnReadOpts } => ({
      host,
      port,
      ...(net.isIP(host) === 0 && { servername: host }),
      ca: options.ca(),
      ALPNProtocols: ['http/1.1'],
      onread,
    });
    const socket: net.Socket = secure ? tls.connect(tlsOptions()) : net.connect({ host, port, onread });
    deadline(timeouts.connect, secure ? 'secureConnect' : 'connect');
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      socket.write(request);
      deadline(timeouts.response, 'response');
    });
    socket.on('error', (error) => fail(error));
    socket.on('end', () => fail(new RawHttpError(phase === 'head' ? 'socket hang up' : 'aborted', 'ECONNRESET')));
    socket.on('close', () => {
      signal.removeEventListener('abort', onAbort);
      fail(new RawHttpError('socket hang up', 'ECONNRESET'));
    });

    const finishBody = () => {
      phase = 'over';
      clearTimeout(timer);
      socket.destroy();
      settleBody?.();
    };

    const parseHead = () => {
      const end = headBuffer.subarray(0, headBytes).indexOf('\r\n\r\n');
      if (end < 0) {
        if (headBytes === MAX_HEAD_BYTES)
          fail(new RawHttpError(`response head larger than ${MAX_HEAD_BYTES} bytes`, 'HPE_HEADER_OVERFLOW'));
        return;
      }
      let head: ResponseHead;
      try {
        head = parseResponseHead(headBuffer.toString('latin1', 0, end));
      } catch (error) {
        return fail(error as Error);
      }
      if (head.statusCode >= 100 && head.statusCode < 200) {
        // An interim answer (100 Continue, 103 Early Hints): the real one follows.
        headBuffer.copy(headBuffer, 0, end + 4, headBytes);
        headBytes -= end + 4;
        return parseHead();
      }
      clearTimeout(timer);
      const framing = bodyLength(head);
      if (typeof framing === 'string') {
        phase = 'over';
        socket.destroy();
        return resolve({ unsupported: framing });
      }
      phase = 'waiting';
      remaining = framing;
      // Body bytes that came with the head.
      const early = Buffer.from(headBuffer.subarray(end + 4, headBytes));
      resolve({
        head,
        length: framing,
        close: () => {
          phase = 'over';
          clearTimeout(timer);
          socket.destroy();
        },
        body: (into) =>
          new Promise<void>((resolveBody, rejectBody) => {
            if (failure) return rejectBody(failure);
            if (phase !== 'waiting') return rejectBody(new Error('the body was already taken'));
            settleBody = (error) => (error ? rejectBody(error) : resolveBody());
            sink = into;
            take(early);
            if (remaining === 0) return finishBody();
            phase = 'body';
            socket.setTimeout(timeouts.idle, () =>
              fail(new RawHttpError(`Timeout awaiting 'socket' for ${timeouts.idle}ms`, 'ETIMEDOUT')),
            );
            socket.resume();
          }),
      });
    };
  });
}

/** The request: what got would send for the same GET, and `Connection: close` (one request per connection). */
function requestHead(url: URL, headers: Readonly<Record<string, string>>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
  const names = new Set<string>();
  for (const [name, value] of Object.entries(headers)) {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    names.add(name.toLowerCase());
    lines.push(`${name}: ${value}`);
  }
  if (!names.has('user-agent')) lines.push('User-Agent: byoi');
  if (!names.has('accept-encoding')) lines.push('Accept-Encoding: identity');
  lines.push('Connection: close');
  return `${lines.join('\r\n')}\r\n\r\n`;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Status line and header fields, as RFC 9112 has them; obsolete line folding is refused. */
export function parseResponseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
  if (!status)
    throw new RawHttpError(`malformed status line ${JSON.stringify(lines[0]!.slice(0, 80))}`, 'HPE_INVALID_CONSTANT');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name) || /[\0\r\n]/.test(line))
      throw new RawHttpError(`malformed header line ${JSON.stringify(line.slice(0, 80))}`, 'HPE_INVALID_HEADER_TOKEN');
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return { statusCode: Number(status[1]), statusMessage: status[2] ?? '', headers };
}

/** The body's length, or why this response is not for the raw path. */
function bodyLength(head: ResponseHead): number | string {
  const { statusCode, headers } = head;
  if (statusCode >= 300 && statusCode < 400 && statusCode !== 304) return `a redirect (HTTP ${statusCode})`;
  if (statusCode === 204 || statusCode === 304) return 0;
  if (statusCode < 200 || statusCode >= 300) return 0; // an error's body is never read
  if (headers['transfer-encoding'] !== undefined) return 'a Transfer-Encoding';
  const declared = headers['content-length'];
  if (declared === undefined) return 'no Content-Length';
  // A repeated Content-Length must repeat the same value (RFC 9112 6.3).
  const values = new Set(declared.split(',').map((v) => v.trim()));
  const [value] = values;
  if (values.size !== 1 || !/^\d+$/.test(value!) || !Number.isSafeInteger(Number(value)))
    return `Content-Length ${JSON.stringify(declared)}`;
  return Number(value);
}
