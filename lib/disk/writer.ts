// Writes a DiskImage's extents to a target: a regular file or a block device. Knows nothing of
// image formats. Data is coalesced into large positional writes; the first MiB (partition
// tables, boot code) is written last, so an interrupted write never leaves a disk that looks
// bootable; a failure on a block device wipes its first and last MiB.
import { constants } from 'node:fs';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { ByoiError, badTarget, cannotWriteImage, deviceBusy, imageLargerThanDevice } from '../errors.ts';
import { isZero, type DiskImage } from '../formats/types.ts';

const MiB = 1024 * 1024;
/** Written last: MBR, GPT header and entries, boot loader gap. */
const HEAD = MiB;
/** One positional write gathers this much (Linux caps a write near 2 GiB; 8 MiB keeps RAM small). */
const MAX_BATCH = 8 * MiB;
/** IOV_MAX on Linux: buffers in one writev. */
const MAX_BUFFERS = 1024;
/**
 * Zero ranges of a block device at least this long (after trimming to MiB boundaries) are zeroed by
 * BLKZEROOUT (`blkdiscard --zeroout`), shorter ones by writing zeros. One blkdiscard costs a process
 * spawn (a few ms), about what writing this many zeros costs; see the report in the branch history.
 */
const ZEROOUT_MIN = 16 * MiB;
const ZEROS = Buffer.alloc(MiB);

export type TargetKind = 'file' | 'block';

export interface Target {
  readonly path: string;
  readonly kind: TargetKind;
  /** Current size in bytes: the device's capacity, or the file's length (0 if it does not exist yet). */
  readonly size: number;
  readonly exists: boolean;
}

export interface Progress {
  /** Guest bytes handled so far (written, zeroed or left as holes), in guest order. */
  readonly done: number;
  readonly total: number;
}

export interface WriteOptions {
  onProgress?: (progress: Progress) => void;
  /**
   * The image's extents were already decoded end to end without error (e.g. by `verifyImage`).
   * Otherwise a block device gets a dry decoding pass before its first byte is written, so that a
   * refusal found only while decoding (a compressed cluster that does not inflate) leaves it
   * untouched. A regular file never needs it: it is written to a temporary sibling and renamed into
   * place only on success.
   */
  verified?: boolean;
}

/** What `path` is and how big, without opening it for writing. */
export async function describeTarget(path: string): Promise<Target> {
  const st = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!st) return { path, kind: 'file', size: 0, exists: false };
  if (st.isFile()) return { path, kind: 'file', size: st.size, exists: true };
  if (st.isBlockDevice()) return { path, kind: 'block', size: await blockDeviceSize(path), exists: true };
  throw badTarget(path, st.isDirectory() ? 'a directory' : 'a special file');
}

/** The size in bytes of a block device or regular file (0 for a file that does not exist). */
export async function targetSize(path: string): Promise<number> {
  return (await describeTarget(path)).size;
}

async function blockDeviceSize(path: string): Promise<number> {
  const { stdout } = await execa('blockdev', ['--getsize64', path]);
  const size = Number(stdout.trim());
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`blockdev --getsize64 ${path} printed ${JSON.stringify(stdout)}`);
  return size;
}

/** Decodes every extent without writing: rejects as decoding would. */
export async function verifyImage(image: DiskImage): Promise<void> {
  for await (const _extent of image.extents());
}

/** Writes `image` onto `path` (see the module comment); returns the guest bytes written as data. */
export async function writeImage(image: DiskImage, path: string, options: WriteOptions = {}): Promise<number> {
  const target = await describeTarget(path);
  const { virtualSize } = image.info;
  if (target.kind === 'block') {
    if (virtualSize > target.size) throw imageLargerThanDevice(virtualSize, target.size);
    if (!options.verified) await verifyImage(image);
    return writeBlockDevice(image, target, options);
  }
  return writeRegularFile(image, target, options);
}

async function writeRegularFile(image: DiskImage, target: Target, options: WriteOptions): Promise<number> {
  const temporary = join(dirname(target.path), `.${basename(target.path)}.byoi-${randomBytes(6).toString('hex')}`);
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    await handle.truncate(image.info.virtualSize);
    const written = await new ExtentWriter(handle, 'file', target.path).write(image, options);
    await handle.close();
    await rename(temporary, target.path);
    return written;
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw asWriteError(error, image);
  }
}

async function writeBlockDevice(image: DiskImage, target: Target, options: WriteOptions): Promise<number> {
  // O_EXCL on a block device: fails with EBUSY if it is mounted or held exclusively.
  const handle = await open(target.path, constants.O_WRONLY | constants.O_EXCL).catch((error: NodeJS.ErrnoException) => {
    throw error.code === 'EBUSY' ? deviceBusy(target.path) : asWriteError(error, image);
  });
  try {
    const written = await new ExtentWriter(handle, 'block', target.path).write(image, options);
    await handle.close();
    return written;
  } catch (error) {
    await wipeEnds(handle, target.size);
    await handle.close().catch(() => undefined);
    throw asWriteError(error, image);
  }
}

/** After a failed write: no partition table (primary or backup) may remain. Best effort: the disk may be failing. */
async function wipeEnds(handle: FileHandle, size: number): Promise<void> {
  const head = Math.min(MiB, size);
  const tailStart = Math.max(0, size - MiB);
  for (const [position, length] of [[0, head], [tailStart, size - tailStart]] as const) {
    await handle.write(ZEROS, 0, length, position).catch(() => undefined);
  }
  await handle.datasync().catch(() => undefined);
}

function asWriteError(error: unknown, image: DiskImage): ByoiError {
  if (error instanceof ByoiError) return error;
  const cause = error instanceof Error ? error.message : String(error);
  return cannotWriteImage(image.info.format, cause);
}

