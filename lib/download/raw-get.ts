// One GET on a connection of its own, whose body the kernel reads straight into the image's memory
// (net and tls `onread` with a buffer we choose for every read). Node's HTTP client copies each body
// chunk twice more (its parser's own Buffer, then our copy into the image) and its per-read Buffers
// force mark-compact collections: ~0.5 s of the main thread's CPU per GiB over loopback (measured).
//
// Only the part of HTTP/1.1 a download needs: a response framed by Content-Length. Anything else
// (a redirect, a chunked or close-delimited body, a proxy, credentials in the URL, a job header that
// frames the exchange) is 'unsupported' before a byte of body is taken, and the caller makes the
// request with got instead.
import * as net from 'node:net';
import * as tls from 'node:tls';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { Timeouts } from './settings.ts';

export interface ResponseHead {
  readonly statusCode: number;
  readonly statusMessage: string;
  /**
   * Lower-case names. A repeated header: its first value for those Node keeps one of (ETag,
   * Content-Length, Retry-After...), else its values joined by ", ".
   */
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

/**
 * A read of less than this drained the socket: the next one waits READ_PAUSE_MS, so that the kernel
 * gathers what arrives meanwhile and reads stay large. Read as fast as it comes, a fast link (or a
 * server writing 16 KiB at a time over loopback) costs a wakeup and a read per few KiB: CPU that
 * the sender and the early decoding pass want (the kernel's receive buffer holds a millisecond of
 * even a 10 Gbit/s link).
 */
const SMALL_READ = 64 * 1024;
const READ_PAUSE_MS = 1;

/**
 * Request headers that frame or route the exchange: a job that sets one is left to got, which
 * knows what to do with each (a second Host, a Transfer-Encoding without its body, a keep-alive).
 */
const FRAMING_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'keep-alive',
  'expect',
  'proxy-connection',
]);

