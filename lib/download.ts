// Downloads an image into RAM: streamed by got into a ChunkedBuffer (no temp file, no single
// giant Buffer) and hashed as bytes arrive. The RAM budget is checked against the announced
// length before the body is read and against the bytes received while they arrive.
//
// A dropped or stalled transfer is resumed where it stopped (Range + If-Range with the ETag, else
// Last-Modified), so the digest is fed once, in order, across attempts. It starts over (buffer
// and digest reset) only when the server cannot resume or the resource changed. Connection
// errors, 5xx, 408 and 429 are retried with jittered exponential backoff (a Retry-After is obeyed
// as given, capped); other answers fail at once; an overall deadline bounds everything.
import * as http from 'node:http';
import * as https from 'node:https';
import { getCACertificates } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { got, type Response } from 'got';
import { backoffDelay, type Backoff } from './backoff.ts';
import { ChunkedBuffer } from './chunked-buffer.ts';
import { RunningDigest } from './checksum.ts';
import { failed, messages } from './errors.ts';
import type { ChecksumType, ImageType } from './job.ts';
import { redactUrl } from './redact.ts';

export interface Timeouts {
  /** DNS lookup, TCP connect, TLS handshake: each, in ms. */
  readonly connect: number;
  /** From the request sent to the response headers, in ms. */
  readonly response: number;
  /** Stall timeout: longest silence while the body flows, in ms. */
  readonly idle: number;
}

export const defaultTimeouts: Timeouts = { connect: 30_000, response: 60_000, idle: 60_000 };

export interface RetryPolicy extends Backoff {
  /** Attempts in a row that may fail without bringing a new byte; then the download fails. */
  readonly attempts: number;
  /** Longest Retry-After obeyed, in ms. */
  readonly retryAfterCap: number;
}

export const defaultRetry: RetryPolicy = { attempts: 8, initialDelay: 1000, maxDelay: 60_000, retryAfterCap: 120_000 };

/** Four hours: several GiB over a slow link, yet a hung deployment still ends. */
export const DEFAULT_DEADLINE_MS = 4 * 3600_000;
export const DEFAULT_MAX_REDIRECTS = 10;

/** How the transfer is made; everything has a default. */
export interface DownloadSettings {
  readonly timeouts?: Timeouts;
  /** Overall deadline of the download, retries and waits included, in ms. */
  readonly deadline?: number;
  readonly retry?: RetryPolicy;
  readonly maxRedirects?: number;
  /** Extra trusted CA certificates (PEM), added to the bundled and system ones. */
  readonly ca?: string;
}

export type DownloadEvent =
  | { readonly kind: 'retry'; readonly attempt: number; readonly delayMs: number; readonly cause: string; readonly resumeFrom: number }
  | { readonly kind: 'restart'; readonly reason: string };

export interface DownloadRequest extends DownloadSettings {
  readonly url: string;
  /** Secrets: sent, never shown. */
  readonly headers: Readonly<Record<string, string>>;
  readonly type: ImageType;
  /** Bytes the image may take in RAM. */
  readonly budget: number;
  /** Digest to compute while downloading. */
  readonly checksumType?: ChecksumType;
  readonly onProgress?: (done: number, total: number | null) => void;
  /** Retries and restarts, for the log. Causes never hold the URL or a header. */
  readonly onEvent?: (event: DownloadEvent) => void;
}

export interface Downloaded {
  readonly image: ChunkedBuffer;
  /** Lower-case hex of `checksumType`'s digest, when one was asked for. */
  readonly digest?: string;
}

/** A failed attempt worth another: after `retryAfter` ms if the server said so, from scratch if `restart`. */
class Retryable extends Error {
  readonly retryAfter: number | undefined;
  readonly restart: boolean;
  constructor(cause: string, options: { retryAfter?: number; restart?: boolean } = {}) {
    super(cause);
    this.retryAfter = options.retryAfter;
    this.restart = options.restart ?? false;
  }
}

/** What is held so far, and what is needed to resume it safely. */
class Transfer {
  image = new ChunkedBuffer();
  digest: RunningDigest | undefined;
  /** The resource's full length, once a response told it. */
  total: number | null = null;
  /** ETag or Last-Modified of the bytes held: If-Range's value. */
  validator: string | null = null;
  rangesRefused = false;
  private readonly checksumType: ChecksumType | undefined;

  constructor(checksumType: ChecksumType | undefined) {
    this.checksumType = checksumType;
    this.digest = checksumType ? new RunningDigest(checksumType) : undefined;
  }

  get canResume(): boolean {
    return this.image.size > 0 && this.validator !== null && !this.rangesRefused;
  }

