// What the downloader's exchanges share (one connection, lib/download/download.ts, and segments,
// lib/download/segments.ts): reading a response's headers, telling a failure worth another attempt
// from a final one, counting attempts, the agents (proxies from the environment, extra CAs), and how
// every GET of a download is made (also the streaming mode's, lib/stream/fetch.ts).
import * as http from 'node:http';
import * as https from 'node:https';
import type { Duplex } from 'node:stream';
import { getCACertificates } from 'node:tls';
import { got, type Request } from 'got';
import { backoffDelay } from './backoff.ts';
import { DEFAULT_MAX_REDIRECTS, defaultTimeouts, type DownloadSettings, type RetryPolicy } from './settings.ts';

export type Agents = { http: http.Agent; https: https.Agent };

/**
 * A failed attempt worth another: after `retryAfter` ms if the server said so, from scratch if
 * `restart`; `cause` is the underlying error, when one was thrown.
 */
export class Retryable extends Error {
  readonly retryAfter: number | undefined;
  readonly restart: boolean;
  constructor(reason: string, options: { retryAfter?: number; restart?: boolean; cause?: unknown } = {}) {
    super(reason, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfter = options.retryAfter;
    this.restart = options.restart ?? false;
  }
}

/**
 * Failed attempts in a row that brought no new byte (a failure after new bytes counts as the first
 * again), and the wait before the next attempt: the server's Retry-After, capped, else a jittered
 * backoff.
 */
export class Retries {
  private failures = 0;
  private mostHeld = 0;
  private readonly policy: RetryPolicy;

  constructor(policy: RetryPolicy) {
    this.policy = policy;
  }

  /**
   * After `error`, with `held` bytes now held: the number of the attempt to come and the wait
   * before it. Throws `giveUp(detail, error)` once the attempts without progress are spent.
   */
  next(
    error: Retryable,
    held: number,
    giveUp: (detail: string, cause?: unknown) => Error,
  ): { attempt: number; delayMs: number } {
    this.failures = held > this.mostHeld ? 1 : this.failures + 1;
    this.mostHeld = Math.max(this.mostHeld, held);
    if (this.failures >= this.policy.attempts)
      throw giveUp(`${error.message}; gave up after ${this.failures} attempts without progress`, error);
    const delayMs =
      error.retryAfter === undefined
        ? backoffDelay(this.failures, this.policy)
        : Math.min(error.retryAfter, this.policy.retryAfterCap);
    return { attempt: this.failures + 1, delayMs };
  }
}

/** What is read of a response: got's, or the raw path's (lib/download/raw-get.ts). */
export interface Answer {
  readonly statusCode: number;
  readonly statusMessage?: string | undefined;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export function header(response: Answer, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export function declaredLength(response: Answer): number | null {
  const value = header(response, 'content-length');
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : null;
}

/** A strong ETag, else Last-Modified: If-Range accepts no weak ETag. */
export function validatorOf(response: Answer): string | null {
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

export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
}

/** Errors that another attempt cannot cure: a redirect loop, a bad URL, an untrusted certificate. */
export function isFatal(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  const name = (error as { name?: unknown }).name;
  if (name === 'MaxRedirectsError' || name === 'UnsupportedProtocolError') return true;
  return (
    typeof code === 'string' &&
    /^(ERR_TOO_MANY_REDIRECTS|ERR_INVALID_URL|ERR_UNSUPPORTED_PROTOCOL|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_TLS_CERT_ALTNAME_INVALID|ERR_SSL_)/.test(
      code,
    )
  );
}

/** Node's bundled CAs, the system's (where a private CA is usually installed) and the extra file. */
export function trustedCas(extra: string | undefined): string[] {
  return [
    ...new Set([
      ...getCACertificates('bundled'),
      ...getCACertificates('system'),
      ...(extra === undefined ? [] : [extra]),
    ]),
  ];
}

/**
 * An https.Agent that reads the trusted CAs at its first connection: reading the system's store takes
 * ~20 ms of CPU, which a download over http:// (most images in a lab) never needs.
 */
class TrustingAgent extends https.Agent {
  private readonly extraCa: string | undefined;
  private cas: string[] | undefined;

  constructor(options: https.AgentOptions, extraCa: string | undefined) {
    super(options);
    this.extraCa = extraCa;
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    this.cas ??= trustedCas(this.extraCa);
    return super.createConnection({ ...options, ca: this.cas }, callback);
  }
}

/** Agents that honour HTTP(S)_PROXY and NO_PROXY (Node's own support), and the extra CA. */
export function agents(ca: string | undefined): Agents {
  return {
    http: new http.Agent({ proxyEnv: process.env }),
    https: new TrustingAgent({ proxyEnv: process.env }, ca),
  };
}

/** What ends a download's exchanges: its deadline, or the deployment's stop when it has one. */
export function untilDeadlineOrStop(deadlineMs: number, stop: AbortSignal | undefined): AbortSignal {
  const deadline = AbortSignal.timeout(deadlineMs);
  return stop ? AbortSignal.any([deadline, stop]) : deadline;
}

/** A GET of `url` with these headers, made as every request of a download is. */
export function openGet(
  url: string,
  settings: Pick<DownloadSettings, 'timeouts' | 'maxRedirects'>,
  agent: Agents,
  signal: AbortSignal,
  headers: Record<string, string>,
): Request {
  const timeouts = settings.timeouts ?? defaultTimeouts;
  return got.stream(url, {
    // The raw path's name (lib/download/raw-get.ts), whichever way the request goes.
    headers: { 'user-agent': 'byoi', ...headers },
    // The checksum is of the file as published: no transfer decoding.
    decompress: false,
    retry: { limit: 0 },
    throwHttpErrors: false,
    maxRedirects: settings.maxRedirects ?? DEFAULT_MAX_REDIRECTS,
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
}
