// How a download is made: timeouts, retries, deadline, redirects, extra CAs, connections, with
// their defaults. Apart from lib/download/download.ts so that the command line can show the defaults without
// loading the HTTP client.
import type { Backoff } from './backoff.ts';

export interface Timeouts {
  /** DNS lookup, TCP connect, TLS handshake: each, in ms. */
  readonly connect: number;
  /** From the request sent to the response headers, in ms. */
  readonly response: number;
  /** Stall timeout: longest silence while the body flows, in ms. */
  readonly idle: number;
}

export const defaultTimeouts: Timeouts = { connect: 30_000, response: 60_000, idle: 60_000 };

/** Backoffs are jittered (lib/download/backoff.ts). */
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
/** Connections of a segmented download unless told otherwise (see the README's long-link figures). */
export const DEFAULT_CONNECTIONS = 1;
export const MAX_CONNECTIONS = 16;
/** Below this (by default), an image is fetched on one connection whatever `connections` says. */
export const SEGMENTED_MIN_BYTES = 64 * 1024 * 1024;

/** How the transfer is made; everything has a default. */
export interface DownloadSettings {
  readonly timeouts?: Timeouts;
  /** Overall deadline of the download, retries and waits included, in ms. */
  readonly deadline?: number;
  readonly retry?: RetryPolicy;
  readonly maxRedirects?: number;
  /** Extra trusted CA certificates (PEM), added to the bundled and system ones. */
  readonly ca?: string;
  /**
   * Connections for a large image (`segmentedMinBytes` or more) from a server that takes ranges
   * and names the version it serves (ETag or Last-Modified); 1: always one. Default
   * DEFAULT_CONNECTIONS.
   */
  readonly connections?: number;
  /** Default SEGMENTED_MIN_BYTES. */
  readonly segmentedMinBytes?: number;
}
