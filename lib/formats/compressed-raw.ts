// A raw disk that arrives compressed (.raw.gz, .raw.xz, .raw.zst, .raw.bz2, as Flatcar, Talos and
// Fedora CoreOS publish theirs). The compressed file is what is held; the disk is decoded as a
// stream when it is opened, or while it downloads (lib/formats/early-check.ts `firstPass`): its
// size is known only at the end of the stream, and a corrupt stream must be refused before
// anything is written. It is decoded again while it is written unless the first pass could keep
// every window of data (`keepDecoded`). The first pass keeps the disk's first MiB
// (to look for a partition table) and where its zero runs lie; it stops, refusing the image, as
// soon as the disk grows past `limit` bytes. Windows are used again once written or looked at.
import { compressedImageBad, compressedImageTooBig } from '../errors.ts';
import { DecompressError, decompressedChunks, type Compression } from './decompress.ts';
import type { DiskImage, Extent, ExtentShape, ImageInfo, SharedPiece } from './types.ts';
import type { ImageSource } from '../source/image-source.ts';
import { alignedBuffers, isAlignedMemory, trustAligned } from '../source/aligned-memory.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Zero detection granularity, as for an uncompressed raw image (lib/formats/raw.ts). */
const BLOCK = 64 * KiB;
/** Decoded bytes are gathered into windows of this size; data extents never cross one. */
const WINDOW = 4 * MiB;
/** Windows made at a time (one allocation), at first and at most. */
const GROUP = 4;
const MAX_GROUP = 64;
/** The decoded head kept by the first pass, for detection (partition table, sector size). */
const HEAD = MiB;
/** Shapes kept by the first pass for the dry pass; past this many, the dry pass decodes again. */
const MAX_SHAPES = 1 << 20;

export interface CompressedRawOptions {
  /** The disk may not decode to more than this many bytes (the target's size): a bomb stops here. */
  readonly limit?: number;
  /** The first pass's progress: compressed bytes read of the file's. */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * Bytes of decoded data the first pass may keep for the write, which then decodes nothing: the
   * windows that hold data, all of them or none (past the budget, the write decodes the stream
   * again). Kept for the image's life. Default 0.
   */
  readonly keepDecoded?: number;
  /**
   * The first pass, already run over these very bytes (on another thread, while they arrived:
   * lib/formats/early-check.ts): the image is opened from it without decoding.
   */
  readonly firstPass?: FirstPass;
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

/**
 * A window of the decoded disk: its bytes, and the whole buffer they lie in (given back to a
 * WindowSupply, where one made it).
 */
interface DecodedWindow {
  readonly offset: number;
  readonly bytes: Buffer;
  readonly buffer: Buffer;
}

/**
 * Window buffers: page-aligned and advised for huge pages (a window filled in fresh memory costs a
 * page fault every 4 KiB otherwise, and a direct write of an aligned one needs no copy), made a
 * group at a time, each group as many as were made before (GROUP to MAX_GROUP): each is one
 * WebAssembly memory, which reserves gigabytes of address space, so a budget of many kept windows
 * takes few. One given back is used again first.
 */
class WindowSupply {
  private readonly free: Buffer[] = [];
  private made = 0;

  /** In memory another thread can be handed (`handFirstPass`). */
  private readonly shared: boolean;

  constructor(shared = false) {
    this.shared = shared;
  }

  take(): Buffer {
    if (this.free.length === 0) {
      const count = Math.min(MAX_GROUP, Math.max(GROUP, this.made));
      this.free.push(...alignedBuffers(WINDOW, count, this.shared));
      this.made += count;
    }
    return this.free.pop()!;
  }

