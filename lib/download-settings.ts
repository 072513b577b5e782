// How a download is made: timeouts, retries, deadline, redirects, extra CAs, with their defaults.
// Apart from lib/download.ts so that the command line can show the defaults without loading the
// HTTP client.

export interface Timeouts {
  /** DNS lookup, TCP connect, TLS handshake: each, in ms. */
  readonly connect: number;
  /** From the request sent to the response headers, in ms. */
  readonly response: number;
  /** Stall timeout: longest silence while the body flows, in ms. */
  readonly idle: number;
}

export const defaultTimeouts: Timeouts = { connect: 30_000, response: 60_000, idle: 60_000 };

export interface RetryPolicy {
  /** Attempts in a row that may fail without bringing a new byte; then the download fails. */
  readonly attempts: number;
  /** First backoff, doubled after each failure up to `maxDelay`, in ms. */
  readonly initialDelay: number;
  readonly maxDelay: number;
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
