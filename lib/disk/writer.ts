// Writes a DiskImage's extents to a target: a regular file or a block device. Knows nothing of
// image formats. Data is coalesced into large positional writes. On a block device the first and
// last MiB (partition tables, backup GPT) are zeroed before anything else and the image's first
// MiB is written last, after a flush of everything else (fdatasync, a barrier against a disk
// cache's reordering) and followed by a final flush, so an interrupted write never leaves a disk
// that looks bootable; a failure zeroes both ends again.
//
// A block device is written around the page cache (O_DIRECT) wherever a batch is page-aligned on
// the device: data from page-aligned buffers goes as it is, other data through an aligned staging
// buffer. Through the page cache, the kernel's copy into freshly allocated cache pages was most of
// a conversion's time on the benchmark machine (and varied 1x-4x between runs); a deployment's
// disk is not read back before the reboot, so caching it buys nothing. Unaligned batches (odd
// image sizes, 512-byte zero runs on a 4096-byte-sector disk) and devices that refuse direct
// writes (EINVAL) go through the page cache; the kernel keeps the two coherent.
import { constants } from 'node:fs';
import { open, readFile, realpath, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { alignedBuffers, isPageAligned, PAGE_SIZE } from '../aligned-memory.ts';
import { exec } from '../exec.ts';
import { ByoiError, badTarget, cannotWriteImage, deviceBusy, imageLargerThanDevice, internalWriteError } from '../errors.ts';
import { isZero, type DiskImage } from '../formats/types.ts';

const MiB = 1024 * 1024;
/** Written last: MBR, GPT header and entries, boot loader gap. */
const HEAD = MiB;
/** One positional write gathers this much (Linux caps a write near 2 GiB; 8 MiB keeps RAM small). */
const MAX_BATCH = 8 * MiB;
/** IOV_MAX on Linux: buffers in one writev. */
const MAX_BUFFERS = 1024;
/**
 * Zero runs of a block device whose MiB-aligned middle is at least this long are zeroed by the
 * device (write-zeroes offload, all in one xfs_io process); the rest is written as zeros.
 */
const OFFLOAD_MIN = MiB;
/** Page-aligned, so zero runs can be written directly. */
const [ZEROS] = alignedBuffers(MiB, 1) as [Buffer];

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
  /** Called with every data extent, in guest order, before it is written (read-back verification records them). */
  onData?: (offset: number, data: Buffer) => void;
  /**
   * The result of `verifyImage(image)` when the caller has already decoded the image end to end.
   * Otherwise a block device gets that dry decoding pass before its first byte is written, so that a
   * refusal found only while decoding (a compressed cluster that does not inflate) leaves it
   * untouched. A regular file never needs it: it is written to a temporary sibling and renamed into
   * place only on success.
   */
  verified?: VerifiedImage;
}

/** An image whose extents all decoded without error, and where its long zero runs lie. */
export interface VerifiedImage {
  readonly image: DiskImage;
  /** MiB-aligned [start, end) ranges of at least OFFLOAD_MIN bytes past the first MiB that read as zeros. */
  readonly longZeroRuns: readonly (readonly [number, number])[];
}

/** What `path` is and how big, without opening it for writing. */
export async function describeTarget(path: string): Promise<Target> {
  const st = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!st) return { path, kind: 'file', size: 0, exists: false };
  // A symlink to a file: replace the file it names, not the link.
  if (st.isFile()) return { path: await realpath(path), kind: 'file', size: st.size, exists: true };
  if (st.isBlockDevice()) return { path, kind: 'block', size: await blockDeviceSize(st.rdev), exists: true };
  throw badTarget(path, st.isDirectory() ? 'a directory' : 'a special file');
}

/** The size in bytes of a block device or regular file (0 for a file that does not exist). */
export async function targetSize(path: string): Promise<number> {
  return (await describeTarget(path)).size;
}

/** From sysfs (always in 512-byte units), not by spawning blockdev: see offloadZeroing on spawn costs. */
async function blockDeviceSize(rdev: number): Promise<number> {
  const { major, minor } = deviceNumbers(rdev);
  const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) throw new Error(`sysfs gave no size for block device ${major}:${minor}`);
  return sectors * 512;
}

/** glibc's major()/minor() of a 64-bit dev_t, in arithmetic (no 32-bit bit operators on it). */
function deviceNumbers(rdev: number): { major: number; minor: number } {
  const low = rdev % 2 ** 32;
  const high = Math.floor(rdev / 2 ** 32);
  const shifted12 = Math.floor(rdev / 4096) % 2 ** 32;
  return {
    major: (Math.floor(low / 256) % 4096) + (high - (high % 4096)),
    minor: (low % 256) + (shifted12 - (shifted12 % 256)),
  };
}

