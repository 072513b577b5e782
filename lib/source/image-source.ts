// What every image source implements (the download in RAM, lib/source/chunked-buffer.ts; a file
// read where it lies, lib/source/file-source.ts) and every decoder reads.

/** Random-access bytes of an image: held in RAM (a download), or read from a file where it lies. */
export interface ImageSource {
  /** Total length in bytes. */
  readonly size: number;
  /**
   * Reads that stay inside one aligned block of this many bytes are the cheapest (a view into RAM,
   * or one pread of a reusable size): decoders cut their data runs at its multiples.
   */
  readonly chunkSize?: number;
  /**
   * Bytes [offset, offset + length). The bytes stay valid as long as the caller keeps them. The
   * caller checks bounds first; reading past `size` throws a RangeError.
   */
  read(offset: number, length: number): Buffer;
  /**
   * Optional: as `read`, for a caller that hands the buffer back with `recycle` once done with it
   * (data on its way to the disk). The source may lend memory it fills again (`lendOrRead`): a
   * source that has both lends a read of up to `chunkSize` bytes wherever it lies.
   */
  lend?(offset: number, length: number): Buffer;
  /**
   * Optional: the caller is done with `bytes`, a buffer `lend` returned, and with every view of it,
   * so the source may fill it again. Pass that Buffer itself: a view of it, a second recycle or a
   * buffer `read` returned is ignored. A source that allocates per read recycles its buffers this
   * way instead of faulting in fresh memory for every read. Not calling it is always safe.
   */
  recycle?(bytes: Buffer): void;
  /**
   * Optional: the bytes are an open file's, at the same offsets, and other threads of this process
   * may pread this descriptor themselves until the source is closed. Decoders' workers then read
   * what they decode, and the calling thread neither reads nor copies those bytes.
   */
  readonly descriptor?: number;
}

/** The bounds check every `read` makes first: [offset, offset + length) must lie inside `size` bytes of `what`. */
export function checkRead(offset: number, length: number, size: number, what = 'an image'): void {
  const inside =
    Number.isSafeInteger(offset) &&
    Number.isSafeInteger(length) &&
    offset >= 0 &&
    length >= 0 &&
    offset + length <= size;
  if (!inside) throw new RangeError(`read of ${length} bytes at ${offset} is outside ${what} of ${size} bytes`);
}

/** `source.lend` where the source lends, else `source.read`: for callers that recycle what they read. */
export function lendOrRead(source: ImageSource, offset: number, length: number): Buffer {
  return source.lend ? source.lend(offset, length) : source.read(offset, length);
}
