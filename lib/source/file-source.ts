// An image file read where it lies, for the commands that take a file (`convert`, `inspect`):
// holding a multi-GiB file in RAM first would cost as much time as the conversion and as much
// memory as the file. Every read is one pread into a buffer of its own, so a view handed to a
// consumer stays valid however long it is kept.
//
// The decoders cut data runs at multiples of `chunkSize`, so most reads are a few MiB. What a
// consumer hands back once written (`lend`, then `recycle`) goes into a slab of page-aligned chunk
// buffers: a fresh buffer per read costs its page faults and its collection (a 741 MiB image:
// ~60,000 faults and ~0.1 s of GC on the convert benchmark), a recycled one neither; and aligned,
// the writer hands them to the device as they are, short runs too (lib/write/positional-writes.ts:
// one unaligned piece sends its whole batch through a staging copy). `read` never lends: tables
// and headers are kept for good. When the slab is all lent out, `lend` gives an ordinary buffer.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { imageFileChanged, imageFileUnreadable } from '../errors.ts';
import { alignedBuffers } from './aligned-memory.ts';
import { checkRead, type ImageSource } from './image-source.ts';

const CHUNK_SIZE = 4 * 1024 * 1024;
/** Slab buffers: a writer holds a few MiB in a batch and a few in flight. */
const SLAB_BUFFERS = 8;

export class FileSource implements ImageSource {
  readonly size: number;
  readonly chunkSize = CHUNK_SIZE;
  private fd: number | undefined;
  /** Made on the first read that wants one. */
  private slab: Buffer[] | undefined;
  /** Indexes of the slab buffers not lent out. */
  private readonly free: number[] = [];

  constructor(path: string) {
    this.fd = openSync(path, 'r');
    try {
      const st = fstatSync(this.fd);
      if (st.isDirectory()) throw Object.assign(new Error('it is a directory'), { code: 'EISDIR' });
      this.size = st.size;
    } catch (error) {
      this.close();
      throw error;
    }
  }

  read(offset: number, length: number): Buffer {
    return this.readInto(offset, length, false);
  }

  lend(offset: number, length: number): Buffer {
    return this.readInto(offset, length, true);
  }

  private readInto(offset: number, length: number, lent: boolean): Buffer {
    checkRead(offset, length, this.size);
    if (this.fd === undefined) throw new Error('the image file is closed');
    const out = (lent && this.slabBuffer(length)) || Buffer.allocUnsafe(length);
    for (let done = 0; done < length;) {
      let n: number;
      try {
        n = readSync(this.fd, out, done, length - done, offset + done);
      } catch (error) {
        throw imageFileUnreadable((error as Error).message, error);
      }
      // The file shrank after it was opened: its bytes are no longer the image that was checked.
      if (n === 0) throw imageFileChanged(offset + done);
      done += n;
    }
    return out;
  }

  get descriptor(): number | undefined {
    return this.fd;
  }

  recycle(bytes: Buffer): void {
    const slab = this.slab;
    if (!slab || bytes.buffer !== slab[0]!.buffer) return;
    const index = Math.floor(bytes.byteOffset / CHUNK_SIZE);
    // A second recycle of a buffer (or of another view of it) is ignored.
    if (!this.free.includes(index)) this.free.push(index);
  }

  /** A free slab buffer's first `length` bytes, or undefined (too long, or all lent out). */
  private slabBuffer(length: number): Buffer | undefined {
    if (length === 0 || length > CHUNK_SIZE) return undefined;
    if (!this.slab) {
      this.slab = alignedBuffers(CHUNK_SIZE, SLAB_BUFFERS);
      this.free.push(...this.slab.keys());
    }
    const index = this.free.pop();
    return index === undefined ? undefined : this.slab[index]!.subarray(0, length);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
