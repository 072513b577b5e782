// The image as it arrives, for the streaming mode: its body handed on chunk by chunk and hashed on
// the way, nothing kept. A transfer that drops is resumed where it stopped when the server can
// say the bytes are the same ones (ETag or Last-Modified, sent back as If-Range, and a 206 for
// exactly the bytes asked): the streaming mode has written what came before, so it cannot start
// over. Otherwise, and once the attempts without progress are spent, it fails (agent/deploy-stream.ts
// then leaves the disk with no partition table).
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Request, Response } from 'got';
import { DEFAULT_DEADLINE_MS, defaultRetry, type DownloadSettings } from '../download/settings.ts';
import { ByoiError, downloadFailed } from '../errors.ts';
import {
  agents,
  declaredLength,
  describe,
  header,
  isFatal,
  parseContentRange,
  Retries,
  Retryable,
  openGet,
  untilDeadlineOrStop,
  validatorOf,
} from '../download/http-exchange.ts';
import type { ChecksumType } from '../job.ts';
import { redactUrl } from '../report/redact.ts';

export interface StreamRequest extends DownloadSettings {
  readonly url: string;
  /** Secrets: sent, never shown. */
  readonly headers: Readonly<Record<string, string>>;
  readonly checksumType?: ChecksumType;
  /** A transfer resumed after a drop, for the log. */
  readonly onResume?: (from: number, cause: string) => void;
  /** Aborted when the deployment is cancelled: the transfer ends at once and throws the reason. */
  readonly stop?: AbortSignal;
}

export interface StreamedImage {
  /** The body's length as announced, if it was. */
  readonly length: number | null;
  /** The body, chunk by chunk; throws a ByoiError when the transfer fails for good or runs long. */
  readonly body: AsyncIterable<Buffer>;
  /** Bytes received so far. */
  received(): number;
  /** Lower-case hex of the digest, once the body has ended (undefined without a checksum type). */
  digest(): string | undefined;
}

/** Starts the GET; resolves once the server has answered 2xx, with its body still to be read. */
export async function streamImage(request: StreamRequest): Promise<StreamedImage> {
  const couldNot = (detail: string, cause?: unknown) => downloadFailed(redactUrl(request.url), { detail, cause });
  const agent = agents(request.ca);
  const signal = untilDeadlineOrStop(request.deadline ?? DEFAULT_DEADLINE_MS, request.stop);
  const open = (headers: Record<string, string>): Request =>
    openGet(request.url, request, agent, signal, { ...request.headers, ...headers });
  const answered = (stream: Request): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
    });
  const closeAgents = () => {
    agent.http.destroy();
    agent.https.destroy();
  };

  let stream = open({});
  let response: Response;
  try {
    response = await answered(stream);
  } catch (error) {
    stream.destroy();
    closeAgents();
    request.stop?.throwIfAborted();
    throw couldNot(describe(error));
  }
  if (response.statusCode < 200 || response.statusCode > 299) {
    stream.destroy();
    closeAgents();
    throw couldNot(`HTTP ${response.statusCode}${response.statusMessage ? ` ${response.statusMessage}` : ''}`);
  }
  const length = declaredLength(response);
  const validator = validatorOf(response);
  const resumable =
    validator !== null && length !== null && header(response, 'accept-ranges')?.trim().toLowerCase() === 'bytes';
  const digest = request.checksumType ? createHash(request.checksumType) : undefined;
  let received = 0;
  let hex: string | undefined;

  /** A GET for the bytes from `received` on, answered with exactly those; else a final failure. */
  async function resume(): Promise<Request> {
    const next = open({ range: `bytes=${received}-`, 'if-range': validator! });
    let answer: Response;
    try {
      answer = await answered(next);
    } catch (error) {
      next.destroy();
      throw new Retryable(describe(error));
    }
    const range = parseContentRange(header(answer, 'content-range'));
    if (answer.statusCode === 206 && range && range.start === received && range.size === length) return next;
    next.destroy();
    if (answer.statusCode >= 500 || answer.statusCode === 408 || answer.statusCode === 429)
      throw new Retryable(`HTTP ${answer.statusCode}`);
    throw couldNot(
      `the transfer dropped after ${received} bytes and the server could not resume it with the same bytes (HTTP ${answer.statusCode})`,
    );
  }

  async function* body(): AsyncGenerator<Buffer> {
    const retries = new Retries(request.retry ?? defaultRetry);
    try {
      for (;;) {
        try {
          for await (const chunk of stream as AsyncIterable<Buffer>) {
            if (length !== null && received + chunk.length > length)
              throw couldNot(`the server sent more than the ${length} bytes it announced`);
            received += chunk.length;
            digest?.update(chunk);
            yield chunk;
          }
          if (length !== null && received < length)
            throw new Retryable(`the body ended after ${received} of ${length} bytes`);
          break;
        } catch (error) {
          stream.destroy();
          request.stop?.throwIfAborted();
          if (error instanceof ByoiError) throw error;
          if (signal.aborted || isFatal(error) || !resumable) throw couldNot(describe(error));
          const failure = error instanceof Retryable ? error : new Retryable(describe(error));
          // Resume until the attempts without a new byte are spent (a failed resume counts too).
          for (let cause = failure; ;) {
            const { delayMs } = retries.next(cause, received, couldNot);
            await sleep(delayMs, undefined, { signal }).catch(() => undefined);
            request.stop?.throwIfAborted();
            if (signal.aborted)
              throw couldNot(`the download did not finish in time (${received} of ${length} bytes received)`);
            request.onResume?.(received, cause.message);
            try {
              stream = await resume();
              break;
            } catch (again) {
              if (!(again instanceof Retryable)) throw again;
              cause = again;
            }
          }
        }
      }
    } finally {
      stream.destroy();
      closeAgents();
    }
    hex = digest?.digest('hex');
  }
  return { length, body: body(), received: () => received, digest: () => hex };
}
