// A raw disk that arrives compressed (.raw.gz, .raw.xz, .raw.zst, .raw.bz2, as Flatcar, Talos and
// Fedora CoreOS publish theirs). The compressed file is what is held; the disk is decoded as a
// stream, twice: once when it is opened (its size is known only at the end of the stream, and a
// corrupt stream must be refused before anything is written), and again while it is written.
// The first pass keeps only the disk's first MiB (to look for a partition table) and where its
// zero runs lie; it stops, refusing the image, as soon as the disk grows past `limit` bytes.
import { compressedImageBad, compressedImageTooBig } from '../errors.ts';
import { DecompressError, decompressedChunks, type Compression } from './decompress.ts';
import type { DiskImage, Extent, ExtentShape, ImageInfo } from './types.ts';
import type { ImageSource } from '../source/image-source.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Zero detection granularity, as for an uncompressed raw image (lib/formats/raw.ts). */
const BLOCK = 64 * KiB;
/** Decoded bytes are gathered into windows of this size; data extents never cross one. */
const WINDOW = 4 * MiB;
/** The decoded head kept by the first pass, for detection (partition table, sector size). */
const HEAD = MiB;
/** Shapes kept by the first pass for the dry pass; past this many, the dry pass decodes again. */
const MAX_SHAPES = 1 << 20;

export interface CompressedRawOptions {
  /** The disk may not decode to more than this many bytes (the target's size): a bomb stops here. */
  readonly limit?: number;
  /** The first pass's progress: compressed bytes read of the file's. */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface CompressedRawImage extends DiskImage {
  /** The decoded disk's first MiB (or all of it, if smaller). */
  readonly head: Buffer;
}

const ZEROS = Buffer.alloc(BLOCK);

function isAllZero(block: Buffer): boolean {
  return block.length === BLOCK ? block.equals(ZEROS) : block.equals(ZEROS.subarray(0, block.length));
}

function decodeRefusal(format: Compression, error: unknown): Error {
  if (error instanceof DecompressError) return compressedImageBad(format, error.message, { cause: error });
  return error as Error;
}

/** Decoded bytes in windows of WINDOW bytes (the last may be shorter), each a buffer of its own. */
async function* decodedWindows(
  source: ImageSource,
  format: Compression,
  limit: number,
): AsyncGenerator<{ offset: number; bytes: Buffer }> {
  let window = Buffer.allocUnsafe(WINDOW);
  let filled = 0;
  let offset = 0;
  try {
    for await (const chunk of decompressedChunks(source, format)) {
      if (offset + filled + chunk.length > limit) throw compressedImageTooBig(format, limit);
      for (let at = 0; at < chunk.length;) {
        const n = chunk.copy(window, filled, at);
        filled += n;
        at += n;
        if (filled === WINDOW) {
          yield { offset, bytes: window };
          offset += WINDOW;
          window = Buffer.allocUnsafe(WINDOW);
          filled = 0;
        }
      }
    }
  } catch (error) {
    throw decodeRefusal(format, error);
  }
  if (filled > 0) yield { offset, bytes: window.subarray(0, filled) };
}

/** The window's blocks as runs of zero and data blocks, in order. */
function* runsOf(offset: number, bytes: Buffer): Generator<{ start: number; end: number; zero: boolean }> {
  let runStart = 0;
  let runZero = isAllZero(bytes.subarray(0, BLOCK));
  for (let at = BLOCK; at < bytes.length; at += BLOCK) {
    const zero = isAllZero(bytes.subarray(at, at + BLOCK));
    if (zero === runZero) continue;
    yield { start: offset + runStart, end: offset + at, zero: runZero };
    runStart = at;
    runZero = zero;
  }
  yield { start: offset + runStart, end: offset + bytes.length, zero: runZero };
}

/** Appends a shape, merging it into the last one when both are zero or both are data. */
function addShape(shapes: ExtentShape[], start: number, end: number, zero: boolean): void {
  const last = shapes.at(-1);
  if (last && last.zero === zero && last.offset + last.length === start)
    shapes[shapes.length - 1] = { offset: last.offset, length: end - last.offset, zero };
  else shapes.push({ offset: start, length: end - start, zero });
}

export async function openCompressedRaw(
  source: ImageSource,
  format: Compression,
  options: CompressedRawOptions = {},
): Promise<CompressedRawImage> {
  const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
  const { onProgress } = options;
  const watched: ImageSource = onProgress
    ? {
        size: source.size,
        read: (offset, length) => (onProgress(offset + length, source.size), source.read(offset, length)),
      }
    : source;
  const head = Buffer.alloc(HEAD);
  let size = 0;
  let allocated = 0;
  let shapes: ExtentShape[] | undefined = [];
  for await (const { offset, bytes } of decodedWindows(watched, format, limit)) {
    if (offset < HEAD) bytes.copy(head, offset, 0, Math.min(bytes.length, HEAD - offset));
    for (const run of runsOf(offset, bytes)) {
      if (!run.zero) allocated += run.end - run.start;
      if (shapes) addShape(shapes, run.start, run.end, run.zero);
    }
    if (shapes && shapes.length > MAX_SHAPES) shapes = undefined;
    size = offset + bytes.length;
  }
  const info: ImageInfo = {
    format: 'raw',
    virtualSize: size,
    fileSize: source.size,
    allocatedBytes: allocated,
    compression: format,
    features: { compressedSize: source.size },
  };
  const kept = shapes;
  return {
    info,
    head: head.subarray(0, Math.min(HEAD, size)),
    extents: () => compressedRawExtents(source, format, size),
    // The first pass found every run and refused what decoding refuses: the dry pass replays it.
    ...(kept && { check: () => replay(kept) }),
  };
}

async function* replay(shapes: readonly ExtentShape[]): AsyncGenerator<ExtentShape> {
  yield* shapes;
}

/** The second decoding: the same bytes (the file in RAM has not changed), as extents. */
async function* compressedRawExtents(source: ImageSource, format: Compression, size: number): AsyncGenerator<Extent> {
  let zeroStart = -1;
  let end = 0;
  for await (const { offset, bytes } of decodedWindows(source, format, size)) {
    for (const run of runsOf(offset, bytes)) {
      if (run.zero) {
        if (zeroStart < 0) zeroStart = run.start;
        continue;
      }
      if (zeroStart >= 0) yield { offset: zeroStart, length: run.start - zeroStart, zero: true };
      zeroStart = -1;
      yield {
        offset: run.start,
        length: run.end - run.start,
        data: bytes.subarray(run.start - offset, run.end - offset),
      };
    }
    end = offset + bytes.length;
  }
  if (zeroStart >= 0) yield { offset: zeroStart, length: end - zeroStart, zero: true };
  if (end !== size) throw compressedImageBad(format, `it decoded to ${end} bytes, then to ${size}`);
}
