// Writes a disk image onto a block device as it arrives, for the streaming mode. The device's
// first and last MiB (MBR, GPT, backup GPT) are zeroed before anything else; the image's first
// MiB is held in RAM and written only by `finish`, once the caller has verified the whole image;
// `abort` zeroes both ends again. So a disk is never left with a partition table that points into
// a half-written or unverified image.
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { deviceBusy, streamedImageTooBig } from '../errors.ts';

const MiB = 1024 * 1024;
const HEAD = MiB;
/** Writes gather up to this much contiguous data. */
const BATCH = 8 * MiB;
const ZEROS = Buffer.alloc(MiB);

export class StreamWriter {
  private readonly handle: FileHandle;
  private readonly size: number;
  /** The image's first MiB (or less on a smaller disk), written last. */
  readonly head: Buffer;
  private batch: Buffer[] = [];
  private batchStart = 0;
  private batchLength = 0;
  private end = 0;

  private constructor(handle: FileHandle, size: number) {
    this.handle = handle;
    this.size = size;
    this.head = Buffer.alloc(Math.min(HEAD, size));
  }

  /** Opens the device exclusively and zeroes its ends. */
  static async open(path: string, size: number): Promise<StreamWriter> {
    const handle = await open(path, constants.O_WRONLY | constants.O_EXCL).catch((error: NodeJS.ErrnoException) => {
      throw error.code === 'EBUSY' ? deviceBusy(path) : error;
    });
    const writer = new StreamWriter(handle, size);
    try {
      await writer.zeroEnds();
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    return writer;
  }

  /** Bytes of the image past the highest offset written so far. */
  get written(): number {
    return this.end;
  }

  /** Writes `data` at guest `offset` (the first MiB goes to `head`). Offsets may come in any order. */
  async write(offset: number, data: Buffer): Promise<void> {
    if (offset + data.length > this.size) throw streamedImageTooBig(this.size);
    this.end = Math.max(this.end, offset + data.length);
    if (offset < HEAD) {
      const inHead = Math.min(data.length, this.head.length - offset);
      data.copy(this.head, offset, 0, inHead);
      if (inHead === data.length) return;
      offset += inHead;
      data = data.subarray(inHead);
    }
    if (
      this.batchLength > 0 &&
      (offset !== this.batchStart + this.batchLength || this.batchLength + data.length > BATCH)
    )
      await this.flush();
    if (this.batchLength === 0) this.batchStart = offset;
    // Chunks are fresh buffers (the network's, a decoder's): kept as they are until written.
    this.batch.push(data);
    this.batchLength += data.length;
    if (this.batchLength >= BATCH) await this.flush();
  }

  /** Writes zeros over [start, end): ranges of the image no piece covers. */
  async zero(start: number, end: number): Promise<void> {
    for (let at = start; at < end;) {
      const length = Math.min(end - at, ZEROS.length);
      await this.write(at, ZEROS.subarray(0, length));
      at += length;
    }
  }

  /** Everything but the first MiB on the disk and flushed (a barrier: the head must not go first). */
  async flushBody(): Promise<void> {
    await this.flush();
    await this.handle.datasync();
  }

  /** The verified image is complete: its first MiB goes on last. */
  async finish(): Promise<void> {
    await this.flushBody();
    await writeFully(this.handle, this.head, 0);
    await this.handle.datasync();
    await this.handle.close();
  }

  /** Something failed after writing began: no partition table is left on the disk. */
  async abort(): Promise<void> {
    this.batch = [];
    this.batchLength = 0;
    await this.zeroEnds().catch(() => undefined);
    await this.handle.close().catch(() => undefined);
  }

  private async flush(): Promise<void> {
    if (this.batchLength === 0) return;
    const buffers = this.batch;
    const position = this.batchStart;
    this.batch = [];
    this.batchLength = 0;
    const pending = buffers;
    let at = position;
    while (pending.length > 0) {
      const { bytesWritten } = await this.handle.writev(pending, at);
      if (bytesWritten <= 0) throw new Error(`write at ${at} made no progress`);
      at += bytesWritten;
      let done = bytesWritten;
      while (pending.length > 0 && done >= pending[0]!.length) done -= pending.shift()!.length;
      if (done > 0) pending[0] = pending[0]!.subarray(done);
    }
  }

  private async zeroEnds(): Promise<void> {
    await writeFully(this.handle, ZEROS.subarray(0, Math.min(MiB, this.size)), 0);
    const tail = Math.max(0, this.size - MiB);
    await writeFully(this.handle, ZEROS.subarray(0, this.size - tail), tail);
    await this.handle.datasync();
  }
}

async function writeFully(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    if (bytesWritten <= 0) throw new Error(`write at ${position + done} made no progress`);
    done += bytesWritten;
  }
}