/** Why a GET of `url` with `headers` is not for the raw path, or undefined when it is. */
export function rawUnsupported(
  url: URL,
  headers: Readonly<Record<string, string>> = {},
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${url.protocol} URL`;
  if (url.username !== '' || url.password !== '') return 'credentials in the URL';
  // Node's agents honour these (with NO_PROXY): any proxy setting leaves the request to them.
  const proxy = url.protocol === 'http:' ? ['HTTP_PROXY', 'http_proxy'] : ['HTTPS_PROXY', 'https_proxy'];
  if (proxy.some((name) => (env[name] ?? '') !== '')) return 'a proxy is set';
  const framing = Object.keys(headers).find((name) => FRAMING_HEADERS.has(name.toLowerCase()));
  if (framing !== undefined) return `a ${framing} header`;
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
 * rawUnsupported(url, headers).
 */
export function rawGet(url: URL, headers: Readonly<Record<string, string>>, options: RawGetOptions): Promise<RawGet> {
  const { signal } = options;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  try {
    return new Exchange(url, requestHead(url, headers), options).answer;
  } catch (error) {
    return Promise.reject(error as Error);
  }
}

/**
 * One connection's life. Reads go into the head buffer, then into the body's sink; between the head
 * and body() (the same tick in download.ts) reading is stopped, but a TLS socket still hands over
 * the records it had decrypted: those are kept and taken first.
 */
class Exchange {
  readonly answer: Promise<RawGet>;
  private phase: 'head' | 'waiting' | 'body' | 'over' = 'head';
  private readonly headBuffer = Buffer.allocUnsafe(MAX_HEAD_BYTES);
  private headBytes = 0;
  /** Body bytes read before body() was called: with the head, and while waiting. */
  private early: Buffer[] = [];
  /** The connection ended while waiting: the body is what `early` holds. */
  private endedEarly = false;
  private sink: BodySink | undefined;
  private remaining = 0;
  /** The last room the sink gave, where the read in flight lands. */
  private lastRoom: Uint8Array | undefined;
  /** Where a read goes outside the head and body phases (Node asks for a buffer after every read). */
  private readonly spare = Buffer.allocUnsafe(64 * 1024);
  private failure: Error | undefined;
  private rejectHead: ((error: Error) => void) | undefined;
  private settleBody: ((error?: Error) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pauseTimer: NodeJS.Timeout | undefined;
  private readonly socket: net.Socket;
  private readonly onAbort = () => this.fail(this.options.signal.reason as Error);

  private readonly request: string;
  private readonly options: RawGetOptions;
  private readonly resolveHead: (answer: RawGet) => void;

  constructor(url: URL, request: string, options: RawGetOptions) {
    this.request = request;
    this.options = options;
    let resolveHead!: (answer: RawGet) => void;
    this.answer = new Promise<RawGet>((resolve, reject) => {
      resolveHead = resolve;
      this.rejectHead = reject;
    });
    const onread: net.OnReadOpts = {
      // An exception here would be thrown out of Node's read callback: the exchange fails instead.
      buffer: () => this.guarded(() => this.nextBuffer(), this.spare),
      callback: (n, into) => this.guarded(() => this.received(n, into), false),
    };
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const secure = url.protocol === 'https:';
    // tls.connect takes `onread` as net.connect does (Node's documentation); its types lack it.
    const tlsOptions: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
      host,
      port,
      ...(net.isIP(host) === 0 && { servername: host }),
      ca: secure ? options.ca() : [],
      ALPNProtocols: ['http/1.1'],
      onread,
    };
    this.socket = secure ? tls.connect(tlsOptions) : net.connect({ host, port, onread });
    this.resolveHead = resolveHead;
    options.signal.addEventListener('abort', this.onAbort, { once: true });

    // As got times them: the name lookup, the TCP connection, the TLS handshake, each within `connect`.
    const { connect, response } = options.timeouts;
    this.deadline(connect, net.isIP(host) === 0 ? 'lookup' : 'connect');
    this.socket.once('lookup', () => {
      if (this.phase === 'head') this.deadline(connect, 'connect');
    });
    this.socket.once('connect', () => {
      if (secure) this.deadline(connect, 'secureConnect');
      else this.sendRequest(response);
    });
    if (secure) this.socket.once('secureConnect', () => this.sendRequest(response));
    this.socket.on('error', (error) => this.fail(error));
    this.socket.on('end', () => {
      if (this.phase === 'waiting') this.endedEarly = true;
      else this.fail(new RawHttpError(this.phase === 'head' ? 'socket hang up' : 'aborted', 'ECONNRESET'));
    });
    this.socket.on('close', () => {
      options.signal.removeEventListener('abort', this.onAbort);
      if (this.phase !== 'waiting') this.fail(new RawHttpError('socket hang up', 'ECONNRESET'));
    });
  }

  private sendRequest(responseTimeout: number): void {
    this.socket.write(this.request, 'latin1'); // as Node writes header values
    this.deadline(responseTimeout, 'response');
  }

  private deadline(ms: number, what: string): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => this.fail(new RawHttpError(`Timeout awaiting '${what}' for ${ms}ms`, 'ETIMEDOUT')),
      ms,
    );
  }

  private guarded<T>(work: () => T, fallback: T): T {
    try {
      return work();
    } catch (error) {
      this.fail(error as Error);
      return fallback;
    }
  }

  private nextBuffer(): Uint8Array {
    if (this.phase === 'head') return this.headBuffer.subarray(this.headBytes);
    if (this.phase === 'body' && this.remaining > 0) return (this.lastRoom = this.sink!.room(this.remaining));
    return this.spare;
  }

  /** `n` bytes were read into `into`; returns whether to go on reading. */
  private received(n: number, into: Uint8Array): boolean {
    if (this.phase === 'head') {
      this.headBytes += n;
      this.parseHead();
    } else if (this.phase === 'waiting') {
      this.early.push(Buffer.from(into.subarray(0, n)));
    } else if (this.phase === 'body') {
      if (into === this.lastRoom) {
        this.sink!.grow(n);
        this.remaining -= n;
      } else this.take(into.subarray(0, n));
      if (this.remaining === 0) this.finishBody();
      else if (n < SMALL_READ) return this.pauseReading();
    }
    return this.phase === 'head' || this.phase === 'body';
  }

  /** Stops reading for READ_PAUSE_MS (see SMALL_READ); returns false, which stops it. */
  private pauseReading(): false {
    this.pauseTimer ??= setTimeout(() => {
      this.pauseTimer = undefined;
      if (this.phase === 'body') this.socket.resume();
    }, READ_PAUSE_MS);
    return false;
  }

  /** Copies bytes read elsewhere than the sink's room into it (at most what the body lacks). */
  private take(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length && this.remaining > 0;) {
      const room = this.sink!.room(Math.min(this.remaining, bytes.length - at));
      room.set(bytes.subarray(at, at + room.length));
      this.sink!.grow(room.length);
      at += room.length;
      this.remaining -= room.length;
    }
  }

  private fail(error: Error): void {
    if (this.phase === 'over') return;
    const phase = this.phase;
    this.failure = error;
    this.end();
    if (phase === 'head') this.rejectHead?.(error);
    else this.settleBody?.(error);
  }

  private finishBody(): void {
    this.end();
    this.settleBody?.();
  }

  /** No more reads, timers or connection. */
  private end(): void {
    this.phase = 'over';
    clearTimeout(this.timer);
    clearTimeout(this.pauseTimer);
    this.socket.destroy();
  }

  /** Drops the head buffer's first `n` bytes (an empty line, an interim answer). */
  private dropHead(n: number): void {
    this.headBuffer.copy(this.headBuffer, 0, n, this.headBytes);
    this.headBytes -= n;
  }

  private parseHead(): void {
    // Empty lines before the status line are skipped (RFC 9112 2.2), as Node's parser does.
    let blank = 0;
    while (blank < this.headBytes && (this.headBuffer[blank] === 0x0d || this.headBuffer[blank] === 0x0a)) blank++;
    if (blank > 0) this.dropHead(blank);
    const end = this.headBuffer.subarray(0, this.headBytes).indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headBytes === MAX_HEAD_BYTES)
        this.fail(new RawHttpError(`response head larger than ${MAX_HEAD_BYTES} bytes`, 'HPE_HEADER_OVERFLOW'));
      return;
    }
    const parsed = parseResponseHead(this.headBuffer.toString('latin1', 0, end));
    if (parsed.head.statusCode >= 100 && parsed.head.statusCode < 200) {
      // An interim answer (100 Continue, 103 Early Hints): the real one follows.
      this.dropHead(end + 4);
      return this.parseHead();
    }
    clearTimeout(this.timer);
    const framing = bodyLength(parsed);
    if (typeof framing === 'string') {
      this.end();
      return this.resolveHead({ unsupported: framing });
    }
    this.phase = 'waiting';
    this.remaining = framing;
    this.early.push(Buffer.from(this.headBuffer.subarray(end + 4, this.headBytes)));
    this.resolveHead({
      head: parsed.head,
      length: framing,
      close: () => this.fail(new RawHttpError('closed before the body was read', 'ECONNRESET')),
      body: (sink) => this.readBody(sink),
    });
  }

  private readBody(sink: BodySink): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.phase !== 'waiting') return reject(this.failure ?? new Error('the body was already taken'));
      this.settleBody = (error) => (error ? reject(error) : resolve());
      this.sink = sink;
      // One guard for all: once the sink threw, nothing more is put in it.
      this.guarded(() => this.early.forEach((bytes) => this.take(bytes)), undefined);
      this.early = [];
      if (this.failure) return; // the sink failed: settled
      if (this.remaining === 0) return this.finishBody();
      if (this.endedEarly) return this.fail(new RawHttpError('aborted', 'ECONNRESET'));
      this.phase = 'body';
      const { idle } = this.options.timeouts;
      this.socket.setTimeout(idle, () =>
        this.fail(new RawHttpError(`Timeout awaiting 'socket' for ${idle}ms`, 'ETIMEDOUT')),
      );
      this.socket.resume();
    });
  }
}

/** The request: what got would send for the same GET, and `Connection: close` (one request per connection). */
function requestHead(url: URL, headers: Readonly<Record<string, string>>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`];
  // Names differing only in case are one header, the last given wins (as got sends them).
  const byName = new Map<string, [string, string]>();
  for (const [name, value] of Object.entries(headers)) {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    byName.set(name.toLowerCase(), [name, value]);
  }
  for (const [name, value] of byName.values()) lines.push(`${name}: ${value}`);
  if (!byName.has('user-agent')) lines.push('User-Agent: byoi');
  if (!byName.has('accept-encoding')) lines.push('Accept-Encoding: identity');
  lines.push('Connection: close');
  return `${lines.join('\r\n')}\r\n\r\n`;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Field values: visible characters, spaces and tabs, and obs-text (RFC 9110 5.5). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Headers Node keeps the first of when repeated (IncomingMessage's rule); others are joined. */
const SINGLE_VALUED = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

interface ParsedHead {
  readonly head: ResponseHead;
  /** Every Content-Length value sent (a repeated one must repeat the same value). */
  readonly contentLengths: readonly string[];
}

/** Status line and header fields, as RFC 9112 has them (obsolete line folding is refused). */
export function parseResponseHead(text: string): ParsedHead {
  const lines = text.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(lines[0]!);
  if (!status)
    // The server's bytes are not quoted: a hostile one could echo a job header (a secret) into the log.
    throw new RawHttpError('malformed status line', 'HPE_INVALID_CONSTANT');
  const headers: Record<string, string> = {};
  const contentLengths: string[] = [];
  for (const [index, line] of lines.entries()) {
    if (index === 0) continue; // the status line
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (colon <= 0 || !TOKEN.test(name) || !FIELD_VALUE.test(value))
      throw new RawHttpError(`malformed header line ${index + 1}`, 'HPE_INVALID_HEADER_TOKEN');
    const key = name.toLowerCase();
    if (key === 'content-length') contentLengths.push(value);
    if (!(key in headers)) headers[key] = value;
    else if (!SINGLE_VALUED.has(key)) headers[key] = `${headers[key]}, ${value}`;
  }
  return { head: { statusCode: Number(status[1]), statusMessage: status[2] ?? '', headers }, contentLengths };
}

/** The body's length, or why this response is not for the raw path. */
function bodyLength({ head, contentLengths }: ParsedHead): number | string {
  const { statusCode, headers } = head;
  if (statusCode >= 300 && statusCode < 400 && statusCode !== 304) return `a redirect (HTTP ${statusCode})`;
  if (statusCode < 200 || statusCode >= 300 || statusCode === 204) return 0; // such a body is never read
  if (headers['transfer-encoding'] !== undefined) return 'a Transfer-Encoding';
  if (contentLengths.length === 0) return 'no Content-Length';
  // Repeated, it must repeat the same value (RFC 9112 6.3); anything else is got's (Node's parser) to refuse.
  const [value] = contentLengths;
  if (!/^\d{1,15}$/.test(value!) || contentLengths.some((v) => v !== value))
    return `Content-Length ${JSON.stringify(contentLengths.join(', '))}`;
  return Number(value);
}
