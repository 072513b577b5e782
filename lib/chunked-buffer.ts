// An image held in RAM as fixed-size chunks: no temp file and no single giant Buffer
// (Node caps one Buffer well below the sizes of disk images), with O(1) random access.
import { open } from 'node:fs/promises';
import type { ImageSource } from './formats/types.ts';

const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;
/** Reads in flight in fromFile: the size of libuv's thread pool, which runs them. */
const PARALLEL_READS = 4;

export class ChunkedBuffer implements ImageSource {
  readonly chunkSize: number;
  private readonly chunks: Buffer[] = [];
  private length = 0;

  constructor(chunkSize = DEFAULT_CHUNK_SIZE) {
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`bad chunk size ${chunkSize}`);
    this.chunkSize = chunkSize;
  }

  get size(): number {
    return this.length;
  }

  /** Appends a copy of `bytes` (the caller may reuse its buffer). */
  append(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) {
      const within = this.length % this.chunkSize;
      if (within === 0) this.chunks.push(Buffer.allocUnsafeSlow(this.chunkSize));
      const chunk = this.chunks[this.chunks.length - 1]!;
      const n = Math.min(this.chunkSize - within, bytes.length - done);
      chunk.set(bytes.subarray(done, done + n), within);
      done += n;
      this.length += n;
    }
  }

  read(offset: number, length: number): Buffer {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.length) {
      throw new RangeError(`read of ${length} bytes at ${offset} is outside an image of ${this.length} bytes`);
    }
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

  /**
   * Reads a whole file into RAM, several chunks at once: most of the cost is the kernel faulting in
   * fresh pages and copying, which then runs on every core (measured: up to 2x faster than one read
   * at a time on 2 vCPUs).
   */
  static async fromFile(path: string, chunkSize = DEFAULT_CHUNK_SIZE): Promise<ChunkedBuffer> {
    const image = new ChunkedBuffer(chunkSize);
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      const count = Math.ceil(size / chunkSize);
      const filled: number[] = [];
      let next = 0;
      const readChunks = async (): Promise<void> => {
        for (let index = next++; index < count; index = next++) {
          const start = index * chunkSize;
          const length = Math.min(chunkSize, size - start);
          const chunk = Buffer.allocUnsafeSlow(chunkSize);
          image.chunks[index] = chunk;
          let done = 0;
          while (done < length) {
            const { bytesRead } = await handle.read(chunk, done, length - done, start + done);
            if (bytesRead === 0) break; // the file shrank while we read it
            done += bytesRead;
          }
          filled[index] = done;
        }
      };
      await Promise.all(Array.from({ length: Math.min(PARALLEL_READS, count) }, readChunks));
      // The image is what was read without a gap: the whole file, unless it shrank meanwhile.
      let index = 0;
      while (index < count && filled[index] === chunkSize) index++;
      image.length = index * chunkSize + (index < count ? filled[index]! : 0);
      image.chunks.length = Math.ceil(image.length / chunkSize);
    } finally {
      await handle.close();
    }
    return image;
  }
}
