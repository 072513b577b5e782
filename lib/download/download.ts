// Downloads an image into RAM: streamed by got into a ChunkedBuffer (no temp file, no single
// giant Buffer) and hashed as bytes arrive. The RAM budget is checked against the announced
// length before the body is read and against the bytes received while they arrive.
//
// A dropped or stalled transfer is resumed where it stopped (Range + If-Range with the ETag, else
// Last-Modified), so the digest is fed once, in order, across attempts. It starts over (buffer
// and digest reset) only when the server cannot resume or the resource changed. Connection
// errors, 5xx, 408 and 429 are retried with jittered exponential backoff (a Retry-After is obeyed
// as given, capped); other answers fail at once; an overall deadline bounds everything.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Request, Response } from 'got';
import { rawGet, rawUnsupported, type BodySink, type RawGet } from './raw-get.ts';
import { ChunkedBuffer } from '../source/chunked-buffer.ts';
import { DigestThread } from './digest-thread.ts';
import { downloadSegments } from './segments.ts';
import { downloadFailed, tooBigForMemory, downloadDeadlineDetail } from '../errors.ts';
import {
  agents,
  declaredLength,
  describe,
  header,
  isFatal,
  parseContentRange,
  retryAfterMs,
  Retries,
  Retryable,
  openGet,
  untilDeadlineOrStop,
  trustedCas,
  validatorOf,
  type Agents,
  type Answer,
} from './http-exchange.ts';
import type { ChecksumType, ImageType } from '../job.ts';
import { redactUrl } from '../report/redact.ts';
import {
  DEFAULT_CONNECTIONS,
  DEFAULT_DEADLINE_MS,
  defaultRetry,
  defaultTimeouts,
  SEGMENTED_MIN_BYTES,
  type DownloadSettings,
} from './settings.ts';

export type { DownloadSettings };

export type DownloadEvent =
  | {
      readonly kind: 'retry';
      readonly attempt: number;
      readonly delayMs: number;
      readonly cause: string;
      readonly resumeFrom: number;
    }
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
  /**
   * The bytes held so far, told as often as progress on one connection (not by a segmented
   * download). A new `image` means the download started over. Its bytes never change once held.
   */
  readonly onData?: (image: ChunkedBuffer, total: number | null) => void;
  /** Retries and restarts, for the log. Causes never hold the URL or a header. */
  readonly onEvent?: (event: DownloadEvent) => void;
  /** Aborted when the deployment is cancelled: the transfer ends at once and throws the reason. */
  readonly stop?: AbortSignal;
}

export interface Downloaded {
  readonly image: ChunkedBuffer;
  /** Lower-case hex of `checksumType`'s digest, when one was asked for. */
  readonly digest?: string;
}

/** Progress is told every this many bytes (and at the end), not for every packet: it has a cost. */
const PROGRESS_EVERY = 1024 * 1024;

/**
 * How one exchange ended: every byte held, or the first answer allows a segmented download (its body
 * is left, the segments fetch every byte).
 */
type AttemptOutcome = 'complete' | 'use-segments';

/** What is held so far, and what is needed to resume it safely. */
class Transfer {
  readonly digest: DigestThread | undefined;
  image: ChunkedBuffer;
  /** The resource's full length, once a response told it. */
  total: number | null = null;
  /** ETag or Last-Modified of the bytes held: If-Range's value. */
  validator: string | null = null;
  rangesRefused = false;
  /** Set once a segmented download went wrong: not tried again. */
  segmentsRefused = false;
  /** Whether exchanges go the raw way (lib/download/raw-get.ts); once a response was not for it, got takes them all. */
  raw: boolean;

  constructor(checksumType: ChecksumType | undefined, url: string, headers: Readonly<Record<string, string>>) {
    this.digest = checksumType ? new DigestThread(checksumType) : undefined;
    this.image = this.emptyImage();
    this.raw = URL.canParse(url) && rawUnsupported(new URL(url), headers) === undefined;
  }

  /** The digest's thread makes each chunk's pages resident before the main thread copies into it. */
  private emptyImage(): ChunkedBuffer {
    const digest = this.digest;
    return new ChunkedBuffer(undefined, digest ? { ahead: (chunk) => digest.prefault(chunk) } : {});
  }

  get canResume(): boolean {
    return this.image.size > 0 && this.validator !== null && !this.rangesRefused;
  }

