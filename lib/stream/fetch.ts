// The image as it arrives, for the streaming mode: one GET, its body handed on chunk by chunk and
// hashed on the way, nothing kept. A transfer that breaks is not resumed: the streaming mode has
// already written what came before, and says so (agent/deploy-stream.ts).
import { got, type Response } from 'got';
import { RunningDigest } from '../checksum.ts';
import { DEFAULT_DEADLINE_MS, DEFAULT_MAX_REDIRECTS, defaultTimeouts, type DownloadSettings } from '../download-settings.ts';
import { ByoiError, customerFailure, messages } from '../errors.ts';
import { agents, declaredLength, describe } from '../http-exchange.ts';
import type { ChecksumType } from '../job.ts';
import { redactUrl } from '../redact.ts';

export interface StreamRequest extends DownloadSettings {
  readonly url: string;
  /** Secrets: sent, never shown. */
  readonly headers: Readonly<Record<string, string>>;
  readonly checksumType?: ChecksumType;
}

export interface StreamedImage {
  /** The body's length as announced, if it was. */
  readonly length: number | null;
  /** The body, chunk by chunk; throws a failed ByoiError when the transfer breaks or runs long. */
  readonly body: AsyncIterable<Buffer>;
  /** Bytes received so far. */
  received(): number;
  /** Lower-case hex of the digest, once the body has ended (undefined without a checksum type). */
  digest(): string | undefined;
}

/** Starts the GET; resolves once the server has answered 2xx, with its body still to be read. */
export async function streamImage(request: StreamRequest): Promise<StreamedImage> {
  const couldNot = (cause: string) => customerFailure(messages.downloadFailed(redactUrl(request.url)), cause);
  const timeouts = request.timeouts ?? defaultTimeouts;
  const agent = agents(request.ca);
  const signal = AbortSignal.timeout(request.deadline ?? DEFAULT_DEADLINE_MS);
  const stream = got.stream(request.url, {
    headers: { ...request.headers },
    decompress: false,
    retry: { limit: 0 },
    throwHttpErrors: false,
    maxRedirects: request.maxRedirects ?? DEFAULT_MAX_REDIRECTS,
    agent,
    signal,
    timeout: { lookup: timeouts.connect, connect: timeouts.connect, secureConnect: timeouts.connect, response: timeouts.response, socket: timeouts.idle },
  });
  const close = () => {
    stream.destroy();
    agent.http.destroy();
    agent.https.destroy();
  };
  let response: Response;
  try {
    response = await new Promise<Response>((resolve, reject) => {
      stream.once('response', resolve);
      stream.once('error', reject);
    });
  } catch (error) {
    close();
    throw couldNot(describe(error));
  }
  if (response.statusCode < 200 || response.statusCode > 299) {
    close();
    throw couldNot(`HTTP ${response.statusCode}${response.statusMessage ? ` ${response.statusMessage}` : ''}`);
  }
  const length = declaredLength(response);
  const digest = request.checksumType ? new RunningDigest(request.checksumType) : undefined;
  let received = 0;
  let hex: string | undefined;
  async function* body(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        received += chunk.length;
        if (length !== null && received > length) throw couldNot(`the server sent more than the ${length} bytes it announced`);
        digest?.update(chunk);
        yield chunk;
      }
    } catch (error) {
      throw error instanceof ByoiError ? error : couldNot(describe(error));
    } finally {
      close();
    }
    if (length !== null && received < length) throw couldNot(`the body ended after ${received} of ${length} bytes`);
    hex = digest?.hex();
  }
  return { length, body: body(), received: () => received, digest: () => hex };
}
