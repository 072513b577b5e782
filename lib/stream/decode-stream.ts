// The disk bytes of an image that is being downloaded, for the streaming mode: a raw image as it
// arrives, or a compressed one (gzip, zstd, xz, bzip2) decoded on the way. Pieces come out in guest
// order. xz and bzip2 go through the system's liblzma and libbz2 where the native module loads
// (lib/formats/native-decoders.ts); without it, xz through the bundled decoder and bzip2 is refused
// at once, naming the mode (the bundled bzip2 decoder needs random access). xz files of several
// streams are found out at the end, from the stream's own structure (the decoders stop after the
// first), and refused then; zstd frames and bzip2 streams end to end are one disk.
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { ByoiError, streamImageBad, streamingUnsupported } from '../errors.ts';
import { detectFormat } from '../formats/detect.ts';
import type { ImageSource } from '../source/image-source.ts';
import { xzStreamRanges } from '../formats/xz-streams.ts';
import { decodedNatively, nativeDecoders, type NativeDecoders } from '../formats/native-decoders.ts';
import { ZstdFrameWatch } from './zstd-watch.ts';

/** Bytes looked at to tell the file's format. */
const PEEK = 4096;
/** The tail kept to read an xz file's last footer and index at the end. */
const XZ_TAIL = 1024 * 1024;
const ZLIB_CHUNK = 256 * 1024;

export type StreamedFormat = 'raw' | 'gzip' | 'zstd' | 'xz' | 'bzip2';

export interface DecodedStream {
  readonly format: StreamedFormat;
  /** The disk's bytes in order; throws a refused-image ByoiError when the stream is corrupt. */
  readonly disk: AsyncIterable<Buffer>;
}