  giveBack(buffer: Buffer): void {
    this.free.push(buffer);
  }
}

/** Decoded bytes in windows of WINDOW bytes (the last may be shorter), each in a buffer from `supply`. */
async function* decodedWindows(
  source: ImageSource,
  format: Compression,
  limit: number,
  supply: WindowSupply,
): AsyncGenerator<DecodedWindow> {
  let buffer = supply.take();
  let filled = 0;
  let offset = 0;
  try {
    for await (const chunk of decompressedChunks(source, format)) {
      if (offset + filled + chunk.length > limit) throw compressedImageTooBig(format, limit);
      for (let at = 0; at < chunk.length;) {
        const n = chunk.copy(buffer, filled, at);
        filled += n;
        at += n;
        if (filled === WINDOW) {
          yield { offset, bytes: buffer, buffer };
          offset += WINDOW;
          buffer = supply.take();
          filled = 0;
        }
      }
    }
  } catch (error) {
    throw decodeRefusal(format, error);
  }
  if (filled > 0) yield { offset, bytes: buffer.subarray(0, filled), buffer };
  else supply.giveBack(buffer);
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

/**
 * What the first pass learned of the decoded disk: enough to open it again without decoding, and,
 * where the budget allowed, every window of its data.
 */
export interface FirstPass {
  readonly size: number;
  readonly allocated: number;
  /** The disk's first MiB (or all of it, if smaller). */
  readonly head: Buffer;
  /** Its runs of zeros and data, in order; undefined past MAX_SHAPES (the dry pass decodes again). */
  readonly shapes: readonly ExtentShape[] | undefined;
  /** Every window that holds data, by offset; undefined where they did not all fit in the budget. */
  readonly kept: ReadonlyMap<number, Buffer> | undefined;
}

/**
 * The first pass: decodes the whole stream once, refusing it past `limit` bytes or where it does
 * not decode. `shared`: kept windows lie in memory another thread can take (`handFirstPass`).
 */
export function decodeFirstPass(
  source: ImageSource,
  format: Compression,
  options: CompressedRawOptions & { readonly shared?: boolean } = {},
): Promise<FirstPass> {
  return firstPassWith(new WindowSupply(options.shared), source, format, options);
}

/** The first pass, its windows from `supply`: those not kept go back to it, for the write to fill again. */
async function firstPassWith(
  supply: WindowSupply,
  source: ImageSource,
  format: Compression,
  options: CompressedRawOptions,
): Promise<FirstPass> {
  const limit = options.limit ?? Number.MAX_SAFE_INTEGER;
  const { onProgress } = options;
  // The furthest byte asked for: a zstd frame's walk reads a block header ahead of its bytes.
  let reached = 0;
  const watched: ImageSource = onProgress
    ? {
        size: source.size,
        read: (offset, length) => {
          reached = Math.max(reached, offset + length);
          onProgress(reached, source.size);
          return source.read(offset, length);
        },
      }
    : source;
  const head = Buffer.alloc(HEAD);
  let size = 0;
  let allocated = 0;
  let shapes: ExtentShape[] | undefined = [];
  // The windows that hold data, while they fit in the budget; past it, none (the write decodes again).
  const budget = options.keepDecoded ?? 0;
  let kept: Map<number, Buffer> | undefined = budget > 0 ? new Map() : undefined;
  for await (const { offset, bytes, buffer } of decodedWindows(watched, format, limit, supply)) {
    if (offset < HEAD) bytes.copy(head, offset, 0, Math.min(bytes.length, HEAD - offset));
    let data = false;
    for (const run of runsOf(offset, bytes)) {
      if (!run.zero) allocated += run.end - run.start;
      data ||= !run.zero;
      if (shapes) addShape(shapes, run.start, run.end, run.zero);
    }
    if (shapes && shapes.length > MAX_SHAPES) shapes = undefined;
    size = offset + bytes.length;
    if (kept && data && (kept.size + 1) * WINDOW <= budget) {
      kept.set(offset, bytes);
      continue;
    }
    if (data) kept = undefined; // the disk's data does not fit: nothing is kept
    supply.giveBack(buffer);
  }
  return { size, allocated, head: head.subarray(0, Math.min(HEAD, size)), shapes, kept };
}

/** A first pass as another thread of this process can take it: kept windows as views of shared memory. */
export interface HandedFirstPass extends Omit<FirstPass, 'kept' | 'head'> {
  /** A Buffer sent in a message arrives as a Uint8Array. */
  readonly head: Uint8Array;
  readonly kept: ReadonlyArray<{ readonly offset: number; readonly piece: SharedPiece }> | undefined;
}

/** `pass`, decoded with `shared`, for another thread (`takeFirstPass` there). */
export function handFirstPass(pass: FirstPass): HandedFirstPass {
  const kept =
    pass.kept &&
    [...pass.kept].map(([offset, bytes]) => {
      if (!(bytes.buffer instanceof SharedArrayBuffer))
        throw new TypeError('a first pass decoded without shared windows');
      const piece = {
        memory: bytes.buffer,
        byteOffset: bytes.byteOffset,
        length: bytes.length,
        aligned: isAlignedMemory(bytes.buffer),
      };
      return { offset, piece };
    });
  return { ...pass, kept };
}

/** A first pass another thread ran and handed over (`handFirstPass`). */
export function takeFirstPass(handed: HandedFirstPass): FirstPass {
  const kept =
    handed.kept &&
    new Map(
      handed.kept.map(({ offset, piece }) => {
        if (piece.aligned) trustAligned(piece.memory);
        return [offset, Buffer.from(piece.memory, piece.byteOffset, piece.length)];
      }),
    );
  const head = Buffer.from(handed.head.buffer, handed.head.byteOffset, handed.head.length);
  return { ...handed, head, kept };
}

export async function openCompressedRaw(
  source: ImageSource,
  format: Compression,
  options: CompressedRawOptions = {},
): Promise<CompressedRawImage> {
  // The write's windows, given back by the first pass where it ran here: filled again, not made anew.
  const supply = new WindowSupply();
  const { size, allocated, head, shapes, kept } =
    options.firstPass ?? (await firstPassWith(supply, source, format, options));
  const info: ImageInfo = {
    format: 'raw',
    virtualSize: size,
    fileSize: source.size,
    allocatedBytes: allocated,
    compression: format,
    features: { compressedSize: source.size },
  };
  return {
    info,
    head,
    extents: () =>
      kept
        ? extentsOf(windowsKept(kept, size))
        : checkedSize(extentsOf(decodedWindows(source, format, size, supply), supply), format, size),
    // The first pass found every run and refused what decoding refuses: the dry pass replays it.
    ...(shapes && { check: () => replay(shapes) }),
  };
}

async function* replay(shapes: readonly ExtentShape[]): AsyncGenerator<ExtentShape> {
  yield* shapes;
}

/** The kept windows in order, and the windows of zeros between them (kept for the image's life). */
async function* windowsKept(kept: ReadonlyMap<number, Buffer>, size: number): AsyncGenerator<DecodedWindow | Zeros> {
  for (let offset = 0; offset < size; offset += WINDOW) {
    const bytes = kept.get(offset);
    yield bytes ? { offset, bytes, buffer: bytes } : { offset, length: Math.min(WINDOW, size - offset) };
  }
}

/** A window known to hold only zeros. */
interface Zeros {
  readonly offset: number;
  readonly length: number;
}

/**
 * A disk's windows as extents: zero runs merged across windows, data runs within one window. With
 * `supply`, a window goes back to it once its last data extent is released (or at once if it has
 * none): a writer releases extents in order.
 */
async function* extentsOf(
  windows: AsyncIterable<DecodedWindow | Zeros>,
  supply?: WindowSupply,
): AsyncGenerator<Extent> {
  let zeroStart = -1;
  let end = 0;
  for await (const window of windows) {
    end = window.offset + ('bytes' in window ? window.bytes.length : window.length);
    if (!('bytes' in window)) {
      if (zeroStart < 0) zeroStart = window.offset;
      continue;
    }
    const { offset, bytes, buffer } = window;
    const runs = [...runsOf(offset, bytes)];
    const lastData = runs.findLastIndex((run) => !run.zero);
    if (lastData < 0) supply?.giveBack(buffer);
    for (const [i, run] of runs.entries()) {
      if (run.zero) {
        if (zeroStart < 0) zeroStart = run.start;
        continue;
      }
      if (zeroStart >= 0) yield { offset: zeroStart, length: run.start - zeroStart, zero: true };
      zeroStart = -1;
      const data = bytes.subarray(run.start - offset, run.end - offset);
      yield {
        offset: run.start,
        length: run.end - run.start,
        data,
        ...(supply && i === lastData && { release: once(() => supply.giveBack(buffer)) }),
      };
    }
  }
  if (zeroStart >= 0) yield { offset: zeroStart, length: end - zeroStart, zero: true };
}

/** `action`, run on the first call only: a window given back twice would be filled for two at once. */
function once(action: () => void): () => void {
  let done = false;
  return () => {
    if (!done) action();
    done = true;
  };
}

/** The second decoding's extents, refused if it decodes to another size than the first. */
async function* checkedSize(
  extents: AsyncGenerator<Extent>,
  format: Compression,
  size: number,
): AsyncGenerator<Extent> {
  let end = 0;
  for await (const extent of extents) {
    end = extent.offset + extent.length;
    yield extent;
  }
  if (end !== size) throw compressedImageBad(format, `it decoded to ${end} bytes, then to ${size}`);
}
