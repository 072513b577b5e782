// Decompressed bytes of a gzip, zstd, xz or bzip2 file as a stream of chunks, pulled: the input is
// read from the source a window at a time as the decoder asks for it, and the decoder runs only as
// far ahead as its consumer has taken. Nothing here holds the decompressed stream whole.
//
// gzip and zstd are Node's zlib; xz and bzip2 are the system's liblzma and libbz2 where the native
// module loads (lib/formats/native-decoders.ts), else the bundled decoders: xz-embedded compiled to
// WebAssembly (npm xz-decompress) and seek-bzip (pure JavaScript), driven one block at a time.
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import type Bunzip from 'seek-bzip';
import { xzStreams } from './xz-streams.ts';
import { nextZstdFrame, ZstdFrameWalk, ZstdStructureError } from './zstd-frames.ts';
import { decodedNatively, nativeDecoders, type NativeDecoders } from './native-decoders.ts';
import type { ImageSource } from '../source/image-source.ts';

export type Compression = 'gzip' | 'zstd' | 'xz' | 'bzip2';
export const compressions: ReadonlySet<string> = new Set<Compression>(['gzip', 'zstd', 'xz', 'bzip2']);

/** Why a compressed stream could not be decoded: corrupt, truncated, or not what it claims. */
export class DecompressError extends Error {}

const INPUT_WINDOW = 1024 * 1024;
/** zlib's output buffer: larger than its 16 KiB default, so fewer, larger chunks. */
const ZLIB_CHUNK = 256 * 1024;
/** bzip2 output is gathered into buffers of this size. */
const BZIP2_CHUNK = 1024 * 1024;

/** Which decoders decode xz and bzip2: the system's libraries where they load, else the bundled ones. */
export type DecoderChoice = 'native' | 'bundled';

/** The source's bytes [start, end) as views of at most one window each. */
function* windows(source: ImageSource, start = 0, end = source.size): Generator<Buffer> {
  for (let at = start; at < end; at += INPUT_WINDOW) yield source.read(at, Math.min(INPUT_WINDOW, end - at));
}

/**
 * The decompressed bytes, in order; a chunk may be overwritten once the next is asked for (copy
 * what is kept). Rejects with a DecompressError when the data is corrupt or ends early, and with
 * the source's own error where a read fails (no refusal of the image). Stopping
 * the iteration early stops the decoder and frees it. `choice` (tests): the bundled xz and bzip2
 * decoders even where the native ones load, or the native ones (throws where they do not).
 */
export function decompressedChunks(
  file: ImageSource,
  format: Compression,
  choice?: DecoderChoice,
): AsyncGenerator<Buffer> {
  const native = choice === 'bundled' ? null : nativeDecoders();
  if (choice === 'native' && !native) throw new Error('the native decoders are not built or do not load here');
  const failure: ReadFailure = {};
  return readFailuresAsThrown(decoded(noting(file, failure), format, native), failure);
}

/** The decoder of `format` over `source`: rejects with whatever it meets, a read's failure too (wrapped or not). */
function decoded(source: ImageSource, format: Compression, native: NativeDecoders | null): AsyncGenerator<Buffer> {
  switch (format) {
    case 'gzip':
      return zlibChunks(windows(source), zlib.createGunzip({ chunkSize: ZLIB_CHUNK }));
    case 'zstd':
      return zstdChunks(source);
    case 'xz':
      return native ? nativeXzChunks(source, native) : xzChunks(source);
    case 'bzip2':
      return native ? decodedNatively(native, 'bzip2', windows(source), refused, true) : bzip2Chunks(source);
  }
}

/**
 * xz through liblzma, stream after stream from the file's start (a file may hold several, with
 * zero padding between them, as `xz -d` reads them): decoding starts with the first bytes, where
 * the bundled decoder's streams are first found from the footer at the file's end.
 */
async function* nativeXzChunks(source: ImageSource, native: NativeDecoders): AsyncGenerator<Buffer> {
  for (let at = 0, streams = 0; at < source.size;) {
    if (++streams > MAX_PARTS) throw new DecompressError(`bad xz data (more than ${MAX_PARTS} streams)`);
    if (at > 0 && !startsWith(source, at, XZ_MAGIC))
      throw new DecompressError('bad xz data (bytes after the end of a stream)');
    let reached = at;
    const input = (function* (): Generator<Buffer> {
      for (const window of windows(source, at)) {
        reached += window.length;
        yield window;
      }
    })();
    const after = yield* decodedNatively(native, 'xz', input, refused, true);
    at = afterPadding(source, reached - after.length);
  }
}

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

function startsWith(source: ImageSource, at: number, magic: Buffer): boolean {
  return at + magic.length <= source.size && source.read(at, magic.length).equals(magic);
}