/** Decodes every extent without writing (the image's dry pass if it has one): rejects as decoding would. */
export async function verifyImage(image: DiskImage, onProgress?: (progress: Progress) => void): Promise<VerifiedImage> {
  const total = image.info.virtualSize;
  const longZeroRuns: [number, number][] = [];
  const runs = new ZeroRuns((start, end) => {
    const aligned = alignedPart(start, end);
    if (aligned) longZeroRuns.push(aligned);
  });
  for await (const extent of image.check?.() ?? image.extents()) {
    if ('zero' in extent && extent.zero) runs.add(extent.offset, extent.offset + extent.length);
    else runs.flush();
    if ('release' in extent) extent.release?.();
    onProgress?.({ done: extent.offset + extent.length, total });
  }
  runs.flush();
  return { image, longZeroRuns };
}

/** Writes `image` onto `path` (see the module comment); returns the guest bytes written as data. */
export async function writeImage(image: DiskImage, path: string, options: WriteOptions = {}): Promise<number> {
  const target = await describeTarget(path);
  const { virtualSize } = image.info;
  if (target.kind === 'block') {
    if (virtualSize > target.size) throw imageLargerThanDevice(virtualSize, target.size);
    if (options.verified && options.verified.image !== image) throw new Error('verified is the verification of another image');
    const verified = options.verified ?? (await verifyImage(image));
    return writeBlockDevice(verified, target, options);
  }
  return writeRegularFile(image, target, options);
}

async function writeRegularFile(image: DiskImage, target: Target, options: WriteOptions): Promise<number> {
  const temporary = join(dirname(target.path), `.${basename(target.path)}.byoi-${randomBytes(6).toString('hex')}`);
  const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  try {
    await handle.truncate(image.info.virtualSize);
    const written = await new ExtentWriter(new TargetWrites(handle, undefined), 'file', Promise.resolve(new Map())).write(image, options);
    await handle.close();
    await rename(temporary, target.path);
    return written;
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temporary, { force: true });
    throw asWriteError(error, image);
  }
}

async function writeBlockDevice(verified: VerifiedImage, target: Target, options: WriteOptions): Promise<number> {
  const { image } = verified;
  // O_EXCL on a block device: fails with EBUSY if it is mounted or held exclusively.
  const handle = await open(target.path, constants.O_WRONLY | constants.O_EXCL).catch((error: NodeJS.ErrnoException) => {
    throw error.code === 'EBUSY' ? deviceBusy(target.path) : asWriteError(error, image);
  });
  // A second descriptor for direct writes: not O_EXCL, which the first already holds for this process.
  const direct = await open(target.path, constants.O_WRONLY | constants.O_DIRECT).catch(() => undefined);
  try {
    // No partition table, primary or backup, survives from the old contents while the image is
    // written (a crash midway must not leave a disk that looks bootable or that firmware "repairs").
    await zeroEnds(handle, target.size);
    // The device zeroes the long runs while the data is written (other ranges, so no ordering).
    const zeroing = offloadZeroing(target.path, verified.longZeroRuns);
    const written = await new ExtentWriter(new TargetWrites(handle, direct), 'block', zeroing).write(image, options);
    await direct?.close();
    await handle.close();
    return written;
  } catch (error) {
    await direct?.close().catch(() => undefined);
    await zeroEnds(handle, target.size).catch(() => undefined); // best effort: the disk may be failing
    await handle.close().catch(() => undefined);
    throw asWriteError(error, image);
  }
}

/** Zeros the first and last MiB of a device: where MBR, GPT and backup GPT live. */
async function zeroEnds(handle: FileHandle, size: number): Promise<void> {
  const tailStart = Math.max(0, size - MiB);
  await writeFully(handle, [ZEROS.subarray(0, Math.min(MiB, size))], 0);
  await writeFully(handle, [ZEROS.subarray(0, size - tailStart)], tailStart);
  await handle.datasync();
}

/** A failed system call (EIO, ENOSPC, EFBIG...) is the target's failure; anything else is byoi's own. */
function asWriteError(error: unknown, image: DiskImage): ByoiError {
  if (error instanceof ByoiError) return error;
  const cause = error instanceof Error ? error.message : String(error);
  const systemCall = error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string';
  return systemCall ? cannotWriteImage(image.info.format, cause) : internalWriteError(cause);
}