  /** Drops every byte held and the digest fed with them. */
  restart(): void {
    this.image = this.emptyImage();
    this.digest?.reset();
    this.total = null;
    this.validator = null;
  }
}

export async function download(request: DownloadRequest): Promise<Downloaded> {
  const retry = request.retry ?? defaultRetry;
  const deadline = request.deadline ?? DEFAULT_DEADLINE_MS;
  const shownUrl = redactUrl(request.url);
  const couldNot = (detail: string, cause?: unknown) => downloadFailed(shownUrl, { detail, cause });
  const transfer = new Transfer(request.checksumType, request.url, request.headers);
  const agent = agents(request.ca);
  const deadlineAt = Date.now() + deadline;
  const overall = untilDeadlineOrStop(deadline, request.stop);
  // Bytes held by the segments of a segmented download, which are not in transfer.image until joined.
  let segmentsHeld = 0;
  const ended = () =>
    request.stop?.aborted
      ? request.stop.reason
      : couldNot(
          downloadDeadlineDetail(
            Math.round(deadline / 1000),
            Math.max(transfer.image.size, segmentsHeld),
            transfer.total,
          ),
        );

  const retries = new Retries(retry);
  try {
    for (;;) {
      try {
        if ((await attempt(request, transfer, agent, overall)) === 'use-segments') {
          const segmented = await downloadSegments({
            open: (headers) => open(request, agent, overall, headers),
            headers: request.headers,
            total: transfer.total!,
            validator: transfer.validator!,
            connections: request.connections ?? DEFAULT_CONNECTIONS,
            chunkSize: transfer.image.chunkSize,
            retry,
            digest: transfer.digest,
            signal: overall,
            fatal: couldNot,
            onProgress: (done, total) => {
              segmentsHeld = done;
              request.onProgress?.(done, total);
            },
            onRetry: (attempt, delayMs, cause, resumeFrom) =>
              request.onEvent?.({ kind: 'retry', attempt, delayMs, cause, resumeFrom }),
          });
          if ('unusable' in segmented) {
            // Whatever the segments held goes, digest included: one connection takes it from the start.
            request.onEvent?.({ kind: 'restart', reason: `${segmented.unusable}; starting over on one connection` });
            transfer.restart();
            transfer.segmentsRefused = true;
            segmentsHeld = 0;
            request.onProgress?.(0, null);
            continue;
          }
          transfer.image = segmented.image;
        }
        transfer.image.seal();
        return { image: transfer.image, ...(transfer.digest && { digest: await transfer.digest.hex() }) };
      } catch (error) {
        if (overall.aborted) throw ended();
        if (!(error instanceof Retryable)) throw error;
        const { attempt: next, delayMs } = retries.next(error, transfer.image.size, couldNot);
        if (Date.now() + delayMs >= deadlineAt) throw ended();
        if (error.restart && transfer.image.size > 0) {
          request.onEvent?.({ kind: 'restart', reason: error.message });
          transfer.restart();
          request.onProgress?.(0, null);
        }
        request.onEvent?.({
          kind: 'retry',
          attempt: next,
          delayMs,
          cause: error.message,
          resumeFrom: transfer.canResume ? transfer.image.size : 0,
        });
        await sleep(delayMs, undefined, { signal: overall }).catch(() => undefined);
        if (overall.aborted) throw ended();
      }
    }
  } finally {
    agent.http.destroy();
    agent.https.destroy();
    await transfer.digest?.close();
  }
}

/** A GET with these headers, made as every request of a download is. */
function open(request: DownloadRequest, agent: Agents, signal: AbortSignal, headers: Record<string, string>): Request {
  return openGet(request.url, request, agent, signal, headers);
}

/**
 * One HTTP exchange: resumes from the bytes held, or takes the whole file. Resolves when every
 * byte is held, or to 'use-segments' when the answer allows a segmented download instead.
 */
async function attempt(
  request: DownloadRequest,
  transfer: Transfer,
  agent: Agents,
  signal: AbortSignal,
): Promise<AttemptOutcome> {
  const resumeFrom = transfer.canResume ? transfer.image.size : 0;
  const headers: Record<string, string> = { ...request.headers };
  if (resumeFrom > 0) {
    headers['range'] = `bytes=${resumeFrom}-`;
    headers['if-range'] = transfer.validator!;
  }
  if (transfer.raw) {
    const outcome = await rawAttempt(request, transfer, headers, resumeFrom, signal);
    if (outcome !== 'unsupported') return outcome;
    transfer.raw = false;
  }
  return gotAttempt(request, transfer, agent, signal, headers, resumeFrom);
}

