// An image file read where it lies, for the commands that take a file (`convert`, `inspect`):
// holding a multi-GiB file in RAM first would cost as much time as the conversion and as much
// memory as the file. Every read is one pread into a buffer of its own, so a view handed to a
// consumer stays valid however long it is kept.
//
// The decoders cut data runs at multiples of `chunkSize`, which keeps reads at a few MiB: reusing
// freed buffers of that size is cheap for the allocator, where fresh 16 MiB buffers each cost
// their page faults (a 741 MiB image: ~0.25 s against ~1.2 s here).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { ImageSource } from './formats/types.ts';

const CHUNK_SIZE = 4 * 1024 * 1024;

export class FileSource implements ImageSource {
  readonly size: number;
  readonly chunkSize = CHUNK_SIZE;
  private fd: number | undefined;

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
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`read of ${length} bytes at ${offset} is outside an image of ${this.size} bytes`);
    }
    if (this.fd === undefined) throw new Error('the image file is closed');
    const out = Buffer.allocUnsafe(length);
    for (let done = 0; done < length; ) {
      const n = readSync(this.fd, out, done, length - done, offset + done);
      // The file shrank after it was opened: its bytes are no longer the image that was checked.
      if (n === 0) throw new Error(`the image file ended at ${offset + done} of its ${this.size} bytes`);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