/** The body's first bytes, and the body again from its start. */
async function peek(body: AsyncIterable<Buffer>): Promise<{ head: Buffer; all: AsyncIterable<Buffer> }> {
  const iterator = body[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let length = 0;
  while (length < PEEK) {
    const next = await iterator.next();
    if (next.done) break;
    seen.push(next.value);
    length += next.value.length;
  }
  async function* all(): AsyncGenerator<Buffer> {
    yield* seen;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  return { head: Buffer.concat(seen), all: all() };
}

function bufferSource(bytes: Buffer): ImageSource {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

/**
 * What the job's `raw` image is, from its first bytes, and its disk bytes. `type` is the job's;
 * only raw (possibly compressed) is decoded here (qcow2 has its own streaming decoder). `native`
 * (tests): null for the bundled decoders alone.
 */
export async function decodeStream(
  body: AsyncIterable<Buffer>,
  native: NativeDecoders | null = nativeDecoders(),
): Promise<DecodedStream> {
  const { head, all } = await peek(body);
  const detected = detectFormat(bufferSource(head));
  switch (detected.format) {
    case 'gzip':
      return { format: 'gzip', disk: zlibDisk(all, zlib.createGunzip({ chunkSize: ZLIB_CHUNK }), 'gzip') };
    case 'zstd':
      return { format: 'zstd', disk: zstdDisk(all) };
    case 'xz':
      return { format: 'xz', disk: xzDisk(all, native) };
    case 'bzip2':
      if (!native) throw streamingUnsupported('a bzip2-compressed image (its decoder needs the whole file)');
      return {
        format: 'bzip2',
        // Each chunk its own buffer: the writer holds the first MiB's.
        disk: decodedNatively(
          native,
          'bzip2',
          all[Symbol.asyncIterator](),
          (reason) => streamImageBad('bzip2', reason),
          false,
        ),
      };
    default:
      return { format: 'raw', disk: all };
  }
}

async function* zlibDisk(
  input: AsyncIterable<Buffer>,
  decoder: zlib.Gunzip | zlib.ZstdDecompress,
  format: string,
): AsyncGenerator<Buffer> {
  const source = Readable.from(input, { objectMode: false });
  source.on('error', (error) => decoder.destroy(error));
  source.pipe(decoder);
  try {
    for await (const chunk of decoder as AsyncIterable<Buffer>) yield chunk;
  } catch (error) {
    if (error instanceof ByoiError) throw error; // the download's own failure
    throw streamImageBad(format, (error as Error).message);
  } finally {
    source.destroy();
    decoder.destroy();
  }
}

/** Hands on every chunk after `watch` saw it (the caller then drains what the decoder left to `watch` too). */
async function* watched(input: AsyncIterable<Buffer>, watch: (chunk: Buffer) => void): AsyncGenerator<Buffer> {
  for await (const chunk of input) {
    watch(chunk);
    yield chunk;
  }
}

/**
 * zstd, frame by frame: Node's decoder stops at the end of a frame, so each frame (pzstd and `cat`
 * make several) is cut out of the stream by the frame watch and gets a decoder of its own.
 */
async function* zstdDisk(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const watch = new ZstdFrameWatch();
  const iterator = input[Symbol.asyncIterator]();
  /** The input not yet handed to a frame, from file offset `at`. */
  let pending: Buffer | undefined;
  let at = 0;
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      return false;
    }
    watch.update(next.value);
    if (watch.error !== undefined) throw streamImageBad('zstd', watch.error);
    pending = pending && pending.length > 0 ? Buffer.concat([pending, next.value]) : next.value;
    return true;
  };
  /** The bytes of frame `index`, taken from `pending` as they arrive. */
  async function* frameBytes(index: number): AsyncGenerator<Buffer> {
    const frame = watch.frames[index]!;
    for (;;) {
      if (pending && pending.length > 0) {
        const start = Math.max(at, frame.start);
        const end = frame.end === undefined ? at + pending.length : Math.min(frame.end, at + pending.length);
        if (end > start) yield pending.subarray(start - at, end - at);
        pending = pending.subarray(end - at);
        at = end;
        if (frame.end !== undefined && at >= frame.end) return;
      }
      if (!(await more())) return; // cut short: the decoder and the watch say so
    }
  }
  for (let index = 0; ; index++) {
    while (watch.frames.length <= index && (await more()));
    if (watch.frames.length <= index) break;
    yield* zlibDisk(frameBytes(index), zlib.createZstdDecompress({ chunkSize: ZLIB_CHUNK }), 'zstd');
  }
  const problem = watch.end();
  if (problem !== undefined) throw streamImageBad('zstd', problem);
}

async function* xzDisk(input: AsyncIterable<Buffer>, native: NativeDecoders | null): AsyncGenerator<Buffer> {
  const iterator = input[Symbol.asyncIterator]();
  let total = 0;
  let first = Buffer.alloc(0);
  const tail: Buffer[] = [];
  let tailLength = 0;
  const keep = (chunk: Buffer): void => {
    if (first.length < 64) first = Buffer.concat([first, chunk.subarray(0, 64 - first.length)]);
    total += chunk.length;
    tail.push(chunk);
    tailLength += chunk.length;
    while (tail.length > 1 && tailLength - tail[0]!.length >= XZ_TAIL) tailLength -= tail.shift()!.length;
  };
  const rest: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => iterator };
  /** Where the first stream ended, as the native decoder found it (the bundled one does not say). */
  let streamEnd: number | undefined;
  if (native) {
    // The first stream; what follows it was kept (the tail) and is checked below.
    const bytes = watched(rest, keep)[Symbol.asyncIterator]();
    const after = yield* decodedNatively(native, 'xz', bytes, (reason) => streamImageBad('xz', reason), false);
    streamEnd = total - after.length;
  } else yield* bundledXz(watched(rest, keep));
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) keep(next.value);
  // The file's last stream, read from its footer and index, must be its first: the decoders stop
  // at the end of the first stream, so a second one would be silently left out.
  const held = Buffer.concat(tail);
  const heldFrom = total - held.length;
  const source: ImageSource = {
    size: total,
    read: (offset, length) => {
      if (offset + length <= first.length) return first.subarray(offset, offset + length);
      if (offset >= heldFrom) return held.subarray(offset - heldFrom, offset - heldFrom + length);
      throw new RangeError('not held');
    },
  };
  let streams;
  try {
    streams = xzStreamRanges(source);
  } catch (error) {
    if (error instanceof RangeError)
      throw streamingUnsupported('an xz image of several streams, or with an index of over 1 MiB');
    throw streamImageBad('xz', (error as Error).message);
  }
  if (streams.length !== 1) throw streamingUnsupported('an xz image of several streams');
  // An index that claims the bytes after the decoded stream too would hide them.
  if (streamEnd !== undefined && streams[0]!.end !== streamEnd)
    throw streamImageBad('xz', 'bad xz data (the index does not end where the stream does)');
}

/** xz through the bundled decoder (xz-embedded in WebAssembly), which stops after the first stream. */
async function* bundledXz(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const { XzReadableStream } = (await import('xz-decompress')).default; // loaded when first used (~3 ms)
  const decoder = new XzReadableStream(ReadableStream.from(input));
  let finished = false;
  try {
    for await (const chunk of decoder)
      if (chunk.length > 0) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    finished = true;
  } catch (error) {
    if (error instanceof ByoiError) throw error;
    throw streamImageBad(
      'xz',
      /error code 7|error code 6/.test((error as Error).message)
        ? 'corrupt xz data'
        : 'the xz data is corrupt or ends early',
    );
  } finally {
    if (!finished) await decoder.cancel().catch(() => undefined);
  }
}
