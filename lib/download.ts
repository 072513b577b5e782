// Downloads an image into RAM: streamed by got into a ChunkedBuffer (no temp file, no single
// giant Buffer) and hashed as bytes arrive. The RAM budget is checked against Content-Length
// before the body is read and against the bytes received while they arrive.
import { got, type Response } from 'got';
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
  /** Longest silence while the body flows, in ms. */
  readonly idle: number;
}

export const defaultTimeouts: Timeouts = { connect: 30_000, response: 60_000, idle: 60_000 };

export interface DownloadRequest {
  readonly url: string;
  /** Secrets: sent, never shown. */
  readonly headers: Readonly<Record<string, string>>;
  readonly type: ImageType;
  /** Bytes the image may take in RAM. */
  readonly budget: number;
  /** Digest to compute while downloading. */
  readonly checksumType?: ChecksumType;
  readonly timeouts?: Timeouts;
  readonly onProgress?: (done: number, total: number | null) => void;
}

export interface Downloaded {
  readonly image: ChunkedBuffer;
  /** Lower-case hex of `checksumType`'s digest, when one was asked for. */
  readonly digest?: string;
}


function declaredLength(response: Response): number | null {
  const value = response.headers['content-length'];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : null;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
}

export async function download(request: DownloadRequest): Promise<Downloaded> {
  const { budget, onProgress } = request;
  const timeouts = request.timeouts ?? defaultTimeouts;
  const image = new ChunkedBuffer();
  const digest = request.checksumType ? new RunningDigest(request.checksumType) : undefined;
  const tooBig = () => failed(messages.tooBigForMemory(request.type));
  const couldNot = (cause: string) => failed(messages.downloadFailed(redactUrl(request.url)), cause);

  const stream = got.stream(request.url, {
    headers: { ...request.headers },
    // The checksum is of the file as published: no transfer decoding.
    decompress: false,
    retry: { limit: 0 },
    timeout: {
      lookup: timeouts.connect,
      connect: timeouts.connect,
      secureConnect: timeouts.connect,
      response: timeouts.response,
      socket: timeouts.idle,
    },
  });

  let total: number | null = null;
  // Set when the transfer is stopped for the budget, whatever error got then reports.
  let overBudget = false;
  stream.once('response', (response: Response) => {
    total = declaredLength(response);
    const ok = response.statusCode >= 200 && response.statusCode < 300;
    if (ok && total !== null && total > budget) {
      overBudget = true;
      stream.destroy();
    } else onProgress?.(0, total);
  });

  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (image.size + chunk.length > budget) {
        overBudget = true;
        break;
      }
      image.append(chunk);
      digest?.update(chunk);
      onProgress?.(image.size, total);
    }
  } catch (error) {
    if (!overBudget) throw couldNot(describe(error));
  } finally {
    stream.destroy();
  }
  if (overBudget) throw tooBig();
  if (total !== null && image.size !== total) throw couldNot(`the body ended after ${image.size} of ${total} bytes`);
  return { image, ...(digest && { digest: digest.hex() }) };
}
