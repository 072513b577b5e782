// An image held in RAM as fixed-size chunks: no temp file and no single giant Buffer
// (Node caps one Buffer well below the sizes of disk images), with O(1) random access.
// The chunks are SharedArrayBuffers, page-aligned where they can be (newChunk): worker threads
// read them where they lie (the download's digest, the early pass), without a copy.
import { open } from 'node:fs/promises';
import { adviseHugePages } from '../system/huge-pages.ts';
import { addressSpaceUnlimited } from '../system/memory.ts';
import { isAlignedMemory, PAGE_SIZE, sharedAlignedMemory } from './aligned-memory.ts';
import { checkRead, type ImageSource } from './image-source.ts';

const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;

export interface ChunkedBufferOptions {
  /**
   * Appending allocates each chunk one ahead of need and hands it here first (as far as expectSize()
   * says it will be filled), e.g. to have another thread make those pages resident meanwhile
   * (lib/download/digest-thread.ts). seal() drops the last one.
   */
  readonly ahead?: (chunk: Buffer) => void;
}

/**
 * Aligned chunks alive at most: each holds ~8 GiB of address space (WebAssembly's guard regions),
 * these 8 TiB of the 128 an x86-64 process has, where nothing limits it (addressSpaceUnlimited).
 */
const MAX_ALIGNED_CHUNKS = 1024;
/** Smaller chunks (tests' images) are not worth 8 GiB of address space each. */
const MIN_ALIGNED_CHUNK = 1024 * 1024;
let alignedChunks = 0;
const alignedCollected = new FinalizationRegistry<undefined>(() => alignedChunks--);

/**
 * A chunk of shared memory, page-aligned where it can be: a plain image's runs then go to the disk
 * by direct write from where they arrived, without the writer's staging copy
 * (lib/write/positional-writes.ts). Past MAX_ALIGNED_CHUNKS (16 GiB of 16 MiB chunks), below
 * MIN_ALIGNED_CHUNK, for a size that is no whole number of pages, where the address space is
 * limited, or when the engine refuses one (aligned-memory.ts), chunks are ordinary shared memory.
 */
function newChunk(size: number): Buffer {
  const wanted = size >= MIN_ALIGNED_CHUNK && size % PAGE_SIZE === 0 && alignedChunks < MAX_ALIGNED_CHUNKS;
  if (!wanted || !addressSpaceUnlimited()) {
    const memory = new SharedArrayBuffer(size);
    adviseHugePages(memory); // as aligned memory is (aligned-memory.ts)
    return Buffer.from(memory);
  }
  const memory = sharedAlignedMemory(size, 1);
  if (isAlignedMemory(memory)) {
    alignedChunks++;
    alignedCollected.register(memory, undefined);
  }
  return Buffer.from(memory, 0, size);
}

export class ChunkedBuffer implements ImageSource {
  readonly chunkSize: number;
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private readonly ahead: ((chunk: Buffer) => void) | undefined;
  /** The chunk allocated ahead of need (options.ahead). */
  private spare: Buffer | undefined;
  /** The size announced for what is appended (expectSize()): nothing is allocated ahead past it. */
  private expected: number | undefined;

