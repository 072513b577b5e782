// An image file read where it lies, for the commands that take a file (`convert`, `inspect`):
// holding a multi-GiB file in RAM first would cost as much time as the conversion and as much
// memory as the file. Every `read` is one pread into a buffer of its own, so a view handed to a
// consumer stays valid however long it is kept: tables and headers are kept for good.
//
// What a consumer hands back once written (`lend`, then `recycle`: the decoders' data runs, cut at
// multiples of `chunkSize`) is read into a slab of page-aligned memory instead (lending-slab.ts): a
// fresh buffer per read costs its page faults and its collection (a 741 MiB image: ~60,000 faults
// and ~0.1 s of GC on the convert benchmark), a recycled one neither; and aligned (where the
// address space allows: aligned-memory.ts), the writer hands them to the device as they are. A
// lend longer than a slot, or when the slab is all lent out, is an ordinary buffer.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { imageFileChanged, imageFileUnreadable } from '../errors.ts';
import { checkRead, type ImageSource } from './image-source.ts';
import { LendingSlab } from './lending-slab.ts';

const CHUNK_SIZE = 4 * 1024 * 1024;
/** Slab slots: a writer holds a batch of up to 8 MiB of runs and one more in flight. */
const SLAB_SLOTS = 8;

export class FileSource implements ImageSource {
  readonly size: number;
  readonly chunkSize = CHUNK_SIZE;
  private fd: number | undefined;
  private readonly slab = new LendingSlab(CHUNK_SIZE, SLAB_SLOTS);

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
    checkRead(offset, length, this.size);
    return this.readInto(Buffer.allocUnsafe(length), offset);
  }

  lend(offset: number, length: number): Buffer {
    checkRead(offset, length, this.size);
    const out = this.slab.take(length);
    if (!out) return this.read(offset, length);
    try {
      return this.readInto(out, offset);
    } catch (error) {
      this.slab.give(out);
      throw error;
    }
  }

  /** Fills `out` with the file's bytes from `offset`. */
  private readInto(out: Buffer, offset: number): Buffer {
    if (this.fd === undefined) throw new Error('the image file is closed');
    for (let done = 0; done < out.length;) {
      let n: number;
      try {
        n = readSync(this.fd, out, done, out.length - done, offset + done);
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
    this.slab.give(bytes);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