/**
 * Coalesces consecutive zero extents into runs, past the first MiB (the head buffer starts as
 * zeros), and hands each finished run to `onRun`. The same runs come out of the verifying pass and
 * the writing pass, so the writer knows which runs the device already zeroed.
 */
class ZeroRuns {
  private start = 0;
  private end = 0;
  private readonly onRun: (start: number, end: number) => void;

  constructor(onRun: (start: number, end: number) => void) {
    this.onRun = onRun;
  }

  add(start: number, end: number): void {
    start = Math.max(start, HEAD);
    if (start >= end) return;
    if (this.end > this.start && start === this.end) {
      this.end = end;
      return;
    }
    this.flush();
    this.start = start;
    this.end = end;
  }

  flush(): void {
    if (this.end > this.start) this.onRun(this.start, this.end);
    this.start = this.end = 0;
  }
}

/** The MiB-aligned middle of a zero run if it is long enough to hand to the device. */
function alignedPart(start: number, end: number): [number, number] | undefined {
  const alignedStart = Math.ceil(start / MiB) * MiB;
  const alignedEnd = Math.floor(end / MiB) * MiB;
  return alignedEnd - alignedStart >= OFFLOAD_MIN ? [alignedStart, alignedEnd] : undefined;
}

/** fpunch commands per xfs_io process: well inside ARG_MAX. */
const PUNCHES_PER_SPAWN = 4096;

/**
 * Asks the device to zero the long zero runs itself. fallocate(PUNCH_HOLE|KEEP_SIZE) on a block device is
 * a zero-out without fallback (NOFALLBACK): it succeeds only where the range then reads as zeros,
 * and fails fast on a device without write-zeroes offload; then the runs are written as zeros.
 * All runs go to one `xfs_io` process: spawning from a process that holds the image in RAM costs
 * ~0.3 s per GiB held (fork copies its page tables), so one spawn per run is out of the question.
 * BLKZEROOUT (`blkdiscard --zeroout`) is not used: without offload the kernel writes the zeros
 * itself, no faster than we do, and on a loop device over tmpfs it turns offload off for good.
 * Returns start -> end of the runs now zeroed; never rejects (what it could not zero, it leaves out).
 */
async function offloadZeroing(device: string, runs: VerifiedImage['longZeroRuns']): Promise<Map<number, number>> {
  const zeroed = new Map<number, number>();
  for (let first = 0; first < runs.length; first += PUNCHES_PER_SPAWN) {
    const batch = runs.slice(first, first + PUNCHES_PER_SPAWN);
    const commands = batch.flatMap(([start, end]) => ['-c', `fpunch ${start} ${end - start}`]);
    // xfs_io exits non-zero if any command failed; then none of the batch counts as zeroed.
    const result = await exec('xfs_io', [...commands, device], { reject: false }).catch(() => undefined);
    if (!result || result.exitCode !== 0 || result.stderr.trim() !== '') break;
    for (const [start, end] of batch) zeroed.set(start, end);
  }
  return zeroed;
}

/** One pass over the extents: batches data, zeroes (block devices) or skips (files) zero ranges. */
class ExtentWriter {
  private readonly writes: TargetWrites;
  private readonly kind: TargetKind;
  /** Block devices: the device zeroing long zero runs (offloadZeroing), and once it is done, what it zeroed. */
  private readonly zeroing: Promise<ReadonlyMap<number, number>>;
  private zeroed: ReadonlyMap<number, number> | undefined;
  private batchStart = 0;
  private batchLength = 0;
  private batch: Buffer[] = [];
  /** Releases of the batch's extents, called once it is written. */
  private batchReleases: (() => void)[] = [];
  /** Block devices: zero runs still to be written as zeros. */
  private readonly zeroRuns = new ZeroRuns((start, end) => this.pendingZeros.push([start, end]));
  private pendingZeros: [number, number][] = [];
  /** The one write in flight (see flushBatch). */
  private writing: Promise<void> = Promise.resolve();
  private head: Buffer = Buffer.alloc(0);
  private headHasData = false;
  private dataBytes = 0;

  constructor(writes: TargetWrites, kind: TargetKind, zeroing: Promise<ReadonlyMap<number, number>>) {
    this.writes = writes;
    this.kind = kind;
    this.zeroing = zeroing;
    void zeroing.then((zeroed) => (this.zeroed = zeroed));
  }

  async write(image: DiskImage, options: WriteOptions): Promise<number> {
    try {
      return await this.writeExtents(image, options);
    } catch (error) {
      // No write may still be running when the caller cleans up (it zeroes the device's ends).
      await this.writing.catch(() => undefined);
      await this.zeroing;
      throw error;
    }
  }