/**
 * What both ways of taking a body do as its bytes land in the image: the announced length and the
 * budget checked before, the digest fed and progress told (every PROGRESS_EVERY bytes, and at the
 * end) after. Made once the answer is accepted (progress is told from there).
 */
class Intake {
  private readonly request: DownloadRequest;
  private readonly transfer: Transfer;
  private reported: number;

  constructor(request: DownloadRequest, transfer: Transfer) {
    this.request = request;
    this.transfer = transfer;
    this.reported = transfer.image.size;
    request.onProgress?.(this.reported, transfer.total);
  }

  /** Why `n` more bytes must not be taken, if they must not. */
  refusal(n: number): Error | undefined {
    const { image, total } = this.transfer;
    if (total !== null && image.size + n > total)
      return new Retryable(`the server sent more than the ${total} bytes it announced`, { restart: true });
    if (image.size + n > this.request.budget) return tooBigForMemory(this.request.type);
    return undefined;
  }

  /** The image's last `n` bytes have just landed. */
  landed(n: number): void {
    const { image, total, digest } = this.transfer;
    // The digest reads the image's own (shared) copy of the bytes, not the socket's buffer.
    if (digest) for (const view of image.views(image.size - n, n)) digest.update(view);
    if (image.size - this.reported >= PROGRESS_EVERY || image.size === total) this.tell();
  }

  /** The body ended: the last progress told; a Retryable if it ended before the announced length. */
  finish(): Retryable | undefined {
    const { image, total } = this.transfer;
    if (image.size !== this.reported) this.tell();
    return total !== null && image.size < total
      ? new Retryable(`the body ended after ${image.size} of ${total} bytes`)
      : undefined;
  }

  private tell(): void {
    const { image, total } = this.transfer;
    this.reported = image.size;
    this.request.onProgress?.(image.size, total);
    this.request.onData?.(image, total);
  }
}

/** A failure of an exchange: final, or worth another attempt. */
function attemptFailure(error: unknown, request: DownloadRequest, signal: AbortSignal): Error {
  if (isFatal(error) || signal.aborted)
    return downloadFailed(redactUrl(request.url), { detail: describe(error), cause: error });
  return new Retryable(describe(error), { cause: error });
}

/**
 * One exchange the raw way: the body read straight into the image. 'unsupported' when the answer
 * is not for it (a redirect, a body not framed by Content-Length): nothing was taken.
 */
async function rawAttempt(
  request: DownloadRequest,
  transfer: Transfer,
  headers: Record<string, string>,
  resumeFrom: number,
  signal: AbortSignal,
): Promise<AttemptOutcome | 'unsupported'> {
  let answer: RawGet;
  try {
    answer = await rawGet(new URL(request.url), headers, {
      timeouts: request.timeouts ?? defaultTimeouts,
      signal,
      ca: () => trustedCas(request.ca),
    });
  } catch (error) {
    throw attemptFailure(error, request, signal);
  }
  if ('unsupported' in answer) return 'unsupported';
  try {
    const verdict = judge(answer.head, request, transfer, resumeFrom);
    if (verdict === 'use-segments') return 'use-segments';
    if (verdict) throw verdict;
    const intake = new Intake(request, transfer);
    const refused = intake.refusal(answer.length);
    if (refused) throw refused;
    const { image } = transfer;
    const sink: BodySink = {
      room: (most) => image.room(most),
      grow: (n) => {
        image.grow(n);
        intake.landed(n);
      },
    };
    try {
      await answer.body(sink);
    } catch (error) {
      throw attemptFailure(error, request, signal);
    }
    const short = intake.finish();
    if (short) throw short;
    return 'complete';
  } finally {
    answer.close();
  }
}