/** Where the zero bytes from `at` end: stream padding, which comes in fours. */
function afterPadding(source: ImageSource, at: number): number {
  let end = at;
  for (const window of windows(source, at)) {
    // A whole window compared at once: padding is bytes from the network, gigabytes of it possibly.
    if (window.equals(ZEROS.subarray(0, window.length))) {
      end += window.length;
      continue;
    }
    end += window.findIndex((byte) => byte !== 0);
    break;
  }
  if ((end - at) % 4 !== 0)
    throw new DecompressError(`bad xz data (${end - at} bytes of stream padding: not a multiple of four)`);
  return end;
}

const ZEROS = Buffer.alloc(INPUT_WINDOW);

const refused = (reason: string): Error => new DecompressError(reason);

/**
 * Streams or frames in one file past which it is refused: each costs a decoder (~0.1-0.2 ms),
 * and a file of empty ones would otherwise take hours. Tools make them of megabytes each.
 */
const MAX_PARTS = 1 << 20;

/**
 * zstd: each frame through its own decoder (Node's stops at the end of the first), handed its
 * bytes as its blocks are walked (lib/formats/zstd-frames.ts): decoding starts with the first bytes.
 */
async function* zstdChunks(source: ImageSource): AsyncGenerator<Buffer> {
  let frames = 0;
  for (let at = structure(() => nextZstdFrame(source, 0)); at < source.size;) {
    if (++frames > MAX_PARTS) throw new DecompressError(`bad zstd data (more than ${MAX_PARTS} frames)`);
    const frame = structure(() => new ZstdFrameWalk(source, at));
    yield* zlibChunks(frameBytes(source, frame), zlib.createZstdDecompress({ chunkSize: ZLIB_CHUNK }));
    at = structure(() => nextZstdFrame(source, frame.end!));
  }
}

/** `step`, its structure errors refusals. */
function structure<T>(step: () => T): T {
  try {
    return step();
  } catch (error) {
    throw error instanceof ZstdStructureError ? new DecompressError(error.message) : error;
  }
}

/** A frame's bytes in windows, each walked before it is handed on (a refusal ends the input, and so the decoder). */
function* frameBytes(source: ImageSource, frame: ZstdFrameWalk): Generator<Buffer> {
  for (let at = frame.start; at !== frame.end;) {
    const next = Math.min(
      structure(() => frame.walkTo(at + INPUT_WINDOW)),
      at + INPUT_WINDOW,
    );
    yield source.read(at, next - at);
    at = next;
  }
}

/** The decoder's output; its errors are refusals, as are its input's (the frame walk's). */
async function* zlibChunks(
  input: Iterable<Buffer>,
  decoder: zlib.Gunzip | zlib.ZstdDecompress,
): AsyncGenerator<Buffer> {
  const bytes = Readable.from(input, { objectMode: false });
  bytes.on('error', (error) => decoder.destroy(error));
  bytes.pipe(decoder);
  try {
    for await (const chunk of decoder as AsyncIterable<Buffer>) yield chunk;
  } catch (error) {
    throw error instanceof DecompressError ? error : new DecompressError((error as Error).message);
  } finally {
    bytes.destroy();
    decoder.destroy();
  }
}

/**
 * xz: each stream of the file (a file may hold several, one after another) through its own
 * decoder; xz-embedded stops at the end of the first. The decoder checks each block's check and
 * the index against what it decoded.
 */
async function* xzChunks(source: ImageSource): AsyncGenerator<Buffer> {
  let streams: readonly (readonly [number, number])[];
  try {
    streams = xzStreams(source);
  } catch (error) {
    throw new DecompressError((error as Error).message);
  }
  // Loaded when first used (~2 ms of every start otherwise). A CommonJS bundle: its class is a property of the module object.
  const { XzReadableStream } = (await import('xz-decompress')).default;
  for (const [start, end] of streams) {
    const input = ReadableStream.from(windows(source, start, end));
    const decoder = new XzReadableStream(input);
    let finished = false;
    try {
      for await (const chunk of decoder) {
        if (chunk.length > 0) yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
      }
      finished = true;
    } catch (error) {
      throw new DecompressError(xzReason(error));
    } finally {
      // Breaking out of the loop cancels the decoder; a finished one has released itself.
      if (!finished) await decoder.cancel().catch(() => undefined);
    }
  }
}