  private async writeExtents(image: DiskImage, options: WriteOptions): Promise<number> {
    const total = image.info.virtualSize;
    this.head = total >= HEAD ? alignedBuffers(HEAD, 1)[0]! : Buffer.alloc(total);
    let expected = 0;
    for await (const extent of image.extents()) {
      if (extent.offset !== expected || extent.length <= 0 || extent.offset + extent.length > total) {
        throw new Error(`decoder gave extent [${extent.offset}, +${extent.length}) where ${expected} was expected`);
      }
      expected += extent.length;
      if (isZero(extent)) {
        if (this.kind === 'block') this.zeroRuns.add(extent.offset, extent.offset + extent.length);
      } else {
        if (extent.data.length !== extent.length) throw new Error(`decoder gave ${extent.data.length} bytes for an extent of ${extent.length}`);
        options.onData?.(extent.offset, extent.data);
        await this.addData(extent.offset, extent.data, extent.release);
        this.dataBytes += extent.length;
      }
      options.onProgress?.({ done: expected, total });
    }
    if (expected !== total) throw new Error(`decoder stopped at ${expected} of ${total} bytes`);
    this.zeroed = await this.zeroing;
    await this.writeZeroRuns();
    await this.flushBatch();
    await this.writing;
    // A barrier: the body is on stable storage before the head goes, or a disk's cache could
    // persist the partition table first. Then the first MiB (a file left it as a hole unless data
    // landed there), then a final flush.
    await this.writes.datasync();
    if (this.kind === 'block' || this.headHasData) await this.writes.write([this.head], 0);
    await this.writes.datasync();
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
    if (this.batchLength > 0 && (!contiguous || this.batchLength + data.length > MAX_BATCH || this.batch.length >= MAX_BUFFERS)) {
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
    this.writing = this.writes.write(buffers, position).then(() => {
      for (const release of releases) release();
    });
    this.writing.catch(() => undefined); // a failure is rethrown where `writing` is next awaited
  }

  /**
   * Writes the zero runs before the current position, except what the device zeroed. While the
   * device is still zeroing, they wait (data goes on being written; the ranges do not overlap).
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
    for (let at = start; at < end; ) {
      const length = Math.min(end - at, ZEROS.length);
      await this.addToBatch(at, ZEROS.subarray(0, length));
      at += length;
    }
  }
}

/**
 * Positional writes to a target: through the page cache, or around it where a block device takes
 * it (see the module comment). One write at a time.
 */
class TargetWrites {
  private readonly buffered: FileHandle;
  private direct: FileHandle | undefined;
  /** Made on the first direct write that needs it. */
  private staging: Buffer | undefined;

  constructor(buffered: FileHandle, direct: FileHandle | undefined) {
    this.buffered = buffered;
    this.direct = direct;
  }

  async write(buffers: Buffer[], position: number): Promise<void> {
    if (this.direct && (await this.writeDirect(this.direct, buffers, position))) return;
    await writeFully(this.buffered, buffers, position);
  }

  async datasync(): Promise<void> {
    // fdatasync on either descriptor flushes the device's cache; the buffered one also its pages.
    await this.buffered.datasync();
    await this.direct?.datasync();
  }

  /** false: not a direct write (unaligned, or the device refused one); the caller writes it buffered. */
  private async writeDirect(direct: FileHandle, buffers: Buffer[], position: number): Promise<boolean> {
    let length = 0;
    for (const buffer of buffers) length += buffer.length;
    if (position % PAGE_SIZE !== 0 || length % PAGE_SIZE !== 0) return false;
    try {
      if (buffers.every(isPageAligned)) {
        await writeFully(direct, buffers, position);
        return true;
      }
      this.staging ??= alignedBuffers(MAX_BATCH, 1)[0]!;
      for (let done = 0; done < length; ) {
        const staged = gather(buffers, done, this.staging);
        await writeFully(direct, [this.staging.subarray(0, staged)], position + done);
        done += staged;
      }
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
      // The device wants another alignment: the page cache from now on (a batch rewritten whole).
      this.direct = undefined;
      await direct.close().catch(() => undefined);
      return false;
    }
  }
}

/** Copies bytes of the concatenated `buffers`, from offset `from`, into `into`; returns how many. */
function gather(buffers: readonly Buffer[], from: number, into: Buffer): number {
  let skip = from;
  let filled = 0;
  for (const buffer of buffers) {
    if (skip >= buffer.length) {
      skip -= buffer.length;
      continue;
    }
    filled += buffer.copy(into, filled, skip);
    skip = 0;
    if (filled === into.length) break;
  }
  return filled;
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
