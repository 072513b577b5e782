// Parallel ranged download: the image split into segments (of whole ChunkedBuffer chunks when it is
// large), fetched
// by several connections at once (each `Range: bytes=A-B` with `If-Range`), so that a long or
// lossy link, where one TCP connection cannot fill the pipe, is used by several.
//
// Guarantees kept from the single connection: the digest is fed once and in order, over the
// contiguous prefix held (the first unfinished segment as its bytes arrive, the ones after it once
// it is complete); a segment cut off resumes where it stopped; a segment answered with anything but
// exactly the bytes asked for, of the same resource (206, the right Content-Range and length, the
// same ETag), ends the download with `{ unusable: reason }`, and the caller starts over on one connection.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Request, Response } from 'got';
import { ChunkedBuffer } from '../source/chunked-buffer.ts';
import type { DigestThread } from './digest-thread.ts';
import type { RetryPolicy } from './settings.ts';
import {
  declaredLength,
  describe,
  header,
  isFatal,
  parseContentRange,
  retryAfterMs,
  Retries,
  Retryable,
} from './http-exchange.ts';

/** Segments per connection: the last ones to finish are short, so no connection idles long at the end. */
const SEGMENTS_PER_CONNECTION = 4;

/** The resource cannot be fetched in ranges after all (it changed, or the server botched a range). */
class SegmentsUnusable extends Error {}

/** The image, or why ranges cannot fetch it (the caller then starts over on one connection). */
export type SegmentsOutcome = { readonly image: ChunkedBuffer } | { readonly unusable: string };

export interface SegmentedRequest {
  /** Opens one GET with these headers (the job's plus Range and If-Range). */
  readonly open: (headers: Record<string, string>) => Request;
  readonly headers: Readonly<Record<string, string>>;
  readonly total: number;
  /** ETag or Last-Modified of the resource: every range must come from that very version. */
  readonly validator: string;
  readonly connections: number;
  readonly chunkSize: number;
  readonly retry: RetryPolicy;
  readonly digest: DigestThread | undefined;
  readonly signal: AbortSignal;
  /** Builds the error for a failure another attempt cannot cure. */
  readonly fatal: (detail: string, cause?: unknown) => Error;
  readonly onProgress?: (done: number, total: number) => void;
  readonly onRetry?: (attempt: number, delayMs: number, cause: string, resumeFrom: number) => void;
}

interface Segment {
  readonly start: number;
  /** Exclusive. */
  readonly end: number;
  readonly bytes: ChunkedBuffer;
}

/** Segments of a large image end on chunk boundaries, so joining them copies nothing. */
const SMALL_SEGMENT_UNIT = 1024 * 1024;

/**
 * About `connections * SEGMENTS_PER_CONNECTION` segments covering [0, total): whole chunks when
 * the image has enough of them, else whole MiB.
 */
export function planSegments(total: number, connections: number, chunkSize: number): { start: number; end: number }[] {
  const wanted = total / (connections * SEGMENTS_PER_CONNECTION);
  const unit = wanted >= chunkSize ? chunkSize : SMALL_SEGMENT_UNIT;
  const size = Math.max(1, Math.ceil(wanted / unit)) * unit;
  const segments = [];
  for (let start = 0; start < total; start += size) segments.push({ start, end: Math.min(start + size, total) });
  return segments;
}

export async function downloadSegments(request: SegmentedRequest): Promise<SegmentsOutcome> {
  const segments: Segment[] = planSegments(request.total, request.connections, request.chunkSize).map((s) => ({
    ...s,
    bytes: new ChunkedBuffer(request.chunkSize),
  }));
  // One failure stops every connection.
  const stop = new AbortController();
  const signal = AbortSignal.any([request.signal, stop.signal]);
  let next = 0;
  let held = 0;
  // The digest covers segments[0, frontier) and the first `hashed` bytes of segments[frontier].
  let frontier = 0;
  let hashed = 0;

  const advanceDigest = () => {
    while (frontier < segments.length) {
      const { bytes, start, end } = segments[frontier]!;
      if (request.digest) for (const view of bytes.views(hashed, bytes.size - hashed)) request.digest.update(view);
      hashed = bytes.size;
      if (bytes.size < end - start) return;
      frontier += 1;
      hashed = 0;
    }
  };
  const received = (segment: Segment, chunk: Buffer) => {
    segment.bytes.append(chunk);
    held += chunk.length;
    if (segment === segments[frontier]) advanceDigest();
    request.onProgress?.(held, request.total);
  };

  const worker = async () => {
    while (next < segments.length && !signal.aborted) {
      const segment = segments[next++]!;
      await fetchSegment(request, segment, signal, received);
      advanceDigest();
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: Math.min(request.connections, segments.length) }, () =>
      worker().catch((error: unknown) => {
        stop.abort();
        throw error;
      }),
    ),
  );
  // The first failure is the cause; the others are the aborts it brought about.
  const failure = results.find(
    (r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof Aborted),
  );
  if (failure?.reason instanceof SegmentsUnusable) return { unusable: failure.reason.message };
  if (failure) throw failure.reason;
  if (request.signal.aborted) throw request.signal.reason;
  return { image: ChunkedBuffer.concat(segments.map((s) => s.bytes)) };
}

