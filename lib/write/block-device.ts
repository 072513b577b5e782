// A block device, written in place for a deployment. Opened exclusively (O_EXCL: EBUSY if mounted or
// held), its first and last MiB (MBR, GPT, backup GPT) are zeroed before anything else and again on
// failure, so an interrupted write never leaves a disk that looks bootable or that firmware
// "repairs". Written around the page cache where it can be (positional-writes.ts); long zero runs
// are zeroed by the device itself where it offers write-zeroes.
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { exec } from '../system/exec.ts';
import { deviceBusy } from '../errors.ts';
import type { Destination, OpenDestination } from './destination.ts';
import { PositionalWrites, writeFully, type Descriptor } from './positional-writes.ts';
import { MiB, ZEROS, type Ranges } from './zero-runs.ts';

/** fpunch commands per xfs_io process: well inside ARG_MAX. */
const PUNCHES_PER_SPAWN = 4096;

export class BlockDevice implements Destination {
  readonly path: string;
  readonly size: number;
  readonly inPlace = true;

  /** `size`: its capacity in bytes (sizeOf). */
  constructor(path: string, size: number) {
    this.path = path;
    this.size = size;
  }

  get capacity(): number {
    return this.size;
  }

  /** From sysfs (always in 512-byte units), not by spawning blockdev: see zeroItself on spawn costs. */
  static async sizeOf(rdev: number): Promise<number> {
    const { major, minor } = deviceNumbers(rdev);
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    if (!Number.isSafeInteger(sectors) || sectors < 0)
      throw new Error(`sysfs gave no size for block device ${major}:${minor}`);
    return sectors * 512;
  }

  async open(): Promise<OpenDestination> {
    const handle = await open(this.path, constants.O_WRONLY | constants.O_EXCL).catch(
      (error: NodeJS.ErrnoException) => {
        throw error.code === 'EBUSY' ? deviceBusy(this.path) : error;
      },
    );
    // A second descriptor for direct writes: not O_EXCL, which the first already holds for this process.
    const direct = await open(this.path, constants.O_WRONLY | constants.O_DIRECT).catch(() => undefined);
    return new OpenBlockDevice(this.path, this.size, handle, direct);
  }
}

class OpenBlockDevice extends PositionalWrites implements OpenDestination {
  readonly zeroFilled = false;
  private readonly path: string;
  private readonly size: number;
  private readonly handle: Descriptor;

  constructor(path: string, size: number, handle: Descriptor, direct: Descriptor | undefined) {
    super(handle, direct);
    this.path = path;
    this.size = size;
    this.handle = handle;
  }

  /** No partition table, primary or backup, survives from the old contents while the image is written. */
  prepare(): Promise<void> {
    return zeroEnds(this.handle, this.size);
  }

  /**
   * fallocate(PUNCH_HOLE|KEEP_SIZE) on a block device is a zero-out without fallback (NOFALLBACK):
   * it succeeds only where the range then reads as zeros, and fails fast on a device without
   * write-zeroes offload; then the writer writes the runs as zeros. All runs go to one `xfs_io`
   * process: spawning from a process that holds the image in RAM costs ~0.3 s per GiB held (fork
   * copies its page tables), so one spawn per run is out of the question. BLKZEROOUT (`blkdiscard
   * --zeroout`) is not used: without offload the kernel writes the zeros itself, no faster than we
   * do, and on a loop device over tmpfs it turns offload off for good.
   */
  async zeroItself(ranges: Ranges): Promise<ReadonlyMap<number, number>> {
    const zeroed = new Map<number, number>();
    for (let first = 0; first < ranges.length; first += PUNCHES_PER_SPAWN) {
      const batch = ranges.slice(first, first + PUNCHES_PER_SPAWN);
      const commands = batch.flatMap(([start, end]) => ['-c', `fpunch ${start} ${end - start}`]);
      // xfs_io exits non-zero if any command failed; then none of the batch counts as zeroed.
      const result = await exec('xfs_io', [...commands, this.path], { reject: false }).catch(() => undefined);
      if (!result || result.exitCode !== 0 || result.stderr.trim() !== '') break;
      for (const [start, end] of batch) zeroed.set(start, end);
    }
    return zeroed;
  }

  finish(): Promise<void> {
    return this.close();
  }

  async abort(): Promise<void> {
    await zeroEnds(this.handle, this.size).catch(() => undefined); // best effort: the disk may be failing
    await this.close().catch(() => undefined);
  }
}

/** Zeros the first and last MiB of a device: where MBR, GPT and backup GPT live. */
async function zeroEnds(handle: Descriptor, size: number): Promise<void> {
  const tailStart = Math.max(0, size - MiB);
  await writeFully(handle, [ZEROS.subarray(0, Math.min(MiB, size))], 0);
  await writeFully(handle, [ZEROS.subarray(0, size - tailStart)], tailStart);
  await handle.datasync();
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
