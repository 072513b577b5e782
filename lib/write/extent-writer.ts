// One pass over a DiskImage's extents onto an open destination, whatever its kind. Data is
// coalesced into large positional writes, one in flight while the next batch is decoded. Zero runs
// are left unwritten where the destination reads as zeros already, otherwise written as zeros
// except what the destination zeroed itself. The image's first MiB is written last, after a flush
// of everything else (fdatasync, a barrier against a disk cache's reordering) and followed by a
// final flush, so an interrupted write never leaves a disk that looks bootable.
import { alignedBuffers } from '../source/aligned-memory.ts';
import { isZero, type DiskImage } from '../formats/types.ts';
import type { DestinationWrites } from './destination.ts';
import type { WriteProgress } from './verify.ts';
import { alignedPart, HEAD, MiB, ZeroRuns, ZEROS, type Ranges } from './zero-runs.ts';

/** One positional write gathers this much (Linux caps a write near 2 GiB; 8 MiB keeps RAM small). */
const MAX_BATCH = 8 * MiB;
/** IOV_MAX on Linux: buffers in one writev. */
const MAX_BUFFERS = 1024;

export interface ExtentCallbacks {
  onProgress?: (progress: WriteProgress) => void;
  /** Called with every data extent, in guest order, before it is written (read-back verification records them). */
  onData?: (offset: number, data: Buffer) => void;
}

export class ExtentWriter {
  private readonly destination: DestinationWrites;
  /** The destination zeroing long zero runs itself, and once it is done, what it zeroed. */
  private readonly zeroing: Promise<ReadonlyMap<number, number>>;
  private zeroed: ReadonlyMap<number, number> | undefined;
  private batchStart = 0;
  private batchLength = 0;
  private batch: Buffer[] = [];
  /** Releases of the batch's extents, called once it is written. */
  private batchReleases: (() => void)[] = [];
  /** Zero runs still to be written as zeros. */
  private readonly zeroRuns = new ZeroRuns((start, end) => this.pendingZeros.push([start, end]));
  private pendingZeros: [number, number][] = [];
  /** The one write in flight (see flushBatch). */
  private writing: Promise<void> = Promise.resolve();
  private head: Buffer = Buffer.alloc(0);
  private headHasData = false;
  private dataBytes = 0;

  /** `longZeroRuns`: the image's (VerifiedImage), handed to the destination to zero while data is written. */
  constructor(destination: DestinationWrites, longZeroRuns: Ranges) {
    this.destination = destination;
    // Other ranges than the data's, so no ordering between the two.
    this.zeroing = destination.zeroItself(longZeroRuns);
    void this.zeroing.then((zeroed) => (this.zeroed = zeroed));
  }

  /** Writes every extent; returns the guest bytes written as data. */
  async write(image: DiskImage, callbacks: ExtentCallbacks = {}): Promise<number> {
    try {
      return await this.writeExtents(image, callbacks);
    } catch (error) {
      // No write may still be running when the caller cleans up (it zeroes a device's ends).
      await this.writing.catch(() => undefined);
      await this.zeroing;
      throw error;
    }
  }

  private async writeExtents(image: DiskImage, callbacks: ExtentCallbacks): Promise<number> {
    const total = image.info.virtualSize;
    this.head = total >= HEAD ? alignedBuffers(HEAD, 1)[0]! : Buffer.alloc(total);
    let expected = 0;
    for await (const extent of image.extents()) {
      if (extent.offset !== expected || extent.length <= 0 || extent.offset + extent.length > total) {
        throw new Error(`decoder gave extent [${extent.offset}, +${extent.length}) where ${expected} was expected`);
      }
      expected += extent.length;
      if (isZero(extent)) {
        if (!this.destination.zeroFilled) this.zeroRuns.add(extent.offset, extent.offset + extent.length);
      } else {
        if (extent.data.length !== extent.length)
          throw new Error(`decoder gave ${extent.data.length} bytes for an extent of ${extent.length}`);
        callbacks.onData?.(extent.offset, extent.data);
        await this.addData(extent.offset, extent.data, extent.release);
        this.dataBytes += extent.length;
      }
      callbacks.onProgress?.({ done: expected, total });
    }
    if (expected !== total) throw new Error(`decoder stopped at ${expected} of ${total} bytes`);
    this.zeroed = await this.zeroing;
    await this.writeZeroRuns();
    await this.flushBatch();
    await this.writing;
    // The barrier, then the first MiB (left unwritten where it reads as zeros already and no data
    // landed there), then the final flush.
    await this.destination.flush();
    if (!this.destination.zeroFilled || this.headHasData) await this.destination.write([this.head], 0);
    await this.destination.flush();
    return this.dataBytes;
  }

  private async addData(offset: number, data: Buffer, release: (() => void) | undefined): Promise<void> {
    if (offset < HEAD) {
      const inHead = Math.min(data.length, HEAD - offset);
      data.copy(this.head, offset, 0, inHead);
      this.headHasData = true;
      if (inHead === data.length) {
        release?.();
        return;
      }
      offset += inHead;
      data = data.subarray(inHead);
    }
    await this.writeZeroRuns();
    await this.addToBatch(offset, data, release);
  }

  private async addToBatch(offset: number, data: Buffer, release?: () => void): Promise<void> {
    const contiguous = this.batchLength > 0 && offset === this.batchStart + this.batchLength;
    if (
      this.batchLength > 0 &&
      (!contiguous || this.batchLength + data.length > MAX_BATCH || this.batch.length >= MAX_BUFFERS)
    ) {
      await this.flushBatch();
    }
    if (this.batchLength === 0) this.batchStart = offset;
    this.batch.push(data);
    if (release) this.batchReleases.push(release);
    this.batchLength += data.length;
    if (this.batchLength >= MAX_BATCH) await this.flushBatch();
  }

  /**
   * Starts writing the batch once the previous write is done, and returns without waiting for it:
   * the next batch is decoded and gathered while this one is written.
   */
  private async flushBatch(): Promise<void> {
    if (this.batchLength === 0) return;
    const buffers = this.batch;
    const releases = this.batchReleases;
    const position = this.batchStart;
    this.batch = [];
    this.batchReleases = [];
    this.batchLength = 0;
    await this.writing;
    this.writing = this.destination.write(buffers, position).then(() => {
      for (const release of releases) release();
    });
    this.writing.catch(() => undefined); // a failure is rethrown where `writing` is next awaited
  }

  /**
   * Writes the zero runs before the current position, except what the destination zeroed. While it
   * is still zeroing, they wait (data goes on being written; the ranges do not overlap).
   */
  private async writeZeroRuns(): Promise<void> {
    this.zeroRuns.flush();
    const zeroed = this.zeroed;
    if (!zeroed) return;
    for (const [start, end] of this.pendingZeros) {
      const aligned = alignedPart(start, end);
      if (aligned && zeroed.get(aligned[0]) === aligned[1]) {
        await this.addZeros(start, aligned[0]);
        await this.addZeros(aligned[1], end);
      } else {
        await this.addZeros(start, end);
      }
    }
    this.pendingZeros = [];
  }

  private async addZeros(start: number, end: number): Promise<void> {
    for (let at = start; at < end;) {
      const length = Math.min(end - at, ZEROS.length);
      await this.addToBatch(at, ZEROS.subarray(0, length));
      at += length;
    }
  }
}
