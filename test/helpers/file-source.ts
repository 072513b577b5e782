// An ImageSource that reads a file on demand: lets detection tests look at large sparse samples
// (mkfs.xfs and mkfs.btrfs want hundreds of MiB) without loading them into RAM.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { ImageSource } from '../../lib/source/image-source.ts';

export function fileSource(path: string): ImageSource & { close(): void } {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  return {
    size,
    read(offset: number, length: number): Buffer {
      if (offset < 0 || length < 0 || offset + length > size)
        throw new RangeError(`read of ${length} at ${offset} outside ${size}`);
      const buffer = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const n = readSync(fd, buffer, done, length - done, offset + done);
        if (n === 0) throw new Error(`${path} shrank`);
        done += n;
      }
      return buffer;
    },
    close: () => closeSync(fd),
  };
}
