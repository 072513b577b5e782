// Positional writes through the page cache, or around it (O_DIRECT) wherever a batch is page-aligned
// on the destination: data from page-aligned buffers goes as it is, other data through an aligned
// staging buffer. Through the page cache, the kernel's copy into freshly allocated cache pages was
// most of a conversion's time on the benchmark machine (and varied 1x-4x between runs); a
// deployment's disk is not read back before the reboot, so caching it buys nothing. Unaligned
// batches (odd image sizes, 512-byte zero runs on a 4096-byte-sector disk) and destinations that
// refuse direct writes (EINVAL) go through the page cache; the kernel keeps the two coherent.
import type { FileHandle } from 'node:fs/promises';
import { alignedBuffers, isPageAligned, PAGE_SIZE } from '../source/aligned-memory.ts';

/** What these writes need of a descriptor (tests give their own). */
export type Descriptor = Pick<FileHandle, 'writev' | 'datasync' | 'close'>;

/** The staging buffer's size: a batch's largest. */
const STAGING = 8 * 1024 * 1024;

/**
 * Writes to one destination, direct where it can be: see the module comment. One write at a time.
 * The open destinations are these writes and what their kind adds.
 */
export class PositionalWrites {
  private readonly buffered: Descriptor;
  private direct: Descriptor | undefined;
  /**
   * Made with the direct descriptor, before the decoders' buffers: should the engine refuse aligned
   * memory (aligned-memory.ts), these writes' own comes first. Untouched, it costs no RAM.
   */
  private readonly staging: Buffer | undefined;

  /** `direct`: the destination opened with O_DIRECT, if it could be. */
  constructor(buffered: Descriptor, direct: Descriptor | undefined) {
    this.buffered = buffered;
    this.direct = direct;
    this.staging = direct && alignedBuffers(STAGING, 1)[0]!;
  }

  async write(buffers: Buffer[], position: number): Promise<void> {
    if (this.direct && (await this.writeDirect(this.direct, buffers, position))) return;
    await writeFully(this.buffered, buffers, position);
  }

  async flush(): Promise<void> {
    // fdatasync on either descriptor flushes the device's cache; the buffered one also its pages.
    await this.buffered.datasync();
    await this.direct?.datasync();
  }

  /** Closes both descriptors; the first failure is rethrown once both are closed. */
  async close(): Promise<void> {
    const direct = this.direct;
    this.direct = undefined;
    const results = await Promise.allSettled([direct?.close(), this.buffered.close()]);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** false: not a direct write (unaligned, or the destination refused one); the caller writes it buffered. */
  private async writeDirect(direct: Descriptor, buffers: Buffer[], position: number): Promise<boolean> {
    let length = 0;
    for (const buffer of buffers) length += buffer.length;
    if (position % PAGE_SIZE !== 0 || length % PAGE_SIZE !== 0) return false;
    try {
      if (buffers.every(isPageAligned)) {
        await writeFully(direct, buffers, position);
        return true;
      }
      // Not aligned itself under an address-space limit (aligned-memory.ts): the page cache then.
      const staging = this.staging;
      if (!staging || !isPageAligned(staging)) return false;
      for (let done = 0; done < length;) {
        const staged = gather(buffers, done, staging);
        await writeFully(direct, [staging.subarray(0, staged)], position + done);
        done += staged;
      }
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
      // The destination wants another alignment: the page cache from now on (a batch rewritten whole).
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
export async function writeFully(handle: Descriptor, buffers: Buffer[], position: number): Promise<void> {
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