  constructor(chunkSize = DEFAULT_CHUNK_SIZE, options: ChunkedBufferOptions = {}) {
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`bad chunk size ${chunkSize}`);
    this.chunkSize = chunkSize;
    this.ahead = options.ahead;
  }

  get size(): number {
    return this.length;
  }

  /** Appends a copy of `bytes` (the caller may reuse its buffer). */
  append(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      const room = this.room(bytes.length - done);
      room.set(bytes.subarray(done, done + room.length));
      this.grow(room.length);
      done += room.length;
    }
  }

  /**
   * Where the next bytes go, in place (a socket reads straight into it): the rest of the last
   * chunk, or a new one when it is full; at most `most` bytes. Counted once written, by grow().
   */
  room(most: number): Buffer {
    const index = Math.floor(this.length / this.chunkSize);
    if (index === this.chunks.length) this.chunks.push(this.nextChunk());
    const within = this.length - index * this.chunkSize;
    return this.chunks[index]!.subarray(within, within + Math.min(most, this.chunkSize - within));
  }

  /** Counts `n` bytes written at the start of the last room(). */
  grow(n: number): void {
    const roomGiven = Math.floor(this.length / this.chunkSize) < this.chunks.length;
    if (
      !Number.isSafeInteger(n) ||
      n < 0 ||
      (n > 0 && !roomGiven) ||
      n > this.chunkSize - (this.length % this.chunkSize)
    )
      throw new RangeError(`cannot grow by ${n}`);
    this.length += n;
  }

  /** The `index`th chunk, whole (shared memory: other threads may read it where it lies). */
  chunk(index: number): Buffer {
    const chunk = this.chunks[index];
    if (!chunk) throw new RangeError(`no chunk ${index} in ${this.chunks.length}`);
    return chunk;
  }

  /**
   * The size the appends are announced to reach (a download's Content-Length), or null if unknown:
   * chunks are then allocated and handed to options.ahead only up to it, the last one only as far
   * as it reaches (a hint: appends past it still work).
   */
  expectSize(size: number | null): void {
    this.expected = size ?? undefined;
  }

  /** No more appends: the chunk allocated ahead, if any, is let go. */
  seal(): void {
    this.spare = undefined;
  }

  private nextChunk(): Buffer {
    if (!this.ahead) return newChunk(this.chunkSize);
    const chunk = this.spare ?? newChunk(this.chunkSize);
    this.spare = undefined;
    // The chunk after the one returned here (which becomes index chunks.length): index chunks.length + 1.
    const nextStart = (this.chunks.length + 1) * this.chunkSize;
    const nextBytes = Math.min(this.chunkSize, (this.expected ?? Infinity) - nextStart);
    if (nextBytes > 0) {
      this.spare = newChunk(this.chunkSize);
      this.ahead(this.spare.subarray(0, nextBytes));
    }
    return chunk;
  }

  read(offset: number, length: number): Buffer {
    checkRead(offset, length, this.length);
    if (length === 0) return Buffer.alloc(0); // even at the end, where there may be no chunk
    const index = Math.floor(offset / this.chunkSize);
    const within = offset - index * this.chunkSize;
    if (within + length <= this.chunkSize) return this.chunks[index]!.subarray(within, within + length);
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const i = Math.floor(at / this.chunkSize);
      const w = at - i * this.chunkSize;
      const n = Math.min(this.chunkSize - w, length - done);
      this.chunks[i]!.copy(out, done, w, w + n);
      done += n;
    }
    return out;
  }

  /** The bytes [offset, offset + length) as views, one per chunk they span: no copy. */
  *views(offset: number, length: number): Generator<Buffer> {
    for (let at = offset; at < offset + length;) {
      const n = Math.min(offset + length - at, this.chunkSize - (at % this.chunkSize));
      yield this.read(at, n);
      at += n;
    }
  }

  /**
   * Joins `parts` end to end. A part that starts on a chunk boundary of the result takes its
   * chunks over without copying a byte (all the parts of a download split at chunk boundaries
   * do); any other is copied. The parts must not be used after.
   */
  static concat(parts: readonly ChunkedBuffer[]): ChunkedBuffer {
    const chunkSize = parts[0]?.chunkSize ?? DEFAULT_CHUNK_SIZE;
    const joined = new ChunkedBuffer(chunkSize);
    for (const part of parts) {
      if (part.chunkSize === chunkSize && joined.length % chunkSize === 0) {
        joined.chunks.push(...part.chunks.slice(0, Math.ceil(part.length / chunkSize)));
        joined.length += part.length;
      } else {
        for (let at = 0; at < part.length; at += part.chunkSize)
          joined.append(part.read(at, Math.min(part.chunkSize, part.length - at)));
      }
    }
    return joined;
  }

  /** Reads a whole file into RAM. */
  static async fromFile(path: string, chunkSize = DEFAULT_CHUNK_SIZE): Promise<ChunkedBuffer> {
    const image = new ChunkedBuffer(chunkSize);
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      let position = 0;
      while (position < size) {
        const within = position % chunkSize;
        if (within === 0) image.chunks.push(newChunk(chunkSize));
        const chunk = image.chunks[image.chunks.length - 1]!;
        const { bytesRead } = await handle.read(chunk, within, Math.min(chunkSize - within, size - position), position);
        if (bytesRead === 0) break; // the file shrank while we read it
        position += bytesRead;
        image.length = position;
      }
    } finally {
      await handle.close();
    }
    return image;
  }
}
