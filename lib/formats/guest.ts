// Reads guest bytes of a decoded image at given offsets, before anything is written: the partition
// table, a partition's first bytes, the EFI system partition. A raw image's guest bytes are its
// source's; any other is decoded in one pass over its extents, stopped after the last range.
import { open } from 'node:fs/promises';
import type { DiskImage, Extent } from './types.ts';
import type { ImageSource } from '../source/image-source.ts';

export interface GuestRange {
  readonly offset: number;
  readonly length: number;
}

/** Random reads of an image's guest bytes (zeros past its end). */
export interface GuestReader {
  readonly size: number;
  /** Each range's bytes, zero-filled where the image has none; one decoding pass for them all. */
  read(ranges: readonly GuestRange[]): Promise<Buffer[]>;
  /** Writes one range into a new sparse file at `path` (its data only: zeros stay holes). */
  save(range: GuestRange, path: string): Promise<void>;
}

/** `source`: the image's own bytes when they are its guest bytes (a raw image), read directly. */
export function guestReader(image: DiskImage, source?: ImageSource): GuestReader {
  const size = image.info.virtualSize;
  const direct = source && image.info.format === 'raw' ? source : undefined;
  return {
    size,
    read: (ranges) =>
      direct ? Promise.resolve(ranges.map((r) => readSource(direct, r))) : decodeRanges(image, ranges),
    save: (range, path) => saveRange(direct ? sourceExtents(direct, range) : image.extents(), range, path),
  };
}

/** A raw source's bytes over `range`, as data extents of at most 1 MiB. */
async function* sourceExtents(source: ImageSource, range: GuestRange): AsyncIterable<Extent> {
  const end = Math.min(source.size, range.offset + range.length);
  for (let at = range.offset; at < end; at += SAVE_CHUNK) {
    const length = Math.min(SAVE_CHUNK, end - at);
    yield { offset: at, length, data: source.read(at, length) };
  }
}

const SAVE_CHUNK = 1024 * 1024;
const ZEROS = Buffer.alloc(SAVE_CHUNK);

async function saveRange(extents: AsyncIterable<Extent>, range: GuestRange, path: string): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.truncate(range.length);
    const end = range.offset + range.length;
    for await (const extent of extents) {
      try {
        if (extent.offset >= end) break;
        if ('zero' in extent || extent.offset + extent.length <= range.offset) continue;
        const from = Math.max(range.offset, extent.offset);
        const to = Math.min(end, extent.offset + extent.length);
        const bytes = extent.data.subarray(from - extent.offset, to - extent.offset);
        if (!bytes.equals(ZEROS.subarray(0, bytes.length)))
          await handle.write(bytes, 0, bytes.length, from - range.offset);
      } finally {
        if ('data' in extent) extent.release?.(); // what a source lent goes back, whichever way the loop goes on
      }
    }
  } finally {
    await handle.close();
  }
}

function readSource(source: ImageSource, range: GuestRange): Buffer {
  const out = Buffer.alloc(range.length);
  const end = Math.min(source.size, range.offset + range.length);
  if (end > range.offset) source.read(range.offset, end - range.offset).copy(out);
  return out;
}

async function decodeRanges(image: DiskImage, ranges: readonly GuestRange[]): Promise<Buffer[]> {
  const out = ranges.map((r) => Buffer.alloc(r.length));
  const last = Math.max(0, ...ranges.map((r) => r.offset + r.length));
  for await (const extent of image.extents()) {
    try {
      if (extent.offset >= last) break;
      if ('zero' in extent) continue;
      const end = extent.offset + extent.length;
      ranges.forEach((range, i) => {
        const from = Math.max(range.offset, extent.offset);
        const to = Math.min(range.offset + range.length, end);
        if (to > from) extent.data.copy(out[i]!, from - range.offset, from - extent.offset, to - extent.offset);
      });
    } finally {
      if ('data' in extent) extent.release?.();
    }
  }
  return out;
}

/** A buffer as an ImageSource (for the content probes of detect.ts). */
export function bufferSource(bytes: Buffer): ImageSource {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}