  /** Drops every byte held and the digest fed with them. */
  restart(): void {
    this.image = new ChunkedBuffer();
    this.digest = this.checksumType ? new RunningDigest(this.checksumType) : undefined;
    this.total = null;
    this.validator = null;
  }
}

function header(response: Response, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function declaredLength(response: Response): number | null {
  const value = header(response, 'content-length');
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : null;
}

/** A strong ETag, else Last-Modified: If-Range accepts no weak ETag. */
function validatorOf(response: Response): string | null {
  const etag = header(response, 'etag');
  if (etag !== undefined && !etag.startsWith('W/')) return etag;
  return header(response, 'last-modified') ?? null;
}

/** `bytes START-END/SIZE`, or null when malformed or inconsistent. */
export function parseContentRange(value: string | undefined): { start: number; end: number; size: number } | null {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value?.trim() ?? '');
  if (!match) return null;
  const [start, end, size] = [Number(match[1]), Number(match[2]), Number(match[3])];
  return start <= end && end < size ? { start, end, size } : null;
}

/** Retry-After in ms (delta-seconds or an HTTP date), undefined when absent or unreadable. */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
}

/** Errors that another attempt cannot cure: a redirect loop, a bad URL, an untrusted certificate. */
function isFatal(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  const name = (error as { name?: unknown }).name;
  if (name === 'MaxRedirectsError' || name === 'UnsupportedProtocolError') return true;
  return typeof code === 'string' && /^(ERR_TOO_MANY_REDIRECTS|ERR_INVALID_URL|ERR_UNSUPPORTED_PROTOCOL|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_)/.test(code);
}

/** Node's bundled CAs, the system's (where a private CA is usually installed) and the extra file. */
function trustedCas(extra: string | undefined): string[] {
  return [...new Set([...getCACertificates('bundled'), ...getCACertificates('system'), ...(extra === undefined ? [] : [extra])])];
}

/** Agents that honour HTTP(S)_PROXY and NO_PROXY (Node's own support), and the extra CA. */
function agents(ca: string | undefined): { http: http.Agent; https: https.Agent } {
  return {
    http: new http.Agent({ proxyEnv: process.env }),
    https: new https.Agent({ proxyEnv: process.env, ca: trustedCas(ca) }),
  };
}

export async function download(request: DownloadRequest): Promise<Downloaded> {
  const retry = request.retry ?? defaultRetry;
  const deadline = request.deadline ?? DEFAULT_DEADLINE_MS;
  const shownUrl = redactUrl(request.url);
  const couldNot = (cause: string) => failed(messages.downloadFailed(shownUrl), cause);
  const transfer = new Transfer(request.checksumType);
  const agent = agents(request.ca);
  const deadlineAt = Date.now() + deadline;
  const overall = AbortSignal.timeout(deadline);
  const late = () => couldNot(messages.downloadDeadline(Math.round(deadline / 1000), transfer.image.size, transfer.total));

  let failures = 0;
  let mostHeld = 0;
  try {
    for (;;) {
      try {
        await attempt(request, transfer, agent, overall);
        return { image: transfer.image, ...(transfer.digest && { digest: transfer.digest.hex() }) };
      } catch (error) {
        if (overall.aborted) throw late();
        if (!(error instanceof Retryable)) throw error;
        // A failure that still brought new bytes does not count against the attempts.
        failures = transfer.image.size > mostHeld ? 1 : failures + 1;
        mostHeld = Math.max(mostHeld, transfer.image.size);
        if (failures >= retry.attempts) throw couldNot(`${error.message}; gave up after ${failures} attempts without progress`);
        const delayMs = error.retryAfter === undefined ? backoffDelay(failures, retry) : Math.min(error.retryAfter, retry.retryAfterCap);
        if (Date.now() + delayMs >= deadlineAt) throw late();
        if (error.restart && transfer.image.size > 0) {
          request.onEvent?.({ kind: 'restart', reason: error.message });
          transfer.restart();
          request.onProgress?.(0, null);
        }
        request.onEvent?.({ kind: 'retry', attempt: failures + 1, delayMs, cause: error.message, resumeFrom: transfer.canResume ? transfer.image.size : 0 });
        await sleep(delayMs, undefined, { signal: overall }).catch(() => undefined);
        if (overall.aborted) throw late();
      }
    }
  } finally {
    agent.http.destroy();
    agent.https.destroy();
  }
}