/** One pass over the extents: batches data, zeroes (block devices) or skips (files) zero ranges. */
class ExtentWriter {
  private readonly handle: FileHandle;
  private readonly kind: TargetKind;
  private readonly path: string;
  private batchStart = 0;
  private batchLength = 0;
  private batch: Buffer[] = [];
  /** Block devices: a run of zero extents not yet zeroed, [start, end). */
  private zeroStart = 0;
  private zeroEnd = 0;
  private head: Buffer = Buffer.alloc(0);
  private headHasData = false;
  private dataBytes = 0;

  constructor(handle: FileHandle, kind: TargetKind, path: string) {
    this.handle = handle;
    this.kind = kind;
    this.path = path;
  }

  async write(image: DiskImage, options: WriteOptions): Promise<number> {
    const total = image.info.virtualSize;
    this.head = Buffer.alloc(Math.min(HEAD, total));
    let expected = 0;
    for await (const extent of image.extents()) {
      if (extent.offset !== expected || extent.length <= 0 || extent.offset + extent.length > total) {
        throw new Error(`decoder gave extent [${extent.offset}, +${extent.length}) where ${expected} was expected`);
      }
      expected += extent.length;
      if (isZero(extent)) {
        if (this.kind === 'block') await this.addZeroRange(extent.offset, extent.offset + extent.length);
      } else {
        if (extent.data.length !== extent.length) throw new Error(`decoder gave ${extent.data.length} bytes for an extent of ${extent.length}`);
        await this.addData(extent.offset, extent.data);
        this.dataBytes += extent.length;
      }
      options.onProgress?.({ done: expected, total });
    }
    if (expected !== total) throw new Error(`decoder stopped at ${expected} of ${total} bytes`);
    await this.flushZeroRange();
    await this.flushBatch();
    // Last: the first MiB. A file left it as a hole unless data landed there.
    if (this.kind === 'block' || this.headHasData) await writeFully(this.handle, [this.head], 0);
    await this.handle.datasync();
    return this.dataBytes;
  }

  private async addData(offset: number, data: Buffer): Promise<void> {
    if (offset < HEAD) {
      const inHead = Math.min(data.length, HEAD - offset);
      data.copy(this.head, offset, 0, inHead);
      this.headHasData = true;
      if (inHead === data.length) return;
      offset += inHead;
      data = data.subarray(inHead);
    }
    await this.flushZeroRange();
    await this.addToBatch(offset, data);
  }

  private async addToBatch(offset: number, data: Buffer): Promise<void> {
    const contiguous = this.batchLength > 0 && offset === this.batchStart + this.batchLength;
    if (this.batchLength > 0 && (!contiguous || this.batchLength + data.length > MAX_BATCH || this.batch.length >= MAX_BUFFERS)) {
      await this.flushBatch();
    }
    if (this.batchLength === 0) this.batchStart = offset;
    this.batch.push(data);
    this.batchLength += data.length;
    if (this.batchLength >= MAX_BATCH) await this.flushBatch();
  }

  private async flushBatch(): Promise<void> {
    if (this.batchLength === 0) return;
    await writeFully(this.handle, this.batch, this.batchStart);
    this.batch = [];
    this.batchLength = 0;
  }

  private async addZeroRange(start: number, end: number): Promise<void> {
    start = Math.max(start, HEAD); // the head buffer starts as zeros
    if (start >= end) return;
    if (this.zeroEnd > this.zeroStart && start === this.zeroEnd) {
      this.zeroEnd = end;
      return;
    }
    await this.flushZeroRange();
    this.zeroStart = start;
    this.zeroEnd = end;
  }

  /** Zeroes the pending zero run: BLKZEROOUT for its MiB-aligned middle if long, zero writes for the rest. */
  private async flushZeroRange(): Promise<void> {
    const { zeroStart: start, zeroEnd: end } = this;
    if (end <= start) return;
    this.zeroStart = this.zeroEnd = 0;
    const alignedStart = Math.ceil(start / MiB) * MiB;
    const alignedEnd = Math.floor(end / MiB) * MiB;
    if (alignedEnd - alignedStart < ZEROOUT_MIN) {
      await this.addZeros(start, end);
      return;
    }
    await this.addZeros(start, alignedStart);
    await this.flushBatch();
    await zeroOut(this.path, alignedStart, alignedEnd - alignedStart);
    await this.addZeros(alignedEnd, end);
  }

  private async addZeros(start: number, end: number): Promise<void> {
    for (let at = start; at < end; ) {
      const length = Math.min(end - at, ZEROS.length);
      await this.addToBatch(at, ZEROS.subarray(0, length));
      at += length;
    }
  }
}

/** BLKZEROOUT through util-linux: offloaded where the device can, written by the kernel otherwise. */
async function zeroOut(device: string, offset: number, length: number): Promise<void> {
  // --force: our own exclusive open would otherwise make blkdiscard refuse the device.
  await execa('blkdiscard', ['--force', '--zeroout', '--offset', String(offset), '--length', String(length), device]);
}

/** pwritev until every byte is written: a write may be short. */
async function writeFully(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let pending = buffers;
  while (pending.length > 0) {
    const { bytesWritten } = await handle.writev(pending, position);
    if (bytesWritten <= 0) throw new Error(`write at ${position} made no progress`);
    position += bytesWritten;
    pending = dropWritten(pending, bytesWritten);
  }
}

function dropWritten(buffers: Buffer[], written: number): Buffer[] {
  let index = 0;
  while (index < buffers.length && written >= buffers[index]!.length) written -= buffers[index++]!.length;
  const rest = buffers.slice(index);
  if (written > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(written);
  return rest;
}