/** This connection stopped because another one failed. */
class Aborted extends Error {}

/** Fetches one segment, resuming after drops with the retry policy; returns once every byte is held. */
async function fetchSegment(
  request: SegmentedRequest,
  segment: Segment,
  signal: AbortSignal,
  received: (segment: Segment, chunk: Buffer) => void,
): Promise<void> {
  const retries = new Retries(request.retry);
  for (;;) {
    if (signal.aborted) throw new Aborted();
    try {
      await segmentAttempt(request, segment, signal, received);
      return;
    } catch (error) {
      if (signal.aborted) throw request.signal.aborted ? request.signal.reason : new Aborted();
      if (!(error instanceof Retryable)) throw error;
      const { attempt, delayMs } = retries.next(error, segment.bytes.size, request.fatal);
      request.onRetry?.(attempt, delayMs, error.message, segment.start + segment.bytes.size);
      await sleep(delayMs, undefined, { signal }).catch(() => undefined);
    }
  }
}

async function segmentAttempt(
  request: SegmentedRequest,
  segment: Segment,
  signal: AbortSignal,
  received: (segment: Segment, chunk: Buffer) => void,
): Promise<void> {
  const from = segment.start + segment.bytes.size;
  const last = segment.end - 1;
  const stream = request.open({ ...request.headers, range: `bytes=${from}-${last}`, 'if-range': request.validator });
  const onAbort = () => stream.destroy();
  signal.addEventListener('abort', onAbort, { once: true });
  let stop: Error | undefined;
  stream.once('response', (response: Response) => {
    stop = judgeRange(response, request, from, last);
    if (stop) stream.destroy();
  });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (stop) break;
      if (segment.start + segment.bytes.size + chunk.length > segment.end) {
        stop = new SegmentsUnusable(`the server sent more than the bytes ${from}-${last} asked for`);
        break;
      }
      received(segment, chunk);
    }
  } catch (error) {
    if (!stop) {
      if (isFatal(error)) throw request.fatal(describe(error), error);
      throw new Retryable(describe(error), { cause: error });
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    stream.destroy();
  }
  if (stop) throw stop;
  if (segment.bytes.size < segment.end - segment.start)
    throw new Retryable(
      `the body of bytes ${from}-${last} ended after ${segment.start + segment.bytes.size - from} bytes`,
    );
}

/** Why a range's answer must not be taken, or undefined when it is exactly the bytes asked for. */
function judgeRange(response: Response, request: SegmentedRequest, from: number, last: number): Error | undefined {
  const status = response.statusCode;
  const statusLine = `HTTP ${status}${response.statusMessage ? ` ${response.statusMessage}` : ''}`;
  if (status === 206) {
    const etag = header(response, 'etag');
    if (etag !== undefined && request.validator.startsWith('"') && etag !== request.validator) {
      return new SegmentsUnusable(`the image changed on the server (ETag ${request.validator} became ${etag})`);
    }
    const range = parseContentRange(header(response, 'content-range'));
    const length = declaredLength(response);
    if (
      !range ||
      range.start !== from ||
      range.end !== last ||
      range.size !== request.total ||
      (length !== null && length !== last - from + 1)
    ) {
      return new SegmentsUnusable(
        `asked for bytes ${from}-${last} and got Content-Range ${JSON.stringify(header(response, 'content-range') ?? null)}`,
      );
    }
    return undefined;
  }
  // If-Range did not match: the resource changed since the first answer (or ranges are ignored).
  if (status >= 200 && status < 300)
    return new SegmentsUnusable(
      `the server answered ${statusLine} to a range: the image changed or ranges are not supported`,
    );
  if (status === 416)
    return new SegmentsUnusable(`${statusLine} for bytes ${from}-${last}: the image changed on the server`);
  if (status === 408 || status === 429 || status >= 500) {
    const after = retryAfterMs(header(response, 'retry-after'));
    return new Retryable(statusLine, after === undefined ? {} : { retryAfter: after });
  }
  return request.fatal(statusLine);
}