/** One HTTP exchange: resumes from the bytes held, or takes the whole file. Resolves when every byte is held. */
async function attempt(request: DownloadRequest, transfer: Transfer, agent: { http: http.Agent; https: https.Agent }, signal: AbortSignal): Promise<void> {
  const timeouts = request.timeouts ?? defaultTimeouts;
  const resumeFrom = transfer.canResume ? transfer.image.size : 0;
  const headers: Record<string, string> = { ...request.headers };
  if (resumeFrom > 0) {
    headers['range'] = `bytes=${resumeFrom}-`;
    headers['if-range'] = transfer.validator!;
  }

  const stream = got.stream(request.url, {
    headers,
    // The checksum is of the file as published: no transfer decoding.
    decompress: false,
    retry: { limit: 0 },
    throwHttpErrors: false,
    maxRedirects: request.maxRedirects ?? DEFAULT_MAX_REDIRECTS,
    agent,
    signal,
    timeout: {
      lookup: timeouts.connect,
      connect: timeouts.connect,
      secureConnect: timeouts.connect,
      response: timeouts.response,
      socket: timeouts.idle,
    },
  });

  // Set by the response handler when the body must not be read; thrown after the stream stops.
  let stop: Error | undefined;
  stream.once('response', (response: Response) => {
    stop = judge(response, request, transfer, resumeFrom);
    if (stop) stream.destroy();
    else request.onProgress?.(transfer.image.size, transfer.total);
  });

  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (stop) break;
      const { image, total } = transfer;
      if (total !== null && image.size + chunk.length > total) {
        stop = new Retryable(`the server sent more than the ${total} bytes it announced`, { restart: true });
        break;
      }
      if (image.size + chunk.length > request.budget) {
        stop = failed(messages.tooBigForMemory(request.type));
        break;
      }
      image.append(chunk);
      transfer.digest?.update(chunk);
      request.onProgress?.(image.size, total);
    }
  } catch (error) {
    if (!stop) {
      if (isFatal(error) || signal.aborted) throw failed(messages.downloadFailed(redactUrl(request.url)), describe(error));
      throw new Retryable(describe(error));
    }
  } finally {
    stream.destroy();
  }
  if (stop) throw stop;
  const { image, total } = transfer;
  if (total !== null && image.size < total) throw new Retryable(`the body ended after ${image.size} of ${total} bytes`);
}

/** Checks a response's status and headers; returns why its body must not be taken, else updates `transfer`. */
function judge(response: Response, request: DownloadRequest, transfer: Transfer, resumeFrom: number): Error | undefined {
  const status = response.statusCode;
  const fatal = (cause: string) => failed(messages.downloadFailed(redactUrl(request.url)), cause);
  const statusLine = `HTTP ${status}${response.statusMessage ? ` ${response.statusMessage}` : ''}`;

  if (status === 206) {
    if (resumeFrom === 0) return fatal(`${statusLine} to a request without Range`);
    const range = parseContentRange(header(response, 'content-range'));
    const etag = header(response, 'etag');
    const length = declaredLength(response);
    if (etag !== undefined && transfer.validator?.startsWith('"') && etag !== transfer.validator) {
      return new Retryable(`the image changed on the server (ETag ${transfer.validator} became ${etag})`, { restart: true });
    }
    if (!range || range.start !== resumeFrom || (transfer.total !== null && range.size !== transfer.total) || (length !== null && length !== range.end - range.start + 1)) {
      transfer.rangesRefused = true;
      return new Retryable(`asked for bytes ${resumeFrom}- and got Content-Range ${JSON.stringify(header(response, 'content-range') ?? null)}`, { restart: true });
    }
    if (range.size > request.budget) return failed(messages.tooBigForMemory(request.type));
    transfer.total = range.size;
    return undefined;
  }
  if (status >= 200 && status < 300) {
    if (resumeFrom > 0 || transfer.image.size > 0) {
      request.onEvent?.({ kind: 'restart', reason: resumeFrom > 0 ? `the server answered ${statusLine} to a resume: the image changed or ranges are not supported` : 'the server cannot resume' });
      transfer.restart();
    }
    transfer.total = declaredLength(response);
    if (transfer.total !== null && transfer.total > request.budget) return failed(messages.tooBigForMemory(request.type));
    transfer.validator = validatorOf(response);
    // Once a server has botched a range, it is not asked for one again.
    transfer.rangesRefused ||= header(response, 'accept-ranges')?.trim().toLowerCase() === 'none';
    return undefined;
  }
  if (status === 416 && resumeFrom > 0) return new Retryable(`${statusLine} for bytes ${resumeFrom}-: the image changed on the server`, { restart: true });
  if (status === 408 || status === 429 || status >= 500) {
    const after = retryAfterMs(header(response, 'retry-after'));
    return new Retryable(statusLine, after === undefined ? {} : { retryAfter: after });
  }
  return fatal(statusLine);
}