function xzReason(error: unknown): string {
  const message = (error as Error).message;
  // xz-embedded's codes (xz.h): 5 unsupported options, 6 bad data, 7 corrupt or check failed, 8 no progress (truncated).
  const codes: Record<string, string> = {
    '3': 'memory limit',
    '4': 'not xz data',
    '5': 'unsupported xz options',
    '6': 'corrupt xz data',
    '7': 'corrupt xz data (a check failed)',
    '8': 'the xz data ends early',
  };
  const code = /error code (\d+)/.exec(message)?.[1];
  if (code !== undefined) return codes[code] ?? `xz error ${code}`;
  // The decoder asks for more input after the last byte: the stream ends early.
  return error instanceof TypeError ? 'the xz data ends early' : message;
}

/** The first failure of a source's reads (`noting`), kept as it was thrown. */
interface ReadFailure {
  thrown?: { readonly error: unknown };
}

/**
 * `source`, noting the first failure of its reads: the decoders wrap what they meet in their own
 * errors, and a read's failure (an I/O error, a download called off) is no refusal of the image.
 */
function noting(source: ImageSource, failure: ReadFailure): ImageSource {
  return {
    size: source.size,
    read: (offset, length) => {
      try {
        return source.read(offset, length);
      } catch (error) {
        failure.thrown ??= { error };
        throw error;
      }
    },
  };
}

/** `chunks`, rejecting with a read's failure as it was thrown where one was noted, however the decoder wrapped it. */
async function* readFailuresAsThrown(chunks: AsyncGenerator<Buffer>, failure: ReadFailure): AsyncGenerator<Buffer> {
  try {
    yield* chunks;
  } catch (error) {
    throw failure.thrown ? failure.thrown.error : error;
  }
}

/** A byte reader over the source for seek-bzip; reading past the end is a truncated stream. */
function byteReader(source: ImageSource): {
  readByte(): number;
  read(buffer: Uint8Array, offset: number, length: number): number;
  eof(): boolean;
} {
  let window: Buffer = Buffer.alloc(0);
  let windowStart = 0;
  let position = 0;
  const readByte = (): number => {
    const within = position - windowStart;
    if (within >= 0 && within < window.length) {
      position++;
      return window[within]!;
    }
    if (position >= source.size) throw new DecompressError('the bzip2 data ends early');
    windowStart = position;
    window = source.read(position, Math.min(INPUT_WINDOW, source.size - position));
    position++;
    return window[0]!;
  };
  return {
    readByte,
    read(buffer, offset, length) {
      let n = 0;
      while (n < length && position < source.size) buffer[offset + n++] = readByte();
      return n === 0 && length > 0 ? -1 : n;
    },
    eof: () => position >= source.size,
  };
}

/** Gathers seek-bzip's output, one byte per call, into buffers of BZIP2_CHUNK bytes. */
class ByteSink {
  private current = Buffer.allocUnsafe(BZIP2_CHUNK);
  private used = 0;
  private pieces: Buffer[] = [];

  writeByte(byte: number): void {
    if (this.used === BZIP2_CHUNK) {
      this.pieces.push(this.current);
      this.current = Buffer.allocUnsafe(BZIP2_CHUNK);
      this.used = 0;
    }
    this.current[this.used++] = byte;
  }

  /** The bytes gathered since the last take. */
  take(): Buffer[] {
    if (this.used > 0) this.pieces.push(this.current.subarray(0, this.used));
    const out = this.pieces;
    this.pieces = [];
    if (this.used > 0) {
      this.current = Buffer.allocUnsafe(BZIP2_CHUNK);
      this.used = 0;
    }
    return out;
  }
}

/** bzip2, one block at a time: a block decodes to at most ~46 MB, gathered then handed on. */
async function* bzip2Chunks(source: ImageSource): AsyncGenerator<Buffer> {
  const input = byteReader(source);
  const output = new ByteSink();
  const { default: Bunzip } = await import('seek-bzip'); // loaded when first used
  let bz: Bunzip;
  try {
    bz = new Bunzip(input, output);
  } catch (error) {
    throw new DecompressError(bzip2Reason(error));
  }
  for (;;) {
    try {
      if (bz._init_block()) {
        bz._read_bunzip();
      } else {
        const expected = bz.reader.read(32) >>> 0;
        if (expected !== bz.streamCRC) throw new DecompressError('corrupt bzip2 data (the stream CRC does not match)');
        // Several streams end to end (pbzip2, or files joined with cat) are one file, as for bzip2 -d.
        if (input.eof()) break;
        bz._start_bunzip(input, output);
      }
    } catch (error) {
      throw error instanceof DecompressError ? error : new DecompressError(bzip2Reason(error));
    }
    yield* output.take();
  }
  yield* output.take();
}

function bzip2Reason(error: unknown): string {
  const message = (error as Error).message ?? String(error);
  return /crc/i.test(message) ? `corrupt bzip2 data (${message})` : `bad bzip2 data (${message})`;
}