/** One exchange through got: any answer HTTP allows (redirects, chunked or close-delimited bodies, proxies). */
async function gotAttempt(
  request: DownloadRequest,
  transfer: Transfer,
  agent: Agents,
  signal: AbortSignal,
  headers: Record<string, string>,
  resumeFrom: number,
): Promise<AttemptOutcome> {
  const stream = open(request, agent, signal, headers);

  // Set by the response handler when the body must not be read; thrown after the stream stops.
  let stop: Error | undefined;
  // Set by the response handler when the segments are to take the body instead.
  let useSegments = false;
  // Set by the response handler when the body is to be taken.
  let intake: Intake | undefined;
  stream.once('response', (response: Response) => {
    const verdict = judge(response, request, transfer, resumeFrom);
    if (verdict === 'use-segments') useSegments = true;
    else stop = verdict;
    if (stop || useSegments) stream.destroy();
    else intake = new Intake(request, transfer);
  });

  let short: Retryable | undefined;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (stop || useSegments || !intake) break;
      stop = intake.refusal(chunk.length);
      if (stop) break;
      transfer.image.append(chunk);
      intake.landed(chunk.length);
    }
    if (!stop && intake) short = intake.finish();
  } catch (error) {
    if (!stop && !useSegments) throw attemptFailure(error, request, signal);
  } finally {
    stream.destroy();
  }
  if (stop) throw stop;
  if (useSegments) return 'use-segments';
  if (short) throw short;
  return 'complete';
}

/**
 * Checks a response's status and headers; returns why its body must not be taken, or 'use-segments'
 * when segments are to take it, else updates `transfer`.
 */
function judge(
  response: Answer,
  request: DownloadRequest,
  transfer: Transfer,
  resumeFrom: number,
): Error | 'use-segments' | undefined {
  const status = response.statusCode;
  const fatal = (detail: string) => downloadFailed(redactUrl(request.url), { detail });
  const statusLine = `HTTP ${status}${response.statusMessage ? ` ${response.statusMessage}` : ''}`;

  if (status === 206) {
    if (resumeFrom === 0) return fatal(`${statusLine} to a request without Range`);
    const range = parseContentRange(header(response, 'content-range'));
    const etag = header(response, 'etag');
    const length = declaredLength(response);
    if (etag !== undefined && transfer.validator?.startsWith('"') && etag !== transfer.validator) {
      return new Retryable(`the image changed on the server (ETag ${transfer.validator} became ${etag})`, {
        restart: true,
      });
    }
    if (
      !range ||
      range.start !== resumeFrom ||
      (transfer.total !== null && range.size !== transfer.total) ||
      (length !== null && length !== range.end - range.start + 1)
    ) {
      transfer.rangesRefused = true;
      return new Retryable(
        `asked for bytes ${resumeFrom}- and got Content-Range ${JSON.stringify(header(response, 'content-range') ?? null)}`,
        { restart: true },
      );
    }
    if (range.size > request.budget) return tooBigForMemory(request.type);
    transfer.total = range.size;
    transfer.image.expectSize(transfer.total);
    return undefined;
  }
  if (status >= 200 && status < 300) {
    if (resumeFrom > 0 || transfer.image.size > 0) {
      request.onEvent?.({
        kind: 'restart',
        reason:
          resumeFrom > 0
            ? `the server answered ${statusLine} to a resume: the image changed or ranges are not supported`
            : 'the server cannot resume',
      });
      transfer.restart();
    }
    transfer.total = declaredLength(response);
    if (transfer.total !== null && transfer.total > request.budget) return tooBigForMemory(request.type);
    transfer.image.expectSize(transfer.total);
    transfer.validator = validatorOf(response);
    const acceptRanges = header(response, 'accept-ranges')?.trim().toLowerCase();
    // Once a server has botched a range, it is not asked for one again.
    transfer.rangesRefused ||= acceptRanges === 'none';
    const segmented =
      (request.connections ?? DEFAULT_CONNECTIONS) > 1 &&
      !transfer.segmentsRefused &&
      !transfer.rangesRefused &&
      acceptRanges === 'bytes' &&
      transfer.validator !== null &&
      transfer.total !== null &&
      transfer.total >= (request.segmentedMinBytes ?? SEGMENTED_MIN_BYTES);
    return segmented ? 'use-segments' : undefined;
  }
  if (status === 416 && resumeFrom > 0)
    return new Retryable(`${statusLine} for bytes ${resumeFrom}-: the image changed on the server`, { restart: true });
  if (status === 408 || status === 429 || status >= 500) {
    const after = retryAfterMs(header(response, 'retry-after'));
    return new Retryable(statusLine, after === undefined ? {} : { retryAfter: after });
  }
  return fatal(statusLine);
}
